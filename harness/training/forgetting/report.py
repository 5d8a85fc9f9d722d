"""What `conjugate forgetting` writes and prints: the results table, forgetting.md, the fit lines, and
forgetting.json / .md / .png (atomically) via :func:`write_outputs`."""
from __future__ import annotations

import math
from pathlib import Path

from harness.training.forgetting.text import BASELINE, text_name


def _fmt(d: dict, digits: int = 4) -> str:
    if d is None or d.get("mean") is None or math.isnan(d["mean"]):
        return "—"
    f = lambda v: f"{v:.{digits}f}".replace(f"-{0:.{digits}f}", f"{0:.{digits}f}")  # noqa: E731  (no "-0.0000")
    return f"{f(d['mean'])} [{f(d['lo'])}, {f(d['hi'])}]"


def table_rows(results: list[dict], nll: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table; the KL - English column only when there are transforms."""
    transformed = any(r["condition"] != BASELINE for r in results)
    head = ["model", "steps", "text", "chunks", "tokens", "CE [95% CI]", "H pretrained [95% CI]", "KL [95% CI]"]
    head += ["KL - English [95% CI]"] if transformed else []
    head += ["NLL pretrained", "NLL fine-tuned"] if nll else []
    rows = []
    for r in results:
        row = [r["model"], "—" if r["steps"] is None else str(r["steps"]), text_name(r["condition"]),
               str(r["n_chunks"]), str(r["n_tokens"]), _fmt(r["ce"]), _fmt(r["entropy"]), _fmt(r["kl"])]
        if transformed:
            row.append(_fmt(r.get("kl_minus_identity")) if r["condition"] != BASELINE else "(baseline)")
        if nll:
            row += [_fmt(r["nll_pretrained"]), _fmt(r["nll_finetuned"])]
        rows.append(row)
    return head, rows


def plain_table(results: list[dict]) -> str:
    head, rows = table_rows(results)
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fit_line(cond: str, fit: dict) -> str:
    """One line describing the free and the anchored power-law fits of one text version."""
    line = (f"power law ({text_name(cond)}, {fit['n_points']} checkpoints): CE(t) = {fit['c']:.4f} + {fit['A']:.4g} * "
            f"(t + {fit['t0']:g})^{fit['alpha']:.3f}, R^2 {fit['r2']:.3f}")
    an = fit.get("anchored")
    if an:
        line += (f"; anchored at the pretrained entropy c = H = {an['c']:.4f}: KL(t) = {an['A']:.4g} * "
                 f"(t + {an['t0']:g})^{an['alpha']:.3f}, R^2 {an['r2']:.3f}")
    return line


def _model_str(m: dict) -> str:
    return m["model"] + (f"+{m['adapter']}" if m.get("adapter") else "")


def markdown(doc: dict) -> str:
    """forgetting.md: the pair, the text, what the numbers mean, the table, the fits and the plots."""
    head, rows = table_rows(doc["results"], nll=True)
    md = ["# Forgetting cross-entropy", ""]
    md.append(f"Pretrained **{doc['pretrained']['name']}** (`{_model_str(doc['pretrained'])}`) vs fine-tuned "
              + ", ".join(f"**{f['name']}** (`{_model_str(f)}`)" for f in doc["finetuned"]) + ".")
    txt = doc["text"]
    md.append(f"Text: `{txt['path']}` ({txt['words']} words, {txt['chunks']} chunks of at most "
              f"{doc['settings']['max_tokens']} tokens, sha256 {txt['sha256'][:12]}).")
    md += ["", "CE = −Σ_v p_pre(v|x<t) log p_ft(v|x<t), the fine-tuned model's cross-entropy against the pretrained "
           "model's next-token distribution (Kalajdzievski 2024), per token; H = the pretrained entropy; "
           "KL = CE − H. Means over all tokens, 95% bootstrap intervals over chunks "
           f"({doc['settings']['bootstrap']} resamples, seed {doc['settings']['seed']}). "
           + ("KL − English: paired difference to the untransformed text on the same chunks. "
              if len(doc["conditions"]) > 1 else "")
           + "NLL: each model's negative log-likelihood of the text's own tokens.", ""]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "|".join("---" for _ in head) + "|")
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md.append("")
    for cond, fit in (doc.get("fit") or {}).items():
        md.append(f"- {fit_line(cond, fit)}")
    if doc.get("fit_note"):
        md.append(doc["fit_note"])
    md += ["", "![forgetting](forgetting.png)"]
    if doc.get("fit"):
        md.append("![power-law fit](forgetting-fit.png)")
    tm = doc["timings"]
    md += ["", "Timings (s): " + ", ".join(f"{k} {v}" for k, v in tm.items()), ""]
    return "\n".join(md)


def _no_nan(obj):
    """NaN -> None, so that forgetting.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def write_outputs(doc: dict, out: Path) -> dict[str, Path]:
    """forgetting.png (and forgetting-fit.png with a fit), forgetting.json and forgetting.md in ``out``."""
    from harness.io import atomic_write_json, atomic_write_text
    from harness.training.forgetting.plot import plot, plot_fit

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "forgetting.json", "md": out / "forgetting.md", "png": out / "forgetting.png"}
    plot(doc, paths["png"])
    if doc.get("fit"):
        paths["fit_png"] = plot_fit(doc, out / "forgetting-fit.png")
    atomic_write_json(paths["json"], _no_nan(doc))
    atomic_write_text(paths["md"], markdown(doc))
    return paths
