"""How rankings change across hardware: latency rank agreement, Pareto-front overlap and what each
device rewards, read from one table.

Devices are compared at a *shape* — a setting without its dtype (``prefill-b1-s256``): the CPU
devices run it in fp32, the modeled GPUs in fp16, the bf16 runtime in bf16, and a shape is what
an architecture search fixes. A device's latency of an architecture is the median of its stored
repeats (modeled devices store one value).

* :func:`rank_agreement`: Kendall τ between the latency orders of every pair of devices.
* :func:`pareto_overlap`: for perplexity vs latency, the share of device A's Pareto-optimal
  architectures that are also Pareto-optimal on device B (1 on the diagonal; not symmetric).
* :func:`elasticities`: per device, the least-squares exponents of latency on depth, width, mean
  heads and mean MLP ratio (``latency ∝ n_layer^a · embed_dim^b · heads^c · mlp^d``): how much
  latency each choice costs there, i.e. which choices a device rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import HwlmError
from benchmark.settings import resolve_setting
from benchmark.table import Table

__all__ = ["shapes", "device_latencies", "rank_agreement", "pareto_overlap", "elasticities", "ELASTICITY_TERMS",
           "Matrix"]

ELASTICITY_TERMS = ("n_layer", "embed_dim", "mean_heads", "mean_mlp_ratio")


@dataclass(frozen=True)
class Matrix:
    """A device x device matrix of one figure at one shape."""

    shape: str
    devices: tuple[str, ...]
    values: np.ndarray  # (D, D)
    rows: np.ndarray  # (D, D) architectures the figure was computed over


def _shape(setting: str) -> str:
    return resolve_setting(setting).name.rsplit("-", 1)[0]


def shapes(t: Table) -> list[str]:
    """The shapes at which at least two devices have latency."""
    count: dict[str, int] = {}
    for d in t.devices():
        for s in t.settings(d):
            if "latency_ms" in t.hardware_metrics(d, s):
                count[_shape(s)] = count.get(_shape(s), 0) + 1
    return sorted(k for k, n in count.items() if n >= 2)


def device_latencies(t: Table, shape: str) -> dict[str, np.ndarray]:
    """``{device: (N,) median latency}`` of every device with latency at ``shape`` (NaN = none)."""
    out = {}
    for d in t.devices():
        for s in t.settings(d):
            if _shape(s) == shape and "latency_ms" in t.hardware_metrics(d, s):
                x = t.hardware(d, s, "latency_ms")
                ok = np.isfinite(x).any(1)
                med = np.full(len(x), np.nan)
                med[ok] = np.nanmedian(x[ok], 1)
                out[d] = med
    if len(out) < 1:
        raise HwlmError(f"invalid shape: {shape!r}; allowed: one of {shapes(t)}")
    return out


def rank_agreement(t: Table, shape: str) -> Matrix:
    """Kendall τ (tau-b) of latency between every pair of devices at ``shape``, over the
    architectures both have."""
    from scipy.stats import kendalltau

    lat = device_latencies(t, shape)
    devs = tuple(lat)
    tau, n = np.eye(len(devs)), np.zeros((len(devs), len(devs)), int)
    for i, a in enumerate(devs):
        for j in range(i, len(devs)):
            ok = np.isfinite(lat[a]) & np.isfinite(lat[devs[j]])
            n[i, j] = n[j, i] = int(ok.sum())
            if j > i:
                tau[i, j] = tau[j, i] = kendalltau(lat[a][ok], lat[devs[j]][ok]).statistic if ok.sum() > 2 else np.nan
    return Matrix(shape, devs, tau, n)


def _pareto(ppl: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points when minimising both."""
    import moocore

    return np.flatnonzero(moocore.is_nondominated(np.column_stack([ppl, lat])))


def pareto_overlap(t: Table, shape: str, metric: str = "perplexity") -> Matrix:
    """``values[a, b]``: share of device a's Pareto-optimal architectures (``metric`` vs a's
    latency) that are Pareto-optimal on device b, over the architectures both devices and the
    metric have."""
    if metric not in t.metrics():
        raise HwlmError(f"invalid metric: {metric!r}; allowed: a metric of the table {sorted(t.metrics())}")
    y = t.metric(metric)
    lat = device_latencies(t, shape)
    devs = tuple(lat)
    share, n = np.eye(len(devs)), np.zeros((len(devs), len(devs)), int)
    for i, a in enumerate(devs):
        for j, b in enumerate(devs):
            ok = np.flatnonzero(np.isfinite(y) & np.isfinite(lat[a]) & np.isfinite(lat[b]))
            n[i, j] = len(ok)
            if i != j and len(ok):
                fa = set(ok[_pareto(y[ok], lat[a][ok])])
                fb = set(ok[_pareto(y[ok], lat[b][ok])])
                share[i, j] = len(fa & fb) / len(fa)
    return Matrix(shape, devs, share, n)


def elasticities(t: Table, shape: str) -> dict[str, dict[str, float]]:
    """``{device: {term: exponent, ..., "r2": fit R²}}`` of log latency on the log of each of
    :data:`ELASTICITY_TERMS` (with an intercept), fitted by least squares per device."""
    archs = t.architectures()
    X = np.column_stack([np.log([a.n_layer for a in archs]), np.log([a.embed_dim for a in archs]),
                         np.log([np.mean(a.n_head) for a in archs]), np.log([np.mean(a.mlp_ratio) for a in archs]),
                         np.ones(len(archs))])
    out = {}
    for d, lat in device_latencies(t, shape).items():
        ok = np.isfinite(lat) & (lat > 0)
        y = np.log(lat[ok])
        coef, *_ = np.linalg.lstsq(X[ok], y, rcond=None)
        res = y - X[ok] @ coef
        out[d] = {**dict(zip(ELASTICITY_TERMS, map(float, coef))),
                  "r2": float(1 - res.var() / y.var()) if y.var() > 0 else float("nan"), "rows": int(ok.sum())}
    return out
