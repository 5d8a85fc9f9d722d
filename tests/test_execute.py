"""The cached request executor, on the real tiny model (faults injected around the real hf backend)."""
from __future__ import annotations

import math
import sqlite3

import pytest

from harness.backend import Backend
from harness.pipeline.cache import GENERATIONS, LOGLIKELIHOODS, GenerationCache, cache_key, ll_key
from harness.pipeline.execute import (GENERATE, LOGLIKELIHOOD, Executor, Generate, Loglikelihood, Unsupported,
                                      ask)
from harness.pipeline.models import ModelSpec
from harness.pipeline.pool import model_key
from harness.types import Failed, Sampling

GREEDY = Sampling(max_new_tokens=4)
PROMPTS = ["The cat sat on the", "One two three four five", "Hello", "Paris is the capital of", "A B C D E F G H"]


@pytest.fixture(scope="module")
def hf(tiny_model):
    from harness.backends.hf import HFBackend

    b = HFBackend(ModelSpec(name="tiny", model=str(tiny_model)))
    yield b
    b.close()


@pytest.fixture
def mkey(tiny_model):
    return model_key(ModelSpec(name="tiny", model=str(tiny_model)))


class Recording(Backend):
    """The real hf backend, recording every batch; requests containing ``fail`` raise; ``nan``: a NaN result."""

    name = "recording"
    capabilities = frozenset({"generate", "loglikelihood"})

    def __init__(self, inner, fail: str | None = None, nan: str | None = None, stop_after: int | None = None):
        super().__init__(inner.spec)
        self.inner, self.fail, self.nan, self.stop_after = inner, fail, nan, stop_after
        self.batches: list[list] = []

    def _record(self, items: list) -> None:
        if self.stop_after is not None and len(self.batches) == self.stop_after:
            raise KeyboardInterrupt
        self.batches.append(items)
        if self.fail and any(self.fail in str(i) for i in items):
            raise RuntimeError("injected fault")

    def generate(self, prompts, sampling):
        self._record(list(prompts))
        return self.inner.generate(prompts, sampling)

    def loglikelihood(self, requests):
        self._record(list(requests))
        out = self.inner.loglikelihood(requests)
        return [(math.nan, g) if self.nan and self.nan in c else (lp, g) for (c, _), (lp, g) in zip(requests, out)]


def _rows(cache_path, table: str) -> int:
    con = sqlite3.connect(cache_path)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_dedupe_cache_hits_and_counts(hf, mkey, tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    reqs = [Generate(p, GREEDY) for p in PROMPTS + PROMPTS[:2]]  # two duplicates
    b = Recording(hf)
    ex = Executor(cache, mkey, batch_size=2)
    out = ex.run(ex.lookup(GENERATE, reqs), lambda: b)
    assert out.counts == {"requests": 7, "unique": 5, "cached": 0, "computed": 5, "failed": 0}
    assert sorted(p for batch in b.batches for p in batch) == sorted(PROMPTS)  # each unique prompt asked once
    results = list(out)
    assert results[5] == results[0] and results[6] == results[1]
    assert all(r.error is None and isinstance(r.value, str) and not r.cached for r in results)
    assert [r.value for r in results[:5]] == hf.generate(PROMPTS, GREEDY)  # batching does not change the answers

    opened = []
    again = ex.run(ex.lookup(GENERATE, reqs), lambda: opened.append(1) or b)
    assert not opened, "everything cached: the backend must not be opened"
    assert again.counts == {"requests": 7, "unique": 5, "cached": 5, "computed": 0, "failed": 0}
    assert [r.value for r in again] == [r.value for r in results] and all(r.cached for r in again)
    cache.close()


def test_keys_are_the_on_disk_format(hf, mkey, tmp_path):
    """Caches written before the executor existed stay valid: same keys, same tables, same row layout."""
    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path)
    ex = Executor(cache, mkey, batch_size=8)
    ex.run(ex.lookup(GENERATE, [Generate(PROMPTS[0], GREEDY)]), lambda: hf)
    ex.run(ex.lookup(LOGLIKELIHOOD, [Loglikelihood(PROMPTS[0], " mat")]), lambda: hf)
    cache.close()
    con = sqlite3.connect(path)
    import json

    key, model, sampling, prompt, _ = con.execute("SELECT key, model, sampling, prompt, response FROM generations").fetchone()
    assert key == cache_key(mkey, GREEDY.key(), PROMPTS[0]) and prompt == PROMPTS[0]
    assert json.loads(model) == mkey and json.loads(sampling) == GREEDY.key()
    key, context, cont, lp, greedy = con.execute(
        "SELECT key, context, continuation, logprob, greedy FROM loglikelihoods").fetchone()
    assert key == ll_key(mkey, PROMPTS[0], " mat") and (context, cont) == (PROMPTS[0], " mat")
    assert lp == pytest.approx(hf.loglikelihood([(PROMPTS[0], " mat")])[0][0]) and greedy in (0, 1)
    sql = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type='table'").fetchall())
    assert sql["generations"].endswith("( key TEXT PRIMARY KEY, model TEXT, sampling TEXT, prompt TEXT, response TEXT, "
                                       "created REAL)")
    con.close()


def test_batch_failure_is_retried_one_by_one_and_failures_are_not_cached(hf, mkey, tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    reqs = [Generate(p, GREEDY) for p in PROMPTS]
    b = Recording(hf, fail="Paris")
    ex = Executor(cache, mkey, batch_size=8)
    out = ex.run(ex.lookup(GENERATE, reqs), lambda: b)
    assert [len(x) for x in b.batches] == [5, 1, 1, 1, 1, 1]  # the batch, then each prompt alone
    results = list(out)
    bad = PROMPTS.index("Paris is the capital of")
    assert results[bad].error == "RuntimeError: injected fault" and results[bad].value is None
    assert all(r.error is None for i, r in enumerate(results) if i != bad)
    assert out.counts == {"requests": 5, "unique": 5, "cached": 0, "computed": 4, "failed": 1}
    assert _rows(tmp_path / "c.sqlite", "generations") == 4  # the failure is not cached

    healthy = Recording(hf)  # a re-run asks for exactly the failed request
    out = ex.run(ex.lookup(GENERATE, reqs), lambda: healthy)
    assert healthy.batches == [["Paris is the capital of"]]
    assert out.counts["cached"] == 4 and out.counts["computed"] == 1 and out.counts["failed"] == 0
    cache.close()


def test_a_failed_entry_of_a_successful_batch_is_not_retried(hf, mkey, tmp_path):
    class SaysNo(Recording):
        def generate(self, prompts, sampling):
            out = super().generate(prompts, sampling)
            return [Failed("HTTP 400: rejected") if p == "Hello" else t for p, t in zip(prompts, out)]

    b = SaysNo(hf)
    cache = GenerationCache(tmp_path / "c.sqlite")
    ex = Executor(cache, mkey, batch_size=8)
    results = list(ex.run(ex.lookup(GENERATE, [Generate(p, GREEDY) for p in PROMPTS]), lambda: b))
    assert len(b.batches) == 1
    assert results[PROMPTS.index("Hello")].error == "HTTP 400: rejected"
    assert cache.count(GENERATIONS) == 4
    cache.close()


def test_non_finite_loglikelihood_is_a_failure_and_not_cached(hf, mkey, tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    reqs = [Loglikelihood(c, " the") for c in PROMPTS]
    ex = Executor(cache, mkey, batch_size=2)
    out = ex.run(ex.lookup(LOGLIKELIHOOD, reqs), lambda: Recording(hf, nan="Hello"))
    results = list(out)
    assert results[2].error == "non-finite log-likelihood nan"
    assert all(r.error is None and math.isfinite(r.value[0]) and isinstance(r.value[1], bool)
               for i, r in enumerate(results) if i != 2)
    assert cache.count(LOGLIKELIHOODS) == 4
    expected = hf.loglikelihood([tuple(r) for r in reqs])
    # the same numbers up to float rounding: batch composition changes the order of float operations
    got = [r.value for i, r in enumerate(results) if i != 2]
    want = [e for i, e in enumerate(expected) if i != 2]
    assert [g[1] for g in got] == [w[1] for w in want]
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], rel=1e-5, abs=1e-4)
    cache.close()


def test_resumed_run_batches_like_an_uninterrupted_one(hf, mkey, tmp_path):
    """Batches are cut over all requests, longest first: a resumed run asks exactly the uncommitted batches.

    Log-likelihoods after the same context share a sequence, so a batch holds ``batch_size`` contexts."""
    reqs = [Loglikelihood(f"{'x ' * n}{p}", c) for n, p in enumerate(PROMPTS) for c in (" a", " b")]
    clean = Recording(hf)
    ex = Executor(GenerationCache(tmp_path / "clean.sqlite"), mkey, batch_size=2)
    ex.run(ex.lookup(LOGLIKELIHOOD, reqs), lambda: clean)
    assert [len(x) for x in clean.batches] == [4, 4, 2]
    assert all(len({c for c, _ in batch}) <= 2 for batch in clean.batches)
    lengths = [len(c) for batch in clean.batches for c, _ in batch]
    assert lengths == sorted(lengths, reverse=True)  # longest first

    cache = GenerationCache(tmp_path / "c.sqlite")
    ex = Executor(cache, mkey, batch_size=2)
    with pytest.raises(KeyboardInterrupt):  # killed while the third batch is in flight
        ex.run(ex.lookup(LOGLIKELIHOOD, reqs), lambda: Recording(hf, stop_after=2))
    assert cache.count(LOGLIKELIHOODS) == 8  # two committed batches
    resumed = Recording(hf)
    out = ex.run(ex.lookup(LOGLIKELIHOOD, reqs), lambda: resumed)
    assert resumed.batches == clean.batches[2:]
    assert out.counts == {"requests": 10, "unique": 10, "cached": 8, "computed": 2, "failed": 0}
    cache.close()


def test_sampling_groups_are_batched_apart(hf, mkey, tmp_path):
    hot = Sampling(max_new_tokens=3, temperature=0.7, seed=1)
    reqs = [Generate(p, GREEDY) for p in PROMPTS[:3]] + [Generate(p, hot) for p in PROMPTS[:3]]
    b = Recording(hf)
    ex = Executor(GenerationCache(tmp_path / "c.sqlite"), mkey, batch_size=8)
    out = ex.run(ex.lookup(GENERATE, reqs), lambda: b)
    assert len(b.batches) == 2 and all(len(x) == 3 for x in b.batches)
    assert out.counts["unique"] == 6  # same prompt, other sampling: another request


def test_unsupported_kind_is_skipped_with_the_reason(hf, mkey, tmp_path):
    class GenerateOnly(Backend):
        name = "generate-only"

        def generate(self, prompts, sampling):
            return hf.generate(prompts, sampling)

    ex = Executor(GenerationCache(tmp_path / "c.sqlite"), mkey, batch_size=8)
    out = ex.run(ex.lookup(LOGLIKELIHOOD, [Loglikelihood("a", " b")]), lambda: GenerateOnly(hf.spec))
    assert out.skipped == "backend 'generate-only' does not support loglikelihood"
    assert list(out)[0].error == out.skipped and out.counts["skipped"] == out.skipped

    def refuse():
        raise Unsupported("not here")

    out = ex.run(ex.lookup(LOGLIKELIHOOD, [Loglikelihood("a", " b")]), refuse)
    assert out.skipped == "not here" and out.counts["computed"] == 0


def test_ask_reports_a_wrong_number_of_results(hf):
    class Short(Recording):
        def generate(self, prompts, sampling):
            return super().generate(prompts, sampling)[:1]

    out = ask(GENERATE, Short(hf), [Generate("a", GREEDY), Generate("b", GREEDY)])
    assert isinstance(out[0], str)  # alone, each prompt gets its one answer
    assert ask(GENERATE, Short(hf), [Generate("a", GREEDY)])[0] == hf.generate(["a"], GREEDY)[0]

    class Empty(Recording):
        def generate(self, prompts, sampling):
            return []

    (failed,) = ask(GENERATE, Empty(hf), [Generate("a", GREEDY)])
    assert failed == Failed("RuntimeError: backend returned 0 responses for 1 prompts")


def test_declaring_a_capability_without_its_method_is_a_type_error():
    with pytest.raises(TypeError, match="declares 'loglikelihood' in capabilities but does not implement"):
        class Liar(Backend):
            name = "liar"
            capabilities = frozenset({"generate", "loglikelihood"})

            def generate(self, prompts, sampling):
                return []
    with pytest.raises(TypeError, match="unknown request kind 'embed'"):
        class Odd(Backend):
            name = "odd"
            capabilities = frozenset({"generate", "embed"})

            def generate(self, prompts, sampling):
                return []


def test_after_batch_sees_each_computed_batch_and_run_keys_work_counts_once(hf, mkey, tmp_path):
    """``after_batch`` gets every computed batch with its results (not cached ones); keys computed ahead by
    ``run_keys`` are not asked again by ``run(..., out=)``, and count as computed, not cached."""
    cache = GenerationCache(tmp_path / "c.sqlite")
    ex = Executor(cache, mkey, batch_size=2)
    s = Sampling(max_new_tokens=3)
    seen: list = []
    gen = ex.lookup(GENERATE, [Generate(p, s) for p in PROMPTS])
    out = ex.run(gen, lambda: hf, after_batch=lambda b, reqs, res: seen.append(([r.prompt for r in reqs], res)))
    assert sorted(p for ps, _ in seen for p in ps) == sorted(PROMPTS) and all(len(ps) <= 2 for ps, _ in seen)
    assert {p: r for ps, rs in seen for p, r in zip(ps, rs)} == dict(zip(PROMPTS, (r.value for r in out)))
    seen.clear()
    ex.run(ex.lookup(GENERATE, [Generate(p, s) for p in PROMPTS]), lambda: hf, after_batch=lambda *a: seen.append(a))
    assert not seen  # all cached: nothing computed, nothing to follow

    rec = Recording(hf)
    reqs = [Loglikelihood(p, c) for p in PROMPTS for c in (" a", " b c")]
    job = ex.lookup(LOGLIKELIHOOD, reqs)
    from harness.pipeline.execute import Outcome

    ahead = Outcome(job)
    ex.run_keys(job, rec, job.keys[:4], ahead)  # two contexts' continuations: one batch of two sequences
    assert len(rec.batches) == 1 and ahead.computed == 4
    rest = ex.run(job, lambda: rec, out=ahead)
    assert sorted(r for b in rec.batches for r in b) == sorted(reqs)  # each request asked once
    assert rest.counts["computed"] == len(reqs) and rest.counts["cached"] == 0
    assert all(r.error is None for r in rest)


def test_the_ray_executor_takes_the_runners_keywords_and_refuses_work_alongside(hf, mkey, tmp_path):
    from harness.pipeline.ray_exec import RayExecutor

    ex = RayExecutor(GenerationCache(tmp_path / "c.sqlite"), mkey, batch_size=2)
    job = ex.lookup(GENERATE, [Generate(PROMPTS[0], Sampling(max_new_tokens=2))])
    assert [r.value for r in ex.run(job, lambda: hf, "gen", after_batch=None)] == hf.generate(PROMPTS[:1], Sampling(max_new_tokens=2))
    with pytest.raises(TypeError, match="alongside"):
        ex.run(job, lambda: hf, after_batch=lambda *a: None)
