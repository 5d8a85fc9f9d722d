"""A fleet of OpenAI-compatible servers behind one openai backend (``--server URL1,URL2,...``).

* Each server (:class:`Endpoint`) keeps its own
  :class:`~harness.backends.retrying_http.RetryingClient`: connection pool,
  per-request timeout, retries with backoff, circuit breaker.
* :meth:`Fleet.post_all` sends a batch over the servers that are up,
  ``concurrency`` requests in flight on each, all taking from one queue (a
  faster server takes more), and returns the results in request order.
* A request a server gave no answer to (connection failures, breaker open:
  :class:`~harness.backends.retrying_http.NoAnswer`) goes back to the front of
  the queue for a server that has not tried it. A request that was answered
  (a result, or a final error such as HTTP 400) is never sent again.
* A server whose breaker opens is taken out (counted, with why, in
  :meth:`Fleet.describe`, which the manifest records); at the start of each
  later batch it gets one probe (``GET /models``) and is back when it answers.
* When no server is left, the rest of the batch fails at once with one line
  that names each server and why.

Which server answered is not part of any result or cache key: the fleet is
a runtime option, so a fleet restarted on other ports resumes from the cache.
"""
from __future__ import annotations

import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from harness.backends.retrying_http import NoAnswer, Parse, RetryingClient
from harness.types import Failed


@dataclass(eq=False)
class Endpoint:
    """One server of the fleet and what it did (cumulative over the backend's batches)."""

    client: RetryingClient
    up: bool = True
    served: int = 0  # answered with a result
    failed: int = 0  # answered with a final failure (an HTTP error, retries used up, a malformed answer)
    unanswered: int = 0  # gave no answer (connection failures, breaker open); sent to another server if one was left
    taken_out: int = 0
    back: int = 0  # times a probe found it back after it was taken out
    why: str = ""  # why it was last taken out

    @property
    def url(self) -> str:
        return self.client.base_url

    def describe(self) -> dict[str, Any]:
        d = {"url": self.url, "up": self.up, "served": self.served, "failed": self.failed,
             "unanswered": self.unanswered, "taken_out": self.taken_out, "back": self.back}
        if self.why:
            d["why"] = self.why
        return d


class Fleet:
    """The servers of one backend; ``client_options`` go to each :class:`RetryingClient` (``concurrency``: per server)."""

    def __init__(self, urls: Sequence[str], secret: str | None, **client_options: Any) -> None:
        self.endpoints: list[Endpoint] = []
        try:
            for url in urls:
                self.endpoints.append(Endpoint(RetryingClient(url, secret, **client_options)))
        except BaseException:
            self.close()
            raise
        self.lock = threading.Lock()

    def scrub(self, text: str) -> str:
        """``text`` with the API key masked (the same key goes to every server)."""
        return self.endpoints[0].client.scrub(text) if self.endpoints else text

    @property
    def up(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.up]

    def take_out(self, ep: Endpoint, why: str) -> None:
        """``ep`` gets no more requests (until a probe finds it back); says so on stderr when others are left."""
        if not ep.up:
            return
        ep.up, ep.why = False, self.scrub(why)
        ep.taken_out += 1
        left = len(self.up)
        if len(self.endpoints) > 1:
            after = f"its requests go to the other {left}" if left else "no server is left"
            print(f"[conjugate] server {ep.url} taken out ({ep.why}); {after}", file=sys.stderr, flush=True)

    def all_down(self) -> Failed:
        """The failure of a request no server is left for (one line)."""
        if len(self.endpoints) == 1:
            return Failed(self.endpoints[0].client.unreachable().reason)
        each = "; ".join(f"{e.url} ({e.why or 'taken out'})" for e in self.endpoints)
        return Failed(f"server unreachable: all {len(self.endpoints)} servers are down: {each}; restart them (or "
                      f"give others with --server URL1,URL2) and re-run the same command to resume")

    def _probe(self) -> None:
        """Each server that was taken out gets one ``GET /models``; one that answers is back."""
        for ep in self.endpoints:
            if not ep.up and ep.client.probe():
                ep.up = True
                ep.back += 1

    def post_all(self, requests: Sequence["tuple[str, dict] | Failed"], parse: Parse) -> list[Any]:
        """Each ``(path, body)`` POSTed to ``URL/path`` of one server, with retries; a Failed entry stays as it is."""
        if not requests:
            return []
        if not all(e.up for e in self.endpoints):
            self._probe()
        if not self.up:
            return [r if isinstance(r, Failed) else self.all_down() for r in requests]
        return _Batch(self, requests, parse).run()

    def describe(self) -> list[dict[str, Any]]:
        return [e.describe() for e in self.endpoints]

    def close(self) -> None:
        for e in self.endpoints:
            e.client.close()


class _Batch:
    """One :meth:`Fleet.post_all`: the queue, who tried what, and the worker threads (daemons: Ctrl-C returns)."""

    def __init__(self, fleet: Fleet, requests: Sequence["tuple[str, dict] | Failed"], parse: Parse) -> None:
        self.fleet, self.requests, self.parse = fleet, requests, parse
        self.results: list[Any] = [r if isinstance(r, Failed) else None for r in requests]
        self.queue = deque(i for i, r in enumerate(self.results) if r is None)
        self.pending = len(self.queue)
        self.tried: dict[int, set[int]] = {i: set() for i in self.queue}  # servers (by id) that gave no answer
        self.last: dict[int, Failed] = {}
        self.cond = threading.Condition(fleet.lock)
        self.cancel = threading.Event()
        self.wake = {id(e): threading.Event() for e in fleet.endpoints}  # per server: set when its breaker opens

    def run(self) -> list[Any]:
        threads = [threading.Thread(target=self.work, args=(ep,), daemon=True, name=f"http-{k}-{j}")
                   for k, ep in enumerate(self.fleet.up) for j in range(min(ep.client.concurrency, self.pending))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            self.cancel.set()
            for w in self.wake.values():
                w.set()
            raise
        return [r if r is not None else Failed("no result") for r in self.results]

    def work(self, ep: Endpoint) -> None:
        while (i := self.take(ep)) is not None:
            path, body = self.requests[i]
            try:
                result = ep.client.one(f"{ep.url}/{path}", body, self.parse, self.cancel, self.wake[id(ep)])
            except Exception as exc:  # a bug: this request fails, the others go on
                result = Failed(self.fleet.scrub(f"{type(exc).__name__}: {exc}"))
            self.done(ep, i, result)

    def take(self, ep: Endpoint) -> int | None:
        """The first queued request ``ep`` has not tried; None when the batch is done or ``ep`` is out."""
        with self.cond:
            while self.pending and ep.up and not self.cancel.is_set():
                i = next((i for i in self.queue if id(ep) not in self.tried[i]), None)
                if i is not None:
                    self.queue.remove(i)
                    return i
                self.cond.wait(0.2)  # what is queued was tried here; others may hand requests over
            return None

    def done(self, ep: Endpoint, i: int, result: Any) -> None:
        with self.cond:
            if isinstance(result, NoAnswer):
                ep.unanswered += 1
                self.tried[i].add(id(ep))
                self.last[i] = result
                if ep.client.down:
                    self.fleet.take_out(ep, ep.client.why_down)
                self.queue.appendleft(i)  # first in line for another server
                self.settle()
            else:
                self.results[i] = result
                self.pending -= 1
                if isinstance(result, Failed):
                    ep.failed += 1
                else:
                    ep.served += 1
            self.cond.notify_all()

    def settle(self) -> None:
        """Fail the queued requests that no server up is left to try (called with the lock held)."""
        up = [id(e) for e in self.fleet.endpoints if e.up]
        for i in [i for i in self.queue if not set(up) - self.tried[i]]:
            self.queue.remove(i)
            self.results[i] = self.fleet.all_down() if not up else Failed(self.last[i].reason)
            self.pending -= 1
