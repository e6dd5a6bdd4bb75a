#!/usr/bin/env bash
# The command of a GPU window (docs/profiling.md): the prepared profiling run, with nvidia-smi's
# view of the GPU and the run's whole log written beside the shards, so they come back with them.
#   bash scripts/profile_gpu.sh OUT_DIR [BUDGET_S [more profile_gpu.py arguments]]
set -o pipefail
out="${1:?usage: scripts/profile_gpu.sh OUT_DIR [BUDGET_S [args]]}"
budget="${2:-500}"
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
nvidia-smi -q > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$out/nvidia-smi.txt"
PYTHONPATH=. PYTHONUNBUFFERED=1 python3 scripts/profile_gpu.py --budget-s "$budget" --out "$out" "$@" 2>&1 \
  | tee "$out/log.txt"
