"""Small typed records that flow through a run.

Data flow: Task.examples() -> Example -> Task.render() -> Rendered prompt ->
Transform.forward() -> Backend.generate() -> Transform.inverse() ->
Task.score() -> Score -> Sample (one line of samples.jsonl) -> metrics -> report.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

ERROR = "error"  # outcome of a sample that failed; never counted as a behaviour


@dataclass(frozen=True)
class Failed:
    """One item's final failure, returned in place of its result (a response, a translation, a log-likelihood).

    Backends, transforms and translation providers return it for the items of a batch that failed, so the
    others go on; the runner records it as an ERROR sample with the reason (never cached).
    """

    reason: str


@dataclass(frozen=True)
class Example:
    """One task item, independent of language or transform.

    ``id`` is stable across renderings, so the same example can be paired
    across models and transforms. ``group`` is a sub-configuration of the
    task (e.g. ``capslock-math``). ``data`` is JSON-serialisable.
    """

    id: str
    group: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """A prompt as the task wrote it, plus what scoring needs (``reference``)."""

    prompt: str
    reference: dict[str, Any]
    rendering: str  # "en", or a native rendering key such as "fr" or "leetspeak"


@dataclass(frozen=True)
class Score:
    label: str
    detail: str = ""


@dataclass(frozen=True)
class Sampling:
    """Generation parameters. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 10
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def key(self) -> dict[str, Any]:
        """What the generation cache keys on (the seed matters only when sampling)."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        if self.greedy:
            d.pop("seed")
            d.pop("top_p")
        return d


@dataclass
class Sample:
    """One (model, task, transform, example) record; a line of samples.jsonl."""

    model: str  # "pretrained" or "finetuned"
    task: str
    transform: str
    example_id: str
    group: str
    mode: str  # "native" (task rendered the conjugate itself) or "transform"
    prompt: str  # the task's prompt before the transform
    transformed_prompt: str  # the final prompt sent to the model
    reference: dict[str, Any]
    response: str | None = None  # raw model output (multiple-choice tasks: the chosen choice's name)
    inverted: str | None = None  # response mapped back by the inverse transform
    outcome: str = ERROR
    detail: str = ""
    error: str | None = None
    cached: bool = False
    #: task-inference probe (harness.pipeline.probe): {"logp_icl", "logp_if", "p_icl"} (keys named after the task's
    #: two continuations); None when the task has none, the sample failed, or the backend has no log-likelihoods
    probe: dict[str, float] | None = None
    #: multiple-choice tasks: log p(choice | prompt) per choice name (``response`` is the chosen name);
    #: left out of samples.jsonl when None, so generation tasks' lines are as before
    choice_logprobs: dict[str, float] | None = None
    #: tasks that score themselves with several metrics (lm-eval tasks): per-sample metric values, keyed as the
    #: task names them (``acc,none``); left out of samples.jsonl when None. The outcome comes from the first one
    metrics: dict[str, float] | None = None

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        for k in ("choice_logprobs", "metrics"):
            if d[k] is None:
                del d[k]
        return json.dumps(d, ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


__all__ = ["ERROR", "Failed", "Example", "Rendered", "Score", "Sampling", "Sample", "field"]
