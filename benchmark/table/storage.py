"""A table's content in memory and on disk: the atomic HDF5 rewrite and the one-writer lock."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from benchmark.files import WriterLock, atomic_path, remove_stale_temporaries
from benchmark.spaces import get_space
from benchmark.table.schema import (
    FORMAT,
    MEASURED_AT,
    SCHEMA_VERSION,
    STR_DTYPE,
    TableError,
)


@dataclass
class TableContent:
    """Everything a table holds, in memory: what writers build and flush, and merges combine."""

    space: str
    attrs: dict = field(default_factory=dict)  # free + created/package_version/merged_from
    ids: list = field(default_factory=list)
    encodings: list = field(default_factory=list)  # rows (L,) int8
    metric_meta: dict = field(default_factory=dict)  # name -> {unit, source, description[, missing_reason]}
    metrics: dict = field(default_factory=dict)  # name -> list[float]
    device_meta: dict = field(default_factory=dict)  # device -> {source, provenance: dict[, kind]}
    setting_meta: dict = field(default_factory=dict)  # (device, setting) -> {mode, batch, seq_len, dtype, ...}
    hw_meta: dict = field(default_factory=dict)  # (device, setting, metric) -> {unit, repeats[, missing_reason]}
    hardware: dict = field(default_factory=dict)  # (device, setting, metric) -> list[np.ndarray (R,)]
    measured_at: dict = field(default_factory=dict)  # (device, setting) -> list[float]
    logs: dict = field(default_factory=dict)  # name -> {column: list[str] | list[float]}

    def n(self) -> int:
        return len(self.ids)


def _chunk(n: int, width: int = 1) -> int:
    """Rows per chunk: about 64 KiB of float64, never more than the rows there are."""
    return max(1, min(max(n, 1), 8192 // max(width, 1)))


def write_content(content: TableContent, path: Path, compression: str | None = "gzip") -> None:
    """Write ``content`` to ``path`` atomically (:func:`benchmark.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        from benchmark.version import __version__

        comp: dict = {}
        if compression == "gzip":
            comp = dict(compression="gzip", compression_opts=4, shuffle=True)
        elif compression == "lzf":
            comp = dict(compression="lzf", shuffle=True)
        n = content.n()
        L = get_space(content.space).encoding_length
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["space"] = content.space
            f.attrs["package_version"] = __version__
            for k, v in content.attrs.items():
                if k not in ("format", "schema_version", "space", "package_version"):
                    f.attrs[k] = v
            enc = np.asarray(content.encodings, dtype=np.int8).reshape(n, L)
            f.create_dataset("archs/encoding", data=enc, maxshape=(None, L), chunks=(_chunk(n, L), L), **comp)
            f.create_dataset("archs/id", data=np.array(content.ids, dtype=object).reshape(n), dtype=STR_DTYPE,
                             maxshape=(None,), chunks=(_chunk(n),), **comp)
            f.require_group("metrics")
            for name, meta in content.metric_meta.items():
                d = f.create_dataset(f"metrics/{name}", data=np.asarray(content.metrics[name], np.float64).reshape(n),
                                     maxshape=(None,), chunks=(_chunk(n),), **comp)
                d.attrs.update(meta)
            f.require_group("hardware")
            for dev, meta in content.device_meta.items():
                g = f.require_group(f"hardware/{dev}")
                g.attrs["source"] = meta["source"]
                g.attrs["provenance"] = json.dumps(meta["provenance"], sort_keys=True)
                if meta.get("kind") is not None:
                    g.attrs["kind"] = meta["kind"]
            for (dev, st), meta in content.setting_meta.items():
                g = f.require_group(f"hardware/{dev}/{st}")
                g.attrs.update(meta)
                g.create_dataset(MEASURED_AT, data=np.asarray(content.measured_at[(dev, st)], np.float64).reshape(n),
                                 maxshape=(None,), chunks=(_chunk(n),), **comp)
            for (dev, st, m), meta in content.hw_meta.items():
                R = int(meta["repeats"])
                rows = content.hardware[(dev, st, m)]
                arr = np.asarray(rows, dtype=np.float64).reshape(n, R) if n else np.empty((0, R))
                d = f.create_dataset(f"hardware/{dev}/{st}/{m}", data=arr, maxshape=(None, R),
                                     chunks=(_chunk(n, R), R), **comp)
                d.attrs.update(meta)
            if content.logs:
                f.require_group("log")
            for name, cols in content.logs.items():
                for col, values in cols.items():
                    k = len(values)
                    if column_kind(values) == "str":
                        f.create_dataset(f"log/{name}/{col}", data=np.array(values, dtype=object).reshape(k),
                                         dtype=STR_DTYPE, maxshape=(None,), chunks=(_chunk(k),), **comp)
                    else:
                        f.create_dataset(f"log/{name}/{col}", data=np.asarray(values, np.float64).reshape(k),
                                         maxshape=(None,), chunks=(_chunk(k),), **comp)


def column_kind(values: Sequence) -> str:
    return "str" if any(isinstance(v, str) for v in values) else "float"


class WriteLock(WriterLock):
    """One writer per table file (:class:`benchmark.files.WriterLock`); a second one is refused
    with a :class:`TableError`."""

    def __init__(self, path: Path):
        super().__init__(path, lambda holder: TableError(
            f"table {path}: another writer (process {holder}) has it open; one writer per table file at a "
            f"time — write to another shard and merge"))


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold ``path``'s writer lock while a table is written whole (a merge, a drop); a second
    writer is refused with :class:`TableError`. Temporaries a killed writer left are removed."""
    lock = WriteLock(path)
    try:
        if lock.held:
            remove_stale_temporaries(path)
        yield
    finally:
        lock.release()
