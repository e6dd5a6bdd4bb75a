"""The query API: ``Benchmark`` serves table values and surrogate predictions with units and sources.

```python
from benchmark import Benchmark
b = Benchmark("t")                                   # the embedded release (benchmark.paths.data_dir())
r = b.query(arch, device="cpu-epyc-1c")              # QueryResult: r["latency_ms"], r.units, r.sources, r.intervals
df = b.query_batch(encodings, metrics=["perplexity", "latency_ms"], device="cpu-epyc-1c")
```

A release directory holds ``table_<space>.h5`` and/or ``surrogates/<space>/`` (see
:mod:`surrogates.fit`). Opening reads the table's structure and the surrogate index only;
columns load on first use and are cached, XGBoost boosters load on first use and are cached.

Modes: ``"auto"`` (default) returns the table's value when the architecture was profiled
(the median of the stored repeats for hardware metrics) and the surrogate's prediction (with
its 90 % interval: the quantile model's 5-95 % spread centred on the point prediction, or, for
a metric without a quantile model, a split-conformal interval from the surrogate's residuals on
the architectures held out at fit time) otherwise; ``"table"`` refuses architectures or cells the table lacks;
``"surrogate"`` always predicts. Exact metrics (``params``, ``params_no_embedding``,
``flops``; ``weight_bytes`` and ``kv_cache_bytes`` at a setting's shape and dtype, when named) are
always computed exactly with :mod:`benchmark.costs`.

Sources: every value carries one of ``measured``, ``modeled`` (a modeled device's latency or
energy: the table's value for a profiled architecture, otherwise the device's roofline model
evaluated directly — see below), ``surrogate`` (a prediction; ``target_sources`` says whether the
model was trained on measured or modeled data), ``exact``, ``imported`` (another benchmark's
released predictor: HW-GPT-Bench's perplexity of ``s``/``m``/``l``; ``r.provenance`` names it, its
data and license; no interval, ``r.no_interval`` says why) or ``missing`` (not measured for a
stated reason, e.g. no energy counter on the device; the value is NaN and the reason is in
``missing``).

Spaces without a release: ``Benchmark("s")`` (``m``, ``l``) with no table and no surrogates
answers exact metrics, the embedded ``t`` release's modeled devices (their roofline model with the
parameters stored in ``table_t.h5``) and the imported perplexity (:mod:`benchmark.query.standalone`);
nothing measured. Once such a space has a release (``data/<space>/``, e.g. the ``s`` release built by
``scripts/build_release.py --space s``), that release answers instead: its measured rows (table), its
surrogates for other architectures, its own modeled devices (calibrated on its measured CPU), exact
metrics, and the same imported perplexity (listed in its surrogate index: the table holds none).

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

Layout: this module is the facade; the engine is :mod:`benchmark.query` (catalog of the release,
input resolution, table lookup, models, planning, one executor, results). A query is planned
once per (metrics, device, setting) — each metric resolved to exact / roofline / table+surrogate /
missing — and the plan runs the same way for one architecture (:meth:`Benchmark.query`) or many
(:meth:`Benchmark.query_batch`).

Errors: every bad input raises :class:`QueryError` (a ``ValueError``) naming the field, the
value and what is available — never a silent NaN or another device's value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.query.catalog import DEFAULT_UNITS, EXACT_METRICS, Catalog, model_key  # noqa: F401
from benchmark.query.execute import QUERY_MODES, Executor
from benchmark.query.inputs import Inputs
from benchmark.query.lookup import TableLookup
from benchmark.query.models import Models
from benchmark.query.plan import Planner
from benchmark.query.results import QueryError, QueryResult, batch_dict, batch_frame, fail
from benchmark.spaces import ArchitectureError, SearchSpace, get_space

__all__ = ["Benchmark", "QueryResult", "QueryError", "EXACT_METRICS", "SOURCES", "QUERY_MODES"]

SOURCES = ("measured", "modeled", "surrogate", "exact", "imported", "missing")
_MAXIMISED = ("token_accuracy",)


class Benchmark:
    """Query a release of one search space (see the module docstring)."""

    def __init__(self, space: str | SearchSpace = "t", path: str | Path | None = None, revision: str | None = None,
                 repo_id: str | None = None, verify: bool = True,
                 overlays: Sequence[str | Path] = ()):
        """``path``: a release directory (default: the embedded release of the space, ``data/``, or
        ``data/<space>/`` where that folder is a release of its own, :func:`benchmark.release.embedded_release`). ``revision``:
        a Hub release instead (e.g. ``"v1"``), downloaded once with :func:`benchmark.hub.download`
        (sha256-verified, cached, offline afterwards) from ``repo_id`` (default: ``HWLM_HUB_REPO``
        or the project's repository). A space of HW-GPT-Bench (``s``, ``m``, ``l``) with neither a
        table nor surrogates in ``path`` opens without a release (see the module docstring).

        ``verify`` (default True): check the release on opening
        (:func:`benchmark.release.verify_on_open`): every file against ``MANIFEST.json`` (sizes;
        sha256 from the user's hash cache for files unchanged since they were last hashed), the
        files queries read listed in it, the table's ids unique and agreeing with its encodings.
        The embedded release must have a manifest; a ``path`` without one is a working copy
        (``self.manifest`` is None; only the rows are checked); so is a space without a release of its
        own (``m``, ``l``: the embedded ``t`` release it borrows modeled devices from is verified, its
        manifest is not this space's). A problem raises
        :class:`benchmark.release.ReleaseError` naming the file. ``verify=False`` skips all of it.

        ``overlays``: directories written by ``hwlm device add`` for this release (a device measured
        on K architectures, predicted for the rest: :mod:`benchmark.query.overlay`)."""
        from benchmark.release import embedded_release
        from surrogates.features import feature_names
        from surrogates.model import read_index, surrogate_dir

        try:
            self.space: SearchSpace = get_space(space)
        except ArchitectureError as e:
            raise QueryError(str(e)) from None
        if revision is not None and path is not None:
            raise QueryError(f"invalid arguments: path={str(path)!r} and revision={revision!r}; allowed: one of "
                             f"them (a local release directory, or a Hub release to download)")
        if revision is not None:
            from benchmark.hub import download

            path = download(self.space.name, revision, repo_id=repo_id)  # verified in full
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise fail("path", path, "a release directory (a str or os.PathLike), or None for the embedded release")
        if path is not None and not Path(path).is_dir():  # a typo must not open as "no release here"
            raise fail("path", str(path), "an existing release directory (or None for the embedded release)")
        self.path = Path(path) if path is not None else embedded_release(self.space.name)
        self.verify = bool(verify)
        self.manifest: dict | None = None
        table = None
        if verify and revision is None:
            from benchmark.release import verify_on_open

            self.manifest, table = verify_on_open(self.path, self.space.name, required=path is None)
        self.table = self._open_table(table)
        self.surrogate_path = surrogate_dir(self.path, self.space.name)
        index = read_index(self.surrogate_path) if (self.surrogate_path / "index.json").exists() else None
        if self.table is None and index is None:
            index = self._standalone_index()
        t = self.table
        self.inputs = Inputs(self.space, t.ids.tolist() if t is not None else None,
                             t.encodings if t is not None else None)
        lookup = TableLookup(t, self.space)
        self.models = Models(self.space, t, index, self.surrogate_path)
        self.catalog = Catalog.build(t, index, self.models.entries, self.models.missing)
        self.models.catalog = self.catalog
        if overlays:
            from benchmark.query.overlay import attach_overlays

            attach_overlays(overlays, self.space, t, self.catalog, lookup, self.models)
        self.planner = Planner(self.catalog, lookup, self.models)
        self._values_paths: dict[tuple, tuple] = {}  # (id(plan), mode) -> (plan, ValuesPath or None)
        self.executor = Executor(self.space, lookup, self.models, len(feature_names(self.space)),
                                 lambda: (t.path if t is not None else None, len(self.inputs.row), self.path))

    def _standalone_index(self) -> dict:
        """No release of HW-GPT-Bench's spaces here: exact metrics, the embedded ``t`` release's
        modeled devices and the imported perplexity (:mod:`benchmark.query.standalone`)."""
        from benchmark.paths import data_dir
        from benchmark.query.standalone import IMPORTED_SPACES, standalone_index

        if self.space.name not in IMPORTED_SPACES or not (data_dir() / "table_t.h5").exists():
            raise QueryError(f"invalid path: {str(self.path)!r}; allowed: a release directory holding "
                             f"table_{self.space.name}.h5 and/or surrogates/{self.space.name}/index.json "
                             f"(neither is there)" + (f"; spaces {list(IMPORTED_SPACES)} open without one"
                                                      if self.space.name not in IMPORTED_SPACES else ""))
        if self.verify:  # the modeled devices come from the embedded t release
            from benchmark.release import verify_on_open

            verify_on_open(data_dir(), "t", required=True)
        return standalone_index(self.space, data_dir())

    def _open_table(self, table=None):
        tpath = self.path / f"table_{self.space.name}.h5"
        if table is None and not tpath.exists():
            return None
        from benchmark.table import Table

        table = table if table is not None else Table(tpath)
        if table.space.name != self.space.name:
            raise QueryError(f"table {tpath}: holds space {table.space.name!r}, not {self.space.name!r}")
        return table

    # ------------------------------------------------------------------ what the release offers
    def devices(self) -> dict[str, dict]:
        """{device: {"source": "measured"|"modeled", "kind": "cpu"|"gpu", "settings": [...]}}; ``kind``
        is None only for a device that states none and whose id does not start with cpu-/gpu-. An
        overlay's device also has ``overlay`` (its directory) and ``estimated_error`` (per setting:
        the latency model's method and its cross-validated scores on the measured architectures)."""
        return {d: {"source": v["source"], "kind": v["kind"], "settings": list(v["settings"]),
                    **{k: v[k] for k in ("borrowed_from", "overlay", "estimated_error") if k in v}}
                for d, v in self.catalog.devices.items()}

    def metrics(self) -> dict[str, dict]:
        """{metric: {"unit", "source", "needs_device", "needs_setting"}}; a hardware metric's source
        is that of the devices that have it (``measured``, ``modeled`` or ``measured|modeled``; ``missing``
        among them where a device lists the metric without values, e.g. energy where no counter was read)."""
        return {k: dict(v) for k, v in self.catalog.metrics.items()}

    def settings(self, device: str) -> list[str]:
        """The device's settings, prefill before decode, then by batch, sequence length, dtype; the
        first is the default."""
        self.catalog.check_device(device)
        return list(self.catalog.devices[device]["settings"])

    def hardware_metrics(self, device: str, setting: str | None = None) -> list[str]:
        """The hardware metrics the release has for ``device`` (at ``setting``; None: at any)."""
        self.catalog.check_device(device)
        if setting is not None and setting not in self.catalog.devices[device]["settings"]:
            raise fail(f"setting of device {device!r}", setting, list(self.catalog.devices[device]["settings"]))
        return list(dict.fromkeys(self.catalog.device_metrics(device, setting)))

    def surrogate(self, metric: str, device: str | None = None, setting: str | None = None):
        """The loaded :class:`surrogates.model.Surrogate` (cached); QueryError if there is none."""
        return self.models.surrogate(metric, device, setting)

    def __repr__(self) -> str:
        return (f"Benchmark(space={self.space.name!r}, path={str(self.path)!r}, rows={len(self.inputs.row)}, "
                f"devices={sorted(self.catalog.devices)}, surrogates={len(self.models.entries)})")

    # ------------------------------------------------------------------ queries
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
        plan = self.planner.plan(metrics, device, setting)
        row, enc, aid = self.inputs.one(arch)
        rows = np.array([row], np.int64)
        enc2 = self.table.encodings[row:row + 1] if row >= 0 else enc[None, :]
        r = self.executor.run(plan, rows, enc2, mode, noise, seed, ids=[aid], want_repeats=repeats, trusted=True,
                              intervals=intervals)
        return QueryResult(
            arch=aid, device=plan.device, setting=plan.setting, mode=mode,
            value={m: float(v[0]) for m, v in r["values"].items()}, units=dict(plan.units),
            sources={m: (s if isinstance(s, str) else str(s[0])) for m, s in r["sources"].items()},
            target_sources=r["target_sources"],
            intervals={m: (None if iv is None else (float(iv[0][0]), float(iv[1][0])))
                       for m, iv in r["intervals"].items() if iv is None or math.isfinite(iv[0][0])},
            repeats={m: x[0][np.isfinite(x[0])] for m, x in r["repeats"].items()},
            missing=r["missing"], in_table=bool(row >= 0), no_interval=r["no_interval"],
            provenance={m: self.catalog.metrics[m]["provenance"] for m, s in r["sources"].items()
                        if isinstance(s, str) and s == "imported"})

    def query_batch(self, archs: Any, metrics: Any = None, device: str | None = None, setting: str | None = None,
                    mode: str = "auto", noise: bool = False, seed: int | None = None, as_frame: bool = True,
                    intervals: bool = True, source_columns: bool = False):
        """Vectorised :meth:`query` over many architectures (same arguments and semantics).

        ``archs``: an ``(N, encoding_length)`` integer encoding array (fastest: no Python object per
        row), a :class:`benchmark.costs.EncodedBatch` (encodings validated when it was built, e.g. by
        ``costs.encoded_batch``: not checked again), or a sequence of ids / Architectures / HW-GPT-Bench
        dicts. Returns a
        ``pandas.DataFrame`` with one row per input (input order): an ``id`` column (the
        architecture's id) and one float column per metric; with ``source_columns=True`` also a
        ``<metric>_source`` string column after each metric (its source per row: ``measured``,
        ``modeled``, ``surrogate``, ``exact`` or ``missing``). ``df.attrs``: ``units``, ``sources``
        (column -> source, ``"mixed"`` when some rows come from the table and others from the
        surrogate; then ``row_sources`` has the per-row array), ``target_sources``, ``intervals``
        (column -> (lo, hi) arrays, 5-95 %), ``missing`` (column -> reason), ``in_table`` (bool
        array), ``device``, ``setting``, ``mode``. ``as_frame=False`` returns ``{column: np.ndarray}``
        (metrics only, no ids: the cheapest form, what a NAS loop wants) plus the same information
        under the keys ``"units"``, ``"source"``, ``"row_sources"``, ``"target_sources"``,
        ``"intervals"``, ``"missing"``, ``"in_table"``. ``intervals=False``: no intervals, and the
        surrogates' quantile models run only when ``noise=True`` needs them.
        """
        for name, flag in (("as_frame", as_frame), ("source_columns", source_columns)):
            if not isinstance(flag, (bool, np.bool_)):
                raise fail(name, flag, "True or False")
        plan = self.planner.plan(metrics, device, setting)
        rows, enc, given_ids = self.inputs.many_with_ids(archs)
        # built from validated Architectures, or an EncodedBatch (validated when it was built)
        trusted = not isinstance(archs, np.ndarray) or archs.ndim != 2
        r = self._run(plan, rows, enc, mode, trusted, noise, seed, intervals)
        sources, row_sources = {}, {}
        for m, s in r["sources"].items():
            if isinstance(s, str):
                sources[m] = s
            else:
                sources[m], row_sources[m] = "mixed", s
        if not as_frame:
            return batch_dict(r["values"], dict(plan.units), sources, row_sources, r)
        info = {"units": dict(plan.units), "sources": sources, "row_sources": row_sources,
                "target_sources": r["target_sources"], "intervals": r["intervals"], "missing": r["missing"],
                "in_table": r["in_table"], "device": plan.device, "setting": plan.setting, "mode": mode}
        if r["no_interval"]:
            info["no_interval"] = r["no_interval"]
        ids = given_ids if given_ids is not None else self.inputs.ids(rows, enc)
        return batch_frame(r["values"], ids, info, bool(source_columns))

    def values_function(self, metrics: Any = None, device: str | None = None, setting: str | None = None,
                        mode: str = "auto"):
        """``f(batch) -> {metric: values}`` for a :class:`benchmark.costs.EncodedBatch` of this space
        (``costs.encoded_batch``): the metric columns of ``query_batch(batch, metrics, device, setting,
        mode, as_frame=False, intervals=False)``, bit for bit, in the plan's order, with the plan made
        and the values-only path compiled once here rather than per call — for a loop that asks the
        same question of many small batches (``benchmark.moo.problems.Problem`` does)."""
        from benchmark.costs import EncodedBatch

        if mode not in QUERY_MODES:
            raise fail("mode", mode, list(QUERY_MODES))
        plan = self.planner.plan(metrics, device, setting)
        path = self._values_path(plan, mode)  # compiled now (and cached for the plan), not in the first call
        models_only = path.models_only if path is not None else None
        keys = self.inputs.table_keys() if path is not None else None
        space = self.space.name

        def values(batch: EncodedBatch) -> dict:
            if not isinstance(batch, EncodedBatch):
                raise fail("batch", type(batch).__name__, "an EncodedBatch (benchmark.costs.encoded_batch)")
            if keys is not None and batch.space.name == space:  # membership and models in one compiled call
                v = path.models_off_table(batch.encodings, keys)
                if v is not None:
                    return v
            rows, enc = self.inputs.many(batch)
            # few Python steps for a loop's usual question (every value from the surrogates): the
            # fixed cost of a call is most of a small batch's
            v = models_only(rows, enc) if models_only is not None else None
            return v if v is not None else self._run(plan, rows, enc, mode, True)["values"]

        return values

    def _run(self, plan, rows: np.ndarray, enc: np.ndarray, mode: str, trusted: bool, noise: Any = False,
             seed: Any = None, intervals: Any = False) -> dict:
        """The executor's answer, from the plan's values-only path when the question allows one
        (values only: no noise, no intervals — what a NAS loop asks, in fewer numpy calls)."""
        if noise is False and intervals is False and seed is None and mode in QUERY_MODES:
            path = self._values_path(plan, mode)
            r = path.run(rows, enc, trusted) if path is not None else None
            if r is not None:
                return r
        return self.executor.run(plan, rows, enc, mode, noise, seed, trusted=trusted, intervals=intervals)

    def _values_path(self, plan, mode: str):
        """The plan's :class:`~benchmark.query.fastpath.ValuesPath` for ``mode`` (compiled once), or None."""
        key = (id(plan), mode)
        hit = self._values_paths.get(key)
        if hit is None or hit[0] is not plan:  # an uncached plan's id may be reused
            from benchmark.query.fastpath import ValuesPath

            hit = self._values_paths[key] = (plan, ValuesPath.compile(self.executor, plan, mode))
        return hit[1]

    def pareto_front(self, objectives: Sequence[tuple], archs: Any = None) -> "Any":
        """Non-dominated rows of the table for ``objectives``, a list of ``(metric, device, setting)``
        triples (device and setting None for device-independent metrics; setting None = the device's
        default). Every objective is minimised; maximised metrics (``token_accuracy``) are negated
        for the dominance test but reported with their true values. Rows with a missing value in any
        objective are left out. Returns a DataFrame (index = table row) with ``id`` and one column per
        objective (``metric`` or ``metric@device@setting``), sorted by the first objective;
        ``attrs["units"]``, ``attrs["sources"]``. An ``imported`` metric, which a table does not store
        (HW-GPT-Bench's perplexity in the ``s`` release), is its predictor's value for each row.

        ``archs``: the candidates instead of the table's rows (anything :meth:`query_batch` takes;
        index = position in ``archs``), answered as :meth:`query_batch` answers them (mode ``auto``);
        needed for a space without a table (``s``, ``m``, ``l``).
        """
        if self.table is None and archs is None:
            raise QueryError(f"invalid call pareto_front: release {self.path} has no table_{self.space.name}.h5; "
                             f"allowed: pass the candidates, pareto_front(objectives, archs=...)")
        if isinstance(objectives, (str, bytes)) or not isinstance(objectives, Sequence) or len(objectives) < 1:
            raise fail("objectives", objectives, "a non-empty list of (metric, device, setting) triples")
        if archs is None:
            n = len(self.inputs.row)
            rows = np.arange(n, dtype=np.int64)
            ids = np.asarray(self.table.ids)
            enc, trusted = self.inputs.table_encodings, True
        else:
            rows, enc = self.inputs.many(archs)
            ids = np.asarray(self.inputs.ids(rows, enc))
            trusted = not isinstance(archs, np.ndarray) or archs.ndim != 2  # as in query_batch
        cols, mins, units, sources = {}, [], {}, {}
        for ob in objectives:
            if not isinstance(ob, (tuple, list)) or len(ob) != 3:
                raise fail("objective", ob, "a (metric, device, setting) triple; device/setting None for "
                                             "device-independent metrics")
            m, d, s = ob
            plan = self.planner.plan([m], d, s)
            sp = plan.specs[0]
            if sp.kind == "missing":
                raise fail("objective", ob, f"a metric with values ({m} is missing: {sp.reason})")
            name = m if sp.device is None and m != "flops" else (
                f"flops@{sp.setting}" if m == "flops" else f"{m}@{sp.device}@{sp.setting}")
            col = plan.columns.get(m)
            if archs is not None or (col is None and sp.kind == "imported"):
                # candidates answered as query_batch answers them; an imported metric, which a table does
                # not store (the s release's perplexity), is the predictor's for each table row
                r = self.executor.run(plan, rows, enc, "auto", False, None, trusted=trusted, intervals=False)
                v, src = r["values"][m], r["sources"][m]
                src = src if isinstance(src, str) else "mixed"
            elif sp.kind == "exact":
                dt = self.models.decode_tokens(sp.setting) if m == "flops" else 0
                v, src = self.planner.lookup.exact(m, sp.setting, dt)[rows], "exact"
            elif col is not None:
                v, src = col.median, col.source
            else:
                raise fail("objective", ob, f"a metric stored in the table {self.table.path}")
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
        df = pd.DataFrame({"id": ids[keep], **{k: v[keep] for k, v in cols.items()}},
                          index=keep)
        df = df.sort_values(list(cols)[0], kind="stable")
        df.attrs.update({"units": units, "sources": sources, "objectives": [tuple(o) for o in objectives]})
        return df
