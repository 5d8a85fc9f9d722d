"""lang:<code>: the task's own native rendering in language <code>.

``lang:fr`` asks the task to write its prompt in French itself (``icl_vs_if``
ships French, Spanish, Dutch and Hungarian renderings). The response is then
scored in that language, so there is nothing to invert. A language the task
does not ship is a clear error at planning time; machine translation is a
separate transform family.
"""
from __future__ import annotations

import re

from harness.errors import ConjugateError
from harness.languages import language_name
from harness.transform import Transform

_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


class Lang(Transform):
    """A task's native rendering in another language, e.g. lang:fr."""

    name = "lang"
    version = "1"
    exact = True
    param = "language code"
    requires_native = True

    def __init__(self, code: str):
        if not _CODE.match(code):
            raise ConjugateError(f"lang:{code}: {code!r} is not a language code such as fr, es, nl, hu or pt-BR")
        self.code = code
        self.native = code

    @property
    def id(self) -> str:
        return f"lang:{self.code}"

    @property
    def display_name(self) -> str:
        """The language's name: ``lang:sw`` -> Swahili (the code itself for one langcodes does not know)."""
        return language_name(self.code)

    def forward(self, text: str) -> str:
        raise ConjugateError(f"lang:{self.code} has no machine translation; it only selects a task's native rendering")

    inverse = forward
