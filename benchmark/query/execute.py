"""The executor: runs a :class:`~benchmark.query.plan.Plan` over table rows and encodings.

One code path for single queries and batches. Per metric of the plan: exact metrics from
:mod:`benchmark.costs` (the table's rows from a cache); values from the table's column where the
architecture was profiled (mode ``auto``/``table``), else from the modeled device's roofline model
or the surrogate. Everything per-query is computed once: the validated cost batch of the rows the
table lacks, their surrogate features (device-independent features are a prefix of any setting's,
and they hold the exact params/FLOPs the exact metrics then reuse), the roofline model's outputs.
For one row, the trees of every surrogate consulted are walked together (``FusedEnsembles``: the
same numbers, a fraction of the numpy calls).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmark.spaces import ArchitectureError, SearchSpace
from benchmark.query.lookup import TableLookup, exact_values
from benchmark.query.models import ROOFLINE_OUTPUT, Models, draw_quantiles, draw_repeats
from benchmark.query.plan import Plan, Spec
from benchmark.query.results import QueryError, fail

__all__ = ["MODES", "Executor"]

MODES = ("auto", "table", "surrogate")
_EXACT_FEATURE = {"params": -2, "params_no_embedding": -1, "flops": 0}  # column offsets in the features


class _Run:
    """The state of one execution: which rows the table holds, and what was computed for the others."""

    def __init__(self, space: SearchSpace, rows: np.ndarray, enc: np.ndarray, trusted: bool):
        self.space, self.rows, self.enc, self.trusted = space, rows, enc, trusted
        self.n = len(rows)
        self.intab = rows >= 0
        self.all_in = bool(self.intab.all())
        self.outside = ~self.intab  # the rows the table lacks
        self._batches: dict[bytes, Any] = {}
        self.features: dict[tuple, np.ndarray] = {}
        self.roof: dict[tuple, tuple] = {}

    def checked(self, mask: np.ndarray | None = None):
        """Validated cost batch (:class:`benchmark.costs.CostBatch`) of ``enc[mask]`` (default: the
        rows the table lacks), built once per mask."""
        from benchmark import costs

        mask = self.outside if mask is None else mask
        key = mask.tobytes()
        b = self._batches.get(key)
        if b is None:
            enc = np.ascontiguousarray(self.enc if mask.all() else self.enc[mask])
            if self.trusted or costs.all_valid(self.space, enc):  # validated Architectures, or one vectorised check
                b = costs.CostBatch(self.space, enc, False)
            else:
                try:
                    b = costs.resolve_batch(enc, self.space)  # words the error
                except ArchitectureError as e:
                    raise QueryError(str(e)) from None
            self._batches[key] = b
        return b


class Executor:
    def __init__(self, space: SearchSpace, lookup: TableLookup, models: Models, n_base_features: int,
                 describe_table: Any):
        self.space, self.lookup, self.models = space, lookup, models
        self.n_base = n_base_features
        self.describe_table = describe_table  # () -> (table path or None, number of rows): error wording

    def run(self, plan: Plan, rows: np.ndarray, enc: np.ndarray, mode: str, noise: Any, seed: Any,
            ids: list | None = None, want_repeats: bool = False, trusted: bool = False, intervals: Any = True) -> dict:
        """``{"values", "sources", "target_sources", "intervals", "missing", "repeats", "in_table"}``.
        ``trusted``: every encoding not in the table comes from a validated Architecture.
        ``intervals=False``: no 5-95 % intervals; the surrogates' quantile models then run only to
        draw noise. A source is a string, or a per-row array when rows come from different sources."""
        if mode not in MODES:
            raise fail("mode", mode, list(MODES))
        if not isinstance(noise, (bool, np.bool_)):
            raise fail("noise", noise, "True or False")
        if not isinstance(intervals, (bool, np.bool_)):
            raise fail("intervals", intervals, "True or False")
        r = _Run(self.space, rows, enc, trusted)
        opts = {"mode": mode, "noise": bool(noise), "intervals": bool(intervals), "ids": ids,
                "quantiles": bool(intervals) or bool(noise), "repeats": want_repeats,
                "rng": np.random.default_rng(seed) if noise else None}
        out = {"values": {}, "sources": {}, "target_sources": {}, "intervals": {}, "missing": {}, "repeats": {},
               "in_table": r.intab}
        if not trusted and not r.all_in:
            r.checked()  # validate user-given encodings up front, whatever the metrics
        pre = self._fused_walk(plan, r, opts)
        # exact metrics last: for rows not in the table they reuse the surrogate features if computed
        for sp in plan.specs:
            if sp.kind == "missing":
                out["values"][sp.metric], out["sources"][sp.metric] = np.full(r.n, np.nan), "missing"
                out["missing"][sp.metric] = sp.reason
            elif sp.kind == "value":
                self._value(plan, sp, r, opts, pre, out)
        for sp in plan.specs:
            if sp.kind == "exact":
                out["values"][sp.metric], out["sources"][sp.metric] = self._exact(sp, plan.hw_setting, r), "exact"
        out["values"] = {sp.metric: out["values"][sp.metric] for sp in plan.specs}  # the plan's order
        return out

    # ------------------------------------------------------------------ exact metrics
    def _exact(self, sp: Spec, hw_setting: str | None, r: _Run) -> np.ndarray:
        dt = self.models.decode_tokens(sp.setting) if sp.metric == "flops" else 0
        if r.all_in:
            return self.lookup.exact(sp.metric, sp.setting, dt)[r.rows]
        out = np.empty(r.n, np.float64)
        if not r.outside.all():
            out[r.intab] = self.lookup.exact(sp.metric, sp.setting, dt)[r.rows[r.intab]]
        X = r.features.get((hw_setting, r.outside.tobytes())) if hw_setting is not None else None
        if X is not None and (sp.metric != "flops" or sp.setting == hw_setting):
            out[r.outside] = X[:, self.n_base + _EXACT_FEATURE[sp.metric]]  # features() computed exactly these
        else:
            out[r.outside] = exact_values(self.space, sp.metric, sp.setting, r.checked(), dt)
        return out

    # ------------------------------------------------------------------ table + models
    def _value(self, plan: Plan, sp: Spec, r: _Run, o: dict, pre: dict, out: dict) -> None:
        m, mode = sp.metric, o["mode"]
        col = plan.columns.get(m)
        if mode != "surrogate" and col is not None:
            use = r.intab & np.isfinite(col.median[np.where(r.intab, r.rows, 0)]) if not r.all_in \
                else np.isfinite(col.median[r.rows])
        else:
            use = np.zeros(r.n, bool)
        if mode == "table" and not use.all():
            self._table_mode_error(sp, r, use, o["ids"], col)
        v = np.empty(r.n, np.float64)
        lo = hi = None
        any_use = bool(use.any())
        if any_use:
            ru = r.rows[use]
            v[use] = col.median[ru]
            if col.lo is not None and o["intervals"]:
                lo, hi = np.full(r.n, np.nan), np.full(r.n, np.nan)
                lo[use], hi[use] = col.lo[ru], col.hi[ru]
            if o["noise"] and col.repeats is not None:
                v[use] = draw_repeats(col.repeats[ru], o["rng"])
            if o["repeats"] and col.repeats is not None:
                out["repeats"][m] = col.repeats[ru]
        src: Any = col.source if col is not None else "surrogate"
        need = ~use
        if not need.any():
            pass
        elif sp.roofline:  # a modeled device: its model, exactly (deterministic, no interval)
            rk = (sp.device, sp.setting, need.tobytes())
            if rk not in r.roof:
                r.roof[rk] = self.models.roofline(sp.device, sp.setting).evaluate(r.checked(need)._enc)
            v[need] = r.roof[rk][ROOFLINE_OUTPUT[m]]
            src = "modeled"
        else:
            lo, hi = self._predict(plan, sp, r, o, pre, need, v, lo, hi, out)
            src = "surrogate" if not any_use else np.where(use, col.source, "surrogate")
        out["values"][m], out["sources"][m] = v, src
        if lo is not None:
            out["intervals"][m] = (lo, hi)
        elif sp.roofline and o["intervals"]:
            out["intervals"][m] = None  # the roofline model is deterministic: no interval, by design

    def _predict(self, plan: Plan, sp: Spec, r: _Run, o: dict, pre: dict, need: np.ndarray, v: np.ndarray,
                 lo, hi, out: dict):
        """The surrogate's values (into ``v[need]``) and 5-95 % interval of the rows ``need``."""
        m = sp.metric
        s = self.models.surrogate(m, sp.device, sp.setting)
        # device-independent features are a prefix of any setting's: computed once per query
        st_f = s.setting if s.setting is not None else plan.hw_setting
        X = self._features(r, st_f, need)
        if s.setting is None and st_f is not None:
            X = X[:, :self.n_base]
        raw = pre.get("raw", {}) if pre and np.array_equal(need, pre["mask"]) else {}
        point = s.predict(X, raw.get((s.stem, "mean")))
        v[need] = point
        out["target_sources"][m] = s.meta.get("target_source", "measured")
        if not s.noisy and o["intervals"]:
            iv = s.predict_interval(point)
            if iv is not None:  # a split-conformal interval from held-out residuals
                if lo is None:
                    lo, hi = np.full(r.n, np.nan), np.full(r.n, np.nan)
                lo[need], hi[need] = iv[:, 0], iv[:, 1]
        if s.noisy and o["quantiles"]:
            q = s.predict_quantiles(X, raw.get((s.stem, "quantile")), point=v[need])
            if o["intervals"]:
                if lo is None:
                    lo, hi = np.full(r.n, np.nan), np.full(r.n, np.nan)
                lo[need], hi[need] = q[:, 0], q[:, 2]
            if o["noise"]:
                v[need] = draw_quantiles(q, s.transform, o["rng"])
        return lo, hi

    def _features(self, r: _Run, setting: str | None, mask: np.ndarray) -> np.ndarray:
        from surrogates.features import features

        fk = (setting, mask.tobytes())
        X = r.features.get(fk)
        if X is None:
            try:
                X = r.features[fk] = features(self.space, r.checked(mask), setting,
                                              self.models.decode_tokens(setting) if setting is not None else 0)
            except ArchitectureError as e:
                raise QueryError(str(e)) from None
        return X

    def _table_mode_error(self, sp: Spec, r: _Run, use: np.ndarray, ids: list | None, col) -> None:
        i = int(np.flatnonzero(~use)[0])
        aid = ids[i] if ids is not None and ids[i] is not None else self.space.decode(r.enc[i]).id
        where = sp.metric if sp.device is None else f"{sp.metric} at {sp.device}/{sp.setting}"
        table_path, n_rows, release = self.describe_table()
        if table_path is None:
            raise QueryError(f"invalid mode: 'table'; allowed: 'auto' or 'surrogate' (release "
                             f"{release} has no table)")
        if r.rows[i] < 0:
            raise fail("architecture (mode='table')", aid, f"one of the {n_rows} profiled "
                       f"architectures of {table_path} (use mode='auto' or 'surrogate' to predict)")
        raise fail(f"architecture (mode='table', metric {where})", aid,
                   "an architecture with a value in the table: this cell was not measured")

    # ------------------------------------------------------------------ one row
    def _fused_walk(self, plan: Plan, r: _Run, o: dict) -> dict:
        """``{"mask", "raw": {(stem, role): output}}`` for a one-row execution (a single query): the
        outputs of every surrogate it consults, from one fused walk over all their trees; ``{}``
        when fewer than two models are needed or anything is unusual (the per-metric path then does
        the work and raises the proper errors)."""
        if o["mode"] == "table" or r.n != 1:  # measured: fusing several rows' walks is no faster
            return {}
        todo = []
        for sp in plan.specs:
            if sp.kind != "value" or sp.roofline:  # the roofline model needs no trees
                continue
            col = plan.columns.get(sp.metric)
            if o["mode"] != "surrogate" and col is not None and r.intab[0] and math.isfinite(col.median[r.rows[0]]):
                continue  # a table value
            if (sp.metric, sp.device, sp.setting) not in self.models.entries:
                return {}
            s = self.models.surrogate(sp.metric, sp.device, sp.setting)
            for role in (("mean", "quantile") if s.noisy and o["quantiles"] else ("mean",)):
                e = s.tree_ensemble(role)
                if e is None:
                    return {}
                todo.append(((s.stem, role), e))
        if len(todo) < 2:
            return {}
        key = tuple(k for k, _ in todo)
        fused = self.models.fused(key, [e for _, e in todo])
        mask = np.ones(1, bool)
        outs = fused.predict_one(self._features(r, plan.hw_setting, mask))
        return {} if outs is None else {"mask": mask, "raw": dict(zip(key, outs))}
