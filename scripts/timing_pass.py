"""Run (or resume) a timing pass of a table's architectures on one runtime device, or write its log as a shard.

    taskset -c 0 python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --log runs/timing/ort-int8.jsonl
    python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --log runs/timing/ort-int8.jsonl --memory 100 \
        --memory-log runs/timing/ort-int8.memory.jsonl       # peak RSS of 100 seeded architectures
    python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --log runs/timing/ort-int8.jsonl --to-table shard.h5 \
        --memory-log runs/timing/ort-int8.memory.jsonl
    python scripts/timing_pass.py --device cpu-epyc-1c-torch-fp32 --log runs/timing/torch-fp32.jsonl \
        --to-table shard.h5 --memory-from data/shards/t_cpu-epyc-1c_20261128.h5   # eager memory_mb kept

The architectures are the table's rows (``--table``, default the embedded ``t`` table), in table
order (``--start``/``--n`` select a slice); the anchor is the table's architecture with the median
parameter count, whatever the slice. ``cpu-epyc-1c-torch-fp32``
is written under the release's existing id ``cpu-epyc-1c`` (the same device, re-timed).
Pin the process to CPUs nothing else uses (``taskset -c 0``; the 2-thread device needs both).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> int:
    from benchmark.profiling.protocol import RoundsProtocol
    from benchmark.profiling.runtimes.registry import parse_device_id
    from benchmark.profiling.runner import DEFAULT_SETTINGS
    from benchmark.profiling.timing_pass import TimingPass, device_settings, pass_to_table, run_pass
    from benchmark.table import Table

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", required=True, help="runtime device id, e.g. cpu-epyc-1c-ort-int8")
    p.add_argument("--table", default="data/table_t.h5", help="table whose architectures are timed")
    p.add_argument("--log", required=True, help="visit log (JSON lines) to write or resume")
    p.add_argument("--start", type=int, default=0, help="first table row to time (default 0)")
    p.add_argument("--n", type=int, default=None, help="time N rows from --start (default: all); the table's "
                   "rows are a seeded sample, so the first N are a seeded subset")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats-per-round", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--anchor-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long")
    p.add_argument("--export-dir", default=None, help="ONNX export cache (default beside the log)")
    p.add_argument("--to-table", default=None, help="write the log as a table shard instead of timing")
    p.add_argument("--memory-log", default=None, help="memory pass log: --memory N measures into it; "
                   "--to-table stores it as memory_mb")
    p.add_argument("--memory-from", default=None, metavar="TABLE",
                   help="--to-table for PyTorch eager fp32: keep the allocator-event memory_mb of this table "
                        "(profiled on this host by hwlm profile) instead of a memory pass")
    p.add_argument("--memory", type=int, default=None, metavar="N",
                   help="run the memory pass instead: peak RSS of N seeded architectures (fresh process each)")
    a = p.parse_args()

    t = Table(a.table)
    every = [str(i) for i in t.ids]
    ids = every[a.start: a.start + a.n] if a.n else every[a.start:]
    # one anchor for every pass of the table (whatever subset it times), so shards of one device merge
    anchor = every[int(np.argsort(t.metric("params"))[len(every) // 2])]
    host, dev = parse_device_id(a.device)
    dev_id = f"{host}-{dev.threads}c" if (dev.runtime, dev.dtype) == ("torch", "fp32") else a.device
    tp = TimingPass(t.space.name, tuple(ids), dev, dev_id, device_settings(DEFAULT_SETTINGS[t.space.name], dev),
                    RoundsProtocol(a.rounds, a.repeats_per_round, a.warmup, a.anchor_every, a.seed), anchor,
                    seed=a.seed)
    if a.to_table:
        print(pass_to_table(a.log, a.to_table, ids, memory_log=a.memory_log, memory_from=a.memory_from))
        return 0
    if a.memory:
        from benchmark.profiling.memory_pass import memory_subset, run_memory_pass

        if not a.memory_log:
            p.error("--memory needs --memory-log")
        n = run_memory_pass(memory_subset(ids, a.memory, a.seed, t.space.name), dev, tp.settings, a.memory_log,
                            a.export_dir, a.seed)
        print(f"{a.memory_log}: {n} values", file=sys.stderr)
        return 0
    done = run_pass(tp, a.log, a.export_dir, max_seconds=None if a.max_minutes is None else a.max_minutes * 60)
    print(f"{a.log}: {done} visits", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
