"""rot13: the Caesar cipher with shift 13 on ASCII letters.

Shifting by 13 twice goes all the way round the 26-letter alphabet, so rot13
is its own inverse (``Hello`` <-> ``Uryyb``). Case is kept; digits,
punctuation, whitespace and non-ASCII characters are left alone. **Exact**:
``inverse(forward(x)) == x`` for every string.
"""
from __future__ import annotations

from harness.transform import Transform
from harness.translators.caesar import caesar_shift


class Rot13(Transform):
    """ROT13 on ASCII letters (Hello -> Uryyb); its own inverse, exact."""

    name = "rot13"
    display_name = "ROT13"
    version = "1"
    exact = True

    def forward(self, text: str) -> str:
        return caesar_shift(text, 13)

    def inverse(self, text: str) -> str:
        return caesar_shift(text, 13)
