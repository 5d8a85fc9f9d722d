"""Harness overhead versus raw batched ``model.generate``, and versus a batch-1 loop.

Usage: ``python bench/overhead.py [--limit N] [--batch-size B] [--tiny] [--model M] ...``

All three sides run in ONE process on the SAME final prompts (the harness's
own, from ``harness.pipeline.runner.plan``) with the same model, batch size, greedy
decoding and ``max_new_tokens``:

* **raw batched**: our own transformers model + tokenizer loaded from
  ``harness.pipeline.models.local_folder``; prompts sorted by length like the runner,
  tokenised per batch, BOS prepended exactly when the harness does, left
  padded, ``model.generate`` under ``torch.inference_mode()``, decoded.
* **harness end-to-end**: ``harness.pipeline.runner.run(spec, progress=False)`` with a
  fresh empty generation cache and a fresh results folder. The fair choice:
  ``pretrained`` and ``finetuned`` are the *same* ModelSpec, so their cache
  keys are identical; the first role generates every prompt and the second
  role is answered entirely from the cache (the script checks this in the
  manifest). One ``run()`` thus does ONE model's generation plus all of the
  harness's bookkeeping (planning, hashing the model for its cache identity,
  SQLite commits, scoring, writing four output files, the second role's
  cache look-up), so it is compared with 1x raw time, not 2x. Model load is
  excluded by building the backend once and passing it in through
  ``backend_factory``, wrapped so that ``run()``'s ``close()`` keeps it alive.
* **batch-1 loop** (like the paper's reference scripts): for each prompt
  tokenise, ``generate`` with batch size 1, decode.

Each side is warmed up once on one batch first. Then raw and harness are timed
``--repeats`` times (default 3), alternating which goes first, and the fastest
time of each is used: on a small shared CPU machine single timings vary by
10-20 %, which is more than the overhead being measured.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from harness.pipeline.models import DEFAULT_PRETRAINED, ModelSpec, local_folder
from harness.registry import BACKENDS
from harness.pipeline.runner import plan, run
from harness.pipeline.spec import RunSpec
from harness.types import Sampling


class KeepOpen:
    """Wraps a backend: ``close()`` does nothing, ``generate`` time is summed."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.generate_s = backend, 0.0

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        t = time.perf_counter()
        try:
            return self.backend.generate(prompts, sampling)
        finally:
            self.generate_s += time.perf_counter() - t

    def close(self) -> None:
        pass


class Raw:
    """Plain transformers, written the way a careful user would without the harness."""

    def __init__(self, ms: ModelSpec, device: str, max_new_tokens: int) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, meta = local_folder(ms)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(ms.dtype, "auto")
        kw = {"revision": ms.revision} if ms.source_kind == "hub" and ms.revision else {}
        self.tok = AutoTokenizer.from_pretrained(folder, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw).to(device).eval()
        self.device = device
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        bos = self.tok.bos_token_id
        # BOS rule of the harness: GGUF header if known, else whether the tokenizer adds it itself
        want = meta.get("add_bos_token", self.tok("a").input_ids[:1] == [bos])
        self.bos = bos if bos is not None and (ms.bos == "always" or (ms.bos == "auto" and want)) else None
        self.kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad,
                                       temperature=None, top_p=None, top_k=None)

    def _ids(self, prompts: Sequence[str]) -> list[list[int]]:
        ids = self.tok(list(prompts), add_special_tokens=False).input_ids
        return [[self.bos] + s if self.bos is not None and s[:1] != [self.bos] else s for s in ids]

    @torch.inference_mode()
    def batched(self, prompts: Sequence[str], batch_size: int) -> dict[str, str]:
        order = sorted(dict.fromkeys(prompts), key=lambda p: (-len(p), p))  # like the runner: longest first
        out: dict[str, str] = {}
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            seqs = self._ids(batch)
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, s in enumerate(seqs):
                ids[j, width - len(s):], mask[j, width - len(s):] = torch.tensor(s), 1
            gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **self.kw)
            out.update(zip(batch, self.tok.batch_decode(gen[:, width:], skip_special_tokens=True)))
        return out

    @torch.inference_mode()
    def loop(self, prompts: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for p in prompts:
            ids = torch.tensor(self._ids([p]), device=self.device)
            gen = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **self.kw)
            out[p] = self.tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
        return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=32, help="examples of icl_vs_if (default 32)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--model", default=None, help="hub ID, folder or .gguf (default: the embedded Gemma-3-270M)")
    ap.add_argument("--transforms", default="identity", help="comma-separated, e.g. identity,lang:fr")
    ap.add_argument("--tiny", action="store_true", help="use the tiny random Llama (quick smoke run)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of raw and harness (fastest counts; default 3)")
    ap.add_argument("--no-loop", action="store_true", help="skip the (slow) batch-1 loop")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="conjugate-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if args.tiny:
            from harness.training.tiny import build_tiny_llama

            ms = ModelSpec(name="tiny-llama", model=str(build_tiny_llama(tmp / "tiny")))
        elif args.model:
            ms = ModelSpec(name=Path(args.model.rstrip("/")).name or args.model, model=args.model)
        else:
            ms = DEFAULT_PRETRAINED

        def spec_for(tag: str) -> RunSpec:
            return RunSpec(pretrained=ms, finetuned=ms, tasks=["icl_vs_if"], transforms=args.transforms.split(","),
                           limit=args.limit, batch_size=args.batch_size, threads=args.threads,
                           out=str(tmp / "results"), run_id=tag, cache=str(tmp / f"{tag}.sqlite"))

        p = plan(spec_for("plan"))
        prompts = list(dict.fromkeys(s.transformed_prompt for s in p.samples if s.model == "pretrained" and s.error is None))
        sampling = next(iter(p.sampling.values()))
        assert len(p.sampling) == 1 and sampling.greedy and not sampling.stop, "bench assumes one greedy task, no stops"

        load_h, backend = timed(lambda: BACKENDS.create(ms.backend, ms, threads=args.threads))
        keep = KeepOpen(backend)
        load_r, raw = timed(lambda: Raw(ms, backend.device, sampling.max_new_tokens))
        assert (raw.bos is not None) == backend.add_bos, "raw BOS decision differs from the harness's"
        warm = sorted(prompts, key=len, reverse=True)[: args.batch_size]
        keep.generate(warm, sampling)
        raw.batched(warm, args.batch_size)
        keep.generate_s = 0.0

        raw_times: list[float] = []
        harness_times: list[tuple[float, float, Path]] = []  # (end-to-end, inside backend.generate, run dir)
        raw_out: dict[str, str] = {}
        for rep in range(args.repeats):
            for side in (("raw", "harness") if rep % 2 == 0 else ("harness", "raw")):
                if side == "raw":
                    t, raw_out = timed(lambda: raw.batched(prompts, args.batch_size))
                    raw_times.append(t)
                else:
                    keep.generate_s = 0.0
                    t, run_dir = timed(lambda: run(spec_for(f"rep{rep}"), progress=False, backend_factory=lambda _: keep))
                    harness_times.append((t, keep.generate_s, run_dir))
        t_raw = min(raw_times)
        t_h, t_h_gen, run_dir = min(harness_times)

        manifest = json.loads((run_dir / "manifest.json").read_text())
        gen = manifest["generation"]
        assert gen["pretrained"]["generated"] == len(prompts) and gen["finetuned"]["cached"] == len(prompts), gen
        harness_out: dict[str, str] = {}
        for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            if s["model"] == "pretrained":
                harness_out[s["transformed_prompt"]] = s["response"]
        loop_t, loop_out = (None, {}) if args.no_loop else timed(lambda: raw.loop(prompts))

    def same(a: dict[str, str], b: dict[str, str]) -> int:
        return sum(a.get(k) == b.get(k) for k in prompts)

    print()
    print(f"prompts: {len(prompts)}  batch: {args.batch_size}  max_new_tokens: {sampling.max_new_tokens}  "
          f"model: {ms.name}  device: {backend.device}  threads: {torch.get_num_threads()}  "
          f"transforms: {args.transforms}  repeats: {args.repeats}")
    print(f"model load (excluded)     harness {load_h:.1f} s, raw {load_r:.1f} s")
    print(f"raw batched generate    {t_raw:7.2f} s")
    print(f"harness end-to-end      {t_h:7.2f} s   ratio {t_h / t_raw:.3f} (target <= 1.10)")
    print(f"  of which backend.generate {t_h_gen:.2f} s, rest of the harness {t_h - t_h_gen:.2f} s")
    if loop_t is not None:
        print(f"batch-1 loop            {loop_t:7.2f} s   ratio {loop_t / t_h:.2f}x vs harness (target >= 5x)")
    print(f"outputs equal (raw vs harness): {same(raw_out, harness_out)}/{len(prompts)}")
    if loop_t is not None:
        print(f"outputs equal (batch-1 loop vs harness): {same(loop_out, harness_out)}/{len(prompts)}")
    if len(raw_times) > 1:
        print(f"all raw times: {', '.join(f'{t:.2f}' for t in raw_times)}; "
              f"all harness times: {', '.join(f'{t:.2f}' for t, _, _ in harness_times)}")


if __name__ == "__main__":
    main()
