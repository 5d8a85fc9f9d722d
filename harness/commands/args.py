"""Argument helpers shared by several commands: comma lists, KEY=VALUE pairs, option values, MT options.

Cheap to import (the standard library and :mod:`harness.errors` only).
"""
from __future__ import annotations

import argparse

from harness.errors import ConjugateError


def csv(s: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (an argparse ``type`` for comma-separated lists)."""
    return [x.strip() for x in s.split(",") if x.strip()]


def positive_int(s: str) -> int:
    """An argparse ``type`` for counts that must be at least 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def int_list(minimum: int, example: str):
    """An argparse type: comma-separated whole numbers, each >= ``minimum`` (``example`` in the error)."""

    def parse(s: str) -> list[int]:
        out = []
        for x in csv(s):
            try:
                v = int(x)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected whole numbers, got {x!r}") from None
            if v < minimum:
                raise argparse.ArgumentTypeError(f"expected whole numbers >= {minimum}, got {v}")
            out.append(v)
        if not out:
            raise argparse.ArgumentTypeError(f"give comma-separated whole numbers, e.g. {example}")
        return out

    return parse


def parse_value(v: str):
    """An option value from the command line: int, float, true/false, or the string."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def pairs(items: list[str], flag: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` items of a repeatable flag as a dict; a malformed item names the flag and an example."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConjugateError(f"{flag} {item!r}: write KEY=VALUE, e.g. {flag} {example}")
        out[key.strip()] = value.strip()
    return out


def mt_from_args(provider: str | None, items: list[str], base: dict) -> dict:
    """The ``mt`` section of a run spec from ``--mt-provider`` / ``--mt-option`` on top of ``base``.

    Known service fields (timeout, retries, rate limit, cache) are typed; anything else goes to the provider.
    """
    from harness.pipeline.context import MT_FIELDS

    mt = dict(base)
    if provider:
        mt["provider"] = provider
    for k, v in pairs(items, "--mt-option", "timeout=30").items():
        if k in MT_FIELDS and k not in ("provider", "options"):
            mt[k] = v if k == "cache" else parse_value(v)
        else:
            mt.setdefault("options", {})[k] = v
    return mt


def log(msg: str) -> None:
    """Progress lines of every command: ``[conjugate] ...`` on stderr."""
    import sys

    print(f"[conjugate] {msg}", file=sys.stderr, flush=True)


def task_options(items: list[str]) -> dict[str, dict]:
    """``--task-option TASK.KEY=VALUE`` items as ``{task: {key: value}}``."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        task, dot, opt = key.strip().rpartition(".")  # lmeval:xnli_en.renderings=...
        if not sep or not dot or not task or not opt:
            raise ConjugateError(f"--task-option {item!r}: write TASK.KEY=VALUE, e.g. --task-option icl_vs_if.sentences=FILE")
        out.setdefault(task, {})[opt] = parse_value(value.strip())
    return out


def add_executor_arguments(r: argparse.ArgumentParser) -> None:
    """``--executor`` and the ``--ray-*`` placement flags (``conjugate run``; README: Scaling out)."""
    g = r.add_argument_group("scaling out", "where uncached batches run; the run folder and the generation cache "
                             "are always written by this process (README: Scaling out)")
    g.add_argument("--executor", choices=["local", "ray"],
                   help="local: every backend in this process (default); ray: batches sharded over Ray actors, each "
                   "holding one backend (pip install 'conjugate-harness[ray]'). YAML: executor")
    g.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="the Ray cluster: auto (the one `ray start` runs on this machine), HOST:PORT of its head, or "
                   "ray://HOST:PORT; unset: Ray started on this machine for the run. Implies --executor ray")
    g.add_argument("--ray-actors", type=positive_int, metavar="N",
                   help="actors per model (default: one per GPU set on a cluster with GPUs, one per node on a "
                   "CPU-only one); a lost actor's batches go to the others and to a replacement. "
                   "Implies --executor ray")
    g.add_argument("--ray-gpus-per-actor", type=_non_negative, metavar="G",
                   help="GPUs each actor reserves (default 1 when the cluster has GPUs, else 0; each actor reserves "
                   "--threads CPUs, default 1). Implies --executor ray")


def with_executor(spec, a: argparse.Namespace):
    """``spec`` with ``--executor`` / ``--ray-*`` on top (the ``ray`` flags merged into the config's mapping)."""
    import dataclasses

    flags = {k: v for k, v in (("address", a.ray_address), ("actors", a.ray_actors),
                               ("gpus_per_actor", a.ray_gpus_per_actor)) if v is not None}
    if flags and a.executor == "local":
        raise ConjugateError(f"--ray-{next(iter(flags)).replace('_', '-')} places Ray actors, but --executor is "
                             f"local; use --executor ray (or drop the --ray-* flags)")
    executor = a.executor or ("ray" if flags else None)
    if executor is None:
        return spec
    ray = {**spec.ray, **flags} if executor == "ray" else {}
    return dataclasses.replace(spec, executor=executor, ray=ray)


def _non_negative(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {s!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {s!r}")
    return v
