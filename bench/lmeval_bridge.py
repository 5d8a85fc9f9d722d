"""The lm-eval bridge against stock lm-eval, side by side in one run: same metric, same samples, wall time.

Usage::

    python bench/lmeval_bridge.py [--model tiny|gemma|FOLDER] [--tasks conj_capitals_en,conj_opposites_en]
                                  [--limit 40] [--repeats 2] [--include tasks/data/lmeval]

For each repeat, in alternating order, both sides evaluate the same tasks on
the same model (hf, float32, CPU) from a cold start (model loaded in the
timed region, fresh generation cache for the bridge; one untimed warm-up of each side first, so neither pays
the imports):

* **stock**: ``lm_eval.simple_evaluate(model="hf", model_args="pretrained=FOLDER,dtype=float32")``;
* **bridge**: ``lm_eval.simple_evaluate(model=ConjugateLM(FOLDER, transform="identity"))``: every request
  through the harness's cached executor and hf backend.

Prints per task the metric of each side, whether they are exactly equal,
the per-sample count and per-sample agreement, then the wall times and
``bridge / stock`` (best of the repeats; target <= 1.05). A second bridge
evaluation on the now warm cache shows what a re-run costs (nothing computed).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # the example tasks' data_files are relative to the repo root (lm-eval's rule)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def model_folder(name: str, work: Path) -> tuple[str, str]:
    """(folder, extra model_args) for stock lm-eval; Gemma gets add_bos_token=True (it needs a BOS)."""
    if name == "tiny":
        from harness.training.tiny import build_tiny_llama

        return str(build_tiny_llama(work / "tiny")), ""
    if name == "gemma":
        from harness.pipeline.models import DEFAULT_PRETRAINED, local_folder

        return str(local_folder(DEFAULT_PRETRAINED)[0]), ",add_bos_token=True"
    return name, ""


def stock(folder: str, extra: str, tasks: list[str], limit: int, include: str, batch_size: int) -> tuple[dict, float]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    t = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder},dtype=float32{extra}", tasks=tasks,
                                  limit=limit, batch_size=batch_size, device="cpu", bootstrap_iters=0, log_samples=True,
                                  task_manager=TaskManager(include_path=include))
    return out, time.perf_counter() - t


def bridge(folder: str, tasks: list[str], limit: int, include: str, cache: Path, batch_size: int,
           bos: str) -> tuple[dict, float, dict]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.lmeval import ConjugateLM

    t = time.perf_counter()
    lm = ConjugateLM(folder, transform="identity", cache=str(cache), batch_size=batch_size, progress=False, bos=bos)
    out = lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=limit, bootstrap_iters=0, log_samples=True,
                                  task_manager=TaskManager(include_path=include))
    return out, time.perf_counter() - t, dict(lm.service.counts)


def per_sample(out: dict, task: str) -> dict[int, tuple]:
    rows = {}
    for s in out["samples"][task]:
        rows.setdefault(s["doc_id"], ())
        rows[s["doc_id"]] += tuple((m, s["filter"], s[m]) for m in s["metrics"])
    return rows


def compare(a: dict, b: dict, tasks: list[str]) -> bool:
    ok = True
    for task in tasks:
        ra, rb = a["results"][task], b["results"][task]
        keys = [k for k in ra if "," in k and not k.endswith("_stderr") and "stderr" not in k]
        sa, sb = per_sample(a, task), per_sample(b, task)
        same = sum(1 for d in sa if sa[d] == sb.get(d))
        for k in keys:
            eq = ra[k] == rb.get(k)
            ok &= eq
            print(f"  {task:24s} {k:28s} stock {ra[k]:.4f}  bridge {rb.get(k, float('nan')):.4f}  "
                  f"{'EQUAL' if eq else 'DIFFERENT'}")
        ok &= len(sa) == len(sb) == same
        print(f"  {task:24s} samples: stock {len(sa)}, bridge {len(sb)}, identical per-sample metrics {same}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="tiny (random Llama, built here), gemma (Gemma-3-270M) or a folder")
    ap.add_argument("--tasks", default="conj_capitals_en,conj_opposites_en")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--include", default="tasks/data/lmeval")
    a = ap.parse_args()
    from harness.lmeval.catalog import quiet_lm_eval

    quiet_lm_eval()
    tasks = a.tasks.split(",")
    work = Path(tempfile.mkdtemp(prefix="lmeval-bench-"))
    folder, extra = model_folder(a.model, work)
    bos = "always" if "add_bos_token=True" in extra else "auto"
    # untimed warm-up of both sides: imports (torch, transformers, lm-eval's modules) and the file cache
    stock(folder, extra, tasks, 2, a.include, a.batch_size)
    bridge(folder, tasks, 2, a.include, work / "warmup.sqlite", a.batch_size, bos)
    times: dict[str, list[float]] = {"stock": [], "bridge": []}
    s_out = b_out = None
    for r in range(a.repeats):
        for side in (("stock", "bridge") if r % 2 == 0 else ("bridge", "stock")):
            if side == "stock":
                s_out, dt = stock(folder, extra, tasks, a.limit, a.include, a.batch_size)
            else:
                b_out, dt, counts = bridge(folder, tasks, a.limit, a.include, work / f"cache-{r}.sqlite",
                                           a.batch_size, bos)
            times[side].append(dt)
            print(f"repeat {r + 1}: {side:6s} {dt:7.2f} s", flush=True)
    print(f"\nmodel {a.model} ({folder}), tasks {','.join(tasks)}, limit {a.limit}, hf float32 CPU, "
          f"batch size {a.batch_size}")
    equal = compare(s_out, b_out, tasks)
    _, warm, counts = bridge(folder, tasks, a.limit, a.include, work / f"cache-{a.repeats - 1}.sqlite",
                             a.batch_size, bos)
    best_s, best_b = min(times["stock"]), min(times["bridge"])
    print(f"\nwall time (best of {a.repeats}): stock {best_s:.2f} s, bridge {best_b:.2f} s, "
          f"bridge / stock = {best_b / best_s:.3f} (target <= 1.05)")
    print(f"bridge re-run on the warm cache: {warm:.2f} s, computed {counts['computed']}, "
          f"from cache {counts['cached']}")
    print("metrics equal: " + ("yes" if equal else "NO"))
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
