"""hf: Hugging Face transformers, in-process, batched.

* Loads hub IDs, local folders and GGUF files (dequantised once, cached as
  safetensors; see :func:`harness.pipeline.models.gguf_to_folder`).
* Greedy generation through :mod:`harness.backends.hf_decode` (packed
  prefills, one large decode batch, in-place key/value buffers); sampled
  generation, and ``decode=generate``, through ``transformers``' batched
  ``generate`` with left padding. Stop strings, dtype and thread count.
* ``loglikelihood`` of continuations after each context's prefill (kept from
  generation, or made as generation makes them), computing the LM head only
  at the continuation positions (Gemma's vocabulary has 262k entries).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.backend import Backend
from harness.errors import ModelLoadError
from harness.pipeline.models import ModelSpec, hub_commit, local_folder
from harness.backends import hf_decode, hf_loglik, hf_matmul
from harness.backends.hf_head import GreedyHead
from harness.backends.prefix import DEFAULT_PREFIX_CACHE_MB, PrefixStore, keep_prefills
from harness.backends.prompting import PromptEncoder, decide_bos, truncate_at_stop
from harness.types import Sampling


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}[name]


_TOKENIZERS: dict[tuple, object] = {}  # a pair of one base (pretrained, fine-tuned) loads it once


def _tokenizer(folder: str, kw: dict):
    """The tokenizer of ``folder`` (at ``kw['revision']``), loaded once per process: Gemma's takes seconds."""
    from transformers import AutoTokenizer

    files = sorted(Path(folder).glob("*token*")) if Path(folder).is_dir() else []  # a rewritten folder reloads
    key = (str(folder), str(kw.get("revision", "")), *((f.name, f.stat().st_mtime_ns) for f in files))
    if key not in _TOKENIZERS:
        if len(_TOKENIZERS) >= 4:
            _TOKENIZERS.pop(next(iter(_TOKENIZERS)))
        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(folder, **kw)
    return _TOKENIZERS[key]


def load_hf(spec: ModelSpec, threads: int | None = None, device: str | None = None):
    """Load (tokenizer, model in eval mode, add_bos) for ``spec``: hub ID, folder, GGUF or package."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    folder, meta = local_folder(spec)
    kw = {}
    if spec.source_kind == "hub":  # pin the commit the cache key was computed for
        kw["revision"] = hub_commit(spec)
    try:
        tok = _tokenizer(folder, kw)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=_dtype(spec.dtype), **kw)
    except OSError as exc:
        raise ModelLoadError(f"could not load model {spec.name!r} from {spec.model}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        raise ModelLoadError(f"could not load model {spec.name!r} from {spec.model}: {type(exc).__name__}: {exc}") from None
    if spec.adapter:
        from peft import PeftModel

        from harness.pipeline.models import adapter_folder

        try:
            model = PeftModel.from_pretrained(model, str(adapter_folder(spec))).merge_and_unload()
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"model {spec.name!r}: could not apply adapter {spec.adapter}: {type(exc).__name__}: {exc}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return tok, model, decide_bos(tok, spec.bos, meta)


class HFBackend(Backend):
    """Hugging Face transformers (hub IDs, local folders, GGUF files); batched, CPU or GPU."""

    name = "hf"
    capabilities = frozenset({"generate", "loglikelihood"})

    #: ``prefix_cache_mb``: memory for prompt prefills kept for the log-likelihoods that follow (0: off);
    #: it changes speed, and outputs only by float rounding, so results are cached alike.
    #: ``decode``: ``fast`` (default: greedy generation and log-likelihood contexts go through
    #: :mod:`harness.backends.hf_decode`) or ``generate`` (transformers' ``generate``, and one padded forward pass
    #: per log-likelihood batch: the path before it); the same arithmetic in another batch layout, so outputs agree
    #: up to float rounding (bench/suite.py counts them) and results are cached alike.
    #: ``head``: ``auto`` (default: on a CPU with AMX/avx512_bf16, greedy decoding finds the fp32 argmax of an fp32
    #: model's LM head from bf16 logits and an fp32 rescoring of the tokens near the top,
    #: :mod:`harness.backends.hf_head`) or ``fp32`` (always the full fp32 LM head); outputs agree up to fp32 rounding
    #: ``fp32_matmul``: ``auto`` (default: an fp32 model's matrix products on a CPU whose oneDNN computes them to fp32
    #: accuracy at bf16 speed go that way, :mod:`harness.backends.hf_matmul`; the mode joins the cache key through
    #: :meth:`numerics`) or ``ieee`` (always IEEE fp32)
    runtime_options = frozenset({"prefix_cache_mb", "decode", "head", "fp32_matmul"})
    default_batch_size = 128  # prompts per call: the decode batch (the LM head runs far better on 128 rows than 32)

    @classmethod
    def batch_order(cls, spec: ModelSpec) -> str:
        """The greedy decoder prefills a prefix shared by prompts of one call once: batch them by text."""
        return "prefix" if spec.options.get("decode", "fast") == "fast" else "length"

    @classmethod
    def validate(cls, spec: ModelSpec) -> None:
        """An unknown option (a typo, or meant for vllm/openai) would be ignored, so it is an error."""
        from harness.errors import ConfigError

        unknown = sorted(set(spec.options) - cls.runtime_options)
        if unknown:
            raise ConfigError(f"model {spec.name!r}: unknown hf backend option(s) {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(cls.runtime_options))}); other --backend-option keys are for "
                              f"--backend vllm or openai (see `conjugate run --help`)")
        mb = spec.options.get("prefix_cache_mb")
        if mb is not None:
            try:
                if float(mb) < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise ConfigError(f"model {spec.name!r}: prefix_cache_mb must be a number of MB >= 0 (0: off), "
                                  f"got {mb!r}") from None
        if spec.options.get("decode", "fast") not in ("fast", "generate"):
            raise ConfigError(f"model {spec.name!r}: decode must be 'fast' or 'generate', "
                              f"got {spec.options['decode']!r}")
        if spec.options.get("head", "auto") not in ("auto", "fp32"):
            raise ConfigError(f"model {spec.name!r}: head must be 'auto' or 'fp32', got {spec.options['head']!r}")
        if spec.options.get("fp32_matmul", "auto") not in hf_matmul.MODES:
            raise ConfigError(f"model {spec.name!r}: fp32_matmul must be 'auto' or 'ieee', "
                              f"got {spec.options['fp32_matmul']!r}")

    @classmethod
    def numerics(cls, spec: ModelSpec) -> dict:
        """``{"fp32_matmul": "bf16"}`` where this machine runs the model's fp32 matrix products in oneDNN's bf16 mode."""
        mode = hf_matmul.resolve(spec.options.get("fp32_matmul", "auto"), spec.dtype)
        return {"fp32_matmul": mode} if mode != "ieee" else {}

    def __init__(self, spec: ModelSpec, threads: int | None = None, device: str | None = None, **options) -> None:
        super().__init__(spec, **options)
        self.tok, self.model, self.add_bos = load_hf(spec, threads=threads, device=device)
        self.device = self.model.device
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.encoder = PromptEncoder(self.tok, spec, self.add_bos)
        self.prefix = PrefixStore(float(spec.options.get("prefix_cache_mb", DEFAULT_PREFIX_CACHE_MB)))
        self.decode_mode = spec.options.get("decode", "fast")
        self.decoded = {"fast": 0, "generate": 0}  # prompts per decoding path, for describe()
        self.prefill_stats: dict[str, int] = {}  # prompt tokens prefilled / computed (shared prefixes once)
        self.head = GreedyHead(self.model, spec.options.get("head", "auto"))
        self.matmul = hf_matmul.resolve(spec.options.get("fp32_matmul", "auto"), spec.dtype, self.device.type)

    # -- tokenisation ------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        return self.encoder.encode(prompt)

    def _left_pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    # -- generation --------------------------------------------------------------
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        with hf_matmul.precision(self.matmul):
            return self._generate(prompts, sampling)

    def _generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if not prompts:
            return []
        seqs = [self.encode(p) for p in prompts]
        if self._fast(seqs, sampling):
            return self._generate_fast(seqs, sampling)
        self.decoded["generate"] += len(seqs)
        ids, mask = self._left_pad(seqs)
        width = ids.shape[1]
        kw: dict = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": self.pad_id}
        if sampling.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            torch.manual_seed(sampling.seed)
            kw.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
        tok, stops = self.tok, sampling.stop

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **_):
                tails = tok.batch_decode(input_ids[:, width:], skip_special_tokens=True)
                return torch.tensor([any(s in t for s in stops) for t in tails], device=input_ids.device)

        if stops:
            kw["stopping_criteria"] = StoppingCriteriaList([_Stop()])
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **kw)
        keep_prefills(self.prefix, out.past_key_values, seqs, width)  # for the probe's continuations of these prompts
        texts = self.tok.batch_decode(out.sequences[:, width:], skip_special_tokens=True)
        return [truncate_at_stop(t, stops) for t in texts]

    def _fast(self, seqs: list[list[int]], sampling: Sampling) -> bool:
        """Whether :mod:`harness.backends.hf_decode` decodes this call exactly as ``generate`` would."""
        limit = hf_decode.window_limit(self.model)
        return (self.decode_mode == "fast" and sampling.greedy and all(seqs)
                and hf_decode.plain_greedy_config(self.model)
                and (limit is None or max(map(len, seqs)) + sampling.max_new_tokens <= limit))

    def _generate_fast(self, seqs: list[list[int]], sampling: Sampling) -> list[str]:
        tok, stops = self.tok, sampling.stop

        def stopped(tokens: list[int]) -> bool:
            return bool(stops) and any(s in tok.decode(tokens, skip_special_tokens=True) for s in stops)

        out = hf_decode.greedy(self.model, seqs, sampling.max_new_tokens, self.prefix, self.pad_id, stopped,
                               self.prefill_stats, self.head)
        self.decoded["fast"] += len(seqs)
        return [truncate_at_stop(t, stops) for t in self.tok.batch_decode(out, skip_special_tokens=True)]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Each context's prefill, then its last token and the continuation after it; the LM head runs only where a
        continuation token is predicted. A context just generated from has its prefill kept
        (:mod:`harness.backends.prefix`); the others are prefilled as generation prefills prompts (packed, shared
        prefixes once: :func:`harness.backends.hf_decode.prefill`). With ``decode=generate``, and for contexts
        past a sliding window, one right-padded forward pass over context and continuation, as lm-eval's hf model."""
        if not requests:
            return []
        with hf_matmul.precision(self.matmul):
            return self._loglikelihood(requests)

    def _loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        pairs = [self._split(c, t) for c, t in requests]
        found = [self.prefix.get(ctx) if self.prefix.items else None for ctx, _ in pairs]
        limit = hf_decode.window_limit(self.model)
        fresh = [i for i, f in enumerate(found) if f is None and self.decode_mode == "fast"
                 and (limit is None or len(pairs[i][0]) + len(pairs[i][1]) <= limit)]
        if fresh:
            made = hf_decode.prefill(self.model, [pairs[i][0] for i in fresh], self.prefix, self.pad_id, self.prefill_stats)
            for i, p in zip(fresh, made):
                found[i] = p
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        miss = [i for i, f in enumerate(found) if f is None]
        if miss:
            for i, r in zip(miss, hf_loglik.full(self.model, [pairs[i] for i in miss], self.pad_id, self._logits)):
                results[i] = r
        hit = [i for i, f in enumerate(found) if f is not None]
        if hit:
            for i, r in zip(hit, hf_loglik.after_prefills(self.model, [pairs[i] for i in hit], [found[i] for i in hit],
                                                          self.pad_id, self._logits)):
                results[i] = r
        return results  # type: ignore[return-value]

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token IDs of context and continuation; an empty context is the BOS (or EOS) token, as in lm-eval."""
        ctx, cont = self.encoder.split(context, continuation)
        if not ctx:
            ctx = [self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id]
        if not cont:
            raise ValueError(f"continuation {continuation!r} has no tokens")
        return ctx, cont

    def _logits(self, h):
        import torch

        logits = self.model.lm_head(h).float()
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / softcap) * softcap if softcap else logits

    def describe(self) -> dict:
        return {**super().describe(), "dtype": str(self.model.dtype).replace("torch.", ""), **self.prefix.describe(),
                "decode": self.decode_mode, "decoded_prompts": dict(self.decoded),
                "greedy_head": {"kind": self.head.kind, **self.head.stats}, "fp32_matmul": self.matmul,
                "prefill_tokens": {"prompt": self.prefill_stats.get("prompt_tokens", 0),
                                   "computed": self.prefill_stats.get("computed_tokens", 0)}}

    def close(self) -> None:
        import gc

        self.prefix.clear()
        self.model = None
        gc.collect()

