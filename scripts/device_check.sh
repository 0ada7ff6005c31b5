#!/usr/bin/env bash
# The GPU checks of issues 5 and 7 in one run on a lent machine (after scripts/device_bundle.sh here):
#   run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=540)
# Writes partition.json (mpq bench-partition) and its log to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPQ_MODELS=$PWD/.device/models MPQ_OFFLINE=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m mpq_assets.bench.partition --device cuda --items 512 --models efficientnet-lite0 vit-base \
  --json "$OUT/partition.json" 2>&1 | grep -v "Loading weights" | tee "$OUT/partition.log"
