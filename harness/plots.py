"""PNG plots for a run: per task, the primary rate by conjugate for both models, with 95% intervals."""
from __future__ import annotations

import math
from pathlib import Path

from .report import display_name

COLOURS = {"pretrained": "#4c72b0", "finetuned": "#dd8452"}


def plot_rates(summary: dict, transforms: list[str], task: str, label: str, path: Path, title: str = "") -> Path | None:
    """Grouped bars (pretrained, fine-tuned) of ``label`` rate per transform, Wilson intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = {(r["model"], r["transform"]): r for r in summary["rows"] if r["task"] == task and r["group"] == "all"}
    shown = [t for t in transforms if ("pretrained", t) in idx or ("finetuned", t) in idx]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(shown) + 1.5), 3.6), dpi=120)
    width = 0.38
    for j, model in enumerate(("pretrained", "finetuned")):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(shown):
            r = idx.get((model, t))
            if not r or math.isnan(r["rates"][label]["rate"]):
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
    ax.set_title(title or f"{task}: {label} rate by conjugate (95% Wilson intervals)", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
