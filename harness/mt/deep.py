"""Online providers built on `deep-translator <https://pypi.org/project/deep-translator/>`_.

deep-translator knows each service's URL, parameters and response format,
but it sends every request through module-level ``requests.get/post``
without a timeout, reports most failures as bare exceptions without the HTTP
status, and has no way to point a translator at another endpoint. This module
adds, for every deep-translator provider:

* a **per-call timeout**: each deep-translator module used gets a small shim
  in place of its ``requests`` global (:class:`RequestsShim`); the shim adds
  ``timeout=`` (and ``proxies=``) from a thread-local set by
  :meth:`DeepTranslatorProvider.translate` for the duration of the call, and
  otherwise delegates to the real :mod:`requests` (``requests.exceptions``
  and everything else keep working; outside a call nothing changes);
* **classification** of failures into :class:`~harness.mt.provider.ProviderError`:
  the shim remembers (per thread) the last response's status, ``Retry-After``
  and body, so 408/425/429/5xx, timeouts and connection errors come back
  retryable, other 4xx, auth errors and "no translation found" not; the
  message is the provider's (deep-translator's text, HTTP status and a short
  excerpt of the body), with any API key scrubbed;
* options ``base_url`` (another endpoint: a self-hosted LibreTranslate, a test
  server), ``proxy`` (``http://host:port``, used for http and https; a
  password in it is masked in :meth:`describe`) and ``timeout`` (seconds; caps
  the timeout the service passes to :meth:`translate`);
* API keys read from an environment variable (option ``api_key_env``; each
  provider has a default such as ``DEEPL_API_KEY``), never stored in
  :attr:`~harness.mt.provider.Provider.options`, :meth:`describe`, logs or
  error messages;
* :meth:`supports` from deep-translator's offline language lists, accepting
  codes such as ``pt``, ``zh-CN``/``zh``, ``he``/``iw``, any case.

A subclass names the deep-translator class and how to build it; see
``translators/providers/google.py`` and its siblings.
"""
from __future__ import annotations

import difflib
import html
import importlib
import os
import re
import threading
from importlib.metadata import PackageNotFoundError, version as _dist_version
from typing import Any, ClassVar, Sequence
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from harness.io import parse_retry_after
from harness.mt.provider import Provider, ProviderError, TranslationError

EXCERPT_CHARS = 200


# -- the requests shim ------------------------------------------------------------------

class _State(threading.local):
    """Per-thread settings for the current call and what the last request did."""

    timeout: float | None = None
    proxies: dict[str, str] | None = None
    status: int | None = None
    retry_after: float | None = None
    response: Any = None
    exc: BaseException | None = None
    url: str | None = None

    def begin(self, timeout: float | None, proxies: dict[str, str] | None) -> None:
        self.timeout, self.proxies = timeout, proxies
        self.forget()

    def forget(self) -> None:
        self.status = self.retry_after = self.response = self.exc = self.url = None

    def end(self) -> None:
        self.timeout = self.proxies = None
        self.response = None  # do not keep a body alive between calls


STATE = _State()


class RequestsShim:
    """Stands in for ``requests`` inside one deep-translator module.

    ``get``/``post``/``request`` add the thread's ``timeout`` and ``proxies``
    when the caller gave none, and record the response (or exception) in
    :data:`STATE`; every other attribute is the real module's.
    """

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._send(method, url, kwargs)

    def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
        return self._send("GET", url, {"params": params, **kwargs})

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        return self._send("POST", url, {"data": data, "json": json, **kwargs})

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> Any:
        st = STATE
        if st.timeout is not None and kwargs.get("timeout") is None:
            kwargs["timeout"] = st.timeout
        if st.proxies and not kwargs.get("proxies"):
            kwargs["proxies"] = st.proxies
        st.forget()
        st.url = url
        try:
            resp = self._real.request(method, url, **kwargs)
        except Exception as exc:
            st.exc = exc
            raise
        st.response, st.status = resp, resp.status_code
        st.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return resp


_INSTALL_LOCK = threading.Lock()


def install_shim(module_name: str) -> None:
    """Put a :class:`RequestsShim` in place of ``module_name``'s ``requests`` global (once)."""
    mod = importlib.import_module(module_name)
    with _INSTALL_LOCK:
        current = getattr(mod, "requests", None)
        if current is None:
            raise RuntimeError(f"{module_name} has no module-level `requests`; deep-translator changed")
        if not isinstance(current, RequestsShim):
            mod.requests = RequestsShim(current)


def body_excerpt(response: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short, one-line excerpt of a response body (tags of an HTML page removed)."""
    if response is None:
        return ""
    try:
        text = response.text or ""
    except Exception:
        return ""
    text = text[:20000]
    if re.search(r"<(html|body|div|p|title|!doctype)\b", text, re.I):
        text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
        text = html.unescape(re.sub(r"(?s)<[^>]*>", " ", text))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _retryable_status(status: int) -> bool:
    return status in (408, 425, 429) or (status >= 500 and status not in (501, 505))


def _root_cause(exc: BaseException) -> str:
    """The useful part of a requests exception (urllib3 wraps the reason in two layers)."""
    inner: Any = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None)  # urllib3 MaxRetryError
    if isinstance(reason, BaseException):
        inner = reason
    if isinstance(inner, BaseException) and len(inner.args) > 1 and isinstance(inner.args[-1], BaseException):
        inner = inner.args[-1]  # ProtocolError('Connection aborted.', RemoteDisconnected(...))
    text = str(inner) if isinstance(inner, BaseException) else str(exc)
    text = re.sub(r"<[^<>]*object at 0x[0-9a-fA-F]+>:?\s*", "", text)
    text = re.sub(r"\w*Connection(?:Pool)?\(host=[^)]*\):\s*", "", text)
    return text.strip() or type(inner).__name__


def _coerce(provider: str, key: str, want: type, value: Any) -> Any:
    if want is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.strip().lower() in ("1", "true", "yes", "on")
    elif want is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif want is str:
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise TranslationError(f"provider {provider}: option {key} must be {want.__name__}, got {value!r}")


# -- language codes --------------------------------------------------------------------

#: other spellings of a code, tried when the code itself is not in a provider's list
ALIASES: dict[str, tuple[str, ...]] = {
    "he": ("iw",), "iw": ("he",), "jv": ("jw",), "jw": ("jv",), "fil": ("tl",), "tl": ("fil",),
    "nb": ("no",), "no": ("nb",), "zh": ("zh-CN", "zh-Hans"), "zh-cn": ("zh", "zh-Hans"),
    "zh-hans": ("zh-CN", "zh"), "zh-sg": ("zh-CN", "zh"), "zh-tw": ("zh-Hant",), "zh-hant": ("zh-TW",),
    "zh-hk": ("zh-TW", "zh-Hant"), "mni": ("mni-Mtei",),
}


def resolve_code(code: str, languages: dict[str, str]) -> str | None:
    """``code`` as the provider spells it (a value of ``languages``, name -> code), or None if not listed.

    Case-insensitive; ``pt_BR`` means ``pt-BR``; a language name ("portuguese")
    is accepted; a bare code matches the provider's plain variant of it
    (MyMemory lists ``en-GB`` for ``en``). A regional code that is not listed
    is not supported (``zh-HK`` is not ``zh-CN``).
    """
    c = code.strip().replace("_", "-")
    by_code = {v.lower(): v for v in languages.values()}
    by_name = {k.lower(): v for k, v in languages.items()}
    for cand in (c, *ALIASES.get(c.lower(), ())):
        low = cand.lower()
        if low in by_code:
            return by_code[low]
        if low in by_name:
            return by_name[low]
    if "-" not in c:
        low = c.lower()
        matches = [(len(name), name, v) for name, v in languages.items() if v.lower().split("-")[0] == low]
        if matches:
            return min(matches)[2]
    return None


# -- the provider ----------------------------------------------------------------------

def _deep_translator_version() -> str:
    try:
        return _dist_version("deep-translator")
    except PackageNotFoundError:  # pragma: no cover - the module imports below would fail first
        return "unknown"


class DeepTranslatorProvider(Provider):
    """Base class of the deep-translator providers; a subclass sets the ClassVars and :meth:`_build`."""

    #: ``"module:Class"`` of the deep-translator translator
    translator: ClassVar[str]
    #: deep-translator modules whose ``requests`` is shimmed (default: the translator's module)
    modules: ClassVar[tuple[str, ...]] = ()
    #: the service's endpoint when no ``base_url`` option is given
    default_base_url: ClassVar[str]
    #: deep-translator's language list (name -> code); None: not known offline (supports() says True)
    languages: ClassVar[dict[str, str] | None] = None
    #: whether the source may be ``auto``
    auto_source: ClassVar[bool] = True
    #: a pair deep-translator's constructor accepts; the real pair (checked by :meth:`code`) is set afterwards
    construct_pair: ClassVar[tuple[str, str]] = ("en", "fr")
    #: environment variable with the API key (None: the service takes none)
    key_env: ClassVar[str | None] = None
    #: whether a key is required (else optional)
    key_required: ClassVar[bool] = False
    #: provider-specific options (name -> type), besides base_url, proxy, api_key_env and timeout
    extra_options: ClassVar[dict[str, type]] = {}
    runtime_options: ClassVar[frozenset[str]] = Provider.runtime_options

    COMMON_OPTIONS: ClassVar[dict[str, type]] = {"base_url": str, "proxy": str, "api_key_env": str, "timeout": float}

    def __init__(self, **options: Any) -> None:
        known = {**self.COMMON_OPTIONS, **self.extra_options}
        if self.key_env is None:
            known.pop("api_key_env")
        opts: dict[str, Any] = {}
        for k, v in options.items():
            if "key" in k.lower() and k != "api_key_env":
                if self.key_env is None:
                    raise TranslationError(f"provider {self.name} takes no API key; remove option {k}")
                raise TranslationError(f"provider {self.name}: option {k} would put a secret on the command line or "
                                       f"in a file; put it in an environment variable ({self.key_env} by default, "
                                       f"or one you name with --mt-option api_key_env=NAME)")
            if k not in known:
                close = difflib.get_close_matches(k, list(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise TranslationError(f"provider {self.name}: unknown option {k!r}.{hint} "
                                       f"Known: {', '.join(sorted(known))}")
            opts[k] = _coerce(self.name, k, known[k], v)
        if "base_url" in opts and not opts["base_url"].startswith(("http://", "https://")):
            raise TranslationError(f"provider {self.name}: option base_url must start with http:// or https://, "
                                   f"got {opts['base_url']!r}")
        super().__init__(**opts)
        self.base_url: str = opts.get("base_url") or self.default_base_url
        self.key_var: str | None = opts.get("api_key_env") or self.key_env
        self._secret: str | None = self._read_key()
        proxy = opts.get("proxy")
        self.proxies = {"http": proxy, "https": proxy} if proxy else None
        self._scrub_list = [s for s in self._secrets() if s]
        module, _, attr = self.translator.partition(":")
        for m in self.modules or (module,):
            install_shim(m)
        self._cls = getattr(importlib.import_module(module), attr)
        self._local = threading.local()  # per-thread translators: deep-translator objects keep per-call state

    # -- keys and secrets ---------------------------------------------------------------
    def _read_key(self) -> str | None:
        if self.key_var is None:
            return None
        value = os.environ.get(self.key_var, "").strip()
        named = "api_key_env" in self.options
        if not value and (self.key_required or named):
            if named:
                raise TranslationError(
                    f"provider {self.name}: api_key_env names {self.key_var}, but that environment variable is not "
                    f"set; set it with `export {self.key_var}=...`")
            raise TranslationError(
                f"provider {self.name} needs an API key: set the environment variable {self.key_var} "
                f"(`export {self.key_var}=...`), or name another variable with --mt-option api_key_env=NAME")
        return value or None

    def _secrets(self) -> list[str]:
        out: list[str] = []
        if self._secret:
            out += [self._secret, quote(self._secret, safe=""), quote_plus(self._secret)]
        pw = urlsplit(self.options["proxy"]).password if self.options.get("proxy") else None
        if pw:
            out += [pw, quote(pw, safe="")]
        return sorted(set(out), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for s in self._scrub_list:
            text = text.replace(s, "***")
        return text

    # -- identity -----------------------------------------------------------------------
    @property
    def version(self) -> str:
        return f"deep-translator {_deep_translator_version()} {self.name}"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        opts = d["options"]
        if opts.get("proxy"):
            p = urlsplit(opts["proxy"])
            if p.password:
                netloc = f"{p.username}:***@{p.hostname or ''}" + (f":{p.port}" if p.port else "")
                opts["proxy"] = urlunsplit(p._replace(netloc=netloc))
        d["base_url"] = self.base_url
        if self.key_var:
            d["api_key_env"] = self.key_var  # the variable's name, never its value
        return d

    # -- languages ----------------------------------------------------------------------
    def language_list(self) -> dict[str, str] | None:
        """name -> code of the languages this provider accepts; None if not known offline."""
        return self.languages

    def code(self, lang: str, *, source: bool = False) -> str | None:
        """``lang`` as the provider spells it; None if unsupported."""
        if lang.strip().lower() == "auto":
            return "auto" if source and self.auto_source else None
        langs = self.language_list()
        if langs is None:
            return lang.strip() or None
        return resolve_code(lang, langs)

    def supports(self, source: str, target: str) -> bool:
        return self.code(source, source=True) is not None and self.code(target) is not None

    # -- translating --------------------------------------------------------------------
    def _build(self, source: str, target: str) -> Any:
        """A deep-translator translator for the pair, pointed at :attr:`base_url` (override as needed).

        deep-translator's constructors check codes against their own lists (and
        MyMemory's rejects plain ``en``); :meth:`code` has already checked the
        pair, so the translator is built for :attr:`construct_pair` and retargeted.
        """
        tr = self._cls(source=self.construct_pair[0], target=self.construct_pair[1], **self._kwargs())
        tr._source, tr._target = source, target
        tr._base_url = self.base_url
        return tr

    def _kwargs(self) -> dict[str, Any]:
        """Extra constructor arguments of the deep-translator class (key, region, ...)."""
        return {}

    def _translator(self, source: str, target: str) -> Any:
        cache = getattr(self._local, "translators", None)
        if cache is None:
            cache = self._local.translators = {}
        if (source, target) not in cache:
            cache[(source, target)] = self._build(source, target)
        return cache[(source, target)]

    def _postprocess(self, result: Any, text: str) -> str:
        """deep-translator's return value as the translation, or a ProviderError (checks of 200 answers)."""
        if isinstance(result, list):  # Yandex answers {"text": ["..."]}
            result = "".join(str(r) for r in result)
        if not isinstance(result, str):
            raise ProviderError(self._message("no translation in the answer", STATE), status=STATE.status)
        return result

    def translate(self, texts: Sequence[str], source: str, target: str, timeout: float) -> list[str]:
        out = []
        for text in texts:
            out.append(self._translate_one(text, source, target, timeout))
        return out

    def _translate_one(self, text: str, source: str, target: str, timeout: float) -> str:
        body = text.strip()
        if not body:
            return text
        src, tgt = self.code(source, source=True), self.code(target)
        if src is None or tgt is None:
            bad = source if src is None else target
            raise ProviderError(f"language {bad!r} is not supported by {self.name} "
                                f"(pair {source}->{target})", retryable=False)
        if self.options.get("timeout"):  # option timeout: a provider-specific cap on the service's timeout
            timeout = min(timeout, self.options["timeout"]) if timeout else self.options["timeout"]
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
        st = STATE
        st.begin(timeout, self.proxies)
        try:
            tr = self._translator(src, tgt)
            result = self._postprocess(tr.translate(body), body)
        except ProviderError as err:
            raise ProviderError(self.scrub(str(err)), retryable=err.retryable, status=err.status,
                                retry_after=err.retry_after) from None
        except Exception as exc:
            raise self._classify(exc, st, timeout) from None
        finally:
            st.end()
        return lead + result + trail

    # -- failures -----------------------------------------------------------------------
    def _where(self, st: _State) -> str:
        url = st.url or self.base_url
        try:
            p = urlsplit(url)
            return f"{p.scheme}://{p.hostname}" + (f":{p.port}" if p.port else "")
        except ValueError:
            return "the server"

    def _message(self, what: str, st: _State) -> str:
        msg = what
        if st.status is not None:
            excerpt = body_excerpt(st.response)
            msg += f" (HTTP {st.status}" + (f": {excerpt}" if excerpt else "") + ")"
        return self.scrub(msg)

    def _classify(self, exc: BaseException, st: _State, timeout: float) -> ProviderError:
        import requests

        err = st.exc or exc  # deep-translator sometimes swallows the request's exception (Microsoft)
        if isinstance(err, requests.exceptions.Timeout) or (
                isinstance(err, requests.exceptions.ConnectionError) and "timed out" in str(err).lower()):
            return ProviderError(self.scrub(
                f"timed out after {timeout:g} s waiting for {self._where(st)} "
                f"({type(err).__name__}: {_root_cause(err)})"), retryable=True)
        if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return ProviderError(self.scrub(
                f"connection to {self._where(st)} failed ({type(err).__name__}: {_root_cause(err)})"),
                retryable=True)
        if isinstance(err, requests.exceptions.RequestException):
            return ProviderError(self.scrub(f"request failed ({type(err).__name__}: "
                                            f"{_root_cause(err)})"), retryable=False)
        what = f"{type(exc).__name__}: {_exc_text(exc)}"
        status = st.status
        if status is not None and not 200 <= status < 300:
            return ProviderError(self._message(what, st), retryable=_retryable_status(status), status=status,
                                 retry_after=st.retry_after)
        # a 2xx answer deep-translator could not use, or an error reported in the body (Yandex: "code")
        body_status = _status_of(exc)
        if body_status is not None:
            return ProviderError(self._message(what, st), retryable=_retryable_status(body_status),
                                 status=body_status, retry_after=st.retry_after)
        return ProviderError(self._message(what, st), retryable=False, status=status)


def _exc_text(exc: BaseException) -> str:
    from deep_translator.exceptions import BaseError, RequestError, TooManyRequests

    if isinstance(exc, BaseError):  # "<the whole input text> --> message": the message is enough
        text = str(exc.message)
    elif isinstance(exc, TooManyRequests):  # deep-translator's text is about Google's quotas, whatever the service
        text = "too many requests"
    elif isinstance(exc, RequestError):  # "... api connection error ...", raised for any non-2xx status
        text = "request failed"
    elif isinstance(exc, StopIteration):  # MyMemory: neither a translation nor matches in the answer
        text = "no translation in the answer"
    else:
        text = str(exc)
    text = text.strip()
    text = re.sub(r"\s+", " ", text)
    return text[:300] or type(exc).__name__


def _status_of(exc: BaseException) -> int | None:
    """The status a deep-translator exception stands for when the HTTP status was 2xx (errors in the body)."""
    name = type(exc).__name__
    if name == "TooManyRequests":
        return 429
    if name == "ServerException":
        from deep_translator.exceptions import ServerException

        codes = {v: k for k, v in ServerException.errors.items()}
        return codes.get(str(exc.args[0]) if exc.args else "")
    return None
