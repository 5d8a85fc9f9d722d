"""The rate sections: the recovery heatmap, and per task the rate table (rates, drop, recovery with its
interval), all outcomes, and the primary rate by config."""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.outputs.format import ci, display_name, interval, pct, ratio, signed
from harness.outputs.views.common import DASH, MODELS, Cell, finite, href, model_name, ordered


@dataclass
class TaskRows:
    """One task's rows of summary.json, indexed: ``rows[(model, transform, group)]``, ``recs[(transform,
    group)]``, and the conjugates that have either, in the spec's order."""

    task: str
    rows: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    recs: dict[tuple[str, str], dict] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, summary: dict, task: str, transforms: list[str]) -> "TaskRows":
        rows = {(r["model"], r["transform"], r["group"]): r for r in summary.get("rows") or [] if r.get("task") == task}
        recs = {(r["transform"], r["group"]): r for r in summary.get("recovery") or [] if r.get("task") == task}
        present = ordered({tr for (_, tr, _) in rows} | {tr for (tr, _) in recs}, transforms)
        return cls(task, rows, recs, present, sorted({g for (_, _, g) in rows if g != "all"}))


def heatmap_view(plots: dict[str, str]) -> dict | None:
    """The recovery overview: the heatmap's file name, when one was drawn."""
    name = plots.get("recovery-heatmap")
    return {"plot": name} if name else None


def _rate_cell(t: TaskRows, row: dict | None, label: str, **link) -> Cell:
    r = (row or {}).get("rates", {}).get(label)
    if not r or not finite(r.get("rate")):
        return DASH
    return Cell(ci(r), href(task=t.task, outcome=label, **link), f"{r.get('k', '?')} of {row['n']} samples")


def _recovery_cells(t: TaskRows, tr: str, rec: dict | None, label: str) -> tuple[Cell, Cell]:
    if rec is None:
        return DASH, DASH
    if rec.get("note") == "baseline":
        return Cell("(baseline)", title="the baseline conjugate: recovery is 0 by definition", cls="baseline"), DASH
    link = href(task=t.task, transform=tr, model="finetuned", outcome=label)
    value = rec.get("recovery")
    rtext = ratio(value if finite(value) else None)
    title = rec.get("note") or None
    c = rec.get("ci")
    ctext = interval(c) if isinstance(c, (list, tuple)) and len(c) == 2 else "—"
    return (Cell(rtext, link, title),
            Cell(ctext, link if ctext != "—" else None, f"95% CI: {rec['ci_method']}" if rec.get("ci_method") else None))


def rate_table_view(t: TaskRows, label: str, plot: str | None) -> dict:
    """Rates of ``label`` (pretrained, fine-tuned), drop, recovery and its interval, n, per conjugate."""
    rows, notes = [], []
    ci_method, ci_dropped = "not computed", 0
    for tr in t.present:
        pt, ft = t.rows.get(("pretrained", tr, "all")), t.rows.get(("finetuned", tr, "all"))
        rec = t.recs.get((tr, "all"))
        recovery, recovery_ci = _recovery_cells(t, tr, rec, label)
        drop = (rec or {}).get("drop")
        rows.append({
            "name": display_name(tr), "transform": tr,
            "pt": _rate_cell(t, pt, label, transform=tr, model="pretrained"),
            "ft": _rate_cell(t, ft, label, transform=tr, model="finetuned"),
            "drop": Cell(signed(drop), href(task=t.task, transform=tr, outcome=label), "pretrained − fine-tuned, in points")
            if finite(drop) else DASH,
            "recovery": recovery, "recovery_ci": recovery_ci,
            "n_pt": Cell(str(pt["n"]), href(task=t.task, transform=tr, model="pretrained")) if pt else Cell("0"),
            "n_ft": Cell(str(ft["n"]), href(task=t.task, transform=tr, model="finetuned")) if ft else Cell("0"),
        })
        if rec is None:
            continue
        ci_dropped += rec.get("ci_dropped") or 0
        ci_method = rec.get("ci_method") or ci_method
        if rec.get("note") and rec["note"] != "baseline" and rec["note"] not in notes:
            notes.append(rec["note"])
        if rec.get("ci_note"):
            notes.append(f"Recovery 95% CI for {display_name(tr)}: {rec['ci_note']}.")
    return {"label": label, "rows": rows, "notes": notes, "ci_method": ci_method, "ci_dropped": ci_dropped,
            "plot": plot}


def outcomes_view(t: TaskRows, labels: list[str]) -> list[dict]:
    """Every label's rate (and the error count) per conjugate and model."""
    out = []
    for tr in t.present:
        for model in MODELS:
            row = t.rows.get((model, tr, "all"))
            if not row:
                continue
            cells = []
            for lab in labels:
                r = row.get("rates", {}).get(lab)
                cells.append(Cell(pct(r["rate"]), href(task=t.task, transform=tr, model=model, outcome=lab),
                                  f"{r.get('k', '?')} of {row['n']}; 95% CI {interval([r.get('lo'), r.get('hi')], pct)}")
                             if r and finite(r.get("rate")) else DASH)
            out.append({"name": display_name(tr), "model": model_name(model), "cells": cells,
                        "errors": Cell(str(row.get("errors", 0)), href(task=t.task, transform=tr, model=model, outcome="error"))})
    return out


def by_config_view(t: TaskRows, label: str) -> dict | None:
    """The primary rate per config (group), pretrained / fine-tuned; None for a task without configs."""
    if not t.groups:
        return None
    rows = []
    for tr in t.present:
        cells = []
        for g in t.groups:
            pair = []
            for model in MODELS:
                r = t.rows.get((model, tr, g))
                rate = (r["rates"].get(label) or {}).get("rate") if r else None
                pair.append(Cell(pct(rate), href(task=t.task, transform=tr, model=model, group=g, outcome=label),
                                 f"{model_name(model)}: {r['rates'][label]['k']} of {r['n']}") if finite(rate) else DASH)
            cells.append(pair)
        rows.append({"name": display_name(tr), "cells": cells})
    return {"label": label, "groups": t.groups, "rows": rows}
