#!/usr/bin/env python
"""Compare the hardware measurements of two tables over the architectures both hold.

    python scripts/compare_shards.py OLD.h5 NEW.h5 [--device ID] [--device-b ID]

Typical use: the same architectures timed on two hosts (or on one host at two times). Per
setting and hardware metric it prints the number of common rows, the median ratio B/A of the
per-architecture medians, Spearman rho and Kendall tau between the two, and the median
coefficient of variation of the repeats on each side — so that one can say whether two hosts
may be compared, and how far their rankings agree.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import stats

from benchmark.table import Table


def compare(a: Table, b: Table, dev_a: str, dev_b: str) -> list[dict]:
    """One record per (setting, metric) that both devices measured, over the common rows."""
    common = sorted(set(a.ids.tolist()) & set(b.ids.tolist()))
    ia = np.array([a.row(i) for i in common], dtype=int)
    ib = np.array([b.row(i) for i in common], dtype=int)
    out = []
    for s in a.settings(dev_a):
        if s not in b.settings(dev_b):
            continue
        for m in a.hardware_metrics(dev_a, s):
            if m not in b.hardware_metrics(dev_b, s):
                continue
            xa, xb = a.hardware(dev_a, s, m)[ia], b.hardware(dev_b, s, m)[ib]
            ok = np.isfinite(xa).any(1) & np.isfinite(xb).any(1)
            if ok.sum() < 3:
                continue
            ma, mb = np.nanmedian(xa[ok], 1), np.nanmedian(xb[ok], 1)

            def cv(x):
                x = x[np.isfinite(x).sum(1) >= 2]
                return float(np.median(np.nanstd(x, 1, ddof=1) / np.nanmean(x, 1))) if len(x) else float("nan")

            out.append({"setting": s, "metric": m, "rows": int(ok.sum()),
                        "median_ratio": float(np.median(mb / ma)),
                        "spearman": float(stats.spearmanr(ma, mb)[0]),
                        "kendall": float(stats.kendalltau(ma, mb)[0]),
                        "cv_a": cv(xa[ok]), "cv_b": cv(xb[ok])})
    return out


def _pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.1%}"  # "–": one value per architecture, no CV


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="table A (e.g. the earlier host)")
    ap.add_argument("b", help="table B")
    ap.add_argument("--device", default=None, help="device id in A (default: its only measured device)")
    ap.add_argument("--device-b", default=None, help="device id in B (default: --device, or B's only measured one)")
    args = ap.parse_args(argv)
    a, b = Table(args.a), Table(args.b)

    def measured(t: Table, want: str | None) -> str:
        devs = [d for d, meta in t.devices().items() if meta["source"] == "measured"]
        if want is not None:
            if want not in devs:
                raise SystemExit(f"invalid device: {want!r} is not a measured device of {t.path}; allowed: {devs}")
            return want
        if len(devs) != 1:
            raise SystemExit(f"{t.path} has measured devices {devs}; name one with --device / --device-b")
        return devs[0]

    dev_a = measured(a, args.device)
    dev_b = measured(b, args.device_b or args.device)
    rows = compare(a, b, dev_a, dev_b)
    print(f"A: {a.path} ({dev_a}, {a.provenance(dev_a).get('platform', '?')})")
    print(f"B: {b.path} ({dev_b}, {b.provenance(dev_b).get('platform', '?')})")
    print(f"{'setting':<24} {'metric':<11} {'rows':>5} {'B/A':>6} {'rho':>6} {'tau':>6} {'CV A':>6} {'CV B':>6}")
    for r in rows:
        print(f"{r['setting']:<24} {r['metric']:<11} {r['rows']:>5} {r['median_ratio']:>6.3f} {r['spearman']:>6.3f} "
              f"{r['kendall']:>6.3f} {_pct(r['cv_a']):>6} {_pct(r['cv_b']):>6}")
    if not rows:
        print("no common architectures with measurements on both sides")
    return 0


if __name__ == "__main__":
    sys.exit(main())
