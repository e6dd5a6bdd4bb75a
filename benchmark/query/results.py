"""What a query returns: :class:`QueryResult` for one architecture, dicts or DataFrames for batches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.errors import HwlmError

__all__ = ["QueryError", "QueryResult", "fail", "display_unit", "batch_dict", "batch_frame"]


class QueryError(HwlmError):
    """Invalid query: names the field, the value and what is available."""


def fail(field_: str, value: Any, allowed: Any) -> QueryError:
    """The package's error wording: the field, the value, what is allowed."""
    return QueryError.invalid(field_, value, allowed)


def display_unit(unit: str) -> str:
    """A unit as printed: empty for a dimensionless quantity (stored as ``"1"``)."""
    return "" if unit in ("1", "") else unit


@dataclass(eq=False)  # Mapping's equality: same metrics and values
class QueryResult(Mapping):
    """Values of one architecture: a mapping metric -> float, plus units, sources and intervals."""

    arch: str
    device: str | None
    setting: str | None
    mode: str
    value: dict[str, float]  # metric -> value (also r[metric]; r.items(), r.keys(), ... as a Mapping)
    units: dict[str, str]
    sources: dict[str, str]
    target_sources: dict[str, str] = field(default_factory=dict)  # surrogate metrics: trained on measured/modeled
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # 5-95 % (repeats or
    # prediction); None: a deterministic model's value (a modeled device's roofline), no interval by design
    repeats: dict[str, np.ndarray] = field(default_factory=dict)  # stored repeats (repeats=True)
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    in_table: bool = False
    no_interval: dict[str, str] = field(default_factory=dict)  # metric -> why its interval is None, when
    # not the roofline's determinism (an imported predictor without an error estimate)
    provenance: dict[str, dict] = field(default_factory=dict)  # imported metrics: whose predictor, data, license

    def __getitem__(self, metric: str) -> float:
        try:
            return self.value[metric]
        except KeyError:
            raise KeyError(f"metric {metric!r} was not queried; queried: {list(self.value)}") from None

    def __iter__(self):
        return iter(self.value)

    def __len__(self) -> int:
        return len(self.value)

    def as_dict(self) -> dict:
        return {m: {"value": v, "unit": self.units[m], "source": self.sources[m],
                    **({"interval": self.intervals[m]} if m in self.intervals else {}),
                    **({"target_source": self.target_sources[m]} if m in self.target_sources else {}),
                    **({"missing_reason": self.missing[m]} if m in self.missing else {}),
                    **({"no_interval": self.no_interval[m]} if m in self.no_interval else {}),
                    **({"provenance": self.provenance[m]} if m in self.provenance else {})}
                for m, v in self.value.items()}

    def __repr__(self) -> str:
        """One line per metric: value and unit, source, 90 % interval (or why there is none)."""
        head = (f"QueryResult({self.arch}, device={self.device}, setting={self.setting}, mode={self.mode}, "
                f"in_table={self.in_table})")
        width = max((len(m) for m in self.value), default=0)
        lines = [head]
        for m, v in self.value.items():
            unit = display_unit(self.units[m])
            src = self.sources[m]
            if m in self.missing:
                note = self.missing[m]
            elif m not in self.intervals:
                note = ""
            elif self.intervals[m] is None:
                note = self.no_interval.get(m, "no interval (deterministic model)")
            else:
                lo, hi = self.intervals[m]
                note = f"90 % [{lo:.6g}, {hi:.6g}]"
            value = f"{v:.6g}" + (f" {unit}" if unit else "")
            lines.append(f"  {m:<{width}}  {value:<18} {src:<10} {note}".rstrip())
        return "\n".join(lines)


def batch_dict(values: dict, units: dict, sources: dict, row_sources: dict, r: dict) -> dict:
    """``query_batch(as_frame=False)``: ``{column: array}`` plus the keys listed in its docstring."""
    out = dict(values)
    out.update({"units": units, "source": sources, "row_sources": row_sources,
                "target_sources": r["target_sources"], "intervals": r["intervals"],
                "missing": r["missing"], "in_table": r["in_table"]})
    if r["no_interval"]:
        out["no_interval"] = r["no_interval"]
    return out


def batch_frame(values: dict, ids: Any, info: dict, source_columns: bool):
    """``query_batch(as_frame=True)``: an ``id`` column, one float column per metric and, with
    ``source_columns``, a ``<metric>_source`` column after each (the per-row source)."""
    import pandas as pd

    cols: dict[str, Any] = {"id": ids}
    n = len(info["in_table"])
    for m, v in values.items():
        cols[m] = v
        if source_columns:
            per_row = info["row_sources"].get(m)
            cols[f"{m}_source"] = per_row if per_row is not None else np.full(n, info["sources"][m])
    df = pd.DataFrame(cols)
    df.attrs.update(info)
    return df
