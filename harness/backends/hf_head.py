"""Greedy next tokens from the LM head: the fp32 argmax, found at bf16 speed where the CPU has native bf16.

Gemma's LM head has 262,144 rows: in greedy decoding it costs more than the
rest of the model per generated token. On CPUs with AMX or avx512_bf16 a bf16
matrix product runs several times faster than fp32 (``bench/suite.py`` prints
both rates), but plain bf16 logits change some argmaxes, and with them the
generated text. :class:`GreedyHead` keeps the fp32 answer:

1. approximate logits ``z~ = bf16(h) @ bf16(W).T`` (fp32 accumulation, bf16 output);
2. every logit's error is bounded: ``|z~_i - z_i| <= delta = U * ||h|| * max_i ||W_i||`` with
   ``U = 2**-6`` (inputs rounded to bf16: 2 * 2**-8, output rounded: 2**-8, fp32 sums: < 1e-4;
   Cauchy-Schwarz bounds ``sum_j |h_j W_ij|``);
3. so the fp32 argmax ``i*`` satisfies ``z~_i* >= max z~ - 2 * delta``; the tokens in that window
   (usually a handful) are scored again in fp32 and the largest wins (the lowest id on a tie,
   as ``argmax`` does). A row with more than :data:`MAX_CANDIDATES` tokens in its window is
   scored in full in fp32.

The answer is the fp32 argmax up to fp32 rounding between two different
summation orders (the same as changing the batch size); ``bench/suite.py``
counts identical outputs. Anything else (a bf16 or GPU model, a CPU without
native bf16, ``head=fp32``) takes ``argmax(head(h))``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

U = 2.0 ** -6
MAX_CANDIDATES = 256


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or avx512_bf16; Linux's /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class GreedyHead:
    """``argmax(lm_head(h), -1)`` for hidden states ``h [rows, hidden]``; see the module docstring."""

    def __init__(self, model: Any, mode: str = "auto") -> None:
        import torch

        self.head = model.get_output_embeddings()
        w = self.head.weight
        self.fast = (mode == "auto" and w.dtype == torch.float32 and w.device.type == "cpu"
                     and getattr(self.head, "bias", None) is None and native_bf16())
        self.stats = {"rows": 0, "candidates": 0, "full_rows": 0}
        if self.fast:
            with torch.no_grad():
                self.w16 = w.detach().to(torch.bfloat16)
                self.wmax = float(w.detach().norm(dim=1).max())

    @property
    def kind(self) -> str:
        return "bf16-window-fp32" if self.fast else "fp32"

    def __call__(self, h: Any) -> Any:
        import torch

        if not self.fast:
            return self.head(h).argmax(-1)
        w = self.head.weight
        approx = h.to(torch.bfloat16) @ self.w16.T
        top = approx.max(-1, keepdim=True).values.float()
        window = 2 * U * self.wmax * h.norm(dim=-1, keepdim=True)
        cand = approx >= top - window
        counts = cand.sum(-1)
        full = counts > MAX_CANDIDATES
        out = torch.empty(h.shape[0], dtype=torch.long)
        if bool(full.any()):
            rows = full.nonzero(as_tuple=True)[0]
            out[rows] = (h[rows] @ w.T).argmax(-1)
            cand[rows] = False
        rows, cols = cand.nonzero(as_tuple=True)  # row-major: a row's candidates in increasing id order
        if rows.numel():
            exact = (h[rows] * w[cols]).sum(-1)
            best = torch.full((h.shape[0],), float("-inf")).scatter_reduce(0, rows, exact, "amax")
            win = exact == best[rows]
            lowest = torch.full((h.shape[0],), w.shape[0], dtype=torch.long).scatter_reduce(
                0, rows[win], cols[win], "amin")
            part = ~full
            out[part] = lowest[part]
        self.stats["rows"] += h.shape[0]
        self.stats["candidates"] += int(rows.numel())
        self.stats["full_rows"] += int(full.sum())
        return out
