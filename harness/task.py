"""The Task interface: give examples, render prompts, score responses."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

from harness.templating import render
from harness.types import Example, Failed, Rendered, Sampling, Score

if TYPE_CHECKING:
    from harness.pipeline.context import RunContext

#: ``Task.output_type`` values: the model generates a response / the choices' log-likelihoods decide /
#: lm-eval builds, runs and scores the task (``lmeval:<task>``; :mod:`harness.lmeval.stage`)
OUTPUT_TYPES = ("generate", "multiple_choice", "lmeval")
MULTIPLE_CHOICE = "multiple_choice"
EVALUATED_ELSEWHERE = "lmeval"

#: translate English texts to one language: one result per text, the translation or a Failed with the reason
Translator = Callable[[Sequence[str]], "list[str | Failed]"]


class RenderFailed(Exception):
    """This example cannot be rendered in this rendering (e.g. one of its sentences failed to translate).

    The runner records the example as an ERROR sample with this message; other examples go on.
    """


class Task(ABC):
    """A task plugin.

    Subclasses set the class attributes and implement the three methods.
    ``renderings`` lists the conjugates the task can write *natively* (for
    example its own French prompt strings); for those the runner asks the task
    to render the conjugate and scores the response in that rendering, instead
    of applying a transform's forward and inverse.

    A multiple-choice task (``output_type = "multiple_choice"``) also defines
    :meth:`choices`; nothing is generated, its samples are labelled by
    :meth:`score_choices` from the choices' log-likelihoods (its :meth:`score`
    labels a response that names a choice).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    labels: ClassVar[tuple[str, ...]]  # outcome labels, e.g. ("icl", "if", "other")
    primary_label: ClassVar[str]  # the rate that recovery is computed on
    renderings: ClassVar[frozenset[str]] = frozenset({"en"})
    sampling: ClassVar[Sampling] = Sampling()
    #: "generate": the model writes a response that :meth:`score` labels; "multiple_choice": nothing is
    #: generated, the log-likelihood of each of :meth:`choices` decides (:meth:`score_choices`)
    output_type: ClassVar[str] = "generate"
    #: the probe (:meth:`probe_continuations`) in the task's words, for reports and manifest.json:
    #: ``{"target": "ICL", "other": "IF", "description": "the in-context answer (ICL) versus ..."}`` naming the
    #: first and second continuation; None: reports use the continuations' keys (``P(ICL)`` for ``icl``)
    probe_wording: ClassVar["dict[str, str] | None"] = None

    @property
    def display_name(self) -> str:
        """The task's name for people (the report's header); default :attr:`name`. Override with a class
        attribute, e.g. ``display_name = "ICL vs instruction following"``."""
        return self.name

    @abstractmethod
    def examples(self, seed: int) -> list[Example]:
        """All examples, deterministic for ``seed``; groups interleaved so a prefix is balanced."""

    @abstractmethod
    def render(self, example: Example, rendering: str = "en") -> Rendered:
        """The prompt for ``example`` in ``rendering`` (one of ``renderings``)."""

    @abstractmethod
    def score(self, response: str, reference: dict) -> Score:
        """Map a response (already inverted to the rendering's language) to a label."""

    # optional hooks -------------------------------------------------------------
    def bind(self, ctx: "RunContext") -> None:
        """Receive the run's shared services (translation) before rendering (default: nothing to do)."""

    def expand(self) -> "dict[str, Task] | None":
        """A task that stands for several (an lm-eval group) returns them by name; None (the default): itself."""
        return None

    def localize(self, key: str, language: str, translate: Translator,
                 examples: "Sequence[Example] | None" = None) -> bool:
        """Add a rendering ``key`` in ``language`` by translating the task's English strings and data.

        ``examples``: the run's selected examples (after ``--limit``); translate only what they need, since
        online providers cost money (None: everything, e.g. for a pack).

        Return False (the default) when the task cannot; the runner then
        translates the whole rendered English prompt and back-translates the
        response. A task that can sets up the rendering (so ``render(ex, key)``
        works, raising :class:`RenderFailed` for examples whose texts failed)
        and returns True; responses are then scored in ``language``.
        """
        return False

    def probe_continuations(self, reference: dict) -> "dict[str, str] | None":
        """Two competing continuations of the prompt for the task-inference probe, or None (the default).

        ``{"icl": " WHAT", "if": " 10"}``: the first key names the behaviour the
        probe measures (normally :attr:`primary_label`); :mod:`harness.pipeline.probe`
        scores ``log p(continuation | prompt)`` of both and reports
        ``p_<first> = p(first) / (p(first) + p(second))``. Write them in the
        rendering's language and with the whitespace a response starts with;
        for prompts a transform's ``forward`` produced, the runner applies the
        same ``forward`` to the continuations.
        """
        return None

    # multiple-choice tasks (output_type = "multiple_choice") ------------------------
    def choices(self, reference: dict) -> dict[str, str]:
        """The answer options as ``{name: continuation of the prompt}``, e.g. ``{"a": " cold", "b": " tall"}``.

        Each continuation is scored as ``log p(continuation | prompt)``; write
        it with the whitespace a response starts with. For prompts a
        transform's ``forward`` produced, the runner applies the same
        ``forward`` to the continuations (as for the probe).
        """
        raise NotImplementedError(f"task {self.name!r} is multiple-choice but does not define choices()")

    def score_choices(self, logprobs: dict[str, float], reference: dict) -> Score:
        """Label from the choices' log-likelihoods; default: the most likely choice against ``reference["gold"]``."""
        chosen, gold = best_choice(logprobs), reference["gold"]
        return Score("correct" if chosen == gold else "incorrect", f"chose {chosen}, gold {gold}")

    def translatable_texts(self, seed: int = 0, limit: int | None = None) -> list[str]:
        """The English texts ``conjugate translate --task`` puts in a pack: by default every rendered prompt."""
        exs = self.examples(seed)
        return list(dict.fromkeys(self.render(ex, "en").prompt for ex in (exs[:limit] if limit else exs)))

    # helpers --------------------------------------------------------------
    def render_template(self, source: str, context: dict, name: str | None = None) -> str:
        return render(source, context, name or f"{self.name}")

    def describe(self) -> str:
        return (self.__doc__ or "").strip().splitlines()[0] if self.__doc__ else self.name


def best_choice(logprobs: dict[str, float]) -> str:
    """The most likely choice's name (the first of equals, in the task's order)."""
    return max(logprobs, key=logprobs.__getitem__)


def interleave(groups: dict[str, list[Example]]) -> list[Example]:
    """Round-robin over groups so that any prefix (``--limit``) is balanced."""
    out: list[Example] = []
    lists = list(groups.values())
    for i in range(max((len(v) for v in lists), default=0)):
        out.extend(v[i] for v in lists if i < len(v))
    return out
