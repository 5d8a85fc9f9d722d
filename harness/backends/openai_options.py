"""The openai backend's options: names, types, defaults and the checks that name a bad one.

See :mod:`harness.backends.openai` for what each option does.
"""
from __future__ import annotations

import difflib
import shlex
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import ModelSpec

OPTIONS: dict[str, type] = {
    "base_url": str, "server": str, "endpoint": str, "served_model": str, "api_key_env": str,
    "concurrency": int, "timeout": float, "max_retries": int, "backoff": float, "serve_args": str,
    "startup_timeout": float,
}
DEFAULTS = {"endpoint": "completions", "concurrency": 8, "timeout": 120.0, "max_retries": 4, "backoff": 0.5,
            "startup_timeout": 300.0}
ENDPOINTS = ("completions", "chat")
URL_OPTIONS = ("base_url", "server")  # one URL, URL1,URL2,... or a YAML list: a fleet of servers


def _coerce(spec: ModelSpec, key: str, value: Any) -> Any:
    """``value`` as the option's type; the CLI gives strings."""
    want = OPTIONS[key]
    out = None
    if isinstance(value, bool) or value is None:
        pass
    elif want is str:
        out = value.strip() if isinstance(value, str) else None
    elif isinstance(value, (int, float)):
        out = want(value) if want is float or float(value).is_integer() else None
    elif isinstance(value, str):
        try:
            out = want(value.strip())
        except ValueError:
            pass
    if out is None:
        raise ConfigError(f"model {spec.name!r}: openai option {key} must be {want.__name__}, got {value!r}")
    return out


def _joined(spec: ModelSpec, key: str, value: Any) -> Any:
    """A YAML list of URLs as the comma-separated string the command line gives; anything else as it is."""
    if not isinstance(value, (list, tuple)):
        return value
    if not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"model {spec.name!r}: openai option {key} must be a URL or a list of URLs, got {value!r}")
    return ",".join(value)


def split_urls(spec: ModelSpec, key: str, value: str) -> list[str]:
    """``URL1,URL2,...`` as a list of URLs without trailing slashes; an empty, bad or repeated one is a ConfigError."""
    urls = [u.strip().rstrip("/") for u in value.split(",")]
    for u in urls:
        if not u.startswith(("http://", "https://")):
            what = "an empty entry (two commas in a row, or one at an end)" if not u else repr(u)
            raise ConfigError(f"model {spec.name!r}: openai option {key} must start with http:// or https:// "
                              f"(several servers: URLs separated by commas); got {what} in {value!r}")
    twice = sorted({u for u in urls if urls.count(u) > 1})
    if twice:
        raise ConfigError(f"model {spec.name!r}: openai option {key} lists {', '.join(twice)} more than once; "
                          f"give each server once")
    return urls


def _server(spec: ModelSpec, out: dict[str, Any]) -> None:
    """``server`` (auto, or URLs) and ``base_url`` checked and merged into ``base_url`` / ``base_urls``."""
    server = out.pop("server", None)
    if server is not None:
        if server.startswith(("http://", "https://")):
            if out.get("base_url") is not None and \
                    split_urls(spec, "base_url", out["base_url"]) != split_urls(spec, "server", server):
                raise ConfigError(f"model {spec.name!r}: openai options server={server} and base_url={out['base_url']} disagree")
            out["base_url"] = server
        elif server != "auto":
            raise ConfigError(f"model {spec.name!r}: openai option server must be 'auto' (start vllm serve) or a URL "
                              f"(several: URL1,URL2), got {server!r}")
        else:
            if "base_url" in out:
                raise ConfigError(f"model {spec.name!r}: give either server=auto or base_url={out['base_url']}, not both")
            out["server"] = "auto"
    if "server" not in out and "base_url" not in out:
        raise ConfigError(f"model {spec.name!r}: the openai backend needs a server: give --server auto (the harness "
                          "starts vllm serve) or --server URL (e.g. --server http://127.0.0.1:8000/v1; several: "
                          "URL1,URL2; option base_url)")
    if "base_url" in out:
        out["base_urls"] = split_urls(spec, "base_url", out["base_url"])
        out["base_url"] = ",".join(out["base_urls"])


def parse_options(spec: ModelSpec) -> dict[str, Any]:
    """The model's openai options, checked and typed, with defaults filled in (bad names get a suggestion)."""
    out: dict[str, Any] = {}
    for k, v in spec.options.items():
        if k not in OPTIONS:
            close = difflib.get_close_matches(k, list(OPTIONS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"model {spec.name!r}: unknown openai option {k!r}.{hint} Known: {', '.join(OPTIONS)}")
        out[k] = _coerce(spec, k, _joined(spec, k, v) if k in URL_OPTIONS else v)
    _server(spec, out)
    for k, v in DEFAULTS.items():
        out.setdefault(k, v)
    if out["endpoint"] not in ENDPOINTS:
        close = difflib.get_close_matches(out["endpoint"], ENDPOINTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"model {spec.name!r}: openai option endpoint must be 'completions' or 'chat', "
                          f"got {out['endpoint']!r}.{hint}")
    for k, low in (("concurrency", 1), ("max_retries", 0), ("timeout", 1e-3), ("backoff", 0.0), ("startup_timeout", 1.0)):
        if out[k] < low:
            raise ConfigError(f"model {spec.name!r}: openai option {k} must be at least {low:g}, got {out[k]}")
    if "serve_args" in out:
        try:
            out["serve_args"] = shlex.split(out["serve_args"])
        except ValueError as exc:
            raise ConfigError(f"model {spec.name!r}: openai option serve_args: {exc}") from None
    if out.get("server") != "auto" and not is_local(spec):  # a hosted model: the server tokenises
        if spec.chat_template and out["endpoint"] == "completions":
            raise ConfigError(f"model {spec.name!r}: chat_template needs the model's tokenizer, which a hosted model "
                              "does not give; use --backend-option endpoint=chat (the server applies its template)")
        if spec.bos != "auto":
            raise ConfigError(f"model {spec.name!r}: bos={spec.bos} needs the model's tokenizer, which a hosted model "
                              "does not give; leave bos as auto (the server decides)")
    return out


def is_local(spec: ModelSpec) -> bool:
    """Whether the model's files are here (folder, .gguf, pkg:); a name that is not a path is a hosted/hub model."""
    m = spec.model
    if m.startswith("pkg:") or m.endswith(".gguf"):
        return True
    p = Path(m).expanduser()
    if p.is_dir():
        return True
    if m.startswith((".", "/", "~")):
        raise ModelLoadError(f"model {spec.name!r}: path {m} does not exist")
    return False
