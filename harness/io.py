"""Atomic result files."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are for reading
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, like :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, lines: Iterable[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-blank line of a user JSONL file; bad JSON is a ConfigError."""
    from harness.errors import ConfigError

    yield from json_lines(Path(path).read_text(encoding="utf-8").splitlines(), str(path), ConfigError)


def json_lines(lines: Iterable[str], where: str, error: type[Exception], fix: str = "",
               objects: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line; a bad line raises ``error`` naming ``where`` and the line.

    ``objects``: every line must be a JSON object. ``fix`` is appended to the message (e.g. "; re-run ...").
    """
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where} line {i}: not valid JSON ({exc.msg}){fix}") from None
        if objects and not isinstance(value, dict):
            raise error(f"{where} line {i}: expected a JSON object, got {type(value).__name__}{fix}")
        yield i, value


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones left out), for manifests and recipes."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (seconds or an HTTP date), at least 0; None if absent or unreadable."""
    import email.utils
    import math
    import time

    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - time.time()
    if not math.isfinite(secs):  # "nan" and "inf" parse as floats
        return None
    return max(0.0, secs)
