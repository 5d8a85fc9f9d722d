"""``hf-mt``: any transformers translation model, run locally and batched.

Options (``--mt-option KEY=VALUE``):

``model`` (required)
    a Hugging Face hub ID (``Helsinki-NLP/opus-mt-en-fr``,
    ``facebook/nllb-200-distilled-600M``, ``facebook/m2m100_418M``) or a local
    folder with ``config.json``, the weights and the tokenizer files.
``revision``
    hub branch, tag or commit (hub IDs only); the commit it resolves to is
    part of :attr:`HFMT.version`, so the translation cache never mixes commits.
``device``
    ``auto`` (default: ``cuda`` when torch sees a GPU, else ``cpu``), ``cpu``,
    ``cuda`` or ``cuda:N``.
``batch_size``
    texts per ``generate`` call (default 16).
``num_beams``
    default **1**: greedy decoding, deterministic and the fastest on CPU. The
    opus-mt models' own ``generation_config`` asks for 4 beams, which the
    provider overrides; pass ``num_beams=4`` for their usual (slightly
    better, ~3x slower) output. Sampling is never used.
``max_new_tokens``
    longest translation in tokens (default: the model's decoder positions,
    at most 512). A translation that reaches it is probably cut short; the
    provider warns.

Model families and languages (ISO 639-1 codes such as ``fr``, ``pt-BR``):

* **Marian** (opus-mt): one model per direction. The pair comes from the
  tokenizer's ``source_lang``/``target_lang`` or the model name
  (``opus-mt-en-fr``, ``opus-mt-tc-big-en-pt``); group names such as
  ``ROMANCE`` or ``mul`` accept any language on that side. Multi-target models
  (vocabulary with ``>>xx<<`` tokens) get the target token prepended
  (``>>pt_BR<<``, ``>>pt<<`` or ``>>por<<``, whichever the model has).
* **NLLB**: ``src_lang`` and ``forced_bos_token_id`` with FLORES-200 codes;
  ISO codes are mapped (:data:`LANGUAGES`: ``fr`` -> ``fra_Latn``, ``zh`` ->
  ``zho_Hans``, ``zh-TW`` -> ``zho_Hant``), and an NLLB code can be given as is.
* **M2M100**: ``tokenizer.src_lang`` and ``get_lang_id`` with its own codes
  (``fr``, ``zh``; ``nb`` -> ``no``, ``fil`` -> ``tl``).

A code the model cannot take makes :meth:`HFMT.supports` false and
:meth:`HFMT.translate` raise a :class:`ProviderError` that says why.

Texts are translated line by line (these models treat newlines as spaces);
lines longer than the model's input window are cut at sentence boundaries
rather than truncated, and lines without letters (``[[0]]``, ``42``) are kept
as they are. Identical lines are translated once per call, and lines are
sorted by length before batching to waste less padding.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

from harness.mt.provider import Provider, ProviderError, TranslationError

from harness.mt.text import EDGES_RE, NEWLINE_RE, split_long

OPTIONS = ("model", "revision", "device", "batch_size", "num_beams", "max_new_tokens")
_USAGE = ("give a hub ID (--mt-option model=Helsinki-NLP/opus-mt-en-fr) or a local folder with config.json, "
          "weights and tokenizer files (--mt-option model=/path/to/opus-mt-en-fr)")

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


def _iso1(code: str) -> str:
    """``pt-BR`` -> ``pt``; ``iw`` -> ``he``; ``por`` -> ``pt``."""
    base = re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()
    base = _ALIASES.get(base, base)
    return _ISO3.get(base, base) if len(base) == 3 else base


def nllb_code(code: str) -> str:
    """ISO code -> FLORES-200 code (``fr`` -> ``fra_Latn``); an NLLB code passes through. KeyError if unknown."""
    code = code.strip()
    if _NLLB_CODE.match(code):
        return code
    base = _iso1(code)
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


def _is_local_path(model: str) -> bool:
    return (Path(model).expanduser().exists() or model.startswith((".", "/", "~", "\\"))
            or (os.sep in model and model.count(os.sep) > 1) or bool(re.match(r"^[A-Za-z]:[\\/]", model)))


class HFMT(Provider):
    """Any transformers translation model (Marian, NLLB, M2M100) from a hub ID or a local folder, batched"""

    name: ClassVar[str] = "hf-mt"
    online: ClassVar[bool] = False
    batch_size: int = 16  # the ``batch_size`` option overrides it per instance
    # ~200 tokens of English: well inside Marian's 512 positions and the quality sweet spot of these models
    max_chars: ClassVar[int] = 800
    runtime_options: ClassVar[frozenset[str]] = Provider.runtime_options | {"device", "batch_size"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = sorted(set(options) - set(OPTIONS) - set(Provider.runtime_options))
        if unknown:
            raise TranslationError(f"hf-mt: unknown option(s) {', '.join(unknown)}; it takes {', '.join(OPTIONS)}")
        model = str(options.get("model") or "").strip()
        if not model:
            raise TranslationError(f"hf-mt needs a translation model: {_USAGE}")
        self.model_ref = model
        self.revision = str(options["revision"]) if options.get("revision") else None
        if _is_local_path(model):
            folder = Path(model).expanduser()
            if not folder.exists():
                raise TranslationError(f"hf-mt: model folder {model} does not exist; {_USAGE}")
            if not folder.is_dir() or not (folder / "config.json").exists():
                raise TranslationError(
                    f"hf-mt: {model} is not a transformers model folder (no config.json); "
                    "save one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)")
            if self.revision:
                raise TranslationError(f"hf-mt: revision={self.revision} applies to hub IDs, not to the folder {model}")
            self.folder: Path | None = folder.resolve()
        else:
            self.folder = None
        self.batch_size = self._int_option("batch_size", 16)
        self.num_beams = self._int_option("num_beams", 1)
        self.max_new_tokens_opt = self._int_option("max_new_tokens", None)
        self.device_opt = str(options.get("device") or "auto").lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device_opt):
            raise TranslationError(f"hf-mt: device={self.device_opt!r}; use auto, cpu, cuda or cuda:N")
        self._version: str | None = None
        self._commit: str | None = None
        self._tok: Any = None
        self._model: Any = None
        self._family: str | None = None
        self._config: Any = None
        self._lock = threading.RLock()

    def _int_option(self, key: str, default: int | None) -> int | None:
        value = self.options.get(key)
        if value is None or value == "":
            return default
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise TranslationError(f"hf-mt: {key}={value!r} must be a positive integer")
        return n

    # -- identity -------------------------------------------------------------
    def _hub_commit(self) -> str:
        if self._commit is None:
            from harness.errors import ConjugateError
            from harness.pipeline.models import ModelSpec, hub_commit

            try:
                self._commit = hub_commit(ModelSpec(name="hf-mt", model=self.model_ref, revision=self.revision))
            except ConjugateError as exc:
                raise TranslationError(
                    f"hf-mt: {exc}. Download it once where the Hub is reachable "
                    f"(`huggingface-cli download {self.model_ref}`, then it is used offline from the HF cache), "
                    "or give a local folder: --mt-option model=/path/to/folder") from None
        return self._commit

    @property
    def version(self) -> str:
        """``hub:ID@COMMIT`` or ``folder-sha256:HASH`` (weights, config, tokenizer), plus the transformers version."""
        if self._version is None:
            if self.folder is not None:
                from harness.pipeline.models import file_sha256, folder_sha256

                h = hashlib.sha256(folder_sha256(self.folder).encode())
                for p in sorted(self.folder.glob("*.spm")):  # Marian's sentencepiece models
                    h.update(p.name.encode() + file_sha256(p).encode())
                ident = f"folder-sha256:{h.hexdigest()}"
            else:
                ident = f"hub:{self.model_ref}@{self._hub_commit()}"
            try:
                tv = importlib.metadata.version("transformers")
            except importlib.metadata.PackageNotFoundError:
                tv = "?"
            self._version = f"{ident} transformers {tv}"
        return self._version

    def cache_identity(self) -> str:
        # ``model`` and ``revision`` are already in the version as a content hash or a resolved commit,
        # so a copied or moved folder keeps its cached translations.
        opts = {k: v for k, v in sorted(self.options.items())
                if k not in self.runtime_options and k not in ("model", "revision")}
        return f"{self.name}|{self.version}" + (f"|{opts}" if opts else "")

    # -- loading --------------------------------------------------------------
    def _source(self) -> tuple[str, dict[str, Any]]:
        if self.folder is not None:
            return str(self.folder), {}
        return self.model_ref, {"revision": self._hub_commit()}

    def _load_tokenizer(self) -> None:
        if self._tok is not None:
            return
        with self._lock:
            if self._tok is not None:
                return
            src, kw = self._source()
            try:
                from transformers import AutoConfig, AutoTokenizer

                config = AutoConfig.from_pretrained(src, **kw)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*sacremoses.*")
                    tok = AutoTokenizer.from_pretrained(src, **kw)
            except Exception as exc:
                raise TranslationError(
                    f"hf-mt: could not load the tokenizer of {self.model_ref}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
            kind, tname = config.model_type, type(tok).__name__
            if kind == "marian" or tname.startswith("Marian"):
                family = "marian"
            elif tname.startswith("Nllb") or kind == "nllb-moe":
                family = "nllb"
            elif kind == "m2m_100" or tname.startswith("M2M100"):
                family = "m2m100"
            else:
                raise TranslationError(
                    f"hf-mt: {self.model_ref} is a {kind!r} model with a {tname}; hf-mt runs Marian (opus-mt), "
                    "NLLB and M2M100 models")
            self._config, self._family, self._tok = config, family, tok

    def _load_model(self) -> None:
        self._load_tokenizer()
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            src, kw = self._source()
            try:
                import torch
                from transformers import AutoModelForSeq2SeqLM

                device = self.device_opt
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                model = AutoModelForSeq2SeqLM.from_pretrained(src, **kw).eval().to(device)
            except Exception as exc:
                raise TranslationError(
                    f"hf-mt: could not load {self.model_ref}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
            self.device = device
            self._model = model

    @property
    def family(self) -> str:
        """``marian``, ``nllb`` or ``m2m100`` (loads the tokenizer)."""
        self._load_tokenizer()
        return self._family  # type: ignore[return-value]

    # -- languages ------------------------------------------------------------
    def _marian_pair(self) -> tuple[set[str] | None, set[str] | None]:
        """Languages the Marian model reads and writes (None: any, or not known)."""
        tok = self._tok
        src_l, tgt_l = getattr(tok, "source_lang", None), getattr(tok, "target_lang", None)
        if src_l and tgt_l:  # the conversion script writes e.g. source_lang="opus-mt-en", target_lang="fr"
            return _side_languages(str(src_l).rsplit("-", 1)[-1]), _side_languages(str(tgt_l))
        names = [self.model_ref, getattr(self._config, "name_or_path", "") or "",
                 getattr(self._config, "_name_or_path", "") or ""]
        if self.folder is not None:
            names.append(self.folder.name)
        for name in names:
            m = _OPUS_NAME.search(str(name).rstrip("/"))
            if m:
                return _side_languages(m.group(1)), _side_languages(m.group(2))
        return None, None

    def _marian_target_token(self, target: str) -> str | None:
        codes = list(getattr(self._tok, "supported_language_codes", None) or [])
        if not codes:
            return None
        base = _iso1(target)
        cands = [target.strip().replace("-", "_"), target.strip().lower().replace("-", "_"), base]
        if base in LANGUAGES:
            iso3, nllb = LANGUAGES[base]
            cands += [iso3, nllb, nllb.replace("zho_", "cmn_")]
        for c in cands:
            if f">>{c}<<" in codes:
                return f">>{c}<<"
        raise ProviderError(
            f"hf-mt: {self.model_ref} is a multi-target Marian model, and none of "
            f"{', '.join(f'>>{c}<<' for c in dict.fromkeys(cands))} is in its vocabulary "
            f"(it has {', '.join(codes[:12])}{', ...' if len(codes) > 12 else ''})", retryable=False)

    def _lang_setup(self, source: str, target: str) -> dict[str, Any]:
        """How to ask the model for source -> target; ProviderError (with the reason) when it cannot."""
        self._load_tokenizer()
        if _iso1(source) == _iso1(target) and source.strip().lower() == target.strip().lower():
            raise ProviderError(f"hf-mt: source and target are both {source!r}", retryable=False)
        tok, family = self._tok, self._family
        if family == "marian":
            srcs, tgts = self._marian_pair()
            if srcs is not None and _iso1(source) not in srcs:
                raise ProviderError(
                    f"hf-mt: {self.model_ref} translates from {'/'.join(sorted(srcs))}, not from {source!r}; "
                    f"Marian models are one direction each: pick the opus-mt-{_iso1(source)}-{_iso1(target)} model",
                    retryable=False)
            token = self._marian_target_token(target)
            if token is None and tgts is not None and _iso1(target) not in tgts:
                raise ProviderError(
                    f"hf-mt: {self.model_ref} translates into {'/'.join(sorted(tgts))}, not into {target!r}; "
                    f"Marian models are one direction each: pick the opus-mt-{_iso1(source)}-{_iso1(target)} model",
                    retryable=False)
            return {"prefix": f"{token} " if token else ""}
        if family == "nllb":
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
                    raise ProviderError(f"hf-mt: {self.model_ref} has no language token {nc} (for {code!r})",
                                        retryable=False)
                codes.append(nc)
            return {"src_lang": codes[0], "forced_bos_token_id": tok.convert_tokens_to_ids(codes[1])}
        # m2m100
        known = getattr(tok, "lang_code_to_id", {}) or {}
        out = []
        for code in (source, target):
            c = _iso1(code)
            c = {"nb": "no"}.get(c, c)
            if c not in known:
                raise ProviderError(
                    f"hf-mt: {self.model_ref} (M2M100) has no language {code!r}; it knows "
                    f"{', '.join(sorted(known)[:20])}{', ...' if len(known) > 20 else ''}", retryable=False)
            out.append(c)
        return {"src_lang": out[0], "forced_bos_token_id": tok.get_lang_id(out[1])}

    def supports(self, source: str, target: str) -> bool:
        try:
            self._lang_setup(source, target)
        except ProviderError:
            return False
        return True

    # -- translation ----------------------------------------------------------
    def _input_budget(self) -> int:
        """Most source tokens sent at once (longer lines are cut at sentence boundaries)."""
        positions = getattr(self._config, "max_position_embeddings", None) or 512
        tok_max = getattr(self._tok, "model_max_length", None) or positions
        return max(8, min(positions, tok_max, 512) - 4)

    def _max_new_tokens(self) -> int:
        if self.max_new_tokens_opt:
            return self.max_new_tokens_opt
        positions = getattr(self._config, "max_position_embeddings", None) or 512
        return min(positions, 512)

    def _generate(self, segments: list[str], setup: dict[str, Any]) -> list[str]:
        import torch

        tok, model = self._tok, self._model
        if "src_lang" in setup:
            tok.src_lang = setup["src_lang"]
        prefix = setup.get("prefix", "")
        gen_kw: dict[str, Any] = {"num_beams": self.num_beams, "do_sample": False,
                                  "max_new_tokens": self._max_new_tokens()}
        if setup.get("forced_bos_token_id") is not None:
            gen_kw["forced_bos_token_id"] = setup["forced_bos_token_id"]
        if self.num_beams > 1:
            gen_kw["early_stopping"] = True
        drop = set(getattr(tok, "lang_code_to_id", {}).values()) if self._family == "m2m100" else set()
        eos = getattr(model.generation_config, "eos_token_id", None) or tok.eos_token_id
        eos_ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
        outputs: list[str] = []
        cut_short = 0
        for i in range(0, len(segments), self.batch_size):
            batch = [prefix + s for s in segments[i:i + self.batch_size]]
            enc = tok(batch, return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                out = model.generate(**enc, **gen_kw)
            for row in out.tolist():
                gen = row[1:]  # after the decoder start token
                first_eos = next((j for j, t in enumerate(gen) if t in eos_ids), None)
                # no EOS, or one only in the last slot (opus-mt configs force EOS there)
                if len(gen) >= gen_kw["max_new_tokens"] and (first_eos is None or first_eos >= len(gen) - 1):
                    cut_short += 1
                ids = [t for t in gen if t not in drop]
                outputs.append(tok.decode(ids, skip_special_tokens=True).strip())
        if cut_short:
            warnings.warn(f"hf-mt: {cut_short} translation(s) reached max_new_tokens={gen_kw['max_new_tokens']} "
                          "and may be cut short; raise --mt-option max_new_tokens=...", RuntimeWarning, stacklevel=3)
        return outputs

    def translate(self, texts: Sequence[str], source: str, target: str, timeout: float = 0.0) -> list[str]:
        # ``timeout`` is not enforced: generation is local and cannot be interrupted mid-batch.
        setup = self._lang_setup(source, target)  # ProviderError with the reason for a pair it cannot do
        with self._lock:
            try:
                tok = self._tok
                budget = self._input_budget()

                def fits(s: str) -> bool:
                    return len(tok(s, add_special_tokens=False)["input_ids"]) <= budget

                # each text -> lines -> pieces; identical pieces are translated once
                plans: list[list[Any]] = []
                unique: dict[str, None] = {}
                for text in texts:
                    plan: list[Any] = []
                    for i, part in enumerate(NEWLINE_RE.split(text)):
                        if i % 2:
                            plan.append(part)  # a line break
                            continue
                        lead, core, trail = EDGES_RE.match(part).groups()  # type: ignore[union-attr]
                        if not any(ch.isalpha() for ch in core):
                            plan.append(part)  # empty, numbers, punctuation or placeholders only: kept
                            continue
                        pieces = split_long(core, fits)
                        unique.update(dict.fromkeys(pieces))
                        plan.append((lead, pieces, trail))
                    plans.append(plan)
                order = sorted(unique, key=len, reverse=True)  # similar lengths share a batch
                done: dict[str, str] = {}
                if order:
                    self._load_model()
                    done = dict(zip(order, self._generate(order, setup)))
                out = []
                for plan in plans:
                    out.append("".join(p if isinstance(p, str) else p[0] + " ".join(done[x] for x in p[1]) + p[2]
                                       for p in plan))
                return out
            except (ProviderError, TranslationError):
                raise
            except Exception as exc:
                raise ProviderError(f"hf-mt: {type(exc).__name__}: {exc}", retryable=False) from exc

    def close(self) -> None:
        with self._lock:
            on_gpu = str(getattr(self, "device", "cpu")).startswith("cuda")
            self._model = None
            self._tok = None
            if on_gpu:
                try:
                    import torch

                    torch.cuda.empty_cache()
                except Exception:
                    pass
