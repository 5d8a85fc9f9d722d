"""View models of a run's report: plain data that both ``templates/report.md.j2`` and
``templates/report.html.j2`` render, so a table is built once and numbers are formatted once.

One builder per section, each a small function of (manifest, summary[, samples]) that returns dicts,
lists and :class:`~harness.outputs.views.common.Cell` values (text + the sample-browser link behind it):

============================  ==========================================  ====================
section                       builder                                     summary.json key
============================  ==========================================  ====================
header, model cards           :func:`header.header_view`                  rows
notes                         :func:`header.notes_view`                   (manifest)
recovery heatmap              :func:`rates.heatmap_view`                  (plots)
per-task rate table           :func:`rates.rate_table_view`               rows, recovery
all outcomes                  :func:`rates.outcomes_view`                 rows
by config                     :func:`rates.by_config_view`                rows
probe                         :func:`probe.probe_view`                    probe, probe_correlation
agreement                     :func:`paired.agreement_view`               agreement
paired tests                  :func:`paired.paired_tests_view`            tests
registered sections' views    ``view`` of each summary section            (its own keys)
sample browser (HTML)         :func:`samples.sample_browser_view`         (samples)
============================  ==========================================  ====================

A section whose key is missing (an older run) is None or empty and the templates leave it out, so
old and new run folders both render. How to add a section (its numbers, its view and, if it is not a
plain table, its template block): see :mod:`harness.outputs.views.config_agreement`, which is one.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from harness.outputs.format import plot_stem
from harness.outputs.rundir import RunInfo
from harness.outputs.views.common import anchor, transforms_of
from harness.outputs.views.header import header_view, notes_view
from harness.outputs.views.paired import agreement_view, paired_tests_view
from harness.outputs.views.probe import probe_keys, probe_names, probe_view
from harness.outputs.views.rates import TaskRows, by_config_view, heatmap_view, outcomes_view, rate_table_view
from harness.outputs.views.samples import MAX_TEXT, as_dict, sample_browser_view


def section_views() -> list[Callable[[dict, str, list[str]], dict | None]]:
    """The ``view`` of every registered summary section that has one, in the sections' order (see
    :mod:`harness.outputs.views.config_agreement` for how a section brings its view)."""
    from harness.analysis.summary.sections import ordered_sections

    return [fn.view for _, fn in ordered_sections(notes=[]) if callable(getattr(fn, "view", None))]


def task_view(manifest: dict, summary: dict, task: str, labels: list[str], label: str | None, transforms: list[str],
              plots: dict[str, str], probe_keys: tuple[str | None, str | None] = (None, None),
              extra: Sequence[Callable[[dict, str, list[str]], dict | None]] = ()) -> dict | None:
    """Every section of one task (``label``: its primary label; ``extra``: the registered sections' views);
    None when summary.json has nothing for it."""
    t = TaskRows.of(summary, task, transforms)
    view: dict[str, Any] = {
        "task": task, "anchor": anchor(task), "label": label, "labels": labels,
        "rates": rate_table_view(t, label, plots.get(plot_stem(task))) if t.present and label else None,
        "outcomes": outcomes_view(t, labels),
        "by_config": by_config_view(t, label) if label else None,
        "probe": probe_view(manifest, summary, task, labels, label, transforms, plots.get(f"{plot_stem(task)}-probe"), probe_keys),
        "agreement": agreement_view(summary, task, transforms),
        "tests": paired_tests_view(summary, task, transforms),
        "extra": [v for v in (view(summary, task, transforms) for view in extra) if v],
    }
    shown = ("rates", "outcomes", "probe", "agreement", "tests", "extra")
    return view if any(view[k] for k in shown) else None


def build_report(manifest: dict, summary: dict, samples: Iterable[Any] | None = None,
                 plots: dict[str, str] | None = None) -> dict:
    """The whole report's view. ``plots``: {plot key: file name} as in manifest.json's ``plots`` (default:
    the manifest's); ``samples`` (Sample objects or dicts): the HTML sample browser's data, else no browser."""
    info = RunInfo.of(manifest, summary)
    labels = info.task_labels()
    transforms = transforms_of(manifest, summary)
    plots = dict(manifest.get("plots") or {}) if plots is None else plots
    rows = [as_dict(s) for s in samples] if samples is not None else None
    keys = probe_keys(rows or [])
    extra = section_views()
    tasks = [task_view(manifest, summary, task, labels[task], info.primary_label(task), transforms, plots,
                       keys.get(task, (None, None)), extra) for task in labels]
    return {
        "head": header_view(manifest, summary, len(rows) if rows is not None else None),
        "notes": notes_view(manifest), "heatmap": heatmap_view(plots), "tasks": [t for t in tasks if t],
        "browser": sample_browser_view(rows, transforms, labels, probe_names(manifest, keys)) if rows is not None else None,
    }


__all__ = ["build_report", "task_view", "MAX_TEXT"]
