"""The ``agreement`` and ``tests`` sections: per-example comparisons of the same example across cells.

* ``agreement``: per (task, transform), how often the fine-tuned model's label under T equals the pretrained
  model's label under T, and under the baseline (English), on the same example;
* ``tests``: paired tests on the primary label, between each transform and the baseline per model, and
  between the two models per transform, with Holm-adjusted p-values per task and kind.

Only scored samples pair (:attr:`SummaryContext.outcomes`).
"""
from __future__ import annotations

import math
from typing import Any

from harness.analysis import stats
from harness.analysis.summary.sections import FT, PT, SummaryContext, section


@section(keys=("agreement",), order=30)
def agreement(ctx: SummaryContext) -> dict[str, Any]:
    """Per example: does the fine-tuned label under T equal the pretrained label under T / under English?

    Each rate is over the examples where both compared samples are scored (``n`` and ``n_en``), with a
    95% Wilson interval.
    """
    out = []
    for task in ctx.task_labels:
        pt_en = ctx.outcomes.get((PT, task, ctx.baseline), {})
        for tr in ctx.transforms:
            ft, pt = ctx.outcomes.get((FT, task, tr)), ctx.outcomes.get((PT, task, tr))
            if ft is None or (pt is None and not pt_en):
                continue
            entry: dict[str, Any] = {"task": task, "transform": tr, "group": "all"}
            for key, other, n_key in (("ft_T_vs_pt_T", pt or {}, "n"), ("ft_T_vs_pt_en", pt_en, "n_en")):
                both = [e for e in ft if e in other]
                agree = sum(ft[e] == other[e] for e in both)
                entry[n_key] = len(both)
                entry[key] = agree / len(both) if both else math.nan
                entry[key + "_k"] = agree
                entry[key + "_ci"] = list(stats.wilson(agree, len(both))) if both else None
            entry["ci_method"] = "Wilson"
            out.append(entry)
    return {"agreement": out}


def paired_test(a: dict[str, str], b: dict[str, str], label: str, kind: str, seed: int) -> dict:
    """One paired test of ``label`` between two cells' outcomes, over the examples both scored."""
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


@section(keys=("tests",), order=40)
def tests(ctx: SummaryContext) -> dict[str, Any]:
    """Paired tests on the primary label over examples scored in both cells.

    ``kind: "transform"``: each transform T against the baseline, per model (a = baseline, b = T).
    ``kind: "model"``: pretrained (a) against fine-tuned (b), per transform.
    ``a_only`` / ``b_only`` count examples with the label in a but not b / in b but not a.
    ``p_holm``: Holm-adjusted within each (task, kind).
    """
    out = []
    kind, seed, baseline, outcomes = ctx.paired_test, ctx.seed, ctx.baseline, ctx.outcomes
    for task in ctx.task_labels:
        label = ctx.primary[task]
        family: dict[str, list[dict]] = {"transform": [], "model": []}
        for model in (PT, FT):
            a = outcomes.get((model, task, baseline))
            for tr in ctx.transforms:
                b = outcomes.get((model, task, tr))
                if tr == baseline or a is None or b is None:
                    continue
                family["transform"].append({"task": task, "kind": "transform", "model": model, "a": baseline,
                                            "b": tr, "label": label, **paired_test(a, b, label, kind, seed)})
        for tr in ctx.transforms:
            a, b = outcomes.get((PT, task, tr)), outcomes.get((FT, task, tr))
            if a is None or b is None:
                continue
            family["model"].append({"task": task, "kind": "model", "transform": tr, "a": PT, "b": FT,
                                    "label": label, **paired_test(a, b, label, kind, seed)})
        for entries in family.values():
            for e, adj in zip(entries, stats.holm([e["p"] for e in entries])):
                e["p_holm"] = adj
            out.extend(entries)
    return {"tests": out}
