"""google: Google Translate's free web endpoint (``translate.google.com/m``) through deep-translator.

No key. Options: ``base_url`` (another endpoint serving the same page),
``proxy``. Texts are sent in the URL, so the service splits them at
:attr:`Google.max_chars` (deep-translator itself refuses 5000 or more).
"""
from __future__ import annotations

from typing import Any

from deep_translator.constants import GOOGLE_LANGUAGES_TO_CODES

from harness.mt.deep import DeepTranslatorProvider


class Google(DeepTranslatorProvider):
    """Google Translate (free web endpoint, no key) via deep-translator"""

    name = "google"
    translator = "deep_translator.google:GoogleTranslator"
    default_base_url = "https://translate.google.com/m"
    languages = GOOGLE_LANGUAGES_TO_CODES
    max_chars = 1800

    def _postprocess(self, result: Any, text: str) -> str:
        # deep-translator returns None when Google hands back the text unchanged and it has no letters or digits
        if result is None:
            return text
        return super()._postprocess(result, text)
