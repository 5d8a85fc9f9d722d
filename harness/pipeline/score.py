"""Scoring: invert responses and label them (also ``conjugate report --rescore``, from a run's samples)."""
from __future__ import annotations

from harness.task import EVALUATED_ELSEWHERE, MULTIPLE_CHOICE, Task
from harness.transform import Transform
from harness.types import ERROR, Failed, Sample


def score_samples(samples: list[Sample], tasks: dict[str, Task], transforms: dict[str, Transform]) -> None:
    """Invert responses (one batch per transform: back-translation is batched and cached) and score them.

    Multiple-choice samples are labelled from their choices' log-likelihoods;
    their response is a choice's name, so nothing is inverted.
    """
    choice = {n for n, t in tasks.items() if t.output_type == MULTIPLE_CHOICE}
    elsewhere = {n for n, t in tasks.items() if t.output_type == EVALUATED_ELSEWHERE}
    inverted = _invert([s for s in samples if s.task not in choice | elsewhere], transforms)
    for s in samples:
        if s.task in elsewhere:  # lm-eval scored them (harness.lmeval.samples); a re-score keeps its metrics
            if s.error is None and s.metrics is not None:
                sc = tasks[s.task].score(s.inverted or "", {**s.reference, "metrics": s.metrics})
                s.outcome, s.detail = sc.label, sc.detail
            continue
        if s.error is not None:
            s.outcome, s.detail = ERROR, ""
            continue
        inv = s.response if s.task in choice else inverted.get(id(s), s.response)
        if isinstance(inv, Failed):
            s.error, s.outcome = inv.reason, ERROR
            continue
        s.inverted = inv
        try:
            if s.task in choice:
                if s.choice_logprobs is None:
                    raise ValueError("the sample has no choice log-likelihoods")
                sc = tasks[s.task].score_choices(s.choice_logprobs, s.reference)
            else:
                sc = tasks[s.task].score(inv, s.reference)
        except Exception as exc:
            s.error, s.outcome = f"scoring failed: {type(exc).__name__}: {exc}", ERROR
            continue
        s.outcome, s.detail = sc.label, sc.detail


def _invert(samples: list[Sample], transforms: dict[str, Transform]) -> dict[int, str | Failed]:
    """Per sample (by ``id``) whose prompt a transform's ``forward`` produced: its response mapped back."""
    inverted: dict[int, str | Failed] = {}
    by_transform: dict[str, list[Sample]] = {}
    for s in samples:
        if s.error is None and s.mode == "transform" and s.transform in transforms:
            by_transform.setdefault(s.transform, []).append(s)
    for tid, group in by_transform.items():
        uniq = list(dict.fromkeys(s.response for s in group))
        outs = dict(zip(uniq, transforms[tid].inverse_batch(uniq)))
        for s in group:
            inverted[id(s)] = outs[s.response]
    return inverted
