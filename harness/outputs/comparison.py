"""How a comparison of two runs (:func:`harness.analysis.compare.compare_runs`) is shown.

The text table of `conjugate compare`, compare.md and compare.html (the shared, sandboxed and
autoescaped HTML template environment of :mod:`harness.outputs.html`), and the strict JSON of ``--json``.
Numbers are formatted by :mod:`harness.outputs.format`; the rows of compare.md and compare.html come from
one view (:func:`view`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from harness.outputs.format import display_name, pct, ratio, signed

BASELINE = "identity"
MODEL_NAMES = {"pretrained": "pretrained", "finetuned": "fine-tuned"}

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


# -- cells -------------------------------------------------------------------------------------

def _p(p: Any) -> str:
    """p-values as a comparison table shows them: three decimals, ``<0.001`` below."""
    return "—" if p is None or (isinstance(p, float) and math.isnan(p)) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _rec(value: float, note: str, ci: list | None) -> str:
    if note == "baseline":
        return "(baseline)"
    text = ratio(value)
    if ci and text != "—":
        text += f" [{ratio(ci[0])}, {ratio(ci[1])}]"
    return text


def _rdiff(r: dict) -> str:
    return "—" if r["transform"] == BASELINE or math.isnan(r["diff"]) else f"{r['diff']:+.2f}"


def _short_test(cell: dict) -> str:
    if cell["test"] is None:
        return "—"
    return f"McNemar (n={cell['n_pairs']}, {cell['a_only']}/{cell['b_only']})" if cell["paired"] else "two-prop. z"


def _test_names(result: dict) -> list[str]:
    return sorted({c["test"].split(";")[0] for c in result["cells"] if c["test"]})


# -- the text table -------------------------------------------------------------------------------

def text_table(result: dict) -> str:
    """The table `conjugate compare` prints: cells, recovery, the tests used and the notes."""
    a, b = result["a"], result["b"]
    lines = [f"A: {a['run_id']} ({a['pretrained']} vs {a['finetuned']})",
             f"B: {b['run_id']} ({b['pretrained']} vs {b['finetuned']})", ""]
    head = ["task", "conjugate", "model", "label", "A %", "B %", "B−A pts", "test", "p", "p (Holm)"]
    rows = [[c["task"], display_name(c["transform"]), MODEL_NAMES.get(c["model"], c["model"]), c["label"],
             f"{pct(c['a']['rate'])} (n={c['a']['n']})", f"{pct(c['b']['rate'])} (n={c['b']['n']})", signed(c["diff"]),
             _short_test(c), _p(c["p"]), _p(c["p_holm"])] for c in result["cells"]]
    lines += _align(head, rows, right={4, 5, 6, 8, 9})
    lines += ["", "Recovery (ft_T − ft_en) / (pt_en − ft_en):"]
    rrows = [[r["task"], display_name(r["transform"]), r["label"], _rec(r["a"], r["a_note"], r["a_ci"]),
              _rec(r["b"], r["b_note"], r["b_ci"]), _rdiff(r)]
             for r in result["recovery"]]
    lines += _align(["task", "conjugate", "label", "A", "B", "B−A"], rrows, right={3, 4, 5})
    tests = _test_names(result)
    lines += ["", "Tests: " + "; ".join(tests) + ". McNemar (n=pairs, a/b) = discordant pairs: label only in A / only in B."
              if tests else "Tests: none (no data)."]
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def _align(head: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(r):
        return "  ".join(str(x).rjust(w) if i in right else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths))).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


# -- compare.md and compare.html --------------------------------------------------------------------

def _report_link(run: dict, out_dir: Path, **filters) -> str | None:
    """A link from ``out_dir`` into the run's report.html sample browser, filtered to a cell (None without one)."""
    from urllib.parse import urlencode

    html = Path(run["dir"]) / "report.html"
    if not html.exists():
        return None
    rel = os.path.relpath(html.resolve(), out_dir.resolve())
    return rel.replace(os.sep, "/") + "#samples?" + urlencode({k: v for k, v in filters.items() if v})


def view(result: dict, out_dir: Path) -> dict:
    """Formatted rows shared by compare.md and compare.html."""
    rows = []
    for c in result["cells"]:
        f = dict(task=c["task"], transform=c["transform"], model=c["model"], outcome=c["label"])
        rows.append({
            "task": c["task"], "name": display_name(c["transform"]), "transform": c["transform"],
            "model": MODEL_NAMES.get(c["model"], c["model"]), "label": c["label"],
            "a": f"{pct(c['a']['rate'])} ({c['a']['n']})", "b": f"{pct(c['b']['rate'])} ({c['b']['n']})",
            "a_href": _report_link(result["a"], out_dir, **f), "b_href": _report_link(result["b"], out_dir, **f),
            "diff": signed(c["diff"]), "sig": c["p_holm"] is not None and c["p_holm"] < 0.05,
            "test": _short_test(c), "test_full": c["test"] or "no data", "p": _p(c["p"]), "p_holm": _p(c["p_holm"]),
        })
    recs = []
    for r in result["recovery"]:
        f = dict(task=r["task"], transform=r["transform"], model="finetuned", outcome=r["label"])
        recs.append({"task": r["task"], "name": display_name(r["transform"]), "label": r["label"],
                     "a": _rec(r["a"], r["a_note"], r["a_ci"]), "b": _rec(r["b"], r["b_note"], r["b_ci"]),
                     "a_href": _report_link(result["a"], out_dir, **f), "b_href": _report_link(result["b"], out_dir, **f),
                     "diff": _rdiff(r)})
    return {
        "a": result["a"], "b": result["b"], "cells": result["cells"], "rows": rows, "recs": recs, "notes": result["notes"],
        "metric_text": f"`{result['metric']}`" if result["metric"] else "each task's primary label (" + ", ".join(
            f"{t}: {l}" for t, l in result["labels"].items()) + ")",
        "tests_text": "; ".join(_test_names(result)) or "none",
    }


def write_outputs(result: dict, out_dir: Path) -> tuple[Path, Path]:
    """compare.md and compare.html in ``out_dir``, each written atomically."""
    from harness.io import atomic_write_text
    from harness.outputs.html import inline_assets, render_template
    from harness.templating import render

    out_dir.mkdir(parents=True, exist_ok=True)
    v = view(result, out_dir)
    md = out_dir / "compare.md"
    atomic_write_text(md, render(MD_TEMPLATE, v, "compare.md"))
    html = out_dir / "compare.html"
    atomic_write_text(html, render_template("compare.html.j2", {**v, **inline_assets()}))
    return md, html


def strict_json(obj: Any) -> Any:
    """NaN and infinities -> None, so that ``--json`` prints strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [strict_json(v) for v in obj]
    return obj
