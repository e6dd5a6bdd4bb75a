"""Compiled kernels of the values-only path (numba): the feature map and the tree walks as loops
over the rows, a few ns per row and tree and about a microsecond per call, where the numpy path
(:mod:`benchmark.query.fastpath`) makes some twenty numpy calls of a few µs each.

They compute exactly what the numpy path computes. The features: each encoding column's row of the
:class:`~benchmark.query.fastpath.FeatureMap`'s table summed (integers and halves: exact in any
order), ``mlp_hidden`` their product, the per-layer maxima and the params/FLOPs table, then rounded
to float32 as ``astype`` rounds. The walks: each tree's exit leaf in the
:class:`~benchmark.query.fastpath.FusedHeapWalk`'s layouts (right when ``x >= threshold``), each
row's leaf values added in float32 to the ensemble's base score, tree after tree, the order in which
``TreeEnsemble.predict`` adds them. So the values are the same bit for bit
(``tests/test_query_fastpath.py`` checks them against the executor), and a run of a NAS loop is
the same with or without them.

Imported only on request (:func:`benchmark.query.fastpath.load_compiled`, which
:class:`benchmark.moo.problems.Problem` calls): importing numba takes most of a second, worth it
for a loop of many small queries, not for one query. The kernels are compiled for their
signatures on import and cached on disk (numba's ``cache=True``): the first import on a machine
compiles them (seconds), later ones read the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM's cttz (undefined for 0: never asked)

__all__ = ["feature_rows", "walk_heaps", "walk_bitvectors", "predict_bitvectors", "predict_off_table"]

# Few arguments: a call's cost grows with their number, most when a NAS loop's own work between
# queries has evicted the caches (24 arrays and integers: 1.8 µs warm, ~35 µs cold; 6: 0.6 and ~23)
_FEATURE_MAP = "float64[:, ::1], float64[:, ::1], intp[::1]"  # FeatureMap.kernel_args
_BITVECTORS = "uint64[:, ::1], float32[::1], intp[::1]"  # FusedHeapWalk.kernel_args of a bit-vector walk


@njit(f"void(int8[:, ::1], {_FEATURE_MAP}, float32[:, ::1])", cache=True, nogil=True)
def feature_rows(enc, W, table, ints, out):
    """``FeatureMap(enc).astype(np.float32)`` into ``out`` (N, F) for valid encodings ``enc`` (N, L):
    ``W`` the map's table of per-column rows, ``table`` its params/FLOPs table, ``ints`` the
    columns of mlp_hidden, total_mlp_ratio, embed_dim, n_head_0, mlp_ratio_0, the number of layer
    columns, max_heads and max_mlp_ratio, then each encoding column's first row and the
    params/FLOPs columns."""
    N, L = enc.shape
    F = out.shape[1]
    hidden, tm, e, heads, mlps, lm, max_heads, max_mlp = ints[0], ints[1], ints[2], ints[3], ints[4], ints[5], \
        ints[6], ints[7]
    starts, nonlinear = ints[8:8 + L], ints[8 + L:]
    s = np.empty(W.shape[1])
    for i in range(N):
        s[:] = 0.0
        for j in range(L):
            r = enc[i, j] + starts[j]
            for c in range(W.shape[1]):
                s[c] += W[r, c]
        s[hidden] = s[tm] * s[e]
        m = s[heads]
        for c in range(heads + 1, heads + lm):
            m = max(m, s[c])
        s[max_heads] = m
        m = s[mlps]
        for c in range(mlps + 1, mlps + lm):
            m = max(m, s[c])
        s[max_mlp] = m
        key = int(s[F])
        for c in range(len(nonlinear)):
            s[nonlinear[c]] = table[key, c]
        for c in range(F):
            out[i, c] = np.float32(s[c])


@njit("void(float32[:, ::1], intp[::1], float32[::1], intp, intp[::1], float32[:, ::1])", cache=True, nogil=True)
def walk_heaps(x, feat, thr, depth, first, out):
    """Per ensemble ``k``, the sum of its trees' leaves for each row of ``x`` (N, features) into
    ``out[k]`` (N,): trees ``first[k] .. first[k + 1] - 1`` of the heaps ``feat``/``thr``
    (``2**(depth+1) - 1`` positions each, :class:`~benchmark.query.fastpath.FusedHeapWalk`), the
    first of them the ensemble's base score; each walked from the root down."""
    N = x.shape[0]
    H = 2 ** (depth + 1) - 1
    for k in range(len(first) - 1):
        base = first[k] * H
        for i in range(N):
            out[k, i] = thr[base]
        for t in range(first[k] + 1, first[k + 1]):  # tree after tree: the float32 sums in their order
            o = t * H
            for i in range(N):
                h = 0
                for _ in range(depth):
                    h = 2 * h + 1 + np.intp(x[i, feat[o + h]] >= thr[o + h])
                out[k, i] += thr[o + h]


@njit(f"void(float32[:, ::1], {_BITVECTORS}, float32[:, ::1])", cache=True, nogil=True)
def walk_bitvectors(x, table, values, ints, out):
    """:func:`walk_heaps` for the bit-vector layout of :class:`~benchmark.query.fastpath._Bitvectors`
    (trees of depth <= 4): ``ints`` holds the bits a tree (8 or 16), the number ``nf`` of split
    features, those features, where each one's sorted thresholds start in ``values`` (nf + 1),
    where its rows start in ``table``, and where each ensemble's trees start (the base score's
    "tree" first); ``values`` the thresholds, then the leaf values tree after tree. Per row, each
    feature's passed thresholds are counted by bisection and the table rows they select ANDed
    (trees packed into uint64 words); each tree's exit leaf is its lowest surviving bit, whose
    value is added to the row's sum, tree after tree. Four rows at a time, so that their sums'
    chains of float32 additions overlap."""
    N, W = x.shape[0], table.shape[1]
    bits, nf = ints[0], ints[1]
    feats, starts, offsets, first = ints[2:2 + nf], ints[2 + nf:3 + 2 * nf], ints[3 + 2 * nf:3 + 3 * nf], \
        ints[3 + 3 * nf:]
    thr, leaf_values = values[:starts[nf]], values[starts[nf]:]
    L = len(leaf_values) // first[-1]
    masks = np.empty((4, W), np.uint64)
    m8 = masks.view(np.uint8)
    for i0 in range(0, N, 4):
        n = min(4, N - i0)
        for r in range(4):
            if r >= n:  # past the last row: a copy of the first row's masks (valid leaves, sums not kept)
                for w in range(W):
                    masks[r, w] = masks[0, w]
                continue
            for w in range(W):
                masks[r, w] = np.uint64(0xFFFFFFFFFFFFFFFF)
            for j in range(nf):
                v = x[i0 + r, feats[j]]
                lo, hi = starts[j], starts[j + 1]
                while lo < hi:  # the thresholds <= v, i.e. the splits that send v right
                    mid = (lo + hi) >> 1
                    if thr[mid] <= v:
                        lo = mid + 1
                    else:
                        hi = mid
                row = offsets[j] + lo - starts[j]
                for w in range(W):
                    masks[r, w] &= table[row, w]
        for k in range(len(first) - 1):
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for t in range(first[k], first[k + 1]):  # the base score's "tree" first, then the trees in order
                if bits == 8:
                    c0, c1, c2, c3 = np.uint32(m8[0, t]), np.uint32(m8[1, t]), np.uint32(m8[2, t]), np.uint32(m8[3, t])
                else:
                    c0 = np.uint32(m8[0, 2 * t]) | (np.uint32(m8[0, 2 * t + 1]) << 8)
                    c1 = np.uint32(m8[1, 2 * t]) | (np.uint32(m8[1, 2 * t + 1]) << 8)
                    c2 = np.uint32(m8[2, 2 * t]) | (np.uint32(m8[2, 2 * t + 1]) << 8)
                    c3 = np.uint32(m8[3, 2 * t]) | (np.uint32(m8[3, 2 * t + 1]) << 8)
                o = t * L
                v0, v1 = leaf_values[o + trailing_zeros(c0)], leaf_values[o + trailing_zeros(c1)]
                v2, v3 = leaf_values[o + trailing_zeros(c2)], leaf_values[o + trailing_zeros(c3)]
                if t == first[k]:
                    a0, a1, a2, a3 = v0, v1, v2, v3
                else:
                    a0 += v0
                    a1 += v1
                    a2 += v2
                    a3 += v3
            out[k, i0] = a0
            if n > 1:
                out[k, i0 + 1] = a1
            if n > 2:
                out[k, i0 + 2] = a2
            if n > 3:
                out[k, i0 + 3] = a3


@njit(f"void(int8[:, ::1], {_FEATURE_MAP}, {_BITVECTORS}, float64[:, ::1])", cache=True, nogil=True)
def predict_bitvectors(enc, W, fm_table, fm_ints, table, values, ints, out):
    """:func:`feature_rows` then :func:`walk_bitvectors` in one call, the sums as float64 (exactly)."""
    x = np.empty((enc.shape[0], W.shape[1] - 1), np.float32)
    feature_rows(enc, W, fm_table, fm_ints, x)
    sums = np.empty(out.shape, np.float32)
    walk_bitvectors(x, table, values, ints, sums)
    for k in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[k, i] = sums[k, i]


@njit(f"int64(int8[:, ::1], int64[::1], int64[::1], {_FEATURE_MAP}, {_BITVECTORS}, float64[:, ::1])", cache=True,
      nogil=True)
def predict_off_table(enc, key_weights, table_keys, W, fm_table, fm_ints, table, values, ints, out):
    """:func:`predict_bitvectors` for rows none of which is a table row; else the first row that is
    (its key ``sum((enc + 1) * key_weights)`` found by bisection in the sorted ``table_keys``), with
    nothing predicted: the table answers that row and the caller asks the general path. Returns -1
    when it predicted. One call for what a NAS loop asks most: the membership test and the models."""
    for i in range(enc.shape[0]):
        k = np.int64(0)
        for j in range(enc.shape[1]):
            k += (np.int64(enc[i, j]) + 1) * key_weights[j]
        lo, hi = 0, len(table_keys)
        while lo < hi:
            mid = (lo + hi) >> 1
            if table_keys[mid] < k:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(table_keys) and table_keys[lo] == k:
            return i
    predict_bitvectors(enc, W, fm_table, fm_ints, table, values, ints, out)
    return -1
