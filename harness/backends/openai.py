"""openai: any OpenAI-compatible completions or chat endpoint (``vllm serve``, hosted APIs).

Options (``--backend-option KEY=VALUE``, or ``options:`` in a run YAML):

==================  =====================================================================
``base_url``        the ``/v1`` endpoint, e.g. ``http://127.0.0.1:8000/v1`` (``--server URL``)
``server``          ``auto``: start ``vllm serve`` on a free loopback port for the run (``--server auto``)
``endpoint``        ``completions`` (default) or ``chat``
``served_model``    the model name sent in requests (default: the served name, or ``model``)
``api_key_env``     environment variable holding the API key (default ``OPENAI_API_KEY`` if set);
                    the key is sent as a bearer token and never logged or recorded
``concurrency``     requests in flight at once (default 8)
``timeout``         seconds per request (default 120)
``max_retries``     retries on 429, 5xx, timeouts and connection errors (default 4), with
                    exponential backoff and full jitter from ``backoff`` seconds (default 0.5);
                    ``Retry-After`` is honoured (at most 60 s)
==================  =====================================================================

A request that still fails is returned as :class:`~harness.backend.Failed`
with the status and the server's message, and the runner records it as ERROR.
After 8 connection failures in a row (the server is gone) the rest of the
batch fails at once instead of each waiting out its retries.

For a server the harness can tokenise for (``server auto``, or a local model
folder), prompts are sent as token IDs built by
:class:`harness.prompting.PromptEncoder`, so the model sees exactly what
``hf`` and ``vllm`` feed it (Gemma's BOS included). Hosted models get text.
"""
from __future__ import annotations

import difflib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from harness.backend import Backend, Failed
from harness.errors import ConfigError, ModelLoadError
from harness.models import ModelSpec, adapter_folder, local_folder
from harness.prompting import PromptEncoder, decide_bos, truncate_at_stop
from harness.types import Sampling

OPTIONS = {"base_url": str, "server": str, "endpoint": str, "served_model": str, "api_key_env": str,
           "concurrency": int, "timeout": float, "max_retries": int, "backoff": float}
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
BREAKER = 8  # consecutive connection failures that mean "the server is gone"
LORA_NAME = "finetuned-lora"


def parse_options(spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in spec.options.items():
        if k not in OPTIONS:
            close = difflib.get_close_matches(k, list(OPTIONS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"model {spec.name!r}: unknown openai option {k!r}.{hint} Known: {', '.join(OPTIONS)}")
        want = OPTIONS[k]
        try:
            v = want(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            v = None
        if v is None:
            raise ConfigError(f"model {spec.name!r}: openai option {k} must be {want.__name__}, got {spec.options[k]!r}")
        out[k] = v
    if out.get("server", "auto") != "auto":
        raise ConfigError(f"model {spec.name!r}: openai option server must be 'auto' (or give base_url), got {out['server']!r}")
    if out.get("endpoint", "completions") not in ("completions", "chat"):
        raise ConfigError(f"model {spec.name!r}: openai option endpoint must be 'completions' or 'chat', got {out['endpoint']!r}")
    if "server" not in out and "base_url" not in out:
        raise ConfigError(f"model {spec.name!r}: the openai backend needs a server: give --server auto (start vllm serve) "
                          "or --server URL (e.g. http://127.0.0.1:8000/v1)")
    for k in ("concurrency", "max_retries"):
        if k in out and out[k] < (1 if k == "concurrency" else 0):
            raise ConfigError(f"model {spec.name!r}: openai option {k} must be positive, got {out[k]}")
    return out


def _is_local(spec: ModelSpec) -> bool:
    try:
        return spec.source_kind in ("package", "gguf", "folder")
    except ModelLoadError:
        return False


class _Shared:
    """A started server shared by the backends of a pair; stopped when the last one closes."""

    def __init__(self, server) -> None:
        self.server, self.users = server, 0

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.server.stop()


def _start_server(spec: ModelSpec, served: str, lora: str | None = None) -> _Shared:
    import json as _json

    from harness.server import VLLMServer

    folder, _ = local_folder(spec)
    rank = _json.loads((Path(lora) / "adapter_config.json").read_text()).get("r", 8) if lora else 8
    server = VLLMServer(folder, served, dtype=spec.dtype, lora_modules={LORA_NAME: lora} if lora else None,
                        max_lora_rank=int(rank))
    return _Shared(server.start())


class OpenAIBackend(Backend):
    """OpenAI-compatible HTTP server: vllm serve (--server auto starts one) or a hosted API; retries, concurrency."""

    name = "openai"
    runtime_options = frozenset({"base_url", "server", "api_key_env", "concurrency", "timeout", "max_retries", "backoff"})
    default_batch_size = 64

    def __init__(self, spec: ModelSpec, threads: int | None = None, shared: _Shared | None = None,
                 served_model: str | None = None, **options) -> None:
        super().__init__(spec, **options)
        import httpx

        self.opts = parse_options(spec)
        self.endpoint = self.opts.get("endpoint", "completions")
        self.shared = shared
        if self.shared is None and self.opts.get("server") == "auto":
            served = "base"
            self.shared = _start_server(spec, served, str(adapter_folder(spec)) if spec.adapter else None)
            served_model = LORA_NAME if spec.adapter else served
        if self.shared is not None:
            self.shared.users += 1
            self.base_url = self.shared.server.base_url
        else:
            self.base_url = self.opts["base_url"].rstrip("/")
        self.served_model = self.opts.get("served_model") or served_model or spec.model
        key_env = self.opts.get("api_key_env") or ("OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None)
        if key_env and not os.environ.get(key_env):
            raise ConfigError(f"model {spec.name!r}: api_key_env names {key_env}, but that environment variable is empty")
        headers = {"Authorization": f"Bearer {os.environ[key_env]}"} if key_env else {}
        self.concurrency = self.opts.get("concurrency", 8)
        self.timeout = self.opts.get("timeout", 120.0)
        self.max_retries = self.opts.get("max_retries", 4)
        self.backoff = self.opts.get("backoff", 0.5)
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                                   limits=httpx.Limits(max_connections=self.concurrency))
        self.encoder = self._encoder() if self.endpoint == "completions" and _is_local(spec) else None
        self._check_reachable()

    # -- construction helpers -------------------------------------------------------
    def _encoder(self) -> PromptEncoder:
        from transformers import AutoTokenizer

        folder, meta = local_folder(self.spec)
        tok = AutoTokenizer.from_pretrained(folder)
        return PromptEncoder(tok, self.spec, decide_bos(tok, self.spec.bos, meta))

    def _check_reachable(self) -> None:
        import httpx

        try:
            r = self.client.get(f"{self.base_url}/models", timeout=min(10.0, self.timeout))
        except httpx.HTTPError as exc:
            self.close()
            raise ModelLoadError(f"server at {self.base_url} is unreachable ({type(exc).__name__}: {exc}); start it "
                                 "(e.g. `vllm serve MODEL`) or use --server auto") from None
        if r.status_code in (401, 403):
            self.close()
            raise ModelLoadError(f"server at {self.base_url} refused the credentials (HTTP {r.status_code}); "
                                 "check api_key_env")

    @classmethod
    def validate(cls, spec: ModelSpec) -> None:
        parse_options(spec)

    @classmethod
    def identity(cls, spec: ModelSpec) -> str | None:
        """Local weights are hashed as usual; a hosted model is known only by its name."""
        if _is_local(spec):
            return None
        served = spec.options.get("served_model") or spec.model
        return f"api:{served}" + (f"+adapter:{spec.adapter}" if spec.adapter else "")

    @classmethod
    def open_pair(cls, pretrained: ModelSpec, finetuned: ModelSpec, threads: int | None = None, **kw):
        """One ``vllm serve`` for both when the fine-tuned model is the base plus a LoRA adapter."""
        same = all(getattr(pretrained, f) == getattr(finetuned, f)
                   for f in ("model", "revision", "dtype", "bos", "chat_template", "options"))
        if not (same and finetuned.adapter and not pretrained.adapter and pretrained.options.get("server") == "auto"):
            return None
        parse_options(pretrained)
        shared = _start_server(pretrained, "base", str(adapter_folder(finetuned)))
        try:
            pre = cls(pretrained, shared=shared, served_model="base")
            ft = cls(finetuned, shared=shared, served_model=LORA_NAME)
        except BaseException:
            shared.server.stop()
            raise
        return pre, ft

    def describe(self) -> dict[str, Any]:
        d = {"backend": self.name, "endpoint": self.endpoint, "base_url": self.base_url,
             "served_model": self.served_model, "token_prompts": self.encoder is not None}
        if self.shared is not None:
            s = self.shared.server
            d["server"] = {"kind": "vllm serve (started by the harness)", "pid": s.pid, "port": s.port,
                           "log": str(s.log_path), "lora_modules": list(s.lora_modules)}
        else:
            d["server"] = {"kind": "external"}
        return d

    # -- requests ---------------------------------------------------------------------
    def _body(self, prompt: str, sampling: Sampling) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.served_model, "max_tokens": sampling.max_new_tokens,
                                "temperature": 0.0 if sampling.greedy else sampling.temperature}
        if not sampling.greedy:
            body.update(top_p=sampling.top_p, seed=sampling.seed)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            return f"{self.base_url}/chat/completions", body
        body["prompt"] = self.encoder.encode(prompt) if self.encoder is not None else prompt
        return f"{self.base_url}/completions", body

    def _one(self, prompt: str, sampling: Sampling, state: dict) -> str | Failed:
        import httpx

        url, body = self._body(prompt, sampling)
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if state["down"] >= BREAKER:
                return Failed(f"server unreachable: {state['why']} (gave up after {BREAKER} connection failures in a row)")
            delay = None
            try:
                r = self.client.post(url, json=body)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                with state["lock"]:
                    state["down"] += 1
                    state["why"] = f"{type(exc).__name__}: {exc}"
                last = f"connection error ({type(exc).__name__}: {exc}) at {url}"
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            else:
                state["down"] = 0
                if r.status_code == 200:
                    try:
                        choice = r.json()["choices"][0]
                        text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        return Failed(f"malformed response from {url}: {type(exc).__name__}: {r.text[:200]}")
                    return truncate_at_stop(text or "", sampling.stop)
                last = f"HTTP {r.status_code}: {_message(r)}"
                if r.status_code not in RETRY_STATUS:
                    return Failed(last)
                retry_after = r.headers.get("retry-after")
                if retry_after:
                    try:
                        delay = min(60.0, float(retry_after))
                    except ValueError:
                        delay = None
            if attempt < self.max_retries:
                time.sleep(delay if delay is not None else random.uniform(0, self.backoff * 2 ** attempt))
        return Failed(f"{last} (after {self.max_retries + 1} attempts)")

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str | Failed]:
        state = {"down": 0, "why": "", "lock": threading.Lock()}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(prompts)))) as pool:
            return list(pool.map(lambda p: self._one(p, sampling, state), prompts))

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()
        shared, self.shared = self.shared, None
        if shared is not None:
            shared.release()


def _message(r) -> str:
    """The server's error message (OpenAI error shape or plain text), shortened."""
    try:
        data = r.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else None
        return str(msg or json.dumps(data))[:300]
    except ValueError:
        return (r.text or r.reason_phrase or "")[:300]
