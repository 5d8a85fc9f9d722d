"""The reference text of `conjugate forgetting`: reading it, cutting it into chunks, and chunks into token windows.

Chunks (paragraphs, packed sentence by sentence when too long) are the independent units the bootstrap
resamples, so they are cut at meaningful boundaries rather than every N tokens.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError

DEFAULT_MAX_TOKENS = 512
BASELINE = "identity"  # the untransformed (English) reference text

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def text_name(condition: str) -> str:
    """How a text version is named in tables and plots: English, or the transform's display name."""
    from harness.outputs.format import display_name

    return "English" if condition == BASELINE else display_name(condition)


def reference_text_path() -> Path:
    """The shipped, project-written English reference text."""
    from importlib.resources import files

    return Path(str(files("harness").joinpath("data", "reference_en.txt")))


def read_text(path: str | Path | None) -> tuple[str, Path]:
    """The text of ``path`` (default: the shipped reference text), with user-facing errors."""
    p = Path(path).expanduser() if path else reference_text_path()
    if not p.exists():
        raise ConfigError(f"--text {path}: no such file; give a UTF-8 text file (paragraphs separated by blank lines)")
    if not p.is_file():
        raise ConfigError(f"--text {path}: not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--text {path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ConfigError(f"--text {path}: the file is empty")
    return text, p


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs; one paragraph per line when the text has no blank lines."""
    text = text.replace("\r\n", "\n").strip()
    if re.search(r"\n[ \t]*\n", text):
        parts = re.split(r"\n[ \t]*\n", text)
    else:
        parts = text.split("\n")
    return [p.strip() for p in parts if p.strip()]


def split_chunks(text: str, count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """Chunks of at most ``budget`` tokens: paragraphs, packed sentence by sentence when too long.

    A single sentence longer than ``budget`` stays one chunk; it is cut into
    token windows later (:func:`windows`).
    """
    chunks: list[str] = []
    for para in paragraphs(text):
        if count_tokens(para) <= budget:
            chunks.append(para)
            continue
        current = ""
        for sent in _SENTENCE_END.split(para):
            candidate = f"{current} {sent}" if current else sent
            if current and count_tokens(candidate) > budget:
                chunks.append(current)
                current = sent
            else:
                current = candidate
        if current:
            chunks.append(current)
    return chunks


def windows(ids: list[int], max_tokens: int, bos_id: int | None) -> list[list[int]]:
    """Token ids cut into sequences of at most ``max_tokens`` (BOS first when ``bos_id`` is given)."""
    budget = max_tokens - (1 if bos_id is not None else 0)
    out = []
    for i in range(0, len(ids), budget):
        piece = ids[i:i + budget]
        seq = ([bos_id] if bos_id is not None else []) + piece
        if len(seq) >= 2:  # at least one predicted token
            out.append(seq)
    return out
