"""Drift evidence of a measured device: how much of what a latency surrogate cannot explain is the
host's state at the time of measurement rather than the architecture.

Per setting (:func:`setting_evidence`; out-of-fold residuals over 5 folds of the log of the
per-architecture median latency, with the release's cheapest XGBoost candidate on the surrogate
features):

* ``r2_oof``: the held-out R² of that surrogate;
* ``lag1``: lag-1 autocorrelation of the residuals put in the order the rows were timed (0 if an
  architecture's error did not depend on when it was timed), and ``drift_share``: the share of
  their variance a rolling mean over ``window`` consecutive rows explains;
* ``split_half_r2``: R² of one half of the measurements predicting the other (log medians) — the
  ceiling of any surrogate's R² set by measurement noise.

Devices timed once per architecture (one block of repeats): halves are odd vs even repeats, the
time order is ``measured_at``. Devices timed under the rounds protocol
(:mod:`benchmark.profiling.protocol`; setting attribute ``rounds``): halves are even vs odd rounds,
rows are ordered by their first visit, and the per-visit rows of the table log ``timings`` give
two more figures: ``visit_lag1_*`` of visit residuals (visit median minus the architecture's
out-of-fold prediction) in time order, raw and after dividing by the anchor's interpolated latency
at that moment (``normalised``), and the R² of the surrogate on anchor-normalised medians.
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from scipy.ndimage import uniform_filter1d

from benchmark.profiling.protocol import lag1_autocorrelation, split_half_r2
from benchmark.profiling.timing_pass import TIMINGS_LOG
from benchmark.table import Table
from surrogates.features import features
from surrogates.fit import CANDIDATES

__all__ = ["setting_evidence", "device_evidence"]


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))


def _oof(X: np.ndarray, y: np.ndarray, seed: int, folds: int = 5) -> np.ndarray:
    """Out-of-fold predictions of ``y`` (the release's cheapest candidate, fixed folds)."""
    hp = CANDIDATES[0]
    params = {"max_depth": hp["max_depth"], "eta": hp["eta"], "subsample": hp["subsample"],
              "min_child_weight": hp["min_child_weight"], "nthread": 1, "seed": seed}
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    pred = np.empty_like(y)
    for f in range(folds):
        bst = xgb.train(params, xgb.DMatrix(X[fold != f], y[fold != f]), hp["num_boost_round"])
        pred[fold == f] = bst.predict(xgb.DMatrix(X[fold == f]))
    return pred


def _ordered(res: np.ndarray, when: np.ndarray, window: int) -> tuple[float, float]:
    r = res[np.argsort(when, kind="stable")]
    return lag1_autocorrelation(r), float(1 - np.var(r - uniform_filter1d(r, window, mode="nearest")) / np.var(r))


def setting_evidence(t: Table, dev: str, s: str, window: int = 25, seed: int = 0) -> dict:
    """The figures of one (device, setting); see the module docstring."""
    x = t.hardware(dev, s, "latency_ms")
    attrs = t.setting_attrs(dev, s)
    rounds = int(attrs.get("rounds", 1))
    ok = np.isfinite(x).all(1)
    ids = np.asarray(t.ids)[ok]
    x, X = x[ok], features(t.space, np.asarray(t.encodings)[ok], s)
    y = np.log(np.median(x, 1))
    pred = _oof(X, y, seed)
    out = {"device": dev, "setting": s, "rows": int(ok.sum()), "rounds": rounds, "r2_oof": _r2(y, pred)}
    if rounds < 2:
        out["split_half_r2"] = _r2(np.log(np.median(x[:, 0::2], 1)), np.log(np.median(x[:, 1::2], 1)))
        out["lag1"], out["drift_share"] = _ordered(y - pred, t.measured_at(dev, s)[ok], window)
        return out
    rpr = x.shape[1] // rounds
    per_round = np.stack([np.median(x[:, r * rpr:(r + 1) * rpr], 1) for r in range(rounds)], 1)
    out["split_half_r2"] = split_half_r2(per_round)
    log = t.log(TIMINGS_LOG)
    sel = (log["device"] == dev) & (log["setting"] == s)
    visit, arch, rnd = log["visit"][sel].astype(int), log["arch"][sel], log["round"][sel].astype(int)
    order = {a: i for i, a in enumerate(ids)}
    first: dict[str, float] = {}
    # (time, visit) -> (arch row, round, time, [ms], anchor_ms): visits are numbered per pass, and
    # passes over other rows of the same device share the log, so the time tells them apart
    rows = {}
    for v, a, r, tm, ms, an in zip(visit, arch, rnd, log["unix_time"][sel], log["ms"][sel], log["anchor_ms"][sel]):
        if a not in order:
            continue
        first[a] = min(first.get(a, np.inf), tm)
        rows.setdefault((tm, v), (order[a], r, tm, [], an))[3].append(ms)
    out["lag1"], out["drift_share"] = _ordered(y - pred, np.array([first[a] for a in ids]), window)
    vr, vround, vt, vms, van = zip(*(rows[v] for v in sorted(rows)))
    vr, vround, vt = np.array(vr), np.array(vround), np.array(vt)
    vy, van = np.log([np.median(m) for m in vms]), np.log(van)
    ref = np.median(van)
    out["visit_lag1_raw"], _ = _ordered(vy - pred[vr], vt, window)
    out["visit_lag1_normalised"], _ = _ordered(vy - van + ref - pred[vr], vt, window)
    # anchor-normalised per-architecture medians, and their split-half and surrogate R²
    norm = np.full((len(ids), rounds), np.nan)
    norm[vr, vround] = np.exp(vy - van + ref)
    yn = np.log(np.nanmedian(norm, 1))
    out["split_half_r2_normalised"] = split_half_r2(norm)
    out["r2_oof_normalised"] = _r2(yn, _oof(X, yn, seed))
    return out


def device_evidence(t: Table, dev: str, window: int = 25, seed: int = 0) -> list[dict]:
    """:func:`setting_evidence` of every setting of ``dev`` with a latency."""
    return [setting_evidence(t, dev, s, window, seed) for s in t.settings(dev)
            if "latency_ms" in t.hardware_metrics(dev, s)]
