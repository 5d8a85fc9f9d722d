"""yandex: the Yandex Translate v1.5 API through deep-translator.

Needs a key: environment variable ``YANDEX_API_KEY`` (or the one named by
``api_key_env``). Yandex no longer issues keys for this legacy API; it is here
for keys that still work. Option ``base_url``: the API root, or a URL template
with ``{version}`` and ``{endpoint}``. Languages: deep-translator checks them
against Google's list.
"""
from __future__ import annotations

from typing import Any

from deep_translator.constants import BASE_URLS, GOOGLE_LANGUAGES_TO_CODES

from harness.mt.deep import DeepTranslatorProvider


class Yandex(DeepTranslatorProvider):
    """Yandex Translate (legacy v1.5 API) via deep-translator (key in YANDEX_API_KEY)"""

    name = "yandex"
    translator = "deep_translator.yandex:YandexTranslator"
    default_base_url = BASE_URLS["YANDEX"]
    languages = GOOGLE_LANGUAGES_TO_CODES
    key_env = "YANDEX_API_KEY"
    key_required = True
    max_chars = 4000

    def _kwargs(self) -> dict[str, Any]:
        return {"api_key": self._secret}

    def _build(self, source: str, target: str) -> Any:
        tr = super()._build(source, target)
        url = self.base_url
        tr._base_url = url if "{endpoint}" in url else url.rstrip("/") + "/api/{version}/tr.json/{endpoint}"
        return tr
