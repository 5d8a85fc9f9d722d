"""leetspeak: letters a e i o s t become 4 3 1 0 5 7.

Forward is deterministic. Inverse is **best-effort**, not exact:
letter case is lost (``A`` and ``a`` both become ``4``), and a digit in the
original text cannot be told apart from a leet letter. The inverse therefore
maps digits back to letters only inside tokens that also contain a letter
(``7h3`` -> ``the``) and leaves all-digit tokens (``12``, ``2024``) alone,
so numeric answers survive.
"""
from __future__ import annotations

import re

from harness.transform import Transform

FORWARD = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
INVERSE = {v: k for k, v in FORWARD.items()}
_TABLE = str.maketrans({**FORWARD, **{k.upper(): v for k, v in FORWARD.items()}})
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def to_leet(text: str) -> str:
    return text.translate(_TABLE)


def from_leet(text: str) -> str:
    def fix(m: re.Match) -> str:
        tok = m.group(0)
        if tok.isdigit():  # a number, not a leet word
            return tok
        return "".join(INVERSE.get(c, c) for c in tok)

    return _TOKEN.sub(fix, text)


class Leetspeak(Transform):
    """Leetspeak (a->4 e->3 i->1 o->0 s->5 t->7); inverse best-effort."""

    name = "leetspeak"
    display_name = "Leetspeak"
    version = "1"
    exact = False
    native = "leetspeak"

    def forward(self, text: str) -> str:
        return to_leet(text)

    def inverse(self, text: str) -> str:
        return from_leet(text)
