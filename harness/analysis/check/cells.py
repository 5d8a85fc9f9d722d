"""Gating cells: each (task, transform, model, label) rate of a run against a baseline's count or a limit.

A :class:`Cell` carries the reference, the current count with its Wilson interval, the verdict (status,
failing) and the reason. Rates are k/n; differences within :data:`EPS` are equal.
"""
from __future__ import annotations

import dataclasses

from harness.analysis.check.baseline import Baseline
from harness.analysis.check.definition import Definitions
from harness.analysis.check.load import Run
from harness.analysis.check.selection import task_base

DEFAULT_MAX_DROP = 0.05
DEFAULT_ALPHA = 0.05
EPS = 1e-9  # rates are k/n; differences within EPS are equal (0.65 - 0.05 must not read as 0.6000000000000001)

# status words (the table, --json and JUnit)
PASS, REGRESSION, NEW, MISSING, SKIP = "PASS", "REGRESSION", "NEW", "MISSING", "SKIP"
#: the cell's task version or options, or its transform's version, differ from the baseline's: not comparable
DEFINITION_CHANGED = "DEFINITION-CHANGED"


@dataclasses.dataclass
class Cell:
    task: str
    transform: str
    model: str
    label: str
    status: str = PASS
    failing: bool = False
    # reference: a baseline count or a limit
    base_k: int | None = None
    base_n: int | None = None
    limit_min: float | None = None
    limit_max: float | None = None
    # now
    k: int | None = None
    n: int | None = None
    errors: int = 0
    lo: float | None = None
    hi: float | None = None
    p_value: float | None = None
    message: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def base_rate(self) -> float | None:
        return self.base_k / self.base_n if self.base_n else None

    @property
    def change(self) -> float | None:
        return None if self.rate is None or self.base_rate is None else self.rate - self.base_rate

    def key(self) -> str:
        return f"{self.task}/{self.transform}/{self.model}/{self.label}"


@dataclasses.dataclass(frozen=True)
class Gate:
    """How a run is gated, as validated from the command line (the header, --json and JUnit properties show it)."""

    mode: str  # "baseline" or "limits"
    models: tuple[str, ...]
    pairs: list[tuple[str, str]]  # (task, label)
    direction: str  # "higher" or "lower" is better
    max_drop: float = DEFAULT_MAX_DROP
    significant: bool = False
    alpha: float = DEFAULT_ALPHA
    min_rate: float | None = None
    max_rate: float | None = None
    thresholds: str | None = None  # the file, for display


def pct(x: float | None) -> str:
    """A rate in percent with one decimal (the table, messages and JUnit of check)."""
    return "—" if x is None else f"{100 * x:.1f}"


def pts(x: float) -> str:
    """A change in signed points."""
    return f"{100 * x:+.1f}"


def _now(cell: Cell, run: Run) -> bool:
    """Fill the current counts; False if the run has no scored samples for the cell."""
    from harness.analysis.stats import wilson  # numpy: not at import time (`--help` stays fast)

    row = run.rows.get((cell.task, cell.transform, cell.model))
    if row is None or cell.label not in row["rates"]:
        return False
    cell.n, cell.k, cell.errors = row["n"], row["rates"][cell.label]["k"], int(row.get("errors") or 0)
    if cell.n == 0:
        return False
    cell.lo, cell.hi = wilson(cell.k, cell.n)
    if cell.errors:
        cell.notes.append(f"{cell.errors} errored sample{'s' if cell.errors != 1 else ''} not counted")
    return True


# -- against a baseline ----------------------------------------------------------------------------

def compare_baseline(run: Run, base: Baseline, pairs, transforms, models, max_drop: float, direction: str,
                     significant: bool, alpha: float, allow_missing: bool,
                     allow_definition_change: bool = False) -> list[Cell]:
    """One cell per (task, label) x transform (the run's order, then the baseline's) x model; a cell whose
    definition (task version or options, transform version) changed is DEFINITION-CHANGED, not judged,
    unless ``allow_definition_change`` (then judged, with a note)."""
    cells: list[Cell] = []
    defs = Definitions(base.doc, run.manifest, run.tasks, run.transforms)
    order = list(run.transforms) + [t for (_, t, _, _) in base.cells if t not in run.transforms]
    order = list(dict.fromkeys(order))
    for task, label in pairs:
        for transform in order:
            if transforms is not None and transform not in transforms:
                continue
            for model in models:
                b = base.cells.get((task, transform, model, label))
                if b is None and (task, transform, model) not in run.rows:
                    continue
                c = Cell(task, transform, model, label)
                has_now = _now(c, run)
                if b is not None:
                    c.base_k, c.base_n = b["k"], b["n"]
                if b is None or not b["n"]:
                    c.status = NEW
                    c.message = "not in the baseline" if b is None else "the baseline has no scored samples here"
                    if not has_now:
                        c.notes.append("no scored samples in the run either")
                elif not has_now:
                    c.status, c.failing = MISSING, not allow_missing
                    c.message = (f"in the baseline ({label} {pct(c.base_rate)}%, n={c.base_n}) but "
                                 + ("not in the run" if c.n is None else f"no scored samples in the run ({c.errors} errors)"))
                elif (changes := defs.changes(task, transform)) and not allow_definition_change:
                    c.status, c.failing = DEFINITION_CHANGED, True
                    c.message = ("; ".join(changes) + ": the rates measure different things; write the baseline "
                                 "again, or compare anyway with --allow-definition-change")
                else:
                    _judge_change(c, max_drop, direction, significant, alpha)
                    c.notes += [f"definition changed (allowed): {x}" for x in changes]
                cells.append(c)
    return cells


def _judge_change(c: Cell, max_drop: float, direction: str, significant: bool, alpha: float) -> None:
    """A move beyond ``max_drop`` in the bad direction is a regression (if significant, under --require-significant)."""
    from harness.analysis.stats import fisher_one_sided  # numpy: not at import time (`--help` stays fast)

    label = c.label
    worse = c.rate < c.base_rate - max_drop - EPS if direction == "higher" else c.rate > c.base_rate + max_drop + EPS
    moved_bad = c.rate < c.base_rate - EPS if direction == "higher" else c.rate > c.base_rate + EPS
    if moved_bad:
        c.p_value = fisher_one_sided(c.k, c.n, c.base_k, c.base_n, "lower" if direction == "higher" else "higher")
    if worse:
        word = "fell" if direction == "higher" else "rose"
        c.message = (f"{label} {word} from {pct(c.base_rate)}% to {pct(c.rate)}% ({pts(c.change)} points; "
                     f"allowed {'-' if direction == 'higher' else '+'}{100 * max_drop:.1f}; "
                     f"one-sided Fisher p = {c.p_value:.3g})")
        if significant and c.p_value >= alpha:
            c.notes.append(f"not significant (p = {c.p_value:.3g} >= {alpha:g}): passed under "
                           "--require-significant")
        else:
            c.status, c.failing = REGRESSION, True
    if c.base_n != c.n:
        c.notes.append(f"n {c.base_n} in the baseline, {c.n} now")


# -- against limits --------------------------------------------------------------------------------

def limit_for(thresholds, task: str, transform: str, default):
    """The most specific limit for a cell: task/transform, task/*, */transform, *, else ``default``."""
    for key in (f"{task}/{transform}", f"{task_base(task)}/{transform}", f"{task}/*", f"{task_base(task)}/*",
                f"*/{transform}", "*"):
        if key in thresholds:
            return thresholds[key]
    return default


def compare_limits(run: Run, pairs, transforms, models, default, thresholds, significant: bool,
                   allow_missing: bool) -> list[Cell]:
    """One cell per (task, label) x transform (the run's, plus any a thresholds file names) x model."""
    cells: list[Cell] = []
    for task, label in pairs:
        listed = [t for t in run.transforms if any((task, t, m) in run.rows for m in models)]
        # transforms a thresholds file names explicitly for this task, even if the run lacks them
        named = [k.rpartition("/")[2] for k in thresholds
                 if k != "*" and k.rpartition("/")[0] in (task, task_base(task)) and k.rpartition("/")[2] != "*"]
        for transform in list(dict.fromkeys(listed + named)):
            if transforms is not None and transform not in transforms:
                continue
            for model in models:
                c = Cell(task, transform, model, label)
                has_now = _now(c, run)
                lim = limit_for(thresholds, task, transform, default)
                if lim is None or lim == (None, None):
                    if not has_now and c.n is None:
                        continue
                    c.status, c.message = SKIP, "no limit for this cell"
                elif not has_now:
                    c.limit_min, c.limit_max = lim
                    c.status, c.failing = MISSING, not allow_missing
                    c.message = "a limit names this cell but " + (
                        "the run does not have it" if c.n is None else f"the run has no scored samples ({c.errors} errors)")
                else:
                    c.limit_min, c.limit_max = lim
                    _judge_limits(c, significant)
                cells.append(c)
    return cells


def _judge_limits(c: Cell, significant: bool) -> None:
    """Below the minimum or above the maximum is a regression (under --require-significant: the whole interval)."""
    bad = []
    if c.limit_min is not None and c.rate < c.limit_min - EPS:
        if not significant or c.hi < c.limit_min - EPS:
            bad.append(f"{c.label} {pct(c.rate)}% is below the minimum {pct(c.limit_min)}%")
        else:
            c.notes.append("below the minimum, but its 95% interval reaches it: passed under --require-significant")
    if c.limit_max is not None and c.rate > c.limit_max + EPS:
        if not significant or c.lo > c.limit_max + EPS:
            bad.append(f"{c.label} {pct(c.rate)}% is above the maximum {pct(c.limit_max)}%")
        else:
            c.notes.append("above the maximum, but its 95% interval reaches it: passed under --require-significant")
    if bad:
        c.status, c.failing = REGRESSION, True
        c.message = "; ".join(bad) + f" (95% interval {pct(c.lo)}-{pct(c.hi)}%, n={c.n})"
