#!/usr/bin/env bash
# Phase 1 generation on a lent GPU, one call: the batch-size table, on Gemma-2-2B's
# architecture with random weights (no hub here), then one study-length run at the automatic batch size.
#
#   bash bench/gpu_generation.sh [OUT_DIR]
#
# The GPU machine has its own python3 with torch and transformers; the project's pinned transformers (and
# regex, which it requires) can travel as wheels in .whl/ (see the device tool's README); they are installed
# into /tmp/site first when present. Logs go to OUT_DIR (default: $OUT, else ./data/bench).
set -euo pipefail
out="${1:-${OUT:-data/bench}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$out/gpu.txt"
# 1. tokens/s by batch size, 128 prompts x 128 new tokens (the random model rarely stops early).
python3 bench/generation.py --gemma2-random --device cuda --baseline-ref none \
    --n-prompts 128 --max-new-tokens 128 --batch-size 8 16 32 64 128 2>&1 | tee "$out/batch_sizes.txt"
# 2. Phase 1's default length (800 new tokens) at the size auto_batch_size picks for it, and its peak memory.
python3 bench/generation.py --gemma2-random --device cuda --baseline-ref none \
    --n-prompts 64 --max-new-tokens 800 --batch-size auto 2>&1 | tee "$out/study_length.txt"
