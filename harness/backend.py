"""The Backend interface: batched generation, optional log-likelihoods.

One backend per file under ``harness/backends``: ``hf`` (transformers),
``vllm`` (vLLM in-process) and ``openai`` (any OpenAI-compatible server,
``vllm serve`` included).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from harness.pipeline.models import ModelSpec
from harness.types import Sampling


@dataclass(frozen=True)
class Failed:
    """One prompt's final failure, returned in place of its response (the runner records it as ERROR)."""

    reason: str


class Backend(ABC):
    """A way to run a model.

    ``generate`` receives a batch of final prompts and returns one entry per
    prompt: the response text, or :class:`Failed` with the reason when that
    prompt finally failed. It may also raise; the runner then retries the
    batch prompt by prompt and records each failure as an error sample.
    """

    name: ClassVar[str]
    #: ``options`` that change how fast or where a model runs but not what it
    #: outputs; they are left out of the generation-cache key.
    runtime_options: ClassVar[frozenset[str]] = frozenset()
    #: prompts per ``generate`` call when the run does not set ``batch_size``
    default_batch_size: ClassVar[int] = 32

    def __init__(self, spec: ModelSpec, **options) -> None:
        self.spec = spec
        self.options = options

    @classmethod
    def identity(cls, spec: ModelSpec) -> str | None:
        """The string the generation cache keys the model on; None: the weights' identity (the default)."""
        return None

    @classmethod
    def validate(cls, spec: ModelSpec) -> None:
        """Check ``spec.options`` before anything runs; raise ConfigError naming the bad option."""

    @classmethod
    def open_pair(cls, pretrained: ModelSpec, finetuned: ModelSpec, **kw: Any) -> "tuple[Backend, Backend] | None":
        """Backends for both models sharing one engine, or None when they cannot share (then each opens its own)."""
        return None

    @abstractmethod
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list["str | Failed"]: ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context) and whether it is the greedy continuation."""
        raise NotImplementedError(f"backend {self.name!r} does not support loglikelihood")

    def describe(self) -> dict[str, Any]:
        """What the manifest records about how this backend ran (engine, fallbacks)."""
        return {"backend": self.name}

    def close(self) -> None:
        """Free the model."""
