"""Does weight sharing rank architectures correctly? Standalone vs supernet test perplexity.

    python scripts/rank_correlation.py --space t -n 12 --steps 300     # resumable: rerun to continue

Trains n architectures spread over the space from scratch (runs/standalone/<id>/), measures
their test perplexity and the supernet's inherited-weight test perplexity, and writes
docs/supernet/<space>_rank_correlation.{json,png} (Kendall tau, Spearman rho, scatter plot).
"""

import argparse
from pathlib import Path

from benchmark.supernet.ranking import plot_study, run_study


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="t")
    p.add_argument("-n", type=int, default=12, help="architectures (default 12)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per standalone run (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--supernet", default=None, help="default data/supernet_<space>.safetensors")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    supernet = a.supernet or f"data/supernet_{a.space}.safetensors"
    docs = Path("docs/supernet")
    result = run_study(a.space, supernet, docs / f"{a.space}_rank_correlation.json", n=a.n, steps=a.steps,
                       seed=a.seed, runs_dir="runs/standalone", base_config={"threads": a.threads})
    png = plot_study(result, docs / f"{a.space}_rank_correlation.png")
    print(f"Kendall tau {result['kendall_tau']:.3f}, Spearman rho {result['spearman_rho']:.3f} over "
          f"{len(result['archs'])} architectures; results in {docs / f'{a.space}_rank_correlation.json'}, plot {png}")


if __name__ == "__main__":
    main()
