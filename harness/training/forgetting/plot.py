"""The figures of `conjugate forgetting`: CE = H + KL per text version and model, and CE against fine-tuning steps."""
from __future__ import annotations

import math
from pathlib import Path

from harness.training.forgetting.fit import shifted_power_law
from harness.training.forgetting.text import text_name


def _save(fig, path: Path) -> Path:
    """The figure as a PNG at ``path``, written atomically (a reader never sees half a file)."""
    import io

    import matplotlib.pyplot as plt

    from harness.io import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot(doc: dict, path: Path) -> Path:
    """Stacked bars per text version and model: pretrained entropy H plus KL = CE, CE's 95% interval as error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    conds = doc["conditions"]
    models = list(dict.fromkeys(r["model"] for r in results))
    idx = {(r["model"], r["condition"]): r for r in results}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(conds) * max(1, len(models) / 2) + 2), 3.8), dpi=120)
    width = 0.8 / len(models)
    cmap = plt.get_cmap("viridis")
    for j, m in enumerate(models):
        xs, hs, kls, err_lo, err_hi = [], [], [], [], []
        for i, c in enumerate(conds):
            r = idx.get((m, c))
            if r is None or math.isnan(r["ce"]["mean"]):
                continue
            xs.append(i + (j - (len(models) - 1) / 2) * width)
            hs.append(r["entropy"]["mean"])
            kls.append(r["kl"]["mean"])
            err_lo.append(r["ce"]["mean"] - r["ce"]["lo"])
            err_hi.append(r["ce"]["hi"] - r["ce"]["mean"])
        colour = cmap(0.25 + 0.6 * j / max(1, len(models) - 1)) if len(models) > 1 else "#dd8452"
        ax.bar(xs, hs, width * 0.95, color="#c8c8c8", edgecolor="white", label="H (pretrained entropy)" if j == 0 else None)
        ax.bar(xs, kls, width * 0.95, bottom=hs, color=colour, yerr=[err_lo, err_hi], capsize=3,
               label=f"KL: {m}" if len(models) > 1 else "KL (fine-tuned vs pretrained)")
    ax.set_xticks(range(len(conds)), [text_name(c) for c in conds],
                  rotation=15 if len(conds) > 3 else 0, ha="right" if len(conds) > 3 else "center")
    top = max((r["ce"]["hi"] for r in results if not math.isnan(r["ce"]["hi"])), default=1.0)
    ax.set_ylim(0, top * 1.25)  # room for the legend
    ax.set_ylabel("nats per token")
    ax.set_title("Forgetting cross-entropy CE = H + KL (95% bootstrap CI of CE)", fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="upper right", ncol=2 if len(models) > 2 else 1)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_fit(doc: dict, path: Path) -> Path:
    """CE at each checkpoint (95% CI) and the fitted shifted power law, per text version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    cmap = plt.get_cmap("tab10")
    for i, (cond, fit) in enumerate(doc["fit"].items()):
        rows = sorted((r for r in doc["results"] if r["condition"] == cond and r["steps"] is not None),
                      key=lambda r: r["steps"])
        t = np.array([r["steps"] for r in rows], float)
        y = np.array([r["ce"]["mean"] for r in rows])
        yerr = [y - np.array([r["ce"]["lo"] for r in rows]), np.array([r["ce"]["hi"] for r in rows]) - y]
        label = text_name(cond)
        ax.errorbar(t, y, yerr=yerr, fmt="o", color=cmap(i), capsize=3, label=f"{label}: CE at checkpoint")
        grid = np.linspace(0.0, t.max() * 1.1, 300)
        ax.plot(grid, shifted_power_law(grid, fit["A"], fit["alpha"], fit["c"], fit["t0"]), color=cmap(i),
                label=f"{fit['c']:.3f} + {fit['A']:.3g}·t^{fit['alpha']:.2f} (R²={fit['r2']:.2f})")
        an = fit.get("anchored")
        if an:
            ax.plot(grid, shifted_power_law(grid, an["A"], an["alpha"], an["c"], an["t0"]), color=cmap(i), ls="--",
                    lw=1.2, label=f"H + {an['A']:.3g}·t^{an['alpha']:.2f} (R²={an['r2']:.2f})")
        h = [r["entropy"]["mean"] for r in rows]
        ax.axhline(float(np.mean(h)), color=cmap(i), ls=":", lw=1, label=f"{label}: pretrained entropy H")
    ax.set_xlabel("fine-tuning steps t")
    ax.set_ylabel("forgetting CE (nats/token)")
    ax.set_title("Forgetting vs fine-tuning steps: CE(t) = c + A (t + t0)^α", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)
