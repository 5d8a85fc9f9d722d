"""The ``metrics`` section: per-sample metric means (tasks that score themselves with several metrics, such as
lm-eval tasks, put them in :attr:`harness.types.Sample.metrics`), and the recovery of each mean.

* ``metrics``: one row per (task, transform, model, metric), ``{task, transform, model, metric, n, mean, lo,
  hi, binary}``: the mean over the scored samples that have the metric, with a 95% interval: Wilson when every
  value is 0 or 1 (``binary``), else a percentile bootstrap over samples (:func:`harness.analysis.stats.bootstrap_mean_ci`);
* ``metric_recovery``: one row per (task, transform, metric), the recovery of the mean
  (:func:`harness.analysis.stats.recovery`, as for rates: ``(ft_T - ft_en) / (pt_en - ft_en)``) with a paired
  percentile bootstrap over examples (:class:`harness.analysis.stats.PairedBootstrap`: every cell of a task sees
  the same resampled examples, as in the ``recovery`` section).

Error samples and samples without metrics never count. A run without metric samples gets two empty lists.
Undefined numbers are written as None (not NaN).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

from harness.analysis import stats
from harness.analysis.summary.rates import _interval_note as interval_note
from harness.analysis.summary.sections import FT, PT, SummaryContext, section
from harness.types import ERROR, Sample

Cell = tuple[str, str, str, str]  # (task, transform, model, metric)


def number(x: float | None) -> float | None:
    """A float for JSON, None when undefined (NaN, inf or None)."""
    return float(x) if x is not None and math.isfinite(x) else None


def metric_values(samples: Sequence[Sample]) -> dict[Cell, list[tuple[str, float]]]:
    """(task, transform, model, metric) -> [(example_id, value)] over the scored samples with metrics."""
    out: dict[Cell, list[tuple[str, float]]] = defaultdict(list)
    for s in samples:
        if s.outcome == ERROR or not s.metrics:
            continue
        for metric, value in s.metrics.items():
            if value is not None and math.isfinite(float(value)):
                out[(s.task, s.transform, s.model, metric)].append((s.example_id, float(value)))
    return out


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def mean_row(cell: Cell, values: Sequence[float], n_boot: int, seed: int) -> dict[str, Any]:
    """One ``metrics`` row: the mean with a Wilson (0/1 values) or percentile-bootstrap interval."""
    task, transform, model, metric = cell
    n, binary = len(values), is_binary(values)
    if binary:
        k = int(sum(values))
        mean, (lo, hi) = k / n, stats.wilson(k, n)
    else:
        mean, lo, hi = stats.bootstrap_mean_ci(values, key=cell, resamples=n_boot, seed=seed)
    return {"task": task, "transform": transform, "model": model, "metric": metric, "n": n,
            "mean": number(mean), "lo": number(lo), "hi": number(hi), "binary": binary}


@section(keys=("metrics", "metric_recovery"), order=60, optional=True)
def metrics(ctx: SummaryContext) -> dict[str, Any]:
    """Per-sample metric means (lm-eval tasks) with 95% intervals, and their recovery with a bootstrap interval."""
    values = metric_values(ctx.samples)
    order = {t: i for i, t in enumerate(ctx.transforms)}
    cells = sorted(values, key=lambda c: (c[0], order.get(c[1], len(order)), c[1], c[3], c[2]))
    rows = [mean_row(c, [v for _, v in values[c]], ctx.n_boot, ctx.seed) for c in cells]
    return {"metrics": rows, "metric_recovery": recovery_rows(ctx, rows, values)}


def recovery_rows(ctx: SummaryContext, rows: list[dict], values: dict[Cell, list[tuple[str, float]]]) -> list[dict]:
    """Per (task, transform, metric): the recovery of the metric's mean, as the ``recovery`` section does for rates."""
    mean = {(r["task"], r["transform"], r["model"], r["metric"]): r["mean"] for r in rows}

    def get(task: str, transform: str, model: str, metric: str) -> float:
        m = mean.get((task, transform, model, metric))
        return math.nan if m is None else m

    out = []
    seen = sorted({(r["task"], r["metric"]) for r in rows})
    transforms = list(ctx.transforms) + sorted({r["transform"] for r in rows} - set(ctx.transforms))
    for task, metric in seen:
        for tr in transforms:
            if (task, tr, PT, metric) not in mean and (task, tr, FT, metric) not in mean:
                continue
            pt, ft = get(task, tr, PT, metric), get(task, tr, FT, metric)
            pt_en, ft_en = get(task, ctx.baseline, PT, metric), get(task, ctx.baseline, FT, metric)
            value, note = stats.recovery(pt_en, ft_en, ft)
            out.append({"task": task, "transform": tr, "metric": metric,
                        "pretrained": number(pt), "finetuned": number(ft), "pt_en": number(pt_en),
                        "ft_en": number(ft_en), "recovery": number(value),
                        "note": "baseline" if tr == ctx.baseline else note})
    add_intervals(out, ctx, values)
    return out


def add_intervals(rec: list[dict], ctx: SummaryContext, values: dict[Cell, list[tuple[str, float]]]) -> None:
    """``ci``, ``ci_method``, ``ci_dropped``, ``ci_note`` of each recovery row: a percentile bootstrap that resamples
    a task's examples once and applies the draw to every (model, transform, metric) cell of the task, so the three
    means inside recovery move together. Resamples where recovery is undefined are dropped and counted."""
    examples: dict[str, set[str]] = defaultdict(set)
    for s in ctx.samples:
        examples[s.task].add(s.example_id)
    boots: dict[str, stats.PairedBootstrap] = {}
    cache: dict[Cell, Any] = {}

    def draws(task: str, transform: str, model: str, metric: str):
        key = (task, transform, model, metric)
        if key not in cache:
            cache[key] = cell_draws(key)
        return cache[key]

    def cell_draws(key: Cell):
        task, cell = key[0], values.get(key)
        if not cell:
            return None
        if task not in boots:
            boots[task] = stats.PairedBootstrap(sorted(examples[task]), ctx.n_boot, ctx.seed, key=(task, "metrics"))
        total: dict[str, float] = defaultdict(float)
        count: dict[str, float] = defaultdict(float)
        for e, v in cell:
            total[e] += v
            count[e] += 1
        b = boots[task]
        return b.cell_rates(b.vector(total), b.vector(count))

    method = stats.bootstrap_method(ctx.n_boot, ctx.seed)
    for r in rec:
        r.update({"ci": None, "ci_method": method, "ci_dropped": 0, "ci_note": ""})
        if r["transform"] == ctx.baseline or r["recovery"] is None:
            continue  # the baseline's recovery is 0 by definition; an undefined point estimate gets no interval
        task, tr, metric = r["task"], r["transform"], r["metric"]
        parts = [draws(task, ctx.baseline, PT, metric), draws(task, ctx.baseline, FT, metric), draws(task, tr, FT, metric)]
        if any(p is None for p in parts):
            continue
        interval = stats.percentile_interval(stats.recovery_draws(*parts))
        r["ci"], r["ci_dropped"] = interval.as_list(), interval.dropped
        r["ci_note"] = interval_note(interval, r["ci"])
