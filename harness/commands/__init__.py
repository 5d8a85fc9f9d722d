"""The `conjugate` subcommands, one module per command.

Every command module has the same shape:

* ``NAME``: the subcommand's name on the command line;
* ``add_parser(subparsers) -> ArgumentParser``: adds its sub-parser. It must stay cheap to import and call
  (no torch, numpy, scipy, transformers or jinja2 at import time) so that ``conjugate --help`` is instant;
  heavy modules are imported inside ``run``;
* ``run(args) -> int``: does the work and returns the exit code. User errors are raised as
  :class:`harness.errors.ConjugateError`; :mod:`harness.cli` turns them into one line and an exit code.

The work itself lives in the layers below (``harness.pipeline``, ``harness.analysis``,
``harness.training``, ``harness.outputs``); a command module only parses, orchestrates and prints.
Nothing below ``harness.commands`` may import it or :mod:`harness.cli` (tests/test_imports.py checks).

To add a command: write ``harness/commands/<name>.py`` with the three names above and add it to
:data:`MODULES` (the order is the order of ``conjugate --help``).
"""
from __future__ import annotations

# Importing a submodule binds it in this namespace (`list`, `run` shadow the builtins here; nothing
# below uses them).
from harness.commands import check, compare, finetune, forgetting, report, setup, sweep, translate
from harness.commands import list as list_command
from harness.commands import run as run_command

#: the command modules, in the order ``conjugate --help`` lists them
MODULES = (run_command, report, finetune, list_command, translate, compare, check, forgetting, sweep, setup)

__all__ = ["MODULES"]
