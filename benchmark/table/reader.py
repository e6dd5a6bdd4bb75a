"""Reading a table: :class:`Table`, validated, read-only, lazy."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from benchmark.files import sha256_file
from benchmark.settings import Setting
from benchmark.spaces import Architecture, ArchitectureError, canonical_id, get_space
from benchmark.table.schema import (
    DEVICE_SOURCES,
    FORMAT,
    MEASURED_AT,
    SCHEMA_VERSION,
    SETTING_FIELDS,
    SOURCES,
    TableError,
    architecture_id,
    parse_setting,
    plain_value,
    setting_name,
)
from benchmark.table.storage import TableContent


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
                self.attrs: dict[str, Any] = {k: plain_value(v) for k, v in f.attrs.items()}
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

    # ------------------------------------------------------------------ structure, saved and restored
    _KEYED = ("settings", "hardware")  # structure parts keyed by tuples

    def state(self) -> dict | None:
        """What opening read and validated (root attributes, row count, structure) as JSON-able
        data, for :meth:`from_state`; None when some attribute does not survive JSON unchanged."""
        st = self._structure
        state = {"attrs": self.attrs, "n": self.n,
                 "structure": {k: ([[list(key), v] for key, v in st[k].items()] if k in self._KEYED else st[k])
                               for k in st}}
        try:
            same = json.loads(json.dumps(state, allow_nan=False)) == state
        except (TypeError, ValueError):
            same = False
        return state if same else None

    @classmethod
    def from_state(cls, path: str | os.PathLike, state: dict, identity: tuple) -> "Table":
        """The table at ``path`` from a :meth:`state` of the same bytes, without reading its structure
        again. ``identity`` (st_dev, st_ino, st_size, st_mtime_ns) is the file the state belongs to:
        a column load from another file is refused, as after a rewrite."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self._cache, self._index, self._sha256 = {}, None, None
        self._identity = tuple(identity)
        self.attrs, self.n = dict(state["attrs"]), int(state["n"])
        self.space = get_space(self.attrs["space"])
        self._structure = {k: ({tuple(key): v for key, v in part} if k in cls._KEYED else part)
                           for k, part in state["structure"].items()}
        return self

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

    def _read_structure(self, f: h5py.File) -> dict:  # one walk of the file's groups, validating as it goes: long, linear
        where = f"table {self.path}"

        def attrs(obj) -> dict:
            return {k: plain_value(v) for k, v in obj.attrs.items()}

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
                    s = parse_setting(st)
                except TableError as e:
                    raise TableError(f"{where}: /hardware/{dev}/{st}: {e}") from None
                if not isinstance(sg, h5py.Group):
                    raise TableError(f"{where}: /hardware/{dev}/{st} is not a group")
                sattrs = attrs(sg)
                if {k: sattrs.get(k) for k in SETTING_FIELDS} != s.attrs():
                    raise TableError(f"{where}: /hardware/{dev}/{st} attributes "
                                     f"{ {k: sattrs.get(k) for k in SETTING_FIELDS} } disagree with its name")
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
        """(N,) canonical architecture ids (object array of str), computed from the encodings.

        Each stored id must name the architecture of its row's encoding: spelled exactly so
        (schema 2), or in either id form (schema 1 stores the older concatenated form; this is
        how such a table is upgraded on read, without rewriting it)."""
        if "ids" not in self._cache:
            from benchmark import costs

            enc, sp = self.encodings, self.space
            if not costs.all_valid(sp, enc):
                for i, e in enumerate(enc):
                    try:
                        sp.decode(e)
                    except ArchitectureError as err:
                        raise TableError(f"table {self.path}: /archs/encoding row {i}: {err}") from None
            ids = sp.ids_of_encodings(enc)
            stored = self._load("archs/id")
            for i in np.flatnonzero(stored != ids):
                try:
                    same = self.attrs["schema_version"] < 2 and canonical_id(stored[i], sp.name) == ids[i]
                except ArchitectureError:
                    same = False
                if not same:
                    raise TableError(f"table {self.path}: /archs/id row {i} is {stored[i]!r}, but its encoding "
                                     f"is {ids[i]!r} (schema {self.attrs['schema_version']})")
            ids.flags.writeable = False
            self._cache["ids"] = ids
        return self._cache["ids"]

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
        aid = architecture_id(self.space.name, arch)
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

    def check_rows(self) -> None:
        """Refuse duplicated ids or encodings and ids that disagree with their encodings (a
        duplicated or swapped row would answer one architecture with another's values).
        Agreement is checked by :attr:`ids`; uniqueness here, vectorised."""
        where = f"table {self.path}"
        ids, enc = self.ids, np.ascontiguousarray(self.encodings)
        for name, values in (("archs/id", ids), ("archs/encoding", enc.view(np.dtype((np.void, enc.shape[1]
                                                                                        * enc.itemsize))).ravel())):
            _, first, counts = np.unique(values, return_index=True, return_counts=True)
            if (counts > 1).any():
                i = int(first[np.argmax(counts > 1)])
                raise TableError(f"{where}: /{name}: row {i} ({ids[i]}) appears {int(counts.max())} times; "
                                 "allowed: one row per architecture")

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
        st = setting_name(setting)
        if (device, st) not in self._structure["settings"]:
            raise TableError.invalid(f"setting of device {device!r} in table {self.path}", st, self.settings(device))
        return dict(self._structure["settings"][(device, st)])

    def hardware_metrics(self, device: str, setting: Setting | str) -> dict[str, dict]:
        """{metric: {unit, repeats[, missing_reason]}} at ``device``/``setting``."""
        st = setting_name(setting)
        self.setting_attrs(device, st)
        return {m: dict(meta) for (d, s, m), meta in self._structure["hardware"].items() if d == device and s == st}

    def hardware(self, device: str, setting: Setting | str, metric: str) -> np.ndarray:
        """The (N, R) repeats of ``metric`` at ``device``/``setting``; NaN = not measured."""
        st = setting_name(setting)
        avail = self.hardware_metrics(device, st)
        if metric not in avail:
            raise TableError.invalid(f"hardware metric at {device}/{st} in table {self.path}", metric, sorted(avail))
        return self._load(f"hardware/{device}/{st}/{metric}")

    def measured_at(self, device: str, setting: Setting | str) -> np.ndarray:
        """(N,) unix time of each row's measurement at ``device``/``setting``; NaN = unknown."""
        st = setting_name(setting)
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

    def _content(self) -> TableContent:
        s = self._structure
        c = TableContent(space=self.space.name,
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


def read_content(table: "Table | str | os.PathLike") -> TableContent:
    """Everything a table holds, in memory (what writers resume from and merges combine)."""
    return (table if isinstance(table, Table) else Table(table))._content()
