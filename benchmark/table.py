"""The benchmark table: one HDF5 file per search space (schema v1, documented in docs/table.md).

Layout::

    /                       attrs: format, schema_version, space, created, package_version, + free attrs
    /archs/encoding         (N, L) int8   choice indices, -1 = padded layer
    /archs/id               (N,)   str    canonical architecture ids
    /metrics/<name>         (N,)   float64, NaN = missing; attrs unit, source, description
    /hardware/<device>                     attrs: source (measured|modeled), provenance (JSON)
    /hardware/<device>/<setting>           attrs: mode, batch, seq_len, dtype, + free (warmup, repeats)
    /hardware/<device>/<setting>/<metric>  (N, R) float64, NaN = not measured; attrs unit, missing_reason
    /hardware/<device>/<setting>/measured_at  (N,) float64 unix time of the row's measurement
    /log/<name>/<column>    aligned 1-D columns of free records (e.g. drift re-timings)

Writers keep the content in memory and every flush rewrites the whole file to a temporary
name in the same directory and renames it into place, so a crash or ``kill -9`` leaves either
the previous or the new table, never a half-written one; reopening a path resumes it (rows
already present are skipped, never duplicated). Readers open the file read-only only while
they load what was asked for, so a writer's rename and several reading processes are safe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from benchmark.spaces import Architecture, get_space

SCHEMA_VERSION = 1
FORMAT = "hwlm-bench table"
SOURCES = ("measured", "exact", "modeled", "surrogate")
MODES = ("prefill", "decode")
DTYPES = ("fp32", "fp16", "bf16")
_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+")
_STR = h5py.string_dtype("utf-8")


class TableError(ValueError):
    """A table file or table operation that is invalid; the message names file and problem."""


def _fail(field_: str, value: Any, allowed: Any) -> TableError:
    return TableError(f"invalid {field_}: {value!r}; allowed: {allowed}")


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise _fail(kind, name, "a non-empty name of letters, digits and _ . + -")
    return name


@dataclass(frozen=True)
class Setting:
    """A hardware measurement setting: prefill of batch x seq_len tokens, or decoding one
    token per sequence with seq_len tokens of context in the KV cache."""

    mode: str
    batch: int
    seq_len: int
    dtype: str = "fp32"

    def __post_init__(self):
        if self.mode not in MODES:
            raise _fail("setting mode", self.mode, list(MODES))
        for f in ("batch", "seq_len"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise _fail(f"setting {f}", v, "an integer >= 1")
        if self.dtype not in DTYPES:
            raise _fail("setting dtype", self.dtype, list(DTYPES))

    @property
    def name(self) -> str:
        return f"{self.mode}-b{self.batch}-s{self.seq_len}-{self.dtype}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, s: "str | Setting") -> "Setting":
        if isinstance(s, Setting):
            return s
        m = re.fullmatch(r"(prefill|decode)-b(\d+)-s(\d+)-(\w+)", s) if isinstance(s, str) else None
        if m is None:
            raise _fail("setting name", s, "the form {prefill|decode}-b{batch}-s{seq_len}-{fp32|fp16|bf16}")
        return cls(m[1], int(m[2]), int(m[3]), m[4])


@dataclass
class _Content:
    """Everything a table holds, in memory: what writers build and flush, and merges combine."""

    space: str
    attrs: dict = field(default_factory=dict)
    ids: list = field(default_factory=list)
    encodings: list = field(default_factory=list)
    metric_meta: dict = field(default_factory=dict)  # name -> {unit, source, description}
    metrics: dict = field(default_factory=dict)  # name -> list[float]
    device_meta: dict = field(default_factory=dict)  # device -> {source, provenance}
    setting_meta: dict = field(default_factory=dict)  # (device, setting) -> attrs
    hw_meta: dict = field(default_factory=dict)  # (device, setting, metric) -> {unit, repeats, missing_reason}
    hardware: dict = field(default_factory=dict)  # (device, setting, metric) -> list[np.ndarray (R,)]
    measured_at: dict = field(default_factory=dict)  # (device, setting) -> list[float]
    logs: dict = field(default_factory=dict)  # name -> {column: list}

    def n(self) -> int:
        return len(self.ids)


# ---------------------------------------------------------------------------- writing
def _write(content: _Content, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        n = content.n()
        comp = dict(compression="gzip", compression_opts=4, shuffle=True)
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"format": FORMAT, "schema_version": SCHEMA_VERSION, "space": content.space})
            for k, v in content.attrs.items():
                f.attrs[k] = v
            L = get_space(content.space).encoding_length
            enc = np.asarray(content.encodings, dtype=np.int8).reshape(n, L)
            f.create_dataset("archs/encoding", data=enc, maxshape=(None, L), chunks=(max(1, min(n, 4096)), L), **comp)
            f.create_dataset("archs/id", data=np.array(content.ids, dtype=object), dtype=_STR,
                             maxshape=(None,), chunks=(max(1, min(n, 4096)),), **comp)
            for name, meta in content.metric_meta.items():
                d = f.create_dataset(f"metrics/{name}", data=np.asarray(content.metrics[name], dtype=np.float64),
                                     maxshape=(None,), chunks=(max(1, min(n, 4096)),), **comp)
                d.attrs.update(meta)
            for dev, meta in content.device_meta.items():
                g = f.require_group(f"hardware/{dev}")
                g.attrs["source"] = meta["source"]
                g.attrs["provenance"] = json.dumps(meta["provenance"], sort_keys=True)
            for (dev, st), meta in content.setting_meta.items():
                g = f.require_group(f"hardware/{dev}/{st}")
                g.attrs.update(meta)
                g.create_dataset("measured_at", data=np.asarray(content.measured_at[(dev, st)], dtype=np.float64),
                                 maxshape=(None,), chunks=(max(1, min(n, 4096)),), **comp)
            for (dev, st, m), meta in content.hw_meta.items():
                R = meta["repeats"]
                arr = np.asarray(content.hardware[(dev, st, m)], dtype=np.float64).reshape(n, R)
                d = f.create_dataset(f"hardware/{dev}/{st}/{m}", data=arr, maxshape=(None, R),
                                     chunks=(max(1, min(n, 1024)), R), **comp)
                d.attrs.update({k: v for k, v in meta.items() if v is not None})
            for name, cols in content.logs.items():
                for col, values in cols.items():
                    vals = np.asarray(values)
                    if vals.dtype.kind in "US" or vals.dtype == object:
                        f.create_dataset(f"log/{name}/{col}", data=np.array(values, dtype=object), dtype=_STR)
                    else:
                        f.create_dataset(f"log/{name}/{col}", data=vals.astype(np.float64))
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class TableWriter:
    """Append rows to a table file, resuming it if it exists.

    Declare what a row may hold first (``declare_metric``, ``declare_device``,
    ``declare_setting``, ``declare_hardware_metric``); then ``append`` one architecture at a
    time. Every ``flush_every`` appended rows (default 1: rows are expensive to measure) the
    whole file is rewritten atomically. Use as a context manager to flush on exit.
    """

    def __init__(self, path: str | os.PathLike, space: str, attrs: Mapping[str, Any] | None = None,
                 flush_every: int = 1):
        self.path = Path(path)
        get_space(space)
        if self.path.exists():
            self._c = Table(self.path)._content()
            if self._c.space != space:
                raise TableError(f"table {self.path}: holds space {self._c.space!r}, cannot append space {space!r}")
        else:
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            from benchmark import __version__

            self._c = _Content(space=space, attrs={"created": now, "package_version": __version__})
        for k, v in (attrs or {}).items():
            self._c.attrs[k] = v
        self._index = {a: i for i, a in enumerate(self._c.ids)}
        self.flush_every = int(flush_every)
        self._pending = 0

    # -- declarations (idempotent; a conflicting redeclaration is an error)
    def _declare(self, store: dict, key, meta: dict, what: str) -> None:
        if key in store and store[key] != meta:
            raise TableError(f"table {self.path}: {what} {key!r} already declared as {store[key]}, not {meta}")
        store[key] = meta

    def declare_metric(self, name: str, unit: str, source: str, description: str = "") -> None:
        _check_name("metric name", name)
        if source not in SOURCES:
            raise _fail(f"source of metric {name!r}", source, list(SOURCES))
        self._declare(self._c.metric_meta, name, {"unit": unit, "source": source, "description": description}, "metric")
        self._c.metrics.setdefault(name, [np.nan] * self._c.n())

    def declare_device(self, device: str, source: str, provenance: Mapping[str, Any]) -> None:
        _check_name("device", device)
        if source not in ("measured", "modeled"):
            raise _fail(f"source of device {device!r}", source, ["measured", "modeled"])
        prov = json.loads(json.dumps(dict(provenance), sort_keys=True, default=str))
        self._declare(self._c.device_meta, device, {"source": source, "provenance": prov}, "device")

    def declare_setting(self, device: str, setting: Setting | str, **attrs: Any) -> str:
        s = Setting.parse(setting)
        if device not in self._c.device_meta:
            raise _fail("device", device, f"a declared device {sorted(self._c.device_meta)}")
        meta = {**dataclasses.asdict(s), **attrs}
        self._declare(self._c.setting_meta, (device, s.name), meta, "setting")
        self._c.measured_at.setdefault((device, s.name), [np.nan] * self._c.n())
        return s.name

    def declare_hardware_metric(self, device: str, setting: Setting | str, metric: str, unit: str, repeats: int,
                                missing_reason: str | None = None) -> None:
        s = Setting.parse(setting).name
        _check_name("hardware metric", metric)
        if (device, s) not in self._c.setting_meta:
            raise _fail("setting", f"{device}/{s}", f"a declared setting {sorted(self._c.setting_meta)}")
        if not isinstance(repeats, (int, np.integer)) or repeats < 1:
            raise _fail("repeats", repeats, "an integer >= 1")
        meta = {"unit": unit, "repeats": int(repeats), "missing_reason": missing_reason}
        self._declare(self._c.hw_meta, (device, s, metric), meta, "hardware metric")
        self._c.hardware.setdefault((device, s, metric), [np.full(int(repeats), np.nan)] * self._c.n())

    # -- rows
    def __contains__(self, arch) -> bool:
        return _arch_id(self._c.space, arch) in self._index

    def ids(self) -> list[str]:
        return list(self._c.ids)

    def append(self, arch, metrics: Mapping[str, float] | None = None,
               hardware: Mapping[tuple[str, str, str], Sequence[float]] | None = None,
               measured_at: Mapping[tuple[str, str], float] | None = None) -> bool:
        """Append one row; returns False (and writes nothing) if the architecture is already in
        the table. ``hardware`` maps (device, setting name, metric) to up to R repeats."""
        sp = get_space(self._c.space)
        a = sp.validate(arch)
        if a.id in self._index:
            return False
        metrics, hardware, measured_at = dict(metrics or {}), dict(hardware or {}), dict(measured_at or {})
        for name in metrics:
            if name not in self._c.metric_meta:
                raise _fail("metric", name, f"a declared metric {sorted(self._c.metric_meta)}")
        rows = {}
        for key, values in hardware.items():
            key = (key[0], Setting.parse(key[1]).name, key[2])
            if key not in self._c.hw_meta:
                raise _fail("hardware key", key, f"a declared (device, setting, metric) {sorted(self._c.hw_meta)}")
            R = self._c.hw_meta[key]["repeats"]
            v = np.asarray(values, dtype=np.float64).ravel()
            if v.size > R:
                raise _fail(f"repeats of {key}", v.size, f"at most {R}")
            row = np.full(R, np.nan)
            row[: v.size] = v
            rows[key] = row
        for key in measured_at:
            if (key[0], Setting.parse(key[1]).name) not in self._c.setting_meta:
                raise _fail("measured_at key", key, f"a declared setting {sorted(self._c.setting_meta)}")
        # validated: now mutate
        c = self._c
        self._index[a.id] = c.n()
        c.ids.append(a.id)
        c.encodings.append(a.encoding())
        for name in c.metric_meta:
            c.metrics[name].append(float(metrics.get(name, np.nan)))
        for key, meta in c.hw_meta.items():
            c.hardware[key].append(rows.get(key, np.full(meta["repeats"], np.nan)))
        for key in c.setting_meta:
            t = next((v for k, v in measured_at.items() if (k[0], Setting.parse(k[1]).name) == key), np.nan)
            c.measured_at[key].append(float(t))
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        return True

    def log(self, name: str, record: Mapping[str, Any]) -> None:
        """Append one record (scalars) to the free log ``name`` (e.g. drift re-timings)."""
        _check_name("log name", name)
        cols = self._c.logs.setdefault(name, {})
        if cols and set(cols) != set(record):
            raise _fail(f"columns of log {name!r}", sorted(record), sorted(cols))
        for k, v in record.items():
            cols.setdefault(_check_name("log column", k), []).append(v)

    def flush(self) -> None:
        _write(self._c, self.path)
        self._pending = 0

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _arch_id(space: str, arch) -> str:
    return arch if isinstance(arch, str) else get_space(space).validate(arch).id


# ---------------------------------------------------------------------------- reading
class Table:
    """Read-only view of a table file; columns load on demand and are cached."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._cache: dict = {}
        self._index: dict[str, int] | None = None
        if not self.path.exists():
            raise TableError(f"table {self.path}: no such file")
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
                self._check(f)
                self._structure = self._read_structure(f)
        except TableError:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise TableError(f"table {self.path}: not a readable HDF5 table ({e})") from None

    def _check(self, f: h5py.File) -> None:
        where = f"table {self.path}"
        if self.attrs.get("format") != FORMAT:
            raise TableError(f"{where}: not an hwlm-bench table (root attribute format={self.attrs.get('format')!r}, "
                             f"expected {FORMAT!r})")
        v = self.attrs.get("schema_version")
        if not isinstance(v, (int, np.integer)):
            raise TableError(f"{where}: schema_version {v!r} is not an integer")
        if v > SCHEMA_VERSION:
            raise TableError(f"{where}: schema version {v} is newer than this package supports ({SCHEMA_VERSION}); "
                             "upgrade hwlm-bench")
        if v < 1:
            raise TableError(f"{where}: schema version {v}; allowed: 1..{SCHEMA_VERSION}")
        try:
            self.space = get_space(self.attrs.get("space"))
        except ValueError as e:
            raise TableError(f"{where}: {e}") from None
        for key in ("archs/encoding", "archs/id"):
            if key not in f:
                raise TableError(f"{where}: dataset /{key} is missing")
        n = f["archs/id"].shape[0]
        if f["archs/encoding"].shape != (n, self.space.encoding_length):
            raise TableError(f"{where}: /archs/encoding has shape {f['archs/encoding'].shape}, "
                             f"expected ({n}, {self.space.encoding_length})")
        for name, d in f.get("metrics", {}).items():
            if d.shape != (n,):
                raise TableError(f"{where}: /metrics/{name} has shape {d.shape}, expected ({n},)")
        for dev, g in f.get("hardware", {}).items():
            for st, sg in g.items():
                for m, d in sg.items():
                    if d.shape[0] != n:
                        raise TableError(f"{where}: /hardware/{dev}/{st}/{m} has {d.shape[0]} rows, expected {n}")
        self.n = n

    @staticmethod
    def _read_structure(f: h5py.File) -> dict:
        def attrs(obj):
            return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in obj.attrs.items()}

        metrics = {name: attrs(d) for name, d in f.get("metrics", {}).items()}
        devices, settings, hw = {}, {}, {}
        for dev, g in f.get("hardware", {}).items():
            devices[dev] = {"source": g.attrs["source"], "provenance": json.loads(g.attrs["provenance"])}
            for st, sg in g.items():
                settings[(dev, st)] = attrs(sg)
                for m, d in sg.items():
                    if m != "measured_at":
                        hw[(dev, st, m)] = {**attrs(d), "repeats": d.shape[1]}
        logs = {name: list(g.keys()) for name, g in f.get("log", {}).items()}
        return {"metrics": metrics, "devices": devices, "settings": settings, "hardware": hw, "logs": logs}

    def _load(self, key: str) -> np.ndarray:
        if key not in self._cache:
            with h5py.File(self.path, "r") as f:
                d = f[key]
                arr = d.asstr()[()] if d.dtype.kind == "O" else d[()]
            self._cache[key] = np.asarray(arr)
        return self._cache[key]

    def __len__(self) -> int:
        return self.n

    @property
    def ids(self) -> np.ndarray:
        return self._load("archs/id")

    @property
    def encodings(self) -> np.ndarray:
        return self._load("archs/encoding")

    def row(self, arch) -> int:
        """Row index of an architecture (id, Architecture, encoding or dict); O(1) after the first call."""
        if self._index is None:
            self._index = {a: i for i, a in enumerate(self.ids.tolist())}
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
        return [Architecture.from_id(a) for a in self.ids.tolist()]

    def metrics(self) -> dict[str, dict]:
        return dict(self._structure["metrics"])

    def metric(self, name: str) -> np.ndarray:
        if name not in self._structure["metrics"]:
            raise _fail("metric", name, sorted(self._structure["metrics"]))
        return self._load(f"metrics/{name}")

    def devices(self) -> dict[str, dict]:
        return dict(self._structure["devices"])

    def provenance(self, device: str) -> dict:
        self._check_device(device)
        return dict(self._structure["devices"][device]["provenance"])

    def settings(self, device: str) -> list[str]:
        self._check_device(device)
        return sorted(st for dev, st in self._structure["settings"] if dev == device)

    def setting_attrs(self, device: str, setting: Setting | str) -> dict:
        st = Setting.parse(setting).name
        if (device, st) not in self._structure["settings"]:
            raise _fail("setting", st, self.settings(device))
        return dict(self._structure["settings"][(device, st)])

    def hardware_metrics(self, device: str, setting: Setting | str) -> dict[str, dict]:
        st = Setting.parse(setting).name
        self.setting_attrs(device, st)
        return {m: meta for (d, s, m), meta in self._structure["hardware"].items() if d == device and s == st}

    def hardware(self, device: str, setting: Setting | str, metric: str) -> np.ndarray:
        """The (N, R) repeats of ``metric`` at ``device``/``setting``; NaN = not measured."""
        st = Setting.parse(setting).name
        avail = self.hardware_metrics(device, st)
        if metric not in avail:
            raise _fail(f"hardware metric at {device}/{st}", metric, sorted(avail))
        return self._load(f"hardware/{device}/{st}/{metric}")

    def measured_at(self, device: str, setting: Setting | str) -> np.ndarray:
        st = Setting.parse(setting).name
        self.setting_attrs(device, st)
        return self._load(f"hardware/{device}/{st}/measured_at")

    def logs(self) -> list[str]:
        return sorted(self._structure["logs"])

    def log(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._structure["logs"]:
            raise _fail("log", name, self.logs())
        return {c: self._load(f"log/{name}/{c}") for c in self._structure["logs"][name]}

    def _check_device(self, device: str) -> None:
        if device not in self._structure["devices"]:
            raise _fail("device", device, sorted(self._structure["devices"]))

    def sha256(self) -> str:
        """The file's sha256: the table's identity (surrogates record what they were fitted on)."""
        from benchmark.release import sha256_file  # release imports this module

        return sha256_file(self.path)

    def _content(self) -> _Content:
        s = self._structure
        c = _Content(space=self.space.name,
                     attrs={k: v for k, v in self.attrs.items() if k not in ("format", "schema_version", "space")})
        c.ids = self.ids.tolist()
        c.encodings = list(self.encodings)
        c.metric_meta = {k: dict(v) for k, v in s["metrics"].items()}
        c.metrics = {k: self.metric(k).tolist() for k in s["metrics"]}
        c.device_meta = {k: dict(v) for k, v in s["devices"].items()}
        c.setting_meta = {k: dict(v) for k, v in s["settings"].items()}
        c.hw_meta = {k: {"unit": v.get("unit"), "repeats": int(v["repeats"]), "missing_reason": v.get("missing_reason")}
                     for k, v in s["hardware"].items()}
        c.hardware = {k: list(self.hardware(*k)) for k in s["hardware"]}
        c.measured_at = {k: self.measured_at(*k).tolist() for k in s["settings"]}
        c.logs = {name: {col: v.tolist() for col, v in self.log(name).items()} for name in s["logs"]}
        return c


# ---------------------------------------------------------------------------- merging
def merge_tables(inputs: Iterable[str | os.PathLike], output: str | os.PathLike) -> Path:
    """Merge shard tables into ``output`` (written atomically).

    Rows are de-duplicated by architecture id: the first shard (in the given order) that holds
    an architecture wins. Shards must agree on space, schema version, metric declarations,
    device source and host provenance, setting attributes and hardware-metric declarations;
    a disagreement is an error naming both files and what differs.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise _fail("inputs", [], "at least one shard")
    tables = [Table(p) for p in paths]
    first, base = tables[0], tables[0]._content()
    index = {a: i for i, a in enumerate(base.ids)}
    for t in tables[1:]:
        c = t._content()
        where = f"{first.path} and {t.path}"
        if c.space != base.space:
            raise TableError(f"cannot merge {where}: spaces {base.space!r} and {c.space!r} differ")
        if t.attrs["schema_version"] != first.attrs["schema_version"]:
            raise TableError(f"cannot merge {where}: schema versions differ")
        for what, a, b in (("metric", base.metric_meta, c.metric_meta), ("device", base.device_meta, c.device_meta),
                           ("setting", base.setting_meta, c.setting_meta), ("hardware metric", base.hw_meta, c.hw_meta)):
            for key in set(a) & set(b):
                if a[key] != b[key]:
                    raise TableError(f"cannot merge {where}: {what} {key!r} differs: {a[key]} vs {b[key]}")
        # declarations present in only one side: extend the other with NaN columns
        for name, meta in c.metric_meta.items():
            if name not in base.metric_meta:
                base.metric_meta[name], base.metrics[name] = meta, [np.nan] * base.n()
        base.device_meta.update({k: v for k, v in c.device_meta.items() if k not in base.device_meta})
        for key, meta in c.setting_meta.items():
            if key not in base.setting_meta:
                base.setting_meta[key], base.measured_at[key] = meta, [np.nan] * base.n()
        for key, meta in c.hw_meta.items():
            if key not in base.hw_meta:
                base.hw_meta[key], base.hardware[key] = meta, [np.full(meta["repeats"], np.nan)] * base.n()
        for i, aid in enumerate(c.ids):
            if aid in index:
                continue
            index[aid] = base.n()
            base.ids.append(aid)
            base.encodings.append(c.encodings[i])
            for name in base.metric_meta:
                base.metrics[name].append(c.metrics[name][i] if name in c.metrics else np.nan)
            for key, meta in base.hw_meta.items():
                base.hardware[key].append(c.hardware[key][i] if key in c.hardware else np.full(meta["repeats"], np.nan))
            for key in base.setting_meta:
                base.measured_at[key].append(c.measured_at[key][i] if key in c.measured_at else np.nan)
        for name, cols in c.logs.items():
            mine = base.logs.setdefault(name, {k: [] for k in cols})
            if set(mine) != set(cols):
                raise TableError(f"cannot merge {where}: log {name!r} columns differ")
            for k, v in cols.items():
                mine[k].extend(v)
    base.attrs["merged_from"] = json.dumps([str(p) for p in paths])
    _write(base, Path(output))
    return Path(output)
