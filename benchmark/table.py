"""The benchmark table: one HDF5 file per search space (schema v1, documented in docs/table.md).

Layout::

    /                       attrs: format, schema_version, space, created, package_version,
                                   [merged_from], + free attrs (corpus/tokenizer ids, ...)
    /archs/encoding         (N, L) int8   choice indices, -1 = padded layer
    /archs/id               (N,)   str    canonical architecture ids (UTF-8)
    /metrics/<name>         (N,)   float64, NaN = missing; attrs unit, source, description, [missing_reason]
    /hardware/<device>                     attrs: source (measured|modeled), provenance (JSON), [kind]
    /hardware/<device>/<setting>           attrs: mode, batch, seq_len, dtype, + free (warmup, repeats, ...)
    /hardware/<device>/<setting>/<metric>  (N, R) float64, NaN = not measured; attrs unit, repeats, [missing_reason]
    /hardware/<device>/<setting>/measured_at  (N,) float64 unix time of the row's measurement (NaN = unknown)
    /log/<name>/<column>    aligned 1-D columns (float64 or UTF-8) of free records (e.g. drift re-timings)

Writers keep the content in memory and every flush rewrites the whole file to a temporary
name in the same directory, fsyncs it and renames it into place (``os.replace``), so a crash
or ``kill -9`` leaves either the previous or the new table, never a half-written one. One
writer per file at a time (an advisory lock, released by the OS when a process dies).
Reopening a path resumes it: rows already present are skipped, never duplicated. Readers open
the file read-only only while they load what was asked for, and notice when a writer has
replaced the file since they opened it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from benchmark.errors import HwlmError
from benchmark.files import atomic_path, json_default, remove_stale_temporaries, sha256_file
from benchmark.settings import DTYPES, MODES, Setting, SettingError  # noqa: F401  (part of this module's API)
from benchmark.spaces import Architecture, get_space

__all__ = ["SCHEMA_VERSION", "FORMAT", "SOURCES", "DEVICE_SOURCES", "DEVICE_KINDS", "MODES", "DTYPES",
           "TableError", "Setting", "device_kind", "TableWriter", "Table", "merge_tables"]

SCHEMA_VERSION = 1
FORMAT = "hwlm-bench table"
SOURCES = ("measured", "exact", "modeled", "surrogate")  # of a /metrics dataset
DEVICE_SOURCES = ("measured", "modeled")  # of a /hardware/<device> group
DEVICE_KINDS = ("cpu", "gpu")
COMPRESSIONS = ("gzip", "lzf", None)
MEASURED_AT = "measured_at"
# root attributes the package owns; the rest are free (corpus_sha256, tokenizer_sha256, eval_tokens, ...)
RESERVED_ATTRS = ("format", "schema_version", "space", "created", "package_version", "merged_from")
_SETTING_FIELDS = ("mode", "batch", "seq_len", "dtype")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_STR = h5py.string_dtype("utf-8")


class TableError(HwlmError):
    """An invalid table file or table operation; the message names the file and the problem."""


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise TableError.invalid(kind, name, "a name of letters, digits and _ . + - starting with a letter or digit")
    return name


def _scalar(what: str, v: Any) -> str | int | float | bool:
    """A value storable as an HDF5 attribute and comparable after a round trip."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (str, bool, int, float)):
        return v
    raise TableError.invalid(what, v, "a string, bool, int or float")


def _plain(v: Any) -> Any:
    """numpy scalars/bytes read back from HDF5 -> plain Python values."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


_json_default = json_default  # the name surrogates/fit.py imports; new code uses benchmark.files.json_default


def device_kind(device: str, meta: Mapping[str, Any]) -> str | None:
    """The kind (cpu, gpu) of a table device from its ``devices()`` entry: the declared kind, else
    the provenance's, else the ``cpu-``/``gpu-`` prefix of its id; None when nothing says."""
    kind = meta.get("kind") or (meta.get("provenance") or {}).get("kind")
    if kind:
        return str(kind)
    return next((k for k in DEVICE_KINDS if device.startswith(k + "-")), None)


def _same(a: Any, b: Any) -> bool:
    """Equal declarations/attributes; NaN (e.g. in a provenance dict) equals NaN."""
    if a == b:
        return True
    try:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return False


def _as_float(what: str, v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, (str, bytes)) or isinstance(v, (bool, np.bool_)):
        raise TableError.invalid(what, v, "a real number or None (missing)")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TableError.invalid(what, v, "a real number or None (missing)") from None


# ---------------------------------------------------------------------------- settings
def _parse_setting(s: Any) -> Setting:
    """``Setting.parse``, failing as a table operation does (TableError)."""
    try:
        return Setting.parse(s)
    except SettingError as e:
        raise TableError(str(e)) from None


def _setting_name(s: Any) -> str:
    return _parse_setting(s).name


# ---------------------------------------------------------------------------- content
@dataclass
class _Content:
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


def _write(content: _Content, path: Path, compression: str | None = "gzip") -> None:
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
            f.create_dataset("archs/id", data=np.array(content.ids, dtype=object).reshape(n), dtype=_STR,
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
                    if _column_kind(values) == "str":
                        f.create_dataset(f"log/{name}/{col}", data=np.array(values, dtype=object).reshape(k),
                                         dtype=_STR, maxshape=(None,), chunks=(_chunk(k),), **comp)
                    else:
                        f.create_dataset(f"log/{name}/{col}", data=np.asarray(values, np.float64).reshape(k),
                                         maxshape=(None,), chunks=(_chunk(k),), **comp)


def _column_kind(values: Sequence) -> str:
    return "str" if any(isinstance(v, str) for v in values) else "float"


class _WriteLock:
    """Exclusive advisory lock on ``.<name>.lock`` next to a table: one writer per file.

    ``flock`` locks die with their process, so a killed writer never blocks the next one. Where
    locking is unsupported (no fcntl, or a filesystem without flock) the writer runs unlocked.
    """

    def __init__(self, path: Path):
        self.path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                finally:
                    os.close(fd)
                raise TableError(f"table {path}: another writer (process {holder}) has it open; one writer per "
                                 f"table file at a time — write to another shard and merge") from None
            except OSError:  # pragma: no cover - filesystem without flock
                os.close(fd)
                return
            try:  # a closing writer may have unlinked the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._fd = fd
                return
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still holding the lock (see the inode check above)
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        with contextlib.suppress(Exception):  # also at interpreter shutdown
            self.release()


# ---------------------------------------------------------------------------- writing
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
            _check_name("attribute name", k)
            if k in RESERVED_ATTRS:
                raise TableError.invalid("attribute name", k, f"a free name, not one of the reserved {list(RESERVED_ATTRS)}")
            new_attrs[k] = _scalar(f"attribute {k!r}", v)
        self.flush_every, self.compression = flush_every, compression
        self._pending = 0
        self._closed = False
        self._lock = _WriteLock(self.path)
        try:
            if self._lock.held:
                remove_stale_temporaries(self.path)
            if self.path.exists():
                try:
                    self._c = Table(self.path)._content()
                except TableError as e:
                    raise TableError(f"cannot resume: {e}") from None
                if self._c.space != self.space.name:
                    raise TableError(f"table {self.path}: holds space {self._c.space!r}, cannot append "
                                     f"architectures of space {self.space.name!r}")
                for k, v in new_attrs.items():
                    if k in self._c.attrs and not _same(self._c.attrs[k], v):
                        raise TableError(f"table {self.path}: attribute {k!r} is {self._c.attrs[k]!r} in the file, "
                                         f"{v!r} here; rows made with different inputs are never mixed — "
                                         f"write a new table")
            else:
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                self._c = _Content(space=self.space.name, attrs={"created": now})
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
            _check_name("attribute name", k)
            if k in RESERVED_ATTRS:
                raise TableError.invalid("attribute name", k, f"a free name, not one of the reserved {list(RESERVED_ATTRS)}")
            self._c.attrs[k] = _scalar(f"attribute {k!r}", v)

    def __len__(self) -> int:
        return self._c.n()

    def __contains__(self, arch) -> bool:
        return _arch_id(self.space.name, arch) in self._index

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
        if key in store and not _same(store[key], meta):
            old = store[key]
            diff = ", ".join(f"{k}: {old.get(k)!r} declared (or in the file) vs {meta.get(k)!r} now"
                             for k in sorted(set(old) | set(meta), key=str) if not _same(old.get(k), meta.get(k)))
            raise TableError(f"table {self.path}: {what} {key!r} already declared differently ({diff})")
        store[key] = meta

    def declare_metric(self, name: str, unit: str, source: str, description: str = "",
                       missing_reason: str | None = None) -> None:
        """A device-independent metric ``/metrics/<name>`` (e.g. perplexity, params)."""
        self._check_open()
        _check_name("metric name", name)
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
        _check_name("device", device)
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
        s = _parse_setting(setting)
        if device not in self._c.device_meta:
            raise TableError.invalid("device", device, f"a declared device {sorted(self._c.device_meta)} (declare_device first)")
        meta = s.attrs()
        for k, v in attrs.items():
            _check_name("setting attribute", k)
            if k in _SETTING_FIELDS:
                raise TableError.invalid(f"setting attribute of {s.name}", k, f"not one of {list(_SETTING_FIELDS)} "
                                                                 "(they come from the setting itself)")
            meta[k] = _scalar(f"setting attribute {k!r}", v)
        self._declare(self._c.setting_meta, (device, s.name), meta, "setting")
        self._c.measured_at.setdefault((device, s.name), [math.nan] * self._c.n())
        return s.name

    def declare_hardware_metric(self, device: str, setting: Setting | str, metric: str, unit: str, repeats: int,
                                missing_reason: str | None = None) -> None:
        """A hardware metric ``/hardware/<device>/<setting>/<metric>`` of ``repeats`` columns.
        ``missing_reason`` says why values are absent (e.g. no energy counter on this device)."""
        self._check_open()
        s = _setting_name(setting)
        _check_name("hardware metric", metric)
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
            vals[name] = _as_float(f"value of metric {name!r}", v)
        rows = {}
        for key, values in _flat_hardware(hardware or {}):
            if key not in c.hw_meta:
                raise TableError.invalid("hardware key", key, f"a declared (device, setting, metric) {sorted(c.hw_meta)}")
            R = c.hw_meta[key]["repeats"]
            v = np.asarray([_as_float(f"repeat of {key}", x) for x in np.ravel(np.asarray(values, dtype=object))],
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
            k = (key[0], _setting_name(key[1]))
            if k not in c.setting_meta:
                raise TableError.invalid("measured_at key", key, f"a declared (device, setting) {sorted(c.setting_meta)}")
            times[k] = _as_float(f"measured_at of {k}", t)
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
            x = _as_float(f"value of metric {name!r} for {arch_id}", v)
            old = column[self._index[arch_id]]
            if not math.isnan(old) and not _same(old, x):
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
        s = _setting_name(setting)
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
            arr = np.asarray([_as_float(f"value of {key} for {arch_id}", x) for x in np.ravel(np.asarray(v))])
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
        _check_name("log name", name)
        if not isinstance(record, Mapping) or not record:
            raise TableError.invalid(f"record of log {name!r}", record, "a non-empty dict of column -> scalar")
        cols = self._c.logs.get(name)
        if cols is not None and set(cols) != set(record):
            raise TableError.invalid(f"columns of log {name!r} record", sorted(record), sorted(cols))
        clean = {}
        for k, v in record.items():
            _check_name(f"column of log {name!r}", k)
            if isinstance(v, np.generic):
                v = v.item()
            kind = "str" if isinstance(v, str) else "float"
            if kind == "float":
                v = _as_float(f"log {name!r} column {k!r}", v)
            if cols is not None and cols[k] and _column_kind(cols[k]) != kind:
                raise TableError.invalid(f"log {name!r} column {k!r}", v, f"a {_column_kind(cols[k])} like the earlier records")
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
        _write(self._c, self.path, self.compression)
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
            yield (key[0], _setting_name(key[1]), key[2]), values
        elif isinstance(key, tuple) and len(key) == 2 and isinstance(values, Mapping):
            for metric, v in values.items():
                yield (key[0], _setting_name(key[1]), metric), v
        else:
            raise TableError.invalid("hardware key", key, "(device, setting, metric) -> repeats, or "
                                             "(device, setting) -> {metric: repeats}")


def _arch_id(space: str, arch) -> str:
    return arch if isinstance(arch, str) else get_space(space).validate(arch).id


# ---------------------------------------------------------------------------- reading
class Table:
    """Read-only view of a table file, validated on opening; columns load on demand and are cached.

    The file is open only while something is read. If a writer has replaced it since this
    object was opened, loading a column not yet cached raises :class:`TableError` (open it again).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._cache: dict[str, np.ndarray] = {}
        self._index: dict[str, int] | None = None
        self._sha256: str | None = None
        self._identity: tuple | None = None
        if not self.path.exists():
            raise TableError(f"table {self.path}: no such file")
        if self.path.is_dir():
            raise TableError(f"table {self.path}: is a directory, not a table file")
        with self._open() as f:
            try:
                self.attrs: dict[str, Any] = {k: _plain(v) for k, v in f.attrs.items()}
                self._check_root()
                self._structure = self._read_structure(f)
            except TableError:
                raise
            except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as e:
                raise TableError(f"table {self.path}: damaged or not a table ({type(e).__name__}: {e})") from None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Table":
        """Same as ``Table(path)``."""
        return cls(path)

    # ------------------------------------------------------------------ file access
    @contextlib.contextmanager
    def _open(self) -> Iterator[h5py.File]:
        try:
            f = h5py.File(self.path, "r", locking=False)
        except FileNotFoundError:
            raise TableError(f"table {self.path}: no such file (was it moved or deleted?)") from None
        except (OSError, ValueError) as e:
            raise TableError(f"table {self.path}: not a readable HDF5 file — truncated, damaged or not HDF5 "
                             f"({e})") from None
        try:
            try:
                st = os.fstat(f.id.get_vfd_handle())
            except Exception:  # pragma: no cover - a driver without a file descriptor
                st = os.stat(self.path)
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if self._identity is None:
                self._identity = ident
            elif ident != self._identity:
                raise TableError(f"table {self.path}: the file changed on disk since it was opened (a writer "
                                 f"replaced it); open it again with Table({str(self.path)!r})")
            yield f
        finally:
            f.close()

    def _check_root(self) -> None:
        where = f"table {self.path}"
        if self.attrs.get("format") != FORMAT:
            raise TableError(f"{where}: not an hwlm-bench table (root attribute format="
                             f"{self.attrs.get('format')!r}, expected {FORMAT!r})")
        v = self.attrs.get("schema_version")
        if isinstance(v, bool) or not isinstance(v, int):
            raise TableError(f"{where}: root attribute schema_version {v!r} is not an integer")
        if v > SCHEMA_VERSION:
            raise TableError(f"{where}: schema version {v} is newer than this package reads (up to "
                             f"{SCHEMA_VERSION}); upgrade hwlm-bench (pip install -U hwlm-bench)")
        if v < 1:
            raise TableError(f"{where}: schema version {v}; allowed: 1..{SCHEMA_VERSION}")
        try:
            self.space = get_space(self.attrs.get("space"))
        except ValueError as e:
            raise TableError(f"{where}: root attribute {e}") from None

    def _read_structure(self, f: h5py.File) -> dict:
        where = f"table {self.path}"

        def attrs(obj) -> dict:
            return {k: _plain(v) for k, v in obj.attrs.items()}

        def need(key: str, kind: type) -> Any:
            obj = f.get(key)
            if not isinstance(obj, kind):
                what = "dataset" if kind is h5py.Dataset else "group"
                raise TableError(f"{where}: {what} /{key} is missing" if obj is None else
                                 f"{where}: /{key} is not a {what}")
            return obj

        ids = need("archs/id", h5py.Dataset)
        enc = need("archs/encoding", h5py.Dataset)
        if ids.ndim != 1 or h5py.check_string_dtype(ids.dtype) is None:
            raise TableError(f"{where}: /archs/id is {ids.dtype} of shape {ids.shape}, expected (N,) strings")
        n = ids.shape[0]
        L = self.space.encoding_length
        if enc.shape != (n, L) or enc.dtype.kind not in "iu":
            raise TableError(f"{where}: /archs/encoding is {enc.dtype} of shape {enc.shape}, expected "
                             f"({n}, {L}) integers for space {self.space.name!r}")
        self.n = n

        def vector(key: str, d: Any) -> None:
            if not isinstance(d, h5py.Dataset) or d.shape != (n,) or d.dtype.kind != "f":
                raise TableError(f"{where}: /{key} has shape {getattr(d, 'shape', None)} and dtype "
                                 f"{getattr(d, 'dtype', None)}, expected ({n},) float")

        metrics = {}
        for name, d in (f["metrics"].items() if "metrics" in f else ()):
            vector(f"metrics/{name}", d)
            meta = attrs(d)
            if meta.get("source") not in SOURCES:
                raise TableError(f"{where}: /metrics/{name} has source {meta.get('source')!r}; allowed: "
                                 f"{list(SOURCES)}")
            metrics[name] = meta
        devices, settings, hw = {}, {}, {}
        for dev, g in (f["hardware"].items() if "hardware" in f else ()):
            if not isinstance(g, h5py.Group):
                raise TableError(f"{where}: /hardware/{dev} is not a group")
            meta = attrs(g)
            if meta.get("source") not in DEVICE_SOURCES:
                raise TableError(f"{where}: /hardware/{dev} has source {meta.get('source')!r}; allowed: "
                                 f"{list(DEVICE_SOURCES)}")
            try:
                prov = json.loads(meta.get("provenance", "{}"))
            except (TypeError, ValueError):
                prov = None
            if not isinstance(prov, dict):
                raise TableError(f"{where}: /hardware/{dev} attribute provenance is not a JSON object")
            devices[dev] = {"source": meta["source"], "provenance": prov}
            if "kind" in meta:
                devices[dev]["kind"] = meta["kind"]
            for st, sg in g.items():
                try:
                    s = _parse_setting(st)
                except TableError as e:
                    raise TableError(f"{where}: /hardware/{dev}/{st}: {e}") from None
                if not isinstance(sg, h5py.Group):
                    raise TableError(f"{where}: /hardware/{dev}/{st} is not a group")
                sattrs = attrs(sg)
                if {k: sattrs.get(k) for k in _SETTING_FIELDS} != s.attrs():
                    raise TableError(f"{where}: /hardware/{dev}/{st} attributes "
                                     f"{ {k: sattrs.get(k) for k in _SETTING_FIELDS} } disagree with its name")
                settings[(dev, st)] = sattrs
                for m, d in sg.items():
                    key = f"hardware/{dev}/{st}/{m}"
                    if m == MEASURED_AT:
                        vector(key, d)
                        continue
                    if not isinstance(d, h5py.Dataset) or d.ndim != 2 or d.shape[0] != n or d.dtype.kind != "f":
                        raise TableError(f"{where}: /{key} has shape {getattr(d, 'shape', None)}, expected "
                                         f"({n}, repeats) float")
                    hw[(dev, st, m)] = {**attrs(d), "repeats": int(d.shape[1])}
        logs = {}
        for name, g in (f["log"].items() if "log" in f else ()):
            lengths = {c: d.shape for c, d in g.items()}
            if len({s for s in lengths.values()}) > 1 or any(len(s) != 1 for s in lengths.values()):
                raise TableError(f"{where}: /log/{name} columns are not aligned 1-D datasets ({lengths})")
            logs[name] = list(g.keys())
        return {"metrics": metrics, "devices": devices, "settings": settings, "hardware": hw, "logs": logs}

    def _load(self, key: str) -> np.ndarray:
        if key not in self._cache:
            with self._open() as f:
                try:
                    d = f[key]
                    arr = np.asarray(d.asstr()[()] if h5py.check_string_dtype(d.dtype) else d[()])
                except (OSError, KeyError, ValueError, RuntimeError) as e:
                    raise TableError(f"table {self.path}: cannot read /{key} (damaged or truncated file? "
                                     f"{type(e).__name__}: {e})") from None
            arr.flags.writeable = False
            self._cache[key] = arr
        return self._cache[key]

    # ------------------------------------------------------------------ rows
    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"Table({str(self.path)!r}, space={self.space.name!r}, rows={self.n}, "
                f"devices={sorted(self._structure['devices'])})")

    @property
    def ids(self) -> np.ndarray:
        """(N,) architecture ids (object array of str)."""
        return self._load("archs/id")

    @property
    def encodings(self) -> np.ndarray:
        """(N, L) int8 encodings (see ``SearchSpace.decode``)."""
        return self._load("archs/encoding")

    def row(self, arch) -> int:
        """Row index of an architecture (id, Architecture, encoding or dict); O(1) after the first call."""
        if self._index is None:
            ids = self.ids.tolist()
            index = {a: i for i, a in enumerate(ids)}
            if len(index) != len(ids):
                dup = next(a for i, a in enumerate(ids) if index[a] != i)
                raise TableError(f"table {self.path}: architecture {dup} appears more than once")
            self._index = index
        aid = _arch_id(self.space.name, arch)
        try:
            return self._index[aid]
        except KeyError:
            raise KeyError(f"architecture {aid} is not in table {self.path} ({self.n} rows)") from None

    def __contains__(self, arch) -> bool:
        try:
            self.row(arch)
            return True
        except KeyError:
            return False

    def architectures(self) -> list[Architecture]:
        return [self.space.from_id(a) for a in self.ids.tolist()]

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> dict[str, dict]:
        """{name: {unit, source, description[, missing_reason]}} of the device-independent metrics."""
        return {k: dict(v) for k, v in self._structure["metrics"].items()}

    def metric(self, name: str) -> np.ndarray:
        """(N,) float64 values of a device-independent metric; NaN = missing."""
        if name not in self._structure["metrics"]:
            raise TableError.invalid(f"metric of table {self.path}", name, sorted(self._structure["metrics"]))
        return self._load(f"metrics/{name}")

    # ------------------------------------------------------------------ hardware
    def devices(self) -> dict[str, dict]:
        """{device: {source, provenance[, kind]}}."""
        return {k: {**v, "provenance": dict(v["provenance"])} for k, v in self._structure["devices"].items()}

    def provenance(self, device: str) -> dict:
        self._check_device(device)
        return dict(self._structure["devices"][device]["provenance"])

    def settings(self, device: str) -> list[str]:
        """Names of the settings measured (or modeled) on ``device``."""
        self._check_device(device)
        return sorted(st for dev, st in self._structure["settings"] if dev == device)

    def setting_attrs(self, device: str, setting: Setting | str) -> dict:
        st = _setting_name(setting)
        if (device, st) not in self._structure["settings"]:
            raise TableError.invalid(f"setting of device {device!r} in table {self.path}", st, self.settings(device))
        return dict(self._structure["settings"][(device, st)])

    def hardware_metrics(self, device: str, setting: Setting | str) -> dict[str, dict]:
        """{metric: {unit, repeats[, missing_reason]}} at ``device``/``setting``."""
        st = _setting_name(setting)
        self.setting_attrs(device, st)
        return {m: dict(meta) for (d, s, m), meta in self._structure["hardware"].items() if d == device and s == st}

    def hardware(self, device: str, setting: Setting | str, metric: str) -> np.ndarray:
        """The (N, R) repeats of ``metric`` at ``device``/``setting``; NaN = not measured."""
        st = _setting_name(setting)
        avail = self.hardware_metrics(device, st)
        if metric not in avail:
            raise TableError.invalid(f"hardware metric at {device}/{st} in table {self.path}", metric, sorted(avail))
        return self._load(f"hardware/{device}/{st}/{metric}")

    def measured_at(self, device: str, setting: Setting | str) -> np.ndarray:
        """(N,) unix time of each row's measurement at ``device``/``setting``; NaN = unknown."""
        st = _setting_name(setting)
        self.setting_attrs(device, st)
        return self._load(f"hardware/{device}/{st}/{MEASURED_AT}")

    def _check_device(self, device: str) -> None:
        if device not in self._structure["devices"]:
            raise TableError.invalid(f"device of table {self.path}", device, sorted(self._structure["devices"]))

    # ------------------------------------------------------------------ logs
    def logs(self) -> list[str]:
        return sorted(self._structure["logs"])

    def log(self, name: str) -> dict[str, np.ndarray]:
        """{column: aligned 1-D array} of the free log ``name``."""
        if name not in self._structure["logs"]:
            raise TableError.invalid(f"log of table {self.path}", name, self.logs())
        return {c: self._load(f"log/{name}/{c}") for c in self._structure["logs"][name]}

    # ------------------------------------------------------------------ identity
    def sha256(self) -> str:
        """Hex sha256 of the file's bytes: the table's identity (surrogates record what they were
        fitted on). Computed on first call; refused if the file changed since it was opened."""
        if self._sha256 is None:
            with self._open():  # checks the identity; the bytes are those of the file opened
                self._sha256 = sha256_file(self.path)
            with self._open():  # ... and still are after hashing
                pass
        return self._sha256

    def _content(self) -> _Content:
        s = self._structure
        c = _Content(space=self.space.name,
                     attrs={k: v for k, v in self.attrs.items() if k not in ("format", "schema_version", "space")})
        c.ids = self.ids.tolist()
        c.encodings = list(np.array(self.encodings, dtype=np.int8))
        c.metric_meta = {k: dict(v) for k, v in s["metrics"].items()}
        c.metrics = {k: self.metric(k).tolist() for k in s["metrics"]}
        c.device_meta = self.devices()
        c.setting_meta = {k: dict(v) for k, v in s["settings"].items()}
        c.hw_meta = {k: dict(v) for k, v in s["hardware"].items()}
        c.hardware = {k: list(np.array(self.hardware(*k))) for k in s["hardware"]}
        c.measured_at = {k: self.measured_at(*k).tolist() for k in s["settings"]}
        c.logs = {name: {col: v.tolist() for col, v in self.log(name).items()} for name in s["logs"]}
        return c


# ---------------------------------------------------------------------------- merging
_UNMERGED_ATTRS = ("created", "package_version", "merged_from")


def merge_tables(inputs: Iterable[str | os.PathLike], output: str | os.PathLike, *, on_conflict: str = "first",
                 compression: str | None = "gzip") -> Path:
    """Merge shard tables into ``output`` (written atomically; ``output`` may be one of the inputs).

    **Rows** are united by architecture id, in order of first appearance. **Cells** are merged
    value by value: for every metric, every (device, setting, metric) row of repeats and every
    ``measured_at``, the first shard (in the order given) that has a value (not NaN; for repeats,
    any non-NaN repeat) provides it — so shards of one architecture sample profiled on different
    devices combine into one row. A later shard's different value for a cell already filled is a
    *conflict*: dropped with ``on_conflict="first"`` (counted in the ``merged_from`` attribute),
    an error naming the architecture, the column and both files with ``on_conflict="error"``.

    Shards must agree on space, schema version, free root attributes (corpus, tokenizer,
    checkpoint ids, ...), metric declarations, device source/kind/provenance (host), setting
    attributes and hardware-metric declarations wherever both have them; a disagreement is a
    :class:`TableError` naming both files and what differs. Logs are concatenated (exact
    duplicate records dropped).
    """
    paths = [Path(p) for p in inputs]
    output = Path(output)
    if not paths:
        raise TableError.invalid("merge inputs", [], "at least one table file")
    if on_conflict not in ("first", "error"):
        raise TableError.invalid("on_conflict", on_conflict, ["first", "error"])
    if compression not in COMPRESSIONS:
        raise TableError.invalid("compression", compression, list(COMPRESSIONS))
    tables = [Table(p) for p in paths]
    contents = [t._content() for t in tables]
    first = tables[0]

    # -- agreement of everything both sides declare
    seen: dict[str, dict] = {w: {} for w in ("attribute", "metric", "device", "setting", "hardware metric")}
    for t, c in zip(tables, contents):
        if c.space != first.space.name:
            raise TableError(f"cannot merge {first.path} and {t.path}: spaces differ "
                             f"({first.space.name!r} vs {c.space!r})")
        if t.attrs["schema_version"] != first.attrs["schema_version"]:
            raise TableError(f"cannot merge {first.path} and {t.path}: schema versions differ "
                             f"({first.attrs['schema_version']} vs {t.attrs['schema_version']})")
        decls = (("attribute", {k: v for k, v in c.attrs.items() if k not in _UNMERGED_ATTRS}),
                 ("metric", c.metric_meta), ("device", c.device_meta), ("setting", c.setting_meta),
                 ("hardware metric", c.hw_meta))
        for what, store in decls:
            for key, meta in store.items():
                if key in seen[what]:
                    other, path = seen[what][key]
                    if not _same(other, meta):
                        raise TableError(f"cannot merge {path} and {t.path}: {what} {key!r} differs "
                                         f"({_describe_diff(other, meta, path, t.path)})")
                else:
                    seen[what][key] = (meta, t.path)

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
    out = _Content(space=first.space.name)
    out.ids, out.encodings = ids, encodings
    out.metric_meta = {k: m for k, (m, _) in seen["metric"].items()}
    out.device_meta = {k: m for k, (m, _) in seen["device"].items()}
    out.setting_meta = {k: m for k, (m, _) in seen["setting"].items()}
    out.hw_meta = {k: m for k, (m, _) in seen["hardware metric"].items()}
    metrics = {k: np.full(n, np.nan) for k in out.metric_meta}
    when = {k: np.full(n, np.nan) for k in out.setting_meta}
    hardware = {k: np.full((n, m["repeats"]), np.nan) for k, m in out.hw_meta.items()}
    origin: dict[tuple, np.ndarray] = {}  # column -> index of the shard that filled each cell
    merged_from = []
    for j, (t, c) in enumerate(zip(tables, contents)):
        tgt = np.fromiter((index[a] for a in c.ids), dtype=np.int64, count=c.n())
        conflicts = 0
        columns = ([(("metric", k), metrics[k], np.asarray(c.metrics[k], np.float64)) for k in c.metrics]
                   + [(("measured_at", k), when[k], np.asarray(c.measured_at[k], np.float64)) for k in c.measured_at]
                   + [(("hardware", k), hardware[k],
                       np.asarray(c.hardware[k], np.float64).reshape(c.n(), out.hw_meta[k]["repeats"]))
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
    out.metrics = {k: v.tolist() for k, v in metrics.items()}
    out.measured_at = {k: v.tolist() for k, v in when.items()}
    out.hardware = {k: list(v) for k, v in hardware.items()}

    # -- logs, root attributes
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
                if mine[k] and len({_column_kind([v]) for v in mine[k]}) > 1:
                    raise TableError(f"cannot merge: log {name!r} column {k!r} holds strings in one file and "
                                     f"numbers in another ({paths[0]}, {t.path})")
    out.attrs = {k: m for k, (m, _) in seen["attribute"].items()}
    out.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out.attrs["merged_from"] = json.dumps(merged_from)
    lock = _WriteLock(output)
    try:
        if lock.held:
            remove_stale_temporaries(output)
        _write(out, output, compression)
    finally:
        lock.release()
    return output


def _record_key(r: tuple) -> tuple:
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in r)


def _describe_diff(a: Any, b: Any, pa: Path, pb: Path) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        parts = []
        for k in sorted(set(a) | set(b), key=str):
            if not _same(a.get(k), b.get(k)):
                if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                    parts.append(f"{k}: {_describe_diff(a[k], b[k], pa, pb)}")
                else:
                    parts.append(f"{k}: {a.get(k)!r} in {pa.name} vs {b.get(k)!r} in {pb.name}")
        return "; ".join(parts)
    return f"{a!r} in {pa.name} vs {b!r} in {pb.name}"
