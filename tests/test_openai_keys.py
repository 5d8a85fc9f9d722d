"""The openai backend and API keys: sent as Authorization: Bearer, never shown; URLs with credentials refused.

Against the local fake OpenAI server of tests/fixtures/openai_fake.py.
"""
from __future__ import annotations

import json

import pytest

from harness.backend import Failed
from harness.backends.openai import OpenAIBackend
from harness.errors import ConfigError, ModelLoadError
from tests.fixtures.openai_fake import GREEDY, HOSTED, FakeOpenAI, Reply, error, spec

SECRET = "sk-secret-123-very-private-0123456789"

pytest_plugins = ["tests.fixtures.openai_fake"]  # the fixtures fake, backends, no_ambient_openai_key
pytestmark = pytest.mark.usefixtures("no_ambient_openai_key")


# -- the API key ----------------------------------------------------------------------------------

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
