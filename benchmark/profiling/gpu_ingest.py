"""From the shards of a GPU run (:mod:`benchmark.profiling.gpu`) to a measured device of a table.

:func:`check_shard` validates one returned shard before anything is merged: one measured device
whose provenance names the GPU, its driver, CUDA and torch versions and the protocol; every
setting with at least ``min_repeats`` repeats; every measured value finite and positive; a
device id that is not a modeled (registry) id. A CPU dry run's shard is refused unless
``allow_dry_run`` (tests). :func:`ingest` checks every shard, compares the perplexities the run
re-measured on the GPU with the table's (same checkpoint, same test tokens), and merges the
shards into the table with :func:`benchmark.table.merge_tables` (the table's values first).
After it, the release's usual last steps apply (``scripts/build_release.py``; docs/profiling.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.profiling.gpu import DRY_RUN_PREFIX, LOGS
from benchmark.table import Table, TableError, merge_tables

__all__ = ["REQUIRED_PROVENANCE", "PERPLEXITY_RTOL", "check_shard", "perplexity_agreement", "ingest"]

#: what a measured GPU device's provenance must name (values may be None only where NVML lacks them)
REQUIRED_PROVENANCE = ("gpu_name", "gpu_uuid", "driver_version", "cuda_version", "torch_version", "protocol",
                       "gpu_max_sm_clock_mhz", "gpu_max_mem_clock_mhz", "gpu_power_limit_w")
#: fp32 on the GPU vs fp32 on the CPU: the sums differ in order only
PERPLEXITY_RTOL = 1e-3


def check_shard(path, *, allow_dry_run: bool = False, min_repeats: int = 10) -> dict[str, Any]:
    """Validate one shard of a GPU run; returns ``{"path", "space", "device", "rows", "settings":
    {setting: {"rows", "energy_rows"}}, "dry_run"}`` or raises :class:`TableError` naming the
    shard and what is wrong."""
    from benchmark.profiling.devices import REGISTRY

    t = Table(path)  # format, schema, shapes
    where = f"GPU shard {path}"
    devices = t.devices()
    if len(devices) != 1:
        raise TableError(f"{where}: holds devices {sorted(devices)}; allowed: exactly one (one GPU run)")
    dev, meta = next(iter(devices.items()))
    prov = meta["provenance"]
    if meta["source"] != "measured":
        raise TableError(f"{where}: device {dev!r} has source {meta['source']!r}; allowed: 'measured'")
    if dev in REGISTRY:
        raise TableError(f"{where}: device id {dev!r} is a registry (modeled) id; a measured GPU needs its own id")
    dry = bool(prov.get("dry_run")) or dev.startswith(DRY_RUN_PREFIX)
    if dry and not allow_dry_run:
        raise TableError(f"{where}: device {dev!r} is a CPU dry run (provenance dry_run: true), not a GPU "
                         f"measurement; allowed: shards of a run on a GPU")
    if not dry:
        if meta.get("kind") != "gpu":
            raise TableError(f"{where}: device {dev!r} has kind {meta.get('kind')!r}; allowed: 'gpu'")
        missing = [k for k in REQUIRED_PROVENANCE if k not in prov]
        if missing or not prov.get("gpu_name"):
            raise TableError(f"{where}: provenance of {dev!r} lacks {missing or ['gpu_name']}; allowed: the "
                             f"provenance scripts/profile_gpu.py writes")
    settings = {}
    for s in t.settings(dev):
        hm = t.hardware_metrics(dev, s)
        if "latency_ms" not in hm or hm["latency_ms"]["repeats"] < min_repeats:
            raise TableError(f"{where}: {dev}/{s} has latency_ms with {hm.get('latency_ms', {}).get('repeats')} "
                             f"repeats; allowed: >= {min_repeats}")
        lat = t.hardware(dev, s, "latency_ms")
        measured = np.isfinite(lat).any(1)
        if not (np.isfinite(lat[measured]).all() and (lat[measured] > 0).all()):
            raise TableError(f"{where}: {dev}/{s} latency_ms has a row with missing or non-positive repeats")
        for metric in ("memory_mb", "energy_mj"):
            if metric in hm:
                v = t.hardware(dev, s, metric)
                have = np.isfinite(v).any(1)
                if not (np.isfinite(v[have]).all() and (v[have] > 0).all()):
                    raise TableError(f"{where}: {dev}/{s} {metric} has a non-positive or partly missing row")
                if metric == "memory_mb" and not (have == measured).all():
                    raise TableError(f"{where}: {dev}/{s} memory_mb is missing for a row with latency")
        settings[s] = {"rows": int(measured.sum()),
                       "energy_rows": int(np.isfinite(t.hardware(dev, s, "energy_mj")).any(1).sum())
                       if "energy_mj" in hm else 0}
    if not settings:
        raise TableError(f"{where}: device {dev!r} has no settings")
    return {"path": str(path), "space": t.space.name, "device": dev, "rows": len(t), "settings": settings,
            "dry_run": dry}


def perplexity_agreement(shard: Table, table: Table, rtol: float = PERPLEXITY_RTOL) -> list[dict[str, Any]]:
    """The run's perplexity re-checks against the table's values, one record per checked
    architecture the table holds: ``{"arch", "gpu", "table", "rel_diff", "comparable"}``; comparable
    only when the check predicted as many test tokens as the table's ``eval_tokens`` and both pin
    the same supernet. Raises :class:`TableError` when a comparable pair differs by more than ``rtol``."""
    if LOGS["perplexity"] not in shard.logs() or "perplexity" not in table.metrics():
        return []
    log = shard.log(LOGS["perplexity"])
    ppl = table.metric("perplexity")
    same_net = shard.attrs.get("supernet_sha256") == table.attrs.get("supernet_sha256")
    out = []
    for arch, p, n in zip(log["arch"], log["perplexity"], log["tokens"]):
        if arch not in table:
            continue
        ref = float(ppl[table.row(arch)])
        comparable = same_net and math.isfinite(ref) and int(n) == int(table.attrs.get("eval_tokens", -1))
        rel = abs(float(p) - ref) / ref if math.isfinite(ref) else math.nan
        out.append({"arch": str(arch), "gpu": float(p), "table": ref, "rel_diff": rel, "comparable": comparable})
        if comparable and not rel <= rtol:
            raise TableError(f"GPU shard {shard.path}: perplexity of {arch} re-measured on the GPU is {float(p):.6g}, "
                             f"the table's is {ref:.6g} (relative difference {rel:.2e} > {rtol}); the weights or "
                             f"test tokens differ")
    return out


def ingest(shards: Sequence, table, out=None, *, allow_dry_run: bool = False, check_only: bool = False) -> dict[str, Any]:
    """Check every shard (:func:`check_shard`) and its perplexity re-checks against ``table``
    (:func:`perplexity_agreement`), then merge ``table`` (if it exists) and the shards into ``out``
    (default: ``table`` itself, rewritten atomically). Returns ``{"shards": [...], "perplexity":
    [...], "out", "rows"}``; ``check_only`` stops before the merge."""
    if not shards:
        raise TableError("no GPU shards given; allowed: one or more shard files of scripts/profile_gpu.py")
    table = Path(table)
    base = Table(table) if table.exists() else None
    reports, agreement = [], []
    for path in shards:
        r = check_shard(path, allow_dry_run=allow_dry_run)
        if base is not None:
            if r["space"] != base.space.name:
                raise TableError(f"GPU shard {path}: space {r['space']!r}, table {table}: space {base.space.name!r}")
            have = base.devices().get(r["device"])
            if have is not None and have["source"] != "measured":
                raise TableError(f"GPU shard {path}: device {r['device']!r} is a modeled device of {table}")
            agreement += perplexity_agreement(Table(path), base)
        reports.append(r)
    result = {"shards": reports, "perplexity": agreement, "out": None, "rows": None}
    if check_only:
        return result
    out = Path(out) if out is not None else table
    merged = merge_tables(([table] if base is not None else []) + [Path(p) for p in shards], out, on_conflict="error",
                          in_place=True)
    result.update(out=str(merged), rows=len(Table(merged)))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="ingest_gpu.py", description="Check the shards of a GPU run "
                                "(scripts/profile_gpu.py) and merge them into a table as a measured device.")
    p.add_argument("shards", nargs="+", metavar="SHARD", help="shard files the GPU run returned")
    p.add_argument("--table", required=True, help="table to merge into (e.g. data/table_t.h5; created if absent)")
    p.add_argument("--out", default=None, help="write the merged table here instead of rewriting --table")
    p.add_argument("--check-only", action="store_true", help="validate, compare perplexities, merge nothing")
    p.add_argument("--allow-dry-run", action="store_true", help="accept a CPU dry run's shard (tests only)")
    a = p.parse_args(argv)
    try:
        r = ingest(a.shards, a.table, a.out, allow_dry_run=a.allow_dry_run, check_only=a.check_only)
    except (TableError, ValueError) as e:
        print(f"ingest_gpu.py: error: {e}", file=sys.stderr)
        return 2
    for s in r["shards"]:
        rows = ", ".join(f"{k} {v['rows']} ({v['energy_rows']} with energy)" for k, v in sorted(s["settings"].items()))
        print(f"{s['path']}: {s['device']}{' (dry run)' if s['dry_run'] else ''}, space {s['space']}: {rows}")
    for c in r["perplexity"]:
        print(f"perplexity {c['arch']}: GPU {c['gpu']:.6g}, table {c['table']:.6g}, relative difference "
              f"{c['rel_diff']:.2e}{'' if c['comparable'] else ' (not comparable: other token count or checkpoint)'}")
    print(f"merged into {r['out']}: {r['rows']} rows" if r["out"] else "checked; nothing merged")
    return 0
