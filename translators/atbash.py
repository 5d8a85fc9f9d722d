"""atbash: mirror the ASCII alphabet, a <-> z, b <-> y, ... (case kept).

``abc`` -> ``zyx``, ``Hello`` -> ``Svool``. Digits, punctuation, whitespace
and non-ASCII characters are left alone. The map is an involution, so the
inverse is the forward map again and the transform is **exact**:
``inverse(forward(x)) == x`` for every string.
"""
from __future__ import annotations

import string

from harness.transform import Transform

_LOWER, _UPPER = string.ascii_lowercase, string.ascii_uppercase
_TABLE = str.maketrans(_LOWER + _UPPER, _LOWER[::-1] + _UPPER[::-1])


def atbash(text: str) -> str:
    return text.translate(_TABLE)


class Atbash(Transform):
    """Atbash cipher on ASCII letters (abc -> zyx); its own inverse, exact."""

    name = "atbash"
    version = "1"
    exact = True

    def forward(self, text: str) -> str:
        return atbash(text)

    def inverse(self, text: str) -> str:
        return atbash(text)
