"""What `conjugate check` shows: the header, the table, the summary line, --json cells and JUnit XML."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.analysis.check.baseline import Baseline
from harness.analysis.check.cells import (DEFINITION_CHANGED, MISSING, NEW, PASS, REGRESSION, SKIP, Cell, Gate, pct,
                                          pts)
from harness.analysis.check.files import write_text
from harness.analysis.check.load import Run

_COLORS = {PASS: "32", REGRESSION: "31;1", MISSING: "31;1", DEFINITION_CHANGED: "35;1", NEW: "33", SKIP: "33"}


def color(text: str, status: str, on: bool) -> str:
    return f"\033[{_COLORS[status]}m{text}\033[0m" if on and status in _COLORS else text


def status_word(c: Cell) -> str:
    return c.status + (" (allowed)" if c.status == MISSING and not c.failing else "")


def summary_line(cells: list[Cell]) -> str:
    reg = sum(c.status == REGRESSION for c in cells)
    miss = sum(c.status == MISSING for c in cells)
    miss_fail = sum(c.status == MISSING and c.failing for c in cells)
    new = sum(c.status == NEW for c in cells)
    skip = sum(c.status == SKIP for c in cells)
    changed = sum(c.status == DEFINITION_CHANGED for c in cells)
    failing = any(c.failing for c in cells)
    s = f"{'FAIL' if failing else 'PASS'}: {reg} regression{'' if reg == 1 else 's'} in {len(cells)} cells"
    extra = [f"{changed} with a changed definition, not compared"] if changed else []
    if miss:
        extra.append(f"{miss} missing" + ("" if miss_fail == miss else f" ({miss - miss_fail} allowed)"))
    if new:
        extra.append(f"{new} new")
    if skip:
        extra.append(f"{skip} without a limit")
    return s + (f" ({', '.join(extra)})" if extra else "")


def header(run: Run, gate: Gate, base: Baseline | None) -> str:
    """Which run, against what, whose rates, which metric and the rule that fails a cell."""
    who = ", ".join(f"{m} ({run.model_name(m)})" for m in gate.models)
    metric = ", ".join(f"{l} ({t})" for t, l in gate.pairs)
    lines = [f"conjugate check: run {run.run_id} ({run.path})"]
    if base is not None:
        src = base.doc.get("source") or {}
        lines.append(f"  baseline: {base.path} (run {src.get('run_id', '?')}, spec {src.get('spec_hash', '?')}, "
                     f"created {base.doc.get('created', '?')})")
        rule = (f"a {'drop' if gate.direction == 'higher' else 'rise'} of more than {100 * gate.max_drop:.1f} points "
                "is a regression" + (f", if significant (one-sided Fisher exact, p < {gate.alpha:g})"
                                     if gate.significant else ""))
    else:
        parts = []
        if gate.min_rate is not None:
            parts.append(f"minimum {pct(gate.min_rate)}%")
        if gate.max_rate is not None:
            parts.append(f"maximum {pct(gate.max_rate)}%")
        if gate.thresholds:
            parts.append(f"limits from {gate.thresholds}")
        rule = ", ".join(parts) + (" (failing only when the whole 95% interval is past the limit)"
                                   if gate.significant else "")
    lines.append(f"  model: {who}")
    lines.append(f"  metric: {metric}, {gate.direction} is better; {rule}")
    return "\n".join(lines)


def render_table(cells: list[Cell], mode: str, colored: bool) -> list[str]:
    """The aligned table; the model and metric columns only when they vary."""
    from harness.outputs.format import display_name

    multi_model = len({c.model for c in cells}) > 1
    multi_label = len({(c.task, c.label) for c in cells}) > len({c.task for c in cells})
    head = ["task", "conjugate"] + (["model"] if multi_model else []) + (["metric"] if multi_label else [])
    head += (["baseline %", "now % [95% CI]", "change", "n (base/now)"] if mode == "baseline"
             else ["limit %", "now % [95% CI]", "n"]) + ["status"]
    rows = []
    for c in cells:
        r = [c.task, display_name(c.transform)] + ([c.model] if multi_model else []) + ([c.label] if multi_label else [])
        now = "—" if c.rate is None else f"{pct(c.rate)} [{pct(c.lo)}, {pct(c.hi)}]"
        if mode == "baseline":
            r += [pct(c.base_rate), now, "—" if c.change is None else pts(c.change),
                  f"{c.base_n if c.base_n is not None else '—'}/{c.n if c.n is not None else '—'}"]
        else:
            lim = " ".join(x for x in ((f">= {pct(c.limit_min)}" if c.limit_min is not None else ""),
                                        (f"<= {pct(c.limit_max)}" if c.limit_max is not None else "")) if x) or "—"
            r += [lim, now, "—" if c.n is None else str(c.n)]
        r.append(status_word(c))
        rows.append(r)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    right = {i for i, h in enumerate(head) if h in ("baseline %", "change", "n (base/now)", "n", "limit %")}

    def fmt(r, status=None):
        parts = [str(x).rjust(w) if i in right else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths))]
        if status:
            parts[-1] = color(parts[-1], status, colored)
        return "  ".join(parts).rstrip()

    out = [fmt(head), "  ".join("-" * w for w in widths)]
    out += [fmt(r, c.status) for r, c in zip(rows, cells)]
    return out


def report_lines(cells: list[Cell], notes: list[str], junit: str | None, colored: bool) -> list[str]:
    """After the table: each problem's reason, the notes, where the JUnit XML went, and the summary line."""
    out: list[str] = []
    problems = [c for c in cells if c.message and c.status in (REGRESSION, MISSING, DEFINITION_CHANGED)]
    other = [c for c in cells if c.notes]
    if problems or other or notes or junit:
        out.append("")
    for c in problems:
        out.append(color(status_word(c), c.status, colored) + f" {c.task}/{c.transform} [{c.model}]: {c.message}")
    for c in other:
        for n in c.notes:
            out.append(f"note: {c.task}/{c.transform} [{c.model}]: {n}")
    for n in notes:
        out.append(f"note: {n}")
    if junit:
        out.append(f"JUnit XML: {junit}")
    failing = any(c.failing for c in cells)
    out += ["", color(summary_line(cells), REGRESSION if failing else PASS, colored)]
    return out


def write_junit(path: str, cells: list[Cell], props: dict[str, Any]) -> None:
    """One testcase per cell (classname = task); failures are failing cells, skips are new/unlimited/allowed."""
    import xml.etree.ElementTree as ET

    from harness.outputs.format import display_name

    failures = sum(c.failing for c in cells)
    skipped = sum((c.status in (NEW, SKIP)) or (c.status == MISSING and not c.failing) for c in cells)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    attrs = {"name": "conjugate-check", "tests": str(len(cells)), "failures": str(failures), "errors": "0",
             "skipped": str(skipped), "time": "0"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", {**attrs, "timestamp": stamp})
    pe = ET.SubElement(suite, "properties")
    for k, v in props.items():
        ET.SubElement(pe, "property", {"name": k, "value": "" if v is None else str(v)})
    labels_per_task: dict[str, set] = {}
    for c in cells:
        labels_per_task.setdefault(c.task, set()).add(c.label)
    for c in cells:
        name = f"{c.transform}/{c.model}" + (f"/{c.label}" if len(labels_per_task[c.task]) > 1 else "")
        tc = ET.SubElement(suite, "testcase", {"classname": c.task, "name": name, "time": "0"})
        detail = _detail(c, display_name)
        if c.failing:
            el = ET.SubElement(tc, "failure", {"message": c.message, "type": c.status.lower()})
            el.text = detail
            continue
        if c.status in (NEW, SKIP, MISSING):
            ET.SubElement(tc, "skipped", {"message": f"{c.status.lower()}: {c.message}"})
        ET.SubElement(tc, "system-out").text = detail
    ET.indent(root)
    write_text(Path(path), '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n", "--junit")


def _detail(c: Cell, display_name) -> str:
    bits = [f"{c.task} / {c.transform} ({display_name(c.transform)}) / {c.model}: {c.label}"]
    if c.base_n is not None:
        bits.append(f"baseline {pct(c.base_rate)}% ({c.base_k}/{c.base_n})")
    if c.limit_min is not None:
        bits.append(f"minimum {pct(c.limit_min)}%")
    if c.limit_max is not None:
        bits.append(f"maximum {pct(c.limit_max)}%")
    bits.append("now " + ("—" if c.rate is None else f"{pct(c.rate)}% ({c.k}/{c.n}, 95% CI {pct(c.lo)}-{pct(c.hi)}%)"))
    if c.change is not None:
        bits.append(f"change {pts(c.change)} points")
    if c.p_value is not None:
        bits.append(f"one-sided Fisher p = {c.p_value:.3g}")
    text = "; ".join(bits)
    if c.message:
        text += f"\n{c.status}: {c.message}"
    for n in c.notes:
        text += f"\nnote: {n}"
    return text


def cell_json(c: Cell) -> dict:
    """A cell in --json output (rates as fractions, None where unknown)."""
    return {"task": c.task, "transform": c.transform, "model": c.model, "label": c.label, "status": c.status,
            "failing": c.failing, "baseline": None if c.base_n is None else {"k": c.base_k, "n": c.base_n, "rate": c.base_rate},
            "min": c.limit_min, "max": c.limit_max, "k": c.k, "n": c.n, "errors": c.errors, "rate": c.rate,
            "lo": c.lo, "hi": c.hi, "change": c.change, "p_value": c.p_value, "message": c.message, "notes": c.notes}
