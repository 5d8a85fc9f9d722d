"""caesar[:<shift>]: shift every ASCII letter ``shift`` places along the alphabet (default 3).

Forward maps ``a``..``z`` and ``A``..``Z`` to the letter ``shift`` places
later, wrapping around and keeping case (``caesar:3``: ``Hello`` -> ``Khoor``);
every other character (digits, punctuation, whitespace, non-ASCII letters) is
left alone. The shift is any integer, negative included, taken modulo 26.
Inverse shifts back by the same amount, so it is **exact**:
``inverse(forward(x)) == x`` for every string.
"""
from __future__ import annotations

import string

from harness.errors import ConjugateError
from harness.transform import Transform

DEFAULT_SHIFT = 3
_LOWER, _UPPER = string.ascii_lowercase, string.ascii_uppercase


def caesar_shift(text: str, shift: int) -> str:
    """Shift ASCII letters by ``shift`` (mod 26), keeping case; leave everything else."""
    k = shift % 26
    table = str.maketrans(_LOWER + _UPPER, _LOWER[k:] + _LOWER[:k] + _UPPER[k:] + _UPPER[:k])
    return text.translate(table)


class Caesar(Transform):
    """Caesar cipher on ASCII letters, caesar:<shift> (default 3); exact."""

    name = "caesar"
    version = "1"
    exact = True
    param = "shift"
    param_optional = True  # `caesar` alone means caesar:3

    def __init__(self, shift: str | int = DEFAULT_SHIFT):
        if not str(shift).strip():
            raise ConjugateError("caesar: give a shift after the colon, e.g. caesar:3, or just caesar for 3")
        try:
            self.shift = int(str(shift).strip())
        except ValueError:
            raise ConjugateError(
                f"caesar:{shift}: the shift must be an integer, e.g. caesar:3 or caesar:-1 (or just caesar for 3)"
            ) from None

    @property
    def id(self) -> str:
        return f"caesar:{self.shift}"

    def forward(self, text: str) -> str:
        return caesar_shift(text, self.shift)

    def inverse(self, text: str) -> str:
        return caesar_shift(text, -self.shift)
