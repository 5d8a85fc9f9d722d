"""Multiple-choice tasks: nothing is generated; each answer option's log-likelihood decides.

For a task with ``output_type = "multiple_choice"``, every sample asks for
``log p(choice | final prompt)`` of each of :meth:`harness.task.Task.choices`
through the cached executor (kind ``loglikelihood``, the same path and cache
as the probe). Under a transform in ``transform`` mode the choices go through
the same ``forward`` as the prompt. The sample records the per-choice
log-likelihoods (``choice_logprobs``) and the most likely choice's name as its
``response``; :meth:`harness.task.Task.score_choices` labels it. A failed
request makes the sample an ERROR (``backend error: ...``), never cached.
"""
from __future__ import annotations

from typing import Sequence

from harness.pipeline.execute import Loglikelihood, Outcome
from harness.pipeline.plan import forward_continuations, forward_error
from harness.task import MULTIPLE_CHOICE, Task, best_choice
from harness.types import Failed, Sample



def continuations(samples: Sequence[Sample], tasks: dict[str, Task], transforms: dict) -> dict[int, dict[str, str]]:
    """Per multiple-choice sample (by ``id``): its choices in the final prompt's form.

    A sample whose task's ``choices`` fails or whose choices the transform
    cannot map becomes an ERROR sample with the reason.
    """
    items: list[tuple[Sample, dict[str, str]]] = []
    for s in samples:
        task = tasks.get(s.task)
        if s.error is not None or task is None or task.output_type != MULTIPLE_CHOICE:
            continue
        try:
            conts = dict(task.choices(s.reference))
            if len(conts) < 2 or not all(isinstance(v, str) and v for v in conts.values()):
                raise ValueError(f"need at least two non-empty continuations, got {conts!r}")
        except Exception as exc:
            s.error = f"choices failed: {type(exc).__name__}: {exc}"
            continue
        items.append((s, conts))
    out: dict[int, dict[str, str]] = {}
    mapped = forward_continuations(items, transforms)
    for s, _ in items:
        m = mapped.get(id(s))
        if isinstance(m, Failed):
            s.error = forward_error(m.reason)
        elif m is not None:
            out[id(s)] = m
    return out


def requests(samples: Sequence[Sample], conts: dict[int, dict[str, str]]) -> tuple[list[Sample], list[Loglikelihood]]:
    """The samples to score (no error, with choices) and their requests, one per choice in order."""
    todo = [s for s in samples if s.error is None and id(s) in conts]
    return todo, [Loglikelihood(s.transformed_prompt, t) for s in todo for t in conts[id(s)].values()]


def apply(todo: Sequence[Sample], conts: dict[int, dict[str, str]], outcome: Outcome) -> None:
    """Record each sample's choice log-likelihoods and chosen name, or its failure."""
    results = list(outcome)
    i = 0
    for s in todo:
        names = list(conts[id(s)])
        rs, i = results[i : i + len(names)], i + len(names)
        error = next((r.error for r in rs if r.error is not None), None)
        if error is not None:
            s.error = f"backend error: {error}"
            continue
        s.choice_logprobs = {n: r.value[0] for n, r in zip(names, rs)}
        s.response = best_choice(s.choice_logprobs)
        s.cached = all(r.cached for r in rs)
