"""The ``hwlm`` command line. Subcommands import what they need lazily, so ``--help`` is fast.

A mistake (an invalid value, a missing file: a :class:`~benchmark.errors.HwlmError` or an
``OSError``) prints one line on stderr and exits with status 2; ``--debug`` anywhere on the
command line, or ``HWLM_DEBUG=1``, shows the traceback instead. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmark.errors import HwlmError

DEBUG_ENV = "HWLM_DEBUG"


def _info(args) -> int:
    from benchmark import Benchmark
    from benchmark.version import __version__
    from benchmark.paths import data_dir
    from benchmark.spaces import SPACES

    print(f"hwlm-bench {__version__}")
    print(f"embedded release: {data_dir()}")
    for name, sp in SPACES.items():
        print(f"space {name}: {sp.size():.3e} architectures; embed_dim {list(sp.embed_dim_choices)}, "
              f"n_layer {list(sp.n_layer_choices)}, n_head {list(sp.n_head_choices)} x head_size {sp.head_size}, "
              f"mlp_ratio {list(sp.mlp_ratio_choices)}, bias {list(sp.bias_choices)}, context {sp.block_size}, "
              f"vocabulary {sp.vocab_size}")
        # what Benchmark(name) answers from, so a user sees measured from modeled before querying
        b = Benchmark(name)
        devices = b.devices()
        measured = [d for d, v in devices.items() if v["source"] == "measured"]
        sources = {m: v["source"] for m, v in b.metrics().items()}
        table = (f"table of {b.table.n:,} architectures ({b.path}), measured on {', '.join(measured) or 'no device'}"
                 if b.table is not None else "no table")
        print(f"  {table}; {len(devices) - len(measured)} modeled devices; {len(b.models.entries)} surrogates")
        print("  metrics: " + ", ".join(f"{m} ({src})" for m, src in sources.items()))
    return 0


def _sample(args) -> int:
    from benchmark import costs
    from benchmark.spaces import get_space

    sp = get_space(args.space)
    if args.n < 1:
        raise HwlmError.invalid("-n", args.n, "an integer >= 1 (the number of architectures to sample)")
    archs = sp.sample(args.seed, n=args.n)
    seq = sp.block_size if args.seq_len is None else args.seq_len
    p = costs.params(archs)
    f = costs.flops_prefill(archs, batch=args.batch, seq_len=seq)
    d = costs.flops_decode(archs, batch=args.batch, context_len=seq - 1)
    w = costs.weight_bytes(archs, dtype="fp32")
    print(f"{'architecture':<44} {'params':>12} {'GFLOPs prefill':>15} {'MFLOPs/token':>13} {'weights MB':>11}")
    print(f"{'':<44} {'(exact)':>12} {f'b{args.batch} x s{seq}':>15} {'decode':>13} {'fp32':>11}")
    for a, pi, fi, di, wi in zip(archs, p, f, d, w):
        print(f"{a.id:<44} {int(pi):>12,} {fi / 1e9:>15.3f} {di / 1e6:>13.3f} {wi / 1e6:>11.2f}")
    return 0


def _train(args) -> int:
    from benchmark.supernet.train import TrainConfig, plot_log, train

    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    out = train(TrainConfig(**fields))
    png = plot_log(out / "log.jsonl", out / "loss.png")
    print(f"loss curve: {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwlm", description="hwlm-bench: a hardware-aware benchmark for LM architectures")
    p.add_argument("--debug", action="store_true",
                   help=f"on an error, show the traceback instead of one line (anywhere on the line; or {DEBUG_ENV}=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("info", help="versions, search spaces and the embedded release",
                       description="Print the package version, the search spaces and, per space, what Benchmark(space) "
                                   "answers from: its table and measured devices, modeled devices, surrogates "
                                   "and each metric's source.")
    s.set_defaults(func=_info)

    s = sub.add_parser("sample", help="sample architectures and print their exact costs",
                       description="Seeded uniform sample of a space with exact params and FLOPs.")
    s.add_argument("--space", default="t", help="search space (t, s, m, l); default t")
    s.add_argument("-n", type=int, default=5, help="number of architectures (default 5)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    s.add_argument("--batch", type=int, default=1, help="batch size of the FLOPs setting (default 1)")
    s.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the space's context)")
    s.set_defaults(func=_sample)

    s = sub.add_parser("train", help="train (or resume) a weight-sharing supernet with the sandwich rule",
                       description="Train a supernet; rerunning with the same --out-dir resumes from its checkpoint.")
    s.add_argument("--space", default=None, help="search space (default t)")
    s.add_argument("--data-dir", default=None, help="directory with tokenizer.json and corpus/ (default data)")
    s.add_argument("--out-dir", default=None, help="run directory (default runs/supernet-t)")
    for name, typ, help_ in (("steps", int, "optimiser steps"), ("batch-size", int, "sequences per batch"),
                             ("lr", float, "peak learning rate"), ("min-lr", float, "final learning rate"),
                             ("warmup", int, "warm-up steps"), ("n-random", int, "random sub-networks per step"),
                             ("distill", float, "in-place distillation weight in [0, 1]"),
                             ("seed", int, "seed of init, batches and sampled sub-networks"),
                             ("eval-every", int, "steps between validations"),
                             ("ckpt-every", int, "steps between checkpoints"), ("threads", int, "torch threads")):
        s.add_argument(f"--{name}", type=typ, default=None, help=help_)
    s.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast")
    s.add_argument("--init-from", default=None, metavar="SUPERNET",
                   help="start from a released supernet's weights (.safetensors) instead of a seeded init: "
                        "fine-tuning, e.g. one architecture with --arch")
    s.add_argument("--arch", default=None, help="train only this architecture (id): a standalone model")
    s.set_defaults(func=_train)

    for register in _registrations():
        register(sub)
    return p


def _registrations():
    """Subcommands that live beside the concept they drive (corpus, hub, export, profiling,
    surrogates, MOO). Imported unconditionally: a module that fails to import is a bug, and says so."""
    from benchmark.byod import add_device_parser
    from benchmark.export import add_export_parser
    from benchmark.hub_commands import add_download_parser, add_manifest_parser, add_publish_parser
    from benchmark.moo.cli import add_moo_parser
    from benchmark.profiling.commands import add_profile_parser, add_table_parser
    from benchmark.supernet.corpus import add_prepare_corpus_parser
    from surrogates.fit import add_fit_parser

    return [add_prepare_corpus_parser, add_manifest_parser, add_download_parser, add_publish_parser,
            add_export_parser, add_profile_parser, add_table_parser, add_fit_parser, add_moo_parser,
            add_device_parser]


# optional packages (setup.cfg extras) a subcommand may need only when it runs
OPTIONAL_PACKAGES = {"transformers": "export", "pymoo": "moo", "optuna": "moo", "moocore": "moo",
                     "botorch": "moo-bayes", "ray": "moo-ray", "pynvml": "gpu"}


def _check_torch_device(name: str) -> None:
    """A ``--torch-device`` this machine has: cpu, cuda[:i] with CUDA, mps with MPS."""
    import torch

    allowed = "cpu, cuda or cuda:I (with CUDA), mps (with MPS)"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise HwlmError.invalid("--torch-device", name, allowed) from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise HwlmError.invalid("--torch-device", name, f"{allowed}; this machine has no CUDA device")
        if dev.index is not None and dev.index >= n:
            raise HwlmError.invalid("--torch-device", name, f"cuda:0 .. cuda:{n - 1} (the CUDA devices here)")
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise HwlmError.invalid("--torch-device", name, allowed + ("; this machine has no MPS" if dev.type == "mps" else ""))


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted anywhere before a ``--``), and whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return rest, len(rest) != len(argv)


def main(argv: list[str] | None = None) -> int:
    argv, debug = _take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    debug = debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "torch_device", None) is not None:
            _check_torch_device(args.torch_device)
        return args.func(args) or 0
    except ModuleNotFoundError as e:
        extra = OPTIONAL_PACKAGES.get((e.name or "").split(".")[0])
        if extra is None or debug:
            raise
        print(f"hwlm {args.command}: needs the optional package {e.name!r}; install it with "
              f"pip install -e '.[{extra}]'", file=sys.stderr)
        return 2
    except (HwlmError, OSError) as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"hwlm {args.command}: {message} (--debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
