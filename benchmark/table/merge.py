"""Merging shard tables into one: :func:`merge_tables`."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from benchmark.table.reader import Table, read_content
from benchmark.table.schema import COMPRESSIONS, TableError, same_value
from benchmark.table.storage import TableContent, column_kind, output_lock, write_content

_UNMERGED_ATTRS = ("created", "package_version", "merged_from", "dropped_from")


def merge_tables(inputs: Iterable[str | os.PathLike], output: str | os.PathLike, *, on_conflict: str = "first",
                 compression: str | None = "gzip", in_place: bool = False) -> Path:
    """Merge shard tables into ``output`` (written atomically). ``output`` may be one of the inputs
    only with ``in_place=True`` (extending a table with shards); otherwise that is refused.

    **Rows** are united by architecture id, in order of first appearance. **Cells** are merged
    value by value: for every metric, every (device, setting, metric) row of repeats and every
    ``measured_at``, the first shard (in the order given) that has a value (not NaN; for repeats,
    any non-NaN repeat) provides it — so shards of one architecture sample profiled on different
    devices combine into one row. A later shard's different value for a cell already filled is a
    *conflict*: dropped with ``on_conflict="first"`` (counted in the ``merged_from`` attribute),
    an error naming the architecture, the column and both files with ``on_conflict="error"``.

    Shards (of any schema version this package reads: older ones are upgraded on read) must agree
    on space, free root attributes (corpus, tokenizer,
    checkpoint ids, ...), metric declarations, device source/kind/provenance (host), setting
    attributes and hardware-metric declarations wherever both have them; a disagreement is a
    :class:`TableError` naming both files and what differs. Logs are concatenated (exact
    duplicate records dropped). The output's writer lock is taken before any input is read, so a
    second writer of ``output`` is refused before it does any work.
    """
    paths = [Path(p) for p in inputs]
    output = Path(output)
    if not paths:
        raise TableError.invalid("merge inputs", [], "at least one table file")
    if on_conflict not in ("first", "error"):
        raise TableError.invalid("on_conflict", on_conflict, ["first", "error"])
    if compression not in COMPRESSIONS:
        raise TableError.invalid("compression", compression, list(COMPRESSIONS))
    same = [str(p) for p in paths if p.exists() and output.exists() and os.path.samefile(p, output)]
    if same and not in_place:
        raise TableError.invalid("merge output", str(output), f"a file that is not one of the inputs ({same[0]} is "
                                 "the same file; in_place=True extends a table with shards)")
    with output_lock(output):
        _merge_locked(paths, output, on_conflict, compression)
    return output


def _merge_locked(paths: list[Path], output: Path, on_conflict: str, compression: str | None) -> None:
    tables = [Table(p) for p in paths]
    contents = [read_content(t) for t in tables]
    first = tables[0]

    seen = _agreed_declarations(tables, contents)

    # -- rows and cells
    ids: list[str] = []
    index: dict[str, int] = {}
    encodings: list[np.ndarray] = []
    for c in contents:
        for aid, enc in zip(c.ids, c.encodings):
            if aid not in index:
                index[aid] = len(ids)
                ids.append(aid)
                encodings.append(enc)
    n = len(ids)
    out = TableContent(space=first.space.name)
    out.ids, out.encodings = ids, encodings
    out.metric_meta = {k: m for k, (m, _) in seen["metric"].items()}
    out.device_meta = {k: m for k, (m, _) in seen["device"].items()}
    out.setting_meta = {k: m for k, (m, _) in seen["setting"].items()}
    out.hw_meta = {k: m for k, (m, _) in seen["hardware metric"].items()}
    metrics = {k: np.full(n, np.nan) for k in out.metric_meta}
    when = {k: np.full(n, np.nan) for k in out.setting_meta}
    hardware = {k: np.full((n, m["repeats"]), np.nan) for k, m in out.hw_meta.items()}
    merged_from = _merge_cells(tables, contents, paths, index, metrics, when, hardware, out.hw_meta, on_conflict)
    out.metrics = {k: v.tolist() for k, v in metrics.items()}
    out.measured_at = {k: v.tolist() for k, v in when.items()}
    out.hardware = {k: list(v) for k, v in hardware.items()}

    _merge_logs(out, tables, contents, paths)
    out.attrs = {k: m for k, (m, _) in seen["attribute"].items()}
    out.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out.attrs["merged_from"] = json.dumps(merged_from)
    write_content(out, output, compression)


def _record_key(r: tuple) -> tuple:
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in r)


def _describe_diff(a: Any, b: Any, pa: Path, pb: Path) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        parts = []
        for k in sorted(set(a) | set(b), key=str):
            if not same_value(a.get(k), b.get(k)):
                if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                    parts.append(f"{k}: {_describe_diff(a[k], b[k], pa, pb)}")
                else:
                    parts.append(f"{k}: {a.get(k)!r} in {pa.name} vs {b.get(k)!r} in {pb.name}")
        return "; ".join(parts)
    return f"{a!r} in {pa.name} vs {b!r} in {pb.name}"


def _agreed_declarations(tables: list, contents: list) -> dict[str, dict]:
    """{kind: {key: (declaration, first path)}} of everything the tables declare, refusing any
    disagreement between two of them."""
    first = tables[0]
    seen: dict[str, dict] = {w: {} for w in ("attribute", "metric", "device", "setting", "hardware metric")}
    for t, c in zip(tables, contents):
        if c.space != first.space.name:
            raise TableError(f"cannot merge {first.path} and {t.path}: spaces differ "
                             f"({first.space.name!r} vs {c.space!r})")
        decls = (("attribute", {k: v for k, v in c.attrs.items() if k not in _UNMERGED_ATTRS}),
                 ("metric", c.metric_meta), ("device", c.device_meta), ("setting", c.setting_meta),
                 ("hardware metric", c.hw_meta))
        for what, store in decls:
            for key, meta in store.items():
                if key in seen[what]:
                    other, path = seen[what][key]
                    if not same_value(other, meta):
                        raise TableError(f"cannot merge {path} and {t.path}: {what} {key!r} differs "
                                         f"({_describe_diff(other, meta, path, t.path)})")
                else:
                    seen[what][key] = (meta, t.path)

    return seen


def _merge_cells(tables: list, contents: list, paths: list, index: dict, metrics: dict, when: dict, hardware: dict,
                 hw_meta: dict, on_conflict: str) -> list[dict]:
    """Fill the merged columns cell by cell, first file first; returns the ``merged_from`` records."""
    n = len(index)
    origin: dict[tuple, np.ndarray] = {}  # column -> index of the shard that filled each cell
    merged_from = []
    for j, (t, c) in enumerate(zip(tables, contents)):
        tgt = np.fromiter((index[a] for a in c.ids), dtype=np.int64, count=c.n())
        conflicts = 0
        columns = ([(("metric", k), metrics[k], np.asarray(c.metrics[k], np.float64)) for k in c.metrics]
                   + [(("measured_at", k), when[k], np.asarray(c.measured_at[k], np.float64)) for k in c.measured_at]
                   + [(("hardware", k), hardware[k],
                       np.asarray(c.hardware[k], np.float64).reshape(c.n(), hw_meta[k]["repeats"]))
                      for k in c.hardware])
        for col, dst, src in columns:
            has = ~np.isnan(src) if src.ndim == 1 else ~np.isnan(src).all(axis=1)
            cur = dst[tgt]
            cur_has = ~np.isnan(cur) if cur.ndim == 1 else ~np.isnan(cur).all(axis=1)
            fill = has & ~cur_has
            same = (cur == src) | (np.isnan(cur) & np.isnan(src))
            clash = has & cur_has & ~(same if same.ndim == 1 else same.all(axis=1))
            if clash.any():
                i = int(np.flatnonzero(clash)[0])
                if on_conflict == "error":
                    prev = paths[int(origin[col][tgt[i]])]
                    raise TableError(f"cannot merge {prev} and {t.path}: architecture {c.ids[i]} has different "
                                     f"{col[0]} {col[1]!r} values ({cur[i].tolist()!r} vs {src[i].tolist()!r}); "
                                     f"on_conflict='first' keeps the earlier file's")
                conflicts += int(clash.sum())
            dst[tgt[fill]] = src[fill]
            origin.setdefault(col, np.full(n, -1))[tgt[fill]] = j
        merged_from.append({"path": str(t.path), "sha256": t.sha256(), "rows": c.n(), "conflicts": conflicts})
    return merged_from


def _merge_logs(out: TableContent, tables: list, contents: list, paths: list) -> None:
    """Concatenate the tables' logs into ``out`` (exact duplicate records dropped)."""
    for t, c in zip(tables, contents):
        for name, cols in c.logs.items():
            mine = out.logs.setdefault(name, {k: [] for k in cols})
            if set(mine) != set(cols):
                raise TableError(f"cannot merge {paths[0]} and {t.path}: log {name!r} has columns "
                                 f"{sorted(mine)} in one and {sorted(cols)} in the other")
            keys = list(mine)
            have = {_record_key(r) for r in zip(*(mine[k] for k in keys))}
            for r in zip(*(cols[k] for k in keys)):
                if _record_key(r) not in have:
                    have.add(_record_key(r))
                    for k, v in zip(keys, r):
                        mine[k].append(v)
            for k in keys:
                if mine[k] and len({column_kind([v]) for v in mine[k]}) > 1:
                    raise TableError(f"cannot merge: log {name!r} column {k!r} holds strings in one file and "
                                     f"numbers in another ({paths[0]}, {t.path})")
