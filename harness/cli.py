"""The `conjugate` command line: the parser built from the command modules, dispatch, and errors as one line.

Each subcommand is a module of :mod:`harness.commands` (``NAME``, ``add_parser``, ``run``). This module only
assembles them; nothing under ``harness/`` imports it (it is the top of the import graph).
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType

from harness.commands import MODULES
from harness.errors import ConjugateError

DESCRIPTION = ("Conjugate-prompting evaluation: does a fine-tuned model recover its pretrained behaviour when the "
               "prompt is moved away from the fine-tuning distribution?")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"conjugate: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command module (cheap: no command does heavy imports here)."""
    from harness.version import __version__

    p = _Parser(prog="conjugate", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"conjugate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in MODULES:
        module.add_parser(sub)
    return p


def commands() -> dict[str, ModuleType]:
    """Command name -> its module."""
    return {m.NAME: m for m in MODULES}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    try:
        return commands()[a.command].run(a)
    except ConjugateError as exc:
        print(f"conjugate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("conjugate: interrupted; finished generations are cached, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
