"""The values-only executor: what a NAS loop asks (``query_batch(..., noise=False, intervals=False)``),
with a fraction of the numpy calls of :class:`~benchmark.query.execute.Executor`.

A :class:`ValuesPath` is compiled once per (plan, mode): the table columns, the surrogates and
their trees, the roofline models and the exact metrics the plan needs. A call then builds the
features of the rows the table does not answer once and walks the trees of every surrogate of
the plan in one pass (:class:`FusedHeapWalk`). It returns exactly what ``Executor.run`` returns
for the same arguments — the same values bit for bit, the same sources and target sources —
or None where it does not apply (a plan with an overlay device's metric, a tree ensemble the walk
cannot read, mode ``table`` with a row the table lacks, many rows): the executor then answers,
and words any error. ``tests/test_query_fastpath.py`` checks the equality on the embedded release.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.spaces import SearchSpace
from benchmark.query.lookup import exact_values
from benchmark.query.models import ROOFLINE_OUTPUT
from benchmark.query.plan import Plan

__all__ = ["MAX_ROWS", "FusedHeapWalk", "ValuesPath"]

MAX_ROWS = 1024  # larger batches: per-call overhead no longer matters, the executor (XGBoost) answers
_HEAP_MAX_DEPTH = 10  # deeper trees: the executor (the heap doubles per level)


class FusedHeapWalk:
    """The trees of several :class:`surrogates.fastpredict.TreeEnsemble` walked in one pass over
    the rows, each tree laid out as a complete binary tree of the deepest ensemble's depth in heap
    order (node ``h``'s children at ``2h + 1``, ``2h + 2``; a leaf above the last level repeated
    below itself). Each ensemble's leaf values are then added to its base score as
    ``TreeEnsemble.predict`` adds them: float32, in tree order — the same numbers."""

    def __init__(self, ensembles: list) -> None:
        D = max(e.depth for e in ensembles)
        if not 1 <= D <= _HEAP_MAX_DEPTH or any(e.n_targets != 1 for e in ensembles):
            raise ValueError("unsupported ensembles: depth 1..10 and one target each")
        H = 2 ** (D + 1) - 1
        feats, thrs, self.parts = [], [], []
        trees = 0
        for e in ensembles:
            T = len(e.roots)
            node = np.empty((T, H), np.int64)  # the ensemble's node at each heap position
            node[:, 0] = e.roots
            for d in range(D):  # a leaf points to itself on both sides
                pos = np.arange(2 ** d - 1, 2 ** (d + 1) - 1)
                node[:, 2 * pos + 1] = e.left[node[:, pos]]
                node[:, 2 * pos + 2] = e.right[node[:, pos]]
            feats.append(e.feat[node].reshape(-1))
            thrs.append(e.thr[node].reshape(-1))  # split thresholds; leaf values below the last split
            self.parts.append((slice(trees, trees + T), e.base[0]))
            trees += T
        self.depth, self.n_trees = D, trees
        self.feat = np.concatenate(feats).astype(np.intp)
        self.thr = np.concatenate(thrs)
        off = np.arange(trees, dtype=np.int64) * H  # each tree's root
        self.first, self.step = off + 1, 1 - off
        self.root_feat, self.root_thr = self.feat[off], self.thr[off]

    def predict(self, X: np.ndarray) -> list[np.ndarray] | None:
        """Per ensemble, its ``predict(X)`` (float32, (N,)); None when a feature is NaN (missing
        values follow ``default_left``: the ensembles' own walk handles them)."""
        x = np.asarray(X, np.float32)
        if np.isnan(x).any():
            return None
        n = len(x)
        # global heap index G = tree offset + h; a child is 2G + (1 - offset) + (x >= split)
        G = self.first + (x[:, self.root_feat] >= self.root_thr)
        xf, base = x.reshape(-1), np.arange(0, n * x.shape[1], x.shape[1])[:, None]
        feat, thr, step = self.feat, self.thr, self.step
        for _ in range(self.depth - 1):
            c = xf[base + feat[G]] >= thr[G]
            G += G
            G += step
            G += c
        out = []
        for trees, b in self.parts:
            T = trees.stop - trees.start
            if n > 1:  # (trees + 1, N) summed along the outer axis: sequentially, in tree order
                acc = np.empty((T + 1, n), np.float32)
                acc[0] = b
                np.take(self.thr, G[:, trees].T, out=acc[1:])
                out.append(np.add.reduce(acc, axis=0, dtype=np.float32))
            else:  # one row: a 1-D reduction would sum pairwise, so accumulate
                acc = np.empty((1, T + 1), np.float32)
                acc[0, 0] = b
                np.take(self.thr, G[:, trees], out=acc[:, 1:])
                out.append(np.cumsum(acc, axis=1, dtype=np.float32)[:, -1])
        return out


class ValuesPath:
    """One plan and mode compiled for values-only batches (module docstring)."""

    def __init__(self, executor: Any, plan: Plan, mode: str):
        self.executor, self.plan, self.mode = executor, plan, mode
        self.space: SearchSpace = executor.space
        models = executor.models
        self.exact, self.imported, self.values, self.missing = [], [], [], []  # specs by kind, in the plan's order
        surrogates = []
        for sp in plan.specs:
            if sp.kind == "exact":
                dt = models.decode_tokens(sp.setting) if sp.metric == "flops" else 0
                self.exact.append((sp, dt))
            elif sp.kind == "imported":
                if mode == "table":
                    raise ValueError("imported metric in mode 'table'")  # the executor words the error
                self.imported.append(sp)
            elif sp.kind == "missing":
                self.missing.append(sp)
            elif sp.kind == "value" and not sp.transfer:
                col = plan.columns.get(sp.metric)
                roof = models.roofline(sp.device, sp.setting) if sp.roofline else None
                s = None
                if roof is None:
                    s = models.surrogate(sp.metric, sp.device, sp.setting) if mode != "table" else None
                    if s is not None:
                        if (s.setting if s.setting is not None else plan.hw_setting) != plan.hw_setting:
                            raise ValueError("surrogate at another setting")
                        surrogates.append(s)
                self.values.append((sp, col, roof, s))
            else:
                raise ValueError(f"spec kind {sp.kind!r}")
        self.surrogates = surrogates
        self.walk = None
        if surrogates:
            ensembles = [s.tree_ensemble("mean") for s in surrogates]
            if any(e is None for e in ensembles):
                raise ValueError("a booster the numpy walk cannot read")
            self.walk = FusedHeapWalk(ensembles)

    @classmethod
    def compile(cls, executor: Any, plan: Plan, mode: str) -> "ValuesPath | None":
        try:
            return cls(executor, plan, mode)
        except (ValueError, KeyError):  # not a plan this path serves (the executor raises what is wrong)
            return None

    def run(self, rows: np.ndarray, enc: np.ndarray, trusted: bool) -> dict | None:
        """``Executor.run(plan, rows, enc, mode, False, None, trusted=trusted, intervals=False)``'s
        result, or None to let the executor answer."""
        from benchmark import costs

        n = len(rows)
        if n == 0 or n > MAX_ROWS:
            return None
        intab = rows >= 0
        all_in = bool(intab.all())
        if not all_in and not trusted and not costs.all_valid(self.space, enc):
            return None  # the executor words which row is invalid
        table_mode, surrogate_mode = self.mode == "table", self.mode == "surrogate"
        # per value metric: the rows its table column answers (None: none; True: all)
        uses = []
        need_model = np.zeros(n, bool)
        for sp, col, roof, s in self.values:
            use = None
            if not surrogate_mode and col is not None and intab.any():
                med = col.median[np.where(intab, rows, 0)]
                use = intab & np.isfinite(med)
                use = True if use.all() else (use if use.any() else None)
            if table_mode and use is not True:
                return None  # a row or cell the table lacks: the executor's error
            if use is not True:
                need_model |= True if use is None else ~use
            uses.append(use)
        model_rows = None if need_model.all() else np.flatnonzero(need_model)
        batch = None
        if need_model.any() or (self.exact and not all_in) or self.imported:
            batch = costs.EncodedBatch(self.space, np.ascontiguousarray(enc), False)
        sub = None  # the cost batch of the rows a model answers
        preds: dict[str, np.ndarray] = {}
        if need_model.any():
            sub = batch if model_rows is None else costs.EncodedBatch(
                self.space, np.ascontiguousarray(enc[model_rows]), False)
            if self.walk is not None:
                preds = self._predict(sub)
                if preds is None:
                    return None
        out = {"values": {}, "sources": {}, "target_sources": {}, "intervals": {}, "missing": {}, "repeats": {},
               "no_interval": {}, "in_table": intab}
        for (sp, col, roof, s), use in zip(self.values, uses):
            m = sp.metric
            if use is True:
                out["values"][m], out["sources"][m] = col.median[rows], col.source
                continue
            if roof is not None:
                model, src = roof.evaluate(sub.encodings)[ROOFLINE_OUTPUT[m]], "modeled"
            else:
                model, src = preds[m], "surrogate"
                out["target_sources"][m] = s.meta.get("target_source", "measured")
            v = np.empty(n, np.float64) if model_rows is not None else None
            if v is not None:
                v[model_rows] = model
                model = v
            if use is None:
                out["values"][m], out["sources"][m] = np.asarray(model, np.float64), src
            else:  # a modeled device's rows are all 'modeled', from the table or its model
                out["values"][m] = np.where(use, col.median[np.where(use, rows, 0)], model)
                out["sources"][m] = src if roof is not None else np.where(use, col.source, src)
        for sp in self.missing:
            out["values"][sp.metric], out["sources"][sp.metric] = np.full(n, np.nan), "missing"
            out["missing"][sp.metric] = sp.reason
        for sp in self.imported:
            out["values"][sp.metric] = self.executor.models.imported(sp.metric, enc)
            out["sources"][sp.metric] = "imported"
        lookup = self.executor.lookup
        for sp, dt in self.exact:
            if all_in:
                v = lookup.exact(sp.metric, sp.setting, dt)[rows]
            elif not intab.any():
                v = np.array(exact_values(self.space, sp.metric, sp.setting, batch, dt), np.float64)
            else:
                v = np.empty(n, np.float64)
                v[intab] = lookup.exact(sp.metric, sp.setting, dt)[rows[intab]]
                v[~intab] = exact_values(self.space, sp.metric, sp.setting,
                                         costs.EncodedBatch(self.space, np.ascontiguousarray(enc[~intab]), False), dt)
            out["values"][sp.metric], out["sources"][sp.metric] = v, "exact"
        out["values"] = {sp.metric: out["values"][sp.metric] for sp in self.plan.specs}  # the plan's order
        return out

    def _predict(self, sub) -> dict[str, np.ndarray] | None:
        """Every surrogate's point prediction (original units, float64) at the rows of ``sub``."""
        from surrogates.features import features
        from surrogates.model import inverse_transform

        st = self.plan.hw_setting
        X = features(self.space, sub, st, self.executor.models.decode_tokens(st) if st is not None else 0)
        raws = self.walk.predict(X)
        if raws is None:
            return None
        return {s.metric: inverse_transform(s.transform, np.asarray(raw, np.float64).reshape(-1))
                for s, raw in zip(self.surrogates, raws)}
