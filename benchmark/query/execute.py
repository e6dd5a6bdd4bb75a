"""The executor: runs a :class:`~benchmark.query.plan.Plan` over table rows and encodings.

One code path for single queries and batches. Per metric of the plan: exact metrics from
:mod:`benchmark.costs` (the table's rows from a cache); values from the table's column where the
architecture was profiled (mode ``auto``/``table``), else from the modeled device's roofline model
or the surrogate; imported metrics from their predictor. Everything per-query is computed once: the validated cost batch of the rows the
table lacks, their surrogate features (device-independent features are a prefix of any setting's,
and they hold the exact params/FLOPs the exact metrics then reuse), the roofline model's outputs.
For one row, the trees of every surrogate consulted are walked together (``FusedEnsembles``: the
same numbers, a fraction of the numpy calls).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmark.seeds import check_seed
from benchmark.spaces import ArchitectureError, SearchSpace
from benchmark.query.lookup import TableLookup, exact_values
from benchmark.query.models import ROOFLINE_OUTPUT, Models, draw_quantiles, draw_repeats
from benchmark.query.plan import Plan, Spec
from benchmark.query.results import QueryError, fail

__all__ = ["QUERY_MODES", "Executor"]

QUERY_MODES = ("auto", "table", "surrogate")  # where answers may come from (not settings.MODES)
_EXACT_FEATURE = {"params": -2, "params_no_embedding": -1, "flops": 0}  # column offsets in the features


class _Run:
    """The state of one execution: which rows the table holds, and what was computed for the
    others. A row mask is a boolean array, or None for every row (the common cases — a batch the
    table lacks entirely, or mode ``surrogate`` — then need no mask operations at all)."""

    def __init__(self, space: SearchSpace, rows: np.ndarray, enc: np.ndarray, trusted: bool):
        self.space, self.rows, self.enc, self.trusted = space, rows, enc, trusted
        self.n = len(rows)
        self.intab = rows >= 0
        k = int(np.count_nonzero(self.intab))
        self.any_in, self.all_in = k > 0, k == self.n
        self.outside = None if not self.any_in else ~self.intab  # the rows the table lacks
        self._batches: dict[Any, Any] = {}
        self.features: dict[tuple, np.ndarray] = {}
        self.roof: dict[tuple, tuple] = {}

    @staticmethod
    def key(mask: np.ndarray | None) -> Any:
        return None if mask is None else mask.tobytes()

    def checked(self, mask: np.ndarray | None | bool = False):
        """Validated cost batch (:class:`benchmark.costs.EncodedBatch`) of ``enc[mask]`` (default: the
        rows the table lacks), built once per mask."""
        from benchmark import costs

        mask = self.outside if mask is False else mask
        if mask is not None and mask.all():
            mask = None
        key = self.key(mask)
        b = self._batches.get(key)
        if b is None:
            enc = np.ascontiguousarray(self.enc if mask is None else self.enc[mask])
            if self.trusted or costs.all_valid(self.space, enc):  # validated Architectures, or one vectorised check
                b = costs.EncodedBatch(self.space, enc, False)
            else:
                try:
                    b = costs.encoded_batch(enc, self.space)  # words the error
                except ArchitectureError as e:
                    raise QueryError(str(e)) from None
            self._batches[key] = b
        return b


def _same_rows(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return (a if a is not None else b) is None or bool((a if a is not None else b).all())
    return np.array_equal(a, b)


def _put(v: np.ndarray | None, mask: np.ndarray | None, x: np.ndarray, n: int) -> np.ndarray:
    """``x`` written at the rows ``mask`` (None: all) of ``v`` (None: a new float64 array of ``n``
    NaN)."""
    if mask is None:  # every x given here is a new array (a prediction, a fancy-indexed column, a draw)
        return np.asarray(x, dtype=np.float64)
    if v is None:
        v = np.full(n, np.nan)
    v[mask] = x
    return v


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
        if not isinstance(mode, str) or mode not in QUERY_MODES:
            raise fail("mode", mode, list(QUERY_MODES))
        for name, flag in (("noise", noise), ("intervals", intervals), ("repeats", want_repeats)):
            if not isinstance(flag, (bool, np.bool_)):
                raise fail(name, flag, "True or False")
        # seed=None with noise draws fresh (documented); any other seed is checked even without noise
        if seed is not None and not isinstance(seed, np.random.Generator):
            check_seed(seed, "seed", QueryError)
        r = _Run(self.space, rows, enc, trusted)
        opts = {"mode": mode, "noise": bool(noise), "intervals": bool(intervals), "ids": ids,
                "quantiles": bool(intervals) or bool(noise), "repeats": bool(want_repeats),
                "rng": np.random.default_rng(seed) if noise else None}
        out = {"values": {}, "sources": {}, "target_sources": {}, "intervals": {}, "missing": {}, "repeats": {},
               "no_interval": {}, "in_table": r.intab}
        if not trusted and not r.all_in:
            r.checked()  # validate user-given encodings up front, whatever the metrics
        pre = self._fused_walk(plan, r, opts) if r.n == 1 and opts["quantiles"] else {}
        # exact metrics last: for rows not in the table they reuse the surrogate features if computed
        for sp in plan.specs:
            if sp.kind == "missing":
                out["values"][sp.metric], out["sources"][sp.metric] = np.full(r.n, np.nan), "missing"
                out["missing"][sp.metric] = sp.reason
            elif sp.kind == "value":
                self._value(plan, sp, r, opts, pre, out)
            elif sp.kind == "imported":
                self._imported(sp, r, opts, out)
        for sp in plan.specs:
            if sp.kind == "exact":
                out["values"][sp.metric], out["sources"][sp.metric] = self._exact(sp, plan.hw_setting, r), "exact"
        if plan.has_exact:
            out["values"] = {sp.metric: out["values"][sp.metric] for sp in plan.specs}  # the plan's order
        return out

    # ------------------------------------------------------------------ exact metrics
    def _exact(self, sp: Spec, hw_setting: str | None, r: _Run) -> np.ndarray:
        dt = self.models.decode_tokens(sp.setting) if sp.metric == "flops" else 0
        if r.n == 0:
            return np.empty(0, np.float64)
        if r.all_in:
            return self.lookup.exact(sp.metric, sp.setting, dt)[r.rows]
        X = r.features.get((hw_setting, r.key(r.outside))) if hw_setting is not None else None
        if X is not None and sp.metric in _EXACT_FEATURE and (sp.metric != "flops" or sp.setting == hw_setting):
            part = X[:, self.n_base + _EXACT_FEATURE[sp.metric]]  # features() computed exactly these
        else:
            part = exact_values(self.space, sp.metric, sp.setting, r.checked(), dt)
        if r.outside is None:
            return np.array(part, dtype=np.float64)
        out = np.empty(r.n, np.float64)
        out[r.intab] = self.lookup.exact(sp.metric, sp.setting, dt)[r.rows[r.intab]]
        out[r.outside] = part
        return out

    # ------------------------------------------------------------------ imported predictors
    def _imported(self, sp: Spec, r: _Run, o: dict, out: dict) -> None:
        """Another benchmark's predictor (deterministic; never noised, never from a table)."""
        if o["mode"] == "table" and r.n:
            raise fail("mode (metric {!r} is imported: HW-GPT-Bench's predictor, no table)".format(sp.metric),
                       "table", ["auto", "surrogate"])
        v = self.models.imported(sp.metric, r.checked(None).encodings) if r.n else np.empty(0, np.float64)
        out["values"][sp.metric], out["sources"][sp.metric] = v, "imported"
        if o["intervals"]:
            out["intervals"][sp.metric] = None
            out["no_interval"][sp.metric] = sp.reason

    # ------------------------------------------------------------------ table + models
    def _table_rows(self, col, r: _Run, mode: str) -> np.ndarray | None:
        """The rows answered by the table's column (a mask), or None when there are none."""
        if mode == "surrogate" or col is None or not r.any_in:
            return None
        use = np.isfinite(col.median[r.rows]) if r.all_in else \
            r.intab & np.isfinite(col.median[np.where(r.intab, r.rows, 0)])
        return use if use.any() else None

    def _value(self, plan: Plan, sp: Spec, r: _Run, o: dict, pre: dict, out: dict) -> None:
        m, n = sp.metric, r.n
        col = plan.columns.get(m)
        use = self._table_rows(col, r, o["mode"]) if r.any_in and col is not None else None
        everything = use is not None and bool(use.all())  # every row from the table
        if o["mode"] == "table" and n and not everything:
            self._table_mode_error(sp, r, use if use is not None else np.zeros(n, bool), o["ids"], col)
        v = lo = hi = None
        if use is not None:
            ru, at = r.rows[use], (None if everything else use)
            v = _put(None, at, col.median[ru], n)
            if col.lo is not None and o["intervals"]:
                lo, hi = _put(None, at, col.lo[ru], n), _put(None, at, col.hi[ru], n)
            if o["noise"] and col.repeats is not None:
                v = _put(v, at, draw_repeats(col.repeats[ru], o["rng"]), n)
            if o["repeats"] and col.repeats is not None:
                out["repeats"][m] = col.repeats[ru]
        src: Any = col.source if col is not None else "surrogate"
        need = None if use is None else ~use  # the rows a model answers (None: all)
        if n == 0 or everything:
            pass
        elif sp.roofline:  # a modeled device: its model, exactly (deterministic, no interval)
            rk = (sp.device, sp.setting, r.key(need))
            if rk not in r.roof:
                r.roof[rk] = self.models.roofline(sp.device, sp.setting).evaluate(r.checked(need).encodings)
            v = _put(v, need, r.roof[rk][ROOFLINE_OUTPUT[m]], n)
            src = "modeled"
        elif sp.transfer:  # an overlay device: its latency model, with the interval of its CV residuals
            tp = self.models.transfer(sp.device, sp.setting, m)
            pv, plo, phi = tp.predict(r.checked(need).encodings)
            v = _put(v, need, tp.draw(pv, o["rng"]) if o["noise"] else pv, n)
            if o["intervals"]:
                lo, hi = _put(lo, need, plo, n), _put(hi, need, phi, n)
            out["target_sources"][m] = "measured"
            src = "surrogate" if use is None else np.where(use, col.source, "surrogate")
        else:
            v, lo, hi = self._predict(plan, sp, r, o, pre, need, v, lo, hi, out)
            src = "surrogate" if use is None else np.where(use, col.source, "surrogate")
        out["values"][m], out["sources"][m] = (v if v is not None else np.empty(0, np.float64)), src
        if lo is not None:
            out["intervals"][m] = (lo, hi)
        elif sp.roofline and o["intervals"]:
            out["intervals"][m] = None  # the roofline model is deterministic: no interval, by design

    def _predict(self, plan: Plan, sp: Spec, r: _Run, o: dict, pre: dict, need: np.ndarray | None, v, lo, hi,
                 out: dict) -> tuple:
        """``(v, lo, hi)`` with the surrogate's values and 5-95 % interval at the rows ``need``."""
        m, n = sp.metric, r.n
        s = plan.surrogates.get(m)
        if s is None:
            s = plan.surrogates[m] = self.models.surrogate(m, sp.device, sp.setting)
        # device-independent features are a prefix of any setting's: computed once per query
        st_f = s.setting if s.setting is not None else plan.hw_setting
        X = self._features(r, st_f, need)
        if s.setting is None and st_f is not None:
            X = X[:, :self.n_base]
        raw = pre["raw"] if pre and _same_rows(need, pre["mask"]) else {}
        point = s.predict(X, raw.get((s.stem, "mean")))
        v = _put(v, need, point, n)
        out["target_sources"][m] = s.meta.get("target_source", "measured")
        if not s.noisy and o["intervals"]:
            iv = s.predict_interval(point)
            if iv is not None:  # a split-conformal interval from held-out residuals
                lo, hi = _put(lo, need, iv[:, 0], n), _put(hi, need, iv[:, 1], n)
        if s.noisy and o["quantiles"]:
            q = s.predict_quantiles(X, raw.get((s.stem, "quantile")), point=point)
            if o["intervals"]:
                lo, hi = _put(lo, need, q[:, 0], n), _put(hi, need, q[:, 2], n)
            if o["noise"]:
                v = _put(v, need, draw_quantiles(q, s.transform, o["rng"]), n)
        return v, lo, hi

    def _features(self, r: _Run, setting: str | None, mask: np.ndarray | None) -> np.ndarray:
        from surrogates.features import features

        if mask is not None and mask.all():
            mask = None
        fk = (setting, r.key(mask))
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
        if o["mode"] == "table" or r.n != 1 or not o["quantiles"]:
            return {}  # measured: fusing several rows' walks, or two models' (no quantiles), is no faster
        todo = []
        for sp in plan.specs:
            if sp.kind != "value" or sp.roofline or sp.transfer:  # these models need no trees
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
        outs = fused.predict_one(self._features(r, plan.hw_setting, None))
        return {} if outs is None else {"mask": None, "raw": dict(zip(key, outs))}
