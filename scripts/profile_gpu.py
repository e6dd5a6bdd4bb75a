#!/usr/bin/env python
"""Measure the release's `t` architectures, then a seeded `s` sample, on a CUDA GPU within a
wall-clock budget, into resumable HDF5 shards (benchmark.profiling.gpu; docs/profiling.md).

On the GPU machine, from a copy of the tree (no install, no xgboost needed):
    PYTHONPATH=. python scripts/profile_gpu.py --budget-s 500 --out $OUT
On a CPU, to exercise the logic (tiny settings, a dryrun-cpu-... device that is never released):
    PYTHONPATH=. python scripts/profile_gpu.py --dry-run-cpu --t-n 3 --s-n 2 --budget-s 120 --out /tmp/gpu-dry
"""

import sys

from benchmark.profiling.gpu_run import main

if __name__ == "__main__":
    sys.exit(main())
