"""fp32 matrix products at bf16 speed where this CPU's oneDNN computes them to fp32 accuracy.

PyTorch (2.9+) routes fp32 matrix products through oneDNN with
``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``. What oneDNN does then
depends on the CPU and the oneDNN build: rounding the inputs to bf16 would put
a 640-long product of N(0, 1) entries off by about 0.3; on this project's AMX
machines (torch 2.13) the mode's error is 1.2e-4 against IEEE fp32's own 5.7e-5
(it does not simply round the inputs), at about twice fp32's speed.

So ``fp32_matmul=auto`` (the hf backend's default) measures it once per process
on a fixed random product and uses the mode only where its error is within
:data:`TOLERANCE` times fp32's own; otherwise, and for bf16/fp16 models and
GPUs, matrix products stay IEEE fp32 (``fp32_matmul=ieee`` forces that).
The mode in use is recorded in the manifest and joins the generation-cache key,
so results of the two never mix. ``bench/suite.py --sides after,ieee`` counts
how many responses change.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

MODES = ("auto", "ieee")
TOLERANCE = 4.0  # the mode's error may be at most this many times fp32's own on the calibration product

def available() -> bool:
    import torch

    return hasattr(getattr(torch.backends, "mkldnn", None), "matmul") and torch.backends.mkldnn.is_available()


def calibrate() -> dict[str, float]:
    """Max errors of an fp32 product (256 x 640 by 640 x 1024, seeded) against float64: IEEE and the bf16 mode."""
    return dict(_errors())


@functools.cache
def _errors() -> dict[str, float]:  # measured once per process
    import torch

    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(256, 640, generator=g), torch.randn(1024, 640, generator=g)
    exact = a.double() @ w.double().T
    errors = {}
    for mode in ("ieee", "bf16"):
        with precision(mode):
            errors[mode] = float((torch.nn.functional.linear(a, w).double() - exact).abs().max())
    return errors


def resolve(requested: str, dtype: str, device: str | None = None) -> str:
    """The mode the matrix products of a model loaded as ``dtype`` (a ``--dtype`` name) on ``device`` (default: the
    one the hf backend picks) use: ``bf16`` or ``ieee``. The cache key and the backend both ask this."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if requested != "auto" or dtype != "float32" or device != "cpu" or not available():
        return "ieee"
    err = calibrate()
    return "bf16" if err["bf16"] <= TOLERANCE * max(err["ieee"], 1e-12) else "ieee"


@contextmanager
def precision(mode: str) -> Iterator[None]:
    """fp32 matrix products in ``mode`` (``ieee``/``bf16``) inside the block; the previous setting after it."""
    if not available():
        yield
        return
    import torch

    flags = torch.backends.mkldnn.matmul
    before = flags.fp32_precision
    flags.fp32_precision = mode
    try:
        yield
    finally:
        flags.fp32_precision = before
