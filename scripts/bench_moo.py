"""Throughput of the MOO loop per algorithm, and the share of it spent in the benchmark's queries.

For each algorithm, ``--repeats`` runs of the same seeded run of ``--budget`` evaluations on a
suite (in this process; each run starts from a reset problem and one warm-up query per objective
group so that lazy loading is not timed; nothing is carried from one run to the next but the loaded
models). Printed per algorithm, as the median over the repeats: evaluations per second of the whole
loop (ask + repair/projection + Problem.evaluate + tell; the hypervolume curve is computed after
the loop and not included), the number of queries (one per objective group per batch of new
architectures), and the fraction of loop time spent in the benchmark's queries (the group's
``Benchmark.values_function``, or ``query_batch`` for a noisy suite, plus encoding its input), measured
twice: in wall time and in this thread's CPU time. On a core shared with another job, wall time
also counts the other job's time slices, wherever they fall; CPU time counts only this loop's own
work. Target: < 10 % for every non-Bayesian algorithm, in both ("ok" only when both medians are
below it). The last column, "eval CPU %", is the share of everything the benchmark does per batch
(all of ``Problem.evaluate``: the queries, validating the architectures, the run's cache of
evaluated ids and the simulated clock), in CPU time: the benchmark's whole part of the loop. All
figures come from one run of this script.

    python scripts/bench_moo.py                      # synthetic release (built in a temp dir)
    python scripts/bench_moo.py --release data        # a real release
    python scripts/bench_moo.py --candidates table --mode table --bayes
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import numpy as np


def _time_evaluate(problem) -> list[float]:
    """Count the thread CPU time of ``problem.evaluate`` calls into the returned one-element list."""
    import time

    evaluate, total = problem.evaluate, [0.0]

    def timed(archs):
        t0 = time.thread_time()
        try:
            return evaluate(archs)
        finally:
            total[0] += time.thread_time() - t0

    problem.evaluate = timed
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", default=None, help="release directory (default: a synthetic one in a temp dir)")
    ap.add_argument("--suite", default="ppl-latency-cpu")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="runs per algorithm; medians are printed")
    ap.add_argument("--mode", default=None, choices=("auto", "table", "surrogate"))
    ap.add_argument("--candidates", default=None, choices=("space", "table"))
    ap.add_argument("--device", action="append", metavar="ROLE=ID", help="device override, e.g. cpu:measured=ID")
    ap.add_argument("--bayes", action="store_true", help="also time qnehvi (slow) with --bayes-budget")
    ap.add_argument("--bayes-budget", type=int, default=25)
    args = ap.parse_args(argv)

    from benchmark import Benchmark
    from benchmark.profiling.devices import cpu_model_name
    from benchmark.moo.algorithms import ALGORITHMS, SLOW_ALGORITHMS
    from benchmark.moo.runner import run_problem
    from benchmark.moo.suites import get_suite

    tmp = None
    release = args.release
    if release is None:
        from benchmark.moo.synthetic import write_synthetic_release

        tmp = tempfile.TemporaryDirectory()
        release = str(write_synthetic_release(tmp.name, n=200, seed=0, surrogates=True))
        print(f"release: synthetic (benchmark.moo.synthetic, 200 architectures, surrogates) in {release}")
    else:
        print(f"release: {release}")
    b = Benchmark(space="t", path=release)
    devices = dict(d.split("=", 1) for d in args.device or ())
    suite = get_suite(args.suite).override(mode=args.mode, candidates=args.candidates).resolve(b, devices)
    print(f"suite: {suite.name} (mode {suite.mode}, candidates {suite.candidates}); budget {args.budget}; "
          f"seed {args.seed}; {cpu_model_name()} ({platform.machine()}), {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"repeats: {args.repeats} (medians)")
    print(f"{'algorithm':<10} {'evals':>6} {'loop s':>8} {'evals/s':>9} {'queries':>8} {'query s':>8} "
          f"{'query %':>8} {'CPU %':>7} {'target':>7} {'eval CPU %':>11}")
    for name in ALGORITHMS:
        slow = name in SLOW_ALGORITHMS
        if slow and not args.bayes:
            continue
        budget = args.bayes_budget if slow else args.budget
        p = suite.problem(b)
        evaluate_cpu = _time_evaluate(p)
        runs, eval_fracs = [], []
        for _ in range(max(1, args.repeats)):
            evaluate_cpu[0] = 0.0
            runs.append(run_problem(p, name, args.seed, budget, suite.reference_point))
            eval_fracs.append(evaluate_cpu[0] / runs[-1].cpu_s)
        r = runs[0]
        wall = float(np.median([x.wall_s for x in runs]))
        query = float(np.median([x.query_s for x in runs]))
        frac = float(np.median([x.query_s / x.wall_s for x in runs]))
        cpu_frac = float(np.median([x.query_cpu_s / x.cpu_s for x in runs]))
        target = "n/a" if slow else ("ok" if max(frac, cpu_frac) < 0.10 else "MISSED")
        print(f"{name:<10} {len(r.ids):>6} {wall:>8.3f} {len(r.ids) / wall:>9.1f} {r.n_queries:>8} "
              f"{query:>8.4f} {frac:>8.1%} {cpu_frac:>7.1%} {target:>7} {float(np.median(eval_fracs)):>11.1%}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
