"""``executor`` and ``ray`` of a run spec: checked without importing Ray (the run spec and the CLI use this).

``executor: local`` (the default) runs every backend in this process;
``executor: ray`` shards uncached batches over Ray actors
(:mod:`harness.pipeline.ray_exec`). The ``ray`` mapping places them:

* ``address``: ``auto`` (the cluster ``ray start`` runs on this machine), ``HOST:PORT`` (its GCS),
  ``ray://HOST:PORT`` (Ray client), or unset: a Ray instance started for the run on this machine;
* ``actors``: actors per model (default: one per ``gpus_per_actor`` GPUs; on a CPU-only cluster one per node);
* ``gpus_per_actor``: GPUs each actor reserves (default 1 on a cluster with GPUs, else 0);
* ``cpus_per_actor``: CPUs each actor reserves (default: the run's ``threads``, else 1);
* ``restarts``: how many lost actors are replaced by new ones during a model's work (default: ``actors``).
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from harness.errors import ConfigError

EXECUTORS = ("local", "ray")
RAY_FIELDS: dict[str, type] = {"address": str, "actors": int, "gpus_per_actor": float, "cpus_per_actor": float,
                               "restarts": int}
INSTALL_HINT = "pip install 'conjugate-harness[ray]'"
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/:]+(:\d+)?|[^\s/:]+:\d+)$")


def check_executor(executor: Any, ray: Any) -> None:
    """ConfigError naming the field when ``executor`` or the ``ray`` mapping is malformed."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r} "
                          f"(--executor ray shards the work over a Ray cluster)")
    if not isinstance(ray, dict):
        raise ConfigError(f"ray: must be a mapping such as {{address: auto, actors: 2}}, got {ray!r}")
    if ray and executor != "ray":
        raise ConfigError(f"ray: {', '.join(sorted(ray))} given but the executor is {executor!r}; "
                          f"add --executor ray (YAML: executor: ray)")
    for k, v in ray.items():
        if k not in RAY_FIELDS:
            close = difflib.get_close_matches(k, list(RAY_FIELDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"ray.{k}: unknown field.{hint} Known: {', '.join(RAY_FIELDS)}")
        _check_value(k, v)


def _check_value(k: str, v: Any) -> None:
    want = RAY_FIELDS[k]
    if want is str:
        if not isinstance(v, str) or not _ADDRESS.match(v.strip()):
            raise ConfigError(f"ray.address: expected auto, HOST:PORT or ray://HOST:PORT, got {v!r} "
                              f"(`ray start --head` prints the address)")
        return
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if want is int and not (number and float(v).is_integer()):
        raise ConfigError(f"ray.{k}: expected a whole number, got {v!r}")
    least = 1 if k == "actors" else 0
    if not number or v < least:
        raise ConfigError(f"ray.{k}: expected a number of at least {least}, got {v!r}")


def require_ray():
    """The ``ray`` module, or a one-line ConfigError naming the fix."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray
