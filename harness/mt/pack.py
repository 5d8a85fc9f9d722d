"""Frozen translation packs: JSONL files of translations with provenance.

One JSON object per line::

    {"source_lang": "en", "target_lang": "fr", "source": "Hello.", "translation": "Bonjour.",
     "provider": "google", "provider_version": "deep-translator 1.11.4", "date": "2026-11-23",
     "tool": "conjugate 0.1.0"}

``conjugate translate --task T --to fr,es --out pack.jsonl`` writes one;
``conjugate translate --import-parallel en=a.txt fr=b.txt --out pack.jsonl``
imports a line-aligned parallel corpus; ``conjugate run --translations
pack.jsonl`` then takes every translation from the pack, offline and
reproducibly.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.errors import ConfigError
from harness.io import atomic_write_text, json_lines

REQUIRED = ("source_lang", "target_lang", "source", "translation")


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"conjugate {version('conjugate-harness')}"
    except PackageNotFoundError:
        return "conjugate (source checkout)"


def today() -> str:
    return _dt.date.today().isoformat()


@dataclass
class Pack:
    path: Path
    entries: dict[tuple[str, str, str], dict]  # (source_lang, target_lang, source) -> entry
    digest: str

    @classmethod
    def load(cls, path: str | Path) -> "Pack":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"translation pack {path} does not exist; write one with `conjugate translate --out {path}`")
        raw = path.read_bytes()
        entries: dict[tuple[str, str, str], dict] = {}
        lines = raw.decode("utf-8", errors="replace").splitlines()
        for n, e in json_lines(lines, f"translation pack {path}", ConfigError, objects=True):
            missing = [k for k in REQUIRED if not isinstance(e.get(k), str)]
            if missing:
                raise ConfigError(f"translation pack {path} line {n}: field {missing[0]!r} is missing or not a string; "
                                  f"every line needs {', '.join(REQUIRED)}")
            entries[(e["source_lang"], e["target_lang"], e["source"])] = e
        return cls(path, entries, hashlib.sha256(raw).hexdigest()[:16])

    def get(self, source_lang: str, target_lang: str, text: str) -> str | None:
        e = self.entries.get((source_lang, target_lang, text))
        return None if e is None else e["translation"]

    def pairs(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for s, t, _ in self.entries:
            out[(s, t)] = out.get((s, t), 0) + 1
        return out

    def describe(self) -> dict:
        providers = sorted({e.get("provider", "?") for e in self.entries.values()})
        return {"path": str(self.path), "sha256": self.digest, "entries": len(self.entries),
                "pairs": {f"{s}->{t}": n for (s, t), n in sorted(self.pairs().items())}, "providers": providers}


def write_pack(path: str | Path, entries: Iterable[dict]) -> int:
    """Write entries (dicts with at least :data:`REQUIRED`) atomically, sorted for stable diffs; returns the count."""
    rows = sorted({(e["source_lang"], e["target_lang"], e["source"]): e for e in entries}.values(),
                  key=lambda e: (e["source_lang"], e["target_lang"], e["source"]))
    atomic_write_text(Path(path), "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in rows))
    return len(rows)


def import_parallel(files: dict[str, str | Path], source_lang: str | None = None) -> list[dict]:
    """Entries from line-aligned files, one per language (``{"en": "a.txt", "fr": "b.txt"}``).

    The source language is ``source_lang`` or the first one given. Blank lines
    must be blank in every file; a file with a different number of lines is an error.
    """
    if len(files) < 2:
        raise ConfigError("--import-parallel needs at least two LANG=FILE pairs, e.g. en=sents_en.txt fr=sents_fr.txt")
    source_lang = source_lang or next(iter(files))
    if source_lang not in files:
        raise ConfigError(f"--source {source_lang!r} is not among the imported languages {', '.join(files)}")
    lines: dict[str, list[str]] = {}
    for lang, f in files.items():
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"--import-parallel {lang}={f}: file does not exist")
        lines[lang] = p.read_text(encoding="utf-8").splitlines()
    sizes = {lang: len(v) for lang, v in lines.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"--import-parallel: files are not line-aligned (line counts {sizes})")
    date, tool = today(), tool_version()
    out = []
    for lang, f in files.items():
        if lang == source_lang:
            continue
        for n, (src, tr) in enumerate(zip(lines[source_lang], lines[lang]), 1):
            if not src.strip() and not tr.strip():
                continue
            if not src.strip() or not tr.strip():
                raise ConfigError(f"--import-parallel: line {n} is blank in one of {source_lang}/{lang} but not the other")
            out.append({"source_lang": source_lang, "target_lang": lang, "source": src.strip(), "translation": tr.strip(),
                        "provider": f"parallel:{Path(f).name}", "provider_version": "human/parallel corpus",
                        "date": date, "tool": tool})
    return out
