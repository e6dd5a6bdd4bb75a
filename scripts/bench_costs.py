#!/usr/bin/env python
"""Time the closed-form costs against building a dense model per architecture.

Samples ``-n`` architectures (``space.sample(seed, n)`` then ``space.encode_many``; not timed),
times ``costs.params`` + ``costs.flops_prefill`` on the encoding matrix, then builds
``benchmark.model.GPT`` for ``--n-dense`` of them and counts ``numel`` of its parameters (how
HW-GPT-Bench obtains params), checks that both agree, and prints the per-architecture ratio.

    python scripts/bench_costs.py                       # space s, 1e5 encodings, 20 dense CPU models
    python scripts/bench_costs.py --space l --torch-device meta
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from benchmark import costs
from benchmark.model import GPT
from benchmark.spaces import SPACES, get_space


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="s", choices=sorted(SPACES))
    ap.add_argument("-n", type=int, default=100_000, help="encodings to cost (default 1e5)")
    ap.add_argument("--n-dense", type=int, default=20, help="dense models to build (default 20)")
    ap.add_argument("--torch-device", default="cpu", help="torch device of the dense models: cpu (allocates weights, "
                                                   "as HW-GPT-Bench does) or meta")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=None, help="default: the space's context length")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    sp = get_space(args.space)
    seq = args.seq_len or sp.block_size
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t0 = time.perf_counter()
    archs = sp.sample(args.seed, n=args.n)
    enc = sp.encode_many(archs)
    print(f"space {sp.name}: sampled and encoded {args.n} architectures in {time.perf_counter() - t0:.2f} s "
          f"(not part of the timing); encoding {enc.shape} {enc.dtype}")

    costs.params(enc[:10], space=sp.name)  # warm the lookup tables
    t0 = time.perf_counter()
    p = costs.params(enc, space=sp.name)
    f = costs.flops_prefill(enc, args.batch, seq, space=sp.name)
    vec_s = time.perf_counter() - t0
    print(f"closed form: params + flops_prefill(batch={args.batch}, seq_len={seq}) for {args.n} encodings: "
          f"{vec_s * 1e3:.1f} ms ({vec_s / args.n * 1e9:.0f} ns per architecture)")

    t0 = time.perf_counter()
    dense = []
    for a in archs[: args.n_dense]:
        with torch.device(args.torch_device):
            m = GPT(a)
        dense.append(sum(q.numel() for q in m.parameters()))
        del m
    dense_s = time.perf_counter() - t0
    n_dense = len(dense)
    if dense != p[:n_dense].tolist():
        print("MISMATCH between closed-form params and dense numel", file=sys.stderr)
        return 1
    print(f"dense models on {args.torch_device}: built {n_dense} and counted numel in {dense_s:.2f} s "
          f"({dense_s / n_dense * 1e3:.1f} ms per architecture); params agree exactly")
    ratio = (dense_s / n_dense) / (vec_s / args.n)
    print(f"per-architecture speed-up of the closed form over building the model: {ratio:,.0f}x")
    print(f"(sanity: median params {int(np.median(p)):,}, median prefill GFLOPs {np.median(f) / 1e9:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
