"""The command line of profiling: ``hwlm profile`` and ``hwlm table`` (merge, add-modeled,
add-perplexity, card)."""

from __future__ import annotations

import argparse

from benchmark.settings import DTYPES
from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS

__all__ = ["add_profile_parser", "add_table_parser"]


def _shard_arg(s: str) -> tuple[int, int]:
    from benchmark.profiling.runner import parse_shard

    try:
        return parse_shard(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_perplexity_arguments(p: argparse.ArgumentParser) -> None:
    """What a perplexity is measured with: checkpoint, data directory, test tokens."""
    p.add_argument("--checkpoint", default=None, help="supernet safetensors (default data/supernet_<space>.safetensors)")
    p.add_argument("--data-dir", default=None, help="directory with tokenizer.json and corpus/test.npy (default data)")
    p.add_argument("--eval-tokens", type=int, default=DEFAULT_EVAL_TOKENS,
                   help=f"test tokens for perplexity (default {DEFAULT_EVAL_TOKENS})")


def _profile_args(args) -> dict:
    return dict(torch_device=args.torch_device, device=args.device, n=args.n, archs=args.archs, seed=args.seed, settings=args.settings,
                dtype=args.dtype, warmup=args.warmup, repeats=args.repeats,
                checkpoint=args.checkpoint, data_dir=args.data_dir, eval_tokens=args.eval_tokens,
                perplexity=not args.no_perplexity, latency=not args.no_latency, memory=not args.no_memory,
                energy=not args.no_energy, include_extremes=not args.no_extremes,
                reference_every=args.reference_every, threads=args.threads)


def _profile_cmd(args) -> int:
    from benchmark.profiling.runner import profile, profile_ray

    if args.ray:
        out = profile_ray(args.ray, args.space, args.out, args.ray_shards, **_profile_args(args))
    else:
        out = profile(args.space, args.out, shard=args.shard, progress=not args.quiet, **_profile_args(args))
    print(out)
    return 0


def add_profile_parser(sub) -> None:
    s = sub.add_parser(
        "profile", help="profile architectures on this machine into a shard table (resumable)",
        description="Measure perplexity (inherited supernet weights, test split), exact params/FLOPs, and "
                    "latency, peak memory and energy per setting on this device; one row per architecture, "
                    "written atomically, so a rerun resumes. Shards (--shard i/n) merge with 'hwlm table merge'. "
                    "With --ray, shards run as Ray tasks and are merged into --out.")
    s.add_argument("--space", default="t", help="search space (t, s, m, l); default t")
    s.add_argument("--out", required=True, help="shard table to write or resume (HDF5)")
    s.add_argument("--torch-device", default="cpu", help="torch device to measure on: cpu, cuda, cuda:1 (default cpu)")
    s.add_argument("--device", default=None, metavar="ID", help="device id in the table (default: derived from the "
                                                                "hardware, e.g. cpu-epyc-2c)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("-n", type=int, default=None, help="number of architectures to sample uniformly (seeded)")
    g.add_argument("--archs", nargs="+", default=None, metavar="ID", help="explicit architecture ids")
    s.add_argument("--seed", type=int, default=0, help="seed of the sample, the profiling order and the random "
                                                       "weights/tokens used for timing (default 0)")
    s.add_argument("--settings", nargs="+", default=None, metavar="NAME",
                   help="settings like prefill-b1-s256-fp32 decode-b1-s128-fp32 (default: the space's defaults)")
    s.add_argument("--dtype", default=None, choices=list(DTYPES),
                   help="dtype of the default settings (default fp32 on CPU, fp16 on GPU)")
    s.add_argument("--shard", type=_shard_arg, default=(0, 1), metavar="i/n",
                   help="profile every n-th architecture starting at i (0 <= i < n); default 0/1")
    s.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run --ray-shards shards as Ray tasks (a cluster address, or 'local') and merge them into "
                        "--out; needs the moo-ray extra and nodes started with one 'hwlm_profile_slot' resource")
    s.add_argument("--ray-shards", type=int, default=2, help="number of shards with --ray (default 2)")
    s.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    s.add_argument("--repeats", type=int, default=10, help="timed repeats stored per setting (default 10)")
    _add_perplexity_arguments(s)
    s.add_argument("--reference-every", type=int, default=50,
                   help="re-time the largest/smallest architectures every this many rows (drift log; default 50)")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads for the whole run (default: torch's; part of the device id)")
    s.add_argument("--no-perplexity", action="store_true", help="skip perplexity and token accuracy")
    s.add_argument("--no-latency", action="store_true", help="skip latency")
    s.add_argument("--no-memory", action="store_true", help="skip peak memory")
    s.add_argument("--no-energy", action="store_true", help="skip energy")
    s.add_argument("--no-extremes", action="store_true", help="do not add the largest and smallest architectures")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_profile_cmd)


def _merge_cmd(args) -> int:
    from benchmark.table import Table, merge_tables

    from benchmark.release import release_write

    with release_write(args.out, force=args.force, what="hwlm table merge"):
        out = merge_tables(args.shards, args.out)
    print(f"merged {len(args.shards)} shard(s) into {out}: {len(Table(out))} rows")
    return 0


def _add_force_argument(parser) -> None:
    parser.add_argument("--force", action="store_true", help="write even into a release directory (one with "
                        "MANIFEST.json) and rewrite its manifest (refused otherwise)")


def add_table_parser(sub) -> None:
    s = sub.add_parser("table", help="operations on benchmark tables",
                       description="Operations on hwlm-bench HDF5 tables.")
    tsub = s.add_subparsers(dest="table_command", metavar="ACTION", required=True)
    m = tsub.add_parser("merge", help="merge shard tables (de-duplicated by architecture id)",
                        description="Merge shard tables into OUT, written atomically. The first shard holding an "
                                    "architecture wins; shards must agree on space, declarations and device "
                                    "provenance.")
    m.add_argument("out", metavar="OUT", help="merged table to write")
    m.add_argument("shards", nargs="+", metavar="SHARD", help="shard tables, in priority order")
    _add_force_argument(m)
    m.set_defaults(func=_merge_cmd)
    d = tsub.add_parser("drop", help="write a copy of a table without some devices or logs",
                        description="Write OUT: TABLE without the named devices (settings, hardware metrics, "
                                    "measurement times) and logs; rows and metrics are kept. Use it to replace a "
                                    "re-profiled device: drop it, then merge the new shard.")
    d.add_argument("table", metavar="TABLE")
    d.add_argument("out", metavar="OUT", help="table to write (a new path)")
    d.add_argument("--device", action="append", default=[], metavar="ID", help="device to drop (repeatable)")
    d.add_argument("--log", action="append", default=[], metavar="NAME", help="log to drop (repeatable)")
    _add_force_argument(d)
    d.set_defaults(func=_drop_cmd)
    a = tsub.add_parser("add-modeled", help="add (or recompute) modeled devices, calibrated on the measured ones",
                        description="Add modeled latency_ms and energy_mj of every row for the registry's devices "
                                    "(roofline + power model, source 'modeled'), calibrated on the table's measured "
                                    "latencies; rewrites TABLE atomically. See docs/devices.md.")
    a.add_argument("table", metavar="TABLE", help="table to extend in place")
    a.add_argument("--devices", nargs="+", default=None, metavar="ID", help="registry ids (default: all)")
    a.add_argument("--cpu-spec", default="cpu-epyc-7513",
                   help="registry entry describing the measured CPU when its model string matches none "
                        "(default cpu-epyc-7513)")
    _add_force_argument(a)
    a.set_defaults(func=_add_modeled_cmd)
    pp = tsub.add_parser("add-perplexity", help="measure perplexity of rows that lack it (resumable)",
                         description="Fill perplexity and token accuracy (inherited supernet weights, test split) "
                                     "of every row of TABLE that lacks them, e.g. after 'hwlm profile "
                                     "--no-perplexity'. Resumable; never overwrites a value.")
    pp.add_argument("table", metavar="TABLE")
    _add_perplexity_arguments(pp)
    pp.add_argument("--reuse", nargs="+", default=(), metavar="TABLE",
                    help="copy perplexities of the same architectures from these tables (same checkpoint, "
                         "tokenizer and --eval-tokens, checked) instead of measuring them again")
    pp.add_argument("--workers", type=int, default=1,
                    help="local worker processes, one torch thread each (default 1: this process); with "
                         "N > 1 the CPU's measurement lock is held for the whole pass")
    pp.set_defaults(func=_add_perplexity_cmd)
    c = tsub.add_parser("card", help="write the data card of a table (markdown + plots)",
                        description="Rows and provenance per device, profiling time, noise (CV of repeats), drift "
                                    "of the reference architectures, modeled-device calibration error and metric "
                                    "distributions, as a markdown page with plots beside it.")
    c.add_argument("table", metavar="TABLE")
    c.add_argument("--out", required=True, help="markdown file to write (plots go beside it)")
    c.set_defaults(func=_card_cmd)


def _drop_cmd(args) -> int:
    from benchmark.table import Table, drop_from_table

    from benchmark.release import release_write

    with release_write(args.out, force=args.force, what="hwlm table drop"):
        out = drop_from_table(args.table, args.out, devices=args.device, logs=args.log)
    t = Table(out)
    print(f"{out}: {len(t)} rows, devices {', '.join(t.devices()) or 'none'}, logs {', '.join(t.logs()) or 'none'}")
    return 0


def _add_perplexity_cmd(args) -> int:
    from benchmark.profiling.perplexity_pass import add_perplexity

    print(add_perplexity(args.table, args.checkpoint, args.data_dir, args.eval_tokens, reuse=args.reuse,
                         workers=args.workers))
    return 0


def _card_cmd(args) -> int:
    from benchmark.datacard import write_data_card

    print(f"data card written to {write_data_card(args.table, args.out)}")
    return 0


def _add_modeled_cmd(args) -> int:
    from benchmark.profiling.modeled import add_modeled_devices

    from benchmark.release import release_write

    with release_write(args.table, force=args.force, what="hwlm table add-modeled"):
        r = add_modeled_devices(args.table, devices=args.devices, cpu_spec=args.cpu_spec)
    for kind, c in r["calibration"].items():
        cv = ", ".join(f"{s}: MAPE {v['mape']:.1%}, Kendall tau {v['kendall_tau']:.2f}"
                       for s, v in c["two_fold_cv"].items())
        print(f"{kind} model calibrated on {c['measured_device']} ({c['spec']}); two-fold CV: {cv}")
    print(f"{len(r['devices'])} modeled devices written to {args.table}")
    return 0
