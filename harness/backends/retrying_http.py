"""A retrying JSON-over-HTTP client with a circuit breaker: one server of the openai backend's fleet.

* :meth:`RetryingClient.one` POSTs one request with retries on 408/409/425/429,
  5xx (not 501/505), timeouts and connection errors, with exponential backoff
  and full jitter; a ``Retry-After`` header is honoured (at most 60 s). Other
  statuses fail at once with the server's message.
* After :data:`BREAKER` connection failures in a row (the server is gone) the
  breaker opens: requests stop retrying and come back as :class:`NoAnswer`,
  as does a request whose last attempt found no server, so
  :class:`harness.backends.endpoints.Fleet` (which sends the batches,
  concurrently) can hand them to another server. :meth:`RetryingClient.probe`
  (one ``GET /models``) closes the breaker when the server is back.
* The API key is sent as ``Authorization: Bearer`` and scrubbed from every
  message, escaped renderings included (:meth:`RetryingClient.scrub`).
"""
from __future__ import annotations

import json
import random
import threading
from typing import Any, Callable, TypeVar
from urllib.parse import quote, quote_plus

from harness.io import parse_retry_after
from harness.types import Failed

BREAKER = 8  # consecutive connection failures that mean "the server is gone"
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is capped
MAX_BACKOFF = 30.0

T = TypeVar("T")
Parse = Callable[[Any, str], "T | Failed"]  # (httpx.Response with status 200, url) -> result


class NoAnswer(Failed):
    """The server gave no answer (connection failures, or its breaker is open): another server may."""


class RetryingClient:
    """One server's connection pool, retry policy and breaker (shared by all threads of a batch)."""

    def __init__(self, base_url: str, secret: str | None, *, timeout: float, concurrency: int, max_retries: int,
                 backoff: float) -> None:
        import httpx

        self.base_url, self._secret = base_url, secret
        self.timeout, self.concurrency, self.max_retries, self.backoff = timeout, concurrency, max_retries, backoff
        self._down, self._down_why, self._lock = 0, "", threading.Lock()
        self.http = httpx.Client(
            headers={"Authorization": f"Bearer {secret}"} if secret else {},
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))

    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``***`` (errors quote URLs, headers and server messages)."""
        return scrub(text, self._secret)

    def get(self, path: str, timeout: float = 10.0):
        """``GET base_url/path`` without retries (raises httpx.HTTPError)."""
        return self.http.get(f"{self.base_url}/{path.lstrip('/')}", timeout=min(timeout, self.timeout))

    @property
    def down(self) -> bool:
        """Whether the breaker is open (the server is gone)."""
        return self._down >= BREAKER

    def one(self, url: str, body: dict[str, Any], parse: Parse, cancel: threading.Event,
            wake: threading.Event) -> Any:
        """One request with retries: the parsed result, :class:`Failed` with the reason, or :class:`NoAnswer`.

        ``cancel`` stops it; ``wake`` cuts a backoff short (set when the breaker opens).
        """
        import httpx

        last, no_answer = "not attempted", False
        for attempt in range(self.max_retries + 1):
            if self._down >= BREAKER:
                return self.unreachable()
            if cancel.is_set():
                return Failed("cancelled")
            delay, no_answer = None, False
            try:
                r = self.http.post(url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                self._connection_failed(why, wake)
                last, no_answer = f"connection error ({why})", True
            except httpx.TimeoutException as exc:
                last = f"no answer within {self.timeout:g} s ({type(exc).__name__})"
            except httpx.HTTPError as exc:  # e.g. a malformed URL: retrying will not help
                return Failed(self.scrub(f"request to {url} failed: {type(exc).__name__}: {exc}"))
            else:
                with self._lock:
                    self._down = 0
                if r.status_code == 200:
                    return parse(r, url)
                last = f"HTTP {r.status_code} from {url}: {message(r)}"
                if not retryable(r.status_code):
                    return Failed(self.scrub(last))
                delay = retry_after(r.headers.get("retry-after"))
            if attempt < self.max_retries:
                if delay is None:
                    delay = random.uniform(0.0, min(MAX_BACKOFF, self.backoff * 2 ** attempt))  # full jitter
                wake.wait(delay)
        kind = NoAnswer if no_answer else Failed
        return kind(self.scrub(f"{last} (gave up after {self.max_retries + 1} attempts)"))

    def _connection_failed(self, why: str, wake: threading.Event) -> None:
        with self._lock:
            self._down += 1
            self._down_why = why
            if self._down >= BREAKER:
                wake.set()  # requests sleeping before a retry give up now

    def unreachable(self) -> NoAnswer:
        """The failure of a request this server cannot take: its breaker is open."""
        return NoAnswer(self.scrub(f"server unreachable: {self._down_why} ({self._down} connection failures in a row "
                                 f"at {self.base_url}; restart it and re-run the same command to resume)"))

    @property
    def why_down(self) -> str:
        """The last connection failure (``ConnectError: ...``)."""
        return self.scrub(self._down_why)

    def probe(self) -> bool:
        """After the breaker opened: is the server back? One quick ``GET /models``; an answer closes the breaker."""
        import httpx

        try:
            self.get("models", timeout=5.0)
        except httpx.HTTPError as exc:
            with self._lock:
                self._down = max(self._down, BREAKER)
                self._down_why = f"{type(exc).__name__}: {exc}"
            return False
        with self._lock:
            self._down = 0
        return True

    def close(self) -> None:
        self.http.close()


def renderings(secret: str) -> list[str]:
    """The ways ``secret`` can appear in a message: as is, and escaped by repr, bytes repr, JSON and URL quoting."""
    forms = {secret, repr(secret)[1:-1], repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe=""),
             quote_plus(secret, safe="")}
    return sorted((f for f in forms if f), key=len, reverse=True)  # longest first: no half-masked key


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every rendering of each secret (:func:`renderings`) replaced by ``***``."""
    for secret in secrets:
        if secret:
            for form in renderings(secret):
                text = text.replace(form, "***")
    return text


def retryable(status: int) -> bool:
    return status in (408, 409, 425, 429) or (status >= 500 and status not in (501, 505))


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped; None if absent or unreadable."""
    secs = parse_retry_after(value)
    return None if secs is None else min(MAX_RETRY_AFTER, secs)


def message(r) -> str:
    """The server's error message (OpenAI error shape or plain text), shortened."""
    try:
        data = r.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
        return str(msg or json.dumps(data))[:300]
    except ValueError:
        return (r.text or r.reason_phrase or "").strip()[:300]
