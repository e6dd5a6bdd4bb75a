"""``hwlm moo``: list suites and algorithms, run a suite, write a report, run the demo."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_moo_parser", "DEMO_ALGORITHMS"]

DEMO_ALGORITHMS = ("random", "local", "morea", "nsga2", "smsemoa", "moead", "motpe", "nsga3")
# 10 seeds: the smallest per-pair p-value of a two-sided Mann-Whitney test is then ~1e-4, so
# differences can survive Holm's correction over the 28 pairs of 8 algorithms
DEMO_SEEDS = 10


def _devices(pairs) -> dict[str, str]:
    out = {}
    for p in pairs or ():
        if "=" not in p:
            raise SystemExit(f"hwlm moo: invalid --device: {p!r}; allowed: ROLE=ID, e.g. cpu:measured=cpu-epyc-1c")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _suite(args):
    from benchmark.moo.suites import get_suite

    s = get_suite(args.suite, args.suites)
    return s.override(budget=args.budget, mode=args.mode, candidates=args.candidates,
                      noise=True if args.noise else None)


def _run(args) -> int:
    from benchmark.moo.algorithms import resolve_algorithm
    from benchmark.moo.runner import run_suite

    for a in args.algorithms:
        resolve_algorithm(a)  # a bad name or MODULE:ATTR: one line, exit 2 (via _safe)
    suite = _suite(args)
    run_suite(suite, args.algorithms, args.out, release=args.release, seeds=args.seeds,
              devices=_devices(args.device), workers=args.workers, progress=not args.quiet, ray_address=args.ray)
    print(f"results: {args.out}")
    return 0


def _report(args) -> int:
    from benchmark.moo.report import write_report

    r = write_report(args.results, args.out)
    for p in r["plots"]:
        print(f"plot: {p}")
    print(f"summary: {r['summary']}")
    print(f"html: {r['html']}")
    return 0


def _demo(args) -> int:
    from benchmark.paths import data_dir

    release = Path(args.release) if args.release else data_dir()
    if args.candidates is None and not (release / "surrogates" / "t" / "index.json").exists():
        # without surrogates only profiled architectures can be evaluated: the tabular setting
        print(f"hwlm moo: {release} has no surrogates for space t: searching the table's architectures "
              f"(--candidates table --mode table)")
        args.candidates, args.mode = "table", args.mode or "table"
    args.out_dir = Path(args.out_dir)
    args.out = str(args.out_dir / "results.h5")
    args.suites, args.noise = None, False
    rc = _run(args)
    if rc:
        return rc
    args.results = args.out
    args.out = str(args.out_dir)
    return _report(args)


def _list(args) -> int:
    from benchmark.moo.algorithms import SLOW_ALGORITHMS, available_algorithms
    from benchmark.moo.suites import load_suites

    for name, s in load_suites(args.suites).items():
        objs = ", ".join("@".join(str(x) for x in (o["metric"], o.get("device"), o.get("setting")) if x)
                         for o in s.objectives)
        print(f"suite {name}: {objs}; space {s.space}, budget {s.budget}, seeds {s.seeds}, mode {s.mode}, "
              f"candidates {s.candidates}")
        print("  values: " + "; ".join(f"{label}: {where}" for label, where in s.value_sources()))
    print("algorithms: " + ", ".join(f"{a}{' (slow)' if a in SLOW_ALGORITHMS else ''}" for a in available_algorithms()))
    print("plug-ins: --algorithms MODULE:ATTR, or an entry point in the group 'hwlm.algorithms'")
    return 0


def _safe(func):
    """Bad input (a ValueError: unknown suite, device, setting, ...) -> one clear line, exit status 2."""
    def run(args) -> int:
        try:
            return func(args)
        except ValueError as e:
            print(f"hwlm moo: {e}", file=sys.stderr)
            return 2
    return run


def _common(s, suite_default=None, budget_help="evaluations per run (default: the suite's)"):
    s.add_argument("--suite", default=suite_default, required=suite_default is None,
                   help="suite name (hwlm moo list)" + (f"; default {suite_default}" if suite_default else ""))
    s.add_argument("--suites", default=None, help="suites JSON file (default: the shipped benchmark/moo/suites.json)")
    s.add_argument("--release", default=None, help="release directory with table_<space>.h5 and/or surrogates/ "
                                                   "(default: the embedded data/)")
    s.add_argument("--budget", type=int, default=None, help=budget_help)
    s.add_argument("--mode", choices=("auto", "table", "surrogate"), default=None, help="query mode (default: the suite's)")
    s.add_argument("--candidates", choices=("space", "table"), default=None,
                   help="search the whole space or only the table's architectures (default: the suite's)")
    s.add_argument("--device", action="append", metavar="ROLE=ID",
                   help="use device ID for a suite's device role, e.g. cpu:measured=cpu-epyc-1c (repeatable)")
    s.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count; 1 = in process)")
    s.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the jobs as Ray tasks on the cluster at ADDRESS ('local': start one here); "
                        "needs the moo-ray extra and the release at the same path on every node")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def add_moo_parser(sub) -> None:
    from benchmark.moo.algorithms import ALGORITHMS

    p = sub.add_parser("moo", help="multi-objective NAS benchmark: suites, runs, reports",
                       description="Run multi-objective NAS algorithms on fixed suites and report hypervolume, "
                                   "IGD+ and attainment (docs/moo.md).")
    msub = p.add_subparsers(dest="moo_command", metavar="SUBCOMMAND", required=True)

    s = msub.add_parser("list", help="suites and algorithms", description="List the suites and algorithms.")
    s.add_argument("--suites", default=None, help="suites JSON file")
    s.set_defaults(func=_safe(_list))

    s = msub.add_parser("run", help="run algorithms x seeds on a suite (resumable)",
                        description="Run algorithms x seeds 0..N-1 on a suite into a results file; finished runs "
                                    "are skipped, so rerunning resumes.")
    _common(s)
    s.add_argument("--algorithms", nargs="+", required=True, metavar="ALG",
                   help=f"names of {sorted(ALGORITHMS)}, installed 'hwlm.algorithms' entry points, or MODULE:ATTR "
                        "(a class in a module on the Python path or in the current directory)")
    s.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the suite's)")
    s.add_argument("--noise", action="store_true", help="noisy queries (default: the suite's)")
    s.add_argument("--out", required=True, help="results file (.h5)")
    s.set_defaults(func=_safe(_run))

    s = msub.add_parser("report", help="plots, a markdown summary and an HTML report of a results file",
                        description="Write hypervolume/IGD+/front/EAF plots, summary.md and a self-contained "
                                    "report.html (plots embedded) of a results file.")
    s.add_argument("results", help="results file written by hwlm moo run")
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(func=_safe(_report))

    s = msub.add_parser("demo", help="run a default suite with several algorithms and seeds, then report",
                        description=f"Run the default suite (ppl-latency-cpu) with {len(DEMO_ALGORITHMS)} algorithms x "
                                    f"{DEMO_SEEDS} seeds x 100 evaluations on a release and write the report "
                                    "(about 30 s of CPU time in all: well under a minute on 2 free cores).")
    _common(s, suite_default="ppl-latency-cpu", budget_help="evaluations per run (default 100)")
    s.add_argument("--algorithms", nargs="+", default=list(DEMO_ALGORITHMS), metavar="ALG",
                   help=f"default: {' '.join(DEMO_ALGORITHMS)}")
    s.add_argument("--seeds", type=int, default=DEMO_SEEDS,
                   help=f"number of seeds (default {DEMO_SEEDS}: enough for the pairwise tests of the report)")
    s.add_argument("--out-dir", default="moo-demo", help="directory for results.h5 and the report (default moo-demo)")
    s.set_defaults(func=_safe(_demo), budget=100)
