"""Atomic result files, strict JSON and safe file names."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)

#: characters a name made from user input keeps; anything else becomes "_" (see :func:`safe_name`)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=,-]")
NAME_MAX = 100


def safe_name(text: str, max_len: int = NAME_MAX) -> str:
    """A file or folder name made from ``text`` (a task spec, a run id): never a path, never hidden, never too long.

    Characters other than ASCII letters, digits and ``. _ + @ = , -`` become ``_`` (``lmeval:xnli_en`` ->
    ``lmeval_xnli_en``, ``refusal:../x/req.txt`` -> ``refusal_.._x_req.txt``), a leading ``.`` becomes ``_`` (no
    ``..`` or hidden names), and a name longer than ``max_len`` is cut and ends in a hash of ``text`` instead.
    A name that is already safe comes back unchanged, so :func:`is_safe_name` is ``safe_name(x) == x``.
    """
    name = _UNSAFE.sub("_", text)
    if name.startswith(".") or not name:
        name = "_" + name[1:]
    if len(name) > max_len:
        name = name[:max_len - 11] + "-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return name


def is_safe_name(text: Any, max_len: int = NAME_MAX) -> bool:
    """True for a plain file name that :func:`safe_name` leaves as it is."""
    return isinstance(text, str) and safe_name(text, max_len) == text


def finite_json(obj: Any, note: Callable[[dict, str, Any], str | None] | None = None) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples) in which every NaN or infinite float is None (JSON null).

    ``note(d, key, context_n)``, when given, explains a value set to None in dict ``d``; the explanation is stored
    next to it as ``d["<key>_note"]`` (unless ``d`` already has that key). ``context_n`` is the nearest ``n``
    (sample count) of ``d`` or of a dict above it, None when there is none.
    """

    def walk(x: Any, n: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            n = x.get("n", n)
            out = {k: walk(v, n) for k, v in x.items()}
            if note is not None:
                for k, v in x.items():
                    if isinstance(v, float) and not math.isfinite(v) and f"{k}_note" not in out:
                        why = note(x, k, n)
                        if why:
                            out[f"{k}_note"] = why
            return out
        if isinstance(x, (list, tuple)):
            return [walk(v, n) for v in x]
        return x

    return walk(obj, None)


def json_text(obj: Any) -> str:
    """``obj`` as the indented, strict JSON of result files: NaN and infinities become null (:func:`finite_json`)."""
    return json.dumps(finite_json(obj), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique temporary name in the same folder (os.replace is atomic only within one file system); the name's
    # start is cut so that a long file name cannot make the temporary one too long for the file system
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:60]}.", suffix=".tmp", dir=path.parent)
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
    """``obj`` as strict JSON (:func:`json_text`: no NaN), atomically."""
    atomic_write_text(path, json_text(obj))


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
