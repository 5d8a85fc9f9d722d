"""`conjugate finetune`: LoRA fine-tuning with peft, loss on response tokens only.

Each example is ``instruction + "\\n"`` followed by ``response`` and EOS (with
BOS first where the model wants one, as at evaluation). The loss is the mean
cross-entropy over response tokens. The LM head runs only at response
positions: with Gemma's 262k-entry vocabulary, computing logits for every
prompt token would cost most of the step.

Writes to ``--out``: the adapter (``adapter_model.safetensors`` +
``adapter_config.json``), ``training.jsonl`` (one line per step),
``recipe.json`` (the full config, data hash, versions and the adapter's
sha256) and ``loss.png``. Deterministic for a given seed on CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, ConjugateError
from harness.io import atomic_write_bytes, atomic_write_json, atomic_write_text, iter_jsonl, package_versions
from harness.pipeline.models import ModelSpec

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class FinetuneConfig:
    """A LoRA recipe. ``data`` is a JSONL file of {instruction, response} or a built-in generator name."""

    base: str = "pkg:gemma3-270m"
    data: str = "assistant-en"
    n_examples: int = 4000  # examples drawn from a built-in generator
    rank: int = 8
    alpha: int = 16
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    steps: int = 400
    lr: float = 3e-4
    warmup: int = 30
    batch_size: int = 16
    max_len: int = 128
    seed: int = 0
    out: str = "results/finetune"
    threads: int | None = None
    save_every: int = 25  # steps between resumable checkpoints
    method: str = "lora"  # lora, or full: every weight (small models)
    regularize: str = "none"  # none, elementwise, layerwise, both (harness.training.regularize)
    reg_lambda: float | None = None  # None: the mode's default
    importance_data: str | None = None  # general text for the importance (None: the shipped reference text)
    snapshots: list[int] = field(default_factory=list)  # steps at which a copy of the adapter goes to out/step-N

    def __post_init__(self) -> None:
        from harness.training.regularize import check_options

        for k in ("n_examples", "rank", "alpha", "steps", "batch_size", "max_len", "save_every"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"--{k.replace('_', '-')}: must be a positive integer, got {v!r}")
        if not (0 < self.lr < 1):
            raise ConfigError(f"--lr: must be between 0 and 1, got {self.lr}")
        if not self.target_modules:
            raise ConfigError("--target-modules: give at least one module name, e.g. q_proj,v_proj")
        check_options(self.regularize, self.reg_lambda, self.method)
        if self.importance_data is not None:
            if self.regularize not in ("elementwise", "both"):
                raise ConfigError("--importance-data needs --regularize elementwise or both (the modes that use importance)")
            from harness.training.importance import read_importance_text

            read_importance_text(self.importance_data)  # a missing or empty file fails now, before any model loads
        bad = [s for s in self.snapshots if not isinstance(s, int) or isinstance(s, bool) or not 0 < s <= self.steps]
        if bad:
            raise ConfigError(f"snapshot steps {bad}: each must be a whole number between 1 and --steps ({self.steps})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_examples(data: str, n: int, seed: int) -> list[dict[str, str]]:
    """Rows {instruction, response} from a JSONL file or a built-in generator."""
    from harness.training.instruct_data import GENERATORS

    if data in GENERATORS:
        return GENERATORS[data](n, seed=seed)
    path = Path(data)
    if not path.exists():
        import difflib

        close = difflib.get_close_matches(data, list(GENERATORS), n=1)
        hint = f" Did you mean the built-in {close[0]!r}?" if close else f" Built-in generators: {', '.join(GENERATORS)}."
        raise ConfigError(f"--data {data}: no such file or built-in generator.{hint}")
    rows = []
    for i, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("instruction"), str) or not isinstance(row.get("response"), str):
            raise ConfigError(f"{path} line {i}: needs string fields 'instruction' and 'response'")
        rows.append({"instruction": row["instruction"], "response": row["response"]})
    if not rows:
        raise ConfigError(f"{path}: no examples")
    return rows


def encode_example(tok, add_bos: bool, instruction: str, response: str, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) for one example, truncated to ``max_len``."""
    prompt = tok(instruction + "\n", add_special_tokens=False).input_ids
    if add_bos:
        prompt = [tok.bos_token_id] + prompt
    answer = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = (prompt + answer)[:max_len]
    labels = ([-100] * len(prompt) + answer)[:max_len]
    return ids, labels


def response_loss(causal_lm, input_ids, attention_mask, labels):
    """Mean cross-entropy over response tokens, with the LM head applied only where labels exist."""
    import torch
    import torch.nn.functional as F

    hidden = causal_lm.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = causal_lm.lm_head(hidden[:, :-1][keep]).float()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, target[keep])


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Index batches over shuffled epochs, deterministic for ``seed``."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = list(range(n))
                rng.shuffle(order)
            batch.append(order.pop())
        yield batch


class Checkpoint:
    """LoRA weights, optimizer state and the log so far, written atomically every ``save_every`` steps.

    A re-run with the same recipe and ``--out`` resumes after the last saved
    step and ends with the same adapter as an uninterrupted run. A checkpoint
    from a different recipe is ignored (and replaced at the next save).
    """

    IGNORED = ("out", "threads", "save_every", "snapshots")
    #: fields added after the first recipes; left out of the hash at these values, so older checkpoints resume
    LATER = {"method": "lora", "regularize": "none", "reg_lambda": None, "importance_data": None}

    def __init__(self, path: Path, cfg: FinetuneConfig) -> None:
        self.path = path
        self.method = cfg.method
        d = {k: v for k, v in cfg.to_dict().items()
             if k not in self.IGNORED and not (k in self.LATER and v == self.LATER[k])}
        self.recipe = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def save(self, model, opt, step: int, log_lines: list[str], seconds: float) -> None:
        import torch

        buf = io.BytesIO()  # written through a unique temporary name: two trainings never share one
        torch.save({"recipe": self.recipe, "step": step, "lora": _trainable_state(model, self.method),
                    "optimizer": opt.state_dict(), "log": log_lines, "seconds": seconds}, buf)
        atomic_write_bytes(self.path, buf.getvalue())

    def load(self, model, opt) -> tuple[int, list[str], float]:
        """(steps done, log lines, seconds spent); (0, [], 0.0) when there is nothing to resume."""
        import torch
        from peft import set_peft_model_state_dict

        if not self.path.exists():
            return 0, [], 0.0
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("recipe") != self.recipe:
            return 0, [], 0.0
        if self.method == "lora":
            set_peft_model_state_dict(model, state["lora"])
        else:
            model.load_state_dict(state["lora"], strict=False)
        opt.load_state_dict(state["optimizer"])
        return state["step"], list(state["log"]), state["seconds"]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _trainable_state(model, method: str) -> dict:
    """The trained tensors: the LoRA weights of a peft model, or every trainable parameter (full fine-tuning)."""
    if method == "lora":
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def causal_lm_of(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lr_at(cfg: FinetuneConfig, step: int) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine decay to 10% of ``cfg.lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _lora_model(cfg: FinetuneConfig):
    """(tokenizer, add_bos, the base model wrapped with fresh LoRA adapters in train mode).

    Called right after seeding: the adapters' initial weights come from the torch RNG. ``--method full``:
    the model itself, every weight trainable.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.backends.hf import load_hf

    spec = ModelSpec.from_dict("base", cfg.base)
    tok, model, add_bos = load_hf(spec, threads=cfg.threads, device="cpu" if not torch.cuda.is_available() else None)
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        return tok, add_bos, model
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise ConfigError(f"--target-modules: {', '.join(missing)} not in the model; it has e.g. "
                          f"{', '.join(sorted(m for m in present if m.endswith('proj'))[:8])}")
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=cfg.target_modules, lora_dropout=0.0,
                      bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    return tok, add_bos, peft_model


def _collate(encoded: list[tuple[list[int], list[int]]], idx: list[int], pad: int):
    """(ids, labels, attention mask) of one batch, right-padded to its longest example."""
    import torch

    width = max(len(encoded[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        x, y = encoded[i]
        ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, labels, mask


@dataclass
class _Training:
    """What the step loop works on: the recipe, the model and its optimizer, the data, and where it saves."""

    cfg: FinetuneConfig
    peft_model: Any
    opt: Any
    params: list
    encoded: list[tuple[list[int], list[int]]]
    pad: int
    ckpt: Checkpoint
    out: Path
    log_lines: list[str]  # one JSON line per finished step, the resumed ones included
    started: float  # time.time() at the start, minus the seconds of a resumed run
    tok: Any = None
    reg: Any = None  # harness.training.regularize.Regularizer, or None
    extra: dict = field(default_factory=dict)  # recipe entries shared with the snapshots


def _steps(tr: _Training, start: int, progress: bool) -> None:
    """Optimizer steps ``start`` .. ``cfg.steps``, with a checkpoint every ``save_every`` steps."""
    import torch
    from tqdm.auto import tqdm

    cfg = tr.cfg
    causal_lm = causal_lm_of(tr.peft_model)
    device = causal_lm.device
    bar = tqdm(total=cfg.steps, initial=start, desc="finetune", unit="step", disable=not progress, dynamic_ncols=True)
    for step, idx in enumerate(_batches(len(tr.encoded), cfg.batch_size, cfg.steps, cfg.seed)):
        if step < start:
            continue  # done before the restart; the batch order is replayed, not recomputed
        t0 = time.time()
        ids, labels, mask = _collate(tr.encoded, idx, tr.pad)
        for group in tr.opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        loss = response_loss(causal_lm, ids.to(device), mask.to(device), labels.to(device))
        if not torch.isfinite(loss):
            raise ConjugateError(f"finetune: loss became {loss.item()} at step {step}; lower --lr")
        tr.opt.zero_grad(set_to_none=True)
        terms = tr.reg.backward(loss) if tr.reg is not None else loss.backward() or {}
        torch.nn.utils.clip_grad_norm_(tr.params, 1.0)
        tr.opt.step()
        rec = {"step": step + 1, "loss": round(loss.item(), 6), "lr": lr_at(cfg, step),
               "tokens": int((labels[:, 1:] != -100).sum()), "seconds": round(time.time() - t0, 3),
               **{k: float(f"{v:.6g}") for k, v in terms.items()}}
        tr.log_lines.append(json.dumps(rec))
        bar.set_postfix(loss=f"{rec['loss']:.3f}")
        bar.update(1)
        if step + 1 in cfg.snapshots and step + 1 < cfg.steps:
            _snapshot(tr, step + 1)
        if ((step + 1) % cfg.save_every == 0 or step + 1 in cfg.snapshots) and step + 1 < cfg.steps:
            # resumable: a killed run loses < save_every steps and never a snapshot's
            tr.ckpt.save(tr.peft_model, tr.opt, step + 1, tr.log_lines, time.time() - tr.started)
            atomic_write_text(tr.out / "training.jsonl", "\n".join(tr.log_lines) + "\n")
    atomic_write_text(tr.out / "training.jsonl", "\n".join(tr.log_lines) + "\n")
    bar.close()


def _save_weights(tr: _Training, folder: Path) -> Path:
    """The adapter (LoRA) or the whole model with its tokenizer (full) in ``folder``; the weights file."""
    tr.peft_model.save_pretrained(str(folder), safe_serialization=True)
    if tr.cfg.method == "lora":
        return folder / "adapter_model.safetensors"
    tr.tok.save_pretrained(str(folder))
    return folder / "model.safetensors"


def _weights_entry(cfg: FinetuneConfig, weights: Path) -> dict[str, str]:
    key = "adapter_sha256" if cfg.method == "lora" else "weights_sha256"
    return {key: sha256_file(weights), "weights_file": weights.name}


def _snapshot(tr: _Training, step: int) -> None:
    """A copy of the weights after ``step`` steps in ``out/step-<step>``, with a recipe.json (published atomically)."""
    import os
    import shutil
    import tempfile

    final = tr.out / f"step-{step}"
    if (final / "recipe.json").exists():
        return  # written before a restart
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}.", dir=tr.out))
    try:
        weights = _save_weights(tr, tmp)
        losses = [json.loads(line)["loss"] for line in tr.log_lines]
        atomic_write_json(tmp / "recipe.json", {
            "config": {**tr.cfg.to_dict(), "steps": step}, "schedule_steps": tr.cfg.steps, "snapshot_of": str(tr.out),
            **tr.extra, **_weights_entry(tr.cfg, weights), "last_loss": losses[-1],
            "mean_loss_last_10pct": _tail_mean(losses)})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tail_mean(values: list[float]) -> float:
    tenth = max(1, len(values) // 10)
    return sum(values[-tenth:]) / tenth


def _recipe(cfg: FinetuneConfig, extra: dict, weights: Path, log: list[dict], seconds: float) -> dict[str, Any]:
    """recipe.json: the config, what the data and weights hash to, timings, loss summary and versions."""
    losses = [r["loss"] for r in log]
    tenth = max(1, len(losses) // 10)
    out = {
        "config": cfg.to_dict(), **extra, **_weights_entry(cfg, weights),
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / cfg.steps, 3),
        "first_loss": losses[0], "last_loss": losses[-1],
        "mean_loss_first_10pct": sum(losses[:tenth]) / tenth,
        "mean_loss_last_10pct": _tail_mean(losses),
        "versions": package_versions(("conjugate-harness", "torch", "transformers", "peft")),
    }
    if "reg" in log[-1]:
        out["last_reg"], out["mean_reg_last_10pct"] = log[-1]["reg"], _tail_mean([r["reg"] for r in log])
    return out


def train(cfg: FinetuneConfig, progress: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """Run the recipe (resuming from a checkpoint of the same recipe in ``cfg.out``); return the output folder."""
    import torch

    from harness.pipeline.models import model_identity
    from harness.training import regularize

    out = Path(cfg.out)
    rows = load_examples(cfg.data, cfg.n_examples, cfg.seed)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    tok, add_bos, peft_model = _lora_model(cfg)
    encoded = [encode_example(tok, add_bos, r["instruction"], r["response"], cfg.max_len) for r in rows]
    params = [p for p in peft_model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    reg, reg_info = regularize.build(cfg, causal_lm_of(peft_model), tok, add_bos,
                                     model_identity(ModelSpec.from_dict("base", cfg.base)), progress, log)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(out / "checkpoint.pt", cfg)
    start, log_lines, spent = ckpt.load(peft_model, opt)
    if log:
        log(f"finetune {cfg.base}: {len(rows)} examples, {n_trainable:,} trainable "
            f"{'LoRA ' if cfg.method == 'lora' else ''}parameters, {cfg.steps} steps"
            + (f", regularize {cfg.regularize} (lambda {reg.lam:g})" if reg else "")
            + (f"; resuming after step {start} from {ckpt.path}" if start else ""))
    extra = {"data_sha256": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest(),
             "n_examples": len(rows), "trainable_parameters": n_trainable, "regularization": reg_info}
    tr = _Training(cfg, peft_model, opt, params, encoded, pad, ckpt, out, log_lines, time.time() - spent, tok, reg, extra)
    _steps(tr, start, progress)
    seconds = time.time() - tr.started
    weights = _save_weights(tr, out)
    records = [json.loads(line) for line in log_lines]
    atomic_write_json(out / "recipe.json", _recipe(cfg, extra, weights, records, seconds))
    if cfg.steps in cfg.snapshots:
        _snapshot(tr, cfg.steps)
    ckpt.remove()
    kind = f"LoRA r={cfg.rank}" if cfg.method == "lora" else "full fine-tuning"
    plot_loss([r["loss"] for r in records], out / "loss.png", title=f"{kind} on {cfg.base} ({cfg.data})"
              + (f", regularize {cfg.regularize}" if reg else ""), reg=[r["reg"] for r in records] if reg else None)
    return out


def plot_loss(losses: list[float], path: Path, title: str, reg: list[float] | None = None) -> None:
    """The task loss per step with its moving mean; with ``reg``, the penalty term on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="#bbb", lw=0.8, label="loss per step")
    k = max(1, len(losses) // 20)
    smooth = [sum(losses[max(0, i - k + 1): i + 1]) / len(losses[max(0, i - k + 1): i + 1]) for i in range(len(losses))]
    ax.plot(steps, smooth, color="#1f77b4", lw=1.8, label=f"moving mean ({k})")
    ax.set_xlabel("step")
    ax.set_ylabel("response-token cross-entropy")
    handles, labels = ax.get_legend_handles_labels()
    if reg is not None:
        ax2 = ax.twinx()
        ax2.plot(steps, reg, color="#d62728", lw=1.4, label="penalty term (sum c_l R_l)")
        ax2.set_ylabel("regularisation term", color="#d62728")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.set_title(title, fontsize=9)
    ax.legend(handles, labels, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())  # a reader never sees half a PNG
