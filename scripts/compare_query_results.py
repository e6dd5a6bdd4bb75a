#!/usr/bin/env python
"""Are the query API's answers bit-identical between two versions of the code?

Computes, for one release, the answers of ``Benchmark.query_batch`` for ``--n`` seeded
architectures (a tenth of them rows of the table, the rest sampled) at every device × every
setting × every mode (``auto``, ``surrogate``; ``table`` on the table's rows), each with and
without intervals (the two cost paths a NAS loop and a user take), with encodings and with ids
as input, a seeded ``noise=True`` draw, the device-independent metrics, and ``--singles`` single
``query`` calls spread over devices, settings, modes and input forms. Every value, source, unit,
interval, missing reason and in-table flag is flattened into arrays (floats compared as their
64-bit patterns, so NaN == NaN and -0.0 != 0.0) and saved as ``.npz`` (no pickle).

    python scripts/compare_query_results.py --save /tmp/before.npz                # this checkout
    python scripts/compare_query_results.py --against /tmp/before.npz             # compare with a saved run
    python scripts/compare_query_results.py --against main                        # compare with a git revision

``--against REV`` (anything that is not an existing ``.npz``) exports that revision of this
repository with ``git archive`` into a temporary directory and runs this script there with the
revision's package on ``PYTHONPATH`` (the release is the same ``--release``), then compares.
Prints the number of values and strings compared and the mismatches (first few named); exit 1
on any mismatch or any answer the second run lacks. Answers only the second run has (a new
interval) are counted and listed, not failures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MODES = ("auto", "surrogate", "table")


class Recorder:
    """Flattens answers into (key, float) and (key, string) lists."""

    def __init__(self):
        self.fkeys, self.fvals, self.skeys, self.svals = [], [], [], []

    def floats(self, key: str, v) -> None:
        v = np.asarray(v, np.float64).reshape(-1)
        self.fkeys.append((key, len(v)))
        self.fvals.append(v)

    def string(self, key: str, s) -> None:
        self.skeys.append(key)
        self.svals.append(str(s))

    def strings(self, key: str, arr) -> None:
        arr = np.asarray(arr).reshape(-1)
        for i, s in enumerate(arr.tolist()):
            self.string(f"{key}[{i}]", s)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"fkeys": np.array([f"{k}#{n}" for k, n in self.fkeys]),
                "fvals": np.concatenate(self.fvals) if self.fvals else np.zeros(0),
                "skeys": np.array(self.skeys), "svals": np.array(self.svals)}


def record_batch(rec: Recorder, key: str, out: dict, metrics: list[str]) -> None:
    for m in metrics:
        rec.floats(f"{key}/{m}/value", out[m])
    src = out.get("source", out.get("sources"))
    for m in metrics:
        rec.string(f"{key}/{m}/unit", out["units"][m])
        rec.string(f"{key}/{m}/source", src[m])
        if m in out["row_sources"]:
            rec.strings(f"{key}/{m}/row_sources", out["row_sources"][m])
        if m in out["target_sources"]:
            rec.string(f"{key}/{m}/target_source", out["target_sources"][m])
        if m in out["missing"]:
            rec.string(f"{key}/{m}/missing", out["missing"][m])
        iv = out["intervals"].get(m, "absent") if m in out["intervals"] else "absent"
        if isinstance(iv, str) or iv is None:
            rec.string(f"{key}/{m}/interval", iv)
        else:
            rec.floats(f"{key}/{m}/lo", iv[0])
            rec.floats(f"{key}/{m}/hi", iv[1])
    rec.floats(f"{key}/in_table", np.asarray(out["in_table"], np.float64))


def record_single(rec: Recorder, key: str, r) -> None:
    rec.string(f"{key}/arch", r.arch)
    rec.string(f"{key}/device", r.device)
    rec.string(f"{key}/setting", r.setting)
    rec.string(f"{key}/in_table", r.in_table)
    for m, v in r.value.items():
        rec.floats(f"{key}/{m}/value", v)
        rec.string(f"{key}/{m}/unit", r.units[m])
        rec.string(f"{key}/{m}/source", r.sources[m])
        rec.string(f"{key}/{m}/target_source", r.target_sources.get(m))
        rec.string(f"{key}/{m}/missing", r.missing.get(m))
        iv = r.intervals.get(m, "absent") if m in r.intervals else "absent"
        if isinstance(iv, str) or iv is None:
            rec.string(f"{key}/{m}/interval", iv)
        else:
            rec.floats(f"{key}/{m}/interval", iv)
        if m in r.repeats:
            rec.floats(f"{key}/{m}/repeats", r.repeats[m])


def compute(release: str | None, n: int, singles: int, seed: int) -> dict[str, np.ndarray]:
    import warnings

    from benchmark import Benchmark

    warnings.simplefilter("ignore")
    b = Benchmark("t", path=release)
    rng = np.random.default_rng(seed)
    tab_enc = np.asarray(b.table.encodings) if b.table is not None else np.zeros((0, b.space.encoding_length), np.int8)
    k = min(len(tab_enc), n // 10)
    sampled = np.stack([a.encoding() for a in b.space.sample(seed=seed, n=n - k)])
    enc = np.concatenate([tab_enc[rng.choice(len(tab_enc), k, replace=False)], sampled]).astype(np.int8)
    enc = enc[rng.permutation(len(enc))]
    ids = [b.space.decode(e).id for e in enc[:2000]]
    rec = Recorder()
    calls = [(None, None)] + [(d, s) for d, info in sorted(b.devices().items()) for s in info["settings"]]
    for d, s in calls:
        for mode in MODES:
            x = tab_enc if mode == "table" else enc
            if not len(x):
                continue
            key = f"batch/{d}/{s}/{mode}"
            out = b.query_batch(x, device=d, setting=s, mode=mode, as_frame=False)
            metrics = [m for m in out if m not in ("units", "source", "sources", "row_sources", "target_sources",
                                                   "intervals", "missing", "in_table")]
            record_batch(rec, key, out, metrics)
            out = b.query_batch(x, metrics=metrics, device=d, setting=s, mode=mode, as_frame=False, intervals=False)
            record_batch(rec, key + "/lean", out, metrics)
            if mode != "table":
                out = b.query_batch(x[:500], metrics=metrics, device=d, setting=s, mode=mode, as_frame=False,
                                    intervals=False)
                record_batch(rec, key + "/lean500", out, metrics)
                out = b.query_batch(ids, device=d, setting=s, mode=mode, as_frame=False)
                record_batch(rec, key + "/ids", out, metrics)
                out = b.query_batch(x[:2000], device=d, setting=s, mode=mode, as_frame=False, noise=True, seed=7)
                record_batch(rec, key + "/noise", out, metrics)
            df = b.query_batch(x[:300], device=d, setting=s, mode=mode)
            for m in metrics:
                rec.floats(f"{key}/frame/{m}", df[m].to_numpy())
                rec.string(f"{key}/frame/{m}/source", df.attrs["sources"][m])
    single_rng = np.random.default_rng(seed + 1)
    tab_ids = [str(i) for i in np.asarray(b.table.ids)] if b.table is not None else []
    for i in range(singles):
        d, s = calls[int(single_rng.integers(len(calls)))]
        form = int(single_rng.integers(4))
        mode = MODES[int(single_rng.integers(2))]
        if form == 0 and tab_ids:
            arch = tab_ids[int(single_rng.integers(len(tab_ids)))]
            mode = MODES[int(single_rng.integers(3))]
        else:
            a = b.space.decode(enc[int(single_rng.integers(len(enc)))])
            arch = (a, a.id, a.to_hwgpt_dict(), a.encoding())[form]
        noise = bool(single_rng.integers(4) == 0)
        try:
            r = b.query(arch, device=d, setting=s, mode=mode, noise=noise, seed=i, repeats=True,
                        intervals=bool(single_rng.integers(3) != 0))
        except ValueError as e:  # mode "table" of a cell the table lacks: the message is compared
            rec.string(f"single/{i}/error", f"{type(e).__name__}: {e}")
            continue
        record_single(rec, f"single/{i}", r)
    return rec.arrays()


def _floats(x: dict) -> dict[str, np.ndarray]:
    """key -> its values' 64-bit patterns."""
    keys = [k.rsplit("#", 1) for k in x["fkeys"].tolist()]
    ends = np.cumsum([int(n) for _, n in keys])
    bits = x["fvals"].view(np.uint64)
    return {k: bits[e - int(n):e] for (k, n), e in zip(keys, ends)}


def compare(a: dict, b: dict) -> int:
    """Bit-for-bit comparison of the answers both runs have. Answers only the second run has are
    additions (e.g. an interval where the first had none: a string "absent" in the first) and are
    counted, not failures; an answer the second run lacks is a failure."""
    fa, fb = _floats(a), _floats(b)
    sa = dict(zip(a["skeys"].tolist(), a["svals"].tolist()))
    sb = dict(zip(b["skeys"].tolist(), b["svals"].tolist()))
    added = (set(fb) - set(fa)) | (set(sb) - set(sa))
    gone = [k for k in (set(fa) - set(fb)) | (set(sa) - set(sb))
            if not (sa.get(k) == "absent" and k.endswith("/interval"))]  # an interval that is now there
    fdiff = [k for k in set(fa) & set(fb) if fa[k].shape != fb[k].shape or (fa[k] != fb[k]).any()]
    sdiff = [k for k in set(sa) & set(sb) if sa[k] != sb[k]]
    n_values = sum(len(fa[k]) for k in set(fa) & set(fb))
    print(f"compared {n_values:,} float values (bit for bit) under {len(set(fa) & set(fb)):,} keys and "
          f"{len(set(sa) & set(sb)):,} strings: {len(fdiff)} float keys differ, {len(sdiff)} strings differ, "
          f"{len(gone)} answers missing; {len(added)} answers added (e.g. {sorted(added)[:2]})")
    for k in sorted(fdiff)[:5]:
        j = int(np.flatnonzero(fa[k] != fb[k])[0]) if fa[k].shape == fb[k].shape else 0
        print(f"  {k}[{j}]: {fa[k][j:j + 1].view(np.float64)} vs {fb[k][j:j + 1].view(np.float64)}")
    for k in sorted(sdiff)[:5]:
        print(f"  {k}: {sa[k]!r} vs {sb[k]!r}")
    for k in sorted(gone)[:5]:
        print(f"  missing: {k}")
    return int(bool(fdiff or sdiff or gone))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", default=None, help="release directory (default: the embedded one, data/)")
    ap.add_argument("--n", type=int, default=20_000, help="architectures per batch query (default 20,000)")
    ap.add_argument("--singles", type=int, default=3000, help="single query calls (default 3,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write this checkout's answers to this .npz")
    ap.add_argument("--against", default=None, help="a saved .npz, or a git revision to run and compare with")
    args = ap.parse_args(argv)
    release = str(Path(args.release).resolve()) if args.release else None
    here = compute(release, args.n, args.singles, args.seed)
    if args.save:
        np.savez_compressed(args.save, **here)
        print(f"saved {len(here['fvals']):,} values and {len(here['svals']):,} strings to {args.save}")
    if args.against is None:
        return 0
    if args.against.endswith(".npz") and os.path.exists(args.against):
        with np.load(args.against, allow_pickle=False) as f:
            other = {k: f[k] for k in f.files}
    else:
        root = Path(__file__).resolve().parents[1]
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(root), "archive", args.against], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            if release is None:  # the same release for both: this checkout's data/
                release = str(root / "data")
            out = Path(tmp) / "answers.npz"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--release", release, "--n", str(args.n),
                   "--singles", str(args.singles), "--seed", str(args.seed), "--save", str(out)]
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": tmp})
            with np.load(out, allow_pickle=False) as f:
                other = {k: f[k] for k in f.files}
    return compare(other, here)


if __name__ == "__main__":
    raise SystemExit(main())
