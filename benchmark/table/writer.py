"""Appending rows to a table: :class:`TableWriter`."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import numpy as np

from benchmark.files import json_default, remove_stale_temporaries
from benchmark.settings import Setting
from benchmark.spaces import get_space
from benchmark.table.reader import read_content
from benchmark.table.schema import (
    COMPRESSIONS,
    DEVICE_KINDS,
    DEVICE_SOURCES,
    MEASURED_AT,
    RESERVED_ATTRS,
    SETTING_FIELDS,
    SOURCES,
    TableError,
    architecture_id,
    as_float,
    check_name,
    parse_setting,
    same_value,
    scalar_attr,
    setting_name,
)
from benchmark.table.storage import TableContent, WriteLock, column_kind, write_content


class TableWriter:
    """Append rows to a table file, resuming it if it exists.

    Declare what rows may hold first (:meth:`declare_metric`, :meth:`declare_device`,
    :meth:`declare_setting`, :meth:`declare_hardware_metric`; re-declaring the same thing is
    accepted, so a resumed run simply declares again), then :meth:`append` one architecture at a
    time. Every ``flush_every`` appended rows or log records (default 1: rows are expensive to
    measure, and a flush of a 2,000-row table takes a few tens of milliseconds) the whole file is
    rewritten atomically; ``flush_every=None`` flushes only on :meth:`flush`/:meth:`close`. As a
    context manager it flushes on exit, also when the block raised (what was appended is valid).
    A writer dropped without ``close`` loses only rows not yet flushed.

    ``attrs`` are free root attributes (str/int/float/bool), e.g. ``corpus_sha256``; when
    resuming, a value that differs from the one in the file is refused.
    """

    def __init__(self, path: str | os.PathLike, space: str, attrs: Mapping[str, Any] | None = None,
                 flush_every: int | None = 1, compression: str | None = "gzip"):
        self.path = Path(path)
        try:
            self.space = get_space(space)
        except ValueError as e:
            raise TableError(f"table {self.path}: {e}") from None
        if flush_every is not None and (isinstance(flush_every, bool) or not isinstance(flush_every, int)
                                        or flush_every < 1):
            raise TableError.invalid("flush_every", flush_every, "an integer >= 1, or None (flush only on flush()/close())")
        if compression not in COMPRESSIONS:
            raise TableError.invalid("compression", compression, list(COMPRESSIONS))
        new_attrs = {}
        for k, v in (attrs or {}).items():
            check_name("attribute name", k)
            if k in RESERVED_ATTRS:
                raise TableError.invalid("attribute name", k, f"a free name, not one of the reserved {list(RESERVED_ATTRS)}")
            new_attrs[k] = scalar_attr(f"attribute {k!r}", v)
        self.flush_every, self.compression = flush_every, compression
        self._pending = 0
        self._closed = False
        self._lock = WriteLock(self.path)
        try:
            if self._lock.held:
                remove_stale_temporaries(self.path)
            if self.path.exists():
                try:
                    self._c = read_content(self.path)
                except TableError as e:
                    raise TableError(f"cannot resume: {e}") from None
                if self._c.space != self.space.name:
                    raise TableError(f"table {self.path}: holds space {self._c.space!r}, cannot append "
                                     f"architectures of space {self.space.name!r}")
                for k, v in new_attrs.items():
                    if k in self._c.attrs and not same_value(self._c.attrs[k], v):
                        raise TableError(f"table {self.path}: attribute {k!r} is {self._c.attrs[k]!r} in the file, "
                                         f"{v!r} here; rows made with different inputs are never mixed — "
                                         f"write a new table")
            else:
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                self._c = TableContent(space=self.space.name, attrs={"created": now})
        except BaseException:
            self._lock.release()
            raise
        self._c.attrs.update(new_attrs)
        self._index = {a: i for i, a in enumerate(self._c.ids)}

    # ------------------------------------------------------------------ introspection
    @property
    def attrs(self) -> Mapping[str, Any]:
        """The root attributes as they will be written (read-only view; see :meth:`set_attrs`)."""
        return MappingProxyType(self._c.attrs)

    def set_attrs(self, **attrs: Any) -> None:
        """Set free root attributes (written with the next flush)."""
        for k, v in attrs.items():
            check_name("attribute name", k)
            if k in RESERVED_ATTRS:
                raise TableError.invalid("attribute name", k, f"a free name, not one of the reserved {list(RESERVED_ATTRS)}")
            self._c.attrs[k] = scalar_attr(f"attribute {k!r}", v)

    def __len__(self) -> int:
        return self._c.n()

    def __contains__(self, arch) -> bool:
        return architecture_id(self.space.name, arch) in self._index

    def ids(self) -> list[str]:
        return list(self._c.ids)

    def metrics(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self._c.metric_meta.items()}

    def devices(self) -> dict[str, dict]:
        return {k: {**v, "provenance": dict(v["provenance"])} for k, v in self._c.device_meta.items()}

    def settings(self, device: str) -> list[str]:
        return sorted(s for d, s in self._c.setting_meta if d == device)

    # ------------------------------------------------------------------ declarations
    def _declare(self, store: dict, key, meta: dict, what: str) -> None:
        if key in store and not same_value(store[key], meta):
            old = store[key]
            diff = ", ".join(f"{k}: {old.get(k)!r} declared (or in the file) vs {meta.get(k)!r} now"
                             for k in sorted(set(old) | set(meta), key=str) if not same_value(old.get(k), meta.get(k)))
            raise TableError(f"table {self.path}: {what} {key!r} already declared differently ({diff})")
        store[key] = meta

    def declare_metric(self, name: str, unit: str, source: str, description: str = "",
                       missing_reason: str | None = None) -> None:
        """A device-independent metric ``/metrics/<name>`` (e.g. perplexity, params)."""
        self._check_open()
        check_name("metric name", name)
        if source not in SOURCES:
            raise TableError.invalid(f"source of metric {name!r}", source, list(SOURCES))
        meta = {"unit": _str("unit", unit), "source": source, "description": _str("description", description)}
        if missing_reason is not None:
            meta["missing_reason"] = _str("missing_reason", missing_reason)
        self._declare(self._c.metric_meta, name, meta, "metric")
        self._c.metrics.setdefault(name, [math.nan] * self._c.n())

    def declare_device(self, device: str, source: str, provenance: Mapping[str, Any],
                       kind: str | None = None) -> None:
        """A device group ``/hardware/<device>``: ``source`` measured or modeled, ``provenance`` a
        JSON-serialisable dict (host, CPU model, cores, threads, torch version, GPU name, driver, ...),
        ``kind`` cpu or gpu (default: ``provenance["kind"]`` if present)."""
        self._check_open()
        check_name("device", device)
        if source not in DEVICE_SOURCES:
            raise TableError.invalid(f"source of device {device!r}", source, list(DEVICE_SOURCES))
        if not isinstance(provenance, Mapping):
            raise TableError.invalid(f"provenance of device {device!r}", provenance, "a dict")
        try:
            prov = json.loads(json.dumps(dict(provenance), sort_keys=True, default=json_default, allow_nan=True))
        except (TypeError, ValueError) as e:
            raise TableError.invalid(f"provenance of device {device!r}", provenance, f"a JSON-serialisable dict ({e})") from None
        kind = prov.get("kind") if kind is None else kind
        if kind is not None and kind not in DEVICE_KINDS:
            raise TableError.invalid(f"kind of device {device!r}", kind, list(DEVICE_KINDS))
        meta = {"source": source, "provenance": prov}
        if kind is not None:
            meta["kind"] = kind
        self._declare(self._c.device_meta, device, meta, "device")

    def declare_setting(self, device: str, setting: Setting | str, **attrs: Any) -> str:
        """A setting group ``/hardware/<device>/<setting>``; ``attrs`` are free scalars (warmup,
        repeats, ...). Returns the setting's name."""
        self._check_open()
        s = parse_setting(setting)
        if device not in self._c.device_meta:
            raise TableError.invalid("device", device, f"a declared device {sorted(self._c.device_meta)} (declare_device first)")
        meta = s.attrs()
        for k, v in attrs.items():
            check_name("setting attribute", k)
            if k in SETTING_FIELDS:
                raise TableError.invalid(f"setting attribute of {s.name}", k, f"not one of {list(SETTING_FIELDS)} "
                                                                 "(they come from the setting itself)")
            meta[k] = scalar_attr(f"setting attribute {k!r}", v)
        self._declare(self._c.setting_meta, (device, s.name), meta, "setting")
        self._c.measured_at.setdefault((device, s.name), [math.nan] * self._c.n())
        return s.name

    def declare_hardware_metric(self, device: str, setting: Setting | str, metric: str, unit: str, repeats: int,
                                missing_reason: str | None = None) -> None:
        """A hardware metric ``/hardware/<device>/<setting>/<metric>`` of ``repeats`` columns.
        ``missing_reason`` says why values are absent (e.g. no energy counter on this device)."""
        self._check_open()
        s = setting_name(setting)
        check_name("hardware metric", metric)
        if metric == MEASURED_AT:
            raise TableError.invalid("hardware metric", metric, f"any name but the reserved {MEASURED_AT!r}")
        if (device, s) not in self._c.setting_meta:
            raise TableError.invalid("setting", f"{device}/{s}",
                        f"a declared setting {[f'{d}/{x}' for d, x in sorted(self._c.setting_meta)]}")
        if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
            raise TableError.invalid("repeats", repeats, "an integer >= 1")
        meta = {"unit": _str("unit", unit), "repeats": int(repeats)}
        if missing_reason is not None:
            meta["missing_reason"] = _str("missing_reason", missing_reason)
        self._declare(self._c.hw_meta, (device, s, metric), meta, "hardware metric")
        self._c.hardware.setdefault((device, s, metric), [np.full(int(repeats), np.nan)] * self._c.n())

    # ------------------------------------------------------------------ rows
    def append(self, arch, metrics: Mapping[str, Any] | None = None, hardware: Mapping[tuple, Any] | None = None,
               measured_at: Mapping[tuple[str, str], float] | None = None) -> bool:
        """Append one row; returns False (and changes nothing) if the architecture is already there.

        ``arch``: an Architecture, id, encoding or HW-GPT-Bench dict of the table's space.
        ``metrics``: {name: value}; undeclared names are refused, absent ones are NaN.
        ``hardware``: {(device, setting, metric): repeats} or {(device, setting): {metric: repeats}};
        up to R values each (fewer are padded with NaN). ``measured_at``: {(device, setting): unix time}.
        """
        self._check_open()
        try:
            a = self.space.validate(arch)
        except ValueError as e:
            raise TableError(f"table {self.path}: {e}") from None
        if a.id in self._index:
            return False
        c = self._c
        # validate and convert everything first, so that a refused row changes nothing
        vals = {}
        for name, v in (metrics or {}).items():
            if name not in c.metric_meta:
                raise TableError.invalid("metric", name, f"a declared metric {sorted(c.metric_meta)}")
            vals[name] = as_float(f"value of metric {name!r}", v)
        rows = {}
        for key, values in _flat_hardware(hardware or {}):
            if key not in c.hw_meta:
                raise TableError.invalid("hardware key", key, f"a declared (device, setting, metric) {sorted(c.hw_meta)}")
            R = c.hw_meta[key]["repeats"]
            v = np.asarray([as_float(f"repeat of {key}", x) for x in np.ravel(np.asarray(values, dtype=object))],
                           dtype=np.float64)
            if v.size > R:
                raise TableError.invalid(f"number of repeats of {key}", v.size, f"at most the declared {R}")
            row = np.full(R, np.nan)
            row[: v.size] = v
            rows[key] = row
        times = {}
        for key, t in (measured_at or {}).items():
            if not isinstance(key, tuple) or len(key) != 2:
                raise TableError.invalid("measured_at key", key, "a (device, setting) pair")
            k = (key[0], setting_name(key[1]))
            if k not in c.setting_meta:
                raise TableError.invalid("measured_at key", key, f"a declared (device, setting) {sorted(c.setting_meta)}")
            times[k] = as_float(f"measured_at of {k}", t)
        # validated: now mutate
        self._index[a.id] = c.n()
        c.ids.append(a.id)
        c.encodings.append(a.encoding())
        for name in c.metric_meta:
            c.metrics[name].append(vals.get(name, math.nan))
        for key, meta in c.hw_meta.items():
            c.hardware[key].append(rows[key] if key in rows else np.full(meta["repeats"], np.nan))
        for key in c.setting_meta:
            c.measured_at[key].append(times.get(key, math.nan))
        self._mark_pending()
        return True

    def fill_metric(self, name: str, values: Mapping[str, Any]) -> int:
        """Fill missing (NaN) values of a device-independent metric for rows already in the table,
        e.g. perplexity measured in a later pass than the hardware. ``values`` maps architecture
        ids to values; a value that is already there is never overwritten (refused unless equal).
        Returns the number of values filled."""
        self._check_open()
        if name not in self._c.metric_meta:
            raise TableError.invalid("metric", name, f"a declared metric {sorted(self._c.metric_meta)}")
        column = self._c.metrics[name]
        filled = {}
        for arch_id, v in values.items():
            if arch_id not in self._index:
                raise TableError.invalid("architecture id", arch_id, f"an id of one of the table's {self._c.n()} rows")
            x = as_float(f"value of metric {name!r} for {arch_id}", v)
            old = column[self._index[arch_id]]
            if not math.isnan(old) and not same_value(old, x):
                raise TableError.invalid(f"value of metric {name!r} for {arch_id}", x,
                            f"the value already there ({old!r}); measured values are never overwritten")
            if math.isnan(old):
                filled[self._index[arch_id]] = x
        for i, x in filled.items():
            column[i] = x
        if filled:
            self._mark_pending()
        return len(filled)

    def remove_modeled_device(self, device: str) -> None:
        """Drop a *modeled* device with all its settings and values (to recompute it, e.g. after
        recalibration on more measurements). Measured devices cannot be removed."""
        self._check_open()
        meta = self._c.device_meta.get(device)
        if meta is None:
            raise TableError.invalid("device", device, f"a device of the table {sorted(self._c.device_meta)}")
        if meta["source"] != "modeled":
            raise TableError.invalid(f"source of device {device!r}", meta["source"], "'modeled' (measurements are never dropped)")
        del self._c.device_meta[device]
        for store in (self._c.setting_meta, self._c.measured_at, self._c.hw_meta, self._c.hardware):
            for key in [k for k in store if k[0] == device]:
                del store[key]
        self._mark_pending()

    def set_modeled(self, device: str, setting: Setting | str, metric: str, values: Mapping[str, Any]) -> int:
        """Set the values of a *modeled* device's metric for rows already in the table.

        Modeled values are computed for every row (a model, unlike a measurement, can be rerun
        for the whole table), so this writes a whole column: ``values`` maps architecture ids to a
        value or up to R repeats. Ids not in the table are refused; rows not in ``values`` keep
        what they had. Measured devices are refused: measurements only enter a table with
        :meth:`append`, together with their row. Returns the number of rows set.
        """
        self._check_open()
        s = setting_name(setting)
        key = (device, s, metric)
        if key not in self._c.hw_meta:
            raise TableError.invalid("hardware key", key, f"a declared (device, setting, metric) {sorted(self._c.hw_meta)}")
        if self._c.device_meta[device]["source"] != "modeled":
            raise TableError.invalid(f"source of device {device!r}", self._c.device_meta[device]["source"],
                        "'modeled' (measured values enter a table only with append())")
        R = self._c.hw_meta[key]["repeats"]
        rows = {}
        for arch_id, v in values.items():
            if arch_id not in self._index:
                raise TableError.invalid("architecture id", arch_id, f"an id of one of the table's {self._c.n()} rows")
            arr = np.asarray([as_float(f"value of {key} for {arch_id}", x) for x in np.ravel(np.asarray(v))])
            if arr.size > R:
                raise TableError.invalid(f"number of repeats of {key}", arr.size, f"at most the declared {R}")
            row = np.full(R, np.nan)
            row[: arr.size] = arr
            rows[self._index[arch_id]] = row
        column = list(self._c.hardware[key])
        for i, row in rows.items():
            column[i] = row
        self._c.hardware[key] = column
        self._mark_pending()
        return len(rows)

    def log(self, name: str, record: Mapping[str, Any]) -> None:
        """Append one record to the free log ``/log/<name>`` (e.g. drift re-timings of reference
        architectures). A record maps column names to scalars: strings, or numbers (stored as
        float64; None = NaN). Every record of a log has the same columns, each of one kind."""
        self._check_open()
        check_name("log name", name)
        if not isinstance(record, Mapping) or not record:
            raise TableError.invalid(f"record of log {name!r}", record, "a non-empty dict of column -> scalar")
        cols = self._c.logs.get(name)
        if cols is not None and set(cols) != set(record):
            raise TableError.invalid(f"columns of log {name!r} record", sorted(record), sorted(cols))
        clean = {}
        for k, v in record.items():
            check_name(f"column of log {name!r}", k)
            if isinstance(v, np.generic):
                v = v.item()
            kind = "str" if isinstance(v, str) else "float"
            if kind == "float":
                v = as_float(f"log {name!r} column {k!r}", v)
            # a column holds one kind (every record is checked against it): its first value tells which
            if cols is not None and cols[k] and column_kind(cols[k][:1]) != kind:
                raise TableError.invalid(f"log {name!r} column {k!r}", v, f"a {column_kind(cols[k][:1])} like the earlier records")
            clean[k] = v
        cols = self._c.logs.setdefault(name, {k: [] for k in clean})
        for k, v in clean.items():
            cols[k].append(v)
        self._mark_pending()

    # ------------------------------------------------------------------ persistence
    def _mark_pending(self) -> None:
        self._pending += 1
        if self.flush_every is not None and self._pending >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Rewrite the whole file atomically (temporary file, fsync, ``os.replace``)."""
        self._check_open()
        write_content(self._c, self.path, self.compression)
        self._pending = 0

    def close(self) -> None:
        """Flush and release the file; further calls are refused. Closing twice is a no-op."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TableError(f"table {self.path}: the writer is closed")

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TableWriter({str(self.path)!r}, space={self.space.name!r}, rows={len(self)})"


def _str(what: str, v: Any) -> str:
    if not isinstance(v, str):
        raise TableError.invalid(what, v, "a string")
    return v


def _flat_hardware(hardware: Mapping) -> Iterator[tuple[tuple[str, str, str], Any]]:
    for key, values in hardware.items():
        if isinstance(key, tuple) and len(key) == 3:
            yield (key[0], setting_name(key[1]), key[2]), values
        elif isinstance(key, tuple) and len(key) == 2 and isinstance(values, Mapping):
            for metric, v in values.items():
                yield (key[0], setting_name(key[1]), metric), v
        else:
            raise TableError.invalid("hardware key", key, "(device, setting, metric) -> repeats, or "
                                             "(device, setting) -> {metric: repeats}")
