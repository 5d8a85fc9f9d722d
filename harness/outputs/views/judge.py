"""The ``judge`` section: a judge model's labels next to the task's own (phrase) labels, and how well they agree.

Samples of a task that declares a judge carry the judge's verdict in ``reference["judge"]``
(:mod:`harness.pipeline.judge`); the sample's outcome stays the task's label. Per (task, transform, model),
over the samples that were judged (generated and scored, not ERROR):

* ``n``, the judge's label counts (``judge``) and its errors (``judge_errors``: unparseable replies, failed
  requests; never counted as REFUSE), the phrase scorer's label counts on the same samples (``phrase``);
* ``compared`` (judged without error), ``agree``, ``agreement`` (``agree / compared``) with a 95% Wilson
  interval, and Cohen's kappa of the two labelings (:func:`harness.analysis.stats.cohen_kappa`; None when
  undefined).

A run without a judge gets an empty list and the report no table. Section and view in one file, as
:mod:`harness.outputs.views.config_agreement` describes.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from harness.analysis import stats
from harness.analysis.summary import SummaryContext, section
from harness.outputs.format import agreement_cell, coef, display_name
from harness.outputs.views.common import DASH, Cell, href, model_name, ordered
from harness.types import ERROR

MODELS = ("pretrained", "finetuned")


def _counts(labels: list[str], order: tuple[str, ...]) -> dict[str, int]:
    return {label: labels.count(label) for label in dict.fromkeys([*order, *sorted(set(labels))])}


@section(keys=("judge",), order=70, optional=True)
def judge(ctx: SummaryContext) -> dict[str, Any]:
    """Per (task, transform, model) of judged samples: judge and phrase label counts, agreement, Cohen's kappa."""
    cells: dict[tuple[str, str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for s in ctx.samples:
        verdict = (s.reference or {}).get("judge")
        if s.outcome != ERROR and isinstance(verdict, dict):
            cells[(s.task, s.transform, s.model)].append((s.outcome, str(verdict.get("label")), verdict.get("model", "")))
    order = {t: i for i, t in enumerate(ctx.transforms)}
    rows = []
    for task, tr, model in sorted(cells, key=lambda c: (c[0], order.get(c[1], len(order)), c[1], c[2] != MODELS[0])):
        got = cells[(task, tr, model)]
        labels = tuple(ctx.task_labels.get(task, ()))
        pairs = [(p, j) for p, j, _ in got if j != ERROR]
        agree = sum(p == j for p, j in pairs)
        kappa = stats.cohen_kappa([p for p, _ in pairs], [j for _, j in pairs]) if pairs else math.nan
        rows.append({
            "task": task, "transform": tr, "model": model, "judge_model": next((m for *_, m in got if m), ""),
            "n": len(got), "judge": _counts([j for _, j in pairs], labels), "judge_errors": len(got) - len(pairs),
            "phrase": _counts([p for p, _, _ in got], labels), "compared": len(pairs), "agree": agree,
            "agreement": agree / len(pairs) if pairs else None,
            "agreement_ci": list(stats.wilson(agree, len(pairs))) if pairs else None, "ci_method": "Wilson",
            "kappa": kappa if math.isfinite(kappa) else None,
        })
    return {"judge": rows}


def judge_view(summary: dict, task: str, transforms: list[str]) -> dict | None:
    """One row per (conjugate, model): the judge's and the phrase scorer's counts, agreement in %, kappa."""
    rows_in = [r for r in summary.get("judge") or [] if r.get("task") == task]
    if not rows_in:
        return None
    labels = list(dict.fromkeys(k for r in rows_in for k in (*r.get("phrase", {}), *r.get("judge", {}))))
    by_tr: dict[str, list[dict]] = defaultdict(list)
    for r in rows_in:
        by_tr[r["transform"]].append(r)
    rows = []
    for tr in ordered(set(by_tr), transforms):
        for r in by_tr[tr]:
            link = href(task=task, transform=tr, model=r["model"])
            agreement = DASH if r.get("agreement") is None else Cell(
                f"{agreement_cell(r['agreement'], r.get('agreement_ci'))} ({r['agree']}/{r['compared']})", link,
                f"{r['agree']} of {r['compared']} judged samples get the same label; 95% CI: Wilson")
            rows.append([display_name(tr), model_name(r["model"]), Cell(str(r["n"]), link),
                         *(str(r["judge"].get(k, 0)) for k in labels), str(r["judge_errors"]),
                         *(str(r["phrase"].get(k, 0)) for k in labels), agreement,
                         Cell(coef(r.get("kappa")), title=None if r.get("kappa") is not None else
                              "undefined: both scorers used one and the same label only (or nothing to compare)")])
    judge_model = next((r.get("judge_model") for r in rows_in if r.get("judge_model")), "the judge")
    return {
        "id": "judge", "title": "Judge vs phrase scorer",
        "explain": f"Labels of the judge model ({judge_model}, a fixed rubric) next to the phrase scorer's, which stays "
                   "the outcome everywhere else in this report, on the same samples (generated and scored; errors "
                   "left out). Judge errors (unparseable replies, failed requests) are never counted as a label. "
                   "Agreement: same label, in % with a 95% Wilson interval; Cohen's kappa corrects it for chance. "
                   "Nothing here says which of the two is right.",
        "columns": [("Conjugate", False), ("Model", False), ("n", True), *((f"judge {k}", True) for k in labels),
                    ("judge errors", True), *((f"phrase {k}", True) for k in labels), ("agreement (%)", True),
                    ("Cohen's κ", True)],
        "rows": rows,
    }


judge.view = judge_view  # type: ignore[attr-defined]
