"""Measuring forgetting: the text versions (English and each transform), the sequences, and each
fine-tuned model scored against the pretrained one, aggregated per text version with bootstrap intervals.

Chunk sums (token count and the sum of each metric per chunk) are the unit of the bootstrap: a mean is
token-weighted (sum / tokens), and a resample re-weights whole chunks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.errors import ConfigError
from harness.training.forgetting.scorer import (DEFAULT_BATCH_SIZE, METRICS, PairScorer, check_same_tokenizer,
                                               load_model)
from harness.training.forgetting.text import BASELINE, DEFAULT_MAX_TOKENS, split_chunks, windows


@dataclass
class Condition:
    """One version of the reference text: the English chunks or a transform of them."""

    name: str
    texts: list[Any]  # str, or harness.backend.Failed


def transform_texts(chunks: list[str], names: Sequence[str], progress: bool = False) -> tuple[list[Condition], dict]:
    """The chunks under each transform (``forward_batch``), translate:* bound to a fresh run context."""
    from harness.pipeline.context import RunContext
    from harness.registry import TRANSFORMS

    conds = [Condition(BASELINE, list(chunks))]
    described: dict[str, Any] = {}
    ctx = RunContext(mt={}, progress=progress)
    try:
        for name in names:
            tr = TRANSFORMS.create(name)
            tr.bind(ctx)
            if tr.id == BASELINE:
                continue
            if getattr(tr, "requires_native", False):
                raise ConfigError(f"--transforms {name}: this transform only exists as a task's native rendering "
                                  "and cannot rewrite free text; use e.g. translate:<lang> instead")
            conds.append(Condition(tr.id, tr.forward_batch(chunks)))
            described[tr.id] = tr.describe()
    finally:
        ctx.close()
    return conds, described


@dataclass
class Sequences:
    """Token windows of every text version, each with the (condition index, chunk index) it belongs to."""

    seqs: list[list[int]]
    owner: list[tuple[int, int]]
    failed: dict[str, list[str]]  # condition -> reasons of chunks that could not be transformed


def _sequences(conditions: list[Condition], encode: Callable[[str], list[int]], max_tokens: int,
               bos_id: int | None) -> Sequences:
    from harness.backend import Failed

    out = Sequences([], [], {})
    for ci, cond in enumerate(conditions):
        for k, txt in enumerate(cond.texts):
            if isinstance(txt, Failed) or not isinstance(txt, str) or not txt.strip():
                out.failed.setdefault(cond.name, []).append(txt.reason if isinstance(txt, Failed) else "empty text")
                continue
            for w in windows(encode(txt), max_tokens, bos_id):
                out.seqs.append(w)
                out.owner.append((ci, k))
    return out


def evaluate(pretrained, finetuned: Sequence, text: str, *, transforms: Sequence[str] = (),
             steps: Sequence[int | None] | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, device: str = "cpu", threads: int | None = None,
             progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure CE / entropy / KL of each fine-tuned model against ``pretrained`` on ``text``; the result dict."""
    from harness.analysis.stats import bootstrap_weights

    log = log or (lambda msg: None)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    t = time.perf_counter()
    tok, pre_model, add_bos = load_model(pretrained, device=device, threads=threads)
    timings[f"load {pretrained.name}"] = round(time.perf_counter() - t, 2)
    bos_id = tok.bos_token_id if add_bos else None

    def encode(s: str) -> list[int]:
        ids = tok(s, add_special_tokens=False).input_ids
        return ids[1:] if ids and tok.bos_token_id is not None and ids[0] == tok.bos_token_id else ids

    chunks = split_chunks(text, lambda s: len(encode(s)), max_tokens - (1 if add_bos else 0))
    if not chunks:
        raise ConfigError("the text has no chunks to score")
    t = time.perf_counter()
    conditions, described = transform_texts(chunks, transforms, progress=progress)
    timings["transforms"] = round(time.perf_counter() - t, 2)
    seqs = _sequences(conditions, encode, max_tokens, bos_id)
    for name, reasons in seqs.failed.items():
        log(f"{name}: {len(reasons)} of {len(chunks)} chunks failed to transform and are left out ({reasons[0]})")
    log(f"{len(chunks)} chunks, {sum(len(s) - 1 for s in seqs.seqs)} predicted tokens over "
        f"{len(conditions)} text version(s); BOS {'on' if add_bos else 'off'}")

    weights = bootstrap_weights(len(chunks), seed)
    results, chunk_rows = [], []
    steps = list(steps) if steps is not None else [None] * len(finetuned)
    for spec, st in zip(finetuned, steps):
        t = time.perf_counter()
        if all(getattr(spec, f) == getattr(pretrained, f) for f in ("model", "adapter", "revision", "bos")):
            ft_tok, ft_model, ft_bos = tok, pre_model, add_bos
        else:
            ft_tok, ft_model, ft_bos = load_model(spec, device=device, threads=threads)
            check_same_tokenizer(tok, ft_tok, pre_model, ft_model, pretrained.name, spec.name)
        timings[f"load {spec.name}"] = round(time.perf_counter() - t, 2)
        if ft_bos != add_bos:
            log(f"{spec.name}: its BOS policy differs from {pretrained.name}'s; both are scored on the same ids "
                f"(BOS {'on' if add_bos else 'off'}, as the pretrained model wants)")
        t = time.perf_counter()
        scorer = PairScorer(pre_model, ft_model, probe=seqs.seqs[0] if seqs.seqs else None)
        stats = scorer.score(seqs.seqs, batch_size=batch_size, progress=progress, desc=f"forgetting {spec.name}")
        seconds = time.perf_counter() - t
        timings[f"score {spec.name}"] = round(seconds, 2)
        n_tok = sum(len(s) for s in stats)
        log(f"{spec.name}: {n_tok} tokens in {seconds:.1f} s ({n_tok / max(seconds, 1e-9):.0f} tokens/s)")
        rows, sums = _aggregate(spec.name, st, conditions, len(chunks), seqs, stats, weights)
        results += rows
        chunk_rows += sums
        if ft_model is not pre_model:
            del ft_model
            import gc

            gc.collect()
    timings["total"] = round(time.perf_counter() - t_start, 2)
    return {"chunks": chunks, "conditions": [c.name for c in conditions], "transforms": described, "add_bos": add_bos,
            "results": results, "chunk_sums": chunk_rows, "failed": {k: len(v) for k, v in seqs.failed.items()},
            "timings": timings}


def _aggregate(model: str, steps: int | None, conditions: list[Condition], n_chunks: int, seqs: Sequences,
               stats: list, weights) -> tuple[list[dict], list[dict]]:
    """Per text version: token-weighted means with bootstrap intervals, and the per-chunk sums behind them.

    ``kl_minus_identity`` is the paired difference of KL to the English text over the chunks both have.
    """
    import numpy as np

    from harness.analysis.stats import paired_ratio_diff, ratio_ci

    sums = np.zeros((len(conditions), n_chunks, 1 + len(METRICS)))  # per (condition, chunk): tokens, then sums
    for (ci, k), s in zip(seqs.owner, stats):
        sums[ci, k, 0] += len(s)
        for m, key in enumerate(METRICS):
            sums[ci, k, 1 + m] += float(np.sum(getattr(s, key)))
    results, chunk_rows = [], []
    base_kl = None
    for ci, cond in enumerate(conditions):
        present = sums[ci, :, 0] > 0
        w = weights[:, present]
        row: dict[str, Any] = {"model": model, "steps": steps, "condition": cond.name,
                               "n_chunks": int(present.sum()), "n_tokens": int(sums[ci, :, 0].sum()),
                               "failed_chunks": len(seqs.failed.get(cond.name, []))}
        for m, key in enumerate(METRICS):
            row[key] = ratio_ci(sums[ci, present, 1 + m], sums[ci, present, 0], w)
        if cond.name == BASELINE:
            base_kl = sums[ci]
        elif base_kl is not None:
            both = present & (base_kl[:, 0] > 0)
            row["kl_minus_identity"] = paired_ratio_diff(sums[ci, both], base_kl[both], weights[:, both],
                                                         METRICS.index("kl") + 1)
        results.append(row)
        chunk_rows.append({"model": model, "condition": cond.name,
                           "n": [int(v) for v in sums[ci, :, 0]],
                           **{key: [round(float(v), 6) for v in sums[ci, :, 1 + m]] for m, key in enumerate(METRICS)}})
    return results, chunk_rows
