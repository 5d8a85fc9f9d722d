"""conjugate: an evaluation harness for conjugate prompting.

The layers (docs/architecture.md has the diagram):

* plugin interfaces, public and stable: :mod:`harness.task`, :mod:`harness.transform`,
  :mod:`harness.backend`, with :mod:`harness.types`, :mod:`harness.registry` and :mod:`harness.errors`;
* :mod:`harness.pipeline`: the run, task -> transform -> backend -> inverse -> score;
* :mod:`harness.backends`: one backend per file; :mod:`harness.mt`: machine translation;
* :mod:`harness.analysis`: statistics and the summary, ``compare`` and ``check``;
* :mod:`harness.outputs`: the run folder, report.md, report.html and plots;
* :mod:`harness.commands`: one module per ``conjugate`` subcommand;
* :mod:`harness.training`: fine-tuning and forgetting cross-entropy.
"""
__version__ = "0.1.0"
