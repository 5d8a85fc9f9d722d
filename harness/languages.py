"""Names of languages for people: ``sw`` -> Swahili, ``pt-BR`` -> Portuguese (Brazil).

The names come from ``langcodes`` with its ``language_data`` (CLDR), so every BCP 47 code has one, not only
the languages a table happened to list. Without those packages, or for a code they do not know, the name
is the code itself: a report then shows ``lang:xx`` as ``xx`` rather than failing.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache


@lru_cache(maxsize=512)
def language_name(code: str) -> str:
    """The English name of the language ``code`` (``ja`` -> Japanese, ``zh_CN`` -> Chinese (China)); the code
    itself when it is not a valid language tag or langcodes / language_data are not installed."""
    if not code or importlib.util.find_spec("langcodes") is None or importlib.util.find_spec("language_data") is None:
        return code  # (langcodes prints an install hint to stdout when language_data is missing: ask first)
    import langcodes

    try:
        lang = langcodes.Language.get(code.replace("_", "-"))
        return lang.display_name() if lang.is_valid() and lang.language else code
    except (ValueError, LookupError):  # LanguageTagError is a ValueError
        return code
