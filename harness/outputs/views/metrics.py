"""The ``metrics`` section's view: per task, one table per metric (tasks that score themselves with several
metrics, such as lm-eval tasks): rows are conjugates; columns the pretrained and fine-tuned means with their 95%
intervals and the recovery of the mean with its bootstrap interval.

The numbers come from :mod:`harness.analysis.summary.metrics` (keys ``metrics`` and ``metric_recovery``); this
module attaches the view to that section, and ``SECTIONS`` of :mod:`harness.registry` names the section here, as
:mod:`harness.outputs.views.config_agreement` describes. A view with several tables gives ``tables`` (each with
``subtitle``, ``columns`` and ``rows``), which the "extra sections" block of both templates renders one by one.
"""
from __future__ import annotations

from typing import Any

from harness.analysis.summary.metrics import metrics
from harness.outputs.format import display_name, interval, pct, ratio
from harness.outputs.views.common import DASH, Cell, finite, href, ordered

PT, FT = "pretrained", "finetuned"


def mean_cell(row: dict | None, task: str, transform: str) -> Cell:
    """``mean [lo, hi]``: in % for 0/1 metrics (like the rates), else to two decimals."""
    if not row or not finite(row.get("mean")):
        return DASH
    fmt = pct if row.get("binary") else ratio
    lohi = [row.get("lo"), row.get("hi")]
    text = f"{fmt(row['mean'])} {interval(lohi, fmt) if all(finite(v) for v in lohi) else '—'}"
    method = "Wilson" if row.get("binary") else "percentile bootstrap over samples"
    return Cell(text, href(task=task, transform=transform, model=row.get("model")),
                f"mean over {row.get('n', '?')} samples; 95% CI: {method}")


def recovery_cell(rec: dict | None, task: str, transform: str) -> Cell:
    """``recovery [lo, hi]``, "(baseline)" for the baseline conjugate, — when undefined."""
    if rec is None:
        return DASH
    if rec.get("note") == "baseline":
        return Cell("(baseline)", title="the baseline conjugate: recovery is 0 by definition", cls="baseline")
    value = rec.get("recovery")
    if not finite(value):
        return Cell("—", title=rec.get("note") or None)
    c = rec.get("ci")
    ctext = interval(c) if isinstance(c, (list, tuple)) and len(c) == 2 else "—"
    title = "; ".join(x for x in (rec.get("note"), f"95% CI: {rec.get('ci_method')}" if rec.get("ci_method") else "",
                                  rec.get("ci_note")) if x)
    return Cell(f"{ratio(value)} {ctext}", href(task=task, transform=transform, model=FT), title or None)


def metric_table(task: str, metric: str, means: dict, recs: dict, transforms: list[str]) -> dict:
    rows = []
    for tr in ordered({t for (t, m, _) in means if m == metric} | {t for (t, m) in recs if m == metric}, transforms):
        rows.append([display_name(tr), mean_cell(means.get((tr, metric, PT)), task, tr),
                     mean_cell(means.get((tr, metric, FT)), task, tr), recovery_cell(recs.get((tr, metric)), task, tr)])
    binary = all(r.get("binary") for (_, m, _), r in means.items() if m == metric)
    unit = " (%)" if binary else ""
    return {"subtitle": metric, "rows": rows,
            "columns": [("Conjugate", False), (f"pretrained{unit}", True), (f"fine-tuned{unit}", True),
                        ("recovery", True)]}


def metrics_view(summary: dict, task: str, transforms: list[str]) -> dict | None:
    """One table per metric of the task; None when the run has no metric rows for it (or no ``metrics`` key)."""
    means = {(r["transform"], r["metric"], r["model"]): r for r in summary.get("metrics") or [] if r.get("task") == task}
    if not means:
        return None
    recs = {(r["transform"], r["metric"]): r for r in summary.get("metric_recovery") or [] if r.get("task") == task}
    tables: list[dict[str, Any]] = [metric_table(task, m, means, recs, transforms) for m in sorted({m for (_, m, _) in means})]
    return {
        "id": "metrics", "title": "Metrics",
        "explain": "The task's own metrics, averaged over scored samples: mean with a 95% interval (Wilson for 0/1 "
                   "metrics, shown in %; else a percentile bootstrap over samples), and the recovery of the mean, "
                   "(ft_T - ft_en) / (pt_en - ft_en), with a 95% percentile bootstrap interval over examples.",
        "tables": tables,
    }


metrics.view = metrics_view  # type: ignore[attr-defined]
