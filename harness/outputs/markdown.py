"""report.md: paper-style tables rendered from summary.json (never generates)."""
from __future__ import annotations

from typing import Any

from harness.outputs.format import agreement_cell, ci, display_name, interval, pct, pvalue, ratio, signed
from harness.templating import render


TEMPLATE = """# conjugate report: {{ run_id }}

- **Pretrained:** `{{ spec.pretrained.name }}` ({{ spec.pretrained.model }}, backend {{ spec.pretrained.backend }})
- **Fine-tuned:** `{{ spec.finetuned.name }}` ({{ spec.finetuned.model }}, backend {{ spec.finetuned.backend }})
- **Tasks:** {{ spec.tasks | join(", ") }} · **transforms:** {{ spec.transforms | join(", ") }} · **limit:** {{ spec.limit or "none" }} · **seed:** {{ spec.seed }}
- **Samples:** {{ counts.samples }} ({{ counts.errors }} errors){% if generation %} · generated {{ generation.generated }}, from cache {{ generation.cached }}, failed {{ generation.failed }}{% endif %}
{% for note in notes %}
> {{ note }}
{% endfor %}
{% if plots.get("recovery-heatmap") %}
![recovery by task and conjugate]({{ plots["recovery-heatmap"] }})
{% endif %}
{% for t in tables %}
## {{ t.task }}: {{ t.label }} rate by conjugate

Rates in %, with 95% Wilson intervals; n = scored samples per cell. Drop = pretrained − fine-tuned.
Recovery = (ft_T − ft_en) / (pt_en − ft_en): 0 means the conjugate changes nothing, 1 means the
fine-tuned model is back at the pretrained English rate. Recovery 95% CI: {{ t.ci_method }}
(one resample of examples shared by both models and every conjugate; error samples left out of each
cell; resamples where recovery is undefined are dropped{% if t.ci_dropped %}, {{ t.ci_dropped }} in this table{% endif %}).
{% if plots.get(t.task) %}
![{{ t.task }} {{ t.label }} rate by conjugate]({{ plots[t.task] }})
{% endif %}
| Conjugate | Pretrained | Fine-tuned | Drop | Recovery | Recovery 95% CI | n (pt/ft) |
|---|---|---|---|---|---|---|
{% for r in t.rows %}| {{ r.name }} | {{ r.pt }} | {{ r.ft }} | {{ r.drop }} | {{ r.recovery }} | {{ r.recovery_ci }} | {{ r.n }} |
{% endfor %}
{% if t.notes %}{% for n in t.notes %}- {{ n }}
{% endfor %}{% endif %}
### All outcomes

| Conjugate | Model | {% for l in t.labels %}{{ l }} | {% endfor %}errors |
|---|---|{% for l in t.labels %}---|{% endfor %}---|
{% for r in t.outcomes %}| {{ r.name }} | {{ r.model }} | {% for v in r.cells %}{{ v }} | {% endfor %}{{ r.errors }} |
{% endfor %}
{% if t.groups %}
### By config ({{ t.label }} rate, pretrained / fine-tuned)

| Conjugate | {% for g in t.groups %}{{ g }} | {% endfor %}
|---|{% for g in t.groups %}---|{% endfor %}
{% for r in t.by_group %}| {{ r.name }} | {% for v in r.cells %}{{ v }} | {% endfor %}
{% endfor %}
{% endif %}
{% if t.probe %}
### Task-inference probe: P({{ t.probe_target }})

P(ICL) = p(icl) / (p(icl) + p(if)) from the log-likelihoods of the two competing answers, per sample;
mean in % with 95% intervals ({{ t.probe_method }}); next to it, the greedy {{ t.label }} rate.
{% if plots.get(t.task ~ "-probe") %}
![{{ t.task }} probe]({{ plots[t.task ~ "-probe"] }})
{% endif %}
| Conjugate | Pretrained P(ICL) | Fine-tuned P(ICL) | Greedy {{ t.label }} pt / ft |
|---|---|---|---|
{% for r in t.probe %}| {{ r.name }} | {{ r.pt }} | {{ r.ft }} | {{ r.greedy }} |
{% endfor %}
{% for c in t.probe_corr %}
{{ c }}
{% endfor %}
{% endif %}
{% if t.agreement %}
### Agreement with the pretrained model

Per example, does the fine-tuned model under the conjugate give the same label ({{ t.labels | join(" / ") }})
as the pretrained model under the same conjugate, and as the pretrained model in English? In %, with 95%
Wilson intervals, over the examples where both compared samples are scored (n).

| Conjugate | n | ft(T) = pt(T) | ft(T) = pt(en) |
|---|---|---|---|
{% for r in t.agreement %}| {{ r.name }} | {{ r.n }} | {{ r.same_t }} | {{ r.same_en }} |
{% endfor %}
{% endif %}
{% if t.tests %}
### Paired tests

{{ t.label }} rate compared on the same examples (n = examples scored in both cells); a only / b only =
examples with the label {{ t.label }} in a but not b / in b but not a. Test: {{ t.test_names | join("; ") }}.
Holm p: Holm-adjusted within each kind of comparison of this task.

| Comparison (a vs b) | Model / conjugate | n | a only | b only | Test | p | Holm p |
|---|---|---|---|---|---|---|---|
{% for r in t.tests %}| {{ r.comparison }} | {{ r.where }} | {{ r.n }} | {{ r.a_only }} | {{ r.b_only }} | {{ r.test }} | {{ r.p }} | {{ r.p_holm }} |
{% endfor %}
{% endif %}
{% endfor %}
Made by `conjugate report`; samples are in `samples.jsonl`, numbers in `summary.json`.
"""


def probe_rows(summary: dict, task: str, transforms: list[str], idx: dict, label: str):
    """Rows of the probe table and sentences on its correlation with greedy rates (empty without a probe)."""
    probe = {(p["model"], p["transform"]): p for p in summary.get("probe") or []
             if p["task"] == task and p.get("group", "all") == "all"}
    if not probe:
        return [], [], "", ""
    rows = []
    for tr in transforms:
        pt, ft = probe.get(("pretrained", tr)), probe.get(("finetuned", tr))
        if not (pt or ft):
            continue
        g = [idx.get((m, task, tr, "all")) for m in ("pretrained", "finetuned")]
        rows.append({"name": display_name(tr),
                     "pt": ci({"rate": pt["mean"], "lo": pt["lo"], "hi": pt["hi"]}) if pt else "—",
                     "ft": ci({"rate": ft["mean"], "lo": ft["lo"], "hi": ft["hi"]}) if ft else "—",
                     "greedy": " / ".join(pct(r["rates"][label]["rate"]) if r else "—" for r in g)})
    corr = []
    for c in summary.get("probe_correlation") or []:
        if c["task"] != task or c.get("spearman") is None:
            continue
        line = (f"Spearman correlation of mean P(ICL) with the greedy {label} rate over {c['n_cells']} "
                f"(model, conjugate) cells: rho = {c['spearman']:.2f} (p = {c['p']:.2g}).")
        for m in c.get("by_model") or []:
            if m.get("spearman") is not None:
                line += f" Within {m['model']}: rho = {m['spearman']:.2f} (p = {m['p']:.2g}, {m['n_cells']} cells)."
        pe = c.get("per_example") or {}
        if pe.get("spearman") is not None:
            line += f" Per sample (P(ICL) vs greedy outcome = {label}): rho = {pe['spearman']:.2f}, n = {pe['n']}."
        corr.append(line)
    first = next(iter(probe.values()))
    return rows, corr, first.get("target", "icl").upper(), first.get("ci_method", "bootstrap")


def build_tables(summary: dict, transforms: list[str], task_labels: dict[str, list[str]]) -> list[dict]:
    rows = summary["rows"]
    idx = {(r["model"], r["task"], r["transform"], r["group"]): r for r in rows}
    tables = []
    for task, labels in task_labels.items():
        recs = [r for r in summary["recovery"] if r["task"] == task]
        if not recs:
            continue
        label = recs[0]["label"]
        t: dict[str, Any] = {"task": task, "label": label, "labels": labels, "rows": [], "outcomes": [], "notes": [],
                             "ci_method": "not computed", "ci_dropped": 0}
        groups = sorted({r["group"] for r in recs if r["group"] != "all"})
        t["groups"] = groups
        t["by_group"] = []
        for tr in transforms:
            name = display_name(tr)
            pt, ft = idx.get(("pretrained", task, tr, "all")), idx.get(("finetuned", task, tr, "all"))
            rec = next((r for r in recs if r["transform"] == tr and r["group"] == "all"), None)
            if rec is None:
                continue
            t["rows"].append({
                "name": name,
                "pt": ci(pt["rates"][label]) if pt else "—",
                "ft": ci(ft["rates"][label]) if ft else "—",
                "drop": signed(rec["drop"]),
                "recovery": "(baseline)" if rec["note"] == "baseline" else ratio(rec["recovery"]),
                "recovery_ci": "—" if rec["note"] == "baseline" else interval(rec.get("ci")),
                "n": f"{pt['n'] if pt else 0}/{ft['n'] if ft else 0}",
            })
            t["ci_dropped"] += rec.get("ci_dropped") or 0
            if rec.get("ci_method"):
                t["ci_method"] = rec["ci_method"]
            if rec["note"] and rec["note"] != "baseline" and rec["note"] not in t["notes"]:
                t["notes"].append(rec["note"])
            if rec.get("ci_note"):
                t["notes"].append(f"Recovery 95% CI for {name}: {rec['ci_note']}.")
            for model, row in (("pretrained", pt), ("finetuned", ft)):
                if row:
                    t["outcomes"].append({
                        "name": name, "model": model,
                        "cells": [pct(row["rates"][l]["rate"]) for l in labels], "errors": row["errors"],
                    })
            vals = []
            for g in groups:
                a, b = idx.get(("pretrained", task, tr, g)), idx.get(("finetuned", task, tr, g))
                vals.append(f"{pct(a['rates'][label]['rate']) if a else '—'} / {pct(b['rates'][label]['rate']) if b else '—'}")
            t["by_group"].append({"name": name, "cells": vals})
        t["probe"], t["probe_corr"], t["probe_target"], t["probe_method"] = probe_rows(summary, task, transforms, idx, label)
        t["agreement"] = agreement_rows(summary, task, transforms)
        t["tests"], t["test_names"] = paired_test_rows(summary, task, transforms)
        tables.append(t)
    return tables


def agreement_rows(summary: dict, task: str, transforms: list[str]) -> list[dict]:
    by_tr = {a["transform"]: a for a in summary.get("agreement", []) if a["task"] == task and a["group"] == "all"}
    out = []
    for tr in transforms:
        a = by_tr.get(tr)
        if a is None:
            continue
        n = str(a["n"]) if a.get("n_en", a["n"]) == a["n"] else f"{a['n']} / {a['n_en']}"
        out.append({"name": display_name(tr), "n": n,
                    "same_t": agreement_cell(a["ft_T_vs_pt_T"], a.get("ft_T_vs_pt_T_ci")),
                    "same_en": agreement_cell(a["ft_T_vs_pt_en"], a.get("ft_T_vs_pt_en_ci"))})
    return out


def paired_test_rows(summary: dict, task: str, transforms: list[str]) -> tuple[list[dict], list[str]]:
    order = {tr: i for i, tr in enumerate(transforms)}
    tests = [e for e in summary.get("tests", []) if e["task"] == task]
    tests.sort(key=lambda e: (e["kind"] != "transform", e.get("model") != "pretrained",
                              order.get(e.get("b") if e["kind"] == "transform" else e.get("transform"), 99)))
    rows, names = [], []
    for e in tests:
        if e["kind"] == "transform":
            comparison, where = f"{display_name(e['a'])} vs {display_name(e['b'])}", e["model"]
        else:
            comparison, where = f"{e['a']} vs {e['b']}", display_name(e["transform"])
        if e["test"] not in names:
            names.append(e["test"])
        rows.append({"comparison": comparison, "where": where, "n": e["n"], "a_only": e["a_only"],
                     "b_only": e["b_only"], "test": e["test"].split(" (")[0], "p": pvalue(e["p"]), "p_holm": pvalue(e.get("p_holm"))})
    return rows, names


def render_report(manifest: dict, summary: dict, task_labels: dict[str, list[str]]) -> str:
    spec = manifest["spec"]
    notes = list(manifest.get("notes", []))
    gen = manifest.get("generation", {})
    total = {k: sum(m.get(k, 0) for m in gen.values()) for k in ("generated", "cached", "failed")} if gen else None
    n_samples = sum(r["n"] + r["errors"] for r in summary["rows"] if r["group"] == "all")
    n_errors = sum(r["errors"] for r in summary["rows"] if r["group"] == "all")
    return render(
        TEMPLATE,
        {
            "run_id": manifest["run_id"], "spec": spec, "notes": notes,
            "tables": build_tables(summary, spec["transforms"], task_labels),
            "counts": {"samples": n_samples, "errors": n_errors}, "generation": total,
            "plots": manifest.get("plots", {}),
        },
        "report.md",
    )
