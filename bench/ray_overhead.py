"""Ray execution overhead: ``--executor ray`` with 1 and 2 actors against the in-process executor, same work.

Usage: ``python bench/ray_overhead.py [--tiny] [--model M] [--limit N] [--batch-size B] [--repeats R]
[--actors 1,2] [--address ADDR] [--per-sample-s S]``

Every side runs the same RunSpec (both models of the pair, ``icl_vs_if`` over ``--transforms``, ``--limit``
examples, ``--batch-size``, one torch thread per model copy) with a fresh, empty generation cache, so every
generation and every probe log-likelihood is computed:

* **in-process**: ``--executor local`` (the default executor);
* **ray, N actors**: ``--executor ray`` with ``ray.actors: N``, one CPU (one thread) per actor, on a Ray
  instance started here (``ray.init(num_cpus=...)``) or the cluster at ``--address``.

Timed: the executor's work per model as the manifest records it (``generation.<role>.seconds``, which leaves out
the model load and the actors' start, plus ``probe.<role>.seconds``), summed over both models; the fastest of
``--repeats`` per side (a shared 2-core machine varies by 10-20 % between runs). The load column (in-process:
the model load; Ray: the actors' start, i.e. process, imports and model load) is paid once per model per run.

Then a **calculation**, not a measurement: the paper-size suite (``--preset paper``: 7 renderings x 4 configs x
100 prompts, both models, generation plus the probe's two log-likelihoods per sample) on N GPUs, from a
per-sample cost (measured here in-process, or ``--per-sample-s`` measured on the target GPU, e.g. a manifest's
``generation.<role>.seconds / prompts``) plus the Ray overhead per sample measured here (1 actor minus
in-process), divided over N actors, plus the measured actor start once per model.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from harness.pipeline.models import DEFAULT_PRETRAINED, ModelSpec
from harness.pipeline.runner import run
from harness.pipeline.spec import RunSpec

PAPER_SAMPLES = 2 * 7 * 4 * 100  # models x renderings x configs x prompts (harness/presets/paper.yaml)


def spec_for(model: ModelSpec, where: Path, args: argparse.Namespace, **kw: Any) -> RunSpec:
    ft = ModelSpec(**{**model.to_dict(), "name": f"{model.name}-ft", "bos": "always"})  # other cache key: computed
    return RunSpec(pretrained=model, finetuned=ft, tasks=["icl_vs_if"], transforms=args.transforms.split(","),
                   limit=args.limit, batch_size=args.batch_size, threads=1, out=str(where / "out"),
                   cache=str(where / "generations.sqlite"), run_id="bench", **kw)


def measure(model: ModelSpec, args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    """One run on a fresh cache: the executor's seconds (both models), actor start, samples, batches."""
    with tempfile.TemporaryDirectory(prefix="conjugate-ray-bench-") as tmp:
        out = run(spec_for(model, Path(tmp), args, **kw), progress=False)
        m = json.loads((out / "manifest.json").read_text())
    work = sum(m["generation"][r]["seconds"] + m["probe"][r].get("seconds", 0.0) for r in m["generation"])
    start = sum(b.get("load_seconds", 0.0) for b in m["backends"].values())
    samples = sum(g["prompts"] for g in m["generation"].values())
    batches = sum(b.get("ray", {}).get("batches", 0) for b in m["backends"].values())
    nodes = max((b.get("ray", {}).get("nodes", 0) for b in m["backends"].values()), default=0)
    return {"work_s": work, "start_s": start, "samples": samples, "batches": batches, "nodes": nodes}


def best(model: ModelSpec, args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    runs = [measure(model, args, **kw) for _ in range(args.repeats)]
    return min(runs, key=lambda r: r["work_s"])


def calculation(local: dict[str, Any], ray1: dict[str, Any], args: argparse.Namespace) -> list[str]:
    per_sample = args.per_sample_s or local["work_s"] / local["samples"]
    overhead = max(0.0, (ray1["work_s"] - local["work_s"]) / local["samples"])
    start = ray1["start_s"]
    source = "--per-sample-s" if args.per_sample_s else "measured here, in-process, this model"
    lines = ["", "CALCULATION (not a measurement): the paper-size suite (--preset paper) on N GPUs, one actor each",
             f"  samples = {PAPER_SAMPLES} (2 models x 7 renderings x 4 configs x 100 prompts), each one generation "
             f"+ 2 probe log-likelihoods",
             f"  per-sample cost c = {per_sample * 1000:.2f} ms ({source}); Ray overhead o = {overhead * 1000:.2f} ms "
             f"per sample (measured: 1 actor - in-process); actor start s = {start:.1f} s per run (measured, both "
             f"models)",
             "  T(N) = s + samples x (c + o) / N   (perfect sharding assumed; the 2-actor row above shows what this "
             "machine reaches)",
             f"  {'N':>5} {'T(N)':>12}"]
    for n in args.gpus:
        t = start + PAPER_SAMPLES * (per_sample + overhead) / n
        lines.append(f"  {n:>5} {t:>10.1f} s")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the tiny random Llama (default: the embedded Gemma-3-270M)")
    ap.add_argument("--model", help="hub ID, folder or .gguf instead")
    ap.add_argument("--transforms", default="identity,lang:fr,lang:es,leetspeak")
    ap.add_argument("--limit", type=int, default=24, help="icl_vs_if examples per transform (default 24)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="runs per side; the fastest counts (default 2)")
    ap.add_argument("--actors", default="1,2", help="actor counts of the scaling curve (default 1,2)")
    ap.add_argument("--address", help="a running Ray cluster (default: Ray started here)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the Ray started here")
    ap.add_argument("--per-sample-s", type=float, help="per-sample cost for the calculation (default: measured)")
    ap.add_argument("--gpus", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16, 64],
                    help="N of the calculation (default 1,2,4,8,16,64)")
    args = ap.parse_args(argv)
    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="conjugate-ray-model-") as tmp:
        model = pick_model(args, Path(tmp))
        report(model, args)
    ray.shutdown()


def pick_model(args: argparse.Namespace, tmp: Path) -> ModelSpec:
    if args.tiny:
        from harness.training.tiny import build_tiny_llama

        return ModelSpec(name="tiny", model=str(build_tiny_llama(tmp / "tiny")))
    if args.model:
        return ModelSpec(name=Path(args.model).name, model=args.model)
    return DEFAULT_PRETRAINED


def report(model: ModelSpec, args: argparse.Namespace) -> None:
    started = time.time()
    local = best(model, args)
    rows = [("in-process", local)]
    for n in [int(x) for x in args.actors.split(",")]:
        rows.append((f"ray, {n} actor{'s' if n > 1 else ''}", best(model, args, executor="ray",
                                                                  ray={"actors": n, "address": args.address}
                                                                  if args.address else {"actors": n})))
    print(f"model {model.name}; {local['samples']} samples (both models), batch size {args.batch_size}, "
          f"1 thread per model copy, fastest of {args.repeats}; {time.time() - started:.0f} s in all")
    print(f"{'executor':<16} {'work s':>8} {'vs in-process':>14} {'ms/sample':>10} {'batches':>8} {'nodes':>6} "
          f"{'load s':>8}")
    for name, r in rows:
        print(f"{name:<16} {r['work_s']:>8.2f} {r['work_s'] / local['work_s']:>13.2f}x "
              f"{1000 * r['work_s'] / r['samples']:>10.2f} {r['batches'] or '-':>8} {r['nodes'] or '-':>6} "
              f"{r['start_s']:>8.1f}")
    ray1 = next((r for name, r in rows if name == "ray, 1 actor"), rows[-1][1])
    print("\n".join(calculation(local, ray1, args)))


if __name__ == "__main__":
    main()
