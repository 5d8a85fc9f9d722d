"""Log-likelihoods after kept prefills (harness/backends/hf_loglik.py): shared rows, one LM-head row per distinct
position, buckets of one input length, and the same numbers as one full forward pass."""
from __future__ import annotations

import pytest

from harness.backends import hf_loglik
from harness.backends.hf import HFBackend
from harness.pipeline.models import ModelSpec
from harness.types import Sampling


def test_requests_whose_inputs_begin_one_another_after_one_context_share_a_row():
    a, b = [1, 2, 3], [4, 5]
    pairs = [(a, [7]), (a, [8]), (a, [7, 9, 10]), (a, [8, 9]), (b, [7]), (a, [7, 9])]
    rows, row_of = hf_loglik.shared_rows(pairs)
    # inputs: (3,) (3,) (3,7,9) (3,8) (5,) (3,7): (3,7,9) holds (3,7) and (3,); (3,8) has a row of its own
    assert sorted(x for _, x in rows) == [(3, 7, 9), (3, 8), (5,)]
    assert row_of[0] == row_of[1] == row_of[2] == row_of[5] != row_of[3]
    assert rows[row_of[4]] == (4, (5,))  # another context never shares
    assert all(pairs[i][0] == pairs[rows[row_of[i]][0]][0] for i in range(len(pairs)))


def test_after_prefills_agrees_with_the_full_pass_and_runs_the_head_once_per_position(tiny_model, monkeypatch):
    prompts = ["Capitalize every word.\n\nInput: the cat sat\nOutput:", "What is 5 plus 3?",
               "A longer prompt, with more words than the others have.\nOutput:"]
    conts = [" A", " 8", " A DOG RAN", " A DOG", " eight", " no no no no no", " a"]
    reqs = [(p, c) for p in prompts for c in conts]
    b = HFBackend(ModelSpec(name="tiny", model=str(tiny_model)))
    ref = HFBackend(ModelSpec(name="tiny", model=str(tiny_model), options={"decode": "generate"}))
    try:
        full = ref.loglikelihood(reqs)
        b.generate(prompts, Sampling(max_new_tokens=2))
        head_rows, calls = [], []
        real = hf_loglik.continue_batch

        def counting(model, prefills, inputs, pad_id, cache_out=None):
            calls.append([len(x) for x in inputs])
            return real(model, prefills, inputs, pad_id, cache_out)

        monkeypatch.setattr(hf_loglik, "continue_batch", counting)
        logits = b._logits
        monkeypatch.setattr(b, "_logits", lambda h: head_rows.append(h.shape[0]) or logits(h))
        got = b.loglikelihood(reqs)
        assert b.prefix.hits == len(reqs) and b.prefix.misses == 0
        assert max(abs(x - y) for (x, _), (y, _) in zip(full, got)) < 1e-4
        assert [g for _, g in got] == [g for _, g in full]
        assert all(len(set(widths)) == 1 for widths in calls)  # no padded positions
        split = [b._split(c, t) for c, t in reqs]
        distinct = {(tuple(ctx), tuple(ctx[-1:] + cont[: j])) for ctx, cont in split for j in range(len(cont))}
        assert sum(head_rows) == len(distinct) < sum(len(cont) for _, cont in split)
    finally:
        b.close()
        ref.close()


def test_score_picks_each_token_from_its_row():
    import torch

    h = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    logits = lambda x: x @ torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])  # noqa: E731
    lp = torch.log_softmax(logits(h), -1)
    out = hf_loglik.score(h, [[0, 1], [0], [1]], [[1, 0], [2], [1]], logits)
    assert out[0][0] == pytest.approx(lp[0, 1].item() + lp[1, 0].item()) and out[0][1] is True
    assert out[1][0] == pytest.approx(lp[0, 2].item()) and out[1][1] is False
    assert out[2][0] == pytest.approx(lp[1, 1].item()) and out[2][1] is False
