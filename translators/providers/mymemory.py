"""mymemory: the MyMemory translation memory (translated.net) through deep-translator.

No key. Free use is limited per day (about 5000 characters anonymously, ten
times more with option ``email``, sent as MyMemory's ``de`` parameter). Other
options: ``base_url``, ``proxy``. MyMemory accepts at most 500 characters a
request (deep-translator refuses 500 or more), so texts are split at
:attr:`MyMemory.max_chars`.

MyMemory reports some errors inside an HTTP 200 answer (``responseStatus``
403/429 with the message as the "translation"); those become ProviderErrors
here instead of being returned as text, as deep-translator would.
"""
from __future__ import annotations

from typing import Any

from deep_translator.constants import MY_MEMORY_LANGUAGES_TO_CODES

from harness.mt.deep import STATE, DeepTranslatorProvider, _retryable_status
from harness.mt.provider import Provider, ProviderError


class MyMemory(DeepTranslatorProvider):
    """MyMemory (translated.net) via deep-translator; no key, daily quota (option email raises it)"""

    name = "mymemory"
    translator = "deep_translator.mymemory:MyMemoryTranslator"
    # deep-translator's default is plain http://; the same API is served over https
    default_base_url = "https://api.mymemory.translated.net/get"
    languages = MY_MEMORY_LANGUAGES_TO_CODES
    auto_source = False  # MyMemory answers "'AUTO' IS AN INVALID SOURCE LANGUAGE"
    construct_pair = ("en-GB", "fr-FR")
    max_chars = 480
    extra_options = {"email": str}
    runtime_options = Provider.runtime_options | {"email"}

    def _kwargs(self) -> dict[str, Any]:
        return {"email": self.options["email"]} if self.options.get("email") else {}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if "email" in d["options"]:
            d["options"]["email"] = "(set)"  # personal data, not needed to reproduce a run
        return d

    def _postprocess(self, result: Any, text: str) -> str:
        data = None
        try:
            data = STATE.response.json() if STATE.response is not None else None
        except ValueError:
            pass
        if isinstance(data, dict):
            try:
                code = int(data.get("responseStatus", 200))
            except (TypeError, ValueError):
                code = 200
            if code != 200:
                details = str(data.get("responseDetails") or
                              (data.get("responseData") or {}).get("translatedText") or "").strip()
                quota = data.get("quotaFinished") is True
                hint = "; the daily quota is used up (option email raises it)" if quota else ""
                raise ProviderError(f"{details or 'error'} (responseStatus {code}{hint})",
                                    retryable=_retryable_status(code) and not quota, status=code,
                                    retry_after=STATE.retry_after)
        return super()._postprocess(result, text)
