#!/usr/bin/env bash
# One check of furrytag on a GPU machine, run as it is from the repository root:
#   scripts/gpu_check.sh [WORK_FOLDER]
# Prints one JSON object: the GPU, tag throughput of EfficientNetV2-B3@300 (random
# weights) with the keras engine at batch 64 and 128, mixed precision off and on,
# forward-only rates, and training steps/s of the efficientnet_v2_b3_300 config on
# synthetic shards (furrytag dataset synth, built and packed). Needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" scripts/gpu_check.py --work "${1:-$(mktemp -d -t furrytag-gpu-XXXXXX)}"
