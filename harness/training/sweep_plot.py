"""The figures of `conjugate sweep`: forgetting vs steps (with the joint power law), forgetting vs the
held-out fine-tuning loss (with the linear fits), and English ICL / recovery vs steps."""
from __future__ import annotations

from pathlib import Path

from harness.training.forgetting.plot import _save
from harness.training.forgetting.text import text_name

_MARK = {"none": "o", "elementwise": "s", "layerwise": "^", "both": "D"}


def _step_axis(ax, steps: list[int]) -> None:
    """A log axis of fine-tuning steps labelled with the sweep's own step counts, in plain numbers."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(steps)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _runs(doc: dict) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for p in sorted(doc["points"], key=lambda p: (p["regularize"], p["rank"], p["steps"])):
        runs.setdefault(p["run"], []).append(p)
    return runs


def _style(pts: list[dict], ranks: list[int]):
    import matplotlib.pyplot as plt

    p = pts[0]
    colour = plt.get_cmap("viridis")(0.1 + 0.75 * ranks.index(p["rank"]) / max(1, len(ranks) - 1))
    ls = "-" if p["regularize"] == "none" else "--"
    label = f"r={p['rank']}" + ("" if p["regularize"] == "none" else f", {p['regularize']}")
    return colour, ls, _MARK.get(p["regularize"], "o"), label


def plot_steps(doc: dict, path: Path) -> Path:
    """CE per checkpoint against steps (log scale), one line per run, and the plain runs' joint fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ranks = doc["settings"]["ranks"]
    fit = doc["analysis"]["power_law"].get("none") or {}
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
    for pts in _runs(doc).values():
        colour, ls, mk, label = _style(pts, ranks)
        t = [p["steps"] for p in pts]
        ce = [p["forgetting"]["ce"] for p in pts]
        err = [[c["mean"] - c["lo"] for c in ce], [c["hi"] - c["mean"] for c in ce]]
        ax.errorbar(t, [c["mean"] for c in ce], yerr=err, color=colour, ls="none", marker=mk, capsize=2, label=label)
        if "A" in fit and pts[0]["regularize"] == "none":
            grid = np.geomspace(min(t) * 0.8, max(t) * 1.25, 100)
            P = pts[0]["trainable_parameters"] / fit["P0"]
            ax.plot(grid, fit["c"] + fit["A"] * P ** fit["a"] * (grid / fit["t0"]) ** fit["b"], color=colour, ls=ls, lw=1)
    h = doc["points"][0]["forgetting"]["entropy"]["mean"]
    ax.axhline(h, color="#888", ls=":", lw=1, label="pretrained entropy H (CE at step 0)")
    _step_axis(ax, doc["settings"]["steps"])
    ax.set_xlabel("fine-tuning steps t")
    ax.set_ylabel("forgetting CE (nats/token)")
    title = "Forgetting CE vs steps"
    if "A" in fit:
        title += f"; fit c + A·P^{fit['a']:.2f}·t^{fit['b']:.2f} (R² {fit['r2']:.2f})"
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_loss(doc: dict, path: Path) -> Path:
    """CE against the held-out fine-tuning loss, one line per regularisation mode's linear fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ranks = doc["settings"]["ranks"]
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
    for pts in _runs(doc).values():
        colour, _, mk, label = _style(pts, ranks)
        x = [p["heldout"]["loss"]["mean"] for p in pts]
        y = [p["forgetting"]["ce"]["mean"] for p in pts]
        ax.plot(x, y, ls="none", marker=mk, color=colour, label=label)
        for p, xi, yi in zip(pts, x, y):
            ax.annotate(str(p["steps"]), (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
    for mode, f in doc["analysis"]["linear"].items():
        if "slope" not in f:
            continue
        xs = [p["heldout"]["loss"]["mean"] for p in doc["points"] if p["regularize"] == mode]
        grid = np.linspace(min(xs), max(xs), 50)
        ax.plot(grid, f["slope"] * grid + f["intercept"], color="#444", ls="-" if mode == "none" else "--", lw=1,
                label=f"{mode}: slope {f['slope']:.2f}, R² {f['r2']:.2f}")
    ax.set_xlabel("held-out fine-tuning loss (nats/token)")
    ax.set_ylabel("forgetting CE (nats/token)")
    ax.set_title("Forgetting vs fine-tuning loss (labels: steps)", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_icl(doc: dict, path: Path) -> Path:
    """English ICL rate of the fine-tuned model and recovery under each conjugate, against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = doc["settings"]["ranks"]
    others = [t for t in doc["settings"]["transforms"] if t != "identity"]
    fig, axes = plt.subplots(1, 1 + len(others), figsize=(3.2 * (1 + len(others)), 3.4), dpi=110, squeeze=False)
    for pts in _runs(doc).values():
        colour, ls, mk, label = _style(pts, ranks)
        t = [p["steps"] for p in pts]
        axes[0, 0].plot(t, [100 * (p["icl"]["rates"]["identity"]["finetuned"]["rate"] or 0) for p in pts], color=colour,
                        ls=ls, marker=mk, label=label)
        for ax, tr in zip(axes[0, 1:], others):
            rec = [p["icl"]["recovery"].get(tr, {}).get("recovery") for p in pts]
            ax.plot(t, [float("nan") if v is None else v for v in rec], color=colour, ls=ls, marker=mk)
    pre = doc["points"][0]["icl"]["rates"]["identity"]["pretrained"]["rate"]
    axes[0, 0].axhline(100 * pre, color="#888", ls=":", lw=1, label="pretrained")
    axes[0, 0].set_title("English ICL rate, fine-tuned (%)", fontsize=8)
    axes[0, 0].legend(frameon=False, fontsize=6)
    for ax, tr in zip(axes[0, 1:], others):
        ax.set_title(f"recovery under {text_name(tr)}", fontsize=8)
        ax.axhline(0, color="#888", lw=0.8)
    steps = doc["settings"]["steps"]
    for ax in axes[0]:
        _step_axis(ax, steps)
        ax.set_xlim(min(steps) * 0.8, max(steps) * 1.25)  # also where a panel has no finite value
        ax.set_xlabel("steps", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)
