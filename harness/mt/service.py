"""TranslationService: pack, then cache, then the provider, with structure kept and failures recorded.

For each text: a frozen pack entry wins; otherwise the text is cut into
segments (:mod:`harness.mt.text`: code, markers, line breaks and inline spans
kept), long lines are split at sentence boundaries, and each unit is looked up
in the SQLite cache or sent to the provider, with a per-call timeout, retries
with exponential backoff and jitter on retryable errors (429, 5xx, timeouts,
connection errors; ``Retry-After`` honoured) and an optional rate limit.
Each batch of finished units is cached at once.

A text whose translation failed comes back as :class:`harness.backend.Failed`
with the provider's message. When a provider is unreachable (two texts in a row end
their retries in a connection error or timeout), the rest of that call's texts
fail at once with that reason instead of each waiting through its own retries;
the next call tries the provider again.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ConfigError
from harness.mt.cache import TranslationCache
from harness.mt.pack import Pack
from harness.mt.provider import Provider, ProviderError, TranslationError
from harness.mt.text import DEFAULT_MARKERS, Segment, segments, split_sentences, strip_keep
from harness.types import Failed

MAX_RETRY_AFTER = 60.0
#: texts in a row that end in a connection error or timeout (after their retries) before the rest of a
#: translate() call fails at once instead of each waiting through its own retries
UNREACHABLE_AFTER = 2


def default_cache_path() -> Path:
    from harness.pipeline.models import cache_root

    return cache_root() / "translations.sqlite"


class _Job:
    """One input text on its way through: its segments, the units they need, and the assembled result."""

    def __init__(self, text: str, max_chars: int, markers: tuple[str, ...], protect: bool) -> None:
        self.text = text
        self.max_chars = max_chars
        self.segs = segments(text, markers, protect)
        self.result: str | None = None
        self.error: str | None = None

    def units(self) -> list[str]:
        out = []
        for seg in self.segs:
            if seg.translate:
                out.extend(body for _, body, _ in map(strip_keep, split_sentences(seg.masked, self.max_chars)) if body)
        return out

    def assemble(self, done: dict[str, str]) -> bool:
        """Build the result from translated units; False if a line lost a protected span (it is then cut into pieces)."""
        parts: list[str] = []
        new_segs: list[Segment] = []
        retry = False
        for seg in self.segs:
            if not seg.translate:
                parts.append(seg.text)
                new_segs.append(seg)
                continue
            tr = "".join(lead + (done[body] if body else "") + trail
                         for lead, body, trail in map(strip_keep, split_sentences(seg.masked, self.max_chars)))
            restored = seg.restore(tr)
            if restored is None:
                retry = True
                new_segs.extend(seg.fallback_pieces())
            else:
                parts.append(restored)
                new_segs.append(Segment(restored, False))
        if retry:
            self.segs = new_segs
            return False
        self.result = "".join(parts)
        return True


class TranslationService:
    """Translate texts between languages with one default provider (others on request), cached and resumable.

    ``options`` go to the default provider's constructor; ``provider_options``
    maps other provider names to theirs. With ``pack_only`` every translation
    must come from ``pack``.
    """

    def __init__(self, provider: str = "google", options: dict[str, Any] | None = None, *,
                 provider_options: dict[str, dict[str, Any]] | None = None, cache: str | Path | None = None,
                 pack: Pack | str | Path | None = None, pack_only: bool = False, timeout: float = 20.0,
                 max_retries: int = 4, backoff: float = 1.0, rate_limit: float | None = None,
                 markers: tuple[str, ...] = DEFAULT_MARKERS, protect: bool = True, progress: bool = False) -> None:
        if timeout <= 0:
            raise ConfigError(f"translation timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ConfigError(f"translation max_retries must be >= 0, got {max_retries}")
        self.default = provider
        self.provider_options = {**(provider_options or {}), provider: dict(options or {})}
        self.cache_path = Path(cache) if cache else default_cache_path()
        self._cache: TranslationCache | None = None
        self.pack = Pack.load(pack) if isinstance(pack, (str, Path)) else pack
        self.pack_only = pack_only
        if pack_only and self.pack is None:
            raise ConfigError("pack_only needs a translation pack")
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.rate_limit = rate_limit
        self.markers, self.protect, self.progress = tuple(markers), protect, progress
        self._providers: dict[str, Provider] = {}
        self._down: dict[str, str] = {}
        self._unreachable = 0
        self._last_call = 0.0
        self._rng = random.Random(0)
        self.stats = {"requests": 0, "cache_hits": 0, "pack_hits": 0, "failures": 0, "retries": 0}

    # -- pieces -------------------------------------------------------------------
    @property
    def cache(self) -> TranslationCache:
        if self._cache is None:
            self._cache = TranslationCache(self.cache_path)
        return self._cache

    def provider(self, name: str | None = None) -> Provider:
        from harness.registry import PROVIDERS

        name = name or self.default
        if name not in self._providers:
            self._providers[name] = PROVIDERS.create(name, **self.provider_options.get(name, {}))
        return self._providers[name]

    def identity(self, name: str | None = None) -> str:
        """What translations are recorded under: the pack's digest, or the provider's cache identity."""
        if self.pack_only:
            return f"pack:{self.pack.digest}"
        return self.provider(name).cache_identity() + (f"+pack:{self.pack.digest}" if self.pack else "")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"default_provider": self.default, "pack_only": self.pack_only, "stats": dict(self.stats),
                             "providers": {n: p.describe() for n, p in self._providers.items()},
                             "timeout": self.timeout, "max_retries": self.max_retries}
        if self.pack:
            d["pack"] = self.pack.describe()
        if not self.pack_only:
            d["cache"] = str(self.cache_path)
        return d

    # -- translation ----------------------------------------------------------------
    def translate(self, texts: Sequence[str], source: str, target: str, *, provider: str | None = None,
                  desc: str | None = None, strict: bool = False) -> list[str | Failed]:
        """One result per text: its translation, or :class:`Failed` with the reason.

        ``strict``: a text missing from the pack in pack-only mode raises
        :class:`TranslationError` naming it (a pack that should cover a task's texts does not).
        """
        self._down.clear()  # a provider found unreachable is tried again on the next call
        self._unreachable = 0
        results: list[str | Failed | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            if source == target or not t.strip():
                results[i] = t
                continue
            hit = self.pack.get(source, target, t) if self.pack else None
            if hit is None and self.pack and t.strip() != t:
                hit = self.pack.get(source, target, t.strip())
                hit = None if hit is None else strip_keep(t)[0] + hit + strip_keep(t)[2]
            if hit is not None:
                self.stats["pack_hits"] += 1
                results[i] = hit
            elif self.pack_only:
                if strict:
                    n = sum(1 for x in texts if x.strip() and self.pack.get(source, target, x.strip()) is None)
                    raise TranslationError(
                        f"translation pack {self.pack.path} has no {source}->{target} entry for {t[:200]!r}"
                        f"{f' ({n - 1} more texts are missing)' if n > 1 else ''}; add them with `conjugate translate "
                        f"--to {target} --out PACK` (or --import-parallel), or pass --mt-provider to translate what "
                        f"the pack lacks")
                results[i] = Failed(f"no {source}->{target} translation in pack {self.pack.path} for {t[:120]!r}")
                self.stats["failures"] += 1
            else:
                todo.setdefault(t, []).append(i)
        if todo:
            name = provider or self.default
            prov = self.provider(name)
            if not prov.supports(source, target):
                raise TranslationError(f"provider {name!r} cannot translate {source}->{target}; "
                                       f"pick another with --mt-provider (see `conjugate list providers`)")
            jobs = {t: _Job(t, prov.max_chars, self.markers, self.protect) for t in todo}
            self._run_jobs(list(jobs.values()), prov, source, target, desc)
            for t, job in jobs.items():
                out: str | Failed = job.result if job.error is None else Failed(job.error)
                if job.error is not None:
                    self.stats["failures"] += 1
                for i in todo[t]:
                    results[i] = out
        return results  # type: ignore[return-value]

    def _run_jobs(self, jobs: list[_Job], prov: Provider, source: str, target: str, desc: str | None) -> None:
        ident = prov.cache_identity()
        done: dict[str, str] = {}
        failed: dict[str, str] = {}
        pending = jobs
        for _round in range(3):
            need = list(dict.fromkeys(u for j in pending for u in j.units() if u not in done and u not in failed))
            if need:
                hits = self.cache.get_many(ident, source, target, need)
                self.stats["cache_hits"] += len(hits)
                done.update(hits)
                need = [u for u in need if u not in hits]
                if need:
                    self._call(prov, ident, need, source, target, done, failed, desc)
            still = []
            for j in pending:
                bad = next((u for u in j.units() if u in failed), None)
                if bad is not None:
                    j.error = failed[bad]
                elif not j.assemble(done):
                    still.append(j)
            pending = still
            if not pending:
                return
        for j in pending:  # cannot happen: fallback pieces keep every span
            j.error = "translation lost a protected span"

    def _call(self, prov: Provider, ident: str, units: list[str], source: str, target: str,
              done: dict[str, str], failed: dict[str, str], desc: str | None) -> None:
        bar = None
        if self.progress and len(units) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(units), desc=desc or f"translate {source}->{target} ({prov.name})", unit="text",
                       leave=False)
        try:
            for k in range(0, len(units), max(1, prov.batch_size)):
                batch = units[k : k + max(1, prov.batch_size)]
                try:
                    out = self._with_retries(prov, batch, source, target)
                except ProviderError as exc:
                    for u in batch:
                        failed[u] = f"{prov.name}: {exc}"
                else:
                    done.update(zip(batch, out))
                    self.cache.put_many(ident, source, target, zip(batch, out))
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()

    def _with_retries(self, prov: Provider, batch: list[str], source: str, target: str) -> list[str]:
        if prov.name in self._down:
            raise ProviderError(f"not attempted: {self._down[prov.name]}")
        attempt = 0
        while True:
            self._pace(prov)
            self.stats["requests"] += 1
            try:
                out = prov.translate(batch, source, target, self.timeout)
                if len(out) != len(batch):
                    raise ProviderError(f"returned {len(out)} translations for {len(batch)} texts")
                self._unreachable = 0
                return [str(x) for x in out]
            except ProviderError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    if exc.retryable and exc.status is None:  # unreachable or timing out: do not wait on every unit
                        self._unreachable += 1
                        if self._unreachable >= UNREACHABLE_AFTER:
                            self._down[prov.name] = f"{prov.name} unreachable ({exc})"
                    if attempt:
                        raise ProviderError(f"{exc} (after {attempt + 1} attempts)", retryable=exc.retryable,
                                            status=exc.status) from None
                    raise
                delay = self.backoff * (2 ** attempt) * (0.5 + self._rng.random())
                if exc.retry_after is not None:
                    delay = max(delay, min(MAX_RETRY_AFTER, exc.retry_after))
                attempt += 1
                self.stats["retries"] += 1
                time.sleep(delay)
            except TranslationError:
                raise
            except Exception as exc:  # a provider bug must not lose the run; record it for these texts
                raise ProviderError(f"{type(exc).__name__}: {exc}") from None

    def _pace(self, prov: Provider) -> None:
        rate = self.rate_limit if self.rate_limit is not None else (5.0 if prov.online else None)
        if rate:
            wait = self._last_call + 1.0 / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_call = time.monotonic()

    def close(self) -> None:
        for p in self._providers.values():
            p.close()
        self._providers.clear()
        if self._cache is not None:
            self._cache.close()
            self._cache = None
