"""conjugate: an evaluation harness for conjugate prompting.

The layers (docs/architecture.md has the diagram):

* plugin interfaces, public and stable: :mod:`harness.task`, :mod:`harness.transform`,
  :mod:`harness.backend`, with :mod:`harness.types`, :mod:`harness.registry` and :mod:`harness.errors`;
* :mod:`harness.pipeline`: the run, task -> transform -> backend -> inverse -> score;
* :mod:`harness.backends`: one backend per file; :mod:`harness.mt`: machine translation;
* :mod:`harness.analysis`: statistics and the summary, ``compare`` and ``check``;
* :mod:`harness.outputs`: the run folder, report.md, report.html and plots;
* :mod:`harness.commands`: one module per ``conjugate`` subcommand;
* :mod:`harness.training`: fine-tuning and forgetting cross-entropy;
* ``harness.evaluate`` / ``harness.load`` (:mod:`harness.api`): the Python API for notebooks, imported on first use.
"""
from harness.version import __version__

#: the notebook API (harness.api), imported on first use so that `import harness` stays cheap (PEP 562)
_LAZY = ("evaluate", "load", "Result")


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    from harness import api

    return getattr(api, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
