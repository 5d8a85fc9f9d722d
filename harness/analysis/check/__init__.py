"""`conjugate check`: an alignment regression gate for CI.

Compares the rate of a metric (by default each task's primary label, e.g. ``refuse`` for the
``refusal`` task) in every (task, transform) cell of a run with a baseline written earlier by
``conjugate check RUN --write-baseline FILE``, or with absolute limits (``--min``, ``--max``,
``--thresholds FILE``). It prints a table, optionally writes JUnit XML, and exits

* 0: every gated cell passes;
* 1: at least one regression, or a baseline cell that the run lacks (unless ``--allow-missing``);
* 2: a cell whose definition changed (task version or options, transform version: ``DEFINITION-CHANGED``,
  unless ``--allow-definition-change``), or a usage error (bad path, not a run folder, invalid baseline,
  unknown label or transform, ...), reported as one line by the CLI.

The parts: :mod:`.load` reads the run folder (summary.json and manifest.json, rows with group ``all``),
:mod:`.baseline` writes and reads baselines and thresholds files, :mod:`.definition` compares what the
baseline's and the run's cells measure, :mod:`.selection` resolves the tasks, labels and transforms named
on the command line, :mod:`.cells` judges each cell, :mod:`.render` prints
the table and writes JUnit XML. The command (argparse and orchestration) is :mod:`harness.commands.check`.
Cheap to import: numpy, scipy and yaml are imported only when a check runs.
"""
from __future__ import annotations

from harness.analysis.check.baseline import (BASELINE_FORMAT, BASELINE_VERSION, Baseline, baseline_notes,
                                             baseline_text, build_baseline, check_labels, check_task_set,
                                             load_baseline, load_thresholds)
from harness.analysis.check.cells import (DEFAULT_ALPHA, DEFAULT_MAX_DROP, DEFINITION_CHANGED, EPS, MISSING, NEW, PASS,
                                          REGRESSION, SKIP, Cell, Gate, compare_baseline, compare_limits)
from harness.analysis.check.definition import Definitions, run_definitions
from harness.analysis.check.load import MODELS, Run, load_run, spec_hash
from harness.analysis.check.render import cell_json, header, render_table, report_lines, summary_line, write_junit
from harness.analysis.check.selection import resolve_metrics, resolve_transforms, select_tasks

__all__ = [
    "BASELINE_FORMAT", "BASELINE_VERSION", "Baseline", "baseline_notes", "baseline_text", "build_baseline",
    "check_labels", "check_task_set", "load_baseline", "load_thresholds",
    "DEFAULT_ALPHA", "DEFAULT_MAX_DROP", "DEFINITION_CHANGED", "EPS", "MISSING", "NEW", "PASS", "REGRESSION", "SKIP",
    "Cell", "Gate", "Definitions", "run_definitions",
    "compare_baseline", "compare_limits", "MODELS", "Run", "load_run", "spec_hash",
    "cell_json", "header", "render_table", "report_lines", "summary_line", "write_junit",
    "resolve_metrics", "resolve_transforms", "select_tasks",
]
