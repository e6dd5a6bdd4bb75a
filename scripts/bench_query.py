#!/usr/bin/env python
"""Time the query API against the HW-GPT-Bench way (build the model, count numel and FLOPs).

    python scripts/bench_query.py                          # the embedded release (data/), first device
    python scripts/bench_query.py --path REL --device cpu-epyc-2c
    python scripts/bench_query.py --synthetic              # no release yet: a SYNTHETIC one in a temp dir

Measured in one run and printed: the time to open ``Benchmark``; single ``query`` of all metrics
of one device, p50 and p99, from the table and from the surrogates; ``query_batch`` throughput
(architectures/s) in table and surrogate mode, given encodings and given ids, as DataFrames (with
their ``id`` column) and as arrays (``as_frame=False``, the engine alone); and, for the same
answers (params and prefill FLOPs), building ``benchmark.model.GPT`` per architecture and counting
``sum(p.numel())`` and ``torch.utils.flop_counter.FlopCounterMode`` over one forward — with the ratios.
When the release has a modeled device, its latency and energy of unprofiled architectures (the
roofline model evaluated directly, source ``modeled``) are timed too, single and batched. Then the
input forms HW-GPT-Bench users have — its dicts (surrogate mode) and ids (table mode) — as ratios to
the same query from encodings and to model building; and, for ``t`` releases, HW-GPT-Bench's space
``s`` — architectures its release did not time: exact metrics and the imported perplexity
predictor — from encodings, ids and dicts against HW-GPT-Bench's own path, building the model to count its parameters
(``--s-archs`` of them, each a few hundred ms).

Clocks: throughputs and the model-building baseline are this process's CPU time (all its threads),
so a machine shared with other jobs does not count their time slices against the query; single
queries are wall-time percentiles of many calls (the median is robust to the odd preempted call).

``--synthetic`` builds a table with ``tests/hwtable.py`` (hardware values are a function of exact
costs plus seeded noise — not measurements) and fits surrogates on it with the release's
hyperparameter candidates; only the timings mean anything there.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.paths import REPO_ROOT


def _synthetic_release(d: Path, rows: int, threads: int) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from hwtable import build_table  # noqa: E402  (test-data helper: synthetic values)

    from surrogates.fit import fit_table

    t0 = time.perf_counter()
    build_table(d / "table_t.h5", n_table=rows, n_extra=0, seed=0)
    fit_table(d / "table_t.h5", d, seed=0, nthread=threads, progress=True)
    print(f"synthetic release ({rows} rows, SYNTHETIC values) built and fitted in {time.perf_counter() - t0:.1f} s "
          f"at {d}")
    return d


def _percentiles(fn, args_list, repeat_min: int) -> tuple[float, float]:
    times = []
    for a in args_list[:20]:  # warm-up (boosters load, columns cache)
        fn(a)
    i = 0
    while len(times) < repeat_min:
        a = args_list[i % len(args_list)]
        t0 = time.perf_counter_ns()
        fn(a)
        times.append(time.perf_counter_ns() - t0)
        i += 1
    t = np.array(times) / 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 99))


def _rate(fn, n: int, min_s: float = 0.5) -> float:
    """Architectures per second of this process's CPU time (all its threads): on a shared machine wall
    time would also count other jobs' time slices; CPU time counts only the query's own work."""
    fn()
    runs, t0 = 0, time.process_time()
    while True:
        fn()
        runs += 1
        el = time.process_time() - t0
        if el >= min_s:
            return n * runs / el


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="t")
    ap.add_argument("--path", default=None, help="release directory (default: data/)")
    ap.add_argument("--device", default=None, help="device (default: the first of the release)")
    ap.add_argument("--synthetic", action="store_true", help="build and fit a synthetic release in a temp dir")
    ap.add_argument("--rows", type=int, default=2000, help="rows of the synthetic table (default 2000)")
    ap.add_argument("--threads", type=int, default=2, help="XGBoost threads for the synthetic fit")
    ap.add_argument("-n", type=int, default=100_000, help="architectures per query_batch (default 1e5)")
    ap.add_argument("--singles", type=int, default=3000, help="timed single queries per kind (default 3000)")
    ap.add_argument("--n-dense", type=int, default=10, help="dense models to build (default 10)")
    ap.add_argument("--s-archs", type=int, default=3, help="models of space s to build as its baseline (default 3; "
                    "0 skips space s)")
    args = ap.parse_args(argv)

    tmp = None
    path = Path(args.path) if args.path else None
    if args.synthetic:
        tmp = tempfile.TemporaryDirectory(prefix="hwlm-bench-query-")
        path = _synthetic_release(Path(tmp.name), args.rows, args.threads)
        args.space = "t"

    t0 = time.perf_counter()
    from benchmark import Benchmark  # noqa: E402

    import_s = time.perf_counter() - t0
    opens = []
    for _ in range(5):
        t0 = time.perf_counter()
        b = Benchmark(args.space, path)
        opens.append(time.perf_counter() - t0)
    device = args.device or sorted(b.devices())[0]
    sp = b.space
    from benchmark.profiling.devices import cpu_model_name

    print(f"host: {cpu_model_name()}, {os.cpu_count()} CPUs (figures compare within one run, not across hosts)")
    print(f"release {b.path}: {len(b.table) if b.table is not None else 0} rows, devices {sorted(b.devices())}; "
          f"device {device}, setting {b.settings(device)[0]}")
    print(f"open Benchmark: median {np.median(opens) * 1e3:.1f} ms over 5 (first {opens[0] * 1e3:.1f} ms; "
          f"importing benchmark.api took {import_s * 1e3:.0f} ms once)")

    ids = b.table.ids.tolist()
    rng = np.random.default_rng(0)
    unseen = [a.id for a in sp.sample(1, n=500) if a.id not in b.table]
    metrics = list(b.query(ids[0], device=device).value)
    print(f"metrics of one query: {metrics}")

    p50t, p99t = _percentiles(lambda a: b.query(a, device=device), ids, args.singles)
    p50s, p99s = _percentiles(lambda a: b.query(a, device=device, mode="surrogate"), unseen, args.singles)
    print(f"single query, all metrics, from the table:      p50 {p50t:8.1f} us   p99 {p99t:8.1f} us   (target p50 <= 100 us)")
    print(f"single query, all metrics, from the surrogates: p50 {p50s:8.1f} us   p99 {p99s:8.1f} us   (target p50 <= 1000 us)")

    n = args.n
    rows = rng.integers(0, len(ids), n)
    enc_t = np.asarray(b.table.encodings)[rows]
    ids_t = [ids[i] for i in rows]
    enc_s = sp.encode_many(sp.sample(2, n=min(n, 20_000)))
    reps = -(-n // len(enc_s))
    enc_s = np.tile(enc_s, (reps, 1))[:n]
    ids_s = [sp.decode(e).id for e in enc_s[:20_000]]
    r_te = _rate(lambda: b.query_batch(enc_t, device=device, mode="table"), n)
    r_ti = _rate(lambda: b.query_batch(ids_t, device=device, mode="table"), n)
    r_se = _rate(lambda: b.query_batch(enc_s, device=device, mode="surrogate"), n)
    r_si = _rate(lambda: b.query_batch(ids_s, device=device, mode="surrogate"), len(ids_s))
    d_te = _rate(lambda: b.query_batch(enc_t, device=device, mode="table", as_frame=False), n)
    d_se = _rate(lambda: b.query_batch(enc_s, device=device, mode="surrogate", as_frame=False), n)
    print(f"query_batch, table mode,     {n:,} encodings: {r_te:12,.0f} archs/s   (target >= 200,000)")
    print(f"query_batch, table mode,     {n:,} ids:       {r_ti:12,.0f} archs/s")
    print(f"query_batch, surrogate mode, {n:,} encodings: {r_se:12,.0f} archs/s   (target >= 20,000)")
    print(f"query_batch, surrogate mode, {len(ids_s):,} ids (unprofiled, parsed): {r_si:12,.0f} archs/s")
    print(f"query_batch as_frame=False (arrays, no id column): table mode {d_te:12,.0f} archs/s, "
          f"surrogate mode {d_se:12,.0f} archs/s")
    modeled = sorted(d for d, i in b.devices().items() if i["source"] == "modeled")
    if modeled:
        dm = modeled[0]
        hw = ["latency_ms", "energy_mj"]
        p50m, p99m = _percentiles(lambda a: b.query(a, metrics=hw, device=dm), unseen, args.singles)
        r_me = _rate(lambda: b.query_batch(enc_s, metrics=hw, device=dm), n)
        d_me = _rate(lambda: b.query_batch(enc_s, metrics=hw, device=dm, as_frame=False), n)
        print(f"modeled device {dm} ({', '.join(hw)}; roofline evaluated for unprofiled architectures):")
        print(f"  single query p50 {p50m:8.1f} us   p99 {p99m:8.1f} us;   query_batch {n:,} encodings: {r_me:12,.0f} archs/s"
              f" (as_frame=False: {d_me:12,.0f} archs/s)")

    # the HW-GPT-Bench way: build the dense model, count parameters and FLOPs of one forward
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark import costs
    from benchmark.model import GPT
    from benchmark.table import Setting

    st = Setting.parse(b.settings(device)[0])
    seq = st.seq_len if st.mode == "prefill" else 1
    archs = [sp.from_id(i) for i in ids[: args.n_dense]]
    t0 = time.process_time()
    dense_p, dense_f = [], []
    for a in archs:
        m = GPT(a).eval()
        dense_p.append(sum(p.numel() for p in m.parameters()))
        x = torch.zeros((st.batch, seq), dtype=torch.long)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            m(x)
        dense_f.append(fc.get_total_flops())
        del m
    dense_s = (time.process_time() - t0) / len(archs)
    ours = b.query_batch(archs, metrics=["params"], mode="table")
    ok_p = ours["params"].astype(np.int64).tolist() == dense_p
    # FlopCounterMode on CPU counts no attention FLOPs (torch 2.13): compare with attention="none"
    ok_f = costs.flops(archs, st.batch, seq, attention="none").tolist() == dense_f
    print(f"HW-GPT-Bench way (build GPT on CPU, numel, FlopCounterMode over a b{st.batch} x s{seq} forward): "
          f"{dense_s * 1e3:.1f} ms per architecture; params agree: {ok_p}; FLOPs agree (attention excluded, "
          f"as FlopCounterMode counts on CPU): {ok_f}")
    print(f"ratio, single query (table, all metrics) vs model building: {dense_s / (p50t / 1e6):,.0f}x   (target >= 1000x)")
    print(f"ratio, query_batch (table, encodings) vs model building:    {dense_s * r_te:,.0f}x")

    # the input forms HW-GPT-Bench users have: ids and their dicts, on the same engine as encodings
    dicts_s = [sp.decode(e).to_hwgpt_dict() for e in enc_s[:20_000]]
    r_sd = _rate(lambda: b.query_batch(dicts_s, device=device, mode="surrogate"), len(dicts_s))
    print("input forms, each as a ratio to the same query from encodings and to model building:")
    print(f"  query_batch, surrogate mode, {len(dicts_s):,} HW-GPT-Bench dicts: {r_sd:12,.0f} archs/s "
          f"({r_sd / r_se:.2f}x encodings, {dense_s * r_sd:,.0f}x model building; target >= 20,000)")
    print(f"  query_batch, table mode, {n:,} ids: {r_ti:12,.0f} archs/s ({r_ti / r_te:.2f}x encodings, "
          f"{dense_s * r_ti:,.0f}x model building; target >= 500,000)")
    ok_s = _space_s(args.s_archs) if args.space == "t" and args.s_archs else True
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok_p and ok_f and ok_s else 1


def _space_s(n_dense: int) -> bool:
    """HW-GPT-Bench's space ``s`` off its table (exact metrics and the imported perplexity) against
    HW-GPT-Bench's own path, which builds the model to count parameters; True when the counts agree."""
    from benchmark import Benchmark
    from benchmark.model import GPT

    s = Benchmark("s")
    metrics = ["params", "params_no_embedding", "flops", "perplexity"]
    archs = s.space.sample(5, n=20_000)
    enc = s.space.encode_many(archs)
    ids, dicts = [a.id for a in archs], [a.to_hwgpt_dict() for a in archs]
    enc_n = np.tile(enc, (5, 1))
    r_e = _rate(lambda: s.query_batch(enc_n, metrics=metrics), len(enc_n))
    r_i = _rate(lambda: s.query_batch(ids, metrics=metrics), len(ids))
    r_d = _rate(lambda: s.query_batch(dicts, metrics=metrics), len(dicts))
    t0 = time.process_time()
    counted = []
    for a in archs[:n_dense]:  # HW-GPT-Bench builds its GPT for the architecture and counts numel
        counted.append(sum(p.numel() for p in GPT(a).parameters()))
    build_s = (time.process_time() - t0) / n_dense
    ok = s.query_batch(archs[:n_dense], metrics=["params"])["params"].astype(np.int64).tolist() == counted
    print(f"space s, {', '.join(metrics)} (exact; perplexity imported from HW-GPT-Bench's predictor), "
          "architectures off its table:")
    print(f"  HW-GPT-Bench's way (build GPT, count numel), {n_dense} architectures: {build_s * 1e3:,.0f} ms each; "
          f"params agree: {ok}")
    for what, r, k in (("encodings", r_e, len(enc_n)), ("ids", r_i, len(ids)), ("HW-GPT-Bench dicts", r_d, len(dicts))):
        print(f"  query_batch, {k:,} {what}: {r:12,.0f} archs/s ({build_s * r:,.0f}x model building; target >= 100,000)")
    return ok


if __name__ == "__main__":
    sys.exit(main())
