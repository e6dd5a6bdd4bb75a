"""The query API: ``Benchmark`` serves table values and surrogate predictions with units and sources.

```python
from benchmark import Benchmark
b = Benchmark("t")                                   # the embedded release (benchmark.paths.data_dir())
r = b.query(arch, device="cpu-epyc-2c")              # QueryResult: r["latency_ms"], r.units, r.sources, r.intervals
df = b.query_batch(encodings, metrics=["perplexity", "latency_ms"], device="cpu-epyc-2c")
```

A release directory holds ``table_<space>.h5`` and/or ``surrogates/<space>/`` (see
:mod:`surrogates.fit`). Opening reads the table's structure and the surrogate index only;
columns load on first use and are cached, XGBoost boosters load on first use and are cached.

Modes: ``"auto"`` (default) returns the table's value when the architecture was profiled
(the median of the stored repeats for hardware metrics) and the surrogate's prediction (with
its 90 % interval: the quantile model's 5-95 % spread, centred on the point prediction)
otherwise; ``"table"`` refuses architectures or cells the table lacks;
``"surrogate"`` always predicts. Exact metrics (``params``, ``params_no_embedding``,
``flops``) are always computed exactly with :mod:`benchmark.costs`.

Sources: every value carries one of ``measured``, ``modeled`` (a modeled device's latency or
energy: the table's value for a profiled architecture, otherwise the device's roofline model
evaluated directly — see below), ``surrogate`` (a prediction; ``target_sources`` says whether the
model was trained on measured or modeled data), ``exact``, or ``missing`` (not measured for a
stated reason, e.g. no energy counter on the device; the value is NaN and the reason is in
``missing``).

Modeled devices: their ``latency_ms`` / ``energy_mj`` are a deterministic function of the
architecture (:mod:`benchmark.profiling.roofline`), so for architectures the table lacks — and in
``mode="surrogate"`` for all — the API evaluates that model with the parameters and spec sheet
stored in the release (the device's provenance; :class:`~benchmark.profiling.roofline.EncodedRoofline`,
vectorised over encodings) instead of a surrogate: source ``modeled``, interval ``None``, never
noised. It takes precedence over surrogates of modeled devices that older releases still hold.

Noise: the default is deterministic (medians / point predictions). ``noise=True`` draws, with
``numpy.random.default_rng(seed)``, one of the stored repeats (table) or a value from the
predicted quantile distribution (surrogate: piecewise-linear quantile function through the
5/50/95 % predictions centred on the point prediction, in the model's transformed space, tails
extended linearly). Metrics
stored with one value (perplexity, memory, modeled devices) and exact metrics are never noised.

Errors: every bad input raises :class:`QueryError` (a ``ValueError``) naming the field, the
value and what is available — never a silent NaN or another device's value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.spaces import Architecture, ArchitectureError, SearchSpace, get_space
from surrogates.features import feature_names, features

__all__ = ["Benchmark", "QueryResult", "QueryError", "HWGPTBenchCompat", "EXACT_METRICS", "SOURCES"]

EXACT_METRICS = ("params", "params_no_embedding", "flops")
SOURCES = ("measured", "modeled", "surrogate", "exact", "missing")
MODES = ("auto", "table", "surrogate")
_DEFAULT_UNITS = {"perplexity": "1", "token_accuracy": "1", "params": "1", "params_no_embedding": "1",
                  "flops": "FLOPs", "latency_ms": "ms", "energy_mj": "mJ", "memory_mb": "MB"}
_MAXIMISED = ("token_accuracy",)


class QueryError(ValueError):
    """Invalid query: names the field, the value and what is available."""


_ROOFLINE_OUTPUT = {"latency_ms": 0, "energy_mj": 1}  # EncodedRoofline.evaluate's outputs
_ONE_ROW = np.ones(1, bool)
_ONE_ROW.flags.writeable = False


def _fail(field_: str, value: Any, allowed: Any) -> QueryError:
    return QueryError(f"invalid {field_}: {value!r}; allowed: {allowed}")


def _setting_key(name: str) -> tuple:
    from benchmark.table import Setting

    s = Setting.parse(name)
    return (s.mode != "prefill", s.batch, s.seq_len, s.dtype)


# ---------------------------------------------------------------------------- results
@dataclass(eq=False)  # Mapping's equality: same metrics and values
class QueryResult(Mapping):
    """Values of one architecture: a mapping metric -> float, plus units, sources and intervals."""

    arch: str
    device: str | None
    setting: str | None
    mode: str
    value: dict[str, float]  # metric -> value (also r[metric]; r.items(), r.keys(), ... as a Mapping)
    units: dict[str, str]
    sources: dict[str, str]
    target_sources: dict[str, str] = field(default_factory=dict)  # surrogate metrics: trained on measured/modeled
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # 5-95 % (repeats or
    # prediction); None: a deterministic model's value (a modeled device's roofline), no interval by design
    repeats: dict[str, np.ndarray] = field(default_factory=dict)  # stored repeats (repeats=True)
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    in_table: bool = False

    def __getitem__(self, metric: str) -> float:
        try:
            return self.value[metric]
        except KeyError:
            raise KeyError(f"metric {metric!r} was not queried; queried: {list(self.value)}") from None

    def __iter__(self):
        return iter(self.value)

    def __len__(self) -> int:
        return len(self.value)

    def as_dict(self) -> dict:
        return {m: {"value": v, "unit": self.units[m], "source": self.sources[m],
                    **({"interval": self.intervals[m]} if m in self.intervals else {}),
                    **({"target_source": self.target_sources[m]} if m in self.target_sources else {}),
                    **({"missing_reason": self.missing[m]} if m in self.missing else {})}
                for m, v in self.value.items()}

    def __repr__(self) -> str:
        body = ", ".join(f"{m}={v:.6g} {self.units[m]} ({self.sources[m]})" for m, v in self.value.items())
        return f"QueryResult({self.arch}, device={self.device}, setting={self.setting}: {body})"


@dataclass
class _Column:
    """One table-backed quantity: medians (N,), repeats (N, R) or None, 5/95 % of repeats."""

    source: str
    unit: str
    median: np.ndarray
    repeats: np.ndarray | None
    lo: np.ndarray | None
    hi: np.ndarray | None
    missing_reason: str | None  # set when the whole column is NaN


@dataclass(frozen=True)
class _Spec:
    metric: str
    kind: str  # "exact", "value" (table and/or surrogate), "missing"
    device: str | None
    setting: str | None
    unit: str
    reason: str | None = None
    roofline: bool = False  # a modeled device's latency/energy: answered by the roofline model (EncodedRoofline)


# ---------------------------------------------------------------------------- benchmark
class Benchmark:
    """Query a release of one search space (see the module docstring)."""

    _lean_path = True  # query_batch's lean path for NAS loops (tests switch it off to compare with the general path)

    def __init__(self, space: str | SearchSpace = "t", path: str | Path | None = None, revision: str | None = None,
                 repo_id: str | None = None):
        """``path``: a release directory (default: the embedded release, ``data/``). ``revision``:
        a Hub release instead (e.g. ``"v1"``), downloaded once with :func:`benchmark.hub.download`
        (sha256-verified, cached, offline afterwards) from ``repo_id`` (default: ``HWLM_HUB_REPO``
        or the project's repository)."""
        from benchmark.paths import data_dir

        try:
            self.space: SearchSpace = get_space(space)
        except ArchitectureError as e:
            raise QueryError(str(e)) from None
        if revision is not None and path is not None:
            raise QueryError(f"invalid arguments: path={str(path)!r} and revision={revision!r}; allowed: one of "
                             f"them (a local release directory, or a Hub release to download)")
        if revision is not None:
            from benchmark.hub import download

            path = download(self.space.name, revision, repo_id=repo_id)
        self.path = Path(path) if path is not None else data_dir()
        name = self.space.name
        tpath = self.path / f"table_{name}.h5"
        self.table = None
        if tpath.exists():
            from benchmark.table import Table

            self.table = Table(tpath)
            if self.table.space.name != name:
                raise QueryError(f"table {tpath}: holds space {self.table.space.name!r}, not {name!r}")
        from surrogates.fit import read_index, surrogate_dir

        self.surrogate_path = surrogate_dir(self.path, name)
        self._index = read_index(self.surrogate_path) if (self.surrogate_path / "index.json").exists() else None
        if self.table is None and self._index is None:
            raise QueryError(f"invalid path: {str(self.path)!r}; allowed: a release directory holding "
                             f"table_{name}.h5 and/or surrogates/{name}/index.json (neither is there)")
        self._models = {}  # (metric, device, setting) -> stem
        self._missing = {}  # (metric, device, setting) -> reason
        if self._index is not None:
            for m in self._index["models"]:
                self._models[(m["metric"], m.get("device"), m.get("setting"))] = m
            for m in self._index["missing"]:
                self._missing[(m["metric"], m.get("device"), m.get("setting"))] = m
        self._surrogates: dict[str, Any] = {}
        self._columns: dict[tuple, _Column] = {}
        self._exact_cache: dict[tuple, np.ndarray] = {}
        self._plans: dict[tuple, tuple[_Spec, ...]] = {}
        self._row: dict[str, int] = {}
        self._hash_keys = None
        self._dt_cache: dict[str, int] = {}
        self._id_parser = None
        self._fused: dict = {}
        self._lean_plans: dict = {}
        self._rooflines: dict = {}  # (device, setting) -> EncodedRoofline or None
        self._n_base_features = len(feature_names(self.space))
        if self.table is not None:
            self._row = {a: i for i, a in enumerate(self.table.ids.tolist())}
        self._build_vocabulary()

    # ------------------------------------------------------------------ vocabulary
    def _build_vocabulary(self) -> None:
        devs: dict[str, dict] = {}
        hw: dict[tuple, dict] = {}  # (device, setting, metric) -> {unit, repeats, missing_reason}
        t = self.table
        if t is not None:
            for d, meta in t.devices().items():
                devs[d] = {"source": meta["source"], "kind": meta.get("kind") or meta["provenance"].get("kind"),
                           "settings": sorted(t.settings(d), key=_setting_key)}
                for st in devs[d]["settings"]:
                    for m, hm in t.hardware_metrics(d, st).items():
                        hw[(d, st, m)] = hm
        if self._index is not None:
            for d, meta in self._index["devices"].items():
                if d not in devs:
                    devs[d] = {"source": meta["source"], "kind": meta.get("kind"),
                               "settings": sorted(meta["settings"], key=_setting_key)}
            for (m, d, st), e in list(self._models.items()) + list(self._missing.items()):
                if d is not None and (d, st, m) not in hw:
                    hw[(d, st, m)] = {"unit": e.get("unit", _DEFAULT_UNITS.get(m, "")), "repeats": None}
            for d, e in (self._index.get("roofline") or {}).items():  # modeled devices: no surrogate, the model
                for st, units in e.get("metrics", {}).items():
                    for m, unit in units.items():
                        hw.setdefault((d, st, m), {"unit": unit, "repeats": 1})
        self._devices, self._hw = devs, hw
        metrics: dict[str, dict] = {}
        table_metrics = t.metrics() if t is not None else {}
        flops_settings = []
        for name, meta in table_metrics.items():
            if name.startswith("flops_"):
                flops_settings.append(name[len("flops_"):])
            elif name not in EXACT_METRICS:
                metrics[name] = {"unit": meta.get("unit", "1"), "source": meta.get("source"),
                                 "needs_device": False, "needs_setting": False}
        if self._index is not None:
            for name, meta in self._index["metrics"].items():
                if name.startswith("flops_"):
                    flops_settings.append(name[len("flops_"):])
                elif name not in metrics and name not in EXACT_METRICS:
                    metrics[name] = {"unit": meta.get("unit", "1"), "source": meta.get("source"),
                                     "needs_device": False, "needs_setting": False}
        for name in ("params", "params_no_embedding"):
            metrics[name] = {"unit": "1", "source": "exact", "needs_device": False, "needs_setting": False}
        metrics["flops"] = {"unit": "FLOPs", "source": "exact", "needs_device": False, "needs_setting": True}
        for (d, st, m), hm in hw.items():
            e = metrics.setdefault(m, {"unit": hm.get("unit", _DEFAULT_UNITS.get(m, "")), "source": set(),
                                       "needs_device": True, "needs_setting": True})
            e["source"].add(devs[d]["source"])
        for e in metrics.values():
            if isinstance(e["source"], set):
                e["source"] = "|".join(sorted(e["source"]))
        self._metrics = metrics
        all_settings = set(flops_settings) | {s for d in devs.values() for s in d["settings"]}
        self._flops_settings = sorted(all_settings, key=_setting_key)

    def devices(self) -> dict[str, dict]:
        """{device: {"source": "measured"|"modeled", "kind": "cpu"|"gpu"|None, "settings": [...]}}."""
        return {d: {"source": v["source"], "kind": v["kind"], "settings": list(v["settings"])}
                for d, v in self._devices.items()}

    def metrics(self) -> dict[str, dict]:
        """{metric: {"unit", "source", "needs_device", "needs_setting"}}; a hardware metric's source
        is that of the devices that have it (``measured``, ``modeled`` or ``measured|modeled``)."""
        return {k: dict(v) for k, v in self._metrics.items()}

    def settings(self, device: str) -> list[str]:
        """The device's settings, prefill before decode, then by batch, sequence length, dtype; the
        first is the default."""
        self._check_device(device)
        return list(self._devices[device]["settings"])

    def _check_device(self, device: Any) -> None:
        if not isinstance(device, str) or device not in self._devices:
            raise _fail("device", device, sorted(self._devices))

    def __repr__(self) -> str:
        return (f"Benchmark(space={self.space.name!r}, path={str(self.path)!r}, rows={len(self._row)}, "
                f"devices={sorted(self._devices)}, surrogates={len(self._models)})")

    # ------------------------------------------------------------------ planning
    def _resolve_setting(self, device: str | None, setting: Any) -> str | None:
        if device is not None:
            self._check_device(device)
            available = self._devices[device]["settings"]
            if setting is None:
                return available[0] if available else None
            if setting not in available:
                raise _fail(f"setting of device {device!r}", setting, available)
            return setting
        if setting is None:
            return None
        from benchmark.table import Setting

        try:
            return Setting.parse(setting).name
        except ValueError as e:
            raise QueryError(f"invalid setting: {setting!r}; allowed: {self._flops_settings} or any "
                             f"canonical setting name ({e})") from None

    def _plan(self, metrics: Any, device: Any, setting: Any) -> tuple[tuple[_Spec, ...], str | None, str | None]:
        key = (tuple(metrics) if isinstance(metrics, (list, tuple)) else metrics, device, setting)
        try:
            hit = self._plans.get(key)
        except TypeError:  # unhashable input: validate below, no caching
            hit, key = None, None
        if hit is not None:
            return hit
        st = self._resolve_setting(device, setting)
        if metrics is None:
            names = [m for m, e in self._metrics.items() if not e["needs_device"] and m != "flops"]
            if st is not None or self._flops_settings:
                names.append("flops")
            if device is not None:
                names += [m for (d, s, m) in self._hw if d == device and s == st]
        elif isinstance(metrics, str):
            names = [metrics]
        elif isinstance(metrics, (list, tuple)) and all(isinstance(m, str) for m in metrics):
            names = list(metrics)
            if len(set(names)) != len(names):
                raise _fail("metrics", metrics, "distinct metric names")
        else:
            raise _fail("metrics", metrics, f"None (all), a metric name or a list of names from {sorted(self._metrics)}")
        specs = []
        for m in names:
            if m not in self._metrics:
                raise _fail("metric", m, sorted(self._metrics))
            e = self._metrics[m]
            if m == "flops":
                fs = st if st is not None else (self._flops_settings[0] if self._flops_settings else None)
                if fs is None:
                    raise _fail("setting (needed by metric 'flops')", None, "a setting name such as "
                                "'prefill-b1-s256-fp32'")
                specs.append(_Spec(m, "exact", None, fs, "FLOPs"))
            elif m in EXACT_METRICS:
                specs.append(_Spec(m, "exact", None, None, "1"))
            elif not e["needs_device"]:
                specs.append(self._value_spec(m, None, None, e["unit"]))
            else:
                if device is None:
                    raise _fail(f"device (metric {m!r} is measured per device)", None, sorted(self._devices))
                if (device, st, m) not in self._hw:
                    have = sorted(x for (d, s, x) in self._hw if d == device and s == st)
                    raise _fail(f"metric at device {device!r}, setting {st!r}", m, have)
                specs.append(self._value_spec(m, device, st, self._hw[(device, st, m)].get("unit", e["unit"])))
        plan = (tuple(specs), device, st)
        if key is not None:
            self._plans[key] = plan
        return plan

    def _value_spec(self, metric: str, device: str | None, setting: str | None, unit: str) -> _Spec:
        if device is not None and self._roofline(device, setting, metric) is not None:
            return _Spec(metric, "value", device, setting, unit, None, True)
        col = self._column(metric, device, setting)
        if col is not None:
            reason = col.missing_reason
        else:
            miss = self._missing.get((metric, device, setting))
            reason = miss["reason"] if miss is not None else None
        return _Spec(metric, "missing" if reason else "value", device, setting, unit, reason)

    # ------------------------------------------------------------------ modeled devices
    def _roofline(self, device: str, setting: str | None, metric: str | None = None):
        """The roofline model (:class:`benchmark.profiling.roofline.EncodedRoofline`, cached) that
        produced a modeled device's ``latency_ms`` / ``energy_mj`` at ``setting``, rebuilt from the
        parameters and spec sheet stored in the release (the table's device provenance, else the
        surrogate index's ``roofline`` entry) — not from the registry; None for measured devices,
        other metrics, or a modeled device whose provenance lacks them."""
        from benchmark.profiling.modeled import ROOFLINE_METRICS

        if metric is not None and metric not in ROOFLINE_METRICS:
            return None
        key = (device, setting)
        if key in self._rooflines:
            return self._rooflines[key]
        ev = None
        dev = self._devices.get(device)
        if dev is not None and dev["source"] == "modeled" and setting in dev["settings"]:
            from benchmark.profiling.modeled import roofline_from_provenance
            from benchmark.profiling.roofline import EncodedRoofline
            from surrogates.features import DEFAULT_DECODE_TOKENS

            t = self.table
            if t is not None and device in t.devices():
                prov = t.devices()[device]["provenance"]
                decode_tokens = t.setting_attrs(device, setting).get("decode_tokens", DEFAULT_DECODE_TOKENS)
            else:
                entry = ((self._index or {}).get("roofline") or {}).get(device) or {}
                prov = entry.get("provenance") or {}
                decode_tokens = (entry.get("decode_tokens") or {}).get(setting, DEFAULT_DECODE_TOKENS)
            model = roofline_from_provenance(device, dev["kind"], prov)
            if model is not None:
                spec, params, _ = model
                ev = EncodedRoofline(self.space, setting, spec, params, int(decode_tokens))
        self._rooflines[key] = ev
        return ev

    # ------------------------------------------------------------------ table columns
    def _column(self, metric: str, device: str | None, setting: str | None) -> _Column | None:
        k = (metric, device, setting)
        col = self._columns.get(k)
        if col is not None or self.table is None:
            return col
        t = self.table
        if device is None:
            if metric not in t.metrics():
                return None
            meta = t.metrics()[metric]
            med = np.asarray(t.metric(metric), np.float64)
            col = _Column(meta["source"], meta.get("unit", "1"), med, None, None, None, None)
        else:
            if device not in t.devices() or setting not in t.settings(device) \
                    or metric not in t.hardware_metrics(device, setting):
                return None
            meta = t.hardware_metrics(device, setting)[metric]
            rep = np.asarray(t.hardware(device, setting, metric), np.float64)
            from surrogates.fit import _nanmedian

            med = _nanmedian(rep)
            lo = hi = None
            if rep.shape[1] > 1:
                lo, hi = np.full(len(rep), np.nan), np.full(len(rep), np.nan)
                ok = np.isfinite(rep).any(1)
                if ok.any():
                    lo[ok], hi[ok] = np.nanpercentile(rep[ok], [5, 95], axis=1)
            col = _Column(t.devices()[device]["source"], meta.get("unit", ""), med, rep, lo, hi, None)
        if not np.isfinite(col.median).any():
            col.missing_reason = meta.get("missing_reason") or "no value in the table (not measured)"
        self._columns[k] = col
        return col

    # ------------------------------------------------------------------ architectures
    def _one(self, arch: Any) -> tuple[int, np.ndarray | None, str]:
        """(row or -1, encoding or None (table rows), id) of one architecture in any accepted form."""
        if isinstance(arch, str):
            row = self._row.get(arch, -1)
            if row >= 0:
                return row, None, arch
        try:
            a = self.space.validate(arch)
        except ArchitectureError as e:
            raise QueryError(str(e)) from None
        row = self._row.get(a.id, -1)
        return row, (None if row >= 0 else a.encoding()), a.id

    def _many(self, archs: Any) -> tuple[np.ndarray, np.ndarray]:
        """(rows (N,) int64 with -1 = not in the table, encodings (N, L) int8)."""
        L = self.space.encoding_length
        if isinstance(archs, np.ndarray) and archs.ndim == 2 and archs.dtype.kind in "iu":
            if archs.shape[1] != L:
                raise _fail("encoding width", archs.shape[1], f"{L} (encoding_length of space {self.space.name!r})")
            if len(archs) and (archs.min() < -1 or archs.max() > 127):
                from benchmark import costs

                try:
                    costs.params(archs, space=self.space)  # words the error
                except ArchitectureError as e:
                    raise QueryError(str(e)) from None
            enc = archs.astype(np.int8, copy=False)
            return self._rows_of_encodings(enc), enc
        if isinstance(archs, np.ndarray) and archs.ndim == 2:
            raise _fail("encoding dtype", str(archs.dtype), "an integer dtype (choice indices, -1 = padded layer)")
        if isinstance(archs, np.ndarray) and archs.ndim == 1 and archs.dtype.kind in "OU":
            archs = archs.tolist()
        if isinstance(archs, (str, Mapping, Architecture)) or not isinstance(archs, (Sequence, np.ndarray)):
            raise _fail("archs", type(archs).__name__, "a sequence of architectures (Architecture objects, ids, "
                                                       "HW-GPT-Bench dicts) or an (N, encoding_length) integer array")
        n = len(archs)
        rows = np.full(n, -1, np.int64)
        enc = np.empty((n, L), np.int8)
        tab = self.table.encodings if self.table is not None else None
        get = self._row.get
        for i, a in enumerate(archs):
            r = get(a, -1) if isinstance(a, str) else -1
            if r >= 0:
                rows[i] = r
                enc[i] = tab[r]
                continue
            if isinstance(a, str):
                row = self._parse_id(a)
                if row is not None:  # a valid canonical id of this space that is not in the table
                    enc[i] = row
                    continue
            try:
                v = self.space.validate(a)
            except ArchitectureError as e:
                raise QueryError(f"architecture {i} of {n}: {e}") from None
            rows[i] = get(v.id, -1)
            enc[i] = v.encoding()
        return rows, enc

    def _parse_id(self, aid: str) -> list[int] | None:
        """Encoding of a canonical id of this space without building an Architecture (fast path of
        query_batch); None when ``aid`` is not one (the caller then lets ``space.validate`` word the error).
        Every token is looked up among the canonical spellings of the choices, so anything accepted
        here is valid and canonical."""
        p = self._id_parser
        if p is None:
            sp = self.space
            tokens = lambda choices: {str(c): i for i, c in enumerate(choices)}  # noqa: E731
            p = self._id_parser = (tokens(sp.n_layer_choices), tokens(sp.embed_dim_choices),
                                   tokens(sp.mlp_ratio_choices), tokens(sp.n_head_choices),
                                   {str(b): i for i, b in enumerate(sp.bias_choices)},
                                   all(len(str(c)) == 1 for c in sp.mlp_ratio_choices + sp.n_head_choices))
        layer_t, embed_t, mlp_t, head_t, bias_t, single = p
        parts = aid.split("-")
        if len(parts) != 7 or parts[0] != "gpt" or parts[1] != self.space.name:
            return None
        li, ei, bi = layer_t.get(parts[2]), embed_t.get(parts[3]), bias_t.get(parts[6])
        if li is None or ei is None or bi is None:
            return None
        n = self.space.n_layer_choices[li]
        if single:
            mlps, heads = parts[4], parts[5]
            if len(mlps) != n or len(heads) != n:
                return None
            try:
                m = [mlp_t[c] for c in mlps]
                h = [head_t[c] for c in heads]
            except KeyError:
                return None
        else:  # multi-digit choices (s/m/l heads): greedy, the choices are prefix-free as digit strings
            m, h = _tokens(parts[4], mlp_t), _tokens(parts[5], head_t)
            if m is None or h is None or len(m) != n or len(h) != n:
                return None
        pad = [-1] * (self.space.max_layers - n)
        return [ei, li] + m + pad + h + pad + [bi]

    def _rows_of_encodings(self, enc: np.ndarray) -> np.ndarray:
        """Table rows of encodings by a 64-bit hash, verified row by row (no Python object per row)."""
        n = len(enc)
        if self.table is None or not self._row or n == 0:
            return np.full(n, -1, np.int64)
        if self._hash_keys is None:
            w = np.random.default_rng(12345).integers(1, 2**62, self.space.encoding_length, dtype=np.int64) | 1
            tab = np.asarray(self.table.encodings, np.int64)
            keys = (tab + 2) @ w  # wraps modulo 2**64
            order = np.argsort(keys, kind="stable")
            skeys = keys[order]
            self._hash_keys = (w, skeys, order, bool((skeys[1:] == skeys[:-1]).any()))
        w, skeys, order, collisions = self._hash_keys
        keys = (enc.astype(np.int64) + 2) @ w
        pos = np.minimum(np.searchsorted(skeys, keys), len(skeys) - 1)
        rows = order[pos].astype(np.int64)
        hit = skeys[pos] == keys
        tab = self.table.encodings
        hit[hit] &= (tab[rows[hit]] == enc[hit]).all(1)
        rows[~hit] = -1
        # an exact-match check above; a 64-bit key collision could only hide a row, so look those up by id
        if collisions and (~hit).any():  # pragma: no cover
            for i in np.flatnonzero(~hit):
                rows[i] = self._row.get(self.space.decode(enc[i]).id, -1)
        return rows

    # ------------------------------------------------------------------ evaluation
    def _exact(self, spec: _Spec, rows: np.ndarray, enc: np.ndarray, checked=None, X=None) -> np.ndarray:
        """``checked()``: the validated cost batch of the rows not in the table (built once per evaluation);
        ``X``: their surrogate features at ``X_setting`` if already computed (they hold the same exact values)."""
        tab = rows >= 0
        out = np.empty(len(rows), np.float64)
        if tab.any():
            k = (spec.metric, spec.setting)
            full = self._exact_cache.get(k)
            if full is None:
                full = self._exact_values(spec, np.asarray(self.table.encodings))
                self._exact_cache[k] = full
            out[tab] = full[rows[tab]]
        if not tab.all():
            if X is not None and (spec.metric != "flops" or spec.setting == X[0]):
                # features() computed exactly these with benchmark.costs: reuse them
                col = {"params": -2, "params_no_embedding": -1, "flops": 0}[spec.metric]
                out[~tab] = X[1][:, self._n_base_features + col]
            else:
                out[~tab] = self._exact_values(spec, checked() if checked is not None else enc[~tab])
        return out

    def _exact_values(self, spec: _Spec, enc: np.ndarray) -> np.ndarray:
        from benchmark import costs

        try:
            if spec.metric == "params":
                return costs.params(enc, space=self.space).astype(np.float64)
            if spec.metric == "params_no_embedding":
                return costs.params(enc, space=self.space, embeddings=False).astype(np.float64)
            from surrogates.features import exact_flops

            return exact_flops(self.space, enc, spec.setting, self._decode_tokens(spec.setting))
        except ArchitectureError as e:
            raise QueryError(str(e)) from None
        except ValueError as e:
            raise QueryError(f"invalid setting {spec.setting!r} for space {self.space.name!r}: {e}") from None

    def _decode_tokens(self, setting: str) -> int:
        dt = self._dt_cache.get(setting)
        if dt is None:
            dt = self._dt_cache[setting] = self._find_decode_tokens(setting)
        return dt

    def _find_decode_tokens(self, setting: str) -> int:
        from surrogates.features import DEFAULT_DECODE_TOKENS

        if self.table is not None:
            for d, v in self._devices.items():
                if setting in v["settings"] and d in self.table.devices():
                    return int(self.table.setting_attrs(d, setting).get("decode_tokens", DEFAULT_DECODE_TOKENS))
        for m in self._models.values():
            if m.get("setting") == setting:
                return int(m.get("decode_tokens", DEFAULT_DECODE_TOKENS))
        return DEFAULT_DECODE_TOKENS

    def surrogate(self, metric: str, device: str | None = None, setting: str | None = None):
        """The loaded :class:`surrogates.fit.Surrogate` (cached); QueryError if there is none."""
        entry = self._models.get((metric, device, setting))
        if entry is None and (metric, device, setting) in self._missing:
            raise _fail("surrogate", model_key((metric, device, setting)),
                        f"none was fitted: {self._missing[(metric, device, setting)]['reason']}")
        if entry is None:
            have = sorted(model_key(k) for k in self._models)
            raise _fail("surrogate", model_key((metric, device, setting)),
                        f"{have} (in {self.surrogate_path})" if have else f"none: {self.surrogate_path} has no "
                        f"surrogates (fit them with `hwlm fit`)")
        s = self._surrogates.get(entry["stem"])
        if s is None:
            from surrogates.fit import Surrogate

            if not self._surrogates:
                self._check_surrogate_table()

            s = Surrogate.load(self.surrogate_path, entry["stem"])
            self._surrogates[entry["stem"]] = s
        return s

    def _fused_walk(self, rows, intab, specs, mode, hw_setting, feats, checked, quantiles: bool = True) -> tuple:
        """``(mask, {(stem, role): raw output})`` for a one-row evaluation (a single query): the
        outputs of every model it consults, from one fused numpy walk over all their trees
        (``mask``: the rows they are for); ``(None, {})`` when fewer than two models are needed or
        anything is unusual (the per-metric path then does the work and raises the proper errors)."""
        if mode == "table" or len(rows) != 1:  # measured: fusing several rows' walks is no faster
            return None, {}
        todo, mask = [], None
        for sp in specs:
            if sp.kind != "value" or sp.roofline:  # the roofline model needs no trees
                continue
            col = self._column(sp.metric, sp.device, sp.setting) if self.table is not None else None
            if mode != "surrogate" and col is not None and intab[0] and math.isfinite(col.median[rows[0]]):
                continue  # a table value
            need = _ONE_ROW
            if mask is None:
                mask = need
            elif not np.array_equal(mask, need):
                continue
            if (sp.metric, sp.device, sp.setting) not in self._models:
                return None, {}
            s = self.surrogate(sp.metric, sp.device, sp.setting)
            for role in (("mean", "quantile") if s.noisy and quantiles else ("mean",)):
                e = s.tree_ensemble(role)
                if e is None:
                    return None, {}
                todo.append(((s.stem, role), e))
        if len(todo) < 2:
            return None, {}
        key = tuple(k for k, _ in todo)
        fused = self._fused.get(key)
        if fused is None:
            from surrogates.fastpredict import FusedEnsembles

            fused = self._fused[key] = FusedEnsembles([e for _, e in todo])
        fk = (hw_setting, mask.tobytes())  # the key the per-metric path uses for these features
        X = feats.get(fk)
        if X is None:
            X = feats[fk] = features(self.space, checked(mask), hw_setting,
                                     self._decode_tokens(hw_setting) if hw_setting is not None else 0)
        outs = fused.predict_one(X)
        return (None, {}) if outs is None else (mask, dict(zip(key, outs)))

    def _check_surrogate_table(self) -> None:
        """Warn (once) when the surrogates were fitted on another table than the release's."""
        fitted_on = (self._index or {}).get("table_sha256")
        if self.table is not None and fitted_on and fitted_on != self.table.sha256():
            import warnings

            warnings.warn(f"surrogates in {self.surrogate_path} were fitted on table sha256 {fitted_on[:12]}…, "
                          f"not on {self.table.path} (sha256 {self.table.sha256()[:12]}…); refit them with "
                          f"`hwlm fit --table {self.table.path} --out {self.path}`", stacklevel=4)

    def _evaluate(self, rows: np.ndarray, enc: np.ndarray, specs, mode: str, noise: bool, seed,
                  ids=None, want_repeats: bool = False, trusted: bool = False, intervals: bool = True) -> dict:
        """``trusted``: every encoding not in the table comes from a validated Architecture.
        ``intervals=False``: no 5-95 % intervals; surrogate quantile models then run only to draw
        noise (they cost as much as the mean model, and a NAS loop rarely needs them)."""
        if mode not in MODES:
            raise _fail("mode", mode, list(MODES))
        if not isinstance(noise, (bool, np.bool_)):
            raise _fail("noise", noise, "True or False")
        if not isinstance(intervals, (bool, np.bool_)):
            raise _fail("intervals", intervals, "True or False")
        want_intervals = bool(intervals)
        quantiles = want_intervals or bool(noise)
        rng = np.random.default_rng(seed) if noise else None
        n = len(rows)
        intab = rows >= 0
        values, sources, target_sources, intervals, missing, reps = {}, {}, {}, {}, {}, {}
        feats: dict = {}
        roof: dict = {}  # (device, setting, rows) -> (latency_ms, energy_mj) of the roofline model
        hw_setting = next((sp.setting for sp in specs if sp.device is not None), None)
        batches: dict = {}

        def checked(mask: np.ndarray | None = None):
            """Validated cost batch (benchmark.costs) of enc[mask] (default: the rows not in the table)."""
            mask = ~intab if mask is None else mask
            key = mask.tobytes()
            if key not in batches:
                from benchmark import costs

                if trusted:  # encodings of validated Architectures: no second validation
                    batches[key] = costs._Batch(self.space, np.ascontiguousarray(enc[mask]), False)
                else:
                    try:
                        batches[key] = costs._resolve(enc[mask], self.space)
                    except ArchitectureError as e:
                        raise QueryError(str(e)) from None
            return batches[key]

        if not trusted and not intab.all():
            checked()  # validate user-given encodings up front, whatever the metrics
        # one row (a single query): walk all the models it needs at once (same numbers, less overhead)
        pre_mask, pre = self._fused_walk(rows, intab, specs, mode, hw_setting, feats, checked, quantiles)
        # exact metrics last: for rows not in the table they reuse the surrogate features if computed
        for sp in sorted(specs, key=lambda x: x.kind == "exact"):
            m = sp.metric
            if sp.kind == "exact":
                Xf = feats.get((hw_setting, (~intab).tobytes())) if hw_setting is not None else None
                values[m] = self._exact(sp, rows, enc, checked, None if Xf is None else (hw_setting, Xf))
                sources[m] = "exact"
                continue
            if sp.kind == "missing":
                values[m], sources[m], missing[m] = np.full(n, np.nan), "missing", sp.reason
                continue
            col = self._column(m, sp.device, sp.setting) if self.table is not None else None
            use = np.zeros(n, bool)
            if mode != "surrogate" and col is not None:
                r = np.where(intab, rows, 0)
                use = intab & np.isfinite(col.median[r])
            if mode == "table" and not use.all():
                i = int(np.flatnonzero(~use)[0])
                aid = ids[i] if ids is not None else self.space.decode(enc[i]).id
                where = m if sp.device is None else f"{m} at {sp.device}/{sp.setting}"
                if self.table is None:
                    raise QueryError(f"invalid mode: 'table'; allowed: 'auto' or 'surrogate' (release "
                                     f"{self.path} has no table)")
                if rows[i] < 0:
                    raise _fail("architecture (mode='table')", aid, f"one of the {len(self._row)} profiled "
                                f"architectures of {self.table.path} (use mode='auto' or 'surrogate' to predict)")
                raise _fail(f"architecture (mode='table', metric {where})", aid,
                            "an architecture with a value in the table: this cell was not measured")
            v = np.empty(n, np.float64)
            src: Any = col.source if col is not None else "surrogate"
            lo = hi = None
            if use.any():
                ru = rows[use]
                v[use] = col.median[ru]
                if col.lo is not None and want_intervals:
                    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
                    lo[use], hi[use] = col.lo[ru], col.hi[ru]
                if noise and col.repeats is not None:
                    v[use] = _draw_repeats(col.repeats[ru], rng)
                if want_repeats and col.repeats is not None:
                    reps[m] = col.repeats[ru]
            need = ~use
            if need.any() and sp.roofline:  # a modeled device: its model, exactly (deterministic, no interval)
                rk = (sp.device, sp.setting, need.tobytes())
                if rk not in roof:
                    roof[rk] = self._roofline(sp.device, sp.setting).evaluate(checked(need)._enc)
                v[need] = roof[rk][_ROOFLINE_OUTPUT[m]]
                src = "modeled"
            elif need.any():
                s = self.surrogate(m, sp.device, sp.setting)
                # device-independent features are a prefix of any setting's: compute once per query
                st_f = s.setting if s.setting is not None else hw_setting
                fk = (st_f, need.tobytes())
                X = feats.get(fk)
                if X is None:
                    try:
                        X = feats[fk] = features(self.space, checked(need), st_f,
                                                 self._decode_tokens(st_f) if st_f is not None else 0)
                    except ArchitectureError as e:
                        raise QueryError(str(e)) from None
                if s.setting is None and st_f is not None:
                    X = X[:, :self._n_base_features]
                raw = pre if pre_mask is not None and np.array_equal(need, pre_mask) else {}
                v[need] = s.predict_features(X, raw.get((s.stem, "mean")))
                target_sources[m] = s.meta.get("target_source", "measured")
                if s.noisy and quantiles:
                    q = s.quantiles_features(X, raw.get((s.stem, "quantile")), point=v[need])
                    if want_intervals:
                        if lo is None:
                            lo, hi = np.full(n, np.nan), np.full(n, np.nan)
                        lo[need], hi[need] = q[:, 0], q[:, 2]
                    if noise:
                        v[need] = _draw_quantiles(q, s.transform, rng)
                src = "surrogate" if not use.any() else np.where(use, col.source, "surrogate")
            values[m], sources[m] = v, src
            if lo is not None:
                intervals[m] = (lo, hi)
            elif sp.roofline and want_intervals:
                intervals[m] = None  # the roofline model is deterministic: no interval, by design
        values = {sp.metric: values[sp.metric] for sp in specs}  # the plan's order
        return {"values": values, "sources": sources, "target_sources": target_sources, "intervals": intervals,
                "missing": missing, "repeats": reps, "in_table": intab}

    # ------------------------------------------------------------------ public queries
    def query(self, arch: Any, metrics: Any = None, device: str | None = None, setting: str | None = None,
              mode: str = "auto", noise: bool = False, seed: int | None = None,
              repeats: bool = False, intervals: bool = True) -> QueryResult:
        """Values of one architecture (Architecture, id, HW-GPT-Bench dict or encoding).

        ``metrics``: None (every metric available at the device/setting, plus the device-independent
        ones), a name, or a list. ``device``: needed for hardware metrics. ``setting``: when None,
        the device's first setting (``settings(device)[0]``: prefill before decode, then by batch,
        sequence length, dtype) — exactly the only one when the device has one; for ``flops``
        without a device, the first setting the release knows. ``mode``: auto | table | surrogate.
        ``noise``: draw instead of the deterministic median/prediction (seeded by ``seed``).
        ``repeats=True``: also return the stored repeats (table values) in ``result.repeats``.
        ``intervals=False``: leave ``result.intervals`` empty and skip the surrogates' quantile
        models (about half the prediction cost for noisy metrics; values are unchanged).
        """
        specs, device, st = self._plan(metrics, device, setting)
        row, enc, aid = self._one(arch)
        rows = np.array([row], np.int64)
        enc2 = (self.table.encodings[row:row + 1] if row >= 0 else enc[None, :])
        r = self._evaluate(rows, enc2, specs, mode, noise, seed, ids=[aid], want_repeats=repeats, trusted=True,
                           intervals=intervals)
        units = {sp.metric: sp.unit for sp in specs}
        return QueryResult(
            arch=aid, device=device, setting=st, mode=mode,
            value={m: float(v[0]) for m, v in r["values"].items()}, units=units,
            sources={m: (s if isinstance(s, str) else str(s[0])) for m, s in r["sources"].items()},
            target_sources=r["target_sources"],
            intervals={m: (None if iv is None else (float(iv[0][0]), float(iv[1][0])))
                       for m, iv in r["intervals"].items() if iv is None or math.isfinite(iv[0][0])},
            repeats={m: x[0][np.isfinite(x[0])] for m, x in r["repeats"].items()},
            missing=r["missing"], in_table=bool(row >= 0))

    def query_batch(self, archs: Any, metrics: Any = None, device: str | None = None, setting: str | None = None,
                    mode: str = "auto", noise: bool = False, seed: int | None = None, as_frame: bool = True,
                    intervals: bool = True):
        """Vectorised :meth:`query` over many architectures (same arguments and semantics).

        ``archs``: an ``(N, encoding_length)`` integer encoding array (fastest: no Python object per
        row), or a sequence of ids / Architectures / HW-GPT-Bench dicts. Returns a
        ``pandas.DataFrame`` with one row per input (input order) and one float column per metric;
        ``df.attrs``: ``units``, ``sources`` (column -> source, ``"mixed"`` when some rows come from
        the table and others from the surrogate; then ``row_sources`` has the per-row array),
        ``target_sources``, ``intervals`` (column -> (lo, hi) arrays, 5-95 %), ``missing``
        (column -> reason), ``in_table`` (bool array), ``device``, ``setting``, ``mode``.
        ``as_frame=False`` returns ``{column: np.ndarray}`` plus the same information under the
        keys ``"units"``, ``"source"``, ``"row_sources"``, ``"target_sources"``, ``"intervals"``,
        ``"missing"``, ``"in_table"``. ``intervals=False`` (what a NAS loop wants): no intervals,
        and the surrogates' quantile models run only when ``noise=True`` needs them.
        """
        if as_frame is False and noise is False and intervals is False and mode in ("auto", "surrogate"):
            out = self._lean_batch(archs, metrics, device, setting, mode)
            if out is not None:
                return out
        specs, device, st = self._plan(metrics, device, setting)
        rows, enc = self._many(archs)
        trusted = not isinstance(archs, np.ndarray) or archs.ndim != 2  # built from validated Architectures
        ids = None
        if mode == "table" and (rows < 0).any():
            ids = [None] * len(rows)
            i = int(np.flatnonzero(rows < 0)[0])
            try:
                ids[i] = self.space.decode(enc[i]).id
            except ArchitectureError as e:
                raise QueryError(f"architecture {i} of {len(rows)}: {e}") from None
        r = self._evaluate(rows, enc, specs, mode, noise, seed, ids=ids, trusted=trusted, intervals=intervals)
        units = {sp.metric: sp.unit for sp in specs}
        sources, row_sources = {}, {}
        for m, s in r["sources"].items():
            if isinstance(s, str):
                sources[m] = s
            else:
                sources[m], row_sources[m] = "mixed", s
        info = {"units": units, "sources": sources, "row_sources": row_sources,
                "target_sources": r["target_sources"], "intervals": r["intervals"], "missing": r["missing"],
                "in_table": r["in_table"], "device": device, "setting": st, "mode": mode}
        if not as_frame:
            out = dict(r["values"])
            out.update({"units": units, "source": sources, "row_sources": row_sources,
                        "target_sources": r["target_sources"], "intervals": r["intervals"],
                        "missing": r["missing"], "in_table": r["in_table"]})
            return out
        import pandas as pd

        df = pd.DataFrame(r["values"], columns=[sp.metric for sp in specs])
        df.attrs.update(info)
        return df

    def _lean_batch(self, archs: Any, metrics: Any, device: Any, setting: Any, mode: str) -> dict | None:
        """``query_batch(..., as_frame=False, noise=False, intervals=False)`` of what a NAS loop sends
        (an integer encoding matrix, mode auto or surrogate) at a fraction of the general path's fixed
        cost: plan, table columns and units resolved once per (metrics, device, setting, mode), the
        encodings validated with one table lookup (:func:`benchmark.costs._all_valid`), features built
        once for all rows, no per-row source arrays. Returns exactly what the general path returns
        (``tests/test_api.py`` compares them), or None where that path must do the work: rows partly in
        the table, a table cell that was not measured, a prediction without a surrogate, any invalid
        input (the general path words the error)."""
        if not (self._lean_path and isinstance(archs, np.ndarray) and archs.ndim == 2 and archs.dtype.kind in "iu"
                and archs.shape[1] == self.space.encoding_length and len(archs) and isinstance(metrics, (list, tuple))):
            return None
        try:
            key = (tuple(metrics), device, setting, mode)
            plan = self._lean_plans.get(key)
        except TypeError:  # unhashable input: the general path words the error
            return None
        if plan is None:
            specs, _, _ = self._plan(metrics, device, setting)
            hw_setting = next((sp.setting for sp in specs if sp.device is not None), None)
            cols = {sp.metric: self._column(sp.metric, sp.device, sp.setting)
                    for sp in specs if sp.kind == "value" and self.table is not None}
            plan = self._lean_plans[key] = (specs, hw_setting, cols, {sp.metric: sp.unit for sp in specs})
        specs, hw_setting, cols, units = plan
        from benchmark import costs

        enc = archs
        if enc.dtype != np.int8:
            if enc.min() < -1 or enc.max() > 127:
                return None
            enc = enc.astype(np.int8)
        if not costs._all_valid(self.space, enc):
            return None
        rows = self._rows_of_encodings(enc)
        intab = rows >= 0
        all_tab = bool(intab.all())
        if not all_tab and intab.any():  # some rows profiled, others not: per-row sources
            return None
        n = len(rows)
        values, sources, target_sources, missing = {}, {}, {}, {}
        batch = X = roof = None
        for sp in specs:
            m = sp.metric
            if sp.kind == "missing":
                values[m], sources[m], missing[m] = np.full(n, np.nan), "missing", sp.reason
            elif sp.kind == "value":
                col = cols.get(m)
                if all_tab and mode == "auto" and col is not None:
                    v = col.median[rows]
                    if not np.isfinite(v).all():
                        return None
                    values[m], sources[m] = v, col.source
                    continue
                if sp.roofline:  # a modeled device: its model (one plan, one device and setting)
                    if roof is None:
                        roof = self._roofline(sp.device, sp.setting).evaluate(enc)
                    values[m], sources[m] = roof[_ROOFLINE_OUTPUT[m]], "modeled"
                    continue
                if (m, sp.device, sp.setting) not in self._models:
                    return None
                s = self.surrogate(m, sp.device, sp.setting)
                if X is None:  # device-independent features are a prefix of any setting's
                    batch = costs._Batch(self.space, enc, False)
                    X = features(self.space, batch, hw_setting,
                                 self._decode_tokens(hw_setting) if hw_setting is not None else 0)
                v = s.predict_features(X[:, :self._n_base_features] if s.setting is None and hw_setting is not None
                                       else X)
                values[m], sources[m], target_sources[m] = v, "surrogate", s.meta.get("target_source", "measured")
        for sp in specs:  # exact metrics last: for rows not in the table they reuse the features
            if sp.kind == "exact":
                if batch is None and not all_tab:
                    batch = costs._Batch(self.space, enc, False)
                values[sp.metric] = self._exact(sp, rows, enc, lambda: batch,
                                                None if X is None or hw_setting is None else (hw_setting, X))
                sources[sp.metric] = "exact"
        out = {sp.metric: values[sp.metric] for sp in specs}
        out.update({"units": dict(units), "source": sources, "row_sources": {}, "target_sources": target_sources,
                    "intervals": {}, "missing": missing, "in_table": intab})
        return out

    def pareto_front(self, objectives: Sequence[tuple]) -> "Any":
        """Non-dominated rows of the table for ``objectives``, a list of ``(metric, device, setting)``
        triples (device and setting None for device-independent metrics; setting None = the device's
        default). Every objective is minimised; maximised metrics (``token_accuracy``) are negated
        for the dominance test but reported with their true values. Rows with a missing value in any
        objective are left out. Returns a DataFrame (index = table row) with ``id`` and one column per
        objective (``metric`` or ``metric@device@setting``), sorted by the first objective;
        ``attrs["units"]``, ``attrs["sources"]``.
        """
        if self.table is None:
            raise QueryError(f"invalid call pareto_front: release {self.path} has no table_{self.space.name}.h5")
        if isinstance(objectives, (str, bytes)) or not isinstance(objectives, Sequence) or len(objectives) < 1:
            raise _fail("objectives", objectives, "a non-empty list of (metric, device, setting) triples")
        n = len(self._row)
        rows = np.arange(n, dtype=np.int64)
        enc = np.asarray(self.table.encodings)
        cols, mins, units, sources = {}, [], {}, {}
        for ob in objectives:
            if not isinstance(ob, (tuple, list)) or len(ob) != 3:
                raise _fail("objective", ob, "a (metric, device, setting) triple; device/setting None for "
                                             "device-independent metrics")
            m, d, s = ob
            specs, _, st = self._plan([m], d, s)
            sp = specs[0]
            if sp.kind == "missing":
                raise _fail("objective", ob, f"a metric with values ({m} is missing: {sp.reason})")
            name = m if sp.device is None and m != "flops" else (
                f"flops@{sp.setting}" if m == "flops" else f"{m}@{sp.device}@{sp.setting}")
            if sp.kind == "exact":
                v, src = self._exact(sp, rows, enc), "exact"
            else:
                col = self._column(m, sp.device, sp.setting)
                if col is None:
                    raise _fail("objective", ob, f"a metric stored in the table {self.table.path}")
                v, src = col.median, col.source
            cols[name], units[name], sources[name] = v, sp.unit, src
            mins.append(-v if m in _MAXIMISED else v)
        import pandas as pd

        F = np.stack(mins, 1)
        ok = np.isfinite(F).all(1)
        keep = np.flatnonzero(ok)
        if len(keep):
            try:
                import moocore
            except ImportError:
                raise QueryError("invalid call pareto_front: it needs moocore; allowed: install it "
                                 "(pip install moocore, or the package's [moo] extra)") from None
            keep = keep[moocore.is_nondominated(F[ok])]
        df = pd.DataFrame({"id": np.asarray(self.table.ids)[keep], **{k: v[keep] for k, v in cols.items()}},
                          index=keep)
        df = df.sort_values(list(cols)[0], kind="stable")
        df.attrs.update({"units": units, "sources": sources, "objectives": [tuple(o) for o in objectives]})
        return df


def _tokens(s: str, table: dict[str, int]) -> list[int] | None:
    out, pos = [], 0
    lengths = sorted({len(t) for t in table}, reverse=True)
    while pos < len(s):
        for k in lengths:
            i = table.get(s[pos:pos + k])
            if i is not None:
                out.append(i)
                pos += k
                break
        else:
            return None
    return out


def model_key(k: tuple) -> str:
    m, d, s = k
    return m if d is None else f"{m}@{d}@{s}"


def _draw_repeats(rep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of each row's finite repeats, uniformly."""
    finite = np.isfinite(rep)
    k = finite.sum(1)
    order = np.argsort(~finite, axis=1, kind="stable")  # finite entries first
    j = np.minimum((rng.random(len(rep)) * np.maximum(k, 1)).astype(np.int64), np.maximum(k - 1, 0))
    return rep[np.arange(len(rep)), order[np.arange(len(rep)), j]]


def _draw_quantiles(q: np.ndarray, transform: str, rng: np.random.Generator) -> np.ndarray:
    """Draws from the piecewise-linear quantile function through the 5/50/95 % predictions (in the
    model's transformed space), tails extended linearly to the 0 and 100 % points."""
    from surrogates.fit import QUANTILES, _forward, _inverse

    z = _forward(transform, q)
    a = np.array(QUANTILES)
    lo = z[:, 0] - (z[:, 1] - z[:, 0]) * a[0] / (a[1] - a[0])
    hi = z[:, 2] + (z[:, 2] - z[:, 1]) * (1 - a[2]) / (a[2] - a[1])
    knots_p = np.concatenate([[0.0], a, [1.0]])
    knots_z = np.column_stack([lo, z, hi])
    u = rng.random(len(q))
    seg = np.clip(np.searchsorted(knots_p, u, side="right") - 1, 0, len(knots_p) - 2)
    i = np.arange(len(q))
    frac = (u - knots_p[seg]) / (knots_p[seg + 1] - knots_p[seg])
    return _inverse(transform, knots_z[i, seg] + frac * (knots_z[i, seg + 1] - knots_z[i, seg]))


# ---------------------------------------------------------------------------- HW-GPT-Bench compatibility
_HWGPT_ALIASES = {"latencies": "latency_ms", "energies": "energy_mj", "float16_memory": "memory_mb",
                  "bfloat16_memory": "memory_mb", "memory": "memory_mb", "accuracy": "token_accuracy",
                  "perplexity": "perplexity", "flops": "flops", "params": "params"}


class HWGPTBenchCompat:
    """HW-GPT-Bench's ``HWGPT`` API on top of :class:`Benchmark`, so that its users switch with one line:

    ```python
    api = HWGPTBenchCompat("t")          # was: api = HWGPT(search_space="s")
    arch = api.sample_arch()             # HW-GPT-Bench dict (seeded: seed=0 by default, never global state)
    api.set_arch(arch)
    api.query()                          # {"perplexity": ..., "accuracy": ..., "flops": ..., "params": ...,
                                         #  "latencies": {device: ...}, "energies": {...}, "memory": {...}}
    api.query(metric="latencies", device="cpu-epyc-2c")   # {"cpu-epyc-2c": value}
    ```

    HW-GPT-Bench's metric names (``latencies``, ``energies``, ``float16_memory``, ``accuracy``, ...)
    and ours are both accepted. Hardware values are at each device's default setting; values come
    from ``Benchmark.query`` in mode ``auto`` (table when profiled, else surrogate; a modeled device: its
    roofline model).
    """

    def __init__(self, space: str = "t", path: str | Path | None = None, seed: int = 0,
                 benchmark: Benchmark | None = None):
        self.benchmark = benchmark or Benchmark(space, path)
        self._rng = np.random.default_rng(seed)
        self.config: dict | None = None

    def sample_arch(self) -> dict:
        return self.benchmark.space.sample(self._rng).to_hwgpt_dict()

    def set_arch(self, arch_dict: Mapping) -> None:
        try:
            self.benchmark.space.from_hwgpt_dict(arch_dict)
        except (ArchitectureError, TypeError) as e:
            raise QueryError(str(e)) from None
        self.config = dict(arch_dict)

    def query(self, metric: str | None = None, device: str | None = None, **_ignored: Any):
        if self.config is None:
            raise QueryError("invalid state: no architecture set; allowed: call set_arch(arch_dict) first")
        b = self.benchmark
        if metric is not None and metric not in _HWGPT_ALIASES and metric not in b.metrics():
            raise _fail("metric", metric, sorted(set(_HWGPT_ALIASES) | set(b.metrics())))
        devices = [device] if device is not None else sorted(b.devices())
        for d in devices:
            b._check_device(d)
        names = [metric] if metric is not None else ["perplexity", "accuracy", "flops", "params", "latencies",
                                                     "energies", "memory"]
        out: dict[str, Any] = {}
        for name in names:
            ours = _HWGPT_ALIASES.get(name, name)
            if ours not in b.metrics():
                continue
            if not b.metrics()[ours]["needs_device"]:
                out[name] = b.query(self.config, metrics=[ours])[ours]
            else:
                per = {}
                for d in devices:
                    if any(m == ours for (dd, s, m) in b._hw if dd == d):
                        per[d] = b.query(self.config, metrics=[ours], device=d)[ours]
                out[name] = per
        return out[metric] if metric is not None else out
