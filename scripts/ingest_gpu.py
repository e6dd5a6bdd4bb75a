#!/usr/bin/env python
"""Check the shards a GPU run returned (scripts/profile_gpu.py) and merge them into a table as a
measured device (benchmark.profiling.gpu_ingest; docs/profiling.md).

    PYTHONPATH=. python scripts/ingest_gpu.py --table data/table_t.h5 gpu_t.h5
    PYTHONPATH=. python scripts/ingest_gpu.py --table data/table_s.h5 gpu_s_bf16.h5 gpu_s_fp16.h5
"""

import sys

from benchmark.profiling.gpu_ingest import main

if __name__ == "__main__":
    sys.exit(main())
