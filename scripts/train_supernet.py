"""Train the supernet of a space, then release it: fp16 weights, training log and loss plot.

    python scripts/train_supernet.py --space t --steps 1100        # resumable: rerun to continue

Writes runs/supernet-<space>/ (checkpoints, log.jsonl), data/supernet_<space>.safetensors,
docs/supernet/<space>_log.jsonl and docs/supernet/<space>_loss.png.
"""

import argparse
import shutil
from pathlib import Path

from benchmark.supernet.train import TrainConfig, plot_log, release_checkpoint, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="t")
    p.add_argument("--steps", type=int, default=1100)
    p.add_argument("--n-random", type=int, default=2)
    p.add_argument("--distill", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    run = Path(f"runs/supernet-{a.space}")
    cfg = TrainConfig(space=a.space, out_dir=str(run), steps=a.steps, n_random=a.n_random, distill=a.distill,
                      threads=a.threads, seed=a.seed, ckpt_every=25)
    train(cfg)
    out = release_checkpoint(run, Path("data") / f"supernet_{a.space}.safetensors")
    docs = Path("docs/supernet")
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "log.jsonl", docs / f"{a.space}_log.jsonl")
    png = plot_log(run / "log.jsonl", docs / f"{a.space}_loss.png")
    print(f"released {out}; log and loss curve in {docs} ({png.name})")


if __name__ == "__main__":
    main()
