"""The deep-translator providers and the TranslationService, against a local fake of the real services.

Nothing is faked inside Python: a threading HTTP server on 127.0.0.1 answers in
each service's real response format (Google's HTML page with a
``result-container`` div, MyMemory's/DeepL's/LibreTranslate's/Microsoft's/
Yandex's JSON), and the real deep-translator code parses it. The fake
"translates" en->fr word by word with a small dictionary (unknown tokens kept,
decimal points turned into commas as real MT does) and can be scripted to
answer 429 with Retry-After, 500, 403, to sleep past the timeout or to close
the connection.
"""
from __future__ import annotations

import html
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from harness.backend import Failed
from harness.errors import ConjugateError
from harness.mt.provider import ProviderError, TranslationError

WORDS = {
    "hello": "bonjour", "world": "monde", "the": "le", "cat": "chat", "dog": "chien", "is": "est", "a": "un",
    "and": "et", "this": "ceci", "sentence": "phrase", "says": "dit", "good": "bon", "old": "vieux",
    "years": "ans", "input": "entrée", "output": "sortie", "answer": "réponse", "translate": "traduisez",
    "following": "suivant", "red": "rouge", "house": "maison", "number": "nombre",
}


def fake_mt(text: str, target: str = "fr") -> str:
    """What the fake answers: en->fr word by word, unknown words and all other tokens kept."""
    if target.split("-")[0].lower() != "fr":
        return text

    def word(m: re.Match) -> str:
        w = m.group(0)
        t = WORDS.get(w.lower())
        return w if t is None else (t[0].upper() + t[1:] if w[0].isupper() else t)

    out = re.sub(r"[^\W\d_]+", word, text)
    return re.sub(r"(\d)\.(\d)", r"\1,\2", out)  # like a real MT system localising numbers


GOOGLE_PAGE = """<!DOCTYPE html><html lang="fr-FR"><head><meta charset="utf-8"><title>Google Traduction</title>
<style>.result-container{{font-size:1.1em}}</style></head><body><div class="root-container">
<div class="header"><a href="https://translate.google.com/m">Google Traduction</a></div>
<div class="languages-container"><div class="sl-and-tl"><a href="./m?sl={sl}&amp;tl={tl}&amp;mui=sl">{sl}</a></div></div>
<div class="input-container"><form action="/m"><input type="hidden" name="sl" value="{sl}">
<textarea name="q" class="input-field">{q}</textarea></form></div>
<div class="result-container">{result}</div>
<div class="links-container"><ul><li><a href="https://www.google.com/m?hl=fr">Google</a></li></ul></div>
</div></body></html>"""

SORRY_PAGE = """<html><head><title>Sorry...</title></head><body><div style="max-width:400px;">
<h1>We're sorry...</h1><p>... but your computer or network may be sending automated queries.
To protect our users, we can't process your request right now.</p></div></body></html>"""


class FakeMT:
    """A fake of the online MT services; routes by path prefix (/google, /mymemory, /deepl, ...)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple] = []  # actions for the next requests, in order
        self.always: tuple | None = None  # the action once the script is used up (None: answer)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:  # broken pipes after a client timeout
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def count(self, route: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if route is None or r["route"] == route)

    def texts(self, route: str) -> list[str]:
        with self._lock:
            return [r["text"] for r in self.requests if r["route"] == route]

    def _next(self) -> tuple:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            return self.always or ("ok",)

    # -- one request ----------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        body_json = None
        if raw and "json" in (h.headers.get("Content-Type") or ""):
            body_json = json.loads(raw)
        elif raw:
            params.update({k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()})
        route = parts.path.strip("/").split("/")[0]
        text, src, tgt = self._request_text(route, params, body_json)
        with self._lock:
            self.requests.append({"route": route, "method": method, "path": parts.path, "params": params,
                                  "headers": dict(h.headers), "text": text, "json": body_json})
        action = self._next()
        kind = action[0]
        if kind == "close":  # no answer at all: the client sees the connection closed
            h.close_connection = True
            return
        if kind == "sleep":
            if self.stop.wait(action[1]):
                return
            kind = "ok"
        if kind == "status":
            status = action[1]
            headers = action[2] if len(action) > 2 else {}
            body = action[3] if len(action) > 3 else self._error_body(route, status)
            ctype = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "application/json"
            return self._send(h, status, body, ctype, headers)
        if kind == "json":  # a 200 answer with this JSON (errors some services put in the body)
            return self._send(h, 200, json.dumps(action[1]), "application/json")
        self._answer(h, route, params, text, src, tgt)

    @staticmethod
    def _request_text(route: str, p: dict, body_json) -> tuple[str, str, str]:
        if route == "google":
            return p.get("q", ""), p.get("sl", ""), p.get("tl", "")
        if route == "mymemory":
            src, _, tgt = p.get("langpair", "|").partition("|")
            return p.get("q", ""), src, tgt
        if route == "deepl":
            return p.get("text", ""), p.get("source_lang", ""), p.get("target_lang", "")
        if route == "libre":
            return p.get("q", ""), p.get("source", ""), p.get("target", "")
        if route == "microsoft":
            return (body_json or [{}])[0].get("text", ""), p.get("from", ""), p.get("to", "")
        if route == "yandex":
            src, _, tgt = p.get("lang", "-").partition("-")
            return p.get("text", ""), src, tgt
        return "", "", ""

    @staticmethod
    def _error_body(route: str, status: int) -> str:
        if route == "google":
            if status == 429:
                return SORRY_PAGE
            return f"<html><body><p>Error {status} (Forbidden or broken)</p></body></html>"
        if route == "microsoft":
            return json.dumps({"error": {"code": status * 1000, "message": f"fake microsoft error {status}"}})
        if route == "yandex":
            return json.dumps({"code": status, "message": f"fake yandex error {status}"})
        return json.dumps({"message": f"fake error {status}", "responseStatus": status})

    def _answer(self, h, route, p, text, src, tgt) -> None:
        out = fake_mt(text, tgt)
        if route == "google":
            page = GOOGLE_PAGE.format(sl=html.escape(src), tl=html.escape(tgt), q=html.escape(text),
                                      result=html.escape(out))
            return self._send(h, 200, page, "text/html; charset=UTF-8")
        if route == "mymemory":
            data = {"responseData": {"translatedText": out, "match": 0.85}, "quotaFinished": False,
                    "mtLangSupported": None, "responseDetails": "", "responseStatus": 200,
                    "responderId": None, "exception_code": None,
                    "matches": [{"id": 0, "segment": text, "translation": out, "source": src, "target": tgt,
                                 "quality": 74, "reference": None, "usage-count": 0, "subject": "",
                                 "created-by": "MT!", "last-updated-by": "MT!", "match": 0.85,
                                 "model": "neural"}]}
            return self._send(h, 200, json.dumps(data, ensure_ascii=False), "application/json; charset=utf-8")
        if route == "deepl":
            return self._send(h, 200, json.dumps({"translations": [{"detected_source_language": src.upper(),
                                                                    "text": out}]}), "application/json")
        if route == "libre":
            return self._send(h, 200, json.dumps({"translatedText": out}), "application/json")
        if route == "microsoft":
            return self._send(h, 200, json.dumps([{"translations": [{"text": out, "to": tgt}]}]), "application/json")
        if route == "yandex":
            return self._send(h, 200, json.dumps({"code": 200, "lang": f"{src}-{tgt}", "text": [out]}),
                              "application/json")
        self._send(h, 404, "not found", "text/plain")

    @staticmethod
    def _send(h, status: int, body: str, ctype: str, headers: dict | None = None) -> None:
        data = body.encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass


@pytest.fixture
def fake():
    f = FakeMT()
    yield f
    f.close()


@pytest.fixture
def keys(monkeypatch):
    """API keys in the environment for the providers that need one."""
    secret = "sEcReT-k3y/+=&42:fx"
    for var in ("DEEPL_API_KEY", "MICROSOFT_API_KEY", "YANDEX_API_KEY"):
        monkeypatch.setenv(var, secret)
    monkeypatch.delenv("LIBRE_API_KEY", raising=False)
    return secret


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make(name: str, url: str, **options):
    from harness.registry import PROVIDERS

    base = {"google": "/google/m", "mymemory": "/mymemory/get", "deepl": "/deepl/v2/", "libre": "/libre/",
            "microsoft": "/microsoft", "yandex": "/yandex"}[name]
    return PROVIDERS.create(name, base_url=url + base, **options)


ALL = ["google", "mymemory", "deepl", "libre", "microsoft", "yandex"]


# -- providers ---------------------------------------------------------------------------

def test_google_translates_through_deep_translator(fake):
    g = make("google", fake.url)
    texts = ["Hello world", "The cat & the dog <b>3.5</b>", "  \n ", "  the red house\n"]
    out = g.translate(texts[:1], "en", "fr", 5) + g.translate(texts[1:2], "en", "fr", 5) \
        + g.translate(texts[2:3], "en", "fr", 5) + g.translate(texts[3:], "en", "fr", 5)
    assert out == ["Bonjour monde", "Le chat & le chien <b>3,5</b>", "  \n ", "  le rouge maison\n"]
    assert fake.count("google") == 3  # the blank text made no request
    r = fake.requests[0]
    assert r["method"] == "GET" and r["params"]["sl"] == "en" and r["params"]["tl"] == "fr"
    assert r["params"]["q"] == "Hello world"


def test_google_maps_language_codes(fake):
    g = make("google", fake.url)
    g.translate(["Hello"], "en", "zh", 5)
    g.translate(["Hello"], "EN", "he", 5)
    assert [r["params"]["tl"] for r in fake.requests] == ["zh-CN", "iw"]
    assert [r["params"]["sl"] for r in fake.requests] == ["en", "en"]


def test_mymemory_translates_with_email(fake):
    m = make("mymemory", fake.url, email="someone@example.org")
    assert m.translate(["Hello world"], "en", "fr", 5) == ["Bonjour monde"]
    p = fake.requests[0]["params"]
    assert p["langpair"] == "en-GB|fr-FR" and p["de"] == "someone@example.org" and p["q"] == "Hello world"
    assert "someone@example.org" not in json.dumps(m.describe())
    assert "email" not in m.cache_identity()


@pytest.mark.parametrize("name", ["deepl", "libre", "microsoft", "yandex"])
def test_keyed_providers_translate(fake, keys, name):
    p = make(name, fake.url, **({"region": "westeurope"} if name == "microsoft" else {}))
    assert p.translate(["Hello world"], "en", "fr", 5) == ["Bonjour monde"]
    req = fake.requests[0]
    if name == "deepl":
        assert req["params"]["auth_key"] == keys
    elif name == "libre":
        assert "api_key" not in req["params"]  # no LIBRE_API_KEY: no key sent
    elif name == "microsoft":
        assert req["headers"]["Ocp-Apim-Subscription-Key"] == keys
        assert req["headers"]["Ocp-Apim-Subscription-Region"] == "westeurope"
    elif name == "yandex":
        assert req["params"]["key"] == keys and req["params"]["lang"] == "en-fr"


def test_mymemory_errors_inside_a_200_answer(fake):
    m = make("mymemory", fake.url)
    fake.script = [("json", {"responseData": {"translatedText": "'XX' IS AN INVALID TARGET LANGUAGE"},
                             "responseDetails": "'XX' IS AN INVALID TARGET LANGUAGE", "responseStatus": "403",
                             "matches": []}),
                   ("json", {"responseData": {"translatedText": "MYMEMORY WARNING: YOU USED ALL AVAILABLE FREE "
                                                                "TRANSLATIONS FOR TODAY."},
                             "quotaFinished": True, "responseDetails": "", "responseStatus": 429, "matches": []})]
    with pytest.raises(ProviderError) as e1:
        m.translate(["Hello"], "en", "fr", 5)
    assert e1.value.status == 403 and not e1.value.retryable and "INVALID TARGET LANGUAGE" in str(e1.value)
    with pytest.raises(ProviderError) as e2:
        m.translate(["Hello"], "en", "fr", 5)
    assert e2.value.status == 429 and not e2.value.retryable and "quota" in str(e2.value)


@pytest.mark.parametrize("name", ["google", "mymemory"])
def test_429_is_retryable_with_retry_after(fake, name):
    p = make(name, fake.url)
    fake.script = [("status", 429, {"Retry-After": "7"})]
    with pytest.raises(ProviderError) as e:
        p.translate(["Hello world"], "en", "fr", 5)
    err = e.value
    assert err.retryable and err.status == 429 and err.retry_after == 7.0
    assert "HTTP 429" in str(err) and "TooManyRequests" in str(err)
    if name == "google":
        assert "automated queries" in str(err)  # an excerpt of the page, tags removed
        assert "<" not in str(err)


def test_500_is_retryable_403_is_not(fake):
    g = make("google", fake.url)
    fake.script = [("status", 500), ("status", 403), ("status", 503, {"Retry-After": "2"})]
    with pytest.raises(ProviderError) as e500:
        g.translate(["Hello"], "en", "fr", 5)
    assert e500.value.retryable and e500.value.status == 500 and "HTTP 500" in str(e500.value)
    with pytest.raises(ProviderError) as e403:
        g.translate(["Hello"], "en", "fr", 5)
    assert not e403.value.retryable and e403.value.status == 403
    assert "RequestError: request failed" in str(e403.value) and "Forbidden or broken" in str(e403.value)
    with pytest.raises(ProviderError) as e503:
        g.translate(["Hello"], "en", "fr", 5)
    assert e503.value.retryable and e503.value.retry_after == 2.0


def test_deepl_auth_error_is_not_retryable_and_never_shows_the_key(fake, keys):
    d = make("deepl", fake.url)
    fake.script = [("status", 403, {}, json.dumps({"message": "Wrong endpoint"})), ("status", 456)]
    with pytest.raises(ProviderError) as e:
        d.translate(["Hello"], "en", "fr", 5)
    # deep-translator's AuthorizationException text is "Unauthorized access with the api key <key>"
    assert not e.value.retryable and e.value.status == 403
    assert "Unauthorized access" in str(e.value) and "Wrong endpoint" in str(e.value)
    assert keys not in str(e.value) and "sEcReT" not in str(e.value)
    with pytest.raises(ProviderError) as e456:  # DeepL's "quota exceeded"
        d.translate(["Hello"], "en", "fr", 5)
    assert not e456.value.retryable and e456.value.status == 456


def test_api_key_never_in_errors_or_descriptions(fake, keys):
    port = closed_port()
    for name in ("deepl", "microsoft", "yandex"):
        p = make(name, fake.url)
        dump = json.dumps(p.describe()) + p.cache_identity() + repr(p.options)
        assert "sEcReT" not in dump
        assert p.describe()["api_key_env"] in ("DEEPL_API_KEY", "MICROSOFT_API_KEY", "YANDEX_API_KEY")
        # connection refused: requests' message carries the URL, which for DeepL holds ?auth_key=<key>
        q = make(name, f"http://127.0.0.1:{port}")
        with pytest.raises(ProviderError) as e:
            q.translate(["Hello"], "en", "fr", 2)
        assert e.value.retryable and "sEcReT" not in str(e.value) and "k3y" not in str(e.value)


def test_slow_server_times_out_within_the_timeout(fake):
    g = make("google", fake.url)
    fake.always = ("sleep", 5)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as e:
        g.translate(["Hello world"], "en", "fr", 0.5)
    elapsed = time.monotonic() - t0
    assert elapsed < 3, elapsed
    assert e.value.retryable and e.value.status is None
    assert "timed out after 0.5 s" in str(e.value)


def test_microsoft_timeout_is_classified_although_deep_translator_swallows_it(fake, keys):
    # deep-translator's Microsoft code catches RequestException, logs it and then fails on None.json()
    m = make("microsoft", fake.url)
    fake.always = ("sleep", 5)
    with pytest.raises(ProviderError) as e:
        m.translate(["Hello"], "en", "fr", 0.3)
    assert e.value.retryable and "timed out" in str(e.value)


def test_connection_refused_and_closed_are_retryable(fake):
    port = closed_port()
    g = make("google", f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as e:
        g.translate(["Hello"], "en", "fr", 2)
    assert e.value.retryable and e.value.status is None
    assert f"connection to http://127.0.0.1:{port} failed" in str(e.value) and "refused" in str(e.value).lower()
    g2 = make("google", fake.url)
    fake.script = [("close",)]
    with pytest.raises(ProviderError) as e2:
        g2.translate(["Hello"], "en", "fr", 2)
    assert e2.value.retryable and "closed connection" in str(e2.value).lower()


@pytest.mark.parametrize("name,var", [("deepl", "DEEPL_API_KEY"), ("microsoft", "MICROSOFT_API_KEY"),
                                      ("yandex", "YANDEX_API_KEY")])
def test_missing_key_is_a_clear_error(monkeypatch, name, var):
    from harness.registry import PROVIDERS

    monkeypatch.delenv(var, raising=False)
    with pytest.raises(TranslationError) as e:
        PROVIDERS.create(name)
    assert isinstance(e.value, ConjugateError)
    assert var in str(e.value) and f"export {var}=" in str(e.value) and "api_key_env" in str(e.value)
    monkeypatch.delenv("MY_MT_KEY", raising=False)
    with pytest.raises(TranslationError, match="MY_MT_KEY"):
        PROVIDERS.create(name, api_key_env="MY_MT_KEY")
    monkeypatch.setenv("MY_MT_KEY", "other-secret")
    assert PROVIDERS.create(name, api_key_env="MY_MT_KEY").describe()["api_key_env"] == "MY_MT_KEY"


def test_options_are_checked():
    from harness.registry import PROVIDERS

    with pytest.raises(TranslationError, match="Did you mean 'base_url'"):
        PROVIDERS.create("google", base_ur="http://x")
    with pytest.raises(TranslationError, match="takes no API key"):
        PROVIDERS.create("google", api_key="abc")
    with pytest.raises(TranslationError, match="environment variable") as e:
        PROVIDERS.create("deepl", auth_key="abc123")
    assert "abc123" not in str(e.value)
    with pytest.raises(TranslationError, match="http:// or https://"):
        PROVIDERS.create("libre", base_url="localhost:5000")
    p = PROVIDERS.create("google", proxy="http://user:pa55word@proxy.example:3128")
    assert "pa55word" not in json.dumps(p.describe()) and "proxy.example" in json.dumps(p.describe())


def test_supports_and_version(keys):
    from harness.registry import PROVIDERS

    g = PROVIDERS.create("google")
    assert g.supports("en", "pt") and g.supports("en", "zh-CN") and g.supports("en", "hu")
    assert g.supports("auto", "fr") and g.supports("EN", "pt_br") is False
    assert not g.supports("en", "xx-bogus") and not g.supports("bogus", "fr")
    m = PROVIDERS.create("mymemory")
    assert m.supports("en", "pt") and m.supports("en", "pt-BR") and not m.supports("en", "qqq")
    assert PROVIDERS.create("deepl").supports("en", "pt") and not PROVIDERS.create("deepl").supports("en", "hy")
    assert g.version.startswith("deep-translator 1.") and g.version.endswith("google")
    assert g.max_chars < 5000 and m.max_chars < 500
    assert PROVIDERS.create("google", base_url="http://a").cache_identity() != g.cache_identity()


def test_shim_keeps_requests_working():
    import requests

    import deep_translator.google as dg
    from harness.mt.deep import RequestsShim

    make("google", "http://127.0.0.1:1")
    assert isinstance(dg.requests, RequestsShim)
    assert dg.requests.exceptions is requests.exceptions and dg.requests.codes.ok == 200


# -- through the TranslationService ------------------------------------------------------

def service(fake, tmp_path, name="google", **kw):
    from harness.mt.service import TranslationService

    base = {"google": "/google/m", "mymemory": "/mymemory/get"}[name]
    kw = {"timeout": 5.0, "max_retries": 3, "backoff": 0.01, "rate_limit": 1000.0, **kw}
    return TranslationService(name, {"base_url": fake.url + base}, cache=tmp_path / "mt.sqlite", **kw)


def test_service_429_then_success(fake, tmp_path):
    svc = service(fake, tmp_path)
    fake.script = [("status", 429, {"Retry-After": "0"})]
    try:
        assert svc.translate(["Hello world"], "en", "fr") == ["Bonjour monde"]
    finally:
        svc.close()
    assert fake.count() == 2 and svc.stats["requests"] == 2 and svc.stats["failures"] == 0


def test_service_timeout_fails_in_bounded_time(fake, tmp_path):
    svc = service(fake, tmp_path, timeout=0.3, max_retries=2)
    fake.always = ("sleep", 5)
    t0 = time.monotonic()
    try:
        out = svc.translate(["Hello world", "The red house", "A green tree", "The cat"], "en", "fr")
    finally:
        svc.close()
    elapsed = time.monotonic() - t0
    assert all(isinstance(o, Failed) for o in out)
    assert "timed out after 0.3 s" in out[0].reason and "timed out after 0.3 s" in out[1].reason
    # 3 attempts of 0.3 s for each of two texts; then the provider counts as down and the rest fail at once
    assert "not attempted" in out[2].reason and "not attempted" in out[3].reason
    assert elapsed < 6, elapsed
    assert fake.count() == 6


@pytest.mark.parametrize("name", ["google", "mymemory"])
def test_service_splits_long_text_and_rejoins_in_order(fake, tmp_path, name):
    text = " ".join(f"This sentence says the cat number {i} is a good cat." for i in range(80))
    assert len(text) > 4000
    svc = service(fake, tmp_path, name)
    try:
        (out,) = svc.translate([text], "en", "fr")
        limit = svc.provider().max_chars
    finally:
        svc.close()
    assert out == fake_mt(text)
    sent = fake.texts(name)
    assert len(sent) >= (3 if name == "google" else 9)
    assert all(0 < len(s) <= limit for s in sent), [len(s) for s in sent]
    assert all(s.endswith(".") for s in sent)  # cut at sentence boundaries


def test_service_keeps_protected_spans(fake, tmp_path):
    prompt = ("Translate the following sentence.\n"
              "Input: the cat is 3.5 years old and the dog is 12.\n"
              "Output: {{ answer }}\n"
              "```\nprint('the cat')\n```\n"
              "The answer is 42.")
    svc = service(fake, tmp_path)
    try:
        (out,) = svc.translate([prompt], "en", "fr")
    finally:
        svc.close()
    assert out == ("Traduisez le suivant phrase.\n"
                   "Input: le chat est 3.5 ans vieux et le chien est 12.\n"
                   "Output: {{ answer }}\n"
                   "```\nprint('the cat')\n```\n"
                   "Le réponse est 42.")
    sent = " ".join(fake.texts("google"))
    assert "3.5" not in sent and "{{" not in sent and "print" not in sent and "Input:" not in sent


def test_service_cache_hit_makes_no_request(fake, tmp_path):
    texts = ["Hello world", "The red house", "Hello world"]
    svc = service(fake, tmp_path)
    try:
        first = svc.translate(texts, "en", "fr")
    finally:
        svc.close()
    n = fake.count()
    assert first == ["Bonjour monde", "Le rouge maison", "Bonjour monde"] and n == 2
    svc2 = service(fake, tmp_path)
    try:
        assert svc2.translate(texts, "en", "fr") == first
    finally:
        svc2.close()
    assert fake.count() == n and svc2.stats["requests"] == 0 and svc2.stats["cache_hits"] == 2


def test_service_does_not_cache_failures(fake, tmp_path):
    fake.always = ("status", 500)
    svc = service(fake, tmp_path, max_retries=1)
    try:
        (out,) = svc.translate(["Hello world"], "en", "fr")
    finally:
        svc.close()
    assert isinstance(out, Failed) and "HTTP 500" in out.reason and fake.count() == 2
    fake.always = None
    svc2 = service(fake, tmp_path)
    try:
        assert svc2.translate(["Hello world"], "en", "fr") == ["Bonjour monde"]
    finally:
        svc2.close()
    assert fake.count() == 3 and svc2.stats["cache_hits"] == 0
