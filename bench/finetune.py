"""Seconds per LoRA step for the default `conjugate finetune` recipe, and what response-only logits save.

Usage: ``python bench/finetune.py [--steps 20] [--base pkg:gemma3-270m] [--recipe-dir DIR]``

On the same model, LoRA setup and batches (the default recipe's first
``--steps`` batches), it times one optimizer step two ways, alternating:

* **response-only logits** (what ``conjugate finetune`` does): the LM head runs
  only at positions whose next token is a response token;
* **full logits**: the usual ``model(...).logits`` over every position, then
  the same masked cross-entropy.

It prints seconds per step for both, their ratio, and the projected total for
the default recipe. With ``--recipe-dir`` pointing at a finished run of the
default recipe, it also prints the measured total from its ``recipe.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    from harness.backends.hf import load_hf
    from harness.training.finetune import FinetuneConfig, _batches, encode_example, load_examples, response_loss
    from harness.pipeline.models import ModelSpec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per method (default 20)")
    ap.add_argument("--base", default=None, help="base model (default: the recipe's)")
    ap.add_argument("--recipe-dir", default=None, help="a finished default-recipe output folder to read the total from")
    a = ap.parse_args()

    cfg = FinetuneConfig(**({"base": a.base} if a.base else {}))
    rows = load_examples(cfg.data, cfg.n_examples, cfg.seed)
    tok, model, add_bos = load_hf(ModelSpec.from_dict("base", cfg.base), device="cpu")
    torch.manual_seed(cfg.seed)
    peft_model = get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=cfg.target_modules,
                                                  lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"))
    peft_model.train()
    lm = peft_model.get_base_model()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    enc = [encode_example(tok, add_bos, r["instruction"], r["response"], cfg.max_len) for r in rows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def batch(idx):
        width = max(len(enc[i][0]) for i in idx)
        ids = torch.full((len(idx), width), pad)
        lab = torch.full((len(idx), width), -100)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            x, y = enc[i]
            ids[r, : len(x)], lab[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        return ids, mask, lab

    def full_loss(ids, mask, lab):
        logits = lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = lab[:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)

    def step(fn, b) -> tuple[float, float]:
        t0 = time.perf_counter()
        loss = fn(*b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, loss.item()

    batches = [batch(idx) for idx in _batches(len(enc), cfg.batch_size, a.steps + 1, cfg.seed)]
    step(response_loss_fn := (lambda i, m, l: response_loss(lm, i, m, l)), batches[0])  # warm-up
    step(full_loss, batches[0])
    t_resp, t_full, gap = [], [], []
    for b in batches[1:]:
        for name in (("resp", "full") if len(t_resp) % 2 == 0 else ("full", "resp")):
            dt, loss = step(response_loss_fn if name == "resp" else full_loss, b)
            (t_resp if name == "resp" else t_full).append(dt)
    # both losses are the same quantity: check on one batch without stepping
    with torch.no_grad():
        gap.append(abs(response_loss(lm, *batches[0]).item() - full_loss(*batches[0]).item()))
    r, f = statistics.median(t_resp), statistics.median(t_full)
    print(f"\nmodel: {cfg.base}  LoRA r={cfg.rank} on {','.join(cfg.target_modules)}  batch {cfg.batch_size}  "
          f"max_len {cfg.max_len}  threads {torch.get_num_threads()}  timed steps {a.steps} each")
    print(f"response-only logits   {r:6.3f} s/step (median)")
    print(f"full logits            {f:6.3f} s/step (median)   full / response-only = {f / r:.2f}x")
    print(f"losses agree: |difference| = {gap[0]:.2e}")
    print(f"default recipe ({cfg.steps} steps): projected {r * cfg.steps / 60:.1f} min with response-only logits, "
          f"{f * cfg.steps / 60:.1f} min with full logits (budget 30 min)")
    if a.recipe_dir:
        rec = json.loads((Path(a.recipe_dir) / "recipe.json").read_text())
        print(f"measured full run: {rec['seconds'] / 60:.1f} min total, {rec['seconds_per_step']:.3f} s/step "
              f"(loss {rec['mean_loss_first_10pct']:.3f} -> {rec['mean_loss_last_10pct']:.3f})")


if __name__ == "__main__":
    main()
