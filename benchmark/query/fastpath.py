"""The values-only executor: what a NAS loop asks (``query_batch(..., noise=False, intervals=False)``),
with a fraction of the numpy calls of :class:`~benchmark.query.execute.Executor`.

A :class:`ValuesPath` is compiled once per (plan, mode): the table columns, the surrogates and
their trees, the roofline models and the exact metrics the plan needs. A call then builds the
features of the rows the table does not answer once and walks the trees of every surrogate of
the plan in one pass (:class:`FusedHeapWalk`) — in a few numpy calls, or, once
:func:`load_compiled` has imported :mod:`benchmark.query.compiled` (numba, where installed: a NAS
loop's :class:`benchmark.moo.problems.Problem` does), in one compiled call for the features and
the walk together. It returns exactly what ``Executor.run`` returns
for the same arguments — the same values bit for bit, the same sources and target sources —
or None where it does not apply (a plan with an overlay device's metric, a tree ensemble the walk
cannot read, mode ``table`` with a row the table lacks, many rows): the executor then answers,
and words any error. ``tests/test_query_fastpath.py`` checks the equality on the embedded release.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark import costs
from benchmark.spaces import SearchSpace
from benchmark.query.lookup import exact_values
from benchmark.query.models import ROOFLINE_OUTPUT
from benchmark.query.plan import Plan
from surrogates.model import inverse_transform

__all__ = ["MAX_ROWS", "FusedHeapWalk", "FeatureMap", "feature_function", "ValuesPath", "load_compiled"]

MAX_ROWS = 1024  # larger batches: per-call overhead no longer matters, the executor (XGBoost) answers
_HEAP_MAX_DEPTH = 10  # deeper trees: the executor (the heap doubles per level)
_BITVECTOR_MAX_DEPTH = 4  # up to 16 leaves a tree: one uint8/uint16 mask per tree (deeper: the level walk)
# rows x trees beyond which XGBoost's own predict beats the numpy walk in this thread's CPU time
# (XGBoost's other threads not counted): on the embedded release (602 trees of depth 3) the
# bit-vector walk took 0.9 ms for 200 rows and 5.9 ms for 1,000, XGBoost 1.5 and 4.9 ms
# (4.3 and 15 ms of wall time on a shared core); the compiled walk (0.2 and 1.1-1.5 ms) walks
# every batch up to MAX_ROWS
_WALK_BUDGET = 300_000


_COMPILED: Any = None  # benchmark.query.compiled once load_compiled() imported it


def load_compiled() -> bool:
    """Import the compiled kernels (:mod:`benchmark.query.compiled`, numba) once per process, so that
    every values-only path uses them from then on; False where numba is not installed (the numpy
    path answers). Worth it for a loop of many small queries; a second or so the first time."""
    global _COMPILED
    if _COMPILED is None:
        try:
            from benchmark.query import compiled
        except ImportError:  # numba not installed (or not for this numpy)
            return False
        except (OSError, RuntimeError) as e:  # e.g. no writable place for numba's cache
            import warnings

            warnings.warn(f"the compiled query kernels could not be loaded ({e}); the numpy path answers")
            return False
        _COMPILED = compiled
    return True


def _heap(ensembles: list) -> tuple[int, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Every tree of ``ensembles`` as a complete binary tree of the deepest one's depth ``D`` in heap
    order (node ``h``'s children at ``2h + 1``, ``2h + 2``; a leaf above the last level repeated below
    itself, so either way leads to it): per ensemble, the split feature and the float32 threshold at
    each position ((trees, 2**(D+1) - 1) each; at the last level the leaf values), and which of the
    ``2**D - 1`` positions above the last level hold a real split ((trees, 2**D - 1) bool)."""
    D = max(e.depth for e in ensembles)
    if not 1 <= D <= _HEAP_MAX_DEPTH or any(e.n_targets != 1 for e in ensembles):
        raise ValueError("unsupported ensembles: depth 1..10 and one target each")
    H = 2 ** (D + 1) - 1
    feats, thrs, splits = [], [], []
    for e in ensembles:
        node = np.empty((len(e.roots), H), np.int64)  # the ensemble's node at each heap position
        node[:, 0] = e.roots
        for d in range(D):  # a leaf points to itself on both sides
            pos = np.arange(2 ** d - 1, 2 ** (d + 1) - 1)
            node[:, 2 * pos + 1] = e.left[node[:, pos]]
            node[:, 2 * pos + 2] = e.right[node[:, pos]]
        feats.append(e.feat[node])
        thrs.append(e.thr[node])
        inner = node[:, :2 ** D - 1]
        splits.append(e.left[inner] != inner)
    return D, feats, thrs, splits


class _Bitvectors:
    """The exit leaf of every tree from per-feature bit masks (QuickScorer's idea, Lucchese et al.,
    SIGIR 2015), for heaps of depth <= ``_BITVECTOR_MAX_DEPTH``. A split sends a row right when
    ``x >= threshold`` and then rules out the leaves of its left subtree; the exit leaf is the
    leftmost leaf no split ruled out. Per feature, the splits on it sorted by threshold: a row's
    value passes a prefix of them, so the AND of their masks is read from a table by the length of
    that prefix; one AND over the features gives every tree's surviving leaves, the lowest set bit
    the exit leaf. Fewer and more regular memory accesses than walking level by level."""

    def __init__(self, D: int, feat: np.ndarray, thr: np.ndarray, split: np.ndarray):
        T, K, L = len(feat), 2 ** D - 1, 2 ** D
        self.dtype = np.dtype(np.uint8 if L <= 8 else np.uint16)
        full = (1 << L) - 1
        left_leaves = np.empty(K, self.dtype)  # per split position: every leaf but its left subtree's
        for k in range(K):
            lo = hi = 2 * k + 1
            while lo < K:
                lo, hi = 2 * lo + 1, 2 * hi + 2
            left_leaves[k] = full & ~(((1 << (hi - K + 1)) - 1) ^ ((1 << (lo - K)) - 1))
        t, k = np.nonzero(split)
        f, v = feat[t, k], thr[t, k]
        width = -(-T * self.dtype.itemsize // 8) * 8 // self.dtype.itemsize  # trees padded to whole uint64
        tables, feats, thresholds, starts, offsets, rows, n_thr = [], [], [], [], [], 0, 0
        for j in np.unique(f):
            on = np.flatnonzero(f == j)
            values, rank = np.unique(v[on], return_inverse=True)
            starts.append(n_thr)
            n_thr += len(values)
            feats.append(np.full(len(values), j, np.intp))
            thresholds.append(values)
            table = np.full((len(values) + 1, width), full, self.dtype)  # row b: the b lowest thresholds passed
            for r in range(len(values)):
                table[r + 1] = table[r]
                at = on[rank == r]
                np.bitwise_and.at(table[r + 1], t[at], left_leaves[k[at]])
            tables.append(table)
            offsets.append(rows)
            rows += len(table)
        self.n_trees = T
        self.feat = np.concatenate(feats) if feats else np.zeros(0, np.intp)
        self.thr = np.concatenate(thresholds).astype(np.float32) if thresholds else np.zeros(0, np.float32)
        self.starts = np.asarray(starts, np.intp)
        self.offsets = np.asarray(offsets, np.intp)
        self.table = np.concatenate(tables).view(np.uint64) if tables else None
        self.lowest_bit = np.zeros(1 << L, np.intp)  # mask -> index of its lowest set bit (0 never occurs)
        for m in range(1, 1 << L):
            self.lowest_bit[m] = (m & -m).bit_length() - 1
        self.leaf_base = np.arange(T, dtype=np.intp) * L
        # the compiled walk's form: each split feature's first threshold, and one past the last
        self.feats = self.feat[self.starts] if len(self.starts) else np.zeros(0, np.intp)
        self.ends = np.append(self.starts, len(self.thr)).astype(np.intp)
        self.bits = self.dtype.itemsize * 8

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """(N, trees) index of each row's exit leaf among the last level's positions, tree by tree."""
        if self.table is None:  # no split at all: the leftmost leaf
            return np.broadcast_to(self.leaf_base, (len(x), self.n_trees))
        passed = np.add.reduceat(x[:, self.feat] >= self.thr, self.starts, axis=1, dtype=np.intp)
        masks = np.bitwise_and.reduce(self.table[passed + self.offsets], axis=1)
        return self.lowest_bit[masks.view(self.dtype)[:, :self.n_trees]] + self.leaf_base


def _sum_trees(values: np.ndarray, segments: list[slice]) -> list[np.ndarray]:
    """Per segment of rows of ``values`` ((base + trees, N) float32: each ensemble's base score, then
    its trees' leaf values), their sum as ``TreeEnsemble.predict`` adds them: float32, in tree order."""
    if values.shape[1] > 1:  # summed along the outer axis: sequentially, row after row
        return [np.add.reduce(values[seg], axis=0, dtype=np.float32) for seg in segments]
    # one row: a 1-D reduction would sum pairwise, so accumulate
    return [np.cumsum(values[seg, 0], dtype=np.float32)[-1:] for seg in segments]


class FusedHeapWalk:
    """The trees of several :class:`surrogates.fastpredict.TreeEnsemble` walked together in one pass
    over the rows — by bit vectors (:class:`_Bitvectors`) up to depth ``_BITVECTOR_MAX_DEPTH`` unless
    ``bitvectors=False``, else level by level in the :func:`_heap` layout — the same leaves and sums
    as their own walks."""

    def __init__(self, ensembles: list, bitvectors: bool = True) -> None:
        D, feats, thrs, splits = _heap(ensembles)
        H = 2 ** (D + 1) - 1
        self.depth, self.n_trees = D, sum(len(f) for f in feats)
        # each ensemble's base score as a one-position "tree" before its trees: the sum then starts there
        feat, thr, self.segments, trees = [], [], [], 0
        for e, f, t in zip(ensembles, feats, thrs):
            feat += [np.zeros((1, H), np.int64), f]
            thr += [np.full((1, H), e.base[0], np.float32), t]
            self.segments.append(slice(trees, trees + 1 + len(f)))
            trees += 1 + len(f)
        self.feat = np.concatenate(feat).reshape(-1).astype(np.intp)
        self.thr = np.concatenate(thr).reshape(-1)
        off = np.arange(trees, dtype=np.int64) * H  # each tree's root
        self.root_left = off + 1
        # global heap index G = tree offset + h: its left child is 2G + 1 - offset, the right one next to it
        self.left = (2 * np.arange(trees * H, dtype=np.int64) + 1 - np.repeat(off, H))
        self.root_feat, self.root_thr = self.feat[off], self.thr[off]
        # the same trees for the bit-vector walk (a base "tree" has no split: its leftmost leaf)
        self.bits = None
        if bitvectors and D <= _BITVECTOR_MAX_DEPTH:
            K = 2 ** D - 1
            split = np.concatenate([np.concatenate([np.zeros((1, K), bool), s]) for s in splits])
            self.bits = _Bitvectors(D, self.feat.reshape(trees, H)[:, :K], self.thr.reshape(trees, H)[:, :K], split)
            self.leaf_values = self.thr.reshape(trees, H)[:, K:].reshape(-1)
        # the compiled walk's arguments (benchmark.query.compiled; none where no tree has a split)
        self.first = np.asarray([seg.start for seg in self.segments] + [trees], np.intp)
        self.kernel_args = (self.feat, self.thr, self.depth, self.first)
        if self.bits is not None:
            b = self.bits
            self.kernel_args = None if b.table is None else (
                b.table, np.concatenate([b.thr, self.leaf_values]),
                np.concatenate([[b.bits, len(b.feats)], b.feats, b.ends, b.offsets, self.first]).astype(np.intp))

    def predict(self, x: np.ndarray) -> list[np.ndarray] | np.ndarray:
        """Per ensemble, its ``predict(x)`` (float32, (N,)) for float32 features without NaN: a list,
        or the (ensembles, N) array of them from the compiled walk (:mod:`benchmark.query.compiled`)."""
        c, b = _COMPILED, self.bits
        if c is not None and self.kernel_args is not None:
            out, x = np.empty((len(self.segments), len(x)), np.float32), np.ascontiguousarray(x)
            if b is None:
                c.walk_heaps(x, *self.kernel_args, out)
            else:
                c.walk_bitvectors(x, *self.kernel_args, out)
            return out
        if self.bits is not None:
            return _sum_trees(np.take(self.leaf_values, self.bits.leaves(x).T), self.segments)
        n = len(x)
        G = self.root_left + (x[:, self.root_feat] >= self.root_thr)  # (N, trees): the position reached
        xf, base = x.reshape(-1), np.arange(0, n * x.shape[1], x.shape[1])[:, None]
        feat, thr, left = self.feat, self.thr, self.left
        for _ in range(self.depth - 1):
            c = xf[base + feat[G]] >= thr[G]  # right when x >= split
            G = left[G]
            G += c
        return _sum_trees(np.take(thr, G.T), self.segments)  # a base "tree" holds its score everywhere


class FeatureMap:
    """:func:`surrogates.features.features` of valid encodings at one setting, bit for bit, in a
    handful of numpy calls. Every feature but five is a sum over the encoding's columns of a value
    that depends on that column's choice alone (the choices themselves, the sums of heads and MLP
    ratios and their widths, the KV-cache elements): one table lookup per column and one sum. Of the
    others, ``mlp_hidden`` is a product of two of them and the per-layer maxima are two ``max``
    calls; ``params``, ``params_no_embedding`` and the setting's FLOPs depend on the architecture
    only through (embed_dim, n_layer, bias, sum of heads, sum of MLP ratios) — all that
    :class:`benchmark.costs.EncodedBatch` keeps — so they are read from a table that ``features``
    itself fills, once, from one architecture per such tuple; the tuple's index is one more summed
    column. All values are integers or halves far below 2**53, so every sum is exact whatever its
    order. Built only where the table stays small (``MAX_KEYS``), and checked against ``features``
    on a seeded sample when built (ValueError on any difference)."""

    MAX_KEYS = 1 << 18  # t and s (m and l: features itself)

    def __init__(self, space: SearchSpace, setting: str | None, decode_tokens: int):
        from benchmark.settings import Setting
        from surrogates.features import feature_names, features

        sp, lm = space, space.max_layers
        names = feature_names(sp, setting)
        col = {name: i for i, name in enumerate(names)}
        nE, nL, nB = len(sp.embed_dim_choices), len(sp.n_layer_choices), len(sp.bias_choices)
        Hmax, Mmax = max(sp.n_head_choices) * lm, max(sp.mlp_ratio_choices) * lm
        stride_h, stride_b = Mmax + 1, (Mmax + 1) * (Hmax + 1)
        stride_l = stride_b * nB
        stride_e = stride_l * nL
        n_keys = stride_e * nE
        if n_keys > self.MAX_KEYS:
            raise ValueError("too many (embed_dim, n_layer, bias, heads, MLP) tuples for a table")
        kv = None
        if setting is not None:
            st = Setting.parse(setting)
            context = st.seq_len + (int(decode_tokens) - 1) / 2 if st.mode == "decode" else st.seq_len
            kv = st.batch * context * sp.head_size  # per head
        F = len(names)
        # per encoding column, a block of rows: PAD (-1) first, then one row per choice
        sizes = [nE, nL, *[len(sp.mlp_ratio_choices)] * lm, *[len(sp.n_head_choices)] * lm, nB]
        starts = np.concatenate([[0], np.cumsum(np.asarray(sizes) + 1)[:-1]])
        W = np.zeros((int(sum(sizes)) + len(sizes), F + 1))  # column F: the tuple's index
        for j, e in enumerate(sp.embed_dim_choices):
            W[starts[0] + 1 + j, [col["embed_dim"], F]] = e, j * stride_e
        for j, n in enumerate(sp.n_layer_choices):
            W[starts[1] + 1 + j, [col["n_layer"], F]] = n, j * stride_l
        for j, b in enumerate(sp.bias_choices):
            W[starts[-1] + 1 + j, [col["bias"], F]] = float(b), j * stride_b
        for i in range(lm):
            for j, m in enumerate(sp.mlp_ratio_choices):
                W[starts[2 + i] + 1 + j, [col[f"mlp_ratio_{i}"], col["total_mlp_ratio"], F]] = m, m, m
            for j, h in enumerate(sp.n_head_choices):
                r = starts[2 + lm + i] + 1 + j
                W[r, [col[f"n_head_{i}"], col["total_heads"], col["attn_width"], F]] = h, h, h * sp.head_size, \
                    h * stride_h
                if kv is not None:
                    W[r, col["kv_elems"]] = kv * h
        self.W, self.starts, self.F = W, starts.astype(np.int16) + 1, F
        self.hidden, self.tm, self.e = col["mlp_hidden"], col["total_mlp_ratio"], col["embed_dim"]
        self.max_heads, self.max_mlp = col["max_heads"], col["max_mlp_ratio"]
        self.heads = slice(col["n_head_0"], col["n_head_0"] + lm)
        self.mlps = slice(col["mlp_ratio_0"], col["mlp_ratio_0"] + lm)
        self.nonlinear = [col[k] for k in ("params", "params_no_embedding", "flops_setting") if k in col]
        # the table of params / FLOPs: features() of one architecture per (embed, n_layer, bias, sums)
        reps = _representatives(sp)
        X = features(sp, reps, setting, decode_tokens)
        self.table = np.full((n_keys, len(self.nonlinear)), np.nan)
        self.table[self.W[reps + self.starts, F].sum(1).astype(np.intp)] = X[:, self.nonlinear]
        self.kernel_args = (self.W, self.table, np.asarray(  # compiled.feature_rows'
            [self.hidden, self.tm, self.e, self.heads.start, self.mlps.start, lm, self.max_heads, self.max_mlp,
             *self.starts, *self.nonlinear], np.intp))
        rng = np.random.default_rng(0x66656174)
        check = np.concatenate([reps, sp.encode_many(sp.sample(rng, n=256))])
        for i in range(0, len(check), 2048):  # chunks: the lookup holds (rows, columns, features)
            part = check[i:i + 2048]
            if not np.array_equal(self(part), features(sp, part, setting, decode_tokens)):
                raise ValueError("the feature map disagrees with surrogates.features")

    def _lookup(self, enc: np.ndarray) -> np.ndarray:
        """The summed columns (N, F + 1) of valid encodings."""
        return self.W[enc + self.starts].sum(1)

    def __call__(self, enc: np.ndarray) -> np.ndarray:
        """``features(space, enc, setting, decode_tokens)`` of valid encodings (N, L)."""
        S = self._lookup(enc)
        X = S[:, :self.F]
        X[:, self.hidden] = X[:, self.tm] * X[:, self.e]
        X[:, self.max_heads] = X[:, self.heads].max(1)
        X[:, self.max_mlp] = X[:, self.mlps].max(1)
        X[:, self.nonlinear] = self.table[S[:, self.F].astype(np.intp)]
        return X

    def float32(self, enc: np.ndarray) -> np.ndarray:
        """``self(enc).astype(np.float32)``, by the compiled kernel once :func:`load_compiled` ran."""
        if _COMPILED is None:
            return self(enc).astype(np.float32)
        out = np.empty((len(enc), self.F), np.float32)
        _COMPILED.feature_rows(np.ascontiguousarray(enc, np.int8), *self.kernel_args, out)
        return out


def _representatives(sp: SearchSpace) -> np.ndarray:
    """One encoding per (embed_dim, n_layer, bias, sum of heads, sum of MLP ratios) that exists."""
    from benchmark.spaces import PAD

    lm, rows = sp.max_layers, []
    for li, n in enumerate(sp.n_layer_choices):
        per_sum = []
        for choices in (sp.mlp_ratio_choices, sp.n_head_choices):
            reach = {0: ()}  # sum over n layers -> one choice-index tuple reaching it
            for _ in range(n):
                reach = {s + c: t + (j,) for s, t in reach.items() for j, c in enumerate(choices)}
            per_sum.append([list(t) + [PAD] * (lm - n) for t in reach.values()])
        for ei in range(len(sp.embed_dim_choices)):
            for bi in range(len(sp.bias_choices)):
                rows += [[ei, li, *m, *h, bi] for m in per_sum[0] for h in per_sum[1]]
    return np.array(rows, np.int8)


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
        # a loop's usual question: every metric from a surrogate (unless the table answers the row)
        self.surrogates_only = mode != "table" and not (self.exact or self.imported or self.missing) and \
            all(s is not None for _, _, _, s in self.values)
        self.target_sources = {s.metric: s.meta.get("target_source", "measured") for s in surrogates}
        transforms = {s.transform for s in surrogates}
        self.transform = transforms.pop() if len(transforms) == 1 else None  # one for all: one call
        self.walk, self.fused = None, None
        if surrogates:
            ensembles = [s.tree_ensemble("mean") for s in surrogates]
            if any(e is None for e in ensembles):
                raise ValueError("a booster the numpy walk cannot read")
            self.walk = FusedHeapWalk(ensembles)
            st = plan.hw_setting
            self.features = feature_function(self.space, st, models.decode_tokens(st) if st is not None else 0)
            if isinstance(self.features, FeatureMap) and self.walk.bits is not None and self.walk.kernel_args:
                self.fused = self.features.kernel_args + self.walk.kernel_args  # compiled.predict_bitvectors'

    @classmethod
    def compile(cls, executor: Any, plan: Plan, mode: str) -> "ValuesPath | None":
        try:
            return cls(executor, plan, mode)
        except (ValueError, KeyError):  # not a plan this path serves (the executor raises what is wrong)
            return None

    def models_off_table(self, enc: np.ndarray, keys: tuple[np.ndarray, np.ndarray]) -> dict | None:
        """:meth:`models_only` for validated encodings without their table rows: one compiled call
        tests table membership (``keys``: :meth:`Inputs.table_keys`) and predicts; None when a row
        is in the table (in mode auto), or without the compiled kernels."""
        c, n = _COMPILED, len(enc)
        if c is None or not self.fused or not self.surrogates_only or n == 0 or n > MAX_ROWS:
            return None
        z = np.empty((len(self.surrogates), n), np.float64)
        w, table_keys = keys
        if self.mode == "surrogate":  # table rows are predicted too
            table_keys = table_keys[:0]
        if c.predict_off_table(np.ascontiguousarray(enc, np.int8), w, table_keys, *self.fused, z) >= 0:
            return None
        return self._in_units(z)

    def models_only(self, rows: np.ndarray, enc: np.ndarray) -> dict | None:
        """``run(rows, enc, True)["values"]`` when every value comes from the surrogates (a loop's usual
        question: no table row asked, or surrogate mode), without the rest of ``run``'s answer; else
        None. Validated encodings only."""
        n = len(rows)
        if not self.surrogates_only or n == 0 or n > MAX_ROWS or (self.mode != "surrogate" and (rows >= 0).any()):
            return None
        return self._predict(enc)

    def run(self, rows: np.ndarray, enc: np.ndarray, trusted: bool) -> dict | None:
        """``Executor.run(plan, rows, enc, mode, False, None, trusted=trusted, intervals=False)``'s
        result, or None to let the executor answer."""
        n = len(rows)
        if n == 0 or n > MAX_ROWS:
            return None
        intab = rows >= 0
        any_in = bool(intab.any())
        all_in = any_in and bool(intab.all())
        if not all_in and not trusted and not costs.all_valid(self.space, enc):
            return None  # the executor words which row is invalid
        if self.surrogates_only and (not any_in or self.mode == "surrogate"):  # no table value: models only
            preds = self._predict(enc)
            return None if preds is None else {
                "values": preds, "sources": dict.fromkeys(preds, "surrogate"),
                "target_sources": dict(self.target_sources), "intervals": {}, "missing": {}, "repeats": {},
                "no_interval": {}, "in_table": intab}
        # per value metric: the rows its table column answers (None: none; True: all)
        uses, need_model = [], None  # need_model: rows a model answers for some metric (None: none, True: all)
        for sp, col, roof, s in self.values:
            use = None
            if any_in and self.mode != "surrogate" and col is not None:
                use = intab & np.isfinite(col.median[np.where(intab, rows, 0)])
                use = True if use.all() else (use if use.any() else None)
            if self.mode == "table" and use is not True:
                return None  # a row or cell the table lacks: the executor's error
            if use is None:
                need_model = True
            elif use is not True and need_model is not True:
                need_model = ~use if need_model is None else need_model | ~use
            uses.append(use)
        model_rows = None if need_model is None or need_model is True or need_model.all() \
            else np.flatnonzero(need_model)
        sub = enc if model_rows is None else enc[model_rows]  # the rows a model answers
        preds: dict[str, np.ndarray] = {}
        if need_model is not None and self.walk is not None:
            preds = self._predict(sub)
            if preds is None:
                return None
        out = {"values": {}, "sources": {}, "target_sources": {}, "intervals": {}, "missing": {}, "repeats": {},
               "no_interval": {}, "in_table": intab}
        values, sources = out["values"], out["sources"]
        for (sp, col, roof, s), use in zip(self.values, uses):
            m = sp.metric
            if use is True:
                values[m], sources[m] = col.median[rows], col.source
                continue
            if roof is not None:
                model, src = roof.evaluate(np.ascontiguousarray(sub))[ROOFLINE_OUTPUT[m]], "modeled"
            else:
                model, src = preds[m], "surrogate"
                out["target_sources"][m] = s.meta.get("target_source", "measured")
            if model_rows is not None:
                v = np.empty(n, np.float64)
                v[model_rows] = model
                model = v
            if use is None:
                values[m], sources[m] = np.asarray(model, np.float64), src
            else:  # a modeled device's rows are all 'modeled', from the table or its model
                values[m] = np.where(use, col.median[np.where(use, rows, 0)], model)
                sources[m] = src if roof is not None else np.where(use, col.source, src)
        for sp in self.missing:
            values[sp.metric], sources[sp.metric] = np.full(n, np.nan), "missing"
            out["missing"][sp.metric] = sp.reason
        for sp in self.imported:
            values[sp.metric], sources[sp.metric] = self.executor.models.imported(sp.metric, enc), "imported"
        if self.exact:
            self._exact(rows, enc, intab, any_in, all_in, values, sources)
        if len(self.plan.specs) > 1:
            out["values"] = {sp.metric: values[sp.metric] for sp in self.plan.specs}  # the plan's order
        return out

    def _exact(self, rows, enc, intab, any_in: bool, all_in: bool, values: dict, sources: dict) -> None:
        """Exact metrics: the table's rows from the lookup's cache, the others computed."""
        lookup = self.executor.lookup
        outside = None
        if not all_in:
            outside = costs.EncodedBatch(self.space, np.ascontiguousarray(enc[~intab] if any_in else enc), False)
        for sp, dt in self.exact:
            if all_in:
                v = lookup.exact(sp.metric, sp.setting, dt)[rows]
            elif not any_in:
                v = np.array(exact_values(self.space, sp.metric, sp.setting, outside, dt), np.float64)
            else:
                v = np.empty(len(rows), np.float64)
                v[intab] = lookup.exact(sp.metric, sp.setting, dt)[rows[intab]]
                v[~intab] = exact_values(self.space, sp.metric, sp.setting, outside, dt)
            values[sp.metric], sources[sp.metric] = v, "exact"

    def _predict(self, enc: np.ndarray) -> dict[str, np.ndarray] | None:
        """Every surrogate's point prediction (original units, float64) for valid encodings, in the
        plan's order."""
        c = _COMPILED
        if c is not None and self.fused:  # features and walk in one call
            z = np.empty((len(self.surrogates), len(enc)), np.float64)
            c.predict_bitvectors(np.ascontiguousarray(enc, np.int8), *self.fused, z)  # the kernel's signature
        else:
            if c is None and len(enc) * self.walk.n_trees > _WALK_BUDGET:
                X, base = np.ascontiguousarray(self.features(enc)), self.executor.n_base  # device-independent: prefix
                return {s.metric: s.predict(X if s.setting is not None or self.plan.hw_setting is None else X[:, :base])
                        for s in self.surrogates}  # the surrogates' own choice (XGBoost for many rows)
            if isinstance(self.features, FeatureMap):  # finite features
                x = self.features.float32(enc)
            else:
                x = self.features(enc).astype(np.float32)
                if np.isnan(x).any():
                    return None  # a missing value follows default_left: the surrogates' own walk
            z = np.asarray(self.walk.predict(x), np.float64)  # (surrogates, N)
        return self._in_units(z)

    def _in_units(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """The walks' sums ``z`` (surrogates, N) in each surrogate's units, in the plan's order."""
        if self.transform is not None:
            return dict(zip(self.target_sources, inverse_transform(self.transform, z)))
        return {s.metric: inverse_transform(s.transform, v) for s, v in zip(self.surrogates, z)}


_FEATURE_MAPS: dict[tuple, Any] = {}


def feature_function(space: SearchSpace, setting: str | None, decode_tokens: int):
    """``enc -> features(space, enc, setting, decode_tokens)`` for valid encodings: a
    :class:`FeatureMap` (cached) where one can be built, else ``features`` itself."""
    key = (space.name, setting, int(decode_tokens))
    f = _FEATURE_MAPS.get(key)
    if f is None:
        try:
            f = FeatureMap(space, setting, decode_tokens)
        except (ValueError, KeyError):  # a space too large for the table, or features it does not know
            from benchmark import costs
            from surrogates.features import features

            def f(enc, sp=space):
                return features(sp, costs.EncodedBatch(sp, np.ascontiguousarray(enc), False), setting, decode_tokens)
        _FEATURE_MAPS[key] = f
    return f
