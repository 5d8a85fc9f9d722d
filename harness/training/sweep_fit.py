"""The fits of `conjugate sweep`: forgetting as a shifted power law in LoRA parameters and steps (jointly),
forgetting against the fine-tuning loss (linear), and regularised vs plain fine-tuning at matched loss.

The joint law (Kalajdzievski 2024 report a shifted power law in the number of fine-tuned parameters P and
in update steps t; this is the project's parametrisation of it)::

    CE(P, t) = c + A * (P / P0) ** a * (t / t0) ** b

with ``P0``, ``t0`` the geometric means of the grid (so ``A`` is the excess forgetting at the grid's centre),
``A >= 0``, ``0 <= c <= min CE``, ``a``, ``b`` in [-3, 3]. With few step counts the free shift ``c`` and the
exponents trade off (on the Gemma sweep ``c`` went to 0 and both exponents near 0), so a second fit anchors the
shift where the metric puts it: CE against the base's predictions is the base's entropy H plus
KL(base || fine-tuned), and at step 0 it is H exactly. ``kl`` fits ``KL = A * (P / P0) ** a * (t / t0) ** b``
(``c`` = 0; every resample re-measures KL, so H's own uncertainty is in the intervals). Intervals are percentile bootstraps over the
*measurement*: each resample redraws the reference text's chunks (for CE) and the held-out examples (for
the fine-tuning loss) with the same draw for every checkpoint, re-measures every point and refits. They do
not include seed-to-seed training variation (one training run per grid cell).
"""
from __future__ import annotations

import math
from typing import Any

N_BOOT = 400
SEED = 0


# -- re-measuring the points under a bootstrap draw ------------------------------------------------

def _draws(points: list[dict], n_boot: int = N_BOOT, seed: int = SEED):
    """(chunk weights, example weights): one multinomial draw per resample, shared by all points."""
    from harness.analysis.stats import bootstrap_weights

    n_chunks = len(points[0]["forgetting"]["chunks"]["n"])
    n_ex = len(points[0]["heldout"]["sums"])
    return bootstrap_weights(n_chunks, seed, n_boot), bootstrap_weights(n_ex, seed + 1, n_boot)


def _ce(point: dict, wc=None, measure: str = "ce"):
    """Forgetting CE (or its ``kl`` part) of a point, token-weighted over chunks; with ``wc``, one per resample."""
    import numpy as np

    ch = point["forgetting"]["chunks"]
    n, ce = np.asarray(ch["n"], float), np.asarray(ch[measure], float)
    return float(ce.sum() / n.sum()) if wc is None else (wc @ ce) / (wc @ n)


def _loss(point: dict, we=None):
    import numpy as np

    h = point["heldout"]
    s, t = np.asarray(h["sums"], float), np.asarray(h["tokens"], float)
    return float(s.sum() / t.sum()) if we is None else (we @ s) / (we @ t)


def _pct(draws) -> list[float] | None:
    import numpy as np

    d = np.asarray(draws, float)
    d = d[np.isfinite(d)]
    return [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if d.size else None


# -- the joint power law ---------------------------------------------------------------------------------

def _law(x, A, a, b, c):
    return c + A * x[0] ** a * x[1] ** b


def fit_joint(P, t, y, start: tuple | None = None, shift: bool = True) -> dict[str, float]:
    """Least-squares fit of ``c + A * P**a * t**b`` (P, t already scaled; ``shift=False``: c = 0); start from a
    grid unless given."""
    import numpy as np
    from scipy.optimize import least_squares

    P, t, y = (np.asarray(v, float) for v in (P, t, y))
    c_hi = max(float(y.min()), 1e-9) if shift else 1e-9  # no shift: c pinned at ~0
    if start is None:
        best = None
        for a in np.linspace(-1.5, 1.5, 31):
            for b in np.linspace(-0.5, 2.0, 26):
                X = np.stack([P ** a * t ** b, np.ones_like(y) if shift else np.zeros_like(y)], 1)
                (A0, c0), *_ = np.linalg.lstsq(X, y, rcond=None)
                A0, c0 = max(A0, 1e-9), min(max(c0, 0.0), c_hi)
                r = float(np.sum((_law((P, t), A0, a, b, c0) - y) ** 2))
                if best is None or r < best[0]:
                    best = (r, A0, a, b, c0)
        start = best[1:]
    A0, a0, b0, c0 = start
    lo, hi = [0.0, -3.0, -3.0, 0.0], [np.inf, 3.0, 3.0, c_hi]
    x0 = np.clip([A0, a0, b0, c0], np.array(lo) + 1e-12, np.array(hi) - 1e-12)
    res = least_squares(lambda p: _law((P, t), *p) - y, x0, bounds=(lo, hi), method="trf", max_nfev=5000)
    A, a, b, c = (float(v) for v in res.x)
    pred = _law((P, t), A, a, b, c)
    ss_res, ss_tot = float(np.sum((y - pred) ** 2)), float(np.sum((y - y.mean()) ** 2))
    return {"A": A, "a": a, "b": b, "c": c, "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan,
            "rmse": math.sqrt(ss_res / len(y))}


def power_law(points: list[dict], n_boot: int = N_BOOT, measure: str = "ce") -> dict[str, Any]:
    """The joint fit over ``points`` with bootstrap intervals for every parameter, or a note why not.

    ``measure="kl"``: the fit without a free shift of the KL part (see the module docstring)."""
    import numpy as np

    Ps = {p["trainable_parameters"] for p in points}
    ts = {p["steps"] for p in points}
    if len(points) < 5 or len(Ps) < 2 or len(ts) < 2:
        return {"note": f"needs >= 5 checkpoints over >= 2 ranks and >= 2 step counts; have {len(points)} "
                        f"({len(Ps)} ranks, {len(ts)} step counts)"}
    P = np.array([p["trainable_parameters"] for p in points], float)
    t = np.array([p["steps"] for p in points], float)
    P0, t0 = float(np.exp(np.log(P).mean())), float(np.exp(np.log(t).mean()))
    shift = measure == "ce"
    y = np.array([_ce(p, measure=measure) for p in points])
    fit = fit_joint(P / P0, t / t0, y, shift=shift)
    wc, _ = _draws(points, n_boot)
    boot = np.array([_ce(p, wc, measure) for p in points]).T  # (n_boot, points)
    start = (fit["A"], fit["a"], fit["b"], fit["c"])
    fits = [fit_joint(P / P0, t / t0, yb, start=start, shift=shift) for yb in boot]
    ci = {k: _pct([f[k] for f in fits]) for k in ("A", "a", "b", "c")}
    formula = "CE(P, t) = c + A * (P / P0)^a * (t / t0)^b" if shift else "KL(P, t) = A * (P / P0)^a * (t / t0)^b"
    return {"formula": formula, "measure": measure, **fit, "P0": P0, "t0": t0, "ci": ci,
            "n_points": len(points), "dof": len(points) - 4, "n_boot": n_boot,
            "ci_method": "percentile bootstrap over reference-text chunks (shared draw across checkpoints), refit",
            "points": [{"point": p["point"], "P": int(p["trainable_parameters"]), "steps": p["steps"], "ce": float(v),
                        "fitted": float(_law((pp / P0, tt / t0), fit["A"], fit["a"], fit["b"], fit["c"]))}
                       for p, v, pp, tt in zip(points, y, P, t)]}


# -- forgetting against the fine-tuning loss --------------------------------------------------------------

def linear(points: list[dict], n_boot: int = N_BOOT) -> dict[str, Any]:
    """CE = slope * loss + intercept over ``points``, with R^2 and a bootstrap interval for the slope."""
    import numpy as np

    if len(points) < 3:
        return {"note": f"needs >= 3 checkpoints, have {len(points)}"}
    x = np.array([_loss(p) for p in points])
    y = np.array([_ce(p) for p in points])
    slope, icpt = np.polyfit(x, y, 1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((y - (slope * x + icpt)) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    wc, we = _draws(points, n_boot)
    xb = np.array([_loss(p, we) for p in points]).T
    yb = np.array([_ce(p, wc) for p in points]).T
    slopes = [np.polyfit(a, b, 1)[0] for a, b in zip(xb, yb)]
    return {"formula": "CE = slope * heldout_loss + intercept", "slope": float(slope), "intercept": float(icpt),
            "r2": r2, "slope_ci": _pct(slopes), "n_points": len(points), "n_boot": n_boot}


# -- regularised vs plain at matched fine-tuning loss --------------------------------------------------------

def _paired_diff(a: dict[str, int], b: dict[str, int], n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, Any]:
    """Difference of two rates (a - b) over the examples both have, with a paired bootstrap interval."""
    import numpy as np

    from harness.analysis.stats import bootstrap_weights

    ids = sorted(set(a) & set(b))
    if not ids:
        return {"mean": None, "ci": None, "n": 0}
    d = np.array([a[i] - b[i] for i in ids], float)
    w = bootstrap_weights(len(ids), seed, n_boot)
    return {"mean": float(d.mean()), "ci": _pct((w @ d) / len(ids)), "n": len(ids)}


def _icl(point: dict, model: str = "finetuned", transform: str = "identity") -> dict | None:
    return ((point.get("icl") or {}).get("rates") or {}).get(transform, {}).get(model)


def _pair_row(reg: dict, plain: dict, wc, n_boot: int) -> dict[str, Any]:
    """One regularised checkpoint next to the plain checkpoint of the same rank with the closest held-out loss."""
    d_ce = _ce(reg, wc) - _ce(plain, wc)
    row: dict[str, Any] = {
        "rank": reg["rank"], "regularize": reg["regularize"], "reg_steps": reg["steps"], "plain_steps": plain["steps"],
        "loss": {"reg": reg["heldout"]["loss"], "plain": plain["heldout"]["loss"]},
        "ce": {"reg": reg["forgetting"]["ce"], "plain": plain["forgetting"]["ce"],
               "diff": {"mean": _ce(reg) - _ce(plain), "ci": _pct(d_ce)}},
        "icl_en": {"reg": _icl(reg), "plain": _icl(plain), "pretrained": _icl(plain, "pretrained"),
                   "diff": _paired_diff(reg["icl"]["samples"].get("finetuned", {}),
                                        plain["icl"]["samples"].get("finetuned", {}), n_boot)},
        "drop_en": {"reg": reg["icl"]["english_drop"], "plain": plain["icl"]["english_drop"]},
        "recovery": {t: {"reg": reg["icl"]["recovery"].get(t), "plain": plain["icl"]["recovery"].get(t)}
                     for t in reg["icl"]["recovery"]},
    }
    if reg.get("refusal") and plain.get("refusal"):
        row["refusal"] = {"reg": reg["refusal"]["rates"]["finetuned"], "plain": plain["refusal"]["rates"]["finetuned"],
                          "diff": _paired_diff(reg["refusal"]["samples"].get("finetuned", {}),
                                               plain["refusal"]["samples"].get("finetuned", {}), n_boot)}
    return row


def compare(points: list[dict], n_boot: int = N_BOOT) -> list[dict[str, Any]]:
    """For every regularised checkpoint, the comparison with its loss-matched plain checkpoint (same rank)."""
    plain = [p for p in points if p["regularize"] == "none"]
    regs = [p for p in points if p["regularize"] != "none"]
    if not plain or not regs:
        return []
    wc, _ = _draws(points, n_boot)
    rows = []
    for r in regs:
        same = [p for p in plain if p["rank"] == r["rank"]] or plain
        match = min(same, key=lambda p: abs(_loss(p) - _loss(r)))
        rows.append(_pair_row(r, match, wc, n_boot))
    return rows


def matched_ce(points: list[dict], mode: str, n_boot: int = N_BOOT) -> dict[str, Any]:
    """CE(regularised) - CE(plain) at the same held-out loss L*, inside the loss range both arms reach.

    Both arms use the ranks the regularised one has. L* is the middle of the overlap of the two arms'
    held-out loss ranges, and each arm's CE at L* is interpolated linearly between its two checkpoints
    either side (CE is far from linear in the loss over a long run, so a line fitted to one arm and
    extrapolated to the other's range can say anything). No overlap: a note, no number. The interval
    resamples chunks and held-out examples (one draw for all checkpoints), L* moving with each draw.
    """
    import numpy as np

    regs = [p for p in points if p["regularize"] == mode]
    plain = [p for p in points if p["regularize"] == "none" and p["rank"] in {r["rank"] for r in regs}]
    if len(regs) < 2 or len(plain) < 2:
        return {"note": f"needs >= 2 checkpoints in each arm; have {len(regs)} {mode} and {len(plain)} plain"}
    wc, we = _draws(points, n_boot)

    def at(x, y, lstar):
        o = np.argsort(x)
        return float(np.interp(lstar, x[o], y[o]))

    def matched(xr, yr, xp, yp):
        """(lo, hi, CE difference at the middle of the shared loss range [lo, hi]; nan when lo > hi)."""
        lo, hi = float(max(xr.min(), xp.min())), float(min(xr.max(), xp.max()))
        return lo, hi, (at(xr, yr, (lo + hi) / 2) - at(xp, yp, (lo + hi) / 2) if lo <= hi else float("nan"))

    xr, yr = np.array([_loss(p) for p in regs]), np.array([_ce(p) for p in regs])
    xp, yp = np.array([_loss(p) for p in plain]), np.array([_ce(p) for p in plain])
    lo, hi, est = matched(xr, yr, xp, yp)
    if lo > hi:
        return {"note": f"the arms' held-out losses do not overlap ({mode} {xr.min():.3f}-{xr.max():.3f}, plain "
                        f"{xp.min():.3f}-{xp.max():.3f}); compare the nearest checkpoints in the table"}
    xrb, yrb = np.array([_loss(p, we) for p in regs]).T, np.array([_ce(p, wc) for p in regs]).T
    xpb, ypb = np.array([_loss(p, we) for p in plain]).T, np.array([_ce(p, wc) for p in plain]).T
    draws = [matched(xrb[b], yrb[b], xpb[b], ypb[b])[2] for b in range(n_boot)]
    return {"mode": mode, "loss_star": (lo + hi) / 2, "range": [lo, hi], "diff": est, "ci": _pct(draws),
            "n_reg": len(regs), "n_plain": len(plain), "ranks": sorted({p["rank"] for p in regs})}


def analyse(points: list[dict], base: dict) -> dict[str, Any]:
    """Everything sweep.json reports beyond the points: fits per regularisation mode, comparisons."""
    modes = list(dict.fromkeys(p["regularize"] for p in points))
    by = {m: [p for p in points if p["regularize"] == m] for m in modes}
    return {
        "power_law": {m: power_law(ps) for m, ps in by.items()},
        "power_law_kl": {m: power_law(ps, measure="kl") for m, ps in by.items()},
        "linear": {m: linear(ps) for m, ps in by.items()},
        "comparison": compare(points),
        "matched": {m: matched_ce(points, m) for m in modes if m != "none"},
        "base_heldout_loss": base["heldout"]["loss"],
    }
