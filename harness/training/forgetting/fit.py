"""Forgetting in fine-tuning steps: the steps of each checkpoint and the shifted power law of Kalajdzievski (2024).

    CE(t) = c + A * (t + t0) ** alpha

fitted in the number of steps t over checkpoints of one recipe, with ``c`` (bounded by 0 and the smallest
measured CE), ``A >= 0``, ``0 < alpha <= 3`` and ``t0`` a fixed offset of the step axis (0: a LoRA model
equals its base at step 0). A second, *anchored* fit fixes ``c`` at the measured pretrained entropy H,
which is exactly CE at step 0, so that ``A * t ** alpha`` is the KL.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ConjugateError

Z95 = 1.959963984540054  # a 95% interval is +- Z95 standard errors


def shifted_power_law(t, A: float, alpha: float, c: float, t0: float = 0.0):
    """c + A * (t + t0) ** alpha."""
    import numpy as np

    return c + A * np.power(np.asarray(t, float) + t0, alpha)


def _check_points(t, y, t0: float, c: float | None) -> None:
    import numpy as np

    if t.shape != y.shape:
        raise ConjugateError(f"power-law fit: {len(t)} step values for {len(y)} measurements")
    if len(t) < 3 or len(set(t.tolist())) < 3:
        raise ConjugateError(f"power-law fit needs at least 3 checkpoints with different step counts, got {len(set(t.tolist()))}"
                             " (give several --finetuned models with --steps)")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(t)) or np.any(t + t0 < 0):
        raise ConjugateError("power-law fit: steps + t0 must be >= 0 and all values finite")
    if c is not None and not math.isfinite(c):
        raise ConjugateError("power-law fit: the fixed shift c must be finite")


def _start_point(t, y, W, t0: float, c: float | None, c_hi: float) -> tuple[float, float, float]:
    """(A, alpha, c) to start from: a grid over alpha with the linear parameters (A, c) solved by least squares."""
    import numpy as np

    x = t + t0
    best = None
    for a in np.linspace(0.05, 3.0, 60):  # variable projection: (A, c) linear given alpha
        if c is None:
            X = np.stack([np.power(x, a), np.ones_like(x)], 1)
            coef, *_ = np.linalg.lstsq(X * W[:, None], y * W, rcond=None)
            A0, c0 = max(coef[0], 1e-12), min(max(coef[1], 0.0), c_hi)
        else:
            X = np.power(x, a)[:, None]
            coef, *_ = np.linalg.lstsq(X * W[:, None], (y - c) * W, rcond=None)
            A0, c0 = max(coef[0], 1e-12), c
        r = float(np.sum(((shifted_power_law(t, A0, a, c0, t0) - y) * W) ** 2))
        if best is None or r < best[0]:
            best = (r, A0, a, c0)
    _, A0, a0, c0 = best
    return A0, float(np.clip(a0, 1e-3, 2.999)), c0


def fit_power_law(steps: Sequence[float], values: Sequence[float], sigma: Sequence[float] | None = None,
                  t0: float = 0.0, c: float | None = None) -> dict[str, Any]:
    """Fit CE(t) = c + A * (t + t0) ** alpha with ``scipy.optimize.curve_fit`` (trust-region, bounded).

    Bounds: A >= 0, 0 < alpha <= 3 (forgetting grows with steps), 0 <= c <= min(values)
    (the shift; cross-entropy is non-negative and A * t ** alpha >= 0). ``t0`` is
    fixed (default 0: at step 0 a LoRA model equals its base). ``c`` given: the
    shift is fixed (e.g. at the pretrained entropy H, which is CE at step 0,
    so that A * t ** alpha is the KL) and only A and alpha are fitted. The
    start point comes from a grid over alpha with the linear parameters solved
    by least squares. ``sigma`` (e.g. the CI half-widths / 1.96) weights the
    points. Needs at least 3 points with distinct steps; when the points leave
    no degrees of freedom the fit is exact and has no standard errors.
    """
    import warnings

    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    t = np.asarray(steps, float)
    y = np.asarray(values, float)
    _check_points(t, y, t0, c)
    sig = None
    if sigma is not None:
        s = np.asarray(sigma, float)
        if s.shape == y.shape and np.all(np.isfinite(s)) and np.all(s > 0):
            sig = s
    c_hi = max(float(y.min()), 1e-12)
    A0, a0, c0 = _start_point(t, y, 1.0 / sig if sig is not None else np.ones_like(y), t0, c, c_hi)
    if c is None:
        fn = lambda tt, A, al, cc: shifted_power_law(tt, A, al, cc, t0)  # noqa: E731
        p0, bounds = [A0, a0, float(np.clip(c0, 1e-12, c_hi * (1 - 1e-9)))], ([0.0, 1e-6, 0.0], [np.inf, 3.0, c_hi])
    else:
        fn = lambda tt, A, al: shifted_power_law(tt, A, al, c, t0)  # noqa: E731
        p0, bounds = [A0, a0], ([0.0, 1e-6], [np.inf, 3.0])
    try:
        with warnings.catch_warnings():  # no covariance without degrees of freedom: expected, stderr None
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, pcov = curve_fit(fn, t, y, p0=p0, sigma=sig, absolute_sigma=False, bounds=bounds, method="trf",
                                   maxfev=20000, x_scale="jac")
    except (RuntimeError, ValueError) as exc:
        raise ConjugateError(f"power-law fit failed: {exc}") from None
    return _fit_result(t, y, popt, pcov, t0, c, sig is not None)


def _fit_result(t, y, popt, pcov, t0: float, c: float | None, weighted: bool) -> dict[str, Any]:
    """The fitted parameters with standard errors (when there are degrees of freedom), R^2, RMSE and the points."""
    import numpy as np

    names = ("A", "alpha", "c")[: len(popt)]
    params = dict(zip(names, (float(v) for v in popt)))
    params.setdefault("c", float(c) if c is not None else math.nan)
    pred = shifted_power_law(t, params["A"], params["alpha"], params["c"], t0)
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    dof = len(t) - len(popt)
    se = [float(v) for v in np.sqrt(np.clip(np.diag(pcov), 0, None))] if dof > 0 and np.all(np.isfinite(pcov)) else None
    return {
        "formula": "CE(t) = c + A * (t + t0) ** alpha",
        **params, "t0": float(t0), "c_fixed": c is not None,
        "stderr": dict(zip(names, se)) if se else None,
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        "rmse": math.sqrt(ss_res / len(t)),
        "n_points": len(t), "dof": dof, "weighted": weighted,
        "points": [{"steps": float(a), "value": float(b), "fitted": float(p)} for a, b, p in zip(t, y, pred)],
    }


def fit_conditions(results: list[dict]) -> dict[str, Any]:
    """The power-law fit of CE in steps for each condition with at least 3 checkpoints of known steps.

    Per condition: the free fit (A, alpha, c) and, under ``anchored``, the fit
    with c fixed at the pretrained entropy H of that text (CE at step 0), where
    A * t ** alpha is the KL.
    """
    fits = {}
    by_cond: dict[str, list[dict]] = {}
    for r in results:
        if r["steps"] is not None:
            by_cond.setdefault(r["condition"], []).append(r)
    for cond, rows in by_cond.items():
        if len({r["steps"] for r in rows}) < 3:
            continue
        sigma = [(r["ce"]["hi"] - r["ce"]["lo"]) / (2 * Z95) for r in rows]
        t, y = [r["steps"] for r in rows], [r["ce"]["mean"] for r in rows]
        fits[cond] = fit_power_law(t, y, sigma=sigma)
        h = rows[0]["entropy"]["mean"]  # the same for every checkpoint: the pretrained model's, on the same text
        fits[cond]["anchored"] = fit_power_law(t, y, sigma=sigma, c=h)
    return fits


# -- steps of a checkpoint -------------------------------------------------------

def steps_of(spec) -> tuple[int | None, str | None]:
    """Fine-tuning steps of a model from its adapter (or model) folder: recipe.json, trainer_state.json or the name."""
    from harness.pipeline.models import adapter_folder

    folders = []
    if spec.adapter:
        try:
            folders.append(adapter_folder(spec))
        except ConjugateError:
            pass
    p = Path(spec.model).expanduser()
    if p.is_dir():
        folders.append(p)
    for folder in folders:
        for name, path in (("recipe.json", ("config", "steps")), ("trainer_state.json", ("global_step",))):
            steps = _json_int(folder / name, path)
            if steps is not None:
                return steps, f"{folder / name}"
        m = re.fullmatch(r"(?:checkpoint|step|steps)[-_](\d+)", folder.resolve().name)
        if m:
            return int(m.group(1)), f"folder name {folder.name}"
    return None, None


def _json_int(path: Path, keys: tuple[str, ...]) -> int | None:
    """The integer at ``keys`` in the JSON file ``path``; None when the file, the keys or an int are missing."""
    if not path.exists():
        return None
    try:
        value: Any = json.loads(path.read_text())
        for key in keys:
            value = value[key]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None
