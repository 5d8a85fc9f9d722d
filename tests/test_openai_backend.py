"""The openai backend's HTTP logic against a local fake OpenAI server (stdlib http.server, 127.0.0.1).

The fake stands in only at the HTTP boundary: it is a real HTTP server on a
free loopback port that speaks the OpenAI shapes (``GET /v1/models``,
``POST /v1/completions``, ``POST /v1/chat/completions``) and can be scripted
per test (a queue of replies: status, headers, body, delay). Everything
between the harness and the socket is the real code: retries, Retry-After,
timeouts, errors, the circuit breaker, bounded concurrency, the API key,
request shapes, the cache key and the runner. The real ``vllm serve`` is
exercised in test_openai_vllm_serve.py.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

from harness.backend import Failed
from harness.backends.openai import OpenAIBackend, _retry_after, parse_options
from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import ModelSpec
from harness.types import ERROR, Sampling

HOSTED = "some-hosted-model"  # not a path: a hosted model, prompts go as text (no tokenizer)
GREEDY = Sampling(max_new_tokens=7, stop=("\n",))
SECRET = "sk-secret-123-very-private-0123456789"


# -- the fake server ------------------------------------------------------------------------------

@dataclass
class Reply:
    """One scripted answer to a POST.

    ``body``: None answers a completion (``text``, or the echo of the prompt), a dict is sent as JSON, a str as
    is. ``{auth}`` in the body is replaced by the request's Authorization header (a server that echoes the key).
    ``delay``: seconds to sleep before answering.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    text: str | None = None


def error(status: int, message: str, delay: float = 0.0, **headers: str) -> Reply:
    """The OpenAI error shape."""
    return Reply(status, {"error": {"message": message, "type": "server_error", "code": status}},
                 {k.replace("_", "-"): v for k, v in headers.items()}, delay)


def prompt_of(body: dict) -> Any:
    return body["messages"][0]["content"] if "messages" in body else body["prompt"]


class FakeOpenAI:
    """An OpenAI-compatible server on a free loopback port (or ``port``).

    ``script`` is consumed one reply per POST; when it is empty, ``responder(body)`` (if set) may answer, else the
    server answers ``echo:<prompt>\\nsecond line``. Every request is recorded with its headers and JSON body;
    ``max_inflight`` is the most POSTs handled at once; ``delay`` is added to every POST.
    """

    def __init__(self, port: int = 0, models=({"id": HOSTED, "object": "model"},), delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.script: list[Reply] = []
        self.responder: Callable[[dict], Reply | None] | None = None
        self.models, self.delay = list(models), delay
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        self.inflight = self.max_inflight = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real server

            def log_message(self, *a):  # quiet
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections.append(self.connection)

            def _send(self, code: int, payload: Any, headers: dict | None = None) -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout)
                    pass

            def do_GET(self):
                with fake.lock:
                    fake.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": fake.models})
                else:
                    self._send(404, {"error": {"message": "no such route"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                          "body": body})
                    reply = fake.script.pop(0) if fake.script else None
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                try:
                    if reply is None and fake.responder is not None:
                        reply = fake.responder(body)
                    reply = reply or Reply()
                    time.sleep(fake.delay + reply.delay)
                    payload = reply.body
                    if payload is None:
                        text = reply.text if reply.text is not None else f"echo:{prompt_of(body)}\nsecond line"
                        choice = ({"message": {"role": "assistant", "content": text}}
                                  if self.path.endswith("/chat/completions") else {"text": text})
                        payload = {"id": "cmpl-1", "choices": [{"index": 0, "finish_reason": "stop", **choice}]}
                    if not isinstance(payload, str):
                        payload = json.dumps(payload)
                    payload = payload.replace("{auth}", self.headers.get("Authorization", ""))
                    self._send(reply.status, payload, reply.headers)
                finally:
                    with fake.lock:
                        fake.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def posts(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == "POST"]

    def stop(self) -> None:
        """Like a killed server: stop listening and drop the open (keep-alive) connections."""
        if self.stopped:
            return
        self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for c in self.connections:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch):
    """A key in the developer's environment must not change what these tests send."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def fake():
    f = FakeOpenAI()
    yield f
    f.stop()


def spec(url: str | None = None, model: str = HOSTED, name: str = "api", **options) -> ModelSpec:
    """A hosted-style model; options as given (strings or numbers), small backoff for speed."""
    opts = {"backoff": 0.01, **({"base_url": url} if url else {}), **options}
    return ModelSpec(name=name, model=model, backend="openai", options=opts)


@pytest.fixture
def backends():
    made = []

    def make(*a, **kw):
        b = OpenAIBackend(*a, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


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


# -- 7: the API key ----------------------------------------------------------------------------------

def test_api_key_is_sent_but_never_shown(fake, backends, monkeypatch):
    monkeypatch.setenv("CONJ_TEST_KEY", SECRET)
    b = backends(spec(fake.url, api_key_env="CONJ_TEST_KEY", max_retries=1, concurrency=1))
    # servers that echo the credential back in their error messages
    fake.script = [error(401, "Incorrect API key provided: {auth}"), error(400, "bad request from {auth}"),
                   error(500, "internal error for {auth}"), error(500, "again {auth}")]
    out = b.generate(["x", "y", "z"], GREEDY)
    assert all(r["headers"].get("Authorization") == f"Bearer {SECRET}" for r in fake.requests)  # GET /models too
    assert len(fake.requests) == 5
    assert all(isinstance(o, Failed) for o in out)
    assert "HTTP 401" in out[0].reason and "Incorrect API key provided" in out[0].reason  # message kept, key masked
    assert "HTTP 400" in out[1].reason and "HTTP 500" in out[2].reason
    assert all("***" in o.reason for o in out)
    d = b.describe()
    shown = [repr(b), str(d), repr(d), json.dumps(d), *(o.reason for o in out), *(repr(o) for o in out)]
    assert not any(SECRET in s for s in shown)
    assert d["api_key_env"] == "CONJ_TEST_KEY"


def test_rejected_key_at_start_is_one_error_without_the_key(monkeypatch):
    f = FakeOpenAI()
    orig = f.httpd.RequestHandlerClass.do_GET

    def do_get(self):
        self._send(401, {"error": {"message": f"Incorrect API key provided: {self.headers['Authorization']}"}})

    try:
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the default variable
        f.httpd.RequestHandlerClass.do_GET = do_get
        with pytest.raises(ModelLoadError) as e:
            OpenAIBackend(spec(f.url))
        msg = str(e.value)
        assert "401" in msg and SECRET not in msg and "OPENAI_API_KEY" in msg
    finally:
        f.httpd.RequestHandlerClass.do_GET = orig
        f.stop()


@pytest.mark.parametrize("value", [None, ""])
def test_missing_or_empty_key_variable_is_a_config_error(fake, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CONJ_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("CONJ_TEST_KEY", value)
    with pytest.raises(ConfigError, match="CONJ_TEST_KEY"):
        OpenAIBackend(spec(fake.url, api_key_env="CONJ_TEST_KEY"))
    assert fake.requests == []  # checked before anything is sent


def test_no_key_sent_without_one(fake, backends):
    b = backends(spec(fake.url))
    b.generate(["x"], GREEDY)
    assert all("Authorization" not in r["headers"] for r in fake.requests)
    assert "api_key_env" not in b.describe()


def _renderings(secret: str) -> list[str]:
    """How a key can show up in a message: as is, and as repr, bytes repr and JSON escape it."""
    return [secret, repr(secret)[1:-1], repr(secret.encode())[2:-1], json.dumps(secret)[1:-1]]


@pytest.mark.parametrize("ending", ["\n", "\r", "\r\n", " \t"])
def test_key_with_a_trailing_newline_is_stripped_sent_and_never_shown(fake, backends, monkeypatch, ending):
    """A key read from a file keeps its newline: httpx refused it and the error printed it (b'Bearer sk-..\\n')."""
    monkeypatch.setenv("CONJ_TEST_KEY", SECRET + ending)
    b = backends(spec(fake.url, api_key_env="CONJ_TEST_KEY", max_retries=0))
    fake.script = [error(401, "Incorrect API key provided: {auth}")]
    out = b.generate(["x"], GREEDY)
    assert all(r["headers"].get("Authorization") == f"Bearer {SECRET}" for r in fake.requests)
    assert isinstance(out[0], Failed) and "HTTP 401" in out[0].reason
    assert not any(form in out[0].reason for form in _renderings(SECRET + ending))
    assert SECRET not in out[0].reason


def test_key_with_a_newline_inside_is_a_config_error_without_the_key(fake, monkeypatch):
    head, tail = SECRET[:12], SECRET[12:]
    monkeypatch.setenv("CONJ_TEST_KEY", f"{head}\n{tail}")
    with pytest.raises(ConfigError, match="CONJ_TEST_KEY") as e:
        OpenAIBackend(spec(fake.url, api_key_env="CONJ_TEST_KEY"))
    msg = str(e.value)
    assert head not in msg and tail not in msg and "unreachable" not in msg
    assert fake.requests == []


def test_escaped_renderings_of_the_key_are_scrubbed(fake, backends, monkeypatch):
    """A key with a quote and a backslash, echoed by a server in a malformed answer that the error quotes with repr."""
    key = "sk-back\\slash'quote\"-0123456789abcdef"
    monkeypatch.setenv("CONJ_TEST_KEY", key)
    b = backends(spec(fake.url, api_key_env="CONJ_TEST_KEY", max_retries=0))
    fake.script = [Reply(200, "not json, but your key: {auth}")]
    out = b.generate(["x"], GREEDY)
    assert isinstance(out[0], Failed) and "malformed response" in out[0].reason and "***" in out[0].reason
    assert not any(form in out[0].reason for form in _renderings(key)), out[0].reason
    from harness.backends.retrying_http import scrub

    for shown in (repr(key), repr(f"Bearer {key}\n".encode()), json.dumps({"k": key}), f"{key}!r={key!r}"):
        assert not any(form in scrub(shown, key) for form in _renderings(key)), scrub(shown, key)


@pytest.mark.parametrize("option", ["base_url", "server"])
def test_server_url_with_credentials_is_refused_and_never_recorded(fake, tmp_path, option):
    from harness.pipeline.pool import model_key
    from harness.pipeline.runner import run
    from harness.pipeline.spec import RunSpec

    url = fake.url.replace("http://", f"http://user:{SECRET}@")
    ms = spec(None, **{option: url})
    for attempt in (lambda: OpenAIBackend(ms), lambda: model_key(ms),
                    lambda: run(RunSpec(pretrained=ms, finetuned=ms, tasks=["icl_vs_if"], transforms=["identity"],
                                        limit=1, out=str(tmp_path / "res"), cache=str(tmp_path / "c.sqlite")),
                                progress=False)):
        with pytest.raises(ConfigError, match="carries credentials") as e:
            attempt()
        assert SECRET not in str(e.value) and f"http://***@127.0.0.1:{fake.port}/v1" in str(e.value)
    assert fake.requests == [] and not list(tmp_path.rglob("manifest.json"))


def test_server_url_with_credentials_on_the_command_line_is_one_line_without_the_key(tmp_path):
    try:
        from tests.conftest import run_cli
    except ImportError:
        from conftest import run_cli

    url = f"http://user:{SECRET}@127.0.0.1:9/v1"
    proc = run_cli("run", "--pretrained", HOSTED, "--finetuned", HOSTED, "--server", url, "--tasks", "icl_vs_if",
                   "--transforms", "identity", "--limit", "1", "--out", str(tmp_path / "res"),
                   "--cache", str(tmp_path / "c.sqlite"), env={"CONJUGATE_CACHE": str(tmp_path / "uc")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "carries credentials" in proc.stderr and SECRET not in proc.stderr + proc.stdout
    assert not (tmp_path / "res").exists()


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


# -- 9: options ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, match", [
    ({"base_url": "http://h/v1", "concurency": "4"}, "unknown openai option 'concurency'. Did you mean 'concurrency'"),
    ({"base_url": "http://h/v1", "concurrency": "four"}, "concurrency must be int"),
    ({"base_url": "http://h/v1", "concurrency": 2.5}, "concurrency must be int"),
    ({"base_url": "http://h/v1", "concurrency": "0"}, "concurrency must be at least 1"),
    ({"base_url": "http://h/v1", "timeout": "soon"}, "timeout must be float"),
    ({"base_url": "http://h/v1", "max_retries": True}, "max_retries must be int"),
    ({"base_url": "http://h/v1", "endpoint": "chats"}, "endpoint must be 'completions' or 'chat'.*Did you mean 'chat'"),
    ({"base_url": "http://h/v1", "endpoint": "embeddings"}, "endpoint must be 'completions' or 'chat'"),
    ({"base_url": "h:8000/v1"}, "must start with http"),
    ({"server": "sometimes"}, "server must be 'auto'"),
    ({"server": "auto", "base_url": "http://h/v1"}, "not both"),
    ({"server": "http://a/v1", "base_url": "http://b/v1"}, "disagree"),
    ({}, "--server auto.*--server URL"),
    ({"endpoint": "chat"}, "--server"),
])
def test_option_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        parse_options(ModelSpec(name="api", model=HOSTED, backend="openai", options=options))


def test_bad_options_fail_before_any_request(fake):
    with pytest.raises(ConfigError, match="Did you mean 'concurrency'"):
        OpenAIBackend(spec(fake.url, concurency=4))
    assert fake.requests == []


def test_options_from_strings_and_numbers_are_typed():
    for opts in ({"server": "http://h:1/v1/", "concurrency": "3", "timeout": "2.5", "max_retries": "0", "backoff": "0"},
                 {"server": "http://h:1/v1/", "concurrency": 3, "timeout": 2.5, "max_retries": 0, "backoff": 0}):
        o = parse_options(ModelSpec(name="api", model="x", backend="openai", options=opts))
        assert o["base_url"] == "http://h:1/v1" and o["concurrency"] == 3 and o["timeout"] == 2.5
        assert o["max_retries"] == 0 and o["backoff"] == 0.0 and o["endpoint"] == "completions"
        assert isinstance(o["concurrency"], int) and isinstance(o["timeout"], float)


def test_hosted_model_cannot_take_a_local_tokenizer_policy():
    with pytest.raises(ConfigError, match="endpoint=chat"):
        parse_options(ModelSpec(name="api", model="gpt-x", backend="openai", chat_template=True,
                                options={"base_url": "http://h/v1"}))
    with pytest.raises(ConfigError, match="bos"):
        parse_options(ModelSpec(name="api", model="gpt-x", backend="openai", bos="always",
                                options={"base_url": "http://h/v1"}))


# -- 10: the cache key -----------------------------------------------------------------------------------

def test_runtime_options_do_not_change_the_cache_key(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness.pipeline.pool import model_key

    a = spec("http://127.0.0.1:8000/v1", concurrency=2, timeout=30, max_retries=1, backoff=0.1)
    b = spec("http://10.0.0.5:9999/v1/", concurrency="16", timeout="5", api_key_env="X")
    c = ModelSpec(name="api", model=HOSTED, backend="openai", options={"server": "https://api.example.com/v1"})
    assert model_key(a) == model_key(b) == model_key(c)
    assert model_key(a)["identity"] == f"api:{HOSTED}"
    assert model_key(spec("http://h/v1", served_model="other")) != model_key(a)
    assert model_key(spec("http://h/v1", served_model="a")) != model_key(spec("http://h/v1", served_model="b"))
    assert model_key(spec("http://h/v1", endpoint="chat")) != model_key(a)
    assert model_key(spec("http://h/v1", model="other-model")) != model_key(a)
    assert model_key(ModelSpec(name="api", model=HOSTED, backend="openai", revision="2024-08-06",
                               options={"base_url": "http://h/v1"}))["identity"] == f"api:{HOSTED}@2024-08-06"


def test_local_model_is_keyed_on_its_weights_whatever_serves_it(tmp_path):
    from harness.pipeline.pool import model_key

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    local = [ModelSpec(name="l", model=str(folder), backend="openai", options=o)
             for o in ({"server": "auto"}, {"base_url": "http://127.0.0.1:1/v1"}, {"server": "http://127.0.0.1:2/v1"})]
    keys = [model_key(m) for m in local]
    assert keys[0] == keys[1] == keys[2] and keys[0]["identity"].startswith("folder-sha256:")


def test_hosted_model_name_is_not_looked_up_on_the_hub(monkeypatch):
    import harness.pipeline.models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def boom(*a, **k):
        raise AssertionError("hub lookup")

    monkeypatch.setattr(harness.pipeline.models, "hub_commit", boom)
    monkeypatch.setattr(harness.pipeline.models, "_resolve_hub_commit", boom)
    from harness.pipeline.pool import model_key

    for name in ("gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct", "accounts/fireworks/models/llama-v3p1-8b-instruct"):
        assert model_key(spec("https://api.example.com/v1", model=name))["identity"] == f"api:{name}"


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

