"""Per-config agreement: how often the fine-tuned model under a conjugate gives the pretrained model's label
under the same conjugate, ft(T) = pt(T), in each config of a task (icl_vs_if's capslock-math, ...).

This module is also the recipe for adding a report section. A section is one file like this one:

1. **The numbers**: a summary section, a function of :class:`harness.analysis.summary.SummaryContext`
   marked with :func:`harness.analysis.summary.section` (its summary.json keys, its place among the
   sections, ``optional=True`` so a failure is a note, not a lost run). Statistics come from
   :mod:`harness.analysis.stats` (here: the Wilson interval). Register it: a built-in is one line in
   ``SECTIONS`` of :mod:`harness.registry` (``"config_agreement": "harness.outputs.views.config_agreement:config_agreement"``);
   a plug-in is an entry point in the group ``conjugate.sections``; a test calls ``SECTIONS.register``.
   Its keys go at the end of summary.json, so every existing key stays byte for byte as it was.
2. **The view**: a function ``(summary, task, transforms) -> dict | None`` attached to the section as
   ``.view``. It reads the section's keys from summary.json (an older run has none: return None) and
   returns plain data, numbers already formatted (:mod:`harness.outputs.format`) as
   :class:`~harness.outputs.views.common.Cell` values whose ``href`` sets the sample browser's filters to
   the samples behind the number. :func:`harness.outputs.views.build_report` calls the ``view`` of every
   registered section, per task, in the sections' order.
3. **The template block**: a view shaped as a table (``title``, ``explain``, ``columns`` as (name,
   numeric) pairs, ``rows`` of cells) needs none, since the "extra sections" block of ``report.md.j2`` and
   ``report.html.j2`` renders any such table, escaped in HTML and pipe-safe in Markdown. A section that
   wants another layout adds its own ``{% if ... %}`` block to both templates.

Then add a test that the key is computed (a crafted list of samples) and that both reports show it.
"""
from __future__ import annotations

import math
from typing import Any

from harness.analysis import stats
from harness.analysis.summary import SummaryContext, section
from harness.outputs.format import agreement_cell, display_name
from harness.outputs.views.common import Cell, DASH, href, ordered

PT, FT = "pretrained", "finetuned"


@section(keys=("config_agreement",), order=60, optional=True)
def config_agreement(ctx: SummaryContext) -> dict[str, Any]:
    """Per (task, transform, config) of tasks with configs: the share of the config's examples, scored by
    both models under the transform, on which their labels agree, with a 95% Wilson interval."""
    config = {(s.task, s.example_id): s.group for s in ctx.samples}
    out = []
    for task in ctx.task_labels:
        groups = sorted({g for (t, _), g in config.items() if t == task and g != "all"})
        for tr in ctx.transforms if groups else ():
            ft, pt = ctx.outcomes.get((FT, task, tr)), ctx.outcomes.get((PT, task, tr))
            if ft is None or pt is None:
                continue
            for group in groups:
                both = [e for e in ft if e in pt and config[(task, e)] == group]
                agree = sum(ft[e] == pt[e] for e in both)
                out.append({"task": task, "transform": tr, "group": group, "n": len(both),
                            "ft_T_vs_pt_T": agree / len(both) if both else math.nan, "ft_T_vs_pt_T_k": agree,
                            "ft_T_vs_pt_T_ci": list(stats.wilson(agree, len(both))) if both else None,
                            "ci_method": "Wilson"})
    return {"config_agreement": out}


def config_agreement_view(summary: dict, task: str, transforms: list[str]) -> dict | None:
    """A table: one row per conjugate, one column per config, ft(T) = pt(T) in % with its interval."""
    entries = {(a["transform"], a["group"]): a for a in summary.get("config_agreement") or [] if a.get("task") == task}
    if not entries:
        return None
    groups = sorted({g for (_, g) in entries})
    rows = []
    for tr in ordered({tr for (tr, _) in entries}, transforms):
        cells: list[Any] = [display_name(tr)]
        for g in groups:
            a = entries.get((tr, g))
            if not a or not a.get("n"):
                cells.append(DASH)
                continue
            k, n = a.get("ft_T_vs_pt_T_k", "?"), a["n"]
            cells.append(Cell(f"{agreement_cell(a['ft_T_vs_pt_T'], a.get('ft_T_vs_pt_T_ci'))} ({k}/{n})",
                              href(task=task, transform=tr, group=g), f"{k} of {n} examples agree"))
        rows.append(cells)
    return {
        "id": "config-agreement", "title": "Agreement by config",
        "explain": "Per config, the share of examples on which the fine-tuned model under the conjugate gives the same "
                   "label as the pretrained model under the same conjugate, ft(T) = pt(T), in % with 95% Wilson intervals "
                   "(agreeing / compared examples).",
        "columns": [("Conjugate", False), *((g, True) for g in groups)], "rows": rows,
    }


config_agreement.view = config_agreement_view  # type: ignore[attr-defined]
