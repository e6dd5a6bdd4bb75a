#!/usr/bin/env python
"""Build the embedded release of a space from profiled shards: the last step of the pipeline.

    python scripts/build_release.py runs/profile/t_cpu.h5 [more shards ...]

1. merge the shards into data/table_<space>.h5 (de-duplicated, atomic);
2. add the modeled devices, calibrated on the measured ones (hwlm table add-modeled);
3. write the data card docs/data_card_<space>.md with its plots;
4. fit the surrogates into data/surrogates/<space>/ with the quality report docs/surrogates.md;
5. write data/MANIFEST.json (sha256 of every released file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.datacard import write_data_card
from benchmark.paths import REPO_ROOT, data_dir
from benchmark.profiling.modeled import add_modeled_devices
from benchmark.release import write_manifest
from benchmark.table import Table, merge_tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", nargs="+", help="profiled shard tables, in priority order")
    ap.add_argument("--space", default="t")
    ap.add_argument("--out", default=None, help="release directory (default: the embedded release, data/)")
    ap.add_argument("--threads", type=int, default=2, help="XGBoost threads for fitting (default 2)")
    ap.add_argument("--notes", default=None, help="markdown file with measurement conditions for the data card")
    ap.add_argument("--no-surrogates", action="store_true", help="skip fitting (table, card and manifest only)")
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else data_dir()
    table = out / f"table_{a.space}.h5"
    merge_tables(a.shards, table, in_place=True)  # a rebuild passes the table itself as a shard
    print(f"[1/5] merged {len(a.shards)} shard(s) into {table}: {len(Table(table))} rows")
    r = add_modeled_devices(table)
    print(f"[2/5] {len(r['devices'])} modeled devices added")
    card = write_data_card(table, REPO_ROOT / "docs" / f"data_card_{a.space}.md",
                           title=f"Data card: the `{a.space}` table",
                           notes=Path(a.notes).read_text() if a.notes else "")
    print(f"[3/5] data card: {card}")
    if not a.no_surrogates:
        from surrogates.fit import fit_table

        f = fit_table(table, out, nthread=a.threads, report=REPO_ROOT / "docs" / "surrogates.md")
        print(f"[4/5] {len(f.index['models'])} surrogates in {f.directory}; report {f.report}; "
              f"{len(f.index['roofline'])} modeled devices evaluated by their roofline model directly (no surrogate)")
    m = write_manifest(out, a.space)
    print(f"[5/5] {out / 'MANIFEST.json'}: {len(m['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
