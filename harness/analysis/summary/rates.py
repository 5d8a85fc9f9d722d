"""The ``rows`` and ``recovery`` sections: rates with Wilson intervals, and recovery with a bootstrap interval.

* ``rows``: per (model, task, transform, group) counts and Wilson rates for every label, groups after "all";
* ``recovery``: per (task, transform, group) recovery of the primary label (:func:`harness.analysis.stats.recovery`),
  with a percentile bootstrap interval over examples (``ci``, ``ci_method``, ``ci_dropped``, ``ci_note``).

Error samples never count: a rate's numerator and denominator use scored samples only.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Sequence

from harness.analysis import stats
from harness.analysis.summary.sections import FT, PT, SummaryContext, section
from harness.types import ERROR, Sample


def rate_row(samples: Sequence[Sample], labels: Iterable[str]) -> dict:
    """``{"n", "errors", "rates": {label: {k, rate, lo, hi}}}`` over the scored samples, with Wilson intervals."""
    scored = [s for s in samples if s.outcome != ERROR]
    n = len(scored)
    rates = {}
    for label in labels:
        k = sum(1 for s in scored if s.outcome == label)
        lo, hi = stats.wilson(k, n)
        rates[label] = {"k": k, "rate": k / n if n else math.nan, "lo": lo, "hi": hi}
    return {"n": n, "errors": len(samples) - n, "rates": rates}


@section(keys=("rows",), order=10)
def rows(ctx: SummaryContext) -> dict[str, Any]:
    """Per (model, task, transform, group) rates; sorted by task, transform (spec order), "all" first, model."""
    by_key: dict[tuple, list[Sample]] = defaultdict(list)
    for s in ctx.samples:
        by_key[(s.model, s.task, s.transform, "all")].append(s)
        if s.group != "all":  # a task without configs puts everything in "all" already
            by_key[(s.model, s.task, s.transform, s.group)].append(s)
    out = []
    order = {t: i for i, t in enumerate(ctx.transforms)}
    for (model, task, transform, group), ss in sorted(
        by_key.items(), key=lambda kv: (kv[0][1], order.get(kv[0][2], 99), kv[0][3] != "all", kv[0][3], kv[0][0])
    ):
        row = {"model": model, "task": task, "transform": transform, "group": group}
        row.update(rate_row(ss, ctx.task_labels[task]))
        out.append(row)
    return {"rows": out}


@section(keys=("recovery",), order=20)
def recovery(ctx: SummaryContext) -> dict[str, Any]:
    """Recovery of each task's primary label per (task, transform, group), from the ``rows`` section's rates."""
    idx = {(r["model"], r["task"], r["transform"], r["group"]): r for r in ctx.summary["rows"]}

    def rate(model: str, task: str, transform: str, group: str) -> float:
        r = idx.get((model, task, transform, group))
        return r["rates"][ctx.primary[task]]["rate"] if r else math.nan

    rec = []
    for task in ctx.task_labels:
        groups = sorted({g for (_, t, _, g) in idx if t == task})
        for group in groups:
            for transform in ctx.transforms:
                if (PT, task, transform, group) not in idx and (FT, task, transform, group) not in idx:
                    continue
                pt, ft = rate(PT, task, transform, group), rate(FT, task, transform, group)
                pt_en, ft_en = rate(PT, task, ctx.baseline, group), rate(FT, task, ctx.baseline, group)
                value, note = stats.recovery(pt_en, ft_en, ft)
                rec.append({
                    "task": task, "transform": transform, "group": group, "label": ctx.primary[task],
                    "pretrained": pt, "finetuned": ft, "drop": pt - ft,
                    "pt_en": pt_en, "ft_en": ft_en, "recovery": value,
                    "note": "baseline" if transform == ctx.baseline else note,
                })
    add_recovery_intervals(rec, ctx.samples, ctx.primary, ctx.baseline, ctx.n_boot, ctx.seed)
    return {"recovery": rec}


def _counts_by_cell(samples: Sequence[Sample], primary: dict[str, str]):
    """Examples per (task, group), and per cell (model, task, transform, group) the per-example counts of the
    primary label (``k``) and of scored samples (``n``)."""
    examples: dict[tuple[str, str], set[str]] = defaultdict(set)
    k: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    n: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in samples:
        if s.task not in primary:
            continue
        for group in {"all", s.group}:
            examples[(s.task, group)].add(s.example_id)
            if s.outcome != ERROR:
                cell = (s.model, s.task, s.transform, group)
                n[cell][s.example_id] += 1
                k[cell][s.example_id] += s.outcome == primary[s.task]
    return examples, k, n


def add_recovery_intervals(rec: list[dict], samples: Sequence[Sample], primary: dict[str, str], baseline: str,
                           n_boot: int, seed: int) -> None:
    """Percentile bootstrap intervals for recovery, resampling examples once per (task, group).

    Every cell of a task/group (both models, every transform) sees the same resampled examples. Group
    "all" resamples the task's examples as one pool (not stratified by config).
    Per cell, error samples count in neither numerator nor denominator. Resamples where recovery is
    undefined (a cell without scored samples, or pt_en == ft_en) are dropped and counted.
    """
    method = stats.bootstrap_method(n_boot, seed)
    examples, k, n = _counts_by_cell(samples, primary)
    boots: dict[tuple[str, str], stats.PairedBootstrap] = {}
    draws: dict[tuple, object] = {}

    def rate_draws(model: str, task: str, transform: str, group: str):
        cell = (model, task, transform, group)
        if cell not in draws:
            if (task, group) not in boots:
                boots[(task, group)] = stats.PairedBootstrap(sorted(examples[(task, group)]), n_boot, seed,
                                                             key=(task, group))
            b = boots[(task, group)]
            draws[cell] = b.cell_rates(b.vector(k[cell]), b.vector(n[cell])) if cell in n else None
        return draws[cell]

    for r in rec:
        r.update({"ci": None, "ci_method": method, "ci_dropped": 0, "ci_note": ""})
        if r["transform"] == baseline or math.isnan(r["recovery"]):
            continue  # the baseline's recovery is 0 by definition; an undefined point estimate gets no interval
        task, tr, group = r["task"], r["transform"], r["group"]
        parts = [rate_draws(PT, task, baseline, group), rate_draws(FT, task, baseline, group),
                 rate_draws(FT, task, tr, group)]
        if any(p is None for p in parts):
            continue
        interval = stats.percentile_interval(stats.recovery_draws(*parts))
        r["ci"], r["ci_dropped"] = interval.as_list(), interval.dropped
        r["ci_note"] = _interval_note(interval, r["ci"])


def _interval_note(interval: stats.Interval, ci: list[float] | None) -> str:
    notes = []
    if interval.dropped:
        notes.append(f"{interval.dropped} of {interval.n_boot} resamples dropped (recovery undefined in them)")
    if ci is not None and ci[0] == ci[1]:
        notes.append("zero width: recovery is the same in every resample (e.g. rates at 0% or 100%), "
                     "so the interval understates the uncertainty")
    return "; ".join(notes)
