"""Reading and writing the files of `conjugate check` with one-line, user-facing errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import ConjugateError


def read_json(path: Path, what: str) -> Any:
    """The JSON document at ``path``; ConjugateError naming ``what`` (e.g. "baseline") and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConjugateError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConjugateError(f"{what} {path}: is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConjugateError(f"{what} {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConjugateError(f"{what} {path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def write_text(path: Path, text: str, flag: str) -> None:
    """Write ``text`` atomically (a baseline, JUnit XML); ConjugateError naming ``flag`` when it cannot."""
    from harness.io import atomic_write_text

    if path.is_dir():
        raise ConjugateError(f"{flag} {path}: is a folder; give a file name")
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ConjugateError(f"{flag} {path}: cannot write it ({exc.strerror or exc})") from None


def is_count(x: Any) -> bool:
    """A non-negative int that is not a bool (JSON ``true`` must not pass as 1)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
