"""RunContext: services a run shares with its tasks and transforms (for now: machine translation)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError

MT_FIELDS = {"provider": str, "timeout": float, "max_retries": int, "backoff": float, "rate_limit": float,
             "options": dict, "cache": str}


def check_mt(mt: dict[str, Any], where: str = "mt") -> None:
    """Validate the ``mt`` section of a run spec, naming the bad field."""
    import difflib

    for k, v in mt.items():
        if k not in MT_FIELDS:
            close = difflib.get_close_matches(k, list(MT_FIELDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}.{k}: unknown field.{hint} Known: {', '.join(MT_FIELDS)}")
        want = MT_FIELDS[k]
        ok = isinstance(v, want) or (want is float and isinstance(v, int))
        if v is not None and (not ok or isinstance(v, bool)):
            raise ConfigError(f"{where}.{k}: expected {want.__name__}, got {v!r}")


@dataclass
class RunContext:
    """What ``--mt-provider``, ``--mt-option`` and ``--translations`` configure.

    ``translation`` is created on first use, so runs without translating
    transforms never open the translation cache or a provider.
    """

    mt: dict[str, Any] = field(default_factory=dict)
    translations: str | None = None  # a frozen pack
    progress: bool = False
    lmeval_include: tuple[str, ...] = ()  # folders of lm-eval task YAMLs (lmeval:<task> tasks)
    _service: Any = None
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, make: Any) -> Any:
        """One object per run under ``key`` (made by ``make()`` on first use), e.g. lm-eval's task catalog."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    @property
    def translation(self):
        if self._service is None:
            from harness.mt.service import TranslationService

            mt = self.mt
            explicit_provider = "provider" in mt
            kw = {k: mt[k] for k in ("timeout", "max_retries", "backoff", "rate_limit") if mt.get(k) is not None}
            self._service = TranslationService(
                mt.get("provider") or "google", mt.get("options") or {}, cache=mt.get("cache"),
                pack=self.translations, pack_only=bool(self.translations) and not explicit_provider,
                progress=self.progress, **kw)
        return self._service

    @property
    def used(self) -> bool:
        return self._service is not None

    def describe(self) -> dict[str, Any] | None:
        return self._service.describe() if self._service is not None else None

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
