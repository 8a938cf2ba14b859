#!/usr/bin/env bash
# GPU check: the ResNet-50 Barlow Twins step in ssljax (bf16) and, where torch with CUDA imports,
# in PyTorch AMP, with samples/s and MFU. Installs nothing. Usage, from anywhere:
#
#   bash benchmarks/gpu.sh [benchmarks/gpu.py flags, e.g. --batch_per_gpu=128 --notorch]
#
# Environment: PYTHON (default python), SSLJAX_GPU_TIMEOUT (seconds, default 660).
# Without a GPU it prints a message and exits 0. The Markdown table goes to stdout.
set -u
cd "$(dirname "$0")/.." || exit 1
limit="${SSLJAX_GPU_TIMEOUT:-660}"
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi -L
else
  echo "nvidia-smi: not found"
fi
timeout --kill-after=30 "$limit" "${PYTHON:-python}" benchmarks/gpu.py "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "error: benchmarks/gpu.py ran past ${limit} s (SSLJAX_GPU_TIMEOUT); try --steps=5" >&2
fi
exit "$status"
