"""What `conjugate sweep` writes besides sweep.json: sweep.md (tables, fits, comparison) and three plots."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.training.forgetting.text import text_name


def _f(v: Any, d: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def _ci(m: dict | None, d: int = 3) -> str:
    if not m or m.get("mean") is None:
        return "—"
    return f"{_f(m['mean'], d)} [{_f(m['lo'], d)}, {_f(m['hi'], d)}]"


def _pair(ci: list | None, d: int = 3) -> str:
    return "—" if not ci else f"[{_f(ci[0], d)}, {_f(ci[1], d)}]"


def _rate(r: dict | None) -> str:
    if not r or r.get("rate") is None:
        return "—"
    return f"{100 * r['rate']:.1f} [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"


def _rec(r: dict | None) -> str:
    if not r or r.get("recovery") is None:
        return "—"
    return f"{r['recovery']:.2f}" + (f" [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" if r.get("ci") else "")


def points_table(doc: dict) -> list[str]:
    pts = sorted(doc["points"], key=lambda p: (p["regularize"], p["rank"], p["steps"]))
    others = [t for t in doc["settings"]["transforms"] if t != "identity"]
    head = ["run", "rank", "LoRA params", "steps", "held-out loss [95% CI]", "forgetting CE [95% CI]",
            "ICL en pt / ft % [95% CI]"] + [f"recovery {text_name(t)}" for t in others]
    head += ["refusal ft %"] if any(p.get("refusal") for p in pts) else []
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    first = pts[0]
    pre = [_ci(doc["base"]["heldout"]["loss"]), f"H = {_ci(first['forgetting']['entropy'])}",
           _rate(first["icl"]["rates"]["identity"]["pretrained"])] + ["—" for _ in others]
    if "refusal ft %" in head:
        ref = next(p for p in pts if p.get("refusal"))
        pre.append(_rate(ref["refusal"]["rates"]["pretrained"]))
    md.append("| pretrained | — | 0 | 0 | " + " | ".join(pre) + " |")
    for p in pts:
        en = p["icl"]["rates"]["identity"]["finetuned"]
        row = [p["run"], str(p["rank"]), f"{p['trainable_parameters']:,}", str(p["steps"]), _ci(p["heldout"]["loss"]),
               _ci(p["forgetting"]["ce"]), _rate(en)] + [_rec(p["icl"]["recovery"].get(t)) for t in others]
        if len(head) > len(row):
            row.append(_rate(p["refusal"]["rates"]["finetuned"]) if p.get("refusal") else "—")
        md.append("| " + " | ".join(row) + " |")
    return md


def fit_lines(doc: dict) -> list[str]:
    md = []
    for mode, f in doc["analysis"]["power_law"].items():
        if "note" in f:
            md.append(f"- power law ({mode}): not fitted, {f['note']}")
            continue
        ci = f["ci"]
        md.append(f"- power law ({mode}, {f['n_points']} checkpoints): CE = {f['c']:.3f} + {f['A']:.3f} · "
                  f"(P/{f['P0']:,.0f})^{f['a']:.3f} · (t/{f['t0']:.0f})^{f['b']:.3f}; exponent of parameters a = "
                  f"{f['a']:.3f} {_pair(ci['a'])}, of steps b = {f['b']:.3f} {_pair(ci['b'])}, "
                  f"shift c = {f['c']:.3f} {_pair(ci['c'])}; R² {f['r2']:.3f} (95% bootstrap CIs, {f['n_boot']} resamples)")
    for mode, f in doc["analysis"].get("power_law_kl", {}).items():
        if "note" not in f:
            ci = f["ci"]
            md.append(f"- power law of the KL part, shift anchored at the base entropy H ({mode}): CE − H = "
                      f"{f['A']:.3f} · (P/{f['P0']:,.0f})^{f['a']:.3f} · (t/{f['t0']:.0f})^{f['b']:.3f}; exponent of "
                      f"parameters a = {f['a']:.3f} {_pair(ci['a'])}, of steps b = {f['b']:.3f} {_pair(ci['b'])}; "
                      f"R² {f['r2']:.3f}")
    for mode, f in doc["analysis"]["linear"].items():
        if "note" in f:
            md.append(f"- linear ({mode}): not fitted, {f['note']}")
            continue
        md.append(f"- linear ({mode}): CE = {f['slope']:.3f} {_pair(f['slope_ci'])} × held-out loss + "
                  f"{f['intercept']:.3f}, R² {f['r2']:.3f} over {f['n_points']} checkpoints")
    for mode, m in doc["analysis"]["matched"].items():
        if "note" in m:
            md.append(f"- matched loss ({mode}): {m['note']}")
            continue
        lo, hi = m.get("range", [m["loss_star"]] * 2)
        md.append(f"- at the same held-out loss L* = {m['loss_star']:.3f} (ranks {m['ranks']}; the middle of "
                  f"{lo:.3f}-{hi:.3f}, the range both arms reach; each arm's CE interpolated between its "
                  f"checkpoints), forgetting CE of {mode} − plain = {m['diff']:+.3f} nats/token {_pair(m['ci'])}")
    return md


def comparison_table(doc: dict) -> list[str]:
    rows = doc["analysis"]["comparison"]
    if not rows:
        return []
    others = list(rows[0]["recovery"])
    head = ["rank", "mode", "steps reg / plain", "held-out loss reg / plain", "forgetting CE reg / plain",
            "ΔCE [95% CI]", "ICL en ft % reg / plain", "ΔICL en (pts) [95% CI]", "English ICL drop reg / plain (pts)"]
    head += [f"recovery {text_name(t)} reg / plain" for t in others]
    has_ref = any("refusal" in r for r in rows)
    head += ["held-out refusal % reg / plain", "Δrefusal (pts) [95% CI]"] if has_ref else []
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        d_icl = r["icl_en"]["diff"]
        pct = lambda v: "—" if v is None else f"{100 * v:+.1f}"  # noqa: E731
        row = [str(r["rank"]), r["regularize"], f"{r['reg_steps']} / {r['plain_steps']}",
               f"{_ci(r['loss']['reg'])} / {_ci(r['loss']['plain'])}", f"{_ci(r['ce']['reg'])} / {_ci(r['ce']['plain'])}",
               f"{r['ce']['diff']['mean']:+.3f} {_pair(r['ce']['diff']['ci'])}",
               f"{_rate(r['icl_en']['reg'])} / {_rate(r['icl_en']['plain'])}",
               f"{pct(d_icl['mean'])} {_pair([100 * v for v in d_icl['ci']] if d_icl['ci'] else None, 1)}",
               f"{pct(r['drop_en']['reg'])} / {pct(r['drop_en']['plain'])}"]
        row += [f"{_rec(r['recovery'][t]['reg'])} / {_rec(r['recovery'][t]['plain'])}" for t in others]
        if has_ref:
            rf = r.get("refusal")
            row += ([f"{_rate(rf['reg'])} / {_rate(rf['plain'])}",
                     f"{pct(rf['diff']['mean'])} {_pair([100 * v for v in rf['diff']['ci']] if rf['diff']['ci'] else None, 1)}"]
                    if rf else ["—", "—"])
        md.append("| " + " | ".join(row) + " |")
    return md


def markdown(doc: dict) -> str:
    s = doc["settings"]
    md = ["# Forgetting sweep", "",
          f"Base `{s['base']}`, data `{s['data']}` ({s['n_examples']} examples), LoRA on {','.join(s['target_modules'])} "
          f"with alpha = 2·rank, lr {s['lr']:g} (cosine over {max(s['steps'])} steps, warm-up {s['warmup']}), batch "
          f"{s['batch_size']}, seed {s['seed']}; ranks {s['ranks']}, checkpoints at steps {s['steps']}, "
          f"regularisation {s['regularize']}.",
          f"Each checkpoint: held-out loss on {s['heldout']} held-out examples (none in the training set); "
          "forgetting CE on the reference text (Kalajdzievski 2024); icl_vs_if at limit "
          f"{s['limit']} ({', '.join(text_name(t) for t in s['transforms'])}; probe {'on' if s['probe'] else 'off'})"
          + ("; held-out refusal rate (60 requests)" if s["refusal"] else "") + ".", "", "## Checkpoints", ""]
    md += points_table(doc)
    md += ["", "## Fits", ""] + fit_lines(doc)
    comp = comparison_table(doc)
    if comp:
        md += ["", "## Regularised vs plain at matched held-out loss", "",
               "Each regularised checkpoint next to the plain checkpoint of the same rank whose held-out loss is "
               "closest. Δ = regularised − plain, paired 95% bootstrap intervals (chunks for CE, examples for rates).",
               ""] + comp
    md += ["", "![forgetting vs steps](sweep-steps.png)", "![forgetting vs fine-tuning loss](sweep-loss.png)",
           "![ICL and recovery vs steps](sweep-icl.png)", ""]
    return "\n".join(md)


def write_report(doc: dict, out: Path) -> list[Path]:
    """sweep.md and the plots (atomically); their paths."""
    from harness.io import atomic_write_text
    from harness.training.sweep_plot import plot_icl, plot_loss, plot_steps

    paths = [plot_steps(doc, out / "sweep-steps.png"), plot_loss(doc, out / "sweep-loss.png"),
             plot_icl(doc, out / "sweep-icl.png")]
    atomic_write_text(out / "sweep.md", markdown(doc))
    return [out / "sweep.md"] + paths
