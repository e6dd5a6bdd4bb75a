"""Run (or resume) a timing pass of many architectures on one runtime device, or write its log as a shard.

    taskset -c 0 python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --log runs/timing/ort-int8.jsonl
    python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --log runs/timing/ort-int8.jsonl --memory 100 \
        --memory-log runs/timing/ort-int8.memory.jsonl       # peak RSS of 100 seeded architectures
    python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --log runs/timing/ort-int8.jsonl --to-table shard.h5 \
        --memory-log runs/timing/ort-int8.memory.jsonl
    python scripts/timing_pass.py --device cpu-epyc-1c-torch-fp32 --log runs/timing/torch-fp32.jsonl \
        --to-table shard.h5 --memory-from shards/t_cpu-epyc-1c_single-block_20261128.h5   # eager memory_mb kept
    python scripts/timing_pass.py --device cpu-epyc-1c-ort-int8 --start 1001 --n 1001 --log runs/timing/int8.part2.jsonl \
        --to-table part2.h5 --level-to part1.h5              # a later part levelled to the first by the anchor
    taskset -c 0 python scripts/timing_pass.py --device cpu-epyc-1c-torch-fp32 --space s --sample 500 \
        --log runs/timing/s.jsonl                            # a space without a table: a seeded sample

Which architectures (one of):

* ``--table`` (default the embedded ``t`` table): its rows, in table order (``--start``/``--n``
  select a slice); the anchor is the table's architecture with the median parameter count,
  whatever the slice;
* ``--space S --sample N``: a seeded uniform sample of N architectures of S (``--seed``) plus its
  largest and smallest (``--no-extremes`` leaves them out), at :data:`SAMPLE_SETTINGS`;
* ``--archs FILE``: the ids in FILE, one per line, at :data:`SAMPLE_SETTINGS`.

A pass without a table records its list beside the log (``LOG.archs``, one id per line, written
before the first visit): a resume or ``--to-table`` draws the list again and refuses one that
differs from the record (the log's header checks its hash, too), and ``--archs LOG.archs`` reruns
exactly that list. For ``--sample``/``--archs`` the anchor is the list's architecture with the
median parameter count.

PyTorch eager fp32 devices are written under the short id ``<host>-<threads>c``
(``cpu-epyc-1c-torch-fp32`` as the release's existing ``cpu-epyc-1c``, re-timed;
``cpu-epyc-2c-torch-fp32`` as ``cpu-epyc-2c``); their provenance's ``device_id`` keeps the full id. Pin the process to CPUs nothing else uses (``taskset -c 0``; the 2-thread
device needs both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# A space timed without a table is timed at the `t` table's shapes: prefill batch 1 x 256 tokens and
# decode batch 1 with 128 tokens of context in the KV cache, fp32. These are the shapes the `s` pass
# is asked for, they fit every space's context (128 + 16 generated <= 256), and they are the
# settings at which a space without a release already answers the modeled devices, so suites keep
# their settings once measured rows exist. prefill-b8 is left out: it would triple a pass's time
# (docs/profiling.md, "Space s").
SAMPLE_SETTINGS = ("prefill-b1-s256-fp32", "decode-b1-s128-fp32")


def _fail(msg: str) -> SystemExit:
    print(f"timing_pass: {msg}", file=sys.stderr)
    return SystemExit(2)


def read_archs(path: Path) -> list[str]:
    """The ids of an architecture list file (one per line; blank lines ignored), canonical spelling."""
    from benchmark.spaces import Architecture

    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise _fail(f"invalid --archs: cannot read {path} ({e.strerror}); allowed: a file of ids, one per line")
    if not lines:
        raise _fail(f"invalid --archs: {path} holds no id; allowed: a file of ids, one per line")
    archs = [Architecture.from_id(a) for a in lines]
    ids = [x.id for x in archs]
    spaces = sorted({x.space for x in archs})
    if len(spaces) != 1:
        raise _fail(f"invalid --archs: {path} mixes spaces {spaces}; allowed: ids of one space")
    return ids


def record_archs(log: Path, ids: list[str]) -> Path:
    """Write the pass's list beside ``log`` (first run), or check that it is the list recorded there."""
    from benchmark.files import write_text

    rec = log.with_name(log.name + ".archs")
    if rec.exists():
        old = read_archs(rec)
        if old != ids:
            raise _fail(f"invalid architectures for {log}: {rec} records another list ({len(old)} ids, "
                        f"{len(set(old) - set(ids))} not drawn now); allowed: the recorded list "
                        f"(--archs {rec}) or a new --log")
    else:
        rec.parent.mkdir(parents=True, exist_ok=True)
        write_text(rec, "\n".join(ids) + "\n")
    return rec


def median_params_id(archs) -> str:
    """The id of the architecture with the median parameter count (the pass's anchor)."""
    from benchmark import costs

    return archs[int(np.argsort(costs.params(archs), kind="stable")[len(archs) // 2])].id


def main(argv: list[str] | None = None) -> int:
    from benchmark.errors import HwlmError
    from benchmark.profiling.protocol import RoundsProtocol
    from benchmark.profiling.devices import cpu_model_name
    from benchmark.profiling.runtimes.registry import parse_device_id
    from benchmark.profiling.runner import DEFAULT_SETTINGS, select_architectures
    from benchmark.profiling.timing_pass import TimingPass, device_settings, pass_to_table, run_pass
    from benchmark.settings import DEFAULT_DECODE_TOKENS
    from benchmark.spaces import Architecture, get_space

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", required=True, help="runtime device id, e.g. cpu-epyc-1c-ort-int8")
    p.add_argument("--table", default=None, help="table whose architectures are timed (default data/table_t.h5 "
                   "unless --space/--archs)")
    p.add_argument("--space", default=None, help="time a seeded sample of this space instead (needs --sample)")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="with --space: N uniform architectures "
                   "(seeded by --seed) plus the largest and smallest")
    p.add_argument("--no-extremes", action="store_true", help="with --sample: leave out the largest and smallest")
    p.add_argument("--archs", default=None, help="time the ids in this file (one per line), e.g. LOG.archs")
    p.add_argument("--settings", nargs="+", default=None, help="settings (default: the table space's defaults; "
                   f"{' '.join(SAMPLE_SETTINGS)} for --space/--archs)")
    p.add_argument("--decode-tokens", type=int, default=DEFAULT_DECODE_TOKENS,
                   help=f"decode steps timed per run (default {DEFAULT_DECODE_TOKENS})")
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
    p.add_argument("--export-dir", default=None, help="ONNX export cache (default beside the log); with --to-table "
                   "its records give the shard's export provenance")
    p.add_argument("--to-table", default=None, help="write the log as a table shard instead of timing")
    p.add_argument("--memory-log", default=None, help="memory pass log: --memory N measures into it; "
                   "--to-table stores it as memory_mb")
    p.add_argument("--level-to", default=None, metavar="SHARD",
                   help="--to-table for one part of a split pass: scale its latencies by the anchor's level in "
                   "SHARD (an earlier part's shard) over its level here; factors in the log timing_levels")
    p.add_argument("--memory-from", default=None, metavar="TABLE",
                   help="--to-table for PyTorch eager fp32: keep the allocator-event memory_mb of this table "
                        "(profiled on this host by hwlm profile) instead of a memory pass")
    p.add_argument("--memory", type=int, default=None, metavar="N",
                   help="run the memory pass instead: peak RSS of N seeded architectures (fresh process each)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)

    log = Path(a.log)
    try:
        host, dev = parse_device_id(a.device)
        here = dev.device_id()  # this machine's id of the device: a measurement names the host it ran on
        if a.device != here and not a.to_table:  # (a log timed elsewhere may be turned into a shard here)
            raise _fail(f"invalid --device: {a.device!r} names host {host!r}, but this machine is "
                        f"{here.removesuffix('-' + dev.key)!r} ({cpu_model_name()}); allowed: {here!r} (time on the "
                        f"host the id names)")
        if sum(x is not None for x in (a.table, a.space, a.archs)) > 1:
            raise _fail("invalid architectures: more than one of --table, --space, --archs; allowed: one")
        if (a.space is None) != (a.sample is None):
            raise _fail(f"invalid --space/--sample: {a.space!r}/{a.sample!r}; allowed: both (a seeded sample of "
                        f"N architectures of the space) or neither")
        if a.sample is not None and a.sample < 0:
            raise _fail(f"invalid --sample: {a.sample}; allowed: an integer >= 0")
        if a.space is not None or a.archs is not None:
            if a.archs is not None:
                ids = read_archs(Path(a.archs))
                space = Architecture.from_id(ids[0]).space
            else:
                space = get_space(a.space).name
                ids = [x.id for x in select_architectures(space, a.sample, seed=a.seed,
                                                          include_extremes=not a.no_extremes)]
            sp = get_space(space)
            record_archs(log, ids)
            anchor = median_params_id([sp.from_id(i) for i in ids])
            base = a.settings or SAMPLE_SETTINGS
        else:
            from benchmark.table import Table

            t = Table(a.table or "data/table_t.h5")
            space = t.space.name
            every = [str(i) for i in t.ids]
            ids = every[a.start: a.start + a.n] if a.n else every[a.start:]
            # one anchor for every pass of the table (whatever subset it times), so shards of one device merge
            anchor = every[int(np.argsort(t.metric("params"))[len(every) // 2])]
            base = a.settings or DEFAULT_SETTINGS[space]
        dev_id = f"{host}-{dev.threads}c" if (dev.runtime, dev.dtype) == ("torch", "fp32") else a.device
        tp = TimingPass(space, tuple(ids), dev, dev_id, device_settings(base, dev),
                        RoundsProtocol(a.rounds, a.repeats_per_round, a.warmup, a.anchor_every, a.seed), anchor,
                        decode_tokens=a.decode_tokens, seed=a.seed)
        if a.level_to and not a.to_table:
            p.error("--level-to needs --to-table")
        if a.to_table:
            print(pass_to_table(log, a.to_table, ids, memory_log=a.memory_log, memory_from=a.memory_from,
                                export_dir=a.export_dir, level_to=a.level_to))
            return 0
        if a.memory:
            from benchmark.profiling.memory_pass import memory_subset, run_memory_pass

            if not a.memory_log:
                p.error("--memory needs --memory-log")
            n = run_memory_pass(memory_subset(ids, a.memory, a.seed, space), dev, tp.settings, a.memory_log,
                                a.export_dir, a.seed)
            print(f"{a.memory_log}: {n} values", file=sys.stderr)
            return 0
        done = run_pass(tp, log, a.export_dir, progress=not a.quiet,
                        max_seconds=None if a.max_minutes is None else a.max_minutes * 60)
    except HwlmError as e:
        raise _fail(str(e)) from None
    print(f"{log}: {done} visits", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
