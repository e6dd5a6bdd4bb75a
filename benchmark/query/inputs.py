"""Architectures in any accepted form -> table rows and encodings, with no Python object per row
where it can be avoided (a NAS loop sends thousands of them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmark.costs import EncodedBatch
from benchmark.spaces import Architecture, ArchitectureError, SearchSpace
from benchmark.query.results import QueryError, fail

__all__ = ["Inputs"]

_INT = {int}
_FEW_ROWS = 32  # up to this many rows, table rows are found by one dict lookup per row (no numpy call per row)


class Inputs:
    """Resolves architectures of ``space`` against a table (``ids``: its architecture ids in row
    order, ``encodings``: its ``(N, L)`` encodings; both None without a table)."""

    def __init__(self, space: SearchSpace, ids: list[str] | None, encodings: np.ndarray | None):
        self.space = space
        self.table_ids = ids or []
        self.table_encodings = encodings
        self.row = {a: i for i, a in enumerate(self.table_ids)}
        self._hash_keys = None
        self._id_parser = None
        self._dict_parser = None
        self._bytes_rows = None  # encoding bytes -> table row, built on first use
        self._table_keys: tuple | None = None  # (table_keys(),) once computed (which may be None)

    def one(self, arch: Any) -> tuple[int, np.ndarray | None, str]:
        """(row or -1, encoding or None (table rows), id) of one architecture in any accepted form."""
        if isinstance(arch, str):
            row = self.row.get(arch, -1)
            if row >= 0:
                return row, None, arch
        try:
            a = self.space.validate(arch)
        except ArchitectureError as e:
            raise QueryError(str(e)) from None
        row = self.row.get(a.id, -1)
        return row, (None if row >= 0 else a.encoding()), a.id

    def many(self, archs: Any) -> tuple[np.ndarray, np.ndarray]:
        """(rows (N,) int64 with -1 = not in the table, encodings (N, L) int8)."""
        return self.many_with_ids(archs)[:2]

    def many_with_ids(self, archs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`many` and, when every input was a canonical id (a table id or one :meth:`parse_id`
        accepts: spelled as :attr:`Architecture.id` spells it), those ids as an object array (a frame's
        id column, not assembled again from the encodings); else None."""
        L = self.space.encoding_length
        if isinstance(archs, EncodedBatch):  # validated once by its maker: only the space is checked
            if archs.space.name != self.space.name:
                raise fail("space of the encoded batch", archs.space.name, f"{self.space.name!r} (this benchmark's space)")
            enc = archs.encodings
            enc = enc if enc.dtype == np.int8 else enc.astype(np.int8)
            return self.rows_of_encodings(enc), enc, None
        if isinstance(archs, np.ndarray) and archs.ndim == 2 and archs.dtype.kind in "iu":
            if archs.shape[1] != L:
                raise fail("encoding width", archs.shape[1], f"{L} (encoding_length of space {self.space.name!r})")
            if len(archs) and archs.dtype != np.int8 and (archs.min() < -1 or archs.max() > 127):
                from benchmark import costs

                try:
                    costs.params(archs, space=self.space)  # words the error
                except ArchitectureError as e:
                    raise QueryError(str(e)) from None
            enc = archs.astype(np.int8, copy=False)  # int8 values outside the choices: the executor's check
            return self.rows_of_encodings(enc), enc, None
        if isinstance(archs, np.ndarray) and archs.ndim == 2:
            raise fail("encoding dtype", str(archs.dtype), "an integer dtype (choice indices, -1 = padded layer)")
        if isinstance(archs, np.ndarray) and archs.ndim == 1 and archs.dtype.kind in "OU":
            archs = archs.tolist()
        if isinstance(archs, (str, Mapping, Architecture)) or not isinstance(archs, (Sequence, np.ndarray)):
            raise fail("archs", type(archs).__name__, "a sequence of architectures (Architecture objects, ids, "
                                                      "HW-GPT-Bench dicts) or an (N, encoding_length) integer array")
        n = len(archs)
        rows = np.full(n, -1, np.int64)
        enc = np.empty((n, L), np.int8)
        tab = self.table_encodings
        get = self.row.get
        # encodings parsed without an Architecture, flat (one list of small ints: no per-row list survives
        # to be tracked by the garbage collector), and where
        parsed, parsed_at, dicts_at = [], [], []
        canonical = True  # every input so far a canonical id
        for i, a in enumerate(archs):
            if isinstance(a, str):
                r = get(a, -1)
                if r >= 0:
                    rows[i] = r
                    enc[i] = tab[r]
                    continue
                row = self.parse_id(a)
                if row is not None:  # a valid canonical id of this space that is not in the table
                    parsed += row
                    parsed_at.append(i)
                    continue
            canonical = False
            if type(a) is dict:
                row = self.parse_dict(a)
                if row is not None:  # a valid HW-GPT-Bench dict: its table row is looked up below
                    parsed += row
                    parsed_at.append(i)
                    dicts_at.append(i)
                    continue
            try:
                v = self.space.validate(a)
            except ArchitectureError as e:
                raise QueryError(f"architecture {i} of {n}: {e}") from None
            rows[i] = get(v.id, -1)
            enc[i] = v.encoding()
        if parsed:
            enc[parsed_at] = np.fromiter(parsed, np.int8, len(parsed)).reshape(-1, L)
        if dicts_at:
            rows[dicts_at] = self.rows_of_encodings(enc[dicts_at])
        ids = None
        if canonical and n:
            ids = np.empty(n, object)
            ids[:] = archs
        return rows, enc, ids

    def parse_dict(self, d: dict) -> list[int] | None:
        """Encoding of a HW-GPT-Bench dict without building an Architecture; None when it is not
        plainly valid (the caller then lets ``space.validate`` accept other forms — numpy integers,
        padded values of other types — or word the error). Accepted here: int sizes among the
        choices, list or tuple per-layer values (entries beyond ``sample_n_layer`` ignored, as
        :meth:`SearchSpace.from_hwgpt_dict` ignores them), a bool or ``"True"``/``"False"`` bias."""
        p = self._dict_parser
        if p is None:
            sp = self.space
            index = lambda choices: {c: i for i, c in enumerate(choices)}  # noqa: E731
            p = self._dict_parser = (index(sp.embed_dim_choices), index(sp.n_layer_choices),
                                     index(sp.mlp_ratio_choices), index(sp.n_head_choices),
                                     {str(b): i for i, b in enumerate(sp.bias_choices)},
                                     {n: [-1] * (sp.max_layers - n) for n in sp.n_layer_choices})
        embed_t, layer_t, mlp_t, head_t, bias_t, pads = p
        try:
            e, nl, mlp, head, bias = (d["sample_embed_dim"], d["sample_n_layer"], d["sample_mlp_ratio"],
                                      d["sample_n_head"], d["sample_bias"])
        except KeyError:
            return None
        # exact types: a bool or float equal to a choice (True == 1, 4.0 == 4) is not one
        if type(e) is not int or type(nl) is not int or type(mlp) not in (list, tuple) \
                or type(head) not in (list, tuple) or type(bias) not in (bool, str):
            return None
        ei, li, bi = embed_t.get(e), layer_t.get(nl), bias_t.get(str(bias))
        if ei is None or li is None or bi is None or len(mlp) < nl or len(head) < nl:
            return None
        mlp, head = mlp[:nl], head[:nl]
        types = set(map(type, mlp))
        types.update(map(type, head))
        if types != _INT:
            return None
        try:
            m, h = list(map(mlp_t.__getitem__, mlp)), list(map(head_t.__getitem__, head))
        except KeyError:
            return None
        pad = pads[nl]
        return [ei, li, *m, *pad, *h, *pad, bi]

    def parse_id(self, aid: str) -> list[int] | None:
        """Encoding of a canonical id of this space without building an Architecture; None when
        ``aid`` is not one (the caller then lets ``space.validate`` parse the older id form or word
        the error). Every token is looked up among the canonical spellings of the choices, so
        anything accepted is valid."""
        p = self._id_parser
        if p is None:
            sp = self.space
            tokens = lambda choices: {str(c): i for i, c in enumerate(choices)}  # noqa: E731
            pads = {n: [-1] * (sp.max_layers - n) for n in sp.n_layer_choices}
            p = self._id_parser = (tokens(sp.n_layer_choices), tokens(sp.embed_dim_choices),
                                   tokens(sp.mlp_ratio_choices).__getitem__, tokens(sp.n_head_choices).__getitem__,
                                   {str(b): i for i, b in enumerate(sp.bias_choices)}, pads, f"gpt-{sp.name}-")
        layer_t, embed_t, mlp, head, bias_t, pads, prefix = p
        if not aid.startswith(prefix):
            return None
        parts = aid.split("-")
        li, ei, bi = layer_t.get(parts[2]), embed_t.get(parts[3]), bias_t.get(parts[-1])
        if li is None or ei is None or bi is None:
            return None
        n = self.space.n_layer_choices[li]
        if len(parts) != 5 + 2 * n:
            return None
        try:
            m, h = list(map(mlp, parts[4:4 + n])), list(map(head, parts[4 + n:4 + 2 * n]))
        except KeyError:
            return None
        pad = pads[n]
        return [ei, li, *m, *pad, *h, *pad, bi]

    def table_keys(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(weights, sorted keys)``: each table encoding as one exact integer, ``(enc + 1) @ weights``
        (mixed radix: each position's choices plus the padding), for a compiled membership test; no
        keys without a table; None where the keys would not fit 63 bits (spaces ``m``, ``l``). Computed once."""
        if self._table_keys is None:
            self._table_keys = (self._exact_keys(),)
        return self._table_keys[0]

    def _exact_keys(self) -> tuple[np.ndarray, np.ndarray] | None:
        radix = [c + 1 for c in self.space.encoding_choices]
        total, weights = 1, []
        for r in radix:
            weights.append(total)
            total *= r
        if total >= 2 ** 63:
            return None
        w = np.array(weights, np.int64)
        if self.table_encodings is None or not self.row:
            return w, np.empty(0, np.int64)
        return w, np.sort((np.asarray(self.table_encodings, np.int64) + 1) @ w)

    def rows_of_encodings(self, enc: np.ndarray) -> np.ndarray:
        """Table rows of encodings by a 64-bit hash, verified row by row (no Python object per row)."""
        n = len(enc)
        if self.table_encodings is None or not self.row or n == 0:
            return np.full(n, -1, np.int64)
        if n <= _FEW_ROWS and enc.dtype == np.int8:  # a NAS loop's few rows: one dict lookup each
            if self._bytes_rows is None:
                tab = np.ascontiguousarray(self.table_encodings, np.int8)
                self._bytes_rows = {tab[i].tobytes(): i for i in range(len(tab))}
            raw, L, get = enc.tobytes(), enc.shape[1], self._bytes_rows.get  # (C order)
            return np.array([get(raw[i:i + L], -1) for i in range(0, n * L, L)], np.int64)
        if self._hash_keys is None:
            w = np.random.default_rng(12345).integers(1, 2**62, self.space.encoding_length, dtype=np.int64) | 1
            tab = np.asarray(self.table_encodings, np.int64)
            keys = (tab + 2) @ w  # wraps modulo 2**64
            order = np.argsort(keys, kind="stable")
            skeys = keys[order]
            self._hash_keys = (w, skeys, order, bool((skeys[1:] == skeys[:-1]).any()))
        w, skeys, order, collisions = self._hash_keys
        keys = (enc.astype(np.int64) + 2) @ w
        pos = np.minimum(np.searchsorted(skeys, keys), len(skeys) - 1)
        rows = order[pos].astype(np.int64)
        hit = skeys[pos] == keys
        tab = self.table_encodings
        hit[hit] &= (tab[rows[hit]] == enc[hit]).all(1)
        rows[~hit] = -1
        # an exact-match check above; a 64-bit key collision could only hide a row, so look those up by id
        if collisions and (~hit).any():  # pragma: no cover
            for i in np.flatnonzero(~hit):
                rows[i] = self.row.get(self.space.decode(enc[i]).id, -1)
        return rows

    def ids(self, rows: np.ndarray, enc: np.ndarray) -> np.ndarray:
        """Architecture ids (object array) of validated encodings: the table's id for table rows,
        else assembled with one lookup per column (the same string :attr:`Architecture.id` builds)."""
        out = np.empty(len(rows), object)
        intab = rows >= 0
        if intab.any():
            out[intab] = np.asarray(self.table_ids, object)[rows[intab]]
        if not intab.all():
            out[~intab] = self.space.ids_of_encodings(enc[~intab])
        return out
