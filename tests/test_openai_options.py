"""The openai backend's options (types, checks, suggestions) and its generation-cache key."""
from __future__ import annotations

import pytest

from harness.backends.openai import OpenAIBackend, parse_options
from harness.errors import ConfigError
from harness.pipeline.models import ModelSpec
from tests.fixtures.openai_fake import HOSTED, spec

pytest_plugins = ["tests.fixtures.openai_fake"]  # the fixtures fake, backends, no_ambient_openai_key
pytestmark = pytest.mark.usefixtures("no_ambient_openai_key")


# -- options ----------------------------------------------------------------------------------------

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


# -- the cache key -----------------------------------------------------------------------------------

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
