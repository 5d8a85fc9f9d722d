"""Text handling around machine translation: protected spans and sentence splitting.

MT systems damage structure: they join lines, turn ``3.5`` into ``3,5``,
translate ``Input:`` and mangle ``{{ slots }}``. Before a text reaches a
provider it is cut into :class:`Segment` s:

* kept verbatim: fenced code blocks, line breaks, leading and trailing
  whitespace, line markers such as ``Input:`` / ``Output:`` at the start of a
  line, and lines without letters;
* translated: the rest, one line at a time. Inline protected spans inside a
  line (numbers, ``{{ slots }}``, ``{% tags %}``) are replaced by
  placeholders ``[0]``, ``[1]``, ... that MT systems copy through; if a
  placeholder does not come back exactly once, the line is translated again
  piece by piece between the spans (:meth:`Segment.fallback_pieces`), which
  always preserves them.

A line longer than the provider's limit is split at sentence boundaries
(:func:`split_sentences`) and rejoined with its original whitespace.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

DEFAULT_MARKERS = ("Input:", "Output:")
_CODE = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\[\d+\]|(?<![\w.])[-+]?\d+(?:[.,:/]\d+)*%?")
_PLACEHOLDER = re.compile(r"\[(\d+)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def has_letters(text: str) -> bool:
    return bool(_LETTER.search(text))


@dataclass
class Segment:
    """A piece of a text: translated (``translate``) or kept verbatim."""

    text: str
    translate: bool
    spans: list[str] = field(default_factory=list)  # inline protected spans, in order
    masked: str = ""  # text with spans replaced by [0], [1], ...

    def restore(self, translated: str) -> str | None:
        """Put the spans back into a translation of :attr:`masked`; None if a placeholder was lost or duplicated."""
        if not self.spans:
            return translated
        found = [int(m.group(1)) for m in _PLACEHOLDER.finditer(translated)]
        if sorted(found) != list(range(len(self.spans))):
            return None
        return _PLACEHOLDER.sub(lambda m: self.spans[int(m.group(1))], translated)

    def fallback_pieces(self) -> list["Segment"]:
        """The line cut at its protected spans: the spans kept, the words between them translated on their own."""
        out: list[Segment] = []
        pos = 0
        for m in _INLINE.finditer(self.text):
            out.extend(_outer(self.text[pos : m.start()]))
            out.append(Segment(m.group(0), False))
            pos = m.end()
        out.extend(_outer(self.text[pos:]))
        return out


def _outer(text: str) -> list[Segment]:
    """``text`` as [leading space, body, trailing space]; the body is translated only if it has letters."""
    if not text:
        return []
    body = text.strip()
    if not body:
        return [Segment(text, False)]
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    segs = [Segment(lead, False)] if lead else []
    segs.append(Segment(body, has_letters(body), masked=body))
    if trail:
        segs.append(Segment(trail, False))
    return segs


def segments(text: str, markers: tuple[str, ...] = DEFAULT_MARKERS, protect: bool = True) -> list[Segment]:
    """Cut ``text`` into verbatim and translatable segments; ``"".join(s.text for s in segments(t)) == t``."""
    out: list[Segment] = []
    pos = 0
    for m in (_CODE.finditer(text) if protect else ()):
        out.extend(_lines(text[pos : m.start()], markers, protect))
        out.append(Segment(m.group(0), False))
        pos = m.end()
    out.extend(_lines(text[pos:], markers, protect))
    return out


def _lines(text: str, markers: tuple[str, ...], protect: bool) -> list[Segment]:
    out: list[Segment] = []
    for line in re.split(r"(\r?\n)", text):
        if not line:
            continue
        if line in ("\n", "\r\n"):
            out.append(Segment(line, False))
            continue
        stripped = line.lstrip()
        lead = line[: len(line) - len(stripped)]
        marker = next((mk for mk in markers if protect and stripped.startswith(mk)), None) if markers else None
        if lead:
            out.append(Segment(lead, False))
        if marker:
            out.append(Segment(marker, False))
            stripped = stripped[len(marker) :]
        for seg in _outer(stripped):
            if seg.translate and protect:
                spans: list[str] = []

                def mask(m: re.Match) -> str:
                    spans.append(m.group(0))
                    return f"[{len(spans) - 1}]"

                seg.masked = _INLINE.sub(mask, seg.text)
                seg.spans = spans
                seg.translate = has_letters(seg.masked)
            out.append(seg)
    return out


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into chunks of at most ``max_chars`` at sentence boundaries; ``"".join(chunks) == text``.

    Sentences are packed greedily. A sentence longer than ``max_chars`` is cut
    at the last comma, semicolon or space before the limit, and as a last resort
    at the limit itself.
    """
    if len(text) <= max_chars:
        return [text]
    sentences: list[str] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        sentences.append(text[pos : m.end()])
        pos = m.end()
    if pos < len(text):
        sentences.append(text[pos:])
    chunks: list[str] = []
    cur = ""
    for s in sentences:
        while len(s) > max_chars:
            if cur:
                chunks.append(cur)
                cur = ""
            window = s[:max_chars]
            cut = max(window.rfind(", "), window.rfind("; "), window.rfind(" "))
            cut = cut + 1 if cut > 0 else max_chars
            chunks.append(s[:cut])
            s = s[cut:]
        if len(cur) + len(s) > max_chars and cur:
            chunks.append(cur)
            cur = ""
        cur += s
    if cur:
        chunks.append(cur)
    return chunks


def strip_keep(chunk: str) -> tuple[str, str, str]:
    """(leading whitespace, body, trailing whitespace)."""
    body = chunk.strip()
    if not body:
        return chunk, "", ""
    lead = chunk[: len(chunk) - len(chunk.lstrip())]
    return lead, body, chunk[len(lead) + len(body) :]


# -- splitting by a provider's own measure (tokens, bytes) -------------------------------------------
NEWLINE_RE = re.compile(r"(\r\n|\n|\r)")
EDGES_RE = re.compile(r"^(\s*)(.*?)(\s*)$", re.DOTALL)
_SENT_BREAK = re.compile(r"(?<=[.!?\u2026])\s+(?=\S)")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+(?=\S)")
_SPACES = re.compile(r"\s+")


def _pack(parts: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Greedily join consecutive parts with a space while the result still fits."""
    out: list[str] = []
    for part in parts:
        if out and fits(out[-1] + " " + part):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


def split_long(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Cut ``text`` into pieces that fit: at sentence ends, then at ``,;:``, then between words.

    A single word that does not fit (a long URL) stays one piece.
    """
    if fits(text):
        return [text]
    for splitter in (_SENT_BREAK, _CLAUSE_BREAK, _SPACES):
        parts = splitter.split(text)
        if len(parts) > 1:
            pieces: list[str] = []
            for part in _pack(parts, fits):
                pieces.extend([part] if fits(part) else split_long(part, fits))
            return pieces
    return [text]
