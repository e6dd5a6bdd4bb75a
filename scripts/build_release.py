#!/usr/bin/env python
"""Build the embedded release of a space from profiled shards: the last step of the pipeline.

    python scripts/build_release.py data/shards/t_base_20261128.h5 shards/t_cpu-epyc-1c_rounds_20261129.h5 ...
    python scripts/build_release.py --space s shards/s_cpu-epyc-1c.h5     # the `s` release, in data/s/
    python scripts/build_release.py --card-only --notes docs/data_card_t_conditions.md \
        --runtime-check docs/runtimes_check.json                           # step 3 alone, on the release's table

1. merge the shards into RELEASE/table_<space>.h5 (de-duplicated, atomic). The raw per-visit
   timings of timing-pass shards (log ``timings``, ~11 MB per device) stay in the shards (in
   ``shards/``, named by sha256 in the table's ``merged_from``); the release keeps every repeat per
   architecture, not the log. Before the log is dropped, the timing-protocol evidence of every
   device timed in rounds (``surrogates.drift``) is computed from it and written to
   docs/protocol/<space>_evidence.json;
2. add the modeled devices, calibrated on the measured ones (hwlm table add-modeled);
3. write the data card docs/data_card_<space>.md with its plots, the protocol evidence and (with
   ``--runtime-check``) the runtimes' agreement with PyTorch;
4. fit the surrogates into RELEASE/surrogates/<space>/ with the quality report docs/surrogates.md
   (`t`) or docs/surrogates_<space>.md;
5. write RELEASE/MANIFEST.json (sha256 of every released file).

``--card-only`` rewrites the data card of the release's table alone (step 3), with the protocol
evidence committed in docs/protocol/<space>_evidence.json: the card of a release whose shards are
not at hand (the release itself is not touched).

RELEASE (``--out``) defaults to data/ for the default space `t` and to data/<space>/ for the others
(a release of its own, which ``Benchmark(space)`` opens: benchmark.release.embedded_release). A
hardware-only table of HW-GPT-Bench's spaces (`s`, `m`, `l`: no perplexity in it) is served with
HW-GPT-Bench's imported perplexity predictor; the data card says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.datacard import write_data_card
from benchmark.hwgpt_perplexity import SPACES as HWGPT_SPACES
from benchmark.paths import REPO_ROOT, data_dir
from benchmark.profiling.modeled import add_modeled_devices
from benchmark.profiling.timing_pass import TIMINGS_LOG
from benchmark.release import write_manifest
from benchmark.table import Table, drop_from_table, merge_tables


def protocol_evidence(t: Table, seed: int = 0) -> list[dict]:
    """``surrogates.drift`` evidence of every measured device of ``t`` timed under the rounds protocol."""
    from surrogates.drift import device_evidence

    if TIMINGS_LOG not in t.logs():
        return []
    timed = set(t.log(TIMINGS_LOG)["device"])
    return [e for d, m in t.devices().items() if m["source"] == "measured" and d in timed
            for e in device_evidence(t, d, seed=seed)]


IMPORTED_NOTE = (
    "**Hardware only.** This table holds no perplexity: `Benchmark(\"{space}\")` serves HW-GPT-Bench's own "
    "perplexity predictor for any architecture, labelled `imported` (`benchmark/hwgpt_perplexity.py`: their "
    "MLP, their supernet and data, Apache-2.0), never mixed with measured values. The measured rows were "
    "timed with seeded random weights, built afresh at every visit: latency and memory do not depend on "
    "weight values (the same operators on the same shapes), so no trained `{space}` model is needed.")


def _write_card(a, table: Path, evidence: list[dict] | None) -> Path:
    notes = Path(a.notes).read_text() if a.notes else ""
    if a.space in HWGPT_SPACES and "perplexity" not in Table(table).metrics():
        notes = IMPORTED_NOTE.format(space=a.space) + "\n\n" + notes
    return write_data_card(table, Path(a.docs) / f"data_card_{a.space}.md", title=f"Data card: the `{a.space}` table",
                           notes=notes, protocol_evidence=evidence,
                           runtime_check=json.loads(Path(a.runtime_check).read_text()) if a.runtime_check else None)


def _card_only(a) -> int:
    out = Path(a.out) if a.out else (data_dir() if a.space == "t" else data_dir() / a.space)
    table = out / f"table_{a.space}.h5"
    if not table.is_file():
        print(f"build_release: invalid --card-only: {table} does not exist; allowed: a release's table", file=sys.stderr)
        return 2
    ev_path = Path(a.docs) / "protocol" / f"{a.space}_evidence.json"
    evidence = json.loads(ev_path.read_text())["rows"] if ev_path.is_file() else None
    print(f"data card: {_write_card(a, table, evidence)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", nargs="*", help="profiled shard tables, in priority order")
    ap.add_argument("--space", default="t")
    ap.add_argument("--out", default=None, help="release directory (default: data/ for t, data/SPACE/ otherwise)")
    ap.add_argument("--docs", default=str(REPO_ROOT / "docs"), help="where the data card and the surrogate "
                    "report go (default docs/)")
    ap.add_argument("--threads", type=int, default=2, help="XGBoost threads for fitting (default 2)")
    ap.add_argument("--notes", default=None, help="markdown file with measurement conditions for the data card")
    ap.add_argument("--runtime-check", default=None,
                    help="JSON of scripts/check_runtimes.py to print in the data card (runtime correctness)")
    ap.add_argument("--no-surrogates", action="store_true", help="skip fitting (table, card and manifest only)")
    ap.add_argument("--card-only", action="store_true", help="only rewrite the data card of the release's table, "
                    "with the committed protocol evidence (no shards)")
    a = ap.parse_args(argv)
    if a.card_only == bool(a.shards):
        print("build_release: invalid arguments: give shards, or --card-only without shards", file=sys.stderr)
        return 2
    if a.card_only:
        return _card_only(a)
    for shard in a.shards:  # a shard of another space would land in this space's table
        space = Table(shard).space.name if Path(shard).exists() else a.space
        if space != a.space:
            print(f"build_release: invalid shard {shard}: space {space!r}; allowed: shards of "
                  f"--space {a.space!r}", file=sys.stderr)
            return 2
    docs = Path(a.docs)
    out = Path(a.out) if a.out else (data_dir() if a.space == "t" else data_dir() / a.space)
    out.mkdir(parents=True, exist_ok=True)
    table = out / f"table_{a.space}.h5"
    full = out / f".{table.name}.with-timings"
    try:
        merge_tables(a.shards, full, in_place=True)  # a rebuild passes the table itself as a shard
        merged = Table(full)
        evidence = protocol_evidence(merged)
        if TIMINGS_LOG in merged.logs():
            drop_from_table(full, table, logs=[TIMINGS_LOG])
        else:
            full.replace(table)
    finally:
        full.unlink(missing_ok=True)
    ev_path = docs / "protocol" / f"{a.space}_evidence.json"
    if evidence:
        ev_path.parent.mkdir(parents=True, exist_ok=True)
        ev_path.write_text(json.dumps({"what": "timing-protocol evidence (surrogates.drift) of the shards "
                                       "merged by scripts/build_release.py", "shards": a.shards,
                                       "rows": evidence}, indent=1) + "\n")
    print(f"[1/5] merged {len(a.shards)} shard(s) into {table}: {len(Table(table))} rows; "
          f"protocol evidence of {len({e['device'] for e in evidence})} device(s)")
    r = add_modeled_devices(table)
    print(f"[2/5] {len(r['devices'])} modeled devices added")
    print(f"[3/5] data card: {_write_card(a, table, evidence)}")
    if not a.no_surrogates:
        from surrogates.fit import fit_table

        report = docs / ("surrogates.md" if a.space == "t" else f"surrogates_{a.space}.md")
        f = fit_table(table, out, nthread=a.threads, report=report)
        print(f"[4/5] {len(f.index['models'])} surrogates in {f.directory}; report {f.report}; "
              f"{len(f.index['roofline'])} modeled devices evaluated by their roofline model directly (no surrogate)")
    m = write_manifest(out, a.space)
    print(f"[5/5] {out / 'MANIFEST.json'}: {len(m['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
