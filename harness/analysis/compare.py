"""Comparing two runs cell by cell, e.g. before and after a new fine-tune (`conjugate compare RUN_A RUN_B`).

Cells are (task, conjugate, model role) with group "all". For each common cell the rate of the metric
(each task's primary label, or ``metric``) in A and in B, the difference B − A in points, and a test:

* **paired** — McNemar's exact test on the examples both runs scored in that cell (same example id
  *and* the same prompt text, so a different seed or task version that reuses ids is not mistaken for
  the same example; error samples are left out);
* **unpaired** — where the runs share no such example (or one has no samples.jsonl), a two-sided
  two-proportion z-test (pooled).

p-values are Holm-adjusted over all cells. Recovery per (task, conjugate) is compared too, recomputed
from the rates for the metric (its bootstrap interval is shown where summary.json has one for that
label). :func:`compare_runs` returns plain data; :mod:`harness.outputs.comparison` shows it and
:mod:`harness.commands.compare` is the command. Runs are read by :func:`load_run` (harness.outputs.rundir).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConjugateError

if TYPE_CHECKING:
    from harness.outputs.rundir import Run

BASELINE = "identity"
MODELS = ("pretrained", "finetuned")
TWO_PROPORTION = "two-proportion z-test (pooled, two-sided; unpaired)"


def load_run(path: str | Path) -> Run:
    """A finished run folder (manifest, summary, and samples where present); ConjugateError if it is not one."""
    from harness.outputs.rundir import RunDir

    return RunDir(path).read(samples="optional")


def compare_runs(run_a: str | Path, run_b: str | Path, metric: str | None = None) -> dict:
    """The comparison as a JSON-able dict (see the module docstring); ConjugateError for unusable input."""
    from harness.analysis.stats import holm

    ra, rb = load_run(run_a), load_run(run_b)
    la, lb = ra.task_labels(), rb.task_labels()
    common_tasks = [t for t in lb if t in la]
    label_of, notes = _labels_to_compare(ra, rb, la, lb, common_tasks, metric)
    ia, ib = ra.summary.rows_all(), rb.summary.rows_all()
    order_tr = rb.manifest.transforms
    order_tr += [t for t in ra.manifest.transforms if t not in order_tr]
    pos = {t: i for i, t in enumerate(order_tr)}
    keys = sorted((k for k in ib if k in ia and k[0] in label_of),
                  key=lambda k: (common_tasks.index(k[0]), pos.get(k[1], len(pos)), k[1],
                                 MODELS.index(k[2]) if k[2] in MODELS else 9, k[2]))
    if not keys:
        raise ConjugateError(
            f"{ra.path} and {rb.path} have no (task, conjugate, model) cell in common"
            f" (A: tasks {', '.join(la) or 'none'}, conjugates {', '.join(sorted({k[1] for k in ia})) or 'none'};"
            f" B: tasks {', '.join(lb) or 'none'}, conjugates {', '.join(sorted({k[1] for k in ib})) or 'none'})")
    only_a = [list(k) for k in ia if k not in ib]
    only_b = [list(k) for k in ib if k not in ia]
    if only_a or only_b:
        notes.append(f"{len(only_a)} cells only in A and {len(only_b)} only in B are not compared")
    samples_a, samples_b = ra.sample_records or None, rb.sample_records or None
    if samples_a is None or samples_b is None:
        notes.append("no paired tests: " + " and ".join(
            f"{name} has no samples" for name, x in (("A", samples_a), ("B", samples_b)) if x is None))
    cells = [_cell(key, label_of[key[0]], ia[key], ib[key], samples_a, samples_b) for key in keys]
    partial = sum(1 for c in cells if c["paired"] and c["n_pairs"] < max(c["a"]["n"], c["b"]["n"]))
    if partial:
        notes.append(f"{partial} cells are paired on only part of their examples (the runs differ in limit, seed or "
                     "errors): their rates use all scored samples, their McNemar test only the shared examples")
    for cell, ph in zip(cells, holm([c["p"] for c in cells])):
        cell["p_holm"] = ph
    pairs = sorted({(k[0], k[1]) for k in keys}, key=lambda k: (common_tasks.index(k[0]), pos.get(k[1], len(pos)), k[1]))
    sides = (("a", ia, ra.summary.recovery), ("b", ib, rb.summary.recovery))
    recs = [_recovery_row(task, transform, label_of[task], sides) for task, transform in pairs]
    return {"a": _run_info(ra), "b": _run_info(rb), "metric": metric, "labels": label_of,
            "cells": cells, "recovery": recs, "only_a": only_a, "only_b": only_b, "notes": notes}


def _labels_to_compare(ra: Run, rb: Run, la: dict, lb: dict, common_tasks: list[str],
                       metric: str | None) -> tuple[dict[str, str], list[str]]:
    """task -> the label compared (``metric``, else B's primary label), and notes on tasks skipped or relabelled."""
    notes: list[str] = []
    label_of: dict[str, str] = {}
    for task in common_tasks:
        if metric:
            if metric in la[task] and metric in lb[task]:
                label_of[task] = metric
            else:
                notes.append(f"task {task} skipped: it has no label {metric!r} in both runs "
                             f"(labels: {', '.join(sorted(set(la[task]) | set(lb[task])))})")
        else:
            pa, pb = ra.primary_label(task), rb.primary_label(task)
            if pa != pb:
                notes.append(f"task {task}: primary label differs ({pa} in A, {pb} in B); comparing {pb}")
            if pb in la[task]:
                label_of[task] = pb
    if metric and not label_of:
        all_labels = sorted({l for t in common_tasks for l in la[t] + lb[t]})
        raise ConjugateError(f"--metric {metric!r} is not an outcome label of any task the two runs share"
                             f" (labels: {', '.join(all_labels) or 'none'}; shared tasks: {', '.join(common_tasks) or 'none'})")
    return label_of, notes


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _run_info(run: Run) -> dict:
    spec = run.manifest.spec
    return {"dir": str(run.path), "run_id": run.run_id,
            "pretrained": (spec.get("pretrained") or {}).get("name", "?"),
            "finetuned": (spec.get("finetuned") or {}).get("name", "?"),
            "has_samples": (run.path / "samples.jsonl").exists()}


def _outcomes(samples: list[dict], task: str, transform: str, model: str) -> dict[tuple, str]:
    """(example id, prompt) -> outcome of a cell's scored samples."""
    return {(s.get("example_id"), s.get("prompt")): s.get("outcome") for s in samples
            if s.get("task") == task and s.get("transform") == transform and s.get("model") == model
            and s.get("outcome") != "error" and not s.get("error")}


def _side(r: dict, label: str) -> dict:
    v = (r.get("rates") or {}).get(label) or {}
    return {"k": v.get("k", 0), "n": r.get("n", 0), "rate": _num(v.get("rate")), "lo": _num(v.get("lo")),
            "hi": _num(v.get("hi")), "errors": r.get("errors", 0)}


def _cell(key: tuple[str, str, str], label: str, row_a: dict, row_b: dict, samples_a: list[dict] | None,
          samples_b: list[dict] | None) -> dict:
    """One compared cell: both rates, B − A, and McNemar on shared examples (else the two-proportion z-test)."""
    from harness.analysis.stats import mcnemar, two_proportion_z

    task, transform, model = key
    a, b = _side(row_a, label), _side(row_b, label)
    cell = {"task": task, "transform": transform, "model": model, "label": label, "a": a, "b": b,
            "diff": b["rate"] - a["rate"], "test": None, "paired": False, "n_pairs": 0,
            "a_only": None, "b_only": None, "p": None}
    oa = _outcomes(samples_a, task, transform, model) if samples_a is not None else {}
    ob = _outcomes(samples_b, task, transform, model) if samples_b is not None else {}
    shared = [k for k in oa if k in ob]
    if shared:
        a_only = sum(1 for k in shared if oa[k] == label and ob[k] != label)
        b_only = sum(1 for k in shared if ob[k] == label and oa[k] != label)
        result = mcnemar(a_only, b_only)
        cell.update(test=f"{result.test}; paired on {len(shared)} shared examples", paired=True, n_pairs=len(shared),
                    a_only=a_only, b_only=b_only, p=float(result.p))
    else:
        p = two_proportion_z(a["k"], a["n"], b["k"], b["n"])
        if p is not None:
            cell.update(test=TWO_PROPORTION, p=p)
    return cell


def _recovery_row(task: str, transform: str, label: str, sides) -> dict[str, Any]:
    """Recovery of ``label`` under ``transform`` in A and in B, recomputed from the rates, with any stored CI.

    ``sides``: ("a" / "b", that run's rows of group "all" by (task, transform, model), its summary's recovery).
    """
    from harness.analysis.stats import recovery

    row: dict[str, Any] = {"task": task, "transform": transform, "label": label}
    for name, idx, stored in sides:
        value, note = recovery(_rate(idx, task, BASELINE, "pretrained", label), _rate(idx, task, BASELINE, "finetuned", label),
                               _rate(idx, task, transform, "finetuned", label))
        row[name] = value
        row[f"{name}_note"] = "baseline" if transform == BASELINE else note
        row[f"{name}_ci"] = _recovery_ci(stored, task, transform, label)
    row["diff"] = row["b"] - row["a"]
    return row


def _rate(idx: dict, task: str, transform: str, model: str, label: str) -> float:
    r = idx.get((task, transform, model))
    return _num(((r or {}).get("rates") or {}).get(label, {}).get("rate")) if r else math.nan


def _recovery_ci(recovery_rows: list[dict], task: str, transform: str, label: str) -> list | None:
    for r in recovery_rows:
        if (r.get("task"), r.get("transform"), r.get("group")) == (task, transform, "all") and r.get("label") == label:
            c = r.get("ci")
            return list(c) if isinstance(c, (list, tuple)) and len(c) == 2 else None
    return None
