"""chain:<a+b[+...]>: compose transforms, e.g. ``chain:leetspeak+base64``.

Forward applies the parts left to right, inverse undoes them right to left::

    chain:a+b   forward(x) = b.forward(a.forward(x))
                inverse(y) = a.inverse(b.inverse(y))

Each part is any registered transform spec, built through the transform
registry, so parts may take arguments (``chain:caesar:5+reverse_words``) and
may come from plugins. A part spec cannot itself contain ``+``. The chain is
**exact** when every part is exact. It has no native rendering (a task never
renders a chain itself), so the parts' forward/inverse always run, even for a
part such as ``leetspeak`` that a task could render natively. Parts that only
select a native rendering (``lang:fr``) cannot be chained, and neither can a
chain. Its ``id`` is ``chain:`` plus the parts' ids joined by ``+``
(``chain:caesar`` has id ``chain:caesar:3``).
"""
from __future__ import annotations

from harness.errors import ConjugateError
from harness.transform import Transform


class Chain(Transform):
    """Composition chain:a+b[+...]: forward left to right, inverse right to left."""

    name = "chain"
    version = "1"
    exact = False  # set per instance: all parts exact
    native = None
    param = "a+b[+...]"

    def __init__(self, parts: str):
        from harness.registry import TRANSFORMS

        spec = f"chain:{parts}"
        specs = [p.strip() for p in parts.split("+")]
        if not parts.strip():
            raise ConjugateError(f"{spec}: the chain is empty; write chain:a+b, e.g. chain:leetspeak+base64")
        if any(not p for p in specs):
            raise ConjugateError(f"{spec}: empty part between '+' signs; write chain:a+b, e.g. chain:leetspeak+base64")
        self.parts: list[Transform] = []
        for p in specs:
            if p.partition(":")[0].strip() == self.name:
                raise ConjugateError(f"{spec}: a chain cannot contain another chain ({p!r}); list all parts in one chain")
            try:
                t = TRANSFORMS.create(p)
            except ConjugateError as exc:
                raise type(exc)(f"{spec}: part {p!r}: {exc}") from None
            if isinstance(t, Chain):
                raise ConjugateError(f"{spec}: a chain cannot contain another chain ({p!r}); list all parts in one chain")
            if getattr(t, "requires_native", False):
                raise ConjugateError(
                    f"{spec}: part {p!r} only selects a task's native rendering and has no forward/inverse, "
                    f"so it cannot be chained; give it on its own in --transforms"
                )
            self.parts.append(t)
        self.exact = all(t.exact for t in self.parts)

    @property
    def id(self) -> str:
        return "chain:" + "+".join(t.id for t in self.parts)

    def forward(self, text: str) -> str:
        for t in self.parts:
            text = t.forward(text)
        return text

    def inverse(self, text: str) -> str:
        for t in reversed(self.parts):
            text = t.inverse(text)
        return text

    def describe(self) -> dict:
        return {**super().describe(), "parts": [t.describe() for t in self.parts]}
