"""Evaluate an XGBoost tree ensemble with numpy, for single queries and the small batches of NAS loops.

``Booster.inplace_predict`` costs a few hundred microseconds per call whatever the number of rows
(argument serialisation, ctypes), which dominates a single query that consults several models.
:class:`TreeEnsemble` reads the booster's own JSON dump and walks all trees at once with numpy,
reproducing XGBoost's arithmetic: features compared in float32 (``x < split`` goes left, a
missing value follows ``default_left``), leaf values added to the base score in tree order in
float32. Without missing features the walk runs on a compact heap layout of the trees
(:meth:`TreeEnsemble._heap_layout`). ``tests/test_surrogates.py`` checks that it returns the
booster's predictions bit for bit.
Only numerical splits of ``gbtree`` models are supported; anything else raises ``ValueError``
and the caller keeps using the booster.
"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["TreeEnsemble", "FusedEnsembles"]

_HEAP_MAX_DEPTH = 10  # deeper trees keep the pointer walk (a complete tree of depth d has 2**(d+1) - 1 nodes)


def _floats(s: str) -> np.ndarray:
    return np.array([float(x) for x in s.strip("[]").split(",")], np.float32)


class TreeEnsemble:
    def __init__(self, booster):
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        gb = learner["gradient_booster"]
        if gb.get("name") != "gbtree":
            raise ValueError(f"invalid booster: {gb.get('name')!r}; allowed: 'gbtree'")
        trees = gb["model"]["trees"]
        self.n_targets = max(1, int(learner["learner_model_param"].get("num_target", "1")))
        self.base = _floats(learner["learner_model_param"]["base_score"])
        if self.base.size == 1 and self.n_targets > 1:
            self.base = np.repeat(self.base, self.n_targets)
        info = np.asarray(gb["model"]["tree_info"], np.int64)
        left, right, feat, thr, dleft, roots = [], [], [], [], [], []
        off = 0
        for t in trees:
            if any(st != 0 for st in t["split_type"]) or int(t["tree_param"].get("size_leaf_vector", "1")) > 1:
                raise ValueError("invalid tree: categorical splits or vector leaves are not supported")
            lc = np.asarray(t["left_children"], np.int64)
            rc = np.asarray(t["right_children"], np.int64)
            leaf = lc == -1
            roots.append(off)
            left.append(np.where(leaf, np.arange(len(lc)), lc) + off)  # a leaf points to itself
            right.append(np.where(leaf, np.arange(len(lc)), rc) + off)
            feat.append(np.where(leaf, 0, np.asarray(t["split_indices"], np.int64)))
            thr.append(np.asarray(t["split_conditions"], np.float32))  # at a leaf: the leaf value
            dleft.append(np.asarray(t["default_left"], bool))
            off += len(lc)
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.feat, self.thr, self.default_left = np.concatenate(feat), np.concatenate(thr), np.concatenate(dleft)
        self.is_leaf = self.left == np.arange(off)
        self.children = np.stack([self.left, self.right], 1)  # [node, 0] left, [node, 1] right
        self._flat_children = self.children.reshape(-1)  # [2 * node + (x >= split)]
        self.roots = np.asarray(roots, np.int64)
        self.tree_target = info
        self._target_trees = [np.flatnonzero(info == k) for k in range(self.n_targets)]
        self.depth = self._depth()
        self._heap = None  # the walk's compact layout (:meth:`_heap_layout`), built on first use

    def _depth(self) -> int:
        """Number of splits on the longest root-to-leaf path (the steps :meth:`predict` takes)."""
        frontier, d = self.roots[~self.is_leaf[self.roots]], 0
        while frontier.size:
            d += 1
            child = np.concatenate([self.left[frontier], self.right[frontier]])
            frontier = child[~self.is_leaf[child]]
        return d

    def _heap_layout(self) -> tuple | None:
        """Every tree as a complete binary tree of ``depth`` levels in heap order (node ``h``'s
        children at ``2h + 1``, ``2h + 2``; a leaf above the last level is repeated below itself,
        so either way leads to it): per position only the split feature (int8 where it fits) and
        the float32 threshold, the leaf values at the last level. No child pointers and a third of
        the bytes, so the walk's working set stays in cache between the queries of a NAS loop.
        None for deep trees (the heap grows as 2**depth)."""
        if self._heap is None:
            D, T = self.depth, len(self.roots)
            if not 1 <= D <= _HEAP_MAX_DEPTH:
                self._heap = False
                return None
            H = 2 ** (D + 1) - 1
            node = np.empty((T, H), np.int64)  # the original node at each heap position
            node[:, 0] = self.roots
            for d in range(D):  # level by level: a leaf points to itself on both sides
                pos = np.arange(2 ** d - 1, 2 ** (d + 1) - 1)
                node[:, 2 * pos + 1] = self.left[node[:, pos]]
                node[:, 2 * pos + 2] = self.right[node[:, pos]]
            fdt = np.int8 if self.feat.max(initial=0) < 128 else np.int32
            feat = self.feat[node].astype(fdt).reshape(-1)  # 0 at leaves (never decides: both ways lead there)
            thr = self.thr[node].reshape(-1)  # split thresholds; leaf values at the last level
            off = np.arange(T, dtype=np.int64) * H  # each tree's root
            self._heap = (D, feat, thr, off + 1, 1 - off, feat[off].astype(np.intp), thr[off])
        return self._heap or None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N,) for one target, (N, n_targets) otherwise; float32 like the booster."""
        x = np.asarray(X, np.float32)
        n = len(x)
        heap = None if np.isnan(x).any() else self._heap_layout()
        if heap is not None:  # the usual case: no missing feature
            # global heap index G = tree offset + h; a child is 2G + (1 - offset) + (x >= split)
            D, feat, thr, first, step, root_feat, root_thr = heap
            if n == 1:  # one row (single queries): 1-D arrays, fewer operations
                x0 = x[0]
                G = first + (x0[root_feat] >= root_thr)
                for _ in range(D - 1):
                    c = x0[feat[G]] >= thr[G]
                    G += G
                    G += step
                    G += c
            else:
                G = first + (x[:, root_feat] >= root_thr)
                xf, base = x.reshape(-1), np.arange(0, n * x.shape[1], x.shape[1])[:, None]
                for _ in range(D - 1):
                    c = xf[base + feat[G]] >= thr[G]
                    G += G
                    G += step
                    G += c
            leaves = thr
        else:  # a missing feature follows default_left (or single-leaf / very deep trees)
            G = np.broadcast_to(self.roots, (n, len(self.roots)))
            rows = np.arange(n)[:, None]
            for _ in range(self.depth):
                v = x[rows, self.feat[G]]
                go_left = np.where(np.isnan(v), self.default_left[G], v < self.thr[G])
                G = self.children[G, (~go_left).astype(np.intp)]
            leaves = self.thr
        G = G.reshape(n, len(self.roots))
        if self.n_targets == 1 and n > 1:
            # (trees + 1, N): the base score, then each tree's leaf values; a reduction over the first
            # (outer) axis adds row after row — sequentially, in tree order, as XGBoost adds, and
            # vectorised over the architectures (a quarter of the cumulative sum's time from 20 rows)
            acc = np.empty((len(self.roots) + 1, n), np.float32)
            acc[0] = self.base[0]
            np.take(leaves, G.T, out=acc[1:])
            return np.add.reduce(acc, axis=0, dtype=np.float32)
        if self.n_targets == 1:  # one row: a 1-D reduction would sum pairwise, so accumulate instead
            acc = np.empty((n, len(self.roots) + 1), np.float32)
            acc[:, 0] = self.base[0]
            np.take(leaves, G, out=acc[:, 1:])  # (N, trees) leaf values, float32, after the base score
            return np.cumsum(acc, axis=1, dtype=np.float32)[:, -1]  # sequential, in tree order, as XGBoost adds
        values = leaves[G]  # (N, trees) leaf values, float32
        out = np.empty((n, self.n_targets), np.float32)
        for k in range(self.n_targets):
            acc = np.concatenate([np.full((n, 1), self.base[k], np.float32), values[:, self._target_trees[k]]], 1)
            out[:, k] = np.cumsum(acc, axis=1, dtype=np.float32)[:, -1]
        return out


class FusedEnsembles:
    """Several ensembles walked together for one row (one single query consults several models):
    one pass over all their trees, then each ensemble's sums exactly as :meth:`TreeEnsemble.predict`
    does them — the same numbers, with a fraction of the numpy calls. (For several rows, measured,
    the fused walk was no faster than the separate ones.)"""

    def __init__(self, ensembles: list[TreeEnsemble]):
        self.parts = []
        ch, feat, thr, roots = [], [], [], []
        nodes = trees = 0
        for e in ensembles:
            ch.append(e._flat_children + nodes)  # child ids shifted by the node offset
            feat.append(e.feat)
            thr.append(e.thr)
            roots.append(e.roots + nodes)
            self.parts.append((e.base, [idx + trees for idx in e._target_trees], e.n_targets))
            nodes += len(e.thr)
            trees += len(e.roots)
        self.children = np.concatenate(ch)
        self.feat, self.thr, self.roots = np.concatenate(feat), np.concatenate(thr), np.concatenate(roots)
        self.depth = max(e.depth for e in ensembles)

    def predict_one(self, X: np.ndarray) -> list[np.ndarray] | None:
        """Per ensemble, what its ``predict(X)`` returns for a one-row ``X``; None if a feature is NaN."""
        x0 = np.asarray(X, np.float32)[0]
        if np.isnan(x0).any():
            return None
        node, ch, feat, thr = self.roots, self.children, self.feat, self.thr
        for _ in range(self.depth):
            node = ch[2 * node + (x0[feat[node]] >= thr[node])]
        values = thr[node]
        out = []
        for base, idxs, k in self.parts:
            sums = [np.cumsum(np.concatenate([base[j:j + 1], values[idx]]), dtype=np.float32)[-1]
                    for j, idx in enumerate(idxs)]
            out.append(np.array(sums[:1], np.float32) if k == 1 else np.array([sums], np.float32))
        return out
