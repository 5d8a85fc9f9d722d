"""What `conjugate check` gates: tasks, (task, label) metrics and transforms named on the command line.

Names are forgiving (a task's base name, a language code or display name for a transform, a task name for
its primary label) and a miss suggests the closest known name.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from harness.errors import ConjugateError

if TYPE_CHECKING:
    from harness.analysis.check.load import Run


def suggest(word: str, candidates: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
        close = [c for c in candidates if c.lower() in close][:1]
    return f" Did you mean {close[0]!r}?" if close else ""


def task_base(task: str) -> str:
    """``refusal:strict`` -> ``refusal``: a task named without its parameter matches every variant."""
    return task.split(":", 1)[0]


def select_tasks(run: Run, wanted: list[str] | None) -> list[str]:
    if not wanted:
        return list(run.tasks)
    out = []
    for w in wanted:
        matches = [t for t in run.tasks if t == w] or [t for t in run.tasks if task_base(t) == w]
        if not matches:
            raise ConjugateError(f"--tasks {w!r}: not a task of run {run.run_id}.{suggest(w, run.tasks)} "
                                 f"Its tasks: {', '.join(run.tasks)}")
        out += [t for t in matches if t not in out]
    return out


def resolve_metrics(run: Run, tasks: list[str], metric: list[str] | None, tasks_given: bool) -> list[tuple[str, str]]:
    """(task, label) pairs to gate. Without --metric: each task's primary label."""
    if not metric:
        return [(t, run.primary[t]) for t in tasks if run.primary[t]]
    pairs: list[tuple[str, str]] = []
    for m in metric:
        found = [(t, m) for t in tasks if m in run.labels[t]]
        if not found:  # a task name: its primary label (--metric refusal -> refuse)
            found = [(t, run.primary[t]) for t in tasks if m in (t, task_base(t))]
        if not found:
            everywhere = sorted({l for t in run.tasks for l in run.labels[t]} | set(run.tasks))
            known = "; ".join(f"{t}: {', '.join(run.labels[t])}" for t in tasks)
            if tasks_given and (m in everywhere):
                raise ConjugateError(f"--metric {m!r}: none of the selected tasks ({', '.join(tasks)}) has this "
                                     f"label. Their labels: {known}")
            raise ConjugateError(f"--metric {m!r}: no task of run {run.run_id} has this label.{suggest(m, everywhere)} "
                                 f"Labels: {known} (or a task name for its primary label)")
        pairs += [p for p in found if p not in pairs]
    if tasks_given:  # a task asked for by name must be gated on something
        for t in tasks:
            if not any(p[0] == t for p in pairs):
                raise ConjugateError(f"--metric {','.join(metric)}: task {t} has none of these labels "
                                     f"(its labels: {', '.join(run.labels[t])})")
    return pairs


def _canonical(spec: str) -> str | None:
    """The transform id ``spec`` stands for (``caesar`` -> ``caesar:3``), as runs key their cells; None if it
    names no installed transform."""
    from harness.transform import canonical_id

    try:
        return canonical_id(spec)
    except ConjugateError:
        return None


def resolve_transforms(wanted: list[str] | None, known: list[str], info, where: str = "the run") -> list[str] | None:
    """Transform ids for --transforms/--languages tokens: ids, language codes (fr, pt, en) or display names."""
    if wanted is None:
        return None
    from harness.outputs.format import display_name

    def aliases(t: str) -> set[str]:
        i = info(t)
        name = display_name(t)
        out = {t.lower(), name.lower(), name.split(" (")[0].lower()}
        for key in ("native", "language"):
            if isinstance(i.get(key), str):
                out.add(i[key].lower())
        head, _, arg = t.partition(":")
        if arg and head in ("lang", "translate"):
            out.add(arg.split("@")[0].lower())
        return out

    out: list[str] = []
    for w in wanted:
        matches = ([t for t in known if t == w] or [t for t in known if t == _canonical(w)]
                   or [t for t in known if w.lower() in aliases(t)])
        if not matches:
            names = known + [display_name(t) for t in known]
            raise ConjugateError(f"--transforms/--languages {w!r}: no such conjugate in {where}.{suggest(w, names)} "
                                 f"Known: {', '.join(known)}")
        out += [t for t in matches if t not in out]
    return out
