"""Language codes for ``hf-mt``: how each model family is asked for a (source, target) pair, or why it cannot be.

* **Marian** (opus-mt): one model per direction. The pair comes from the tokenizer's
  ``source_lang``/``target_lang`` or the model name (``opus-mt-en-fr``, ``opus-mt-tc-big-en-pt``); group
  names such as ``ROMANCE`` or ``mul`` accept any language on that side. Multi-target models (vocabulary
  with ``>>xx<<`` tokens) get the target token prepended (``>>pt_BR<<``, ``>>pt<<`` or ``>>por<<``,
  whichever the model has).
* **NLLB**: ``src_lang`` and ``forced_bos_token_id`` with FLORES-200 codes; ISO codes are mapped
  (:data:`LANGUAGES`: ``fr`` -> ``fra_Latn``, ``zh`` -> ``zho_Hans``, ``zh-TW`` -> ``zho_Hant``), and an
  NLLB code can be given as is.
* **M2M100**: ``tokenizer.src_lang`` and ``get_lang_id`` with its own codes (``fr``, ``zh``; ``nb`` -> ``no``,
  ``fil`` -> ``tl``).

Pure functions of the tokenizer and config: no model is loaded here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.mt.provider import ProviderError

#: ISO 639-1 -> (ISO 639-3, NLLB/FLORES-200 code)
LANGUAGES: dict[str, tuple[str, str]] = {
    "af": ("afr", "afr_Latn"), "am": ("amh", "amh_Ethi"), "ar": ("ara", "arb_Arab"), "az": ("aze", "azj_Latn"),
    "be": ("bel", "bel_Cyrl"), "bg": ("bul", "bul_Cyrl"), "bn": ("ben", "ben_Beng"), "bs": ("bos", "bos_Latn"),
    "ca": ("cat", "cat_Latn"), "cs": ("ces", "ces_Latn"), "cy": ("cym", "cym_Latn"), "da": ("dan", "dan_Latn"),
    "de": ("deu", "deu_Latn"), "el": ("ell", "ell_Grek"), "en": ("eng", "eng_Latn"), "eo": ("epo", "epo_Latn"),
    "es": ("spa", "spa_Latn"), "et": ("est", "est_Latn"), "eu": ("eus", "eus_Latn"), "fa": ("fas", "pes_Arab"),
    "fi": ("fin", "fin_Latn"), "fr": ("fra", "fra_Latn"), "ga": ("gle", "gle_Latn"), "gl": ("glg", "glg_Latn"),
    "gu": ("guj", "guj_Gujr"), "ha": ("hau", "hau_Latn"), "he": ("heb", "heb_Hebr"), "hi": ("hin", "hin_Deva"),
    "hr": ("hrv", "hrv_Latn"), "ht": ("hat", "hat_Latn"), "hu": ("hun", "hun_Latn"), "hy": ("hye", "hye_Armn"),
    "id": ("ind", "ind_Latn"), "ig": ("ibo", "ibo_Latn"), "is": ("isl", "isl_Latn"), "it": ("ita", "ita_Latn"),
    "ja": ("jpn", "jpn_Jpan"), "jv": ("jav", "jav_Latn"), "ka": ("kat", "kat_Geor"), "kk": ("kaz", "kaz_Cyrl"),
    "km": ("khm", "khm_Khmr"), "kn": ("kan", "kan_Knda"), "ko": ("kor", "kor_Hang"), "ky": ("kir", "kir_Cyrl"),
    "lb": ("ltz", "ltz_Latn"), "lo": ("lao", "lao_Laoo"), "lt": ("lit", "lit_Latn"), "lv": ("lav", "lvs_Latn"),
    "mg": ("mlg", "plt_Latn"), "mk": ("mkd", "mkd_Cyrl"), "ml": ("mal", "mal_Mlym"), "mn": ("mon", "khk_Cyrl"),
    "mr": ("mar", "mar_Deva"), "ms": ("msa", "zsm_Latn"), "mt": ("mlt", "mlt_Latn"), "my": ("mya", "mya_Mymr"),
    "nb": ("nob", "nob_Latn"), "ne": ("nep", "npi_Deva"), "nl": ("nld", "nld_Latn"), "nn": ("nno", "nno_Latn"),
    "no": ("nor", "nob_Latn"), "pa": ("pan", "pan_Guru"), "pl": ("pol", "pol_Latn"), "ps": ("pus", "pbt_Arab"),
    "pt": ("por", "por_Latn"), "ro": ("ron", "ron_Latn"), "ru": ("rus", "rus_Cyrl"), "si": ("sin", "sin_Sinh"),
    "sk": ("slk", "slk_Latn"), "sl": ("slv", "slv_Latn"), "so": ("som", "som_Latn"), "sq": ("sqi", "als_Latn"),
    "sr": ("srp", "srp_Cyrl"), "su": ("sun", "sun_Latn"), "sv": ("swe", "swe_Latn"), "sw": ("swa", "swh_Latn"),
    "ta": ("tam", "tam_Taml"), "te": ("tel", "tel_Telu"), "tg": ("tgk", "tgk_Cyrl"), "th": ("tha", "tha_Thai"),
    "tk": ("tuk", "tuk_Latn"), "tl": ("tgl", "tgl_Latn"), "tr": ("tur", "tur_Latn"), "uk": ("ukr", "ukr_Cyrl"),
    "ur": ("urd", "urd_Arab"), "uz": ("uzb", "uzn_Latn"), "vi": ("vie", "vie_Latn"), "xh": ("xho", "xho_Latn"),
    "yi": ("yid", "ydd_Hebr"), "yo": ("yor", "yor_Latn"), "zh": ("zho", "zho_Hans"), "zu": ("zul", "zul_Latn"),
}
#: other spellings of ISO 639-1 codes
_ALIASES = {"iw": "he", "in": "id", "ji": "yi", "fil": "tl", "jw": "jv"}
#: ISO 639-2/3 codes used in opus-mt model names -> ISO 639-1
_ISO3 = {iso3: iso1 for iso1, (iso3, _) in LANGUAGES.items()} | {
    "fre": "fr", "ger": "de", "dut": "nl", "chi": "zh", "cmn": "zh", "cze": "cs", "gre": "el", "rum": "ro",
    "per": "fa", "pes": "fa", "alb": "sq", "arm": "hy", "geo": "ka", "may": "ms", "zsm": "ms", "ice": "is",
    "mac": "mk", "wel": "cy", "baq": "eu", "bur": "my", "arb": "ar", "swh": "sw", "nob": "no",
}
_NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
_OPUS_NAME = re.compile(r"opus-mt-(?:tc-(?:big|base)-)?([A-Za-z_+]+)-([A-Za-z_+]+)$")


def iso1(code: str) -> str:
    """``pt-BR`` -> ``pt``; ``iw`` -> ``he``; ``por`` -> ``pt``."""
    base = re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()
    base = _ALIASES.get(base, base)
    return _ISO3.get(base, base) if len(base) == 3 else base


def nllb_code(code: str) -> str:
    """ISO code -> FLORES-200 code (``fr`` -> ``fra_Latn``); an NLLB code passes through. KeyError if unknown."""
    code = code.strip()
    if _NLLB_CODE.match(code):
        return code
    base = iso1(code)
    if base == "zh" and re.search(r"(?i)[-_](tw|hk|mo|hant)\b", code):
        return "zho_Hant"
    return LANGUAGES[base][1]


def _side_languages(part: str) -> set[str] | None:
    """Languages of one side of an opus-mt name (``en``, ``cat_oci_spa``); None for groups (``ROMANCE``, ``mul``)."""
    out: set[str] = set()
    for piece in re.split(r"[_+]", part):
        if not piece or piece != piece.lower():
            return None  # upper-case names are groups (ROMANCE, SCANDINAVIA) or regions
        if len(piece) == 2:
            out.add(_ALIASES.get(piece, piece))
        elif piece in _ISO3:
            out.add(_ISO3[piece])
        else:
            return None  # a language family (gem, roa, zle, mul) or a code we do not know: accept any
    return out


def marian_pair(tok, config, model_ref: str, folder: Path | None) -> tuple[set[str] | None, set[str] | None]:
    """Languages the Marian model reads and writes (None: any, or not known)."""
    src_l, tgt_l = getattr(tok, "source_lang", None), getattr(tok, "target_lang", None)
    if src_l and tgt_l:  # the conversion script writes e.g. source_lang="opus-mt-en", target_lang="fr"
        return _side_languages(str(src_l).rsplit("-", 1)[-1]), _side_languages(str(tgt_l))
    names = [model_ref, getattr(config, "name_or_path", "") or "", getattr(config, "_name_or_path", "") or ""]
    if folder is not None:
        names.append(folder.name)
    for name in names:
        m = _OPUS_NAME.search(str(name).rstrip("/"))
        if m:
            return _side_languages(m.group(1)), _side_languages(m.group(2))
    return None, None


def marian_target_token(tok, target: str, model_ref: str) -> str | None:
    """``>>xx<<`` for a multi-target Marian model (None for a single-target one); ProviderError if it has none."""
    codes = list(getattr(tok, "supported_language_codes", None) or [])
    if not codes:
        return None
    base = iso1(target)
    cands = [target.strip().replace("-", "_"), target.strip().lower().replace("-", "_"), base]
    if base in LANGUAGES:
        iso3, nllb = LANGUAGES[base]
        cands += [iso3, nllb, nllb.replace("zho_", "cmn_")]
    for c in cands:
        if f">>{c}<<" in codes:
            return f">>{c}<<"
    raise ProviderError(
        f"hf-mt: {model_ref} is a multi-target Marian model, and none of "
        f"{', '.join(f'>>{c}<<' for c in dict.fromkeys(cands))} is in its vocabulary "
        f"(it has {', '.join(codes[:12])}{', ...' if len(codes) > 12 else ''})", retryable=False)


def _marian_setup(tok, config, model_ref: str, folder: Path | None, source: str, target: str) -> dict[str, Any]:
    srcs, tgts = marian_pair(tok, config, model_ref, folder)
    if srcs is not None and iso1(source) not in srcs:
        raise ProviderError(
            f"hf-mt: {model_ref} translates from {'/'.join(sorted(srcs))}, not from {source!r}; "
            f"Marian models are one direction each: pick the opus-mt-{iso1(source)}-{iso1(target)} model",
            retryable=False)
    token = marian_target_token(tok, target, model_ref)
    if token is None and tgts is not None and iso1(target) not in tgts:
        raise ProviderError(
            f"hf-mt: {model_ref} translates into {'/'.join(sorted(tgts))}, not into {target!r}; "
            f"Marian models are one direction each: pick the opus-mt-{iso1(source)}-{iso1(target)} model",
            retryable=False)
    return {"prefix": f"{token} " if token else ""}


def _nllb_setup(tok, model_ref: str, source: str, target: str) -> dict[str, Any]:
    codes = []
    for code in (source, target):
        try:
            nc = nllb_code(code)
        except KeyError:
            raise ProviderError(
                f"hf-mt: no NLLB code known for language {code!r}; give the FLORES-200 code itself "
                f"(e.g. fra_Latn, zho_Hant) or an ISO 639-1 code such as {', '.join(sorted(LANGUAGES)[:8])}, ...",
                retryable=False) from None
        if tok.convert_tokens_to_ids(nc) in (None, tok.unk_token_id):
            raise ProviderError(f"hf-mt: {model_ref} has no language token {nc} (for {code!r})", retryable=False)
        codes.append(nc)
    return {"src_lang": codes[0], "forced_bos_token_id": tok.convert_tokens_to_ids(codes[1])}


def _m2m100_setup(tok, model_ref: str, source: str, target: str) -> dict[str, Any]:
    known = getattr(tok, "lang_code_to_id", {}) or {}
    out = []
    for code in (source, target):
        c = iso1(code)
        c = {"nb": "no"}.get(c, c)
        if c not in known:
            raise ProviderError(
                f"hf-mt: {model_ref} (M2M100) has no language {code!r}; it knows "
                f"{', '.join(sorted(known)[:20])}{', ...' if len(known) > 20 else ''}", retryable=False)
        out.append(c)
    return {"src_lang": out[0], "forced_bos_token_id": tok.get_lang_id(out[1])}


def lang_setup(family: str, tok, config, model_ref: str, folder: Path | None, source: str, target: str) -> dict[str, Any]:
    """How to ask a ``family`` model for source -> target (a ``prefix``, or ``src_lang`` and
    ``forced_bos_token_id``); ProviderError (not retryable, with the reason) when it cannot."""
    if iso1(source) == iso1(target) and source.strip().lower() == target.strip().lower():
        raise ProviderError(f"hf-mt: source and target are both {source!r}", retryable=False)
    if family == "marian":
        return _marian_setup(tok, config, model_ref, folder, source, target)
    if family == "nllb":
        return _nllb_setup(tok, model_ref, source, target)
    return _m2m100_setup(tok, model_ref, source, target)
