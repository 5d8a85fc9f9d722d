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

Model families and languages (ISO 639-1 codes such as ``fr``, ``pt-BR``): Marian (opus-mt, one
direction per model, ``>>xx<<`` target tokens for multi-target models), NLLB (FLORES-200 codes) and
M2M100; :mod:`.languages` maps codes and says how each family is asked for a pair.

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
from harness.translators.providers.hf_mt.languages import lang_setup

OPTIONS = ("model", "revision", "device", "batch_size", "num_beams", "max_new_tokens")
_USAGE = ("give a hub ID (--mt-option model=Helsinki-NLP/opus-mt-en-fr) or a local folder with config.json, "
          "weights and tokenizer files (--mt-option model=/path/to/opus-mt-en-fr)")


def _is_local_path(model: str) -> bool:
    return (Path(model).expanduser().exists() or model.startswith((".", "/", "~", "\\"))
            or (os.sep in model and model.count(os.sep) > 1) or bool(re.match(r"^[A-Za-z]:[\\/]", model)))


#: a text's plan: its line breaks and letterless lines as they are, and (lead, pieces, trail) per line to translate
Plan = list[Any]


def plan_lines(texts: Sequence[str], fits) -> tuple[list[Plan], dict[str, None]]:
    """Each text -> lines -> pieces that ``fits`` the model's input; and the distinct pieces, in first-seen order.

    These models treat newlines as spaces, so lines are translated separately and the breaks kept; lines
    without letters (empty, numbers, ``[[0]]`` placeholders) are kept as they are.
    """
    plans: list[Plan] = []
    unique: dict[str, None] = {}
    for text in texts:
        plan: Plan = []
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
    return plans, unique


def assemble(plan: Plan, done: dict[str, str]) -> str:
    """The translated text of one plan, from the translations of its pieces."""
    return "".join(p if isinstance(p, str) else p[0] + " ".join(done[x] for x in p[1]) + p[2] for p in plan)


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
    def _lang_setup(self, source: str, target: str) -> dict[str, Any]:
        """How to ask the model for source -> target; ProviderError (with the reason) when it cannot."""
        self._load_tokenizer()
        return lang_setup(self._family, self._tok, self._config, self.model_ref, self.folder, source, target)

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

                plans, unique = plan_lines(texts, fits)
                order = sorted(unique, key=len, reverse=True)  # similar lengths share a batch
                done: dict[str, str] = {}
                if order:
                    self._load_model()
                    done = dict(zip(order, self._generate(order, setup)))
                return [assemble(plan, done) for plan in plans]
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
