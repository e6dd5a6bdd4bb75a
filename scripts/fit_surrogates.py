#!/usr/bin/env python
"""Fit the XGBoost surrogates of a table and write the quality report.

    python scripts/fit_surrogates.py --force                          # data/table_t.h5 -> data/surrogates/t/, docs/surrogates.md
    python scripts/fit_surrogates.py --table T.h5 --out REL --report REL/surrogates.md --threads 2

Same as ``hwlm fit --table T --out DIR --report docs/surrogates.md``: for every metric/device/setting of the
table a mean model and, for metrics stored with repeats, a 5/50/95 % quantile model, hyperparameters
chosen by 3-fold CV on the training split, quality on a seeded held-out split of architectures.
A release directory (one with ``MANIFEST.json``, such as ``data/``) is written only with ``--force``,
which then rewrites its manifest.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmark.paths import REPO_ROOT, data_dir
from benchmark.release import ReleaseError, release_write
from surrogates.fit import MODEL_FORMATS, fit_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="t", help="search space (default t): the table is OUT/table_<space>.h5")
    ap.add_argument("--table", default=None, help="table file (default: <out>/table_<space>.h5)")
    ap.add_argument("--out", default=None, help="release directory (default: the embedded release, data/)")
    ap.add_argument("--report", default=str(REPO_ROOT / "docs" / "surrogates.md"),
                    help="markdown quality report (default docs/surrogates.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--format", choices=MODEL_FORMATS, default="json")
    ap.add_argument("--force", action="store_true", help="write into a release directory and rewrite its manifest")
    args = ap.parse_args(argv)

    out = Path(args.out) if args.out else data_dir()
    table = Path(args.table) if args.table else out / f"table_{args.space}.h5"
    if not table.exists():
        print(f"no table at {table}: profile and merge first (hwlm profile ..., hwlm table merge ...)", file=sys.stderr)
        return 2
    try:
        with release_write(out, force=args.force, what="scripts/fit_surrogates.py"):
            r = fit_table(table, out, seed=args.seed, test_fraction=args.test_fraction, nthread=args.threads,
                          model_format=args.format, report=args.report)
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(r.index['models'])} surrogates in {r.directory}; {len(r.index['missing'])} targets not fitted "
          f"(no or too few values; reasons in the report); quality report: {r.report} and {r.directory / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
