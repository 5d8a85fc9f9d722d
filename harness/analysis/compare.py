"""`conjugate compare RUN_A RUN_B`: two runs cell by cell, e.g. before and after a new fine-tune.

Cells are (task, conjugate, model role) with group "all". For each common cell the rate of the metric
(each task's primary label, or ``--metric``) in A and in B, the difference B − A in points, and a test:

* **paired** — McNemar's exact test on the examples both runs scored in that cell (same example id
  *and* the same prompt text, so a different seed or task version that reuses ids is not mistaken for
  the same example; error samples are left out);
* **unpaired** — where the runs share no such example (or one has no samples.jsonl), a two-sided
  two-proportion z-test (pooled).

p-values are Holm-adjusted over all cells. Recovery per (task, conjugate) is compared too, recomputed
from the rates for the metric (its bootstrap interval is shown where summary.json has one for that
label). Writes compare.md and compare.html to ``--out`` (default ``RUN_B/compare-<A run id>/``).

This module is imported by the CLI to build its parser, so it imports nothing heavy at module level.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from harness.errors import ConjugateError

BASELINE = "identity"
MODELS = ("pretrained", "finetuned")
MODEL_NAMES = {"pretrained": "pretrained", "finetuned": "fine-tuned"}
TWO_PROPORTION = "two-proportion z-test (pooled, two-sided; unpaired)"

EPILOG = """\
examples:
  conjugate compare results/run-old results/run-new
      rates of each task's primary label, per task x conjugate x model, with paired McNemar tests
  conjugate compare results/run-old results/run-new --metric if --json
      the `if` rate instead, as JSON on stdout
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    c = subparsers.add_parser(
        "compare", help="compare two runs cell by cell (e.g. before and after a new fine-tune)",
        description="Match the (task, conjugate, model) cells of two runs and show the rate of a label in each, the "
        "difference in points and a test (paired McNemar exact on shared examples, else a two-proportion z-test), "
        "plus recovery per (task, conjugate). Writes compare.md and compare.html.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("run_a", metavar="RUN_A", help="the first run folder (before)")
    c.add_argument("run_b", metavar="RUN_B", help="the second run folder (after)")
    c.add_argument("--metric", metavar="LABEL", help="the outcome label to compare (default: each task's primary label, "
                   "e.g. icl for icl_vs_if, refuse for refusal)")
    c.add_argument("--out", metavar="DIR", help="where to write compare.md and compare.html (default RUN_B/compare-<A run id>/)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    return c


# -- statistics -----------------------------------------------------------------------------

def mcnemar(a_only: int, b_only: int) -> tuple[str, float]:
    """(test name, two-sided p) of McNemar's exact test from the discordant pairs."""
    from harness.analysis.stats import mcnemar as exact  # imported here: `conjugate --help` stays light

    r = exact(a_only, b_only)
    return r.test, float(r.p)


def two_proportion(k1: int, n1: int, k2: int, n2: int) -> float | None:
    from harness.analysis.stats import two_proportion_z

    return two_proportion_z(k1, n1, k2, n2)


def holm(ps: list[float | None]) -> list[float | None]:
    from harness.analysis.stats import holm as adjust

    return adjust(ps)


# -- the comparison -------------------------------------------------------------------------

def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _labels(manifest: dict, summary: dict) -> dict[str, list[str]]:
    from harness.outputs.html import task_labels_of

    return task_labels_of(manifest, summary)


def _run_info(path: Path, manifest: dict) -> dict:
    spec = manifest.get("spec") or {}
    return {"dir": str(path), "run_id": manifest.get("run_id") or path.name,
            "pretrained": (spec.get("pretrained") or {}).get("name", "?"),
            "finetuned": (spec.get("finetuned") or {}).get("name", "?"),
            "has_samples": (path / "samples.jsonl").exists()}


def _outcomes(samples: list[dict], task: str, transform: str, model: str) -> dict[tuple, str]:
    """(example id, prompt) -> outcome of a cell's scored samples."""
    return {(s.get("example_id"), s.get("prompt")): s.get("outcome") for s in samples
            if s.get("task") == task and s.get("transform") == transform and s.get("model") == model
            and s.get("outcome") != "error" and not s.get("error")}


def compare_runs(run_a: str | Path, run_b: str | Path, metric: str | None = None) -> dict:
    """The comparison as a JSON-able dict (see the module docstring); ConjugateError for unusable input."""
    from harness.outputs.html import primary_label, read_run
    from harness.analysis.metrics import recovery as recovery_of

    run_a, run_b = Path(run_a), Path(run_b)
    ma, sa, xa = read_run(run_a, need_samples=False)
    mb, sb, xb = read_run(run_b, need_samples=False)
    for path, s in ((run_a, sa), (run_b, sb)):
        if not isinstance(s.get("rows"), list):
            raise ConjugateError(f"{path}/summary.json has no rows (re-render it with `conjugate report {path}`)")
    la, lb = _labels(ma, sa), _labels(mb, sb)
    common_tasks = [t for t in lb if t in la]
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
            pa, pb = primary_label(ma, sa, task, la[task]), primary_label(mb, sb, task, lb[task])
            if pa != pb:
                notes.append(f"task {task}: primary label differs ({pa} in A, {pb} in B); comparing {pb}")
            if pb in la[task]:
                label_of[task] = pb
    if metric and not label_of:
        all_labels = sorted({l for t in common_tasks for l in la[t] + lb[t]})
        raise ConjugateError(f"--metric {metric!r} is not an outcome label of any task the two runs share"
                             f" (labels: {', '.join(all_labels) or 'none'}; shared tasks: {', '.join(common_tasks) or 'none'})")

    def index(summary: dict) -> dict[tuple, dict]:
        return {(r["task"], r["transform"], r["model"]): r for r in summary["rows"] if r.get("group") == "all"}

    ia, ib = index(sa), index(sb)
    order_tr = list((mb.get("spec") or {}).get("transforms") or [])
    order_tr += [t for t in (ma.get("spec") or {}).get("transforms") or [] if t not in order_tr]
    pos = {t: i for i, t in enumerate(order_tr)}
    keys = sorted((k for k in ib if k in ia and k[0] in label_of),
                  key=lambda k: (common_tasks.index(k[0]), pos.get(k[1], len(pos)), k[1],
                                 MODELS.index(k[2]) if k[2] in MODELS else 9, k[2]))
    if not keys:
        raise ConjugateError(
            f"{run_a} and {run_b} have no (task, conjugate, model) cell in common"
            f" (A: tasks {', '.join(la) or 'none'}, conjugates {', '.join(sorted({k[1] for k in ia})) or 'none'};"
            f" B: tasks {', '.join(lb) or 'none'}, conjugates {', '.join(sorted({k[1] for k in ib})) or 'none'})")
    only_a = [list(k) for k in ia if k not in ib]
    only_b = [list(k) for k in ib if k not in ia]
    if only_a or only_b:
        notes.append(f"{len(only_a)} cells only in A and {len(only_b)} only in B are not compared")

    samples_a = xa if xa else None
    samples_b = xb if xb else None
    if samples_a is None or samples_b is None:
        notes.append("no paired tests: " + " and ".join(
            f"{name} has no samples" for name, x in (("A", samples_a), ("B", samples_b)) if x is None))
    cells = []
    for key in keys:
        task, transform, model = key
        label = label_of[task]
        ra, rb = ia[key], ib[key]

        def side(r: dict) -> dict:
            v = (r.get("rates") or {}).get(label) or {}
            return {"k": v.get("k", 0), "n": r.get("n", 0), "rate": _num(v.get("rate")), "lo": _num(v.get("lo")),
                    "hi": _num(v.get("hi")), "errors": r.get("errors", 0)}

        a, b = side(ra), side(rb)
        cell = {"task": task, "transform": transform, "model": model, "label": label, "a": a, "b": b,
                "diff": b["rate"] - a["rate"], "test": None, "paired": False, "n_pairs": 0,
                "a_only": None, "b_only": None, "p": None}
        oa = _outcomes(samples_a, task, transform, model) if samples_a is not None else {}
        ob = _outcomes(samples_b, task, transform, model) if samples_b is not None else {}
        shared = [k for k in oa if k in ob]
        if shared:
            a_only = sum(1 for k in shared if oa[k] == label and ob[k] != label)
            b_only = sum(1 for k in shared if ob[k] == label and oa[k] != label)
            name, p = mcnemar(a_only, b_only)
            cell.update(test=f"{name}; paired on {len(shared)} shared examples", paired=True, n_pairs=len(shared),
                        a_only=a_only, b_only=b_only, p=p)
        else:
            p = two_proportion(a["k"], a["n"], b["k"], b["n"])
            if p is not None:
                cell.update(test=TWO_PROPORTION, p=p)
        cells.append(cell)
    partial = sum(1 for c in cells if c["paired"] and c["n_pairs"] < max(c["a"]["n"], c["b"]["n"]))
    if partial:
        notes.append(f"{partial} cells are paired on only part of their examples (the runs differ in limit, seed or "
                     "errors): their rates use all scored samples, their McNemar test only the shared examples")
    for cell, ph in zip(cells, holm([c["p"] for c in cells])):
        cell["p_holm"] = ph

    def rate(idx: dict, task: str, transform: str, model: str) -> float:
        r = idx.get((task, transform, model))
        return _num(((r or {}).get("rates") or {}).get(label_of[task], {}).get("rate")) if r else math.nan

    def rec_ci(summary: dict, task: str, transform: str) -> list | None:
        for r in summary.get("recovery") or []:
            if (r.get("task"), r.get("transform"), r.get("group")) == (task, transform, "all") and r.get("label") == label_of[task]:
                c = r.get("ci")
                return list(c) if isinstance(c, (list, tuple)) and len(c) == 2 else None
        return None

    recs = []
    pairs = sorted({(k[0], k[1]) for k in keys}, key=lambda k: (common_tasks.index(k[0]), pos.get(k[1], len(pos)), k[1]))
    for task, transform in pairs:
        row: dict[str, Any] = {"task": task, "transform": transform, "label": label_of[task]}
        for name, idx, summary in (("a", ia, sa), ("b", ib, sb)):
            value, note = recovery_of(rate(idx, task, "identity", "pretrained"), rate(idx, task, "identity", "finetuned"),
                                      rate(idx, task, transform, "finetuned"))
            row[name] = value
            row[f"{name}_note"] = "baseline" if transform == BASELINE else note
            row[f"{name}_ci"] = rec_ci(summary, task, transform)
        row["diff"] = row["b"] - row["a"]
        recs.append(row)
    return {"a": _run_info(run_a, ma), "b": _run_info(run_b, mb), "metric": metric, "labels": label_of,
            "cells": cells, "recovery": recs, "only_a": only_a, "only_b": only_b, "notes": notes}


# -- output -----------------------------------------------------------------------------------

def _pct(x: Any) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{100 * x:.1f}"


def _pts(x: Any) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{100 * x:+.1f}"


def _ratio(x: Any) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{x:.2f}"


def _p(p: Any) -> str:
    return "—" if p is None or (isinstance(p, float) and math.isnan(p)) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _rec(value: float, note: str, ci: list | None) -> str:
    if note == "baseline":
        return "(baseline)"
    text = _ratio(value)
    if ci and text != "—":
        text += f" [{_ratio(ci[0])}, {_ratio(ci[1])}]"
    return text


def _rdiff(r: dict) -> str:
    return "—" if r["transform"] == BASELINE or math.isnan(r["diff"]) else f"{r['diff']:+.2f}"


def _short_test(cell: dict) -> str:
    if cell["test"] is None:
        return "—"
    return f"McNemar (n={cell['n_pairs']}, {cell['a_only']}/{cell['b_only']})" if cell["paired"] else "two-prop. z"


def text_table(result: dict) -> str:
    from harness.outputs.format import display_name

    a, b = result["a"], result["b"]
    lines = [f"A: {a['run_id']} ({a['pretrained']} vs {a['finetuned']})",
             f"B: {b['run_id']} ({b['pretrained']} vs {b['finetuned']})", ""]
    head = ["task", "conjugate", "model", "label", "A %", "B %", "B−A pts", "test", "p", "p (Holm)"]
    rows = [[c["task"], display_name(c["transform"]), MODEL_NAMES.get(c["model"], c["model"]), c["label"],
             f"{_pct(c['a']['rate'])} (n={c['a']['n']})", f"{_pct(c['b']['rate'])} (n={c['b']['n']})", _pts(c["diff"]),
             _short_test(c), _p(c["p"]), _p(c["p_holm"])] for c in result["cells"]]
    lines += _align(head, rows, right={4, 5, 6, 8, 9})
    lines += ["", "Recovery (ft_T − ft_en) / (pt_en − ft_en):"]
    rrows = [[r["task"], display_name(r["transform"]), r["label"], _rec(r["a"], r["a_note"], r["a_ci"]),
              _rec(r["b"], r["b_note"], r["b_ci"]), _rdiff(r)]
             for r in result["recovery"]]
    lines += _align(["task", "conjugate", "label", "A", "B", "B−A"], rrows, right={3, 4, 5})
    tests = sorted({c["test"].split(";")[0] for c in result["cells"] if c["test"]})
    lines += ["", "Tests: " + "; ".join(tests) + ". McNemar (n=pairs, a/b) = discordant pairs: label only in A / only in B."
              if tests else "Tests: none (no data)."]
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def _align(head: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(r):
        return "  ".join(str(x).rjust(w) if i in right else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths))).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


MD_TEMPLATE = """# conjugate compare: {{ a.run_id }} → {{ b.run_id }}

- **A:** `{{ a.dir }}` ({{ a.pretrained }} vs {{ a.finetuned }})
- **B:** `{{ b.dir }}` ({{ b.pretrained }} vs {{ b.finetuned }})
- **Metric:** {{ metric_text }}

Rates in % of scored samples. B − A in points. Test: {{ tests_text }}. p (Holm): adjusted over all {{ cells | length }} cells.
{% for n in notes %}
> {{ n }}
{% endfor %}

| Task | Conjugate | Model | Label | A % (n) | B % (n) | B − A (pts) | Test | p | p (Holm) |
|---|---|---|---|---|---|---|---|---|---|
{% for c in rows %}| {{ c.task }} | {{ c.name }} | {{ c.model }} | {{ c.label }} | {{ c.a }} | {{ c.b }} | {{ c.diff }} | {{ c.test }} | {{ c.p }} | {{ c.p_holm }} |
{% endfor %}

## Recovery

Recovery = (ft_T − ft_en) / (pt_en − ft_en) on the compared label; 95% interval where the run's summary has one.

| Task | Conjugate | Label | A | B | B − A |
|---|---|---|---|---|---|
{% for r in recs %}| {{ r.task }} | {{ r.name }} | {{ r.label }} | {{ r.a }} | {{ r.b }} | {{ r.diff }} |
{% endfor %}

Made by `conjugate compare`.
"""


def _view(result: dict, out_dir: Path) -> dict:
    """Formatted rows shared by compare.md and compare.html."""
    from harness.outputs.format import display_name

    def report_link(run: dict, **filters) -> str | None:
        from urllib.parse import urlencode

        html = Path(run["dir"]) / "report.html"
        if not html.exists():
            return None
        rel = os.path.relpath(html.resolve(), out_dir.resolve())
        return rel.replace(os.sep, "/") + "#samples?" + urlencode({k: v for k, v in filters.items() if v})

    rows = []
    for c in result["cells"]:
        f = dict(task=c["task"], transform=c["transform"], model=c["model"], outcome=c["label"])
        rows.append({
            "task": c["task"], "name": display_name(c["transform"]), "transform": c["transform"],
            "model": MODEL_NAMES.get(c["model"], c["model"]), "label": c["label"],
            "a": f"{_pct(c['a']['rate'])} ({c['a']['n']})", "b": f"{_pct(c['b']['rate'])} ({c['b']['n']})",
            "a_href": report_link(result["a"], **f), "b_href": report_link(result["b"], **f),
            "diff": _pts(c["diff"]), "sig": c["p_holm"] is not None and c["p_holm"] < 0.05,
            "test": _short_test(c), "test_full": c["test"] or "no data", "p": _p(c["p"]), "p_holm": _p(c["p_holm"]),
        })
    recs = []
    for r in result["recovery"]:
        f = dict(task=r["task"], transform=r["transform"], model="finetuned", outcome=r["label"])
        recs.append({"task": r["task"], "name": display_name(r["transform"]), "label": r["label"],
                     "a": _rec(r["a"], r["a_note"], r["a_ci"]), "b": _rec(r["b"], r["b_note"], r["b_ci"]),
                     "a_href": report_link(result["a"], **f), "b_href": report_link(result["b"], **f),
                     "diff": _rdiff(r)})
    tests = sorted({c["test"].split(";")[0] for c in result["cells"] if c["test"]})
    return {
        "a": result["a"], "b": result["b"], "cells": result["cells"], "rows": rows, "recs": recs, "notes": result["notes"],
        "metric_text": f"`{result['metric']}`" if result["metric"] else "each task's primary label (" + ", ".join(
            f"{t}: {l}" for t, l in result["labels"].items()) + ")",
        "tests_text": "; ".join(tests) or "none",
    }


def write_outputs(result: dict, out_dir: Path) -> tuple[Path, Path]:
    from harness.outputs.html import inline_assets, render_template
    from harness.io import atomic_write_text
    from harness.templating import render

    out_dir.mkdir(parents=True, exist_ok=True)
    view = _view(result, out_dir)
    md = out_dir / "compare.md"
    atomic_write_text(md, render(MD_TEMPLATE, view, "compare.md"))
    html = out_dir / "compare.html"
    atomic_write_text(html, render_template("compare.html.j2", {**view, **inline_assets()}))
    return md, html


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def run(args: argparse.Namespace) -> int:
    result = compare_runs(args.run_a, args.run_b, args.metric)
    out_dir = Path(args.out) if args.out else Path(args.run_b) / f"compare-{result['a']['run_id']}"
    try:
        md, html = write_outputs(result, out_dir)
    except OSError as exc:
        raise ConjugateError(f"could not write the comparison to {out_dir}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(_clean({**result, "files": [str(md), str(html)]}), indent=2, ensure_ascii=False))
        print(f"wrote {md} and {html}", file=sys.stderr)
    else:
        print(text_table(result))
        print(f"\nwrote {md}\n      {html}")
    return 0
