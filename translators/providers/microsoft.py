"""microsoft: Microsoft (Azure AI) Translator through deep-translator.

Needs a key: environment variable ``MICROSOFT_API_KEY`` (or the one named by
``api_key_env``); option ``region`` for a regional resource. Option
``base_url`` is the API root (default
``https://api.cognitive.microsofttranslator.com``). deep-translator fetches the
language list online when a translator is built; here no request is made
before the first translation, and :meth:`supports` accepts any pair (the
service reports an unknown code from the first answer).
"""
from __future__ import annotations

from typing import Any

from deep_translator.microsoft import MicrosoftTranslator

from harness.mt.deep import DeepTranslatorProvider
from harness.mt.provider import Provider

#: common codes as Microsoft spells them
CODES = {"zh": "zh-Hans", "zh-cn": "zh-Hans", "zh-sg": "zh-Hans", "zh-tw": "zh-Hant", "zh-hk": "zh-Hant",
         "iw": "he", "no": "nb", "tl": "fil", "jw": "jv"}


class _Translator(MicrosoftTranslator):
    """deep-translator's MicrosoftTranslator without the language-list request in its constructor."""

    def __init__(self, *, languages: dict[str, str], **kwargs: Any) -> None:
        self._preset_languages = languages
        super().__init__(**kwargs)

    def _get_supported_languages(self) -> dict[str, str]:
        return self._preset_languages


class Microsoft(DeepTranslatorProvider):
    """Microsoft Azure Translator via deep-translator (key in MICROSOFT_API_KEY; option region)"""

    name = "microsoft"
    translator = "deep_translator.microsoft:MicrosoftTranslator"
    default_base_url = "https://api.cognitive.microsofttranslator.com"
    languages = None
    auto_source = False  # deep-translator always sends from=
    key_env = "MICROSOFT_API_KEY"
    key_required = True
    max_chars = 4500
    extra_options = {"region": str}
    runtime_options = Provider.runtime_options | {"region"}

    def code(self, lang: str, *, source: bool = False) -> str | None:
        c = super().code(lang, source=source)
        return CODES.get(c.lower().replace("_", "-"), c.replace("_", "-")) if c and c != "auto" else c

    def _build(self, source: str, target: str) -> Any:
        tr = _Translator(languages={source: source, target: target}, source=source, target=target,
                         api_key=self._secret, region=self.options.get("region"))
        url = self.base_url.rstrip("/")
        tr._base_url = url if "/translate" in url else url + "/translate?api-version=3.0"
        return tr
