"""The task-inference probe's summary sections: ``probe`` and ``probe_correlation`` of summary.json.

Per (task, model, transform, group), the mean of P(target) = p(target) / (p(target) + p(other)) over the
samples that have a probe (see :mod:`harness.pipeline.probe` for how the requests are made), with a
bootstrap interval, and its Spearman correlation with the greedy rate of the task's primary label.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

from harness.analysis.stats import bootstrap_mean_ci, DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_method
from harness.types import ERROR, Sample

CI_METHOD = bootstrap_method(DEFAULT_N_BOOT, DEFAULT_SEED)


def target_of(probe: dict[str, float]) -> str | None:
    """The behaviour a probe measures: ``icl`` for ``{"p_icl": ...}``."""
    return next((k[2:] for k in probe if k.startswith("p_")), None)

def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None, str]:
    """(rho, p, note); rho and p are None when undefined (fewer than 3 points, or a constant side)."""
    if len(x) < 3:
        return None, None, f"only {len(x)} points"
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None, None, "one side is constant"
    from harness.analysis.stats import spearman as _spearman

    rho, p = _spearman(x, y)
    if not math.isfinite(rho):
        return None, None, "undefined"
    return float(rho), (float(p) if math.isfinite(p) else None), ""


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
    order_t = {}
    for r in summary.get("rows", []):
        order_t.setdefault(r["transform"], len(order_t))
    order_task = {}
    by_cell: dict[tuple, list[Sample]] = defaultdict(list)
    target: dict[str, str] = {}
    for s in samples:
        if s.probe is None or s.error is not None or s.outcome == ERROR:
            continue
        t = target_of(s.probe)
        if t is None or f"p_{t}" not in s.probe:
            continue
        target.setdefault(s.task, t)
        order_task.setdefault(s.task, len(order_task))
        by_cell[(s.task, s.model, s.transform, "all")].append(s)
        if s.group != "all":
            by_cell[(s.task, s.model, s.transform, s.group)].append(s)
    model_order = {"pretrained": 0, "finetuned": 1}
    rows = []
    for (task, model, transform, group), ss in sorted(
            by_cell.items(), key=lambda kv: (order_task[kv[0][0]], order_t.get(kv[0][2], 99), kv[0][3] != "all",
                                             kv[0][3], model_order.get(kv[0][1], 9), kv[0][1])):
        t = target[task]
        mean, lo, hi = bootstrap_mean_ci([s.probe[f"p_{t}"] for s in ss], key=("probe", task, model, transform, group))
        rows.append({"task": task, "model": model, "transform": transform, "group": group, "target": t,
                     "n": len(ss), "mean": mean, "lo": lo, "hi": hi, "ci_method": CI_METHOD})
    rates = {(r["task"], r["model"], r["transform"]): r["rates"].get(primary.get(r["task"], ""), {}).get("rate", math.nan)
             for r in summary.get("rows", []) if r["group"] == "all"}
    corr = []
    for task in order_task:
        t, label = target[task], primary.get(task, target[task])
        points = []
        for r in rows:
            if r["task"] == task and r["group"] == "all":
                rate = rates.get((task, r["model"], r["transform"]), math.nan)
                if rate is not None and not math.isnan(rate) and not math.isnan(r["mean"]):
                    points.append({"model": r["model"], "transform": r["transform"], "mean": r["mean"], "rate": rate})
        rho, p, note = spearman([q["mean"] for q in points], [q["rate"] for q in points])
        by_model = []
        for model in dict.fromkeys(q["model"] for q in points):
            mine = [q for q in points if q["model"] == model]
            mrho, mp, mnote = spearman([q["mean"] for q in mine], [q["rate"] for q in mine])
            by_model.append({"model": model, "spearman": mrho, "p": mp, "n_cells": len(mine), "note": mnote})
        scored = [s for (tk, _, _, g), ss in by_cell.items() if tk == task and g == "all" for s in ss]
        erho, ep, enote = spearman([s.probe[f"p_{t}"] for s in scored], [float(s.outcome == label) for s in scored])
        corr.append({
            "task": task, "target": t, "label": label, "spearman": rho, "p": p, "n_cells": len(points),
            "cells": f"(model, transform) cells: mean P({t.upper()}) vs greedy {label} rate", "note": note,
            "points": points, "by_model": by_model,
            "per_example": {"spearman": erho, "p": ep, "n": len(scored), "note": enote,
                            "what": f"samples: P({t.upper()}) vs greedy outcome == {label}"},
        })
    return {"probe": rows, "probe_correlation": corr}
