"""Element-wise importance of a model's weights for general text, computed once and cached.

The importance of weight element i is the diagonal of the empirical Fisher information of the
language-modelling loss on general text::

    Omega_i = (1 / S) * sum_s (d NLL_s / d theta_i) ** 2

over the S token windows s of the text (NLL_s: the mean next-token negative log-likelihood of window s,
one backward pass per window, so each square is of one window's gradient). An element whose value never
changes the loss on the text (e.g. the input embedding of a token that does not occur in it) gets
exactly 0. Song et al. (2025, arXiv:2501.13669) record element-wise importance during a fine-tune on a
general task, in the manner of Synaptic Intelligence (each parameter's contribution to the drop of
that loss); a pretrained model comes with no such run, so this module uses the Fisher diagonal, the
importance of EWC (Kirkpatrick et al. 2017), from the pretrained model itself: a choice of this project.

The general text is the shipped English reference text (:func:`harness.training.forgetting.text.reference_text_path`)
unless ``--importance-data FILE`` names another. Results are cached under
``<conjugate cache>/importance/`` (``$CONJUGATE_CACHE``, where the converted model folders live too),
one safetensors file per (model identity, text sha256, parameter names and shapes, window length,
method); a second fine-tune of the same model on the same text loads it instead of recomputing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError

METHOD = "fisher-diagonal-v1"
DEFAULT_WINDOW = 256  # tokens per window, BOS included


def read_importance_text(path: str | None) -> tuple[str, Path]:
    """The general text (default: the shipped reference text), errors naming ``--importance-data``."""
    from harness.training.forgetting.text import read_text

    try:
        return read_text(path)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--text", "--importance-data", 1)) from None


def text_windows(tok, add_bos: bool, text: str, window: int = DEFAULT_WINDOW) -> list[list[int]]:
    """Token windows of ``text``: paragraphs packed to at most ``window`` tokens (as `conjugate forgetting` cuts them)."""
    from harness.training.forgetting.text import split_chunks, windows

    def encode(s: str) -> list[int]:
        ids = tok(s, add_special_tokens=False).input_ids
        return ids[1:] if ids and tok.bos_token_id is not None and ids[0] == tok.bos_token_id else ids

    bos = tok.bos_token_id if add_bos else None
    out: list[list[int]] = []
    for chunk in split_chunks(text, lambda s: len(encode(s)), window - (1 if add_bos else 0)):
        out += windows(encode(chunk), window, bos)
    if not out:
        raise ConfigError("--importance-data: the text has no token windows to score")
    return out


def cache_key(identity: str, text_sha: str, params: dict[str, Any], window: int) -> str:
    shapes = sorted((name, list(p.shape)) for name, p in params.items())
    blob = json.dumps({"model": identity, "text": text_sha, "params": shapes, "window": window, "method": METHOD},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(key: str) -> Path:
    from harness.pipeline.models import cache_root

    return cache_root() / "importance" / f"{key}.safetensors"


def fisher_diagonal(model, seqs: list[list[int]], params: dict[str, Any], progress: bool = False) -> dict[str, Any]:
    """Mean over ``seqs`` of the squared gradient of each window's mean NLL, for every tensor in ``params``.

    Only ``params`` get gradients (their ``requires_grad`` is restored afterwards). float32, on the CPU.
    """
    import torch
    from tqdm.auto import tqdm

    before = {id(p): p.requires_grad for p in model.parameters()}
    wanted = {id(p) for p in params.values()}
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    acc = {name: torch.zeros(p.shape, dtype=torch.float32) for name, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for seq in tqdm(seqs, desc="importance", unit="window", disable=not progress, dynamic_ncols=True):
            ids = torch.tensor([seq], device=model.device)
            loss = model(input_ids=ids, labels=ids).loss
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (name, _), g in zip(params.items(), grads):
                if g is not None:
                    acc[name] += g.detach().float().cpu() ** 2
    finally:
        for p in model.parameters():
            p.requires_grad_(before[id(p)])
        model.train(was_training)
    return {name: a / len(seqs) for name, a in acc.items()}


def load_or_compute(model, tok, add_bos: bool, identity: str, params: dict[str, Any], data: str | None,
                    window: int = DEFAULT_WINDOW, progress: bool = False,
                    log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(importance per parameter name, what recipe.json records about it), from the cache when it is there."""
    from safetensors.torch import load_file, save_file

    log = log or (lambda msg: None)
    text, path = read_importance_text(data)
    text_sha = hashlib.sha256(text.encode()).hexdigest()
    key = cache_key(identity, text_sha, params, window)
    file = cache_path(key)
    info: dict[str, Any] = {"method": METHOD, "data": str(path), "data_default": data is None,
                            "data_sha256": text_sha, "window": window, "cache": str(file), "key": key}
    if file.exists():
        omega = load_file(str(file))
        if set(omega) == set(params) and all(omega[n].shape == params[n].shape for n in params):
            log(f"importance: cache hit {file}")
            return omega, {**info, "cached": True, "sha256": _sha(file), **_summary(omega)}
    t0 = time.time()
    seqs = text_windows(tok, add_bos, text, window)
    omega = fisher_diagonal(model, seqs, params, progress=progress)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{time.time_ns()}.tmp")  # published atomically, same folder
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file({n: t.contiguous() for n, t in omega.items()}, str(tmp), metadata={"method": METHOD, "key": key})
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.time() - t0
    log(f"importance: {len(seqs)} windows of {path.name} in {seconds:.1f} s -> {file}")
    return omega, {**info, "cached": False, "sha256": _sha(file), "windows": len(seqs),
                   "tokens": sum(len(s) - 1 for s in seqs), "seconds": round(seconds, 1), **_summary(omega)}


def _sha(path: Path) -> str:
    from harness.pipeline.models import file_sha256

    return file_sha256(path)


def _summary(omega: dict[str, Any]) -> dict[str, Any]:
    n = sum(t.numel() for t in omega.values())
    zeros = sum(int((t == 0).sum()) for t in omega.values())
    total = sum(float(t.double().sum()) for t in omega.values())
    return {"elements": n, "zero_elements": zeros, "mean": total / max(n, 1)}
