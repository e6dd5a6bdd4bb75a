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

__all__ = ["feature_rows", "walk_heaps", "walk_bitvectors", "predict_bitvectors"]

_I, _F32, _F64 = "intp", "float32", "float64"
_FEATURE_MAP = f"{_F64}[:, ::1], {_I}[::1], {_I}, {_I}, {_I}, {_I}, {_I}, {_I}, {_I}, {_I}, {_I}[::1], " \
               f"{_F64}[:, ::1]"  # FeatureMap.kernel_args
_BITVECTORS = f"{_I}[::1], {_I}[::1], {_F32}[::1], {_I}[::1], uint64[:, ::1], {_I}, {_I}[::1], {_F32}[::1], " \
              f"{_I}[::1]"  # FusedHeapWalk.kernel_args of a bit-vector walk


@njit(f"void(int8[:, ::1], {_FEATURE_MAP}, {_F32}[:, ::1])", cache=True, nogil=True)
def feature_rows(enc, W, starts, hidden, tm, e, heads, mlps, lm, max_heads, max_mlp, nonlinear, table, out):
    """``FeatureMap(enc).astype(np.float32)`` into ``out`` (N, F) for valid encodings ``enc`` (N, L)."""
    N, L = enc.shape
    F = out.shape[1]
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


@njit(f"void({_F32}[:, ::1], {_I}[::1], {_F32}[::1], {_I}, {_I}[::1], {_F32}[:, ::1])", cache=True, nogil=True)
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


@njit(f"void({_F32}[:, ::1], {_BITVECTORS}, {_F32}[:, ::1])", cache=True, nogil=True)
def walk_bitvectors(x, feats, starts, thr, offsets, table, bits, lowest_bit, leaf_values, first, out):
    """:func:`walk_heaps` for the bit-vector layout of :class:`~benchmark.query.fastpath._Bitvectors`
    (trees of depth <= 4). Per row, each split feature's passed thresholds counted by bisection
    (``thr[starts[j]:starts[j + 1]]`` sorted, of feature ``feats[j]``) and the AND of the table rows
    they select (``bits`` = 8 or 16 bits a tree, trees packed into uint64 words); each tree's exit
    leaf is its lowest surviving bit, whose value is added to the row's sum, tree after tree. Four
    rows at a time, so that their sums' chains of float32 additions overlap."""
    N, W, T = x.shape[0], table.shape[1], first[-1]
    L = len(leaf_values) // T
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
            for j in range(len(feats)):
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
                    c0, c1, c2, c3 = np.intp(m8[0, t]), np.intp(m8[1, t]), np.intp(m8[2, t]), np.intp(m8[3, t])
                else:
                    c0 = np.intp(m8[0, 2 * t]) | (np.intp(m8[0, 2 * t + 1]) << 8)
                    c1 = np.intp(m8[1, 2 * t]) | (np.intp(m8[1, 2 * t + 1]) << 8)
                    c2 = np.intp(m8[2, 2 * t]) | (np.intp(m8[2, 2 * t + 1]) << 8)
                    c3 = np.intp(m8[3, 2 * t]) | (np.intp(m8[3, 2 * t + 1]) << 8)
                o = t * L
                v0, v1 = leaf_values[o + lowest_bit[c0]], leaf_values[o + lowest_bit[c1]]
                v2, v3 = leaf_values[o + lowest_bit[c2]], leaf_values[o + lowest_bit[c3]]
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


@njit(f"void(int8[:, ::1], {_FEATURE_MAP}, {_BITVECTORS}, {_F64}[:, ::1])", cache=True, nogil=True)
def predict_bitvectors(enc, W, starts, hidden, tm, e, heads, mlps, lm, max_heads, max_mlp, nonlinear, table,
                       feats, thr_starts, thr, offsets, masks, bits, lowest_bit, leaf_values, first, out):
    """:func:`feature_rows` then :func:`walk_bitvectors` in one call, the sums as float64 (exactly)."""
    x = np.empty((enc.shape[0], W.shape[1] - 1), np.float32)
    feature_rows(enc, W, starts, hidden, tm, e, heads, mlps, lm, max_heads, max_mlp, nonlinear, table, x)
    sums = np.empty(out.shape, np.float32)
    walk_bitvectors(x, feats, thr_starts, thr, offsets, masks, bits, lowest_bit, leaf_values, first, sums)
    for k in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[k, i] = sums[k, i]
