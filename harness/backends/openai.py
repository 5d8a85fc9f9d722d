"""openai: any OpenAI-compatible completions or chat endpoint (``vllm serve``, hosted APIs).

Options (``--backend-option KEY=VALUE``, or ``options:`` in a run YAML; strings are converted):

==================  =====================================================================
``base_url``        the ``/v1`` endpoint, e.g. ``http://127.0.0.1:8000/v1`` (``--server URL``)
``server``          ``auto``: start ``vllm serve`` on a free loopback port for the run and stop
                    it at the end (``--server auto``); a URL here means ``base_url``
``endpoint``        ``completions`` (default) or ``chat``
``served_model``    the model name sent in requests. Default: ``model`` for a hosted model; for
                    a local model behind your own server, ``model`` if the server lists it
                    under ``/models``, else the one model (LoRA module, for a model with an
                    adapter) it lists. With ``server auto``: the name the base is served as
``api_key_env``     environment variable holding the API key (default ``OPENAI_API_KEY`` if set;
                    not used for ``server auto``); sent as ``Authorization: Bearer``, never
                    logged, described or put in an error
``concurrency``     requests in flight at once (default 8)
``timeout``         seconds per request (default 120)
``max_retries``     retries on 429, 5xx, timeouts and connection errors (default 4)
``backoff``         base seconds of the exponential backoff with full jitter (default 0.5);
                    a ``Retry-After`` header is honoured (at most 60 s)
``serve_args``      extra ``vllm serve`` arguments for ``server auto`` (one string, shell-split)
``startup_timeout`` seconds ``server auto`` waits for the server to become healthy (default 300)
==================  =====================================================================

Only ``endpoint`` and ``served_model`` are part of the generation-cache key;
the others are :attr:`OpenAIBackend.runtime_options`, so a server restarted on
another port (or with another concurrency) resumes from the cache.

A request that still fails is returned as :class:`~harness.backend.Failed`
with the status and the server's message; the runner records it as ERROR.
After 8 connection failures in a row (the server is gone) the backend stops
retrying: the rest of the batch, and later batches while one probe of
``/models`` still finds no server, fail at once with ``server unreachable``.

Token prompts: for a model the harness has the tokenizer of (``server auto``,
or a local folder / ``.gguf`` / ``pkg:`` model behind your own server), the
completions endpoint gets token IDs built by
:class:`harness.backends.prompting.PromptEncoder`, so the model sees exactly what
``hf`` and ``vllm`` feed it (BOS policy, chat template; Gemma's BOS).
Hosted models get the prompt text and tokenise server-side.

One server for the pair: with ``server auto``, when the fine-tuned model is the
pretrained model plus a LoRA adapter (or the same model), :meth:`open_pair`
starts one ``vllm serve`` (``--enable-lora --lora-modules``) for both; it
stops when both backends are closed.
"""
from __future__ import annotations

import difflib
import json
import os
import random
import shlex
import threading
from pathlib import Path
from typing import Any, Sequence

from harness.io import parse_retry_after
from harness.backend import Backend, Failed
from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import ModelSpec, adapter_folder, folder_sha256, hub_commit, local_folder
from harness.backends.prompting import PromptEncoder, decide_bos, truncate_at_stop
from harness.types import Sampling

OPTIONS: dict[str, type] = {
    "base_url": str, "server": str, "endpoint": str, "served_model": str, "api_key_env": str,
    "concurrency": int, "timeout": float, "max_retries": int, "backoff": float, "serve_args": str,
    "startup_timeout": float,
}
DEFAULTS = {"endpoint": "completions", "concurrency": 8, "timeout": 120.0, "max_retries": 4, "backoff": 0.5,
            "startup_timeout": 300.0}
ENDPOINTS = ("completions", "chat")
BREAKER = 8  # consecutive connection failures that mean "the server is gone"
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is capped
MAX_BACKOFF = 30.0
BASE_NAME, LORA_NAME = "base", "finetuned-lora"  # names the started server serves


# -- options ---------------------------------------------------------------------------

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


def parse_options(spec: ModelSpec) -> dict[str, Any]:
    """The model's openai options, checked and typed, with defaults filled in (bad names get a suggestion)."""
    out: dict[str, Any] = {}
    for k, v in spec.options.items():
        if k not in OPTIONS:
            close = difflib.get_close_matches(k, list(OPTIONS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"model {spec.name!r}: unknown openai option {k!r}.{hint} Known: {', '.join(OPTIONS)}")
        out[k] = _coerce(spec, k, v)
    server = out.pop("server", None)
    if server is not None:
        if server.startswith(("http://", "https://")):
            if out.get("base_url", server).rstrip("/") != server.rstrip("/"):
                raise ConfigError(f"model {spec.name!r}: openai options server={server} and base_url={out['base_url']} disagree")
            out["base_url"] = server
        elif server != "auto":
            raise ConfigError(f"model {spec.name!r}: openai option server must be 'auto' (start vllm serve) or a URL, "
                              f"got {server!r}")
        else:
            if "base_url" in out:
                raise ConfigError(f"model {spec.name!r}: give either server=auto or base_url={out['base_url']}, not both")
            out["server"] = "auto"
    if "server" not in out and "base_url" not in out:
        raise ConfigError(f"model {spec.name!r}: the openai backend needs a server: give --server auto (the harness "
                          "starts vllm serve) or --server URL (e.g. --server http://127.0.0.1:8000/v1; "
                          "option base_url)")
    if "base_url" in out:
        out["base_url"] = out["base_url"].rstrip("/")
        if not out["base_url"].startswith(("http://", "https://")):
            raise ConfigError(f"model {spec.name!r}: openai option base_url must start with http:// or https://, "
                              f"got {out['base_url']!r}")
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
    if out.get("server") != "auto" and not _is_local(spec):  # a hosted model: the server tokenises
        if spec.chat_template and out["endpoint"] == "completions":
            raise ConfigError(f"model {spec.name!r}: chat_template needs the model's tokenizer, which a hosted model "
                              "does not give; use --backend-option endpoint=chat (the server applies its template)")
        if spec.bos != "auto":
            raise ConfigError(f"model {spec.name!r}: bos={spec.bos} needs the model's tokenizer, which a hosted model "
                              "does not give; leave bos as auto (the server decides)")
    return out


def _is_local(spec: ModelSpec) -> bool:
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


def _adapter_rank(folder: Path) -> int:
    return int(json.loads((Path(folder) / "adapter_config.json").read_text()).get("r", 8))


# -- a started server, shared by a pair -------------------------------------------------

class _Shared:
    """A started ``vllm serve``; stopped when the last backend using it closes."""

    def __init__(self, server) -> None:
        self.server, self.users = server, 0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            last = self.users <= 0
        if last:
            self.server.stop()


def _start_server(spec: ModelSpec, opts: dict[str, Any], lora: Path | None) -> _Shared:
    from harness.backends.server import VLLMServer

    folder, _ = local_folder(spec)  # GGUF and pkg: models go through the cached safetensors conversion
    revision = hub_commit(spec) if not _is_local(spec) else None
    server = VLLMServer(folder, opts.get("served_model") or BASE_NAME, dtype=spec.dtype, revision=revision,
                        lora_modules={LORA_NAME: str(lora)} if lora else None,
                        max_lora_rank=_adapter_rank(lora) if lora else 8,
                        extra_args=opts.get("serve_args"), startup_timeout=opts["startup_timeout"])
    return _Shared(server.start())


# -- the backend -------------------------------------------------------------------------

class OpenAIBackend(Backend):
    """OpenAI-compatible HTTP server: vllm serve (--server auto starts one) or a hosted API; retries, concurrency."""

    name = "openai"
    runtime_options = frozenset({"base_url", "server", "api_key_env", "concurrency", "timeout", "max_retries",
                                 "backoff", "serve_args", "startup_timeout"})
    default_batch_size = 64

    def __init__(self, spec: ModelSpec, threads: int | None = None, shared: _Shared | None = None,
                 served_model: str | None = None, **options) -> None:
        super().__init__(spec, **options)
        import httpx

        self.client = None
        self.shared: _Shared | None = None
        self.opts = parse_options(spec)
        self.endpoint = self.opts["endpoint"]
        self.concurrency, self.timeout = self.opts["concurrency"], self.opts["timeout"]
        self.max_retries, self.backoff = self.opts["max_retries"], self.opts["backoff"]
        self._down, self._down_why, self._lock = 0, "", threading.Lock()
        self.models: list[dict] = []
        auto = self.opts.get("server") == "auto"
        if shared is None and auto:
            lora = adapter_folder(spec) if spec.adapter else None
            shared = _start_server(spec, self.opts, lora)
            served_model = LORA_NAME if lora else shared.server.served_name
        try:
            if shared is not None:
                shared.acquire()
                self.shared = shared
                self.base_url = shared.server.base_url
            else:
                self.base_url = self.opts["base_url"]
            key_env = self.opts.get("api_key_env") or (
                "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") and not auto else None)
            if key_env and not os.environ.get(key_env):
                raise ConfigError(f"model {spec.name!r}: api_key_env names {key_env}, but that environment variable "
                                  "is not set")
            self._secret = os.environ[key_env] if key_env else None
            self.key_env = key_env
            self.client = httpx.Client(
                headers={"Authorization": f"Bearer {self._secret}"} if self._secret else {},
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency))
            self._check_reachable()
            # the server we started knows its names; else the option, else what the server lists
            self.served_model = served_model or self.opts.get("served_model") or self._default_served_model()
            ids = [m["id"] for m in self.models]
            if ids and self.served_model not in ids and (auto or _is_local(spec)):
                close = difflib.get_close_matches(self.served_model, ids, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"model {spec.name!r}: the server at {self.base_url} does not serve "
                                  f"{self.served_model!r}.{hint} It serves: {', '.join(ids)} (option served_model)")
            self.token_prompts = self.endpoint == "completions" and (auto or _is_local(spec))
            self.encoder = self._encoder() if self.token_prompts else None
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.spec.name!r}, base_url={getattr(self, 'base_url', None)!r})"

    # -- construction helpers -------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        secret = getattr(self, "_secret", None)
        return text.replace(secret, "***") if secret else text

    def _encoder(self) -> PromptEncoder:
        from transformers import AutoTokenizer

        folder, meta = local_folder(self.spec)
        kw = {} if _is_local(self.spec) else {"revision": hub_commit(self.spec)}
        try:
            tok = AutoTokenizer.from_pretrained(folder, **kw)
        except Exception as exc:
            raise ModelLoadError(f"model {self.spec.name!r}: could not load the tokenizer from {folder}: "
                                 f"{type(exc).__name__}: {exc}") from None
        return PromptEncoder(tok, self.spec, decide_bos(tok, self.spec.bos, meta))

    def _check_reachable(self) -> None:
        """One ``GET /models`` so a server that is not there is one clear error, not N failed samples."""
        import httpx

        try:
            r = self.client.get(f"{self.base_url}/models", timeout=min(10.0, self.timeout))
        except httpx.HTTPError as exc:
            raise ModelLoadError(self._scrub(
                f"server at {self.base_url} is unreachable ({type(exc).__name__}: {exc}); start it (e.g. "
                f"`vllm serve MODEL --port PORT`) or use --server auto")) from None
        if r.status_code in (401, 403):
            raise ModelLoadError(self._scrub(
                f"server at {self.base_url} refused the credentials (HTTP {r.status_code}: {_message(r)}); "
                f"check the key in {self.key_env or 'api_key_env (none was sent)'}"))
        if r.status_code == 404 and not self.base_url.endswith("/v1"):
            try:
                if self.client.get(f"{self.base_url}/v1/models", timeout=min(10.0, self.timeout)).status_code == 200:
                    raise ConfigError(f"server at {self.base_url} has no /models; the OpenAI API is under "
                                      f"{self.base_url}/v1: give --server {self.base_url}/v1")
            except httpx.HTTPError:
                pass
        if r.status_code == 200:
            try:
                data = r.json().get("data")
                self.models = [m for m in data if isinstance(m, dict) and "id" in m] if isinstance(data, list) else []
            except (ValueError, AttributeError):
                self.models = []

    def _default_served_model(self) -> str:
        """``model``, or for a local model behind your own server the name it serves (from ``/models``)."""
        if not _is_local(self.spec) or not self.models:
            return self.spec.model
        ids = [m["id"] for m in self.models]
        if not self.spec.adapter and self.spec.model in ids:
            return self.spec.model
        bases = [m["id"] for m in self.models if not m.get("parent")]
        loras = [m["id"] for m in self.models if m.get("parent")]
        pick = loras if self.spec.adapter else bases
        if len(pick) == 1:
            return pick[0]
        what = "LoRA module (the adapter)" if self.spec.adapter else "model"
        raise ConfigError(f"model {self.spec.name!r}: cannot tell which {what} of the server at {self.base_url} to use "
                          f"(it serves {', '.join(ids) or 'nothing'}); set --backend-option served_model=NAME")

    # -- the Backend interface ------------------------------------------------------------
    @classmethod
    def validate(cls, spec: ModelSpec) -> None:
        parse_options(spec)

    @classmethod
    def identity(cls, spec: ModelSpec) -> str | None:
        """Local weights (and ``server auto``) are identified as usual; a hosted model by its name, never a hub lookup."""
        if spec.options.get("server") == "auto" or _is_local(spec):
            return None
        ident = f"api:{spec.model}"
        if spec.revision:
            ident += f"@{spec.revision}"
        if spec.adapter:
            ident += f"+adapter-sha256:{folder_sha256(adapter_folder(spec))}"
        return ident

    @classmethod
    def open_pair(cls, pretrained: ModelSpec, finetuned: ModelSpec, threads: int | None = None, **kw):
        """Both backends at once.

        ``server auto``: one ``vllm serve`` for both when the fine-tuned model is the pretrained model plus a LoRA
        adapter, or the same model. Your own servers: both connections are opened (and checked) now, so a server
        that dies mid-run makes the rest of the run's samples errors instead of stopping the run.
        """
        po, fo = parse_options(pretrained), parse_options(finetuned)
        if po.get("server") == "auto" and fo.get("server") == "auto":
            same = all(getattr(pretrained, f) == getattr(finetuned, f)
                       for f in ("model", "revision", "dtype", "bos", "chat_template", "options"))
            if not same or pretrained.adapter:
                return None
            lora = adapter_folder(finetuned) if finetuned.adapter else None
            shared = _start_server(pretrained, po, lora)
            shared.acquire()  # held while the pair is built
            try:
                base = shared.server.served_name
                pre = cls(pretrained, shared=shared, served_model=base)
                try:
                    ft = cls(finetuned, shared=shared, served_model=LORA_NAME if lora else base)
                except BaseException:
                    pre.close()
                    raise
            finally:
                shared.release()
            return pre, ft
        if "base_url" in po and "base_url" in fo:
            pre = cls(pretrained)
            try:
                ft = cls(finetuned)
            except BaseException:
                pre.close()
                raise
            return pre, ft
        return None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"backend": self.name, "endpoint": self.endpoint, "base_url": self.base_url,
                             "served_model": self.served_model, "token_prompts": self.token_prompts,
                             "concurrency": self.concurrency, "timeout": self.timeout, "max_retries": self.max_retries}
        if self.shared is not None:
            s = self.shared.server
            d["server"] = {"kind": "auto", "command": "vllm serve", "pid": s.pid, "port": s.port, "log": str(s.log_path),
                           "lora_modules": sorted(s.lora_modules)}
        else:
            d["server"] = {"kind": "external"}
        if self.key_env:
            d["api_key_env"] = self.key_env  # the variable's name, never its value
        return d

    # -- requests ---------------------------------------------------------------------------
    def _request(self, prompt: str, sampling: Sampling) -> tuple[str, dict[str, Any]]:
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

    def _connection_failed(self, why: str, wake: threading.Event) -> None:
        with self._lock:
            self._down += 1
            self._down_why = why
            if self._down >= BREAKER:
                wake.set()  # requests sleeping before a retry give up now

    def _unreachable(self) -> Failed:
        return Failed(self._scrub(f"server unreachable: {self._down_why} ({self._down} connection failures in a row "
                                  f"at {self.base_url}; restart it and re-run the same command to resume)"))

    def _one(self, url: str, body: dict[str, Any], sampling: Sampling, cancel: threading.Event,
             wake: threading.Event) -> str | Failed:
        """One request with retries: the text, or :class:`Failed` with the reason."""
        import httpx

        last = "not attempted"
        for attempt in range(self.max_retries + 1):
            if self._down >= BREAKER:
                return self._unreachable()
            if cancel.is_set():
                return Failed("cancelled")
            delay = None
            try:
                r = self.client.post(url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                self._connection_failed(why, wake)
                last = f"connection error ({why})"
            except httpx.TimeoutException as exc:
                last = f"no answer within {self.timeout:g} s ({type(exc).__name__})"
            except httpx.HTTPError as exc:  # e.g. a malformed URL: retrying will not help
                return Failed(self._scrub(f"request to {url} failed: {type(exc).__name__}: {exc}"))
            else:
                with self._lock:
                    self._down = 0
                if r.status_code == 200:
                    return self._parse(r, url, sampling)
                last = f"HTTP {r.status_code} from {url}: {_message(r)}"
                if not _retryable(r.status_code):
                    return Failed(self._scrub(last))
                delay = _retry_after(r.headers.get("retry-after"))
            if attempt < self.max_retries:
                if delay is None:
                    delay = random.uniform(0.0, min(MAX_BACKOFF, self.backoff * 2 ** attempt))  # full jitter
                wake.wait(delay)
        return Failed(self._scrub(f"{last} (gave up after {self.max_retries + 1} attempts)"))

    def _parse(self, r, url: str, sampling: Sampling) -> str | Failed:
        try:
            choice = r.json()["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Failed(self._scrub(f"malformed response from {url} ({type(exc).__name__}): {r.text[:200]!r}"))
        return truncate_at_stop(text or "", sampling.stop)

    def _probe(self) -> bool:
        """After the breaker tripped: is the server back? One quick ``GET /models``."""
        import httpx

        try:
            self.client.get(f"{self.base_url}/models", timeout=min(5.0, self.timeout))
        except httpx.HTTPError as exc:
            self._down_why = f"{type(exc).__name__}: {exc}"
            return False
        with self._lock:
            self._down = 0
        return True

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str | Failed]:
        if not prompts:
            return []
        if self._down >= BREAKER and not self._probe():
            return [self._unreachable() for _ in prompts]
        results: list[str | Failed | None] = [None] * len(prompts)
        requests: list[tuple[int, str, dict]] = []
        for i, prompt in enumerate(prompts):  # tokenise here: a tokenizer is not safe to share between threads
            try:
                requests.append((i, *self._request(prompt, sampling)))
            except Exception as exc:
                results[i] = Failed(self._scrub(f"could not build the request: {type(exc).__name__}: {exc}"))
        todo = iter(requests)
        take, cancel, wake = threading.Lock(), threading.Event(), threading.Event()

        def worker() -> None:
            while not cancel.is_set():
                with take:
                    item = next(todo, None)
                if item is None:
                    return
                i, url, body = item
                try:
                    results[i] = self._one(url, body, sampling, cancel, wake)
                except Exception as exc:  # a bug: this prompt fails, the others go on
                    results[i] = Failed(self._scrub(f"{type(exc).__name__}: {exc}"))

        # daemon threads: Ctrl-C returns at once instead of waiting out the requests in flight
        threads = [threading.Thread(target=worker, daemon=True, name=f"openai-{i}")
                   for i in range(min(self.concurrency, len(requests)))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            cancel.set()
            wake.set()
            raise
        return [r if r is not None else Failed("no result") for r in results]

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()
        shared, self.shared = getattr(self, "shared", None), None
        if shared is not None:
            shared.release()


def _retryable(status: int) -> bool:
    return status in (408, 409, 425, 429) or (status >= 500 and status not in (501, 505))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped; None if absent or unreadable."""
    secs = parse_retry_after(value)
    return None if secs is None else min(MAX_RETRY_AFTER, secs)


def _message(r) -> str:
    """The server's error message (OpenAI error shape or plain text), shortened."""
    try:
        data = r.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
        return str(msg or json.dumps(data))[:300]
    except ValueError:
        return (r.text or r.reason_phrase or "").strip()[:300]


__all__ = ["OpenAIBackend", "parse_options", "OPTIONS"]
