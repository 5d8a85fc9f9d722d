"""report.html: one self-contained page per run (tables, plots, a sample browser).

Rendered from ``harness/outputs/templates/report.html.j2`` in a sandboxed Jinja2 environment with autoescaping
on (model outputs are arbitrary text). Everything is inline: CSS, JavaScript, the PNG plots as base64
data URIs and the samples as JSON in a ``<script type="application/json">`` block, so the file can be
mailed or opened offline. Every number in the tables links to ``#samples?task=..&transform=..`` which
sets the sample browser's filters to the samples behind it.

Each section is rendered only when summary.json has its key (``rows``, ``recovery``, ``agreement``,
``tests``, ``probe``, ``probe_correlation``), so older and newer runs both render.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from harness.errors import ConjugateError, TemplateError
from harness.io import atomic_write_text, read_jsonl
from harness.outputs.format import ci, display_name, pct, ratio, signed

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: texts longer than this are cut in the embedded sample JSON (samples.jsonl keeps them whole)
MAX_TEXT = 4000
BASELINE = "identity"
MODELS = ("pretrained", "finetuned")
MODEL_NAMES = {"pretrained": "pretrained", "finetuned": "fine-tuned"}


# -- the template environment -------------------------------------------------------------

_ENV: SandboxedEnvironment | None = None


def environment() -> SandboxedEnvironment:
    """The sandboxed, autoescaping environment for the HTML templates (shared with `conjugate compare`)."""
    global _ENV
    if _ENV is None:
        _ENV = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render ``templates/<name>`` with ``context``; failures are TemplateErrors naming the template."""
    try:
        return environment().get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name} is missing from {TEMPLATES} (a broken install?)") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name} uses an undefined variable: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {name} tried an unsafe operation: {exc}") from None


def inline_assets() -> dict[str, Markup]:
    """The shared stylesheet and script, inlined into every page."""
    out = {}
    for key, name in (("css", "_style.css.j2"), ("js", "_browser.js.j2")):
        text = (TEMPLATES / name).read_text(encoding="utf-8")
        if "</" in text:  # would end the <style>/<script> element early
            raise TemplateError(f"template {name} must not contain '</'")
        out[key] = Markup(text)
    return out


# -- helpers --------------------------------------------------------------------------------

def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def clean_json(obj: Any) -> Any:
    """NaN and infinities (Python's JSON writes them; JavaScript's JSON.parse rejects them) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def script_json(obj: Any) -> Markup:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' that could end it."""
    text = json.dumps(clean_json(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def png_data_uri(draw: Callable[[Any], Any], name: str | None = None, files: dict | None = None) -> str | None:
    """Run a plot function that takes a path-like target into memory; a data URI, or None if it drew nothing.
    With ``files``, the PNG bytes are also kept there under ``name``."""
    buf = io.BytesIO()
    if draw(buf) is None:
        return None
    if files is not None and name:
        files[name] = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def href(**filters: Any) -> str:
    """A link that sets the sample browser's filters (None values are left out; lists join with commas)."""
    q = {k: (",".join(v) if isinstance(v, (list, tuple)) else v) for k, v in filters.items() if v not in (None, "")}
    return "#samples" + ("?" + urlencode(q) if q else "")


def cell(text: str, link: str | None = None, title: str | None = None, cls: str = "") -> dict:
    return {"text": text, "href": link, "title": title, "cls": cls}


def pval(p: Any) -> str:
    if not finite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def interval(lo: Any, hi: Any, fmt: Callable[[float], str] = pct) -> str:
    return f" [{fmt(lo)}, {fmt(hi)}]" if finite(lo) and finite(hi) else ""


def as_dict(sample: Any) -> dict:
    if isinstance(sample, dict):
        return sample
    if dataclasses.is_dataclass(sample):
        return dataclasses.asdict(sample)
    if hasattr(sample, "to_json"):
        return json.loads(sample.to_json())
    raise TypeError(f"not a sample: {type(sample).__name__}")


def truncate(text: Any) -> tuple[Any, bool]:
    if not isinstance(text, str) or len(text) <= MAX_TEXT:
        return text, False
    return text[:MAX_TEXT] + f"\n… [{len(text) - MAX_TEXT} more characters cut here; samples.jsonl has the full text]", True


# -- the sample browser's data ----------------------------------------------------------------

def sample_payload(samples: Iterable[Any], transforms: list[str], task_labels: dict[str, list[str]]) -> dict:
    """Compact JSON for the sample browser: prompts are shared between the two models, so texts are stored
    once in ``texts`` and samples refer to them by index."""
    texts: list[str] = []
    index: dict[str, int] = {}
    truncated = 0

    def text_id(s: Any) -> int | None:
        nonlocal truncated
        if s is None:
            return None
        s, cut = truncate(s)
        truncated += cut
        if s not in index:
            index[s] = len(texts)
            texts.append(s)
        return index[s]

    out = []
    for i, d in enumerate(as_dict(s) for s in samples):
        response, cut_r = truncate(d.get("response"))
        inverted, cut_i = truncate(d.get("inverted"))
        truncated += cut_r + (cut_i and inverted != response)
        row = {
            "i": i, "m": d.get("model"), "t": d.get("task"), "x": d.get("transform"), "e": d.get("example_id"),
            "g": d.get("group"), "md": d.get("mode"), "o": d.get("outcome"),
            "p": text_id(d.get("prompt")), "q": text_id(d.get("transformed_prompt")),
            "r": response, "v": inverted,
        }
        for key, short in (("detail", "d"), ("error", "err"), ("reference", "ref"), ("probe", "pr")):
            if d.get(key) not in (None, "", {}):
                row[short] = d[key]
        if d.get("cached"):
            row["c"] = 1
        out.append(row)
    order = {t: i for i, t in enumerate(transforms)}
    seen_transforms = sorted({r["x"] for r in out if r["x"] is not None}, key=lambda t: (order.get(t, len(order)), t))
    outcomes = []
    for labels in task_labels.values():
        outcomes += [l for l in labels if l not in outcomes]
    outcomes += sorted({r["o"] for r in out if r["o"] and r["o"] not in outcomes and r["o"] != "error"}) + ["error"]
    return {
        "texts": texts, "samples": out, "truncated": truncated, "max_text": MAX_TEXT,
        "has_probe": any("pr" in r for r in out),
        "options": {
            "task": sorted({r["t"] for r in out if r["t"]}, key=lambda t: (list(task_labels).index(t) if t in task_labels else 99, t)),
            "transform": seen_transforms,
            "model": [m for m in MODELS if any(r["m"] == m for r in out)] + sorted({r["m"] for r in out if r["m"] and r["m"] not in MODELS}),
            "group": sorted({r["g"] for r in out if r["g"]}, key=lambda g: (g != "all", g)),
            "outcome": outcomes,
        },
        "names": {t: display_name(t) for t in seen_transforms},
        "model_names": MODEL_NAMES,
    }


# -- tables ---------------------------------------------------------------------------------

def task_labels_of(manifest: dict, summary: dict) -> dict[str, list[str]]:
    labels = manifest.get("task_labels") or {n: t.get("labels", []) for n, t in (manifest.get("tasks") or {}).items()}
    if not labels:  # an old manifest: take the labels from the rows
        for r in summary.get("rows") or []:
            labels.setdefault(r["task"], list(r["rates"]))
    return {t: list(v) for t, v in labels.items()}


def primary_label(manifest: dict, summary: dict, task: str, labels: list[str]) -> str | None:
    label = (manifest.get("primary_labels") or {}).get(task)
    if label:
        return label
    rec = next((r for r in summary.get("recovery") or [] if r.get("task") == task and r.get("label")), None)
    return rec["label"] if rec else (labels[0] if labels else None)


def recovery_text(rec: dict | None) -> tuple[str, str | None]:
    if rec is None:
        return "—", None
    if rec.get("note") == "baseline":
        return "(baseline)", "the baseline conjugate: recovery is 0 by definition"
    value = rec.get("recovery")
    text = ratio(value if finite(value) else math.nan)
    c = rec.get("ci")
    if isinstance(c, (list, tuple)) and len(c) == 2:
        text += interval(c[0], c[1], lambda x: ratio(x))
    title = " · ".join(x for x in (
        f"95% CI: {rec['ci_method']}" if rec.get("ci_method") and rec.get("ci") else "", rec.get("note") or "") if x)
    return text, title or None


def task_section(task: str, labels: list[str], label: str, transforms: list[str], summary: dict) -> dict:
    rows = summary.get("rows") or []
    idx = {(r["model"], r["transform"], r["group"]): r for r in rows if r.get("task") == task}
    recs = {(r["transform"], r["group"]): r for r in summary.get("recovery") or [] if r.get("task") == task}
    order = {t: i for i, t in enumerate(transforms)}
    present = sorted({tr for (_, tr, _) in idx} | {tr for (tr, _) in recs}, key=lambda t: (order.get(t, len(order)), t))
    groups = sorted({g for (_, _, g) in idx if g != "all"})
    sec: dict[str, Any] = {"task": task, "label": label, "labels": labels, "main": [], "outcomes": [], "notes": [],
                           "groups": groups, "by_group": []}

    def rate_cell(row: dict | None, lab: str, **link) -> dict:
        if not row or lab not in row.get("rates", {}):
            return cell("—")
        r = row["rates"][lab]
        return cell(ci(r) if finite(r.get("rate")) else "—", href(task=task, outcome=lab, **link),
                    f"{r.get('k', '?')} of {row['n']} samples" if finite(r.get("rate")) else None)

    for tr in present:
        pt, ft = idx.get(("pretrained", tr, "all")), idx.get(("finetuned", tr, "all"))
        rec = recs.get((tr, "all"))
        rtext, rtitle = recovery_text(rec)
        drop = rec.get("drop") if rec else None
        sec["main"].append({
            "name": display_name(tr), "transform": tr,
            "pt": rate_cell(pt, label, transform=tr, model="pretrained"),
            "ft": rate_cell(ft, label, transform=tr, model="finetuned"),
            "drop": cell(signed(drop) if finite(drop) else "—", href(task=task, transform=tr, outcome=label),
                         "pretrained − fine-tuned, in points"),
            "recovery": cell(rtext, href(task=task, transform=tr, model="finetuned", outcome=label) if rec else None,
                             rtitle, "baseline" if rec and rec.get("note") == "baseline" else ""),
            "n_pt": cell(str(pt["n"]) if pt else "0", href(task=task, transform=tr, model="pretrained") if pt else None),
            "n_ft": cell(str(ft["n"]) if ft else "0", href(task=task, transform=tr, model="finetuned") if ft else None),
        })
        if rec and rec.get("note") and rec["note"] != "baseline" and rec["note"] not in sec["notes"]:
            sec["notes"].append(rec["note"])
        for model, row in (("pretrained", pt), ("finetuned", ft)):
            if row:
                sec["outcomes"].append({
                    "name": display_name(tr), "model": MODEL_NAMES[model] if model in MODEL_NAMES else model,
                    "cells": [rate_cell_plain(row, lab, href(task=task, transform=tr, model=model, outcome=lab)) for lab in labels],
                    "errors": cell(str(row.get("errors", 0)), href(task=task, transform=tr, model=model, outcome="error")),
                })
        if groups:
            vals = []
            for g in groups:
                pair = []
                for model in MODELS:
                    r = idx.get((model, tr, g))
                    rate = r["rates"].get(label, {}).get("rate") if r else None
                    pair.append(cell(pct(rate) if finite(rate) else "—",
                                     href(task=task, transform=tr, model=model, group=g, outcome=label) if r else None,
                                     f"{MODEL_NAMES[model]}: {r['rates'][label]['k']} of {r['n']}" if r and finite(rate) else None))
                vals.append(pair)
            sec["by_group"].append({"name": display_name(tr), "cells": vals})
    return sec


def rate_cell_plain(row: dict, lab: str, link: str) -> dict:
    r = row.get("rates", {}).get(lab)
    if not r or not finite(r.get("rate")):
        return cell("—")
    return cell(pct(r["rate"]), link, f"{r.get('k', '?')} of {row['n']}; 95% CI{interval(r.get('lo'), r.get('hi'))}")


def probe_rows(task: str, label: str, transforms: list[str], summary: dict) -> list[dict]:
    idx = {(r["model"], r["transform"]): r for r in summary.get("rows") or []
           if r.get("task") == task and r.get("group") == "all"}
    order = {t: i for i, t in enumerate(transforms)}
    probes = [p for p in summary.get("probe") or [] if p.get("task") == task]
    probes.sort(key=lambda p: (p.get("group") != "all", p.get("group", ""), order.get(p.get("transform"), len(order)),
                               MODELS.index(p["model"]) if p.get("model") in MODELS else 9))
    out = []
    for p in probes:
        tr, model, group = p.get("transform"), p.get("model"), p.get("group", "all")
        link = href(task=task, transform=tr, model=model, group=None if group == "all" else group)
        g = idx.get((model, tr)) if group == "all" else None
        greedy = g["rates"].get(label) if g else None
        out.append({
            "name": display_name(tr), "model": MODEL_NAMES.get(model, model), "group": group,
            "mean": cell(f"{pct(p.get('mean'))}{interval(p.get('lo'), p.get('hi'))}" if finite(p.get("mean")) else "—",
                         link, p.get("ci_method")),
            "greedy": cell(ci(greedy) if greedy and finite(greedy.get("rate")) else "—",
                           href(task=task, transform=tr, model=model, outcome=label) if greedy else None),
            "n": cell(str(p.get("n", "—")), link),
        })
    return out


def agreement_rows(task: str, transforms: list[str], summary: dict) -> list[dict]:
    order = {t: i for i, t in enumerate(transforms)}
    rows = [a for a in summary.get("agreement") or [] if a.get("task") == task]
    rows.sort(key=lambda a: (a.get("group", "all") != "all", a.get("group", ""), order.get(a.get("transform"), len(order))))
    out = []
    for a in rows:
        tr, group = a.get("transform"), a.get("group", "all")
        g = None if group == "all" else group
        vals = []
        for key, link in (("ft_T_vs_pt_T", href(task=task, transform=tr, group=g)),
                          ("ft_T_vs_pt_en", href(task=task, transform=sorted({tr, BASELINE}, key=lambda t: t != tr), group=g))):
            v, c = a.get(key), a.get(key + "_ci")
            text = pct(v) + (interval(c[0], c[1]) if isinstance(c, (list, tuple)) and len(c) == 2 else "") if finite(v) else "—"
            vals.append(cell(text, link))
        out.append({"name": display_name(tr), "group": group, "n": cell(str(a.get("n", "—")), href(task=task, transform=tr, group=g)),
                    "pt": vals[0], "en": vals[1]})
    return out


def test_rows(task: str, summary: dict) -> list[dict]:
    out = []
    for t in summary.get("tests") or []:
        if t.get("task") != task:
            continue
        kind = t.get("kind")
        a, b = t.get("a"), t.get("b")
        if kind == "model":
            fixed = t.get("transform")
            link = href(task=task, transform=fixed, model=[a, b])
            what, fixed_name = f"{MODEL_NAMES.get(a, a)} vs {MODEL_NAMES.get(b, b)}", display_name(fixed or "")
        else:
            fixed = t.get("model")
            link = href(task=task, model=fixed, transform=[a, b])
            what, fixed_name = f"{display_name(a or '')} vs {display_name(b or '')}", MODEL_NAMES.get(fixed, fixed or "")
        out.append({
            "kind": kind or "—", "fixed": fixed_name, "what": what, "test": t.get("test") or "—",
            "n": cell(str(t.get("n", "—")), link),
            "a_only": cell(str(t.get("a_only", "—")), link, f"{a}: yes, {b}: no"),
            "b_only": cell(str(t.get("b_only", "—")), link, f"{b}: yes, {a}: no"),
            "p": cell(pval(t.get("p")), link), "p_holm": cell(pval(t.get("p_holm")), link),
        })
    return out


def header(manifest: dict, summary: dict, n_samples: int) -> dict:
    spec = manifest.get("spec") or {}
    rows = [r for r in summary.get("rows") or [] if r.get("group") == "all"]
    counted = sum(r.get("n", 0) + r.get("errors", 0) for r in rows) if rows else n_samples
    errors = sum(r.get("errors", 0) for r in rows)
    gen = manifest.get("generation") or {}
    total = {k: sum(m.get(k, 0) for m in gen.values() if isinstance(m, dict)) for k in ("generated", "cached", "failed")} if gen else None
    models = []
    for role in MODELS:
        m = spec.get(role) or {}
        ident = ((manifest.get("models") or {}).get(role) or {}).get("identity")
        backend = (manifest.get("backends") or {}).get(role)
        models.append({
            "role": MODEL_NAMES[role], "name": m.get("name", "?"), "model": m.get("model", "?"), "adapter": m.get("adapter"),
            "backend": m.get("backend", "?"), "backend_detail": json.dumps(backend, ensure_ascii=False, default=str)
            if isinstance(backend, (dict, list)) else (str(backend) if backend else None),
            "dtype": m.get("dtype"), "identity": ident, "n": cell(str(sum(r.get("n", 0) + r.get("errors", 0) for r in rows if r.get("model") == role)),
                                                                  href(model=role)),
        })
    facts = [("tasks", ", ".join(spec.get("tasks") or [])),
             ("conjugates", ", ".join(f"{display_name(t)} ({t})" if display_name(t) != t else t for t in spec.get("transforms") or [])),
             ("limit", str(spec.get("limit") or "none")), ("seed", str(spec.get("seed", "—"))),
             ("sampling", "; ".join(f"{t}: " + ", ".join(f"{k}={v}" for k, v in s.items()) for t, s in (manifest.get("sampling") or {}).items())),
             ("started", str(manifest.get("started", "—"))), ("seconds", str(manifest.get("seconds", "—"))),
             ("git", str(manifest.get("git") or "—")),
             ("versions", ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items()))]
    if manifest.get("rescored"):
        facts.append(("rescored", str(manifest["rescored"])))
    tr = manifest.get("translation") or {}
    if tr.get("providers"):
        facts.append(("translation", ", ".join(p.get("version") or n for n, p in tr["providers"].items() if isinstance(p, dict))))
    return {
        "run_id": manifest.get("run_id", "?"), "models": models, "facts": [f for f in facts if f[1]],
        "notes": [str(n) for n in manifest.get("notes") or []],
        "samples": cell(str(counted), href()), "errors": cell(str(errors), href(outcome="error")), "generation": total,
    }


def build_context(manifest: dict, summary: dict, samples: list, images: bool = True, files: dict | None = None) -> dict:
    """The template context. With ``files``, the plots drawn for the page are also put there as
    {file name: PNG bytes} (the recovery heatmap and probe plots, which the runner does not write)."""
    spec = manifest.get("spec") or {}
    transforms = list(spec.get("transforms") or [])
    for r in summary.get("rows") or []:  # transforms a hand-made spec did not list still show
        if r.get("transform") not in transforms:
            transforms.append(r["transform"])
    labels = task_labels_of(manifest, summary)
    tasks = [t for t in (spec.get("tasks") or list(labels)) if t in labels] + [t for t in labels if t not in (spec.get("tasks") or [])]
    from harness.outputs.plots import plot_probe, plot_rates, plot_recovery_heatmap

    sections = []
    for task in tasks:
        label = primary_label(manifest, summary, task, labels[task])
        sec = task_section(task, labels[task], label, transforms, summary) if summary.get("rows") else {
            "task": task, "label": label, "labels": labels[task], "main": [], "outcomes": [], "notes": [], "groups": [], "by_group": []}
        sec["bars"] = (png_data_uri(lambda f: plot_rates(summary, transforms, task, label, f))
                       if images and summary.get("rows") and label else None)
        sec["probe"] = probe_rows(task, "icl" if "icl" in labels[task] else label, transforms, summary) if summary.get("probe") else []
        sec["probe_png"] = (png_data_uri(lambda f: plot_probe(summary, task, transforms, f,
                                                               label="icl" if "icl" in labels[task] else label),
                                         f"{task}-probe.png", files)
                            if images and sec["probe"] else None)
        sec["probe_label"] = "icl" if "icl" in labels[task] else label
        sec["agreement"] = agreement_rows(task, transforms, summary) if summary.get("agreement") else []
        sec["tests"] = test_rows(task, summary) if summary.get("tests") else []
        sec["has_rec_ci"] = any("[" in r["recovery"]["text"] for r in sec["main"])
        sec["anchor"] = "task-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in task)
        if sec["main"] or sec["probe"] or sec["agreement"] or sec["tests"]:
            sections.append(sec)
    corr = [{"task": c.get("task", "?"), "spearman": f"{c['spearman']:+.2f}" if finite(c.get("spearman")) else "—",
             "p": pval(c.get("p")), "n_cells": c.get("n_cells", "—"), "href": href(task=c.get("task"))}
            for c in summary.get("probe_correlation") or []]
    heatmap = (png_data_uri(lambda f: plot_recovery_heatmap(summary, tasks, transforms, f), "recovery-heatmap.png", files)
               if images and summary.get("recovery") else None)
    payload = sample_payload(samples, transforms, labels)
    return {
        "head": header(manifest, summary, len(payload["samples"])), "sections": sections, "heatmap": heatmap,
        "probe_correlation": corr, "samples_json": script_json(payload), "n_samples": len(payload["samples"]),
        "truncated": payload["truncated"], "max_text": MAX_TEXT, "has_probe": payload["has_probe"], **inline_assets(),
    }


def render_html(manifest: dict, summary: dict, samples: list, images: bool = True, files: dict | None = None) -> str:
    return render_template("report.html.j2", build_context(manifest, summary, list(samples), images, files))


def write_png(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_html(run_dir: str | Path, manifest: dict, summary: dict, samples: Iterable[Any], pngs: bool = True) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path. ``samples`` are Sample objects or dicts.

    With ``pngs``, the plots that only the HTML draws (``recovery-heatmap.png``, ``<task>-probe.png``) are also
    written next to it; the per-task bar charts are the runner's (``plots.plot_rates``)."""
    run_dir = Path(run_dir)
    files: dict[str, bytes] = {}
    html = render_html(manifest, summary, list(samples), files=files)
    atomic_write_text(run_dir / "report.html", html)
    if pngs:
        for name, data in files.items():
            write_png(run_dir / name, data)
    return run_dir / "report.html"


def read_run(run_dir: str | Path, need_samples: bool = True) -> tuple[dict, dict, list[dict]]:
    """(manifest, summary, samples) of a finished run folder; ConjugateError if it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConjugateError(f"{run_dir} is not a folder (give a run folder written by `conjugate run`, e.g. results/<run-id>)")
    files = ["manifest.json", "summary.json"] + (["samples.jsonl"] if need_samples else [])
    missing = [f for f in files if not (run_dir / f).exists()]
    if missing:
        raise ConjugateError(f"{run_dir} is not a finished run folder: {', '.join(missing)} missing "
                             f"(a run writes manifest.json last; an interrupted run resumes with the same `conjugate run` command)")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        samples = read_jsonl(run_dir / "samples.jsonl") if (run_dir / "samples.jsonl").exists() else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConjugateError(f"{run_dir}: could not read the run files ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(summary, dict):
        raise ConjugateError(f"{run_dir}: manifest.json and summary.json must hold JSON objects")
    return manifest, summary, samples


def write_html_for_run(run_dir: str | Path) -> Path:
    """Re-render ``report.html`` of a finished run folder from its manifest, summary and samples."""
    manifest, summary, samples = read_run(run_dir)
    return write_html(run_dir, manifest, summary, samples)


__all__ = ["write_html", "write_html_for_run", "render_html", "render_template", "read_run", "environment"]
