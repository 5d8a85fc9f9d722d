"""A fleet of OpenAI-compatible servers behind one openai backend (``--server URL1,URL2``; issue 17, part 2).

Two (or three) real HTTP servers on loopback ports speak the OpenAI completions
API (tests/fixtures/openai_fake.py); one can be killed after N answers. What
is shown: requests are spread over the servers; a server killed mid-run is
taken out and the run completes through the other with nothing lost, nothing
sent twice and the same samples as a one-server run; all servers dead is one
clear line; the cache key does not depend on the servers, so a fleet
restarted elsewhere resumes from the cache; the manifest counts per server.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.backend import Failed
from harness.backends.openai import OpenAIBackend, parse_options
from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import ModelSpec
from tests.fixtures.openai_fake import GREEDY, HOSTED, FakeOpenAI, prompt_of, spec

pytest_plugins = ["tests.fixtures.openai_fake"]  # the fixtures backends, no_ambient_openai_key
pytestmark = pytest.mark.usefixtures("no_ambient_openai_key")


@pytest.fixture
def fleet():
    """Two fake servers that answer after a short delay (so a batch has time to reach both)."""
    servers = [FakeOpenAI(delay=0.02), FakeOpenAI(delay=0.02)]
    yield servers
    for s in servers:
        s.stop()


def urls(*servers: FakeOpenAI) -> str:
    return ",".join(s.url for s in servers)


def answered_keys(*servers: FakeOpenAI) -> list[tuple[str, str]]:
    """(served model, prompt) of every completion the servers sent."""
    return [(b["model"], prompt_of(b)) for s in servers for b in s.answered]


def by_url(backend: OpenAIBackend) -> dict[str, dict]:
    return {e["url"]: e for e in backend.describe()["endpoints"]}


# -- balancing ----------------------------------------------------------------------------------------

def test_requests_are_spread_over_both_servers_in_order(fleet, backends):
    a, b = fleet
    a.delay = b.delay = 0.1
    backend = backends(spec(urls(a, b), concurrency=2))
    prompts = [f"prompt {i}" for i in range(24)]
    t = time.monotonic()
    out = backend.generate(prompts, GREEDY)
    elapsed = time.monotonic() - t
    assert out == [f"echo:{p}" for p in prompts]  # in prompt order, whichever server answered
    assert len(a.posts) >= 4 and len(b.posts) >= 4, (len(a.posts), len(b.posts))
    assert Counter(prompt_of(r["body"]) for r in a.posts + b.posts) == Counter(prompts)  # each asked once
    assert 1 < a.max_inflight <= 2 and 1 < b.max_inflight <= 2  # concurrency is per server
    assert elapsed < 24 * 0.1 / 2, f"{elapsed:.2f} s: not 4 in flight"  # 4 at once: about 0.6 s
    ends = by_url(backend)
    assert (ends[a.url]["served"], ends[b.url]["served"]) == (len(a.posts), len(b.posts))
    assert all(e["up"] and e["taken_out"] == 0 and e["failed"] == 0 for e in ends.values())
    assert backend.describe()["base_url"] == urls(a, b)


# -- a server killed mid-run ------------------------------------------------------------------------------

def test_a_server_killed_mid_batch_is_taken_out_and_the_other_answers_the_rest(fleet, backends, capsys):
    a, b = fleet
    a.die_after = 5
    backend = backends(spec(urls(a, b), concurrency=3, max_retries=2))
    prompts = [f"prompt {i}" for i in range(40)]
    t = time.monotonic()
    out = backend.generate(prompts, GREEDY)
    assert time.monotonic() - t < 10
    single = FakeOpenAI()
    try:
        alone = backends(spec(single.url, concurrency=3)).generate(prompts, GREEDY)
    finally:
        single.stop()
    assert out == alone == [f"echo:{p}" for p in prompts]  # the same samples as one server gives
    assert len(a.answered) == 5 and a.stopped
    keys = answered_keys(a, b)
    assert len(keys) == len(set(keys)) == 40  # 0 lost, 0 answered twice
    ends = by_url(backend)
    assert (ends[a.url]["served"], ends[b.url]["served"]) == (5, 35)
    assert ends[a.url]["up"] is False and ends[a.url]["taken_out"] == 1 and ends[a.url]["unanswered"] >= 1
    assert "Error" in ends[a.url]["why"], ends[a.url]  # e.g. ConnectError: [Errno 111] Connection refused
    assert ends[b.url]["up"] is True and ends[b.url]["taken_out"] == 0 and ends[b.url]["failed"] == 0
    assert f"server {a.url} taken out" in capsys.readouterr().err
    # the next batch: one probe of the dead server, then everything goes to the live one
    out = backend.generate(["later"], GREEDY)
    assert out == ["echo:later"] and by_url(backend)[b.url]["served"] == 36


def test_a_taken_out_server_is_probed_and_back_when_it_answers(backends):
    a, b = FakeOpenAI(), FakeOpenAI()
    try:
        backend = backends(spec(urls(a, b), concurrency=2, max_retries=1))
        port = a.port
        a.stop()
        assert backend.generate([f"p{i}" for i in range(10)], GREEDY) == [f"echo:p{i}" for i in range(10)]
        assert by_url(backend)[a.url]["up"] is False
        a2 = FakeOpenAI(port=port)  # restarted on the same address
        try:
            out = backend.generate([f"q{i}" for i in range(12)], GREEDY)
            assert out == [f"echo:q{i}" for i in range(12)]
            assert a2.requests[0]["path"] == "/v1/models" and a2.posts  # the probe, then its share
            e = by_url(backend)[a.url]
            assert e["up"] is True and e["back"] == 1 and e["taken_out"] == 1
        finally:
            a2.stop()
    finally:
        a.stop()
        b.stop()


def test_a_server_down_at_start_is_taken_out_and_the_others_serve(backends, capsys):
    from harness.backends.server import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    live = FakeOpenAI()
    try:
        backend = backends(spec(f"{dead},{live.url}"))
        assert backend.generate(["x", "y"], GREEDY) == ["echo:x", "echo:y"]
        e = by_url(backend)
        assert e[dead]["up"] is False and e[dead]["taken_out"] == 1 and "ConnectError" in e[dead]["why"]
        assert e[live.url]["served"] == 2
        assert f"server {dead} taken out" in capsys.readouterr().err
    finally:
        live.stop()


def test_an_answered_error_is_not_sent_to_another_server(fleet, backends):
    """A final HTTP error (the request itself is bad) is an answer: the other server does not get it too."""
    from tests.fixtures.openai_fake import error

    a, b = fleet
    a.responder = b.responder = lambda body: error(400, "prompt too long") if prompt_of(body) == "bad" else None
    backend = backends(spec(urls(a, b), concurrency=1, max_retries=3))
    out = backend.generate(["ok0", "bad", "ok1", "ok2"], GREEDY)
    assert isinstance(out[1], Failed) and "HTTP 400" in out[1].reason and "prompt too long" in out[1].reason
    assert [o for i, o in enumerate(out) if i != 1] == ["echo:ok0", "echo:ok1", "echo:ok2"]
    assert sum(prompt_of(r["body"]) == "bad" for r in a.posts + b.posts) == 1
    assert sum(e["failed"] for e in backend.describe()["endpoints"]) == 1


# -- all dead -------------------------------------------------------------------------------------------

def test_all_servers_dead_mid_run_is_one_clear_line_at_once(fleet, backends):
    a, b = fleet
    backend = backends(spec(urls(a, b), max_retries=6, backoff=1.0, concurrency=4))
    assert backend.generate(["warm"], GREEDY) == ["echo:warm"]
    a.stop()
    b.stop()
    t = time.monotonic()
    out = backend.generate([f"p{i}" for i in range(30)], GREEDY)
    assert time.monotonic() - t < 5.0  # the breakers, not 30 x the backoff
    assert all(isinstance(o, Failed) for o in out)
    last = out[-1].reason
    assert "\n" not in last and "all 2 servers are down" in last and a.url in last and b.url in last, last
    assert "re-run the same command to resume" in last
    t = time.monotonic()
    out = backend.generate(["q"], GREEDY)  # a later batch: one probe per server, no retries
    assert isinstance(out[0], Failed) and "all 2 servers are down" in out[0].reason
    assert time.monotonic() - t < 1.0


def test_all_servers_dead_at_start_is_one_error_line_without_a_traceback(tmp_path):
    from harness.backends.server import free_port
    from tests.conftest import run_cli

    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with pytest.raises(ModelLoadError, match="all 2 servers are unreachable") as e:
        OpenAIBackend(spec(",".join(dead)))
    assert "\n" not in str(e.value) and all(u in str(e.value) for u in dead)
    proc = run_cli("run", "--pretrained", HOSTED, "--finetuned", HOSTED, "--server", ",".join(dead),
                   "--tasks", "icl_vs_if", "--transforms", "identity", "--limit", "1", "--out", str(tmp_path / "res"),
                   "--cache", str(tmp_path / "c.sqlite"), env={"CONJUGATE_CACHE": str(tmp_path / "uc"),
                                                               "OPENAI_API_KEY": ""})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if "servers are unreachable" in x]
    assert len(lines) == 1 and all(u in lines[0] for u in dead), proc.stderr


# -- options and the cache key -----------------------------------------------------------------------------

def test_the_cache_key_does_not_depend_on_the_servers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness.pipeline.pool import model_key

    one = spec("http://127.0.0.1:8000/v1")
    two = spec("http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1", concurrency=4)
    listed = ModelSpec(name="api", model=HOSTED, backend="openai",
                       options={"base_url": ["http://10.0.0.1:9000/v1", "http://10.0.0.2:9000/v1/"]})
    server = ModelSpec(name="api", model=HOSTED, backend="openai",
                       options={"server": "http://a:1/v1, http://b:2/v1, http://c:3/v1"})
    assert model_key(one) == model_key(two) == model_key(listed) == model_key(server)


@pytest.mark.parametrize("options, match", [
    ({"base_url": "http://a/v1,,http://b/v1"}, "empty entry"),
    ({"base_url": "http://a/v1,"}, "empty entry"),
    ({"base_url": "http://a/v1,b:8000/v1"}, "must start with http.*'b:8000/v1'"),
    ({"base_url": "http://a/v1,http://a/v1/"}, "lists http://a/v1 more than once"),
    ({"base_url": ["http://a/v1", 8000]}, "base_url must be a URL or a list of URLs"),
    ({"base_url": []}, "base_url must be a URL or a list of URLs"),
    ({"server": "http://a/v1,http://b/v1", "base_url": "http://a/v1"}, "disagree"),
    ({"base_url": "http://a/v1,http://x:se,cret@b/v1"}, "carries credentials"),
])
def test_fleet_option_errors(options, match):
    ms = ModelSpec(name="api", model=HOSTED, backend="openai", options=options)
    with pytest.raises(ConfigError, match=match) as e:
        OpenAIBackend.validate(ms)
    assert "se,cret" not in str(e.value)


def test_fleet_options_are_normalised():
    o = parse_options(ModelSpec(name="api", model=HOSTED, backend="openai",
                                options={"server": " http://a:1/v1/ , http://b:2/v1"}))
    assert o["base_urls"] == ["http://a:1/v1", "http://b:2/v1"] and o["base_url"] == "http://a:1/v1,http://b:2/v1"
    o = parse_options(ModelSpec(name="api", model=HOSTED, backend="openai", options={"base_url": "http://h:1/v1/"}))
    assert o["base_urls"] == ["http://h:1/v1"] and o["base_url"] == "http://h:1/v1"


def test_a_server_of_the_fleet_that_serves_another_model_is_named(tiny_model):
    a, b = FakeOpenAI(), FakeOpenAI(models=[{"id": "other-model"}])
    try:
        ms = ModelSpec(name="t", model=str(tiny_model), backend="openai", options={"base_url": urls(a, b)})
        with pytest.raises(ConfigError, match=f"server at {b.url} does not serve '{HOSTED}'"):
            OpenAIBackend(ms)
        assert not a.posts and not b.posts
    finally:
        a.stop()
        b.stop()


# -- through the runner and the command line ---------------------------------------------------------------

def _runspec(tmp_path: Path, url: str, run_id: str, cache: str):
    from harness.pipeline.spec import RunSpec

    pre = spec(url, name="api", concurrency=2, max_retries=2)
    ft = spec(url, name="api-ft", served_model=f"{HOSTED}-ft", concurrency=2, max_retries=2)
    return RunSpec(pretrained=pre, finetuned=ft, tasks=["icl_vs_if"], transforms=["identity", "leetspeak"],
                   limit=12, out=str(tmp_path / "res"), run_id=run_id, cache=str(tmp_path / cache))


def _models(*servers: FakeOpenAI) -> None:
    for s in servers:
        s.models = [{"id": HOSTED}, {"id": f"{HOSTED}-ft"}]


def test_run_with_a_server_killed_mid_run_equals_a_one_server_run_and_resumes_anywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness.pipeline.runner import run

    a, b, c = FakeOpenAI(delay=0.01), FakeOpenAI(delay=0.01), FakeOpenAI()
    _models(a, b, c)
    a.die_after = 10
    try:
        fleet_dir = run(_runspec(tmp_path, urls(a, b), "fleet", "fleet.sqlite"), progress=False)
        single_dir = run(_runspec(tmp_path, c.url, "single", "single.sqlite"), progress=False)
        rows = (fleet_dir / "samples.jsonl").read_text()
        assert rows == (single_dir / "samples.jsonl").read_text()  # identical samples
        samples = [json.loads(x) for x in rows.splitlines()]
        assert len(samples) == 48 and not any(s["error"] for s in samples)
        keys = answered_keys(a, b)
        assert len(keys) == len(set(keys)) == len(c.answered) == 48  # 0 lost, 0 duplicated
        assert len(a.answered) == 10 and len(b.answered) == 38
        manifest = json.loads((fleet_dir / "manifest.json").read_text())
        ends = {role: {e["url"]: e for e in manifest["backends"][role]["endpoints"]} for role in ("pretrained", "finetuned")}
        assert sum(e[a.url]["served"] for e in ends.values()) == 10
        assert sum(e[b.url]["served"] for e in ends.values()) == 38
        assert any(e[a.url]["taken_out"] == 1 and not e[a.url]["up"] and e[a.url]["why"] for e in ends.values())
        assert manifest["generation"]["pretrained"]["generated"] == manifest["generation"]["finetuned"]["generated"] == 24

        # the fleet restarted elsewhere (one server on another port): everything comes from the cache
        d = FakeOpenAI()
        _models(d)
        try:
            again = run(_runspec(tmp_path, d.url, "again", "fleet.sqlite"), progress=False)
            assert not d.posts
            gen = json.loads((again / "manifest.json").read_text())["generation"]
            assert gen["pretrained"]["cached"] == gen["finetuned"]["cached"] == 24
        finally:
            d.stop()
    finally:
        for s in (a, b, c):
            s.stop()


def test_cli_run_with_two_servers(fleet, tmp_path):
    from tests.conftest import run_cli

    a, b = fleet
    proc = run_cli("run", "--pretrained", HOSTED, "--finetuned", HOSTED, "--server", urls(a, b),
                   "--backend-option", "concurrency=2", "--tasks", "icl_vs_if", "--transforms", "identity",
                   "--limit", "12", "--out", str(tmp_path / "res"), "--run-id", "r", "--cache", str(tmp_path / "c.sqlite"),
                   env={"CONJUGATE_CACHE": str(tmp_path / "uc"), "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "res" / "r" / "manifest.json").read_text())
    ends = manifest["backends"]["pretrained"]["endpoints"]
    assert [e["url"] for e in ends] == [a.url, b.url]
    assert a.posts and b.posts  # both servers worked
    assert sum(e["served"] for e in ends) == manifest["generation"]["pretrained"]["generated"] == 12
    assert manifest["backends"]["pretrained"]["base_url"] == urls(a, b)
