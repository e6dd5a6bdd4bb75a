"""Removing devices or logs from a table: :func:`drop_from_table`.

Merging never replaces a device: shards must agree on a device's provenance, and the first
shard's values win. Re-profiling a device under another protocol therefore goes through a table
without it — e.g. the release's perplexities and exact metrics without the old timings — merged
with the new shard.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from benchmark.table.reader import Table, read_content
from benchmark.table.schema import TableError
from benchmark.table.storage import output_lock, write_content

__all__ = ["drop_from_table"]


def drop_from_table(source: str | os.PathLike, out: str | os.PathLike, *, devices: Iterable[str] = (),
                    logs: Iterable[str] = (), compression: str | None = "gzip") -> Path:
    """Write ``source`` without ``devices`` (their settings, hardware metrics and measurement times)
    and without ``logs`` to ``out`` (a new path, written atomically). Rows, metrics and everything
    else are kept; the root attribute ``dropped_from`` records the source's sha256 and what went."""
    source, out = Path(source), Path(out)
    devices, logs = list(dict.fromkeys(devices)), list(dict.fromkeys(logs))
    if out.exists() and source.exists() and os.path.samefile(source, out):
        raise TableError.invalid("out", str(out), "a path other than the source table")
    if not devices and not logs:
        raise TableError.invalid("drop", "nothing", "at least one device or log to drop")
    t = Table(source)
    have_dev, have_log = list(t.devices()), t.logs()
    for d in devices:
        if d not in have_dev:
            raise TableError.invalid("device", d, have_dev)
    for name in logs:
        if name not in have_log:
            raise TableError.invalid("log", name, have_log)
    c = read_content(t)
    gone = set(devices)
    c.device_meta = {k: v for k, v in c.device_meta.items() if k not in gone}
    c.setting_meta = {k: v for k, v in c.setting_meta.items() if k[0] not in gone}
    c.measured_at = {k: v for k, v in c.measured_at.items() if k[0] not in gone}
    c.hw_meta = {k: v for k, v in c.hw_meta.items() if k[0] not in gone}
    c.hardware = {k: v for k, v in c.hardware.items() if k[0] not in gone}
    c.logs = {k: v for k, v in c.logs.items() if k not in set(logs)}
    c.attrs = {k: v for k, v in c.attrs.items() if k not in ("created", "package_version")}
    c.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    c.attrs["dropped_from"] = json.dumps({"path": source.name, "sha256": t.sha256(), "devices": devices,
                                          "logs": logs})
    with output_lock(out):
        write_content(c, out, compression)
    return out
