"""Table lookup: a table-backed quantity as one column (medians, repeats, 5-95 % of the repeats),
loaded on first use and cached; exact costs (params, FLOPs) of the table's rows, cached likewise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.spaces import ArchitectureError, SearchSpace
from benchmark.query.results import QueryError

__all__ = ["Column", "TableLookup", "exact_values", "repeats_column"]


@dataclass
class Column:
    """One table-backed quantity: medians (N,), repeats (N, R) or None, 5/95 % of repeats."""

    source: str
    unit: str
    median: np.ndarray
    repeats: np.ndarray | None
    lo: np.ndarray | None
    hi: np.ndarray | None
    missing_reason: str | None  # set when the whole column is NaN


def exact_values(space: SearchSpace, metric: str, setting: str | None, enc: Any, decode_tokens: int) -> np.ndarray:
    """``params`` / ``params_no_embedding`` / ``flops`` / ``weight_bytes`` / ``kv_cache_bytes`` (the
    last three at ``setting``: the weights in its dtype; a KV cache of its batch x sequence length
    in its dtype) of encodings or a validated :class:`benchmark.costs` batch, float64."""
    from benchmark import costs

    try:
        if metric == "params":
            return costs.params(enc, space=space).astype(np.float64)
        if metric == "params_no_embedding":
            return costs.params(enc, space=space, embeddings=False).astype(np.float64)
        if metric in ("weight_bytes", "kv_cache_bytes"):
            from benchmark.settings import Setting

            st = Setting.parse(setting)
            if metric == "weight_bytes":
                return costs.weight_bytes(enc, dtype=st.dtype, space=space).astype(np.float64)
            return costs.kv_cache_bytes(enc, st.batch, st.seq_len, dtype=st.dtype, space=space).astype(np.float64)
        from surrogates.features import exact_flops

        return exact_flops(space, enc, setting, decode_tokens)
    except ArchitectureError as e:
        raise QueryError(str(e)) from None
    except ValueError as e:
        raise QueryError(f"invalid setting {setting!r} for space {space.name!r}: {e}") from None


def repeats_column(source: str, unit: str, rep: np.ndarray) -> Column:
    """A column of (N, R) repeats (NaN: none): medians and, with R > 1, the repeats' 5-95 %."""
    from surrogates.model import nanmedian_rows

    med = nanmedian_rows(rep)
    lo = hi = None
    if rep.shape[1] > 1:
        lo, hi = np.full(len(rep), np.nan), np.full(len(rep), np.nan)
        ok = np.isfinite(rep).any(1)
        if ok.any():
            lo[ok], hi[ok] = np.nanpercentile(rep[ok], [5, 95], axis=1)
    return Column(source, unit, med, rep, lo, hi, None)


class TableLookup:
    """Columns of a :class:`benchmark.table.Table` (or of none: every lookup is None)."""

    def __init__(self, table: Any, space: SearchSpace):
        self.table, self.space = table, space
        self._columns: dict[tuple, Column | None] = {}
        self._exact: dict[tuple, np.ndarray] = {}

    def column(self, metric: str, device: str | None, setting: str | None) -> Column | None:
        k = (metric, device, setting)
        if k in self._columns:
            return self._columns[k]
        col = self._columns[k] = self._load(metric, device, setting) if self.table is not None else None
        return col

    def add(self, metric: str, device: str, setting: str, column: Column) -> None:
        """Serve ``column`` for a device the table does not hold (an overlay's measured rows)."""
        self._columns[(metric, device, setting)] = column

    def _load(self, metric: str, device: str | None, setting: str | None) -> Column | None:
        t = self.table
        if device is None:
            if metric not in t.metrics():
                return None
            meta = t.metrics()[metric]
            med = np.asarray(t.metric(metric), np.float64)
            col = Column(meta["source"], meta.get("unit", "1"), med, None, None, None, None)
        else:
            if device not in t.devices() or setting not in t.settings(device) \
                    or metric not in t.hardware_metrics(device, setting):
                return None
            meta = t.hardware_metrics(device, setting)[metric]
            col = repeats_column(t.devices()[device]["source"], meta.get("unit", ""),
                                 np.asarray(t.hardware(device, setting, metric), np.float64))
        if not np.isfinite(col.median).any():
            col.missing_reason = meta.get("missing_reason") or "no value in the table (not measured)"
        return col

    def exact(self, metric: str, setting: str | None, decode_tokens: int) -> np.ndarray:
        """An exact metric of every table row (cached)."""
        k = (metric, setting)
        full = self._exact.get(k)
        if full is None:
            full = self._exact[k] = exact_values(self.space, metric, setting, np.asarray(self.table.encodings),
                                                 decode_tokens)
        return full
