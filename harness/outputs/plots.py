"""The run's PNG plots, drawn here and only here, returned as bytes (the caller writes or embeds them).

* ``<task>.png``: per task, the primary rate by conjugate for both models, with 95% Wilson intervals;
* ``recovery-heatmap.png``: recovery by task and conjugate;
* ``<task>-probe.png``: mean probe P(target) next to the greedy rate, where the run has a probe.

:func:`draw_plots` decides which plots a run gets; each ``*_png`` function returns None when summary.json
has nothing to draw.
"""
from __future__ import annotations

import io
import math
from typing import Any

from harness.outputs.format import display_name

COLOURS = {"pretrained": "#4c72b0", "finetuned": "#dd8452"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        _pyplot().close(fig)
    return buf.getvalue()


def rates_png(summary: dict, transforms: list[str], task: str, label: str, title: str = "") -> bytes | None:
    """Grouped bars (pretrained, fine-tuned) of ``label`` rate per transform, Wilson intervals as error bars."""
    idx = {(r["model"], r["transform"]): r for r in summary.get("rows") or [] if r["task"] == task and r["group"] == "all"}
    shown = [t for t in transforms if ("pretrained", t) in idx or ("finetuned", t) in idx]
    if not shown:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(shown) + 1.5), 3.6), dpi=120)
    width = 0.38
    for j, model in enumerate(("pretrained", "finetuned")):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(shown):
            r = idx.get((model, t))
            if not r or not math.isfinite(_num((r["rates"].get(label) or {}).get("rate"))):
                continue
            v = r["rates"][label]
            xs.append(i + (j - 0.5) * width)
            ys.append(100 * v["rate"])
            lo.append(100 * (v["rate"] - v["lo"]))
            hi.append(100 * (v["hi"] - v["rate"]))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, color=COLOURS[model], label=model.replace("finetuned", "fine-tuned"))
    ax.set_xticks(range(len(shown)), [display_name(t) for t in shown], rotation=20, ha="right")
    ax.set_ylabel(f"{label} rate (%)")
    ax.set_ylim(0, 105)
    heading(fig, title or f"{task}: {label} rate by conjugate (95% Wilson intervals)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _num(x) -> float:
    """A summary value as a float; None (JSON null) and non-numbers become NaN."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def heatmap_png(summary: dict, tasks: list[str], transforms: list[str], title: str = "") -> bytes | None:
    """Task x transform heatmap of recovery (group "all"): diverging colours centred at 0, values (and the
    recovery CI where summary.json has one) written in the cells, missing or undefined cells grey.

    None when summary.json has no recovery values to show."""
    recs = {(r["task"], r["transform"]): r for r in summary.get("recovery") or [] if r.get("group", "all") == "all"}
    tasks = [t for t in tasks if any((t, tr) in recs for tr in transforms)]
    shown = [tr for tr in transforms if any((t, tr) in recs for t in tasks)]
    if not tasks or not shown:
        return None
    plt = _pyplot()
    import matplotlib
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    values = np.full((len(tasks), len(shown)), np.nan)
    for i, t in enumerate(tasks):
        for j, tr in enumerate(shown):
            r = recs.get((t, tr))
            if r is not None and r.get("note") != "baseline":
                values[i, j] = _num(r.get("recovery"))
    finite = values[np.isfinite(values)]
    limit = min(2.0, max(1.0, float(np.abs(finite).max()) if finite.size else 1.0))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#d9d9d9")
    fig, ax = plt.subplots(figsize=(max(7.0, 1.0 * len(shown) + 2.4), 1.3 + 0.8 * len(tasks)), dpi=120)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    for i, t in enumerate(tasks):
        for j, tr in enumerate(shown):
            r = recs.get((t, tr))
            v = values[i, j]
            if r is None:
                text, colour = "n/a", "#555555"
            elif r.get("note") == "baseline":
                text, colour = "baseline", "#555555"
            elif not math.isfinite(v):
                text, colour = "undefined", "#555555"
            else:
                text = f"{v:.2f}"
                ci = r.get("ci")
                if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(math.isfinite(_num(c)) for c in ci):
                    text += f"\n[{_num(ci[0]):.2f}, {_num(ci[1]):.2f}]"
                colour = "white" if abs(v) > 0.6 * limit else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8.5, color=colour)
    ax.set_xticks(range(len(shown)), [display_name(tr) for tr in shown], rotation=20, ha="right", fontsize=9)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=9)
    ax.set_xticks(np.arange(-0.5, len(shown)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(tasks)), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label("recovery", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    heading(fig, title or "Recovery (ft_T - ft_en) / (pt_en - ft_en), 95% CI where computed\n"
            "0 = no change, 1 = back at the pretrained English rate; grey = not run or undefined")
    fig.tight_layout()
    return _png(fig)


def heading(fig: Any, text: str, fontsize: float = 9) -> Any:
    """The plot's title, centred on the figure (not on the axes, which long task names or tick labels push
    aside) and wrapped to its width; ``fig.tight_layout()`` then keeps the axes below it."""
    title = fig.suptitle(text, fontsize=fontsize)
    fit_width(fig, title)
    return title


def fit_width(fig: Any, text: Any, margin: float = 0.96) -> None:
    """Re-wrap ``text`` (a figure-centred Text) at word boundaries until it is at most ``margin`` of the
    figure's width, so that no line is clipped at the figure's edges."""
    import textwrap

    lines = text.get_text().split("\n")
    renderer = fig.canvas.get_renderer()
    width = max(len(line) for line in lines)
    while text.get_window_extent(renderer).width > margin * fig.bbox.width and width > 16:
        width = int(width * 0.9)
        text.set_text("\n".join(textwrap.fill(line, width) for line in lines))


def probe_png(summary: dict, task: str, transforms: list[str], label: str, target: str, title: str = "") -> bytes | None:
    """Per transform, for each model: mean probe P(``target``) with its interval next to the greedy ``label``
    rate with its Wilson interval (hatched). None when summary.json has no probe rows for ``task``."""
    probe = {(r["model"], r["transform"]): r for r in summary.get("probe") or []
             if r.get("task") == task and r.get("group", "all") == "all"}
    shown = [t for t in transforms if ("pretrained", t) in probe or ("finetuned", t) in probe]
    if not shown:
        return None
    plt = _pyplot()
    rows = {(r["model"], r["transform"]): r for r in summary.get("rows") or []
            if r.get("task") == task and r.get("group") == "all"}
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(shown) + 1.8), 3.8), dpi=120)
    width = 0.2
    bars = [("pretrained", "probe"), ("pretrained", "greedy"), ("finetuned", "probe"), ("finetuned", "greedy")]
    for j, (model, kind) in enumerate(bars):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(shown):
            if kind == "probe":
                r = probe.get((model, t))
                v = r and (_num(r.get("mean")), _num(r.get("lo")), _num(r.get("hi")))
            else:
                r = rows.get((model, t))
                v = r and label in r["rates"] and tuple(_num(r["rates"][label].get(k)) for k in ("rate", "lo", "hi"))
            if not v or not math.isfinite(v[0]):
                continue
            xs.append(i + (j - 1.5) * width)
            ys.append(100 * v[0])
            lo.append(100 * max(0.0, v[0] - v[1]) if math.isfinite(v[1]) else 0.0)
            hi.append(100 * max(0.0, v[2] - v[0]) if math.isfinite(v[2]) else 0.0)
        name = model.replace("finetuned", "fine-tuned")
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2.5, color=COLOURS[model],
               alpha=1.0 if kind == "probe" else 0.55, hatch="" if kind == "probe" else "///", edgecolor="white",
               label=f"{name}: mean P({target}) (probe)" if kind == "probe" else f"{name}: greedy {label} rate")
    ax.set_xticks(range(len(shown)), [display_name(t) for t in shown], rotation=20, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 128)  # room for the legend above 100 %
    ax.set_yticks(range(0, 101, 20))
    heading(fig, title or f"{task}: mean probe P({target}) vs greedy {label} rate (95% intervals)")
    ax.legend(frameon=False, fontsize=7, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def draw_plots(manifest: dict, summary: dict, probe_keys: dict[str, tuple[str, str | None]] | None = None) -> dict[str, bytes]:
    """Every plot the run gets, {file name: PNG bytes}: the tasks' rate bars, the recovery heatmap, the
    probe plots. File names without ``.png`` are the plots' keys in manifest.json's ``plots``. ``probe_keys``:
    per task, the probe's (target, other) keys from the samples (:func:`harness.outputs.views.probe.probe_keys`),
    for summaries whose probe rows do not name their target."""
    from harness.outputs.format import plot_stem
    from harness.outputs.rundir import RunInfo
    from harness.outputs.views.common import transforms_of
    from harness.outputs.views.probe import greedy_label, probe_wording

    info = RunInfo.of(manifest, summary)
    tasks, transforms = info.tasks(), transforms_of(manifest, summary)
    out: dict[str, bytes | None] = {}
    for task in tasks:
        label = info.primary_label(task)
        out[f"{plot_stem(task)}.png"] = rates_png(summary, transforms, task, label) if label else None
    out["recovery-heatmap.png"] = heatmap_png(summary, tasks, transforms)
    for task in tasks:
        probes = [p for p in summary.get("probe") or [] if p.get("task") == task]
        if not probes:
            continue
        target = next((p["target"] for p in probes if p.get("target")), (probe_keys or {}).get(task, (None, None))[0])
        label = greedy_label(target, info.labels(task), info.primary_label(task))
        out[f"{plot_stem(task)}-probe.png"] = probe_png(summary, task, transforms, label, probe_wording(manifest, task, target)["target"])
    return {name: png for name, png in out.items() if png is not None}
