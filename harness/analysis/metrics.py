"""Rates with 95% Wilson intervals, recovery of a transform, and paired statistics over examples.

summarize() returns:

* ``rows``: per (model, task, transform, group) counts and Wilson rates for every label;
* ``recovery``: per (task, transform, group) recovery of the primary label, with a percentile
  bootstrap interval over examples (``ci``, ``ci_method``, ``ci_dropped``; see harness.analysis.stats);
* ``agreement``: per (task, transform), how often the fine-tuned model's label under T equals the
  pretrained model's label under T, and under the baseline (English), on the same example;
* ``tests``: paired tests on the primary label, between each transform and the baseline per model,
  and between the two models per transform, with Holm-adjusted p-values per task and kind.

Error samples never count: a rate's numerator and denominator, an agreement pair and a test pair
all use scored samples only.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

from harness.analysis import stats
from harness.types import ERROR, Sample

Z95 = 1.959963984540054
TINY_DENOMINATOR = 0.10  # |pt_en - ft_en| below this makes recovery unstable


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def rate_row(samples: Sequence[Sample], labels: Iterable[str]) -> dict:
    scored = [s for s in samples if s.outcome != ERROR]
    n = len(scored)
    rates = {}
    for label in labels:
        k = sum(1 for s in scored if s.outcome == label)
        lo, hi = wilson(k, n)
        rates[label] = {"k": k, "rate": k / n if n else math.nan, "lo": lo, "hi": hi}
    return {"n": n, "errors": len(samples) - n, "rates": rates}


def recovery(pt_en: float, ft_en: float, ft_t: float) -> tuple[float, str]:
    """(ft_T - ft_en) / (pt_en - ft_en): 0 = no recovery, 1 = back to the pretrained rate."""
    denom = round(pt_en - ft_en, 12)  # 0.3 - 0.2 must not read as 0.0999...
    if any(math.isnan(x) for x in (pt_en, ft_en, ft_t)):
        return math.nan, "missing rates"
    if denom == 0:
        return math.nan, "pretrained and fine-tuned English rates are equal: recovery undefined"
    note = ""
    if abs(denom) < TINY_DENOMINATOR:
        note = f"tiny denominator: |pt_en - ft_en| = {abs(denom):.3f} < {TINY_DENOMINATOR}; recovery is unstable"
    return (ft_t - ft_en) / denom, note


def summarize(samples: Sequence[Sample], task_labels: dict[str, tuple[str, ...]], primary: dict[str, str],
              transforms: Sequence[str], baseline: str = "identity", *, n_boot: int = stats.DEFAULT_N_BOOT,
              seed: int = stats.DEFAULT_SEED, paired_test: str = "mcnemar") -> dict:
    """Per (model, task, transform) rates overall and per group, recovery per (task, transform) with a
    bootstrap interval, agreement with the pretrained model, and paired tests (see the module docstring).

    ``paired_test``: ``"mcnemar"`` (exact, default), ``"mcnemar-chi2"`` or ``"permutation"`` (sign flips,
    seeded with ``seed``).
    """
    by_key: dict[tuple, list[Sample]] = defaultdict(list)
    for s in samples:
        by_key[(s.model, s.task, s.transform, "all")].append(s)
        if s.group != "all":  # a task without configs puts everything in "all" already
            by_key[(s.model, s.task, s.transform, s.group)].append(s)
    rows = []
    order = {t: i for i, t in enumerate(transforms)}
    for (model, task, transform, group), ss in sorted(
        by_key.items(), key=lambda kv: (kv[0][1], order.get(kv[0][2], 99), kv[0][3] != "all", kv[0][3], kv[0][0])
    ):
        row = {"model": model, "task": task, "transform": transform, "group": group}
        row.update(rate_row(ss, task_labels[task]))
        rows.append(row)
    idx = {(r["model"], r["task"], r["transform"], r["group"]): r for r in rows}

    def rate(model: str, task: str, transform: str, group: str) -> float:
        r = idx.get((model, task, transform, group))
        return r["rates"][primary[task]]["rate"] if r else math.nan

    rec = []
    for task in task_labels:
        groups = sorted({g for (_, t, _, g) in idx if t == task})
        for group in groups:
            for transform in transforms:
                if (("pretrained", task, transform, group) not in idx) and (("finetuned", task, transform, group) not in idx):
                    continue
                pt, ft = rate("pretrained", task, transform, group), rate("finetuned", task, transform, group)
                pt_en, ft_en = rate("pretrained", task, baseline, group), rate("finetuned", task, baseline, group)
                value, note = recovery(pt_en, ft_en, ft)
                rec.append({
                    "task": task, "transform": transform, "group": group, "label": primary[task],
                    "pretrained": pt, "finetuned": ft, "drop": pt - ft,
                    "pt_en": pt_en, "ft_en": ft_en, "recovery": value,
                    "note": "baseline" if transform == baseline else note,
                })
    outcomes = _outcomes_by_example(samples)
    _add_recovery_intervals(rec, samples, primary, baseline, n_boot, seed)
    return {
        "rows": rows, "recovery": rec,
        "agreement": _agreement(outcomes, task_labels, transforms, baseline),
        "tests": _paired_tests(outcomes, task_labels, primary, transforms, baseline, paired_test, seed),
    }


# -- paired statistics over examples ----------------------------------------------------------

PT, FT = "pretrained", "finetuned"


def _outcomes_by_example(samples: Sequence[Sample]) -> dict[tuple[str, str, str], dict[str, str]]:
    """(model, task, transform) -> {example_id: outcome} for scored samples (the first one if repeated)."""
    out: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    for s in samples:
        if s.outcome != ERROR:
            out[(s.model, s.task, s.transform)].setdefault(s.example_id, s.outcome)
    return out


def _add_recovery_intervals(rec: list[dict], samples: Sequence[Sample], primary: dict[str, str], baseline: str,
                            n_boot: int, seed: int) -> None:
    """Percentile bootstrap intervals for recovery, resampling examples once per (task, group).

    Every cell of a task/group (both models, every transform) sees the same resampled examples. Group
    "all" resamples the task's examples as one pool (not stratified by config).
    Per cell, error samples count in neither numerator nor denominator. Resamples where recovery is
    undefined (a cell without scored samples, or pt_en == ft_en) are dropped and counted.
    """
    method = stats.bootstrap_method(n_boot, seed)
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
        notes = []
        if interval.dropped:
            notes.append(f"{interval.dropped} of {interval.n_boot} resamples dropped (recovery undefined in them)")
        if r["ci"] is not None and r["ci"][0] == r["ci"][1]:
            notes.append("zero width: recovery is the same in every resample (e.g. rates at 0% or 100%), "
                         "so the interval understates the uncertainty")
        if notes:
            r["ci_note"] = "; ".join(notes)


def _agreement(outcomes: dict, task_labels: dict, transforms: Sequence[str], baseline: str) -> list[dict]:
    """Per example: does the fine-tuned label under T equal the pretrained label under T / under English?

    Each rate is over the examples where both compared samples are scored (``n`` and ``n_en``), with a
    95% Wilson interval.
    """
    out = []
    for task in task_labels:
        pt_en = outcomes.get((PT, task, baseline), {})
        for tr in transforms:
            ft, pt = outcomes.get((FT, task, tr)), outcomes.get((PT, task, tr))
            if ft is None or (pt is None and not pt_en):
                continue
            entry = {"task": task, "transform": tr, "group": "all"}
            for key, other, n_key in (("ft_T_vs_pt_T", pt or {}, "n"), ("ft_T_vs_pt_en", pt_en, "n_en")):
                both = [e for e in ft if e in other]
                agree = sum(ft[e] == other[e] for e in both)
                entry[n_key] = len(both)
                entry[key] = agree / len(both) if both else math.nan
                entry[key + "_k"] = agree
                entry[key + "_ci"] = list(wilson(agree, len(both))) if both else None
            entry["ci_method"] = "Wilson"
            out.append(entry)
    return out


def _paired_test(a: dict[str, str], b: dict[str, str], label: str, kind: str, seed: int) -> dict:
    both = sorted(e for e in a if e in b)
    xa = [a[e] == label for e in both]
    xb = [b[e] == label for e in both]
    a_only = sum(x and not y for x, y in zip(xa, xb))
    b_only = sum(y and not x for x, y in zip(xa, xb))
    if kind == "permutation":
        res = stats.paired_permutation([float(x) for x in xa], [float(y) for y in xb], seed=seed)
    elif kind == "mcnemar-chi2":
        res = stats.mcnemar(a_only, b_only, method="chi2")
    elif kind == "mcnemar":
        res = stats.mcnemar(a_only, b_only, method="exact")
    else:
        raise ValueError(f"unknown paired test {kind!r} (mcnemar, mcnemar-chi2 or permutation)")
    return {"n": len(both), "a_only": a_only, "b_only": b_only, "test": res.test,
            "p": res.p if both else None}


def _paired_tests(outcomes: dict, task_labels: dict, primary: dict, transforms: Sequence[str], baseline: str,
                  kind: str, seed: int) -> list[dict]:
    """Paired tests on the primary label over examples scored in both cells.

    ``kind: "transform"``: each transform T against the baseline, per model (a = baseline, b = T).
    ``kind: "model"``: pretrained (a) against fine-tuned (b), per transform.
    ``a_only`` / ``b_only`` count examples with the label in a but not b / in b but not a.
    ``p_holm``: Holm-adjusted within each (task, kind).
    """
    out = []
    for task in task_labels:
        label = primary[task]
        family: dict[str, list[dict]] = {"transform": [], "model": []}
        for model in (PT, FT):
            a = outcomes.get((model, task, baseline))
            for tr in transforms:
                b = outcomes.get((model, task, tr))
                if tr == baseline or a is None or b is None:
                    continue
                family["transform"].append({"task": task, "kind": "transform", "model": model, "a": baseline,
                                            "b": tr, "label": label, **_paired_test(a, b, label, kind, seed)})
        for tr in transforms:
            a, b = outcomes.get((PT, task, tr)), outcomes.get((FT, task, tr))
            if a is None or b is None:
                continue
            family["model"].append({"task": task, "kind": "model", "transform": tr, "a": PT, "b": FT,
                                    "label": label, **_paired_test(a, b, label, kind, seed)})
        for entries in family.values():
            for e, adj in zip(entries, stats.holm([e["p"] for e in entries])):
                e["p_holm"] = adj
            out.extend(entries)
    return out
