"""The Transform interface: a conjugate map of prompts, with its inverse."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Sequence

from harness.types import Failed

if TYPE_CHECKING:
    from harness.pipeline.context import RunContext


class Transform(ABC):
    """A conjugate transform.

    ``forward`` maps an English prompt to its conjugate; ``inverse`` maps the
    model's response back so the task can score it. ``exact`` says whether
    ``inverse(forward(x)) == x`` for all text (ciphers) or only best-effort
    (leetspeak, pig latin, translation).

    ``native`` is the rendering key a task may provide natively (``"fr"`` for
    ``lang:fr``, ``"leetspeak"`` for leetspeak). When the task has it, the
    runner uses the task's own rendering and skips forward/inverse.

    ``language`` is set by translating transforms (``translate:pt``): a task
    that can localise itself (translate its strings and data, see
    :meth:`harness.task.Task.localize`) then renders the prompt in that
    language, and nothing needs inverting.

    ``display_name`` is what reports, plots, ``compare`` and ``check`` call
    the conjugate (``"Pig Latin"``); a class attribute, or a property for a
    name that depends on the argument (``lang:sw`` -> Swahili, through
    :func:`harness.languages.language_name`). By default it is :attr:`id`.

    The runner calls :meth:`bind` with the run's context (the translation
    service) first, then :meth:`forward_batch` / :meth:`inverse_batch`, which
    default to calling ``forward`` / ``inverse`` per text and recording an
    exception as that text's failure.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    exact: ClassVar[bool] = False
    native: str | None = None
    language: str | None = None
    param: ClassVar[str | None] = None  # set when the name takes ":arg"
    requires_native: ClassVar[bool] = False  # True: only usable where the task renders it natively

    @property
    def id(self) -> str:
        """The canonical spec string of this transform, e.g. ``lang:fr``, ``caesar:3`` for ``caesar``: samples,
        summary rows, manifest.json and baselines are keyed by it (:func:`canonical_id`)."""
        return self.name

    @property
    def display_name(self) -> str:
        """The conjugate's name for people (default: :attr:`id`); override with a class attribute or property."""
        return self.id

    @abstractmethod
    def forward(self, text: str) -> str: ...

    @abstractmethod
    def inverse(self, text: str) -> str: ...

    def bind(self, ctx: "RunContext") -> None:
        """Receive the run's shared services before any forward/inverse call (default: nothing to do)."""

    def forward_batch(self, texts: Sequence[str]) -> "list[str | Failed]":
        return _each(self.forward, texts, "transform forward failed")

    def inverse_batch(self, texts: Sequence[str]) -> "list[str | Failed]":
        return _each(self.inverse, texts, "transform inverse failed")

    def describe(self) -> dict:
        return {"id": self.id, "version": self.version, "exact": self.exact, "native": self.native}


def canonical_id(spec: str) -> str:
    """The id of the transform ``spec`` names: ``caesar`` -> ``caesar:3``, ``lang:fr`` -> ``lang:fr``.

    A run's spec is resolved through this once, when it is parsed, so the same conjugate typed two ways is one
    cell, and every row, sample and manifest entry carries the id the transform reports. Unknown names and bad
    arguments raise the registry's one-line errors.
    """
    from harness.registry import TRANSFORMS

    return TRANSFORMS.create(spec).id


def _each(fn, texts: Sequence[str], what: str) -> "list[str | Failed]":
    out: list = []
    for t in texts:
        try:
            out.append(fn(t))
        except Exception as exc:
            out.append(Failed(f"{what}: {type(exc).__name__}: {exc}"))
    return out
