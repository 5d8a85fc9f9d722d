"""``--executor ray`` (harness.pipeline.ray_exec): options, placement, and runs on a local two-node Ray cluster.

The cluster tests (slow: Ray and its actors take a while to start on two cores) share one cluster per module:
``ray start --head`` in a short temporary folder plus a second node, ``ray start --address=...``, in its own
process, one CPU each; it is stopped at the end (its process groups, by id). On it:

* the tiny model's run through Ray (two actors, one per node) writes the same samples.jsonl and summary.json,
  byte for byte, as the single-process run, in a folder of the same name (see :data:`EXACT`); the same command
  again is answered from the cache without starting Ray;
* an actor SIGKILLed mid-run (the pid its backend wrote from inside the actor): the run completes, nothing lost
  (every prompt generated once, no failures), nothing duplicated (no prompt committed twice), the re-queued
  batches and requests in the manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError, ConjugateError
from harness.pipeline.models import ModelSpec
from harness.pipeline.ray_options import INSTALL_HINT
from harness.pipeline.spec import RunSpec

HAS_RAY = __import__("importlib").util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason=f"Ray is not installed ({INSTALL_HINT}; scripts/setup.sh does)")
RAY = Path(sys.executable).parent / "ray"


# -- options and flags (no cluster) ----------------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"executor": "dask"}, "executor: expected one of local, ray"),
    ({"ray": {"actors": 2}}, "ray: actors given but the executor is 'local'; add --executor ray"),
    ({"executor": "ray", "ray": {"actor": 2}}, "ray.actor: unknown field. Did you mean 'actors'?"),
    ({"executor": "ray", "ray": {"actors": 0}}, "ray.actors: expected a number of at least 1"),
    ({"executor": "ray", "ray": {"actors": 1.5}}, "ray.actors: expected a whole number"),
    ({"executor": "ray", "ray": {"gpus_per_actor": -1}}, "ray.gpus_per_actor: expected a number of at least 0"),
    ({"executor": "ray", "ray": {"address": "http://head:6379/x"}}, "ray.address: expected auto, HOST:PORT"),
    ({"executor": "ray", "ray": "auto"}, "ray: must be a mapping"),
])
def test_bad_executor_fields_are_one_line_errors(fields, message):
    with pytest.raises(ConfigError) as e:
        RunSpec(**fields)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_executor_is_not_part_of_the_run_id():
    local = RunSpec()
    ray = RunSpec(executor="ray", ray={"address": "auto", "actors": 4, "gpus_per_actor": 1})
    assert ray.resolved_run_id() == local.resolved_run_id()  # a Ray run resumes the local run's folder and cache
    assert RunSpec.from_dict(ray.to_dict()) == ray  # the manifest's spec reloads


def _run_args(*flags: str) -> argparse.Namespace:
    from harness.cli import build_parser

    return build_parser().parse_args(["run", *flags])


def test_ray_flags_imply_the_ray_executor_and_merge_into_the_config(tmp_path):
    from harness.commands.run import spec_from_args

    spec = spec_from_args(_run_args("--ray-actors", "3", "--ray-gpus-per-actor", "0.5"))
    assert spec.executor == "ray" and spec.ray == {"actors": 3, "gpus_per_actor": 0.5}
    config = tmp_path / "run.yaml"
    config.write_text("executor: ray\nray: {address: auto, actors: 8}\n", encoding="utf-8")
    spec = spec_from_args(_run_args("--config", str(config), "--ray-actors", "2"))
    assert spec.ray == {"address": "auto", "actors": 2}  # the flag overrides one key, the config's others stay
    assert spec_from_args(_run_args("--config", str(config), "--executor", "local")).ray == {}
    with pytest.raises(ConjugateError, match="--ray-actors places Ray actors, but --executor is local"):
        spec_from_args(_run_args("--executor", "local", "--ray-actors", "2"))


def test_without_ray_the_run_stops_with_the_install_command(monkeypatch, tiny_model, tmp_path, capsys):
    from harness.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
    code = main(["run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
                 "--transforms", "identity", "--limit", "1", "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "c.sqlite"), "--executor", "ray", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and INSTALL_HINT in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing planned or written


def test_placement_defaults_and_errors():
    from harness.pipeline.ray_exec import placement

    cpu_nodes = [{"CPU": 4.0}, {"CPU": 4.0}]
    assert placement({}, None, cpu_nodes).actors == 2  # CPU only: one model copy per node
    assert placement({}, 2, cpu_nodes).cpus == 2.0
    assert placement({"actors": 8}, None, cpu_nodes).actors == 8
    gpu_nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}]
    p = placement({}, None, gpu_nodes)
    assert (p.actors, p.gpus, p.restarts) == (8, 1.0, 8)  # one actor per GPU
    assert placement({"gpus_per_actor": 2}, None, gpu_nodes).actors == 4
    with pytest.raises(ConfigError, match=r"ray.actors: 9 actors .*\(room for 8\)"):
        placement({"actors": 9}, None, gpu_nodes)
    with pytest.raises(ConfigError, match="no node of the Ray cluster has 1 CPUs and 8 GPUs"):
        placement({"gpus_per_actor": 8}, None, gpu_nodes)


@needs_ray
def test_the_ray_extra_holds_the_installed_ray():
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    from .conftest import ROOT

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    req, = (Requirement(r) for r in extra["ray"])
    assert req.name == "ray" and version("ray") in req.specifier
    assert "ray]" in (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")  # CI installs it (.ci/run)


def test_merged_describe_sums_counts_not_settings():
    from harness.pipeline.ray_exec import merge_counts

    start = {"prefix_cache_mb": 2048, "prefix_hits": 0, "decoded_prompts": {"fast": 0}, "decode": "fast"}
    a = {**start, "prefix_hits": 10, "decoded_prompts": {"fast": 4}}
    b = {**start, "prefix_hits": 6, "decoded_prompts": {"fast": 4}}
    assert merge_counts([a, b], [start, start]) == {"prefix_cache_mb": 2048, "prefix_hits": 16,
                                                    "decoded_prompts": {"fast": 8}, "decode": "fast"}


def test_log_likelihoods_go_first_to_the_actor_that_generated_their_prompts():
    from collections import deque

    from harness.pipeline.execute import Loglikelihood
    from harness.pipeline.ray_exec import ActorGroup

    g = ActorGroup.__new__(ActorGroup)  # no Ray: only the choice of the next batch for an actor
    g.holder, g.handles = {"p1": 0, "p2": 1, "p3": 1}, {0: "actor 0", 1: "actor 1"}
    batches = [[Loglikelihood("p2", " x"), Loglikelihood("p3", " y"), Loglikelihood("p1", " z")],
               [Loglikelihood("p1", " x")], [Loglikelihood("unseen", " x")]]
    prefer = g._preferences("loglikelihood", batches)
    assert prefer == {0: 1, 1: 0} and g._preferences("generate", batches) == {}
    queue = deque([0, 1, 2])
    assert [g._pick(prefer, queue, 0) for _ in range(3)] == [1, 2, 0]  # its own, then nobody's, then the rest
    del g.handles[1]  # actor 1 lost: its batches go to anyone, in order
    assert g._pick(prefer, deque([0, 1]), 0) == 0


# -- on a local two-node cluster ---------------------------------------------------------------------------
def _start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", "--num-cpus=1",
                                 "--object-store-memory=80000000", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(nodes: list[subprocess.Popen]) -> None:
    """Stop the nodes this module started: their process groups (ray start and what it started), by id."""
    for p in nodes:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in nodes:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def cluster():
    """A Ray head and a second node (one CPU each) on this machine; yields the head's address."""
    if not HAS_RAY:
        pytest.skip(f"Ray is not installed ({INSTALL_HINT})")
    import ray

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")  # the test cluster and this driver agree on no token
    env = {**os.environ}
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Unix socket paths are limited to 107 bytes
    nodes = [_start_node(["--head", "--port=0", f"--temp-dir={temp}", "--include-dashboard=false",
                          f"--ray-client-server-port={_free_port()}"], temp / "head.log", env)]
    try:
        address = _wait_for(lambda: re.search(r"--address='([^']+)'", (temp / "head.log").read_text()), 120,
                            temp / "head.log").group(1)
        nodes.append(_start_node([f"--address={address}"], temp / "worker.log", env))
        ray.init(address=address, log_to_driver=False)
        try:
            _wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) >= 2, 120, temp / "worker.log")
        finally:
            ray.shutdown()
        register_by_value()
        yield address
    finally:
        _stop(nodes)
        mp.undo()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(check, seconds: float, log: Path):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"Ray did not come up in {seconds} s:\n{log.read_text()[-3000:]}")


def register_by_value() -> None:
    """Ray's workers cannot import this test module: send its classes (the factory below) by value."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _spec(tiny_model: Path, where: Path, options: dict | None = None, **kw) -> RunSpec:
    return RunSpec(pretrained=ModelSpec(name="tiny-pt", model=str(tiny_model), options=dict(options or {})),
                   finetuned=ModelSpec(name="tiny-ft", model=str(tiny_model), bos="always",
                                       options=dict(options or {})),
                   tasks=["icl_vs_if"], transforms=["identity", "lang:fr", "leetspeak"], limit=8, batch_size=2,
                   threads=1, out=str(where / "results"), cache=str(where / "generations.sqlite"), **kw)


#: The hf backend keeps each prompt's prefill for the probe that follows (harness.backends.prefix); an actor has
#: the prefills of the prompts it generated, so a probe batch whose prompts were generated on two actors is
#: partly recomputed: the same log-likelihoods in another batch layout, equal to float rounding, not to the bit.
#: Byte-for-byte comparisons therefore run without that store (prefix_cache_mb is a runtime option: same cache).
EXACT = {"prefix_cache_mb": 0}


@pytest.fixture(scope="module")
def single_process(tiny_model, tmp_path_factory) -> Path:
    """The reference: the same run in this process."""
    from harness.pipeline.runner import run

    return run(_spec(tiny_model, tmp_path_factory.mktemp("local"), EXACT), progress=False)


@needs_ray
@pytest.mark.slow
def test_ray_run_writes_what_the_single_process_run_writes(cluster, single_process, tiny_model, tmp_path):
    from harness.pipeline.runner import run

    spec = _spec(tiny_model, tmp_path, EXACT, executor="ray", ray={"address": cluster, "actors": 2})
    out = run(spec, progress=False)
    assert out.name == single_process.name  # same run id: the executor is not part of it
    for name in ("samples.jsonl", "summary.json"):
        assert (out / name).read_bytes() == (single_process / name).read_bytes(), name
    m = json.loads((out / "manifest.json").read_text())
    for role in ("pretrained", "finetuned"):
        ray = m["backends"][role]["ray"]
        assert ray["nodes"] == 2 and ray["actors"] == 2, ray  # one actor on each node
        assert ray["requeued_batches"] == 0 and ray["actors_lost"] == 0
        gen = m["generation"][role]
        assert gen["generated"] == gen["unique_prompts"] == 24 and gen["failed"] == 0
    again = json.loads((run(spec, progress=False) / "manifest.json").read_text())
    assert again["backends"] == {}  # all cached: no actor started
    assert all(g["generated"] == 0 and g["cached"] == 24 for g in again["generation"].values())


class SlowHF:
    """The hf backend, a little slower per batch, that writes its actor's pid where the test can find it."""

    cache_identity = None  # answers exactly as the registry's hf backend: same cache

    def __init__(self, pids: Path, delay: float) -> None:
        self.pids, self.delay = pids, delay

    def __call__(self, spec: ModelSpec):
        from harness.backends.hf import HFBackend

        (self.pids / f"{time.time():.6f}-{os.getpid()}").write_text(spec.name)
        return Slowed(HFBackend(spec, threads=1), self.delay)


class Slowed:
    def __init__(self, backend, delay: float) -> None:
        self.backend, self.delay = backend, delay

    def generate(self, prompts, sampling):
        time.sleep(self.delay)
        return self.backend.generate(prompts, sampling)

    def loglikelihood(self, requests):
        return self.backend.loglikelihood(requests)

    def describe(self):
        return self.backend.describe()

    def close(self):
        self.backend.close()


def _kill_first_actor_after_a_commit(pids: Path, cache: Path, killed: list[int]) -> None:
    """SIGKILL the first pretrained actor's process once a batch of that model is in the cache."""
    deadline = time.time() + 300
    while time.time() < deadline:
        mine = sorted(p for p in pids.iterdir() if p.read_text() == "tiny-pt") if pids.exists() else []
        if len(mine) >= 2 and cache.exists():
            try:
                with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=1) as db:
                    committed = db.execute("SELECT count(*) FROM generations").fetchone()[0]
            except sqlite3.Error:
                committed = 0
            if committed:
                pid = int(mine[0].name.rsplit("-", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


@needs_ray
@pytest.mark.slow
def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(cluster, single_process, tiny_model, tmp_path):
    from harness.io import read_jsonl
    from harness.pipeline.runner import run

    pids = tmp_path / "pids"
    pids.mkdir()
    spec = _spec(tiny_model, tmp_path, executor="ray", ray={"address": cluster, "actors": 2})
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_actor_after_a_commit,
                              args=(pids, Path(spec.cache), killed), daemon=True)
    killer.start()
    out = run(spec, progress=False, backend_factory=SlowHF(pids, delay=0.4))
    killer.join(timeout=5)
    assert killed, "the actor was not killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    m = json.loads((out / "manifest.json").read_text())
    ray = m["backends"]["pretrained"]["ray"]
    assert ray["actors_lost"] == 1 and ray["requeued_batches"] >= 1 and ray["requeued_requests"] >= 1, ray
    assert m["backends"]["finetuned"]["ray"]["actors_lost"] == 0
    for role, gen in m["generation"].items():
        # nothing lost: every unique prompt generated, none failed; nothing duplicated: each committed once
        assert gen["generated"] == gen["unique_prompts"] == 24 and gen["failed"] == 0, (role, gen)
        assert m["probe"][role]["computed"] == m["probe"][role]["unique"] and m["probe"][role]["failed"] == 0
    with sqlite3.connect(spec.cache) as db:
        assert db.execute("SELECT count(*) FROM generations").fetchone()[0] == 48
    ours, ref = read_jsonl(out / "samples.jsonl"), read_jsonl(single_process / "samples.jsonl")
    assert len(ours) == len(ref) == 2 * 3 * 8
    assert all(s["error"] is None for s in ours)
    assert [s["response"] for s in ours] == [s["response"] for s in ref]
    for a, b in zip(ours, ref):  # with the prefix store (the default; see EXACT): equal to float rounding
        assert a["probe"].keys() == b["probe"].keys()
        assert all(abs(a["probe"][k] - b["probe"][k]) < 1e-4 for k in a["probe"] if k.startswith("logp"))
