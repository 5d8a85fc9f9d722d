"""Per-token CE / entropy / KL of a fine-tuned model against its pretrained base, batched and memory-bounded.

The models are loaded in float32 through the project's hf loader. The LM head is applied in slices of
positions so that a 262k-entry vocabulary (Gemma) never materialises logits for a whole batch, and the
entropy and KL come from row-wise dot products instead of (rows x vocab) temporaries.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from harness.errors import ConjugateError

DEFAULT_BATCH_SIZE = 8
METRICS = ("ce", "entropy", "kl", "nll_pretrained", "nll_finetuned")


# -- the pair ------------------------------------------------------------------------------------

def load_model(spec, device: str = "cpu", threads: int | None = None):
    """(tokenizer, float32 model in eval mode, add_bos) through the project's hf loader."""
    from harness.backends.hf import load_hf

    return load_hf(dataclasses.replace(spec, dtype="float32"), threads=threads, device=device)


def load_tokenizer(spec):
    """Only the tokenizer of ``spec`` (from where :func:`load_model` would load it), to check a pair before loading."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from harness.errors import ModelLoadError
    from harness.pipeline.models import hub_commit, local_folder

    hf_logging.set_verbosity_error()
    folder, _ = local_folder(spec)
    kw = {"revision": hub_commit(spec)} if spec.source_kind == "hub" else {}
    try:
        return AutoTokenizer.from_pretrained(folder, **kw)
    except Exception as exc:
        raise ModelLoadError(f"could not load the tokenizer of {spec.name!r} from {spec.model}: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def check_tokenizers_early(pretrained, finetuned: Sequence) -> None:
    """Fail before loading any weights when a fine-tuned model on another base has another vocabulary."""
    others = [f for f in finetuned if (f.model, f.revision) != (pretrained.model, pretrained.revision)]
    if not others:
        return  # same base: load_hf takes the tokenizer from the base, adapters do not change it
    tok_pre = load_tokenizer(pretrained)
    for f in others:
        _compare_vocab(tok_pre.get_vocab(), load_tokenizer(f).get_vocab(), pretrained.name, f.name)


def check_same_tokenizer(tok_pre, tok_ft, model_pre, model_ft, pre_name: str, ft_name: str) -> None:
    """Raise :class:`ConjugateError` unless both models share one vocabulary (and output size)."""
    _compare_vocab(tok_pre.get_vocab(), tok_ft.get_vocab(), pre_name, ft_name)
    na = model_pre.get_output_embeddings().weight.shape[0]
    nb = model_ft.get_output_embeddings().weight.shape[0]
    if na != nb:
        raise ConjugateError(f"{ft_name!r} has {nb} output logits but {pre_name!r} has {na}; "
                             "forgetting cross-entropy needs one vocabulary")


def _compare_vocab(va: dict, vb: dict, pre_name: str, ft_name: str) -> None:
    if va != vb:
        only_a = sorted(set(va) - set(vb))[:3]
        only_b = sorted(set(vb) - set(va))[:3]
        moved = [t for t in sorted(set(va) & set(vb)) if va[t] != vb[t]][:3]
        detail = (f"only in the fine-tuned tokenizer: {only_b}" if only_b else
                  f"only in the pretrained tokenizer: {only_a}" if only_a else f"different ids for {moved}")
        raise ConjugateError(
            f"{ft_name!r} and {pre_name!r} do not share a tokenizer ({len(vb)} vs {len(va)} entries; {detail}); "
            "forgetting cross-entropy compares next-token distributions over one vocabulary")


# -- scoring -------------------------------------------------------------------------------------

class _Head:
    """Hidden states, then the LM head on selected rows only (with Gemma-2-style final softcapping).

    ``check`` compares the split computation with the model's own logits on a
    short probe; architectures where they differ fall back to full logits.
    """

    def __init__(self, model, probe: list[int] | None = None) -> None:
        import torch

        self.model = model
        self.head = model.get_output_embeddings()
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.split = self.head is not None and hasattr(model, "base_model")
        if self.split and probe:
            ids = torch.tensor([probe[:8]], device=model.device)
            with torch.inference_mode():
                want = model(input_ids=ids).logits.float()
                got = self.logits(self.hidden(ids, torch.ones_like(ids))[0])
            if want.shape[-1] != got.shape[-1] or float((want[0] - got).abs().max()) > 1e-3 + 1e-4 * float(want.abs().max()):
                self.split = False

    def hidden(self, ids, mask):
        if self.split:
            return self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.model(input_ids=ids, attention_mask=mask).logits

    def logits(self, rows):
        import torch

        if not self.split:
            return rows.float()
        out = self.head(rows).float()
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


def _entropy_kl(lp_pre, lp_ft):
    """Per row: H = -sum p log p and KL = sum p (log p - log q), p = exp(lp_pre), q = exp(lp_ft).

    Row-wise dot products (batched matmuls) instead of elementwise products
    and sums: no (rows x vocab) temporaries besides p and the log-ratio.
    Rows with -inf log-probabilities (masked vocabulary entries: 0 * -inf)
    are recomputed with explicit zeros.
    """
    import torch

    p = lp_pre.exp()
    diff = lp_pre - lp_ft
    dot = lambda x, y: torch.bmm(x[:, None, :], y[:, :, None])[:, 0, 0]  # noqa: E731
    ent, kl = -dot(p, lp_pre), dot(p, diff)
    bad = ~(torch.isfinite(ent) & torch.isfinite(kl))
    if bad.any():
        pb, zero = p[bad], p[bad] == 0  # 0 * log 0 = 0
        ent[bad] = -torch.where(zero, 0.0, pb * lp_pre[bad]).sum(-1)
        kl[bad] = torch.where(zero, 0.0, pb * diff[bad]).sum(-1)
    return ent, kl


@dataclass
class TokenStats:
    """Per predicted token of one sequence (float64 numpy arrays of equal length)."""

    ce: Any
    entropy: Any
    kl: Any
    nll_pretrained: Any
    nll_finetuned: Any

    def __len__(self) -> int:
        return len(self.ce)


class PairScorer:
    """Per-token CE / entropy / KL of a fine-tuned model against a pretrained one, batched."""

    def __init__(self, pretrained, finetuned, probe: list[int] | None = None, rows_per_slice: int | None = None):
        self.pre = _Head(pretrained, probe)
        self.ft = self.pre if finetuned is pretrained else _Head(finetuned, probe)
        vocab = pretrained.get_output_embeddings().weight.shape[0]
        # rows of positions per LM-head slice: each (rows x vocab) float32 tensor stays near 64 MB
        self.rows = rows_per_slice or max(1, (1 << 24) // vocab)
        self.device = pretrained.device

    def score(self, seqs: Sequence[list[int]], batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
              desc: str = "forgetting") -> list[TokenStats]:
        """One :class:`TokenStats` per sequence; a sequence of n ids has n - 1 predicted tokens."""
        import torch
        from tqdm.auto import tqdm

        if any(len(s) < 2 for s in seqs):
            raise ValueError("every sequence needs at least two token ids")
        order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))  # little padding, deterministic
        out: list[TokenStats | None] = [None] * len(seqs)
        bar = tqdm(total=sum(len(s) - 1 for s in seqs), desc=desc, unit="tok", disable=not progress,
                   dynamic_ncols=True, file=sys.stderr)
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b:b + batch_size]
                stats = self._batch([seqs[i] for i in idx])
                for i, st in zip(idx, stats):
                    out[i] = st
                bar.update(sum(len(seqs[i]) - 1 for i in idx))
        bar.close()
        return out  # type: ignore[return-value]

    def _batch(self, seqs: list[list[int]]) -> list[TokenStats]:
        import numpy as np
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):  # right padding: positions before the padding are unaffected
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        h_pre = self.pre.hidden(ids, mask)
        h_ft = h_pre if self.ft is self.pre else self.ft.hidden(ids, mask)
        valid = mask[:, 1:].bool()  # position j predicts token j + 1
        rows_pre, rows_ft = h_pre[:, :-1][valid], h_ft[:, :-1][valid]
        target = ids[:, 1:][valid]
        cols = {k: [] for k in METRICS}
        for s in range(0, rows_pre.shape[0], self.rows):
            lp_pre = torch.log_softmax(self.pre.logits(rows_pre[s:s + self.rows]), dim=-1)
            lp_ft = lp_pre if self.ft is self.pre else torch.log_softmax(self.ft.logits(rows_ft[s:s + self.rows]), dim=-1)
            ent, kl = _entropy_kl(lp_pre, lp_ft)
            ce = ent + kl
            t = target[s:s + self.rows, None]
            for k, v in (("ce", ce), ("entropy", ent), ("kl", kl), ("nll_pretrained", -lp_pre.gather(1, t)[:, 0]),
                         ("nll_finetuned", -lp_ft.gather(1, t)[:, 0])):
                cols[k].append(v.double().cpu())
        flat = {k: torch.cat(v).numpy() if v else np.zeros(0) for k, v in cols.items()}
        lengths = valid.sum(1).tolist()
        out, start = [], 0
        for n in lengths:
            out.append(TokenStats(**{k: flat[k][start:start + n] for k in METRICS}))
            start += n
        return out
