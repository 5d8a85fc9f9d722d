"""deepl: the DeepL API through deep-translator.

Needs a key: environment variable ``DEEPL_API_KEY`` (or the one named by
option ``api_key_env``). Option ``use_free_api`` picks ``api-free.deepl.com``
(default: the free endpoint for a free key, one ending in ``:fx``, else
``api.deepl.com``); ``base_url`` overrides both. deep-translator sends the
text in the URL of a GET request, so texts are split at :attr:`DeepL.max_chars`.
"""
from __future__ import annotations

from typing import Any

from deep_translator.constants import BASE_URLS, DEEPL_LANGUAGE_TO_CODE

from harness.mt.deep import DeepTranslatorProvider
from harness.mt.provider import Provider


class DeepL(DeepTranslatorProvider):
    """DeepL API via deep-translator (key in DEEPL_API_KEY; option use_free_api)"""

    name = "deepl"
    translator = "deep_translator.deepl:DeeplTranslator"
    default_base_url = BASE_URLS["DEEPL"].format(version="v2")
    languages = DEEPL_LANGUAGE_TO_CODE
    auto_source = False  # deep-translator always sends source_lang
    key_env = "DEEPL_API_KEY"
    key_required = True
    max_chars = 1500
    extra_options = {"use_free_api": bool}
    runtime_options = Provider.runtime_options | {"use_free_api"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if "base_url" not in self.options:
            free = self.options.get("use_free_api", bool(self._secret and self._secret.endswith(":fx")))
            self.base_url = BASE_URLS["DEEPL_FREE" if free else "DEEPL"].format(version="v2")

    def _kwargs(self) -> dict[str, Any]:
        return {"api_key": self._secret}

    def _build(self, source: str, target: str) -> Any:
        tr = super()._build(source, target)
        tr._base_url = self.base_url.rstrip("/") + "/"  # deep-translator appends "translate"
        return tr
