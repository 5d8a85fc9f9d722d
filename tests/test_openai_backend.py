"""The openai backend's HTTP logic against a local fake OpenAI server (tests/fixtures/openai_fake.py).

Retries, Retry-After, timeouts, final errors, the circuit breaker, bounded
concurrency, request shapes and the runner; the API key is in
test_openai_keys.py, options and the cache key in test_openai_options.py, a
fleet of servers in test_openai_endpoints.py. The real ``vllm serve`` is
exercised in test_openai_vllm_serve.py.
"""
from __future__ import annotations

import json
import time

import pytest

from harness.backend import Failed
from harness.backends.openai import OpenAIBackend, _retry_after
from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import ModelSpec
from harness.types import ERROR, Sampling
from tests.fixtures.openai_fake import GREEDY, HOSTED, FakeOpenAI, Reply, error, prompt_of, spec

pytest_plugins = ["tests.fixtures.openai_fake"]  # the fixtures fake, backends, no_ambient_openai_key
pytestmark = pytest.mark.usefixtures("no_ambient_openai_key")


# -- 1-4: retries, Retry-After, timeouts, errors that are final ------------------------------------

def test_429_with_retry_after_then_success(fake, backends):
    fake.script = [error(429, "rate limited", Retry_After="0.2")]
    b = backends(spec(fake.url, backoff=0.0))  # no backoff of its own: any wait is the Retry-After
    t = time.monotonic()
    out = b.generate(["hi"], GREEDY)
    elapsed = time.monotonic() - t
    assert out == ["echo:hi"]  # truncated at the stop string client-side
    assert len(fake.posts) == 2
    assert fake.posts[0]["body"] == fake.posts[1]["body"]  # the same request again
    assert elapsed >= 0.2, f"Retry-After not honoured ({elapsed:.3f} s)"


def test_retry_after_values():
    assert _retry_after("0.2") == pytest.approx(0.2)
    assert _retry_after("3600") == 60.0  # capped
    assert _retry_after("-5") == 0.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("nan") is None and _retry_after("inf") is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= _retry_after(http_date) <= 31


def test_500_then_success(fake, backends):
    fake.script = [error(500, "boom")]
    assert backends(spec(fake.url)).generate(["a"], GREEDY) == ["echo:a"]
    assert [r["path"] for r in fake.posts] == ["/v1/completions"] * 2


def test_503_until_retries_run_out_is_failed_with_status_message_and_attempts(fake, backends):
    fake.script = [error(503, "overloaded")] * 3
    out = backends(spec(fake.url, max_retries=2)).generate(["x"], GREEDY)
    assert len(out) == 1 and isinstance(out[0], Failed)
    reason = out[0].reason
    assert "HTTP 503" in reason and "overloaded" in reason and "3 attempts" in reason, reason
    assert len(fake.posts) == 3  # max_retries + 1


def test_exhausted_retries_for_several_prompts(fake, backends):
    fake.script = [error(502, "bad gateway")] * 6
    out = backends(spec(fake.url, max_retries="2", concurrency="2")).generate(["x", "y"], GREEDY)
    assert all(isinstance(o, Failed) and "HTTP 502" in o.reason and "bad gateway" in o.reason for o in out)
    assert len(fake.posts) == 6


def test_request_timeout_then_success(fake, backends):
    fake.script = [Reply(delay=1.5)]  # answers long after the client's timeout
    b = backends(spec(fake.url, timeout=0.3))
    t = time.monotonic()
    assert b.generate(["slow"], GREEDY) == ["echo:slow"]
    elapsed = time.monotonic() - t
    assert len(fake.posts) == 2
    assert 0.3 <= elapsed < 1.4, f"the late answer was waited for ({elapsed:.2f} s)"


def test_timeouts_until_retries_run_out(fake, backends):
    fake.script = [Reply(delay=0.6), Reply(delay=0.6)]
    out = backends(spec(fake.url, timeout=0.2, max_retries=1)).generate(["slow"], GREEDY)
    assert isinstance(out[0], Failed) and "no answer within 0.2 s" in out[0].reason and "2 attempts" in out[0].reason


def test_400_fails_at_once_with_the_servers_message(fake, backends):
    fake.script = [error(400, "This model's maximum context length is 2048 tokens")]
    out = backends(spec(fake.url, max_retries=5)).generate(["long"], GREEDY)
    assert isinstance(out[0], Failed)
    assert "HTTP 400" in out[0].reason and "maximum context length is 2048" in out[0].reason
    assert len(fake.posts) == 1  # not retried


def test_plain_text_error_body_is_kept(fake, backends):
    fake.script = [Reply(404, "model not found here")]
    out = backends(spec(fake.url)).generate(["x"], GREEDY)
    assert isinstance(out[0], Failed) and "HTTP 404" in out[0].reason and "model not found here" in out[0].reason
    assert len(fake.posts) == 1


def test_one_failure_does_not_spoil_the_batch(fake, backends):
    fake.script = [error(422, "bad request")]
    out = backends(spec(fake.url, concurrency=1)).generate(["p0", "p1", "p2"], GREEDY)
    assert isinstance(out[0], Failed) and out[1:] == ["echo:p1", "echo:p2"]


def test_malformed_response_is_failed(fake, backends):
    b = backends(spec(fake.url))
    fake.script = [Reply(200, {"not": "a completion"})]
    out = b.generate(["x"], GREEDY)
    assert isinstance(out[0], Failed) and "malformed response" in out[0].reason


# -- 5: the server is not there, or goes away ------------------------------------------------------

def test_unreachable_at_start_is_one_clear_error():
    from harness.backends.server import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(ModelLoadError) as e:
        OpenAIBackend(spec(url))
    msg = str(e.value)
    assert "\n" not in msg.strip(), msg
    assert url in msg and "unreachable" in msg and "--server auto" in msg


def test_breaker_fails_fast_when_the_server_dies(backends):
    f = FakeOpenAI()
    try:
        # without the breaker: ~sum(min(30, 2**k)) / 2 s of jittered backoff per prompt (about 30 s each)
        b = backends(spec(f.url, max_retries=6, backoff=1.0, concurrency=8))
    finally:
        f.stop()
    t = time.monotonic()
    out = b.generate([f"p{i}" for i in range(40)], GREEDY)
    elapsed = time.monotonic() - t
    assert len(out) == 40
    assert all(isinstance(o, Failed) and ("server unreachable" in o.reason or "connection error" in o.reason)
               for o in out), out[:3]
    assert sum("server unreachable" in o.reason for o in out) >= 32  # all but the first in-flight ones
    assert elapsed < 5.0, f"breaker took {elapsed:.1f} s"
    assert f.url in out[-1].reason  # says where it looked


def test_breaker_probes_later_batches_and_recovers_when_the_server_is_back(backends):
    f = FakeOpenAI()
    port = f.port
    b = backends(spec(f.url, max_retries=8, backoff=1.0, concurrency=4))
    assert b.generate(["a"], GREEDY) == ["echo:a"]
    f.stop()
    t = time.monotonic()
    out = b.generate([f"p{i}" for i in range(30)], GREEDY)
    assert all(isinstance(o, Failed) and "server unreachable" in o.reason for o in out), out[:3]
    assert time.monotonic() - t < 5.0
    t = time.monotonic()
    out = b.generate(["q0", "q1"], GREEDY)  # a later batch: one probe, no retries
    assert all(isinstance(o, Failed) and "server unreachable" in o.reason for o in out)
    assert time.monotonic() - t < 1.0
    g = FakeOpenAI(port=port)  # the server is back on the same address
    try:
        assert b.generate(["r"], GREEDY) == ["echo:r"]
        assert [r["path"] for r in g.requests] == ["/v1/models", "/v1/completions"]  # the probe, then the request
    finally:
        g.stop()


# -- 6: bounded concurrency --------------------------------------------------------------------------

def test_concurrency_is_bounded_and_order_kept(backends):
    f = FakeOpenAI(delay=0.1)
    try:
        prompts = [f"prompt number {i}" for i in range(12)]
        t = time.monotonic()
        out = backends(spec(f.url, concurrency=3)).generate(prompts, GREEDY)
        elapsed = time.monotonic() - t
        assert out == [f"echo:{p}" for p in prompts]  # in prompt order, whatever order they finished in
        assert 1 < f.max_inflight <= 3, f.max_inflight
        assert sorted(prompt_of(r["body"]) for r in f.posts) == sorted(prompts)  # each asked once
        assert elapsed < 12 * 0.1  # in parallel, not one by one
    finally:
        f.stop()


# -- 8: request shapes ---------------------------------------------------------------------------------

def test_completions_request_shape(fake, backends):
    b = backends(spec(fake.url))
    b.generate(["hello"], Sampling(max_new_tokens=5, stop=("\n", "Q:")))
    b.generate(["hello"], Sampling(max_new_tokens=5, temperature=0.7, top_p=0.9, seed=3))
    greedy, sampled = (r["body"] for r in fake.posts)
    assert [r["path"] for r in fake.posts] == ["/v1/completions"] * 2
    assert fake.posts[0]["headers"]["Content-Type"] == "application/json"
    assert greedy == {"model": HOSTED, "prompt": "hello", "max_tokens": 5, "temperature": 0.0, "stop": ["\n", "Q:"]}
    assert sampled == {"model": HOSTED, "prompt": "hello", "max_tokens": 5, "temperature": 0.7, "top_p": 0.9,
                       "seed": 3}


def test_chat_request_shape_and_client_side_stop(fake, backends):
    b = backends(spec(fake.url, endpoint="chat", served_model="provider/served-name"))
    fake.script = [Reply(text="abc\ndef")]
    assert b.generate(["hello"], Sampling(max_new_tokens=7, stop=("\n",))) == ["abc"]  # stop applied here too
    r = fake.posts[0]
    assert r["path"] == "/v1/chat/completions"
    assert r["body"] == {"model": "provider/served-name", "messages": [{"role": "user", "content": "hello"}],
                         "max_tokens": 7, "temperature": 0.0, "stop": ["\n"]}
    assert b.describe()["endpoint"] == "chat" and b.describe()["token_prompts"] is False


def test_chat_sampled_request_and_empty_content(fake, backends):
    b = backends(spec(fake.url, endpoint="chat"))
    fake.script = [Reply(body={"choices": [{"message": {"role": "assistant", "content": None}}]})]
    assert b.generate(["hi"], Sampling(max_new_tokens=3, temperature=1.0, top_p=0.5, seed=7)) == [""]
    body = fake.posts[0]["body"]
    assert body["model"] == HOSTED and body["temperature"] == 1.0 and body["top_p"] == 0.5 and body["seed"] == 7
    assert "stop" not in body


def test_local_model_gets_token_ids_and_the_served_name(fake, backends, tiny_model):
    from transformers import AutoTokenizer

    from harness.backends.prompting import PromptEncoder

    ms = ModelSpec(name="t", model=str(tiny_model), backend="openai", bos="always", options={"base_url": fake.url})
    b = backends(ms)
    b.generate(["The capital of France is"], GREEDY)
    body = fake.posts[0]["body"]
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    assert body["prompt"] == PromptEncoder(tok, ms, True).encode("The capital of France is")
    assert body["prompt"][0] == tok.bos_token_id
    assert body["model"] == HOSTED  # the one model the server lists
    assert b.describe()["token_prompts"] is True


def test_local_model_with_adapter_picks_the_lora_module(backends, tiny_model, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    f = FakeOpenAI(models=[{"id": "base", "parent": None}, {"id": "my-lora", "parent": "base"}])
    try:
        ms = ModelSpec(name="t", model=str(tiny_model), adapter=str(tmp_path), backend="openai",
                       options={"base_url": f.url})
        assert backends(ms).served_model == "my-lora"
        f.models.append({"id": "other-lora", "parent": "base"})
        with pytest.raises(ConfigError, match="served_model"):
            OpenAIBackend(ms)
    finally:
        f.stop()


def test_describe(fake, backends):
    d = backends(spec(fake.url, endpoint="chat", concurrency=3, timeout=5)).describe()
    assert d["backend"] == "openai" and d["endpoint"] == "chat" and d["base_url"] == fake.url
    assert d["server"] == {"kind": "external"} and d["served_model"] == HOSTED
    assert d["concurrency"] == 3 and d["timeout"] == 5.0
    json.dumps(d)


# -- 11: through the runner ---------------------------------------------------------------------------

def test_run_records_failed_requests_as_errors_and_a_rerun_generates_only_those(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness.pipeline.runner import plan, run
    from harness.pipeline.spec import RunSpec

    pre = spec(fake.url, name="api", max_retries=0)
    ft = spec(fake.url, name="api-ft", served_model=f"{HOSTED}-ft", max_retries=0)  # its own cache key

    def runspec(run_id: str) -> RunSpec:
        return RunSpec(pretrained=pre, finetuned=ft, tasks=["icl_vs_if"], transforms=["identity"], limit=4,
                       out=str(tmp_path / "res"), run_id=run_id, cache=str(tmp_path / "c.sqlite"))

    prompts = sorted({s.transformed_prompt for s in plan(runspec("r1")).samples})
    assert len(prompts) == 4
    bad = set(prompts[:2])  # the pretrained model's server rejects these two

    def responder(body: dict) -> Reply | None:
        if body["model"] == HOSTED and body["prompt"] in bad:
            return error(400, "prompt rejected by the provider")
        return None

    fake.responder = responder
    run_dir = run(runspec("r1"), progress=False)
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    for r in rows:
        if r["model"] == "pretrained" and r["transformed_prompt"] in bad:
            assert r["outcome"] == ERROR and r["response"] is None
            assert "HTTP 400" in r["error"] and "prompt rejected by the provider" in r["error"], r["error"]
        else:
            assert r["error"] is None and r["outcome"] != ERROR, r
            assert r["response"] == f"echo:{r['transformed_prompt']}\nsecond line" and r["cached"] is False
    manifest = json.loads((run_dir / "manifest.json").read_text())
    gen = manifest["generation"]
    assert (gen["pretrained"]["generated"], gen["pretrained"]["failed"]) == (2, 2)
    assert (gen["finetuned"]["generated"], gen["finetuned"]["failed"]) == (4, 0)
    assert manifest["backends"]["pretrained"]["server"] == {"kind": "external"}
    assert manifest["models"]["pretrained"]["identity"] == f"api:{HOSTED}"
    assert len(fake.posts) == 8  # generations only: the class declares no log-likelihoods, the probe asks nothing
    assert OpenAIBackend.capabilities == {"generate"}
    assert manifest["probe"]["pretrained"]["skipped"] == "backend 'openai' does not support loglikelihood"

    # the provider is fine again: a re-run asks only for what failed
    fake.responder = None
    fake.requests.clear()
    run_dir = run(runspec("r2"), progress=False)
    assert sorted(r["body"]["prompt"] for r in fake.posts) == sorted(bad)
    assert {r["body"]["model"] for r in fake.posts} == {HOSTED}
    gen = json.loads((run_dir / "manifest.json").read_text())["generation"]
    assert (gen["pretrained"]["cached"], gen["pretrained"]["generated"], gen["pretrained"]["failed"]) == (2, 2, 0)
    assert (gen["finetuned"]["cached"], gen["finetuned"]["generated"], gen["finetuned"]["failed"]) == (4, 0, 0)
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(r["error"] is None and r["outcome"] != ERROR for r in rows)
    assert sum(r["cached"] for r in rows) == 6


def test_local_model_with_a_name_the_server_does_not_serve(fake, tiny_model):
    ms = ModelSpec(name="t", model=str(tiny_model), backend="openai",
                   options={"base_url": fake.url, "served_model": "some-hosted-modle"})
    with pytest.raises(ConfigError, match=f"does not serve 'some-hosted-modle'. Did you mean '{HOSTED}'"):
        OpenAIBackend(ms)
    assert not any(r["method"] == "POST" for r in fake.requests)


def test_base_url_without_v1_gets_a_hint(fake):
    with pytest.raises(ConfigError, match=r"give --server http://127\.0\.0\.1:\d+/v1"):
        OpenAIBackend(spec(fake.url[: -len("/v1")]))
