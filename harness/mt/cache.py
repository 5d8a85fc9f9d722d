"""The translation cache (SQLite), shared across runs.

Keyed by provider (name, version and output-affecting options), source and
target language, and the exact text sent. Each batch is committed as soon as
it completes, so a killed run keeps every finished translation. Failures are
never cached: a re-run asks again. A damaged file or an unusable path is a
one-line :class:`~harness.sqlitedb.CacheError`; a translation that fails its
checksum is asked again, with a warning (:class:`harness.sqlitedb.Store`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from harness.sqlitedb import Store, Table

TRANSLATIONS = Table("translations", (("provider", "TEXT"), ("source", "TEXT"), ("target", "TEXT"), ("text", "TEXT"),
                                      ("translation", "TEXT")), ("translation",))


def translation_key(provider: str, source: str, target: str, text: str) -> str:
    return hashlib.sha256(json.dumps([provider, source, target, text], ensure_ascii=False).encode()).hexdigest()


class TranslationCache(Store):
    def __init__(self, path: str | Path):
        super().__init__(path, (TRANSLATIONS,), "translation cache", "--mt-option cache=FILE or $CONJUGATE_CACHE")

    def get_many(self, provider: str, source: str, target: str, texts: Iterable[str]) -> dict[str, str]:
        """text -> cached translation, for the texts that have one."""
        by_key = {translation_key(provider, source, target, t): t for t in texts}
        return {by_key[k]: v[0] for k, v in self.get(TRANSLATIONS, by_key).items()}

    def put_many(self, provider: str, source: str, target: str, pairs: Iterable[tuple[str, str]]) -> None:
        """(text, translation) pairs, committed at once."""
        self.put(TRANSLATIONS, [(translation_key(provider, source, target, t), provider, source, target, t, tr)
                                for t, tr in pairs])

    def __len__(self) -> int:
        return self.count(TRANSLATIONS)
