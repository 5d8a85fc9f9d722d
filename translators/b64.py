"""base64: the prompt's UTF-8 bytes in standard base64 (RFC 4648, padded, one line).

Forward: ``Hello`` -> ``SGVsbG8=``. Inverse decodes base64 back to UTF-8 text,
so the transform is **exact**: ``inverse(forward(x)) == x`` for every string
(lone surrogates included, through UTF-8 ``surrogatepass``).

On model responses the inverse is lenient: surrounding and embedded
whitespace (line-wrapped base64) is ignored and missing ``=`` padding is
added. A response that is not base64 of UTF-8 text (the model answered in
plain text, or wrote broken base64) is returned unchanged, so it is scored as
written instead of failing. A plain-text response that happens to be valid
base64 of valid UTF-8 (rare: e.g. ``"ab=="``) is decoded like any other.
"""
from __future__ import annotations

import base64
import binascii
import re

from harness.transform import Transform

_WS = re.compile(r"\s+")


def to_base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


def from_base64(text: str) -> str:
    s = _WS.sub("", text)
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return text


class Base64(Transform):
    """Base64 of the UTF-8 prompt (Hello -> SGVsbG8=); exact."""

    name = "base64"
    version = "1"
    exact = True

    def forward(self, text: str) -> str:
        return to_base64(text)

    def inverse(self, text: str) -> str:
        return from_base64(text)
