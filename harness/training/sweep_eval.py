"""What `conjugate sweep` measures at each checkpoint: held-out fine-tuning loss, forgetting cross-entropy,
icl_vs_if (English ICL rate, recovery under conjugates, the probe) and, optionally, the held-out refusal rate.

* held-out loss: mean response-token cross-entropy (the training loss) on ``heldout`` assistant-en examples
  drawn with another seed, none of whose instructions is in the training set; per-example sums are kept,
  so intervals (and the fits' bootstraps) resample examples.
* forgetting: :func:`harness.training.forgetting.measure.evaluate` on the shipped reference text; the
  per-chunk sums are kept for the bootstraps.
* icl_vs_if and refusal: :func:`harness.evaluate` (``conjugate run`` as a function) into ``<out>/evals/``,
  through the generation cache, so the pretrained model's generations are made once for the whole sweep.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from harness.errors import ConfigError

HELDOUT_SEED_OFFSET = 10_000


def heldout_rows(data: str, n: int, n_train: int, seed: int, heldout_data: str | None) -> list[dict[str, str]]:
    """``n`` held-out {instruction, response} rows: ``heldout_data`` (JSONL), or the built-in generator with
    another seed, minus any instruction of the training set."""
    from harness.training.finetune import load_examples
    from harness.training.instruct_data import GENERATORS

    if heldout_data:
        return load_examples(heldout_data, n, seed)[:n]
    if data not in GENERATORS:
        raise ConfigError(f"--data {data} is a file: give --heldout-data FILE (JSONL) for the held-out loss")
    seen = {r["instruction"] for r in load_examples(data, n_train, seed)}
    rows = [r for r in GENERATORS[data](n + n // 2 + 10, seed=seed + HELDOUT_SEED_OFFSET) if r["instruction"] not in seen]
    return [{"instruction": r["instruction"], "response": r["response"]} for r in rows[:n]]


def heldout_loss(model, tok, add_bos: bool, rows: list[dict], max_len: int, batch_size: int = 16) -> dict[str, Any]:
    """Response-token cross-entropy of ``model`` on ``rows``: per-example sums and token counts, and the mean
    (token-weighted) with a 95% bootstrap interval over examples."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from harness.analysis.stats import bootstrap_weights, ratio_ci
    from harness.training.finetune import _collate, causal_lm_of, encode_example

    lm = causal_lm_of(model)
    enc = [encode_example(tok, add_bos, r["instruction"], r["response"], max_len) for r in rows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    sums, counts = [], []
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    with torch.inference_mode():
        for b in range(0, len(enc), batch_size):
            idx = list(range(b, min(b + batch_size, len(enc))))
            ids, labels, mask = _collate(enc, idx, pad)
            hidden = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).last_hidden_state
            target = labels[:, 1:].to(lm.device)
            for r in range(len(idx)):
                keep = target[r] != -100
                logits = lm.lm_head(hidden[r, :-1][keep]).float()
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                sums.append(float(F.cross_entropy(logits, target[r][keep], reduction="sum")))
                counts.append(int(keep.sum()))
    ci = ratio_ci(np.array(sums), np.array(counts, float), bootstrap_weights(len(sums), 0))
    return {"loss": ci, "n_examples": len(sums), "n_tokens": sum(counts), "sums": [round(s, 5) for s in sums],
            "tokens": counts}


def forgetting(pretrained, finetuned, text: str, max_tokens: int, batch_size: int, threads: int | None,
               progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """CE / entropy / KL on the reference text (English) with the per-chunk sums behind them."""
    from harness.training.forgetting.measure import evaluate

    res = evaluate(pretrained, [finetuned], text, max_tokens=max_tokens, batch_size=batch_size, threads=threads,
                   progress=progress, log=log)
    row = res["results"][0]
    sums = res["chunk_sums"][0]
    return {**{k: row[k] for k in ("ce", "entropy", "kl")}, "n_chunks": row["n_chunks"], "n_tokens": row["n_tokens"],
            "chunks": {k: sums[k] for k in ("n", "ce", "entropy", "kl")}}


def _rate(summary: dict, model: str, task: str, transform: str, label: str) -> dict[str, Any] | None:
    for r in summary.get("rows") or []:
        if (r["model"], r["task"], r["transform"], r["group"]) == (model, task, transform, "all"):
            v = r["rates"].get(label) or {}
            return {"rate": v.get("rate"), "lo": v.get("lo"), "hi": v.get("hi"), "k": v.get("k"), "n": r["n"]}
    return None


def _outcomes(result, task: str, transform: str, label: str) -> dict[str, dict[str, int]]:
    """Per model: example id -> 1 if the sample's outcome is ``label`` (scored samples only), for paired tests."""
    out: dict[str, dict[str, int]] = {}
    for s in result.samples:
        if s.task == task and s.transform == transform and s.outcome not in ("error", None):
            out.setdefault(s.model, {})[s.example_id] = int(s.outcome == label)
    return out


def icl(pretrained: str, finetuned: str, run_id: str, sc, log: Callable[[str], None]) -> dict[str, Any]:
    """icl_vs_if on ``sc.transforms`` at ``sc.limit`` (probe on unless ``sc.probe`` is False)."""
    import harness

    res = harness.evaluate(pretrained, finetuned, tasks=["icl_vs_if"], transforms=sc.transforms, limit=sc.limit,
                           seed=sc.seed, probe=sc.probe, out=sc.out_path / "evals", run_id=run_id, cache=sc.cache,
                           progress=sc.progress, log=log, threads=sc.threads)
    summ = res.summary
    rates = {t: {m: _rate(summ, m, "icl_vs_if", t, "icl") for m in ("pretrained", "finetuned")} for t in sc.transforms}
    recovery = {r["transform"]: {"recovery": r.get("recovery"), "ci": r.get("ci"), "drop": r.get("drop")}
                for r in summ.get("recovery") or [] if r["task"] == "icl_vs_if" and r["group"] == "all"
                and r["label"] == "icl" and r["transform"] != "identity"}
    probe = {}
    for p in summ.get("probe") or []:
        if p["task"] == "icl_vs_if" and p["group"] == "all":
            probe.setdefault(p["transform"], {})[p["model"]] = {k: p.get(k) for k in ("mean", "lo", "hi", "n")}
    en = rates.get("identity") or {}
    drop = None
    if en.get("pretrained") and en.get("finetuned") and en["finetuned"]["rate"] is not None:
        drop = en["pretrained"]["rate"] - en["finetuned"]["rate"]
    return {"run_dir": str(res.run_dir), "rates": rates, "english_drop": drop, "recovery": recovery, "probe": probe,
            "samples": _outcomes(res, "icl_vs_if", "identity", "icl")}


def refusal(pretrained: str, finetuned: str, run_id: str, sc, log: Callable[[str], None]) -> dict[str, Any]:
    """Refusal rate of the held-out (never trained on) English requests."""
    import harness

    res = harness.evaluate(pretrained, finetuned, tasks=["refusal"], transforms=["identity"], seed=sc.seed,
                           probe=False, out=sc.out_path / "evals", run_id=run_id, cache=sc.cache,
                           progress=sc.progress, log=log, threads=sc.threads)
    return {"run_dir": str(res.run_dir),
            "rates": {m: _rate(res.summary, m, "refusal", "identity", "refuse") for m in ("pretrained", "finetuned")},
            "samples": _outcomes(res, "refusal", "identity", "refuse")}


class Evaluator:
    """Loads the general text and held-out rows once; measures one checkpoint at a time."""

    def __init__(self, sc, log: Callable[[str], None]) -> None:
        from harness.training.forgetting.text import read_text

        self.sc, self.log = sc, log
        self.text, self.text_path = read_text(sc.text)
        self.rows = heldout_rows(sc.data, sc.heldout, sc.n_examples, sc.seed, sc.heldout_data)

    def base(self) -> dict[str, Any]:
        """The pretrained model's held-out loss (the fine-tuning loss at step 0)."""
        from harness.backends.hf import load_hf

        t0 = time.time()
        tok, model, add_bos = load_hf(self.sc.base_spec(), threads=self.sc.threads, device="cpu")
        out = heldout_loss(model, tok, add_bos, self.rows, self.sc.max_len)
        return {"steps": 0, "heldout": out, "seconds": round(time.time() - t0, 1)}

    def point(self, spec, name: str, with_refusal: bool = False) -> dict[str, Any]:
        """Every measurement of one checkpoint (``spec``: base + adapter)."""
        from harness.backends.hf import load_hf

        sc, secs = self.sc, {}
        t0 = time.time()
        tok, model, add_bos = load_hf(spec, threads=sc.threads, device="cpu")
        ho = heldout_loss(model, tok, add_bos, self.rows, sc.max_len)
        del model
        secs["heldout"] = round(time.time() - t0, 1)
        t0 = time.time()
        fg = forgetting(sc.base_spec(), spec, self.text, sc.max_tokens, sc.eval_batch_size, sc.threads,
                        sc.progress, self.log)
        secs["forgetting"] = round(time.time() - t0, 1)
        ft = f"{spec.model}+{spec.adapter}"
        t0 = time.time()
        ic = icl(sc.base, ft, f"{name}-icl", sc, self.log)
        secs["icl"] = round(time.time() - t0, 1)
        rf = None
        if with_refusal:
            t0 = time.time()
            rf = refusal(sc.base, ft, f"{name}-refusal", sc, self.log)
            secs["refusal"] = round(time.time() - t0, 1)
        return {"heldout": ho, "forgetting": fg, "icl": ic, "refusal": rf, "seconds": secs}


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
