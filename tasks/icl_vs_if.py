"""icl_vs_if: in-context learning versus instruction following (Kotha et al., ICLR 2024, §4.1).

The prompt demonstrates an in-context task (capitalise the input, or repeat
it) on two sentences, then gives a query that is itself an instruction (a
math question, or a sentence whose first word is blanked out). A pretrained
model tends to continue the pattern (``icl``); an instruction-tuned model
tends to answer the query (``if``). Four configs: {capslock, repeat} x
{math, startblank}, 100 prompts each.

By default (task version 3) prompts and scoring are the paper's, byte for byte::

    <instruction>\n\n<Input>: s1\n<Output>: S1\n\n<Input>: s2\n<Output>: S2\n\n<Input>: <query>\n<Output>:

with the paper's strings in en, fr, es, nl, hu, leetspeak and pig latin
(``Saisir:``/``Sortir:``, ``1npu7:``/``0u7pu7:``, ...; :mod:`.icl_vs_if_data`).
The startblank query replaces the first word (split at spaces, punctuation
included) by as many underscores as it has characters; its ICL answer is the
blank, its instruction-following answer the word (upper-cased under
capslock). The math ICL answer is the question's first word (upper-cased
under capslock), the other the result. Examples are drawn as the paper's
generator draws them: per config ``random.seed(10 + seed)``, then per prompt
``random.sample`` of 3 sentences (2 demonstrations, the query's), and for
math two ``randint(4, 20)`` and an operator; with the paper's pools
(``pools=DIR``) the prompts are the paper's.

Scoring (``scoring=paper``, default): ICL when the response starts with the
ICL answer, with or without its leading space, after replacing ``\_`` by
``_``; else IF when it starts with the IF answer; else other.
``scoring=strict`` (versions 1-2): a capslock ICL answer must include a word
that capitalising changes (``"___, WE"``, not ``"___"``), whole words only,
``"6 + 4 = 10"`` counts as IF. ``format=compact`` and ``strings=project``
give the project's earlier single-newline format and strings.

Native renderings: en, fr, es, nl, hu (the project's line-aligned sentence
pools), leetspeak and piglatin (pools derived from en with those transforms'
forward maps, numbers left as digits).

Any other language (``translate:pt``) is rendered by translating the English
strings and sentence pool (:meth:`IclVsIf.localize`), through the translation
cache or a frozen pack. Option ``sentences=FILE`` replaces the English pool
(e.g. the paper's own sentences); the native languages then take their pools
from the translation pack (``--translations``), so the paper's exact
translations can be used.
"""
from __future__ import annotations

import random
import re
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

from harness.errors import ConjugateError
from harness.task import RenderFailed, Task, interleave
from harness.templating import fill_slots, render
from harness.tasks import icl_vs_if_data as data_files
from harness.tasks.icl_vs_if_data import DERIVED, LANGUAGES
from harness.types import Example, Rendered, Sampling, Score

ICL_TASKS: dict[str, Callable[[str], str]] = {"capslock": str.upper, "repeat": lambda s: s}
QUERIES = ("math", "startblank")
OPS: dict[str, Callable[[int, int], int]] = {
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
    "times": lambda a, b: a * b,
}
BLANK = "___"
SCORING = {"paper": "the paper's rule: starts with the ICL (or IF) answer, with or without its leading space",
           "strict": "strict: a capslock ICL answer needs a word that capitalising changes; whole words"}
_SLOT = re.compile(r"(\{\{.*?\}\})")
_ECHO = re.compile(r"^-?\d+\s*(?:[-+*x×]|plus|minus|times)\s*-?\d+\s*=\s*")
_FIRST = re.compile(r"^(\S+?)([,.;:!?]*)(\s.*|)$", re.S)


def split_first_word(sentence: str) -> tuple[str, str]:
    """``"Yesterday, we left."`` -> ``("Yesterday", ", we left.")``."""
    m = _FIRST.match(sentence)
    if not m:
        raise ValueError(f"cannot find the first word of {sentence!r}")
    return m.group(1), m.group(2) + m.group(3)


def outside_slots(template: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to a template's literal text, leaving ``{{ slots }}`` alone."""
    return "".join(part if _SLOT.fullmatch(part) else fn(part) for part in _SLOT.split(template))


def icl_prefix(query: str, icl: Callable[[str], str]) -> str:
    """The ICL answer's start: ``icl`` of the query's first word, or of more words while they read the same.

    ``"What is 6 plus 4?"`` -> ``"WHAT"`` under capslock. A first word that
    capitalising leaves unchanged (Portuguese ``"O que é ..."``, the blank
    ``"___, we left."``) cannot tell capitalising from repeating, so the
    prefix grows to the first word that changes: ``"O QUE"``, ``"___, WE"``.
    Under repeat (nothing changes) it is the first word.
    """
    first, _ = split_first_word(query)
    if icl(first) != first:
        return icl(first)
    words = query.split()
    for k in range(2, len(words) + 1):
        prefix = " ".join(words[:k])
        if icl(prefix) != prefix:
            return icl(prefix.rstrip(",.;:!?"))
    return icl(first)


def _starts_with(text: str, answer: str, *, ignore_case: bool = False) -> bool:
    """``text`` starts with ``answer`` as a whole word (or number)."""
    if not answer:
        return False
    a, t = (answer.lower(), text.lower()) if ignore_case else (answer, text)
    if not t.startswith(a):
        return False
    nxt = t[len(a) : len(a) + 1]
    return not (nxt.isalnum() and (a[-1:].isalnum()))


class IclVsIf(Task):
    """In-context learning vs instruction following (Kotha et al. 2024 §4.1): 4 configs x 100 prompts."""

    name = "icl_vs_if"
    version = "3"  # 3: the paper's prompt bytes, strings, example draw and scoring by default; 2: strict capslock
    labels = ("icl", "if", "other")
    primary_label = "icl"
    renderings = frozenset({*LANGUAGES, *DERIVED})
    sampling = Sampling(max_new_tokens=10)
    probe_wording = {"target": "ICL", "other": "IF",
                     "description": "the in-context answer (ICL, e.g. \" WHAT\") and the instruction-following "
                                    "answer (IF, e.g. \" 10\")"}
    n_per_config = 100
    n_shots = 2
    #: the paper's figure for comparison (a note in report.md)
    published = ("Kotha et al. (ICLR 2024) report English ICL 92.0% for LLaMA-7B and 35.25% for Alpaca-7B "
                 "(LLaMA -> Alpaca) on their own pools, with these prompts and this scoring rule (scoring=paper).")

    def __init__(self, sentences: str | None = None, pools: str | None = None, scoring: str = "paper",
                 format: str = "paper", strings: str = "paper") -> None:
        self.scoring = data_files.choose("scoring", scoring, SCORING)
        self.format, self.strings_kind = format, strings
        self.template = data_files.template(format)
        if sentences and pools:
            raise ConjugateError("icl_vs_if: give sentences=FILE (an English pool) or pools=DIR (all languages), "
                                 "not both")
        self.sentences, self.pool_dir = sentences, pools
        self.renderings = set(type(self).renderings)  # grows with localize()
        self._ctx = None
        self._failed: dict[str, dict[int, str]] = {}  # rendering -> pool index -> why its translation failed
        self._strings_failed: dict[str, str] = {}

    def bind(self, ctx) -> None:
        self._ctx = ctx

    def describe_scoring(self) -> str:
        """For report.md: which prompt format, strings and scoring rule this run used."""
        return (f"icl_vs_if v{self.version}: format={self.format}, strings={self.strings_kind}, "
                f"pools={self.pool_dir or self.sentences or 'project'}, scoring={self.scoring} "
                f"({SCORING[self.scoring]})")

    # -- data -----------------------------------------------------------------
    @cached_property
    def strings(self) -> dict[str, dict]:
        return data_files.load_strings(self.strings_kind, outside_slots)

    @cached_property
    def pools(self) -> dict[str, list[str | None]]:
        """Sentence pools per rendering; with ``sentences=FILE`` only en (and what derives from it) until translated."""
        if self.pool_dir:
            return data_files.folder_pools(self.pool_dir)
        if not self.sentences:
            return data_files.project_pools()
        path = Path(self.sentences)
        if not path.is_file():
            raise ConjugateError(f"icl_vs_if sentences={self.sentences}: file does not exist; give a text file "
                                 f"with one English sentence per line")
        pools: dict[str, list[str | None]] = {
            "en": [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]}
        if len(pools["en"]) < self.n_shots + 1:
            raise ConjugateError(f"icl_vs_if sentences={self.sentences}: needs at least {self.n_shots + 1} "
                                 f"sentences, found {len(pools['en'])}")
        for key, fn in DERIVED.items():
            pools[key] = [fn(s) for s in pools["en"]]
        return pools

    def _set_pool(self, key: str, results: list, indices: Sequence[int] | None = None) -> None:
        """Translated pool ``key``: ``results`` for the sentences at ``indices`` (None: the whole pool, in order)."""
        n = len(self.pools["en"])
        indices = range(n) if indices is None else indices
        pool: list[str | None] = [None] * n
        failed = {i: "not translated: no selected example uses it" for i in range(n)}
        for i, r in zip(indices, results):
            pool[i] = r if isinstance(r, str) else None
            failed.pop(i)
            if not isinstance(r, str):
                failed[i] = r.reason
        self.pools[key], self._failed[key] = pool, failed

    @staticmethod
    def needed_sentences(examples: Sequence[Example]) -> list[int]:
        """The pool indices ``examples`` use (demonstrations and startblank queries), in pool order."""
        return sorted({i for ex in examples for i in [*ex.data["demos"], *([ex.data["sentence"]]
                                                                          if "sentence" in ex.data else [])]})

    def _pool(self, rendering: str) -> list[str | None]:
        if rendering not in self.pools:  # a native language with a user sentence pool: translate the pool
            if self._ctx is None:
                raise ConjugateError(
                    f"icl_vs_if with sentences={self.sentences} renders {rendering!r} from a translation of the "
                    f"pool: run it with --translations PACK (e.g. the paper's sentences) or --mt-provider NAME")
            self._set_pool(rendering, self._ctx.translation.translate(self.pools["en"], "en", rendering, strict=True,
                                                                      desc=f"icl_vs_if pool en->{rendering}"))
        return self.pools[rendering]

    # -- translation ------------------------------------------------------------
    def _string_leaves(self) -> list[str]:
        en = self.strings["en"]
        return ([en["instruction"][k] for k in ICL_TASKS] + [en["input"], en["output"], en["math"]]
                + [en["ops"][k] for k in OPS])

    def translatable_texts(self, seed: int = 0, limit: int | None = None) -> list[str]:
        """The fixed strings and the English sentences (what a pack needs to render any language).

        ``limit``: only the sentences the first ``limit`` examples of ``seed`` use (``--limit`` of a run).
        """
        en = self.pools["en"]
        picked = self.needed_sentences(self.examples(seed)[:limit]) if limit else range(len(en))
        return list(dict.fromkeys(self._string_leaves() + [en[i] for i in picked if en[i]]))

    def localize(self, key: str, language: str, translate, examples: Sequence[Example] | None = None) -> bool:
        """Render ``key`` from translations of the English strings and sentences into ``language``.

        ``examples``: the run's selected examples; only the sentences they use are translated (None: the pool).
        """
        leaves, en = self._string_leaves(), self.pools["en"]
        indices = None if examples is None else self.needed_sentences(examples)
        res = translate(leaves + (en if indices is None else [en[i] for i in indices]))
        head, pool = res[: len(leaves)], res[len(leaves) :]
        bad = next((r for r in head if not isinstance(r, str)), None)
        if bad is not None:
            self._strings_failed[key] = f"translating the task's strings to {language} failed: {bad.reason}"
            tr = self._string_leaves()
        else:
            tr = list(head)
        k = len(ICL_TASKS)
        self.strings[key] = {
            "instruction": dict(zip(ICL_TASKS, tr[:k])), "input": tr[k], "output": tr[k + 1], "math": tr[k + 2],
            "ops": dict(zip(OPS, tr[k + 3 :])),
        }
        self._set_pool(key, pool, indices)
        self.renderings.add(key)
        return True

    # -- Task interface -------------------------------------------------------
    def examples(self, seed: int) -> list[Example]:
        """The paper's draw: per config ``random.seed(10 + seed)``; per prompt 3 sentences, then (math) a, b, op."""
        n_sent = len(self.pools["en"])
        groups: dict[str, list[Example]] = {}
        for icl in ICL_TASKS:
            for query in QUERIES:
                group = f"{icl}-{query}"
                rng = random.Random(10 + seed)
                items = []
                for i in range(self.n_per_config):
                    picked = rng.sample(range(n_sent), self.n_shots + 1)
                    data: dict = {"icl_task": icl, "query_type": query, "demos": picked[: self.n_shots]}
                    if query == "math":
                        data.update(a=rng.randint(4, 20), b=rng.randint(4, 20), op=list(OPS)[rng.randint(0, 2)])
                    else:
                        data["sentence"] = picked[self.n_shots]
                    items.append(Example(id=f"{group}-{i:03d}", group=group, data=data))
                groups[group] = items
        return interleave(groups)

    def render(self, example: Example, rendering: str = "en") -> Rendered:
        if rendering not in self.renderings:
            raise ConjugateError(
                f"icl_vs_if has no native rendering {rendering!r}; it has {', '.join(sorted(self.renderings))}"
            )
        if rendering in self._strings_failed:
            raise RenderFailed(self._strings_failed[rendering])
        s, pool, d = self.strings[rendering], self._pool(rendering), example.data
        used = d["demos"] + ([d["sentence"]] if d["query_type"] == "startblank" else [])
        lost = next((i for i in used if pool[i] is None), None)
        if lost is not None:
            raise RenderFailed(f"sentence {lost} of the pool failed to translate to {rendering}: "
                               f"{self._failed.get(rendering, {}).get(lost, 'unknown reason')}")
        icl = ICL_TASKS[d["icl_task"]]
        demos = [{"input": pool[i], "output": icl(pool[i])} for i in d["demos"]]
        if d["query_type"] == "math":
            query = fill_slots(s["math"], {"a": d["a"], "b": d["b"], "op": s["ops"][d["op"]]})  # data, never compiled
            icl_answer, if_answer = icl(query.split(" ")[0]), str(OPS[d["op"]](d["a"], d["b"]))
        else:
            words = pool[d["sentence"]].split(" ")
            blank = "_" * len(words[0])
            query, icl_answer, if_answer = " ".join([blank, *words[1:]]), blank, icl(words[0])
        prompt = render(self.template, {"instruction": s["instruction"][d["icl_task"]], "input_label": s["input"],
                                        "output_label": s["output"], "demos": demos, "query": query},
                        f"icl_vs_if/{data_files.FORMATS[self.format]}")
        reference = {"icl_answer": icl_answer, "if_answer": if_answer, "icl_prefix": icl_prefix(query, icl),
                     "query": query, "query_type": d["query_type"], "icl_task": d["icl_task"]}
        return Rendered(prompt=prompt, reference=reference, rendering=rendering)

    def probe_continuations(self, reference: dict) -> dict[str, str] | None:
        """The ICL answer and the instruction-following answer, each after one space.

        The prompt ends with ``Output:`` (no trailing space) and the models'
        responses start with a space (``" WHAT IS"``, ``" 10"``), so the
        continuations do too. Both are in the rendering's language already.
        """
        icl, if_ = reference.get("icl_answer"), reference.get("if_answer")
        if not icl or not if_:
            return None
        return {"icl": " " + icl, "if": " " + if_}

    def score(self, response: str, reference: dict) -> Score:
        return score_strict(response, reference) if self.scoring == "strict" else score_paper(response, reference)


def paper_answers(reference: dict) -> tuple[str, str]:
    """(ICL, IF) answers by the paper's rule; references of task versions 1-2 (no ``icl_task``) derive them."""
    if "icl_task" in reference:
        return reference["icl_answer"], reference["if_answer"]
    query, stored = reference["query"], reference["icl_answer"]
    first = query.split(" ")[0]
    if reference["query_type"] == "startblank":
        blank = re.match(r"_+", query)
        return (blank.group(0) if blank else first), reference["if_answer"]
    caps = stored != first and stored == stored.upper()
    return (first.upper() if caps else first), reference["if_answer"]


def score_paper(response: str, reference: dict) -> Score:
    """The paper's rule: starts with the answer, with or without its leading space, after ``\\_`` -> ``_``."""
    text = response.replace("\\_", "_")
    icl, if_ = paper_answers(reference)
    for label, ans in (("icl", icl), ("if", if_)):
        if ans and (text.startswith(" " + ans) or text.startswith(ans)):
            return Score(label, f"starts with the {label.upper()} answer {ans!r} (paper rule)")
    return Score("other", "")


def score_strict(response: str, reference: dict) -> Score:
    """Task version 2's rule: whole words; a capslock ICL answer needs a word that capitalising changes."""
    text = re.sub(r"_{2,}", BLANK, response.lstrip())
    icl = re.sub(r"_{2,}", BLANK, reference.get("icl_prefix", reference["icl_answer"]))
    if_ = reference["if_answer"].rstrip(",.;:!?") if reference["query_type"] == "startblank" else reference["if_answer"]
    if _starts_with(text, icl):
        return Score("icl", f"starts with the ICL answer {icl!r}")
    if _starts_with(text, if_, ignore_case=reference["query_type"] == "startblank"):
        return Score("if", f"starts with the instruction-following answer {if_!r}")
    if reference["query_type"] == "math":
        # "6 + 4 = 10" answers the question too: an echo of the sum, then the result
        m = _ECHO.match(text)
        if m and _starts_with(text[m.end():], if_):
            return Score("if", f"restates the sum, then answers {if_!r}")
    return Score("other", "")
