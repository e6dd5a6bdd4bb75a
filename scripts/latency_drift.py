#!/usr/bin/env python
"""How much of what a latency surrogate cannot explain is drift of the host over time?

    python scripts/latency_drift.py [data/table_t.h5] [--device ID]

Per setting of a measured device: out-of-fold residuals (5 folds, log latency, the release's
cheapest XGBoost candidate on the surrogate features) put in the order the rows were timed; printed
are their standard deviation, their lag-1 autocorrelation (0 if the errors were independent of
when a row was timed) and the share of their variance that a rolling mean over ``--window``
consecutive rows explains (slow drift of the machine), next to the split-half R² of the repeats
(odd vs even repeats: how repeatable a row is within its own few seconds).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import xgboost as xgb
from scipy.ndimage import uniform_filter1d

from benchmark.table import Table
from surrogates.features import features
from surrogates.fit import CANDIDATES


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", nargs="?", default="data/table_t.h5")
    ap.add_argument("--device", default=None, help="measured device (default: the first measured one)")
    ap.add_argument("--window", type=int, default=25, help="rows in the rolling mean (default 25)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t = Table(args.table)
    measured = [d for d, m in t.devices().items() if m["source"] == "measured"]
    dev = args.device or (measured[0] if measured else None)
    if dev not in measured:
        raise SystemExit(f"invalid device: {dev!r}; allowed: the measured devices {measured}")
    enc = np.asarray(t.encodings)
    hp = CANDIDATES[0]
    params = {"max_depth": hp["max_depth"], "eta": hp["eta"], "subsample": hp["subsample"],
              "min_child_weight": hp["min_child_weight"], "nthread": 2, "seed": args.seed}
    print(f"{t.path}: device {dev}, {len(t)} rows; out-of-fold residuals of log latency in timing order")
    print(f"{'setting':<24} {'split-half R2':>13} {'resid std':>9} {'lag-1 ac':>8} {'drift share':>11}")
    for s in t.settings(dev):
        if "latency_ms" not in t.hardware_metrics(dev, s):
            continue
        x = t.hardware(dev, s, "latency_ms")
        ok = np.isfinite(x).all(1)
        x, when, X = x[ok], t.measured_at(dev, s)[ok], features(t.space, enc[ok], s)
        y = np.log(np.median(x, 1))
        half = _r2(np.median(x[:, 0::2], 1), np.median(x[:, 1::2], 1))
        fold = np.random.default_rng(args.seed).permutation(len(y)) % 5
        res = np.empty_like(y)
        for f in range(5):
            bst = xgb.train(params, xgb.DMatrix(X[fold != f], y[fold != f]), hp["num_boost_round"])
            res[fold == f] = y[fold == f] - bst.predict(xgb.DMatrix(X[fold == f]))
        r = res[np.argsort(when)]
        lag1 = float(np.corrcoef(r[:-1], r[1:])[0, 1])
        drift = float(1 - np.var(r - uniform_filter1d(r, args.window, mode="nearest")) / np.var(r))
        print(f"{s:<24} {half:>13.4f} {r.std():>9.4f} {lag1:>8.3f} {drift:>11.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
