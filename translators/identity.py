"""identity: the unmodified English prompt (the baseline every recovery is measured against)."""
from __future__ import annotations

from harness.transform import Transform


class Identity(Transform):
    """The prompt as the task wrote it, in English; the baseline."""

    name = "identity"
    display_name = "English"
    version = "1"
    exact = True
    native = "en"

    def forward(self, text: str) -> str:
        return text

    def inverse(self, text: str) -> str:
        return text
