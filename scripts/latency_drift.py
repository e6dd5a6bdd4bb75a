#!/usr/bin/env python
"""How much of what a latency surrogate cannot explain is drift of the host over time?

    python scripts/latency_drift.py [TABLE] [--device ID] [--json OUT]

Prints :func:`surrogates.drift.setting_evidence` of every setting of the measured devices (the
figures are defined in :mod:`surrogates.drift`). TABLE must hold the raw timings (log
``timings``) for the rounds-protocol figures: a timing-pass shard, not the release table.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmark.table import Table
from surrogates.drift import device_evidence

COLUMNS = ["r2_oof", "split_half_r2", "lag1", "drift_share", "visit_lag1_raw", "visit_lag1_normalised",
           "r2_oof_normalised", "split_half_r2_normalised"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", nargs="?", default="data/table_t.h5")
    ap.add_argument("--device", action="append", default=None, help="measured device (repeatable; default all)")
    ap.add_argument("--window", type=int, default=25, help="rows in the rolling mean (default 25)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    t = Table(args.table)
    measured = [d for d, m in t.devices().items() if m["source"] == "measured"]
    devs = args.device or measured
    bad = [d for d in devs if d not in measured]
    if bad:
        raise SystemExit(f"invalid device: {bad[0]!r}; allowed: the measured devices {measured}")
    rows, cols = [], COLUMNS
    print(f"{t.path}: out-of-fold residuals of log median latency")
    print(f"{'device':<24} {'setting':<22} {'rows':>5} {'rnd':>3} " + " ".join(f"{c[:12]:>12}" for c in cols))
    for dev in devs:
        for e in device_evidence(t, dev, args.window, args.seed):
            rows.append(e)
            print(f"{dev:<24} {e['setting']:<22} {e['rows']:>5} {e['rounds']:>3} "
                  + " ".join(f"{e[c]:>12.3f}" if c in e else f"{'-':>12}" for c in cols))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": str(t.path), "window": args.window, "seed": args.seed, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
