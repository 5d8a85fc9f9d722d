"""The lm-eval bridge: any lm-eval task under any conjugate, served by the harness's cached executor.

* :class:`ConjugateLM` (:mod:`.lm`): lm-eval's ``LM`` interface; forward/inverse per request type.
* :mod:`.catalog`: lm-eval's TaskManager with ``--lmeval-include`` folders; names, groups, renderings.
* :mod:`.stage`: the runner's step for ``lmeval:<task>`` tasks: per model and conjugate, lm-eval evaluates
  through ConjugateLM, and :mod:`.samples` turns its per-document log into harness samples.

Importing this package imports lm-eval (``pip install 'conjugate-harness[lmeval]'`` if it is missing).
"""
from __future__ import annotations

__all__ = ["ConjugateLM"]


def __getattr__(name: str):
    if name == "ConjugateLM":
        from harness.lmeval.lm import ConjugateLM

        return ConjugateLM
    raise AttributeError(name)
