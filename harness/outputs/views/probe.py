"""The task-inference probe's section: mean P(target) per cell next to the greedy rate, and how the two
correlate. The words come from the task (``Task.probe_wording``, recorded per task in manifest.json), so
a task whose probe weighs other continuations than icl_vs_if's is described in its own terms."""
from __future__ import annotations

from harness.outputs.format import ci, coef, display_name, pvalue
from harness.outputs.views.common import DASH, MODELS, Cell, finite, href, model_name, ordered

#: the fallback for runs whose manifest has no wording (older runs, tasks that set none)
NEUTRAL_OTHER = "other"
NEUTRAL_DESCRIPTION = "the task's two competing continuations"


def probe_wording(manifest: dict, task: str, target: str | None, other: str | None = None) -> dict[str, str]:
    """``{"target", "other", "description"}`` for ``task``: the manifest's record of the task's
    ``probe_wording``, else neutral words from the probe's keys (``target`` of the summary's probe rows,
    ``other`` from a sample's ``logp_<other>``): ``icl`` -> ``ICL``."""
    recorded = ((manifest.get("tasks") or {}).get(task) or {}).get("probe_wording")
    w = recorded if isinstance(recorded, dict) else {}
    return {"target": str(w.get("target") or (target or "target").upper()),
            "other": str(w.get("other") or (other.upper() if other else NEUTRAL_OTHER)),
            "description": str(w.get("description") or NEUTRAL_DESCRIPTION)}


def probe_keys(samples: list[dict]) -> dict[str, tuple[str, str | None]]:
    """Per task, the (target, other) continuation keys of its first probed sample: a probe
    ``{"logp_icl", "logp_if", "p_icl"}`` gives ``("icl", "if")``."""
    out: dict[str, tuple[str, str | None]] = {}
    for s in samples:
        probe, task = s.get("probe"), s.get("task")
        if not isinstance(probe, dict) or task in out:
            continue
        target = next((k[2:] for k in probe if k.startswith("p_")), None)
        if target is not None:
            out[task] = (target, next((k[5:] for k in probe if k.startswith("logp_") and k[5:] != target), None))
    return out


def probe_names(manifest: dict, keys: dict[str, tuple[str, str | None]]) -> dict[str, dict[str, str]]:
    """Per task, each continuation key's words, for the sample browser: ``{"icl": "ICL", "if": "IF"}``."""
    out = {}
    for task, (target, other) in keys.items():
        w = probe_wording(manifest, task, target, other)
        out[task] = {target: w["target"], **({other: w["other"]} if other else {})}
    return out


def greedy_label(target: str | None, labels: list[str], primary: str | None) -> str:
    """The label the probe is set against: its target when that is one of the task's labels, else the
    primary label."""
    return target if target in labels else (primary or target or "")


def _rows(task: str, label: str, transforms: list[str], probes: list[dict], summary: dict) -> list[dict]:
    """One row per (group, conjugate), "all" first: each model's mean P(target) and greedy ``label`` rate."""
    rates = {(r["model"], r["transform"], r["group"]): r for r in summary.get("rows") or [] if r.get("task") == task}
    by_cell = {(p.get("model"), p.get("transform"), p.get("group", "all")): p for p in probes}
    order = {t: i for i, t in enumerate(ordered({p.get("transform") for p in probes}, transforms))}
    keys = sorted({(g, tr) for (_, tr, g) in by_cell}, key=lambda k: (k[0] != "all", k[0], order[k[1]]))
    out = []
    for group, tr in keys:
        g = None if group == "all" else group
        row: dict = {"name": display_name(tr), "group": group, "mean": [], "greedy": [], "n": []}
        for model in MODELS:
            p = by_cell.get((model, tr, group))
            link = href(task=task, transform=tr, model=model, group=g)
            greedy = ((rates.get((model, tr, group)) or {}).get("rates") or {}).get(label)
            row["mean"].append(Cell(ci({"rate": p["mean"], "lo": p.get("lo"), "hi": p.get("hi")}), link, p.get("ci_method"))
                               if p and finite(p.get("mean")) else DASH)
            row["greedy"].append(Cell(ci(greedy), href(task=task, transform=tr, model=model, group=g, outcome=label))
                                 if greedy and finite(greedy.get("rate")) else DASH)
            row["n"].append(Cell(str(p.get("n", "—")), link) if p else Cell("0"))
        out.append(row)
    return out


def _correlation(task: str, title: str, label: str, summary: dict) -> list[dict]:
    """Spearman rho of mean P(target) vs the greedy rate: over all cells, within each model, per sample."""
    c = next((c for c in summary.get("probe_correlation") or [] if c.get("task") == task), None)
    if c is None:
        return []

    def line(scope: str, entry: dict, link: str) -> dict:
        return {"scope": scope, "rho": Cell(coef(entry.get("spearman")), link, entry.get("note") or None),
                "p": Cell(pvalue(entry.get("p")), link), "n": Cell(str(entry.get("n_cells", entry.get("n", "—"))), link)}

    out = [line(f"(model, conjugate) cells: mean {title} vs greedy {label} rate", c, href(task=task))]
    out += [line(f"cells of the {model_name(m.get('model'))} model", m, href(task=task, model=m.get("model")))
            for m in c.get("by_model") or []]
    if c.get("per_example"):
        out.append(line(f"samples: {title} vs greedy outcome = {label}", c["per_example"], href(task=task)))
    return out


def probe_view(manifest: dict, summary: dict, task: str, labels: list[str], primary: str | None,
               transforms: list[str], plot: str | None, keys: tuple[str | None, str | None] = (None, None)) -> dict | None:
    """The probe table of ``task`` (None when summary.json has no probe rows for it); ``keys``: the (target,
    other) continuation keys where the samples tell them (:func:`probe_keys`), for the neutral wording."""
    probes = [p for p in summary.get("probe") or [] if p.get("task") == task]
    if not probes:
        return None
    target = next((p.get("target") for p in probes if p.get("target")), keys[0])
    label = greedy_label(target, labels, primary)
    wording = probe_wording(manifest, task, target, keys[1])
    title = f"P({wording['target']})"
    return {
        "wording": wording, "title": title,
        "formula": f"{title} = p({wording['target']}) / (p({wording['target']}) + p({wording['other']}))",
        "greedy_label": label, "ci_method": next((p["ci_method"] for p in probes if p.get("ci_method")), "bootstrap"),
        "rows": _rows(task, label, transforms, probes, summary),
        "grouped": any(p.get("group", "all") != "all" for p in probes),
        "correlation": _correlation(task, title, label, summary), "plot": plot,
    }
