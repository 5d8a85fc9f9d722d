"""The summary-section machinery: the context every section reads, the ``@section`` marker, and summarize().

See the package docstring (:mod:`harness.analysis.summary`) for how to add a section.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Sequence

from harness.analysis import stats
from harness.errors import ConjugateError
from harness.registry import SECTIONS
from harness.types import ERROR, Sample

log = logging.getLogger(__name__)

PT, FT = "pretrained", "finetuned"
DEFAULT_ORDER = 100  # sections that do not say where they go come after the built-ins (10..50)

SectionFn = Callable[["SummaryContext"], dict[str, Any]]


@dataclass
class SummaryContext:
    """What a section may read. ``summary`` holds the keys of the sections that ran before it (read it, do not
    change it); the cached properties are shared work that several sections need."""

    samples: Sequence[Sample]
    task_labels: dict[str, tuple[str, ...]]
    primary: dict[str, str]
    transforms: Sequence[str]
    baseline: str = "identity"
    n_boot: int = stats.DEFAULT_N_BOOT
    seed: int = stats.DEFAULT_SEED
    paired_test: str = "mcnemar"
    summary: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def outcomes(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """(model, task, transform) -> {example_id: outcome} for scored samples (the first one if repeated)."""
        out: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
        for s in self.samples:
            if s.outcome != ERROR:
                out[(s.model, s.task, s.transform)].setdefault(s.example_id, s.outcome)
        return out


def section(keys: Sequence[str], order: float = DEFAULT_ORDER, optional: bool = False) -> Callable[[SectionFn], SectionFn]:
    """Mark a function ``(ctx: SummaryContext) -> {key: value}`` as a summary section.

    ``keys``: the summary.json keys it returns, in the order they are written. ``order``: where it runs (and
    its keys go) among the sections; ties go by registered name. ``optional``: when it raises, the run keeps
    going; its keys become empty lists and the failure a note in manifest.json.
    """
    def mark(fn: SectionFn) -> SectionFn:
        fn.keys, fn.order, fn.optional = tuple(keys), order, optional  # type: ignore[attr-defined]
        return fn

    return mark


def ordered_sections(notes: list[str]) -> list[tuple[str, SectionFn]]:
    """(name, function) of every registered section, in declared order; a plug-in that fails to import is a note."""
    found = []
    for entry in SECTIONS.entries():
        try:
            fn = entry.load()
        except ConjugateError as exc:
            if entry.origin == "builtin":
                raise
            notes.append(f"summary section {entry.name!r} skipped: {exc}")
            continue
        if not isinstance(getattr(fn, "keys", None), tuple):
            raise ConjugateError(f"summary section {entry.name!r} ({entry.origin}) is not marked with "
                                 f"@harness.analysis.summary.section(keys=...); mark it or uninstall the plugin")
        found.append((entry.name, fn))
    return sorted(found, key=lambda nf: (nf[1].order, nf[0]))


def run_section(name: str, fn: SectionFn, ctx: SummaryContext, notes: list[str]) -> dict[str, Any]:
    """The keys ``fn`` adds, checked against what it declared; an optional section's failure becomes a note."""
    try:
        out = fn(ctx)
        if not isinstance(out, dict) or list(out) != list(fn.keys):
            got = list(out) if isinstance(out, dict) else type(out).__name__
            raise ValueError(f"returned {got}, but declared keys {list(fn.keys)}")
        return out
    except Exception as exc:
        if not fn.optional:
            raise
        note = f"{name} summary failed: {type(exc).__name__}: {exc}"
        if note not in notes:
            notes.append(note)
        log.warning(note)
        return {key: [] for key in fn.keys}


def summarize(samples: Sequence[Sample], task_labels: dict[str, tuple[str, ...]], primary: dict[str, str],
              transforms: Sequence[str], baseline: str = "identity", *, n_boot: int = stats.DEFAULT_N_BOOT,
              seed: int = stats.DEFAULT_SEED, paired_test: str = "mcnemar", notes: list[str] | None = None) -> dict:
    """summary.json: every registered section's keys, in declared order (see :mod:`harness.analysis.summary`).

    ``paired_test``: ``"mcnemar"`` (exact, default), ``"mcnemar-chi2"`` or ``"permutation"`` (sign flips,
    seeded with ``seed``). ``notes`` collects the failures of optional sections (the probe's); without it they
    are only logged.
    """
    notes = notes if notes is not None else []
    ctx = SummaryContext(samples, task_labels, primary, transforms, baseline, n_boot, seed, paired_test)
    for name, fn in ordered_sections(notes):
        ctx.summary.update(run_section(name, fn, ctx, notes))
    return ctx.summary
