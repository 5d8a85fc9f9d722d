"""openai: any OpenAI-compatible completions or chat endpoint (``vllm serve``, hosted APIs).

Options (``--backend-option KEY=VALUE``, or ``options:`` in a run YAML; strings are converted):

==================  =====================================================================
``base_url``        the ``/v1`` endpoint, e.g. ``http://127.0.0.1:8000/v1`` (``--server URL``); several
                    (``URL1,URL2,...`` or a YAML list) are a fleet: requests are balanced over them
                    (:mod:`harness.backends.endpoints`)
``server``          ``auto``: start ``vllm serve`` on a free loopback port for the run and stop
                    it at the end (``--server auto``); a URL here means ``base_url``
``endpoint``        ``completions`` (default) or ``chat``
``served_model``    the model name sent in requests. Default: ``model`` for a hosted model; for
                    a local model behind your own server, ``model`` if the server lists it
                    under ``/models``, else the one model (LoRA module, for a model with an
                    adapter) it lists. With ``server auto``: the name the base is served as
``api_key_env``     environment variable holding the API key (default ``OPENAI_API_KEY`` if set;
                    not used for ``server auto``; surrounding whitespace is stripped); sent as
                    ``Authorization: Bearer``, never logged, described or put in an error (not in
                    escaped form either). A URL with ``user:key@`` is refused: it would be recorded
``concurrency``     requests in flight at once, per server (default 8)
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

Requests go through :class:`harness.backends.endpoints.Fleet`: one
:class:`harness.backends.retrying_http.RetryingClient` per server (retries with
backoff, ``Retry-After``, a circuit breaker), ``concurrency`` requests in flight
on each; the options are checked in :mod:`harness.backends.openai_options`. A
request that still fails is returned as :class:`~harness.types.Failed` with the
status and the server's message; the runner records it as ERROR. After 8
connection failures in a row a server is gone: it is taken out and its
requests go to the other servers. When none is left, the rest of the batch,
and later batches while one probe of ``/models`` per server still finds none,
fail at once with ``server unreachable``. ``describe()`` (the manifest) counts
per server what it served, failed, left unanswered, and when and why it was
taken out.

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
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

from harness.backend import Backend
from harness.backends.endpoints import Endpoint, Fleet
from harness.backends.openai_options import DEFAULTS, ENDPOINTS, OPTIONS, is_local, parse_options
from harness.backends.prompting import PromptEncoder, decide_bos, truncate_at_stop
from harness.backends.retrying_http import BREAKER, message, retry_after
from harness.errors import ConfigError, ModelLoadError
from harness.pipeline.models import ModelSpec, adapter_folder, adapter_rank, folder_sha256, hub_commit, local_folder
from harness.types import Failed, Sampling

BASE_NAME, LORA_NAME = "base", "finetuned-lora"  # names the started server serves
_retry_after = retry_after  # the name tests import


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
    revision = hub_commit(spec) if not is_local(spec) else None
    server = VLLMServer(folder, opts.get("served_model") or BASE_NAME, dtype=spec.dtype, revision=revision,
                        lora_modules={LORA_NAME: str(lora)} if lora else None,
                        max_lora_rank=adapter_rank(lora) if lora else 8,
                        extra_args=opts.get("serve_args"), startup_timeout=opts["startup_timeout"])
    return _Shared(server.start())


# -- credentials ---------------------------------------------------------------------------

def api_key(spec: ModelSpec, key_env: str | None) -> str | None:
    """The key in ``$key_env`` without surrounding whitespace (a trailing newline from a file or a shell).

    A missing, empty or malformed key is a ConfigError that names the variable, never the value.
    """
    if not key_env:
        return None
    key = os.environ.get(key_env, "").strip()
    if not key:
        state = "is not set" if key_env not in os.environ else "is empty"
        raise ConfigError(f"model {spec.name!r}: api_key_env names {key_env}, but that environment variable {state}")
    if not all("!" <= c <= "~" for c in key):
        raise ConfigError(f"model {spec.name!r}: the API key in {key_env} has a space, control or non-ASCII "
                          f"character inside it, which no HTTP header can carry; set {key_env} to the key alone")
    return key


def no_url_credentials(spec: ModelSpec) -> None:
    """A server URL with ``user:password@`` is a ConfigError (shown masked): URLs are recorded in the manifest.

    A fleet's URLs are checked one by one, after the whole value (a password may hold a comma).
    """
    for opt in ("base_url", "server"):
        value = spec.options.get(opt)
        if isinstance(value, str):
            values = [value, *value.split(",")]
        else:
            values = [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []
        for value in values:
            value = value.strip()
            authority = re.split(r"[/?#]", value.split("://", 1)[-1], maxsplit=1)[0]  # [user:password@]host[:port]
            if "@" in authority:
                shown = value.replace(authority, "***@" + authority.rpartition("@")[2], 1)
                raise ConfigError(f"model {spec.name!r}: the server URL {shown} carries credentials, which would be "
                                  f"recorded in manifest.json and error messages; give it without them and put the key "
                                  f"in an environment variable named by --backend-option api_key_env=VAR (sent as "
                                  f"Authorization: Bearer, never recorded)")


# -- the backend -------------------------------------------------------------------------

class OpenAIBackend(Backend):
    """OpenAI-compatible HTTP server: vllm serve (--server auto starts one) or a hosted API; retries, concurrency."""

    name = "openai"
    capabilities = frozenset({"generate"})  # the completions API gives no prompt log-probabilities portably
    runtime_options = frozenset({"base_url", "server", "api_key_env", "concurrency", "timeout", "max_retries",
                                 "backoff", "serve_args", "startup_timeout"})
    default_batch_size = 64

    def __init__(self, spec: ModelSpec, threads: int | None = None, shared: _Shared | None = None,
                 served_model: str | None = None, **options) -> None:
        super().__init__(spec, **options)
        self.fleet: Fleet | None = None
        self.shared: _Shared | None = None
        no_url_credentials(spec)
        self.opts = parse_options(spec)
        self.endpoint = self.opts["endpoint"]
        self.concurrency, self.timeout = self.opts["concurrency"], self.opts["timeout"]
        self.max_retries = self.opts["max_retries"]
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
                self.base_url = self.opts["base_url"]  # URL1,URL2,... for a fleet
            key_env = self.opts.get("api_key_env") or (
                "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") and not auto else None)
            self.key_env = key_env
            self.fleet = Fleet(self.opts.get("base_urls") or [self.base_url], api_key(spec, key_env),
                               timeout=self.timeout, concurrency=self.concurrency, max_retries=self.max_retries,
                               backoff=self.opts["backoff"])
            listed = self._check_reachable()
            # the server we started knows its names; else the option, else what the server lists
            self.served_model = served_model or self.opts.get("served_model") or self._default_served_model()
            for url, ids in listed.items():
                if ids and self.served_model not in ids and (auto or is_local(spec)):
                    close = difflib.get_close_matches(self.served_model, ids, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise ConfigError(f"model {spec.name!r}: the server at {url} does not serve "
                                      f"{self.served_model!r}.{hint} It serves: {', '.join(ids)} (option served_model)")
            self.token_prompts = self.endpoint == "completions" and (auto or is_local(spec))
            self.encoder = self._encoder() if self.token_prompts else None
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.spec.name!r}, base_url={getattr(self, 'base_url', None)!r})"

    # -- construction helpers -------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return self.fleet.scrub(text) if self.fleet is not None else text

    def _encoder(self) -> PromptEncoder:
        from transformers import AutoTokenizer

        folder, meta = local_folder(self.spec)
        kw = {} if is_local(self.spec) else {"revision": hub_commit(self.spec)}
        try:
            tok = AutoTokenizer.from_pretrained(folder, **kw)
        except Exception as exc:
            raise ModelLoadError(f"model {self.spec.name!r}: could not load the tokenizer from {folder}: "
                                 f"{type(exc).__name__}: {exc}") from None
        return PromptEncoder(tok, self.spec, decide_bos(tok, self.spec.bos, meta))

    def _check_reachable(self) -> dict[str, list[str]]:
        """One ``GET /models`` per server, so a server that is not there is one clear error, not N failed samples.

        In a fleet, a server that is not there is taken out and the others serve the run; none there is the error.
        Returns the model IDs each server that answered lists; :attr:`models` is the first one's listing.
        """
        listed: dict[str, list[dict]] = {}
        down: list[tuple[Endpoint, str]] = []
        for ep in self.fleet.endpoints:
            models = self._list_models(ep, down)
            if models is not None:
                listed[ep.url] = models
        start = "start it (e.g. `vllm serve MODEL --port PORT`) or use --server auto"
        if not listed and len(down) == 1:
            raise ModelLoadError(self._scrub(f"server at {self.base_url} is unreachable ({down[0][1]}); {start}"))
        if not listed:
            each = "; ".join(f"{ep.url} ({why})" for ep, why in down)
            raise ModelLoadError(self._scrub(f"all {len(down)} servers are unreachable: {each}; start at least one "
                                             f"(e.g. `vllm serve MODEL --port PORT`) or use --server auto"))
        for ep, why in down:
            self.fleet.take_out(ep, why)
        self.models = next(iter(listed.values()))
        return {url: [m["id"] for m in models] for url, models in listed.items()}

    def _list_models(self, ep: Endpoint, down: list[tuple[Endpoint, str]]) -> list[dict] | None:
        """The models one server lists ([] if it lists none); None (noted in ``down``) when it is not there."""
        import httpx

        try:
            r = ep.client.get("models")
        except httpx.LocalProtocolError as exc:  # a request httpx will not send: not the server's fault
            raise ConfigError(self._scrub(
                f"model {self.spec.name!r}: could not send a request to {ep.url} ({type(exc).__name__}: "
                f"{exc}); check the options and the key in {self.key_env or 'api_key_env (none was sent)'}")) from None
        except httpx.HTTPError as exc:
            down.append((ep, self._scrub(f"{type(exc).__name__}: {exc}")))
            return None
        if r.status_code in (401, 403):
            raise ModelLoadError(self._scrub(
                f"server at {ep.url} refused the credentials (HTTP {r.status_code}: {message(r)}); "
                f"check the key in {self.key_env or 'api_key_env (none was sent)'}"))
        if r.status_code == 404 and not ep.url.endswith("/v1"):
            try:
                if ep.client.get("v1/models").status_code == 200:
                    raise ConfigError(f"server at {ep.url} has no /models; the OpenAI API is under "
                                      f"{ep.url}/v1: give --server {ep.url}/v1")
            except httpx.HTTPError:
                pass
        if r.status_code != 200:
            return []
        try:
            data = r.json().get("data")
            return [m for m in data if isinstance(m, dict) and "id" in m] if isinstance(data, list) else []
        except (ValueError, AttributeError):
            return []

    def _default_served_model(self) -> str:
        """``model``, or for a local model behind your own server the name it serves (from ``/models``)."""
        if not is_local(self.spec) or not self.models:
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
        no_url_credentials(spec)
        parse_options(spec)

    @classmethod
    def identity(cls, spec: ModelSpec) -> str | None:
        """Local weights (and ``server auto``) are identified as usual; a hosted model by its name, never a hub lookup."""
        if spec.options.get("server") == "auto" or is_local(spec):
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
        if self.fleet is not None:  # per server: served, failed, unanswered, taken out (and why)
            d["endpoints"] = self.fleet.describe()
        return d

    # -- requests ---------------------------------------------------------------------------
    def _request(self, prompt: str, sampling: Sampling) -> tuple[str, dict[str, Any]]:
        """The path under each server's URL and the JSON body."""
        body: dict[str, Any] = {"model": self.served_model, "max_tokens": sampling.max_new_tokens,
                                "temperature": 0.0 if sampling.greedy else sampling.temperature}
        if not sampling.greedy:
            body.update(top_p=sampling.top_p, seed=sampling.seed)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            return "chat/completions", body
        body["prompt"] = self.encoder.encode(prompt) if self.encoder is not None else prompt
        return "completions", body

    def _parse(self, r, url: str, sampling: Sampling) -> str | Failed:
        try:
            choice = r.json()["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Failed(self._scrub(f"malformed response from {url} ({type(exc).__name__}): {r.text[:200]!r}"))
        return truncate_at_stop(text or "", sampling.stop)

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str | Failed]:
        requests: list[tuple[str, dict] | Failed] = []
        for prompt in prompts:  # tokenise here: a tokenizer is not safe to share between threads
            try:
                requests.append(self._request(prompt, sampling))
            except Exception as exc:
                requests.append(Failed(self._scrub(f"could not build the request: {type(exc).__name__}: {exc}")))
        return self.fleet.post_all(requests, lambda r, url: self._parse(r, url, sampling))

    def close(self) -> None:
        fleet, self.fleet = getattr(self, "fleet", None), None
        if fleet is not None:
            fleet.close()
        shared, self.shared = getattr(self, "shared", None), None
        if shared is not None:
            shared.release()


__all__ = ["OpenAIBackend", "api_key", "no_url_credentials", "parse_options", "OPTIONS", "DEFAULTS", "ENDPOINTS",
           "BREAKER"]
