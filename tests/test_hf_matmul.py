"""fp32 matrix products in oneDNN's bf16 mode where it is as accurate as fp32 (harness.backends.hf_matmul)."""
from __future__ import annotations

import pytest

from harness.backends import hf_matmul
from harness.backends.hf import HFBackend
from harness.errors import ConfigError
from harness.pipeline.models import ModelSpec
from harness.pipeline.pool import model_key
from harness.types import Sampling

PROMPTS = ["Input: a cat\nOutput:", "What is 5 plus 3?", "x", "Translate to French: the house is small."] * 3
fast_here = hf_matmul.resolve("auto", "float32", "cpu") == "bf16"


def test_calibration_measures_both_modes_and_auto_takes_only_an_fp32_accurate_one():
    err = hf_matmul.calibrate()
    assert 0 < err["ieee"] < 1e-3  # a 640-long product of N(0,1) entries: fp32 rounding, about 1e-4
    assert hf_matmul.resolve("auto", "float32", "cpu") == (
        "bf16" if err["bf16"] <= hf_matmul.TOLERANCE * err["ieee"] else "ieee")
    # never for IEEE requested, other dtypes, or GPUs
    assert hf_matmul.resolve("ieee", "float32", "cpu") == "ieee"
    assert hf_matmul.resolve("auto", "bfloat16", "cpu") == "ieee"
    assert hf_matmul.resolve("auto", "float32", "cuda") == "ieee"


def test_plain_bf16_inputs_would_fail_the_calibration():
    """The tolerance separates the two kinds of implementation: rounding the inputs to bf16 is ~1000x fp32's error."""
    import torch

    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(256, 640, generator=g), torch.randn(1024, 640, generator=g)
    exact = a.double() @ w.double().T
    plain = float((a.bfloat16().float() @ w.bfloat16().float().T).double().sub(exact).abs().max())
    assert plain > 100 * hf_matmul.TOLERANCE * hf_matmul.calibrate()["ieee"]


def test_the_mode_is_set_inside_the_block_and_restored_after():
    import torch

    if not hf_matmul.available():
        pytest.skip("this torch has no oneDNN matmul precision flag")
    flags = torch.backends.mkldnn.matmul
    before = flags.fp32_precision
    with hf_matmul.precision("bf16"):
        assert flags.fp32_precision == "bf16"
        with hf_matmul.precision("ieee"):
            assert flags.fp32_precision == "ieee"
        assert flags.fp32_precision == "bf16"
    assert flags.fp32_precision == before
    with pytest.raises(RuntimeError), hf_matmul.precision("bf16"):
        raise RuntimeError("a failing call")
    assert flags.fp32_precision == before


def test_the_option_is_validated_and_the_mode_joins_the_cache_key_only_when_used(tiny_model):
    with pytest.raises(ConfigError, match="fp32_matmul must be 'auto' or 'ieee'"):
        HFBackend.validate(ModelSpec(name="m", model="x", options={"fp32_matmul": "fast"}))
    m = str(tiny_model)
    ieee = model_key(ModelSpec(name="m", model=m, options={"fp32_matmul": "ieee"}))
    plain_bf16_model = model_key(ModelSpec(name="m", model=m, dtype="bfloat16"))
    auto = model_key(ModelSpec(name="m", model=m))
    assert "numerics" not in ieee and "numerics" not in plain_bf16_model
    assert ieee["options"] == {}  # an IEEE run keys as runs did before the option existed
    assert auto.get("numerics") == ({"fp32_matmul": "bf16"} if fast_here else None)
    assert (auto == ieee) != fast_here


def test_generations_and_loglikelihoods_agree_with_ieee_and_the_manifest_says_which(tiny_model):
    """On a machine where auto takes the bf16 mode, the tiny model's outputs match IEEE fp32's (elsewhere both are
    IEEE and this only checks the manifest)."""
    auto = HFBackend(ModelSpec(name="m", model=str(tiny_model)))
    ieee = HFBackend(ModelSpec(name="m", model=str(tiny_model), options={"fp32_matmul": "ieee"}))
    s = Sampling(max_new_tokens=12)
    assert auto.generate(PROMPTS, s) == ieee.generate(PROMPTS, s)
    pairs = [(p, " yes") for p in PROMPTS[:4]] + [(p, " no, it is not") for p in PROMPTS[:4]]
    for (a, _), (b, _) in zip(auto.loglikelihood(pairs), ieee.loglikelihood(pairs)):
        assert abs(a - b) < 1e-3
    assert auto.describe()["fp32_matmul"] == ("bf16" if fast_here else "ieee")
    assert ieee.describe()["fp32_matmul"] == "ieee"
