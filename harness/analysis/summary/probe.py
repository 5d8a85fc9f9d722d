"""The task-inference probe's section: ``probe`` and ``probe_correlation`` of summary.json.

Per (task, model, transform, group), the mean of P(target) = p(target) / (p(target) + p(other)) over the
samples that have a probe (see :mod:`harness.pipeline.probe` for how the requests are made), with a
bootstrap interval, and its Spearman correlation with the greedy rate of the task's primary label.

The probe is an extra: the section is optional, so a failure here becomes a note and never loses a run.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

from harness.analysis.stats import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_mean_ci, bootstrap_method, spearman_note
from harness.analysis.summary.sections import SummaryContext, section
from harness.types import ERROR, Sample

CI_METHOD = bootstrap_method(DEFAULT_N_BOOT, DEFAULT_SEED)
MODEL_ORDER = {"pretrained": 0, "finetuned": 1}

Cell = tuple[str, str, str, str]  # (task, model, transform, group)


@section(keys=("probe", "probe_correlation"), order=50, optional=True)
def probe(ctx: SummaryContext) -> dict[str, Any]:
    """Task-inference probe: mean P(target) per cell with a bootstrap CI, and its Spearman correlation with greedy rates."""
    return probe_summary(ctx.samples, ctx.summary, ctx.primary)


def target_of(probe: dict[str, float]) -> str | None:
    """The behaviour a probe measures: ``icl`` for ``{"p_icl": ...}``."""
    return next((k[2:] for k in probe if k.startswith("p_")), None)


def probe_summary(samples: Sequence[Sample], summary: dict, primary: dict[str, str]) -> dict:
    """``{"probe": [...], "probe_correlation": [...]}`` for ``summary.json``.

    ``probe``: one row per (task, model, transform, group) over the scored
    samples that have a probe: ``n``, ``mean`` P(target) with a bootstrap
    95% CI (``lo``, ``hi``), groups after ``"all"``. ``probe_correlation``:
    per task, Spearman of mean P(target) against the greedy rate of the
    task's primary label across (model, transform) cells, plus the
    per-example Spearman of P(target) against ``outcome == primary``, and
    per model the Spearman across its transforms (``by_model``).
    """
    by_cell, target = _probed_cells(samples)
    rows = _mean_rows(by_cell, target, summary)
    rates = {(r["task"], r["model"], r["transform"]): r["rates"].get(primary.get(r["task"], ""), {}).get("rate", math.nan)
             for r in summary.get("rows", []) if r["group"] == "all"}
    corr = [_correlation(task, target[task], primary.get(task, target[task]), rows, rates, by_cell) for task in target]
    return {"probe": rows, "probe_correlation": corr}


def _probed_cells(samples: Sequence[Sample]) -> tuple[dict[Cell, list[Sample]], dict[str, str]]:
    """Scored samples with a probe, by cell (group "all" and their own group), and each task's target
    (tasks in the order their first probed sample appears)."""
    by_cell: dict[Cell, list[Sample]] = defaultdict(list)
    target: dict[str, str] = {}
    for s in samples:
        if s.probe is None or s.error is not None or s.outcome == ERROR:
            continue
        t = target_of(s.probe)
        if t is None or f"p_{t}" not in s.probe:
            continue
        target.setdefault(s.task, t)
        by_cell[(s.task, s.model, s.transform, "all")].append(s)
        if s.group != "all":
            by_cell[(s.task, s.model, s.transform, s.group)].append(s)
    return by_cell, target


def _mean_rows(by_cell: dict[Cell, list[Sample]], target: dict[str, str], summary: dict) -> list[dict]:
    """One row per cell: mean P(target) with its bootstrap interval; ordered by task, transform (as in the
    summary rows), "all" first, then model."""
    order_t: dict[str, int] = {}
    for r in summary.get("rows", []):
        order_t.setdefault(r["transform"], len(order_t))
    order_task = {task: i for i, task in enumerate(target)}
    rows = []
    for (task, model, transform, group), ss in sorted(
            by_cell.items(), key=lambda kv: (order_task[kv[0][0]], order_t.get(kv[0][2], 99), kv[0][3] != "all",
                                             kv[0][3], MODEL_ORDER.get(kv[0][1], 9), kv[0][1])):
        t = target[task]
        mean, lo, hi = bootstrap_mean_ci([s.probe[f"p_{t}"] for s in ss], key=("probe", task, model, transform, group))
        rows.append({"task": task, "model": model, "transform": transform, "group": group, "target": t,
                     "n": len(ss), "mean": mean, "lo": lo, "hi": hi, "ci_method": CI_METHOD})
    return rows


def _correlation(task: str, t: str, label: str, rows: list[dict], rates: dict, by_cell: dict[Cell, list[Sample]]) -> dict:
    """Spearman of mean P(target) against the greedy rate of ``label`` across cells, per model, and per example."""
    points = []
    for r in rows:
        if r["task"] == task and r["group"] == "all":
            rate = rates.get((task, r["model"], r["transform"]), math.nan)
            if rate is not None and not math.isnan(rate) and not math.isnan(r["mean"]):
                points.append({"model": r["model"], "transform": r["transform"], "mean": r["mean"], "rate": rate})
    rho, p, note = spearman_note([q["mean"] for q in points], [q["rate"] for q in points])
    by_model = []
    for model in dict.fromkeys(q["model"] for q in points):
        mine = [q for q in points if q["model"] == model]
        mrho, mp, mnote = spearman_note([q["mean"] for q in mine], [q["rate"] for q in mine])
        by_model.append({"model": model, "spearman": mrho, "p": mp, "n_cells": len(mine), "note": mnote})
    scored = [s for (tk, _, _, g), ss in by_cell.items() if tk == task and g == "all" for s in ss]
    erho, ep, enote = spearman_note([s.probe[f"p_{t}"] for s in scored], [float(s.outcome == label) for s in scored])
    return {
        "task": task, "target": t, "label": label, "spearman": rho, "p": p, "n_cells": len(points),
        "cells": f"(model, transform) cells: mean P({t.upper()}) vs greedy {label} rate", "note": note,
        "points": points, "by_model": by_model,
        "per_example": {"spearman": erho, "p": ep, "n": len(scored), "note": enote,
                        "what": f"samples: P({t.upper()}) vs greedy outcome == {label}"},
    }
