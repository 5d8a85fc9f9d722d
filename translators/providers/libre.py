"""libre: LibreTranslate (libretranslate.com or a self-hosted server) through deep-translator.

Option ``base_url`` points at a server (e.g. ``http://localhost:5000/``); the
key is optional: environment variable ``LIBRE_API_KEY`` (or the one named by
``api_key_env``), sent only when set. The language list is deep-translator's
for libretranslate.com; a self-hosted server is asked whatever pair you give.
"""
from __future__ import annotations

from typing import Any

from deep_translator.constants import BASE_URLS, LIBRE_LANGUAGES_TO_CODES

from harness.mt.deep import DeepTranslatorProvider


class Libre(DeepTranslatorProvider):
    """LibreTranslate via deep-translator (option base_url for a self-hosted server; key optional)"""

    name = "libre"
    translator = "deep_translator.libre:LibreTranslator"
    default_base_url = BASE_URLS["LIBRE"]
    languages = LIBRE_LANGUAGES_TO_CODES
    key_env = "LIBRE_API_KEY"
    key_required = False
    max_chars = 1500

    def language_list(self) -> dict[str, str] | None:
        return self.languages if self.base_url.rstrip("/") == self.default_base_url.rstrip("/") else None

    def _build(self, source: str, target: str) -> Any:
        url = self.base_url.rstrip("/") + "/"  # deep-translator appends "translate"
        # deep-translator insists on a key; a server without keys gets none (api_key None is not sent)
        tr = self._cls(source=self.construct_pair[0], target=self.construct_pair[1],
                       api_key=self._secret or "-", custom_url=url)
        tr.api_key = self._secret
        tr._source, tr._target = source, target
        return tr
