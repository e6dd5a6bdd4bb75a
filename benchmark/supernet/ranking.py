"""Does weight sharing rank architectures correctly?

Trains a handful of architectures *standalone* (from scratch, no weight sharing, the same data,
optimiser, schedule and token budget each) and compares their test perplexity with the test
perplexity the trained supernet gives them with inherited weights: Kendall tau and Spearman rho
of the two rankings, and a scatter plot. Both perplexities are measured the same way
(:func:`benchmark.supernet.perplexity.measure_perplexity`, the held-out test split, the same
windows).

Architectures are spread over the space deterministically: a seeded uniform sample is sorted by
exact parameter count and ``n`` architectures are taken at evenly spaced ranks (the smallest and
the largest of the sample included), so the comparison covers the whole size range rather than
a cluster of mid-sized models.

Each standalone run is an ordinary resumable training run (``TrainConfig(arch=...)``); results
are written to a JSON file after every architecture, so an interrupted study resumes where it
stopped, losing at most the run in flight (and that run resumes from its last checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark import costs
from benchmark.files import write_text
from benchmark.spaces import Architecture, get_space
from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS


def spread_architectures(space: str, n: int, seed: int = 0, pool: int = 2000) -> list[Architecture]:
    """``n`` architectures at evenly spaced parameter-count ranks of a seeded sample of ``pool``."""
    if n < 2:
        raise ValueError(f"invalid n: {n!r}; allowed: an integer >= 2")
    sp = get_space(space)
    sample = sorted(set(sp.sample(seed, pool)), key=lambda a: (costs.params([a])[0], a.id))
    picks = np.unique(np.linspace(0, len(sample) - 1, n).round().astype(int))
    return [sample[i] for i in picks]


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


def run_study(space: str, supernet_path: str | Path, out_json: str | Path, *, n: int = 12, steps: int = 300,
              seed: int = 0, runs_dir: str | Path = "runs/standalone", data_dir: str | Path | None = None,
              eval_tokens: int = DEFAULT_EVAL_TOKENS, base_config: dict | None = None, progress: bool = True) -> dict:
    """Train ``n`` spread architectures standalone for ``steps`` each and compare rankings.

    ``base_config``: further :class:`~benchmark.supernet.train.TrainConfig` fields (batch size,
    learning rate, ...) shared by every standalone run. Returns (and writes to ``out_json``)
    ``{"config", "archs": [{"id", "params", "standalone_ppl", "supernet_ppl"}], "kendall_tau",
    "spearman_rho"}``.
    """
    from scipy import stats

    from benchmark.paths import data_dir as default_data_dir
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.elastic import load_supernet
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.train import TrainConfig, load_run, train

    ddir = Path(data_dir) if data_dir is not None else default_data_dir()
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    test = np.asarray(load_split("test", ddir))
    supernet = load_supernet(supernet_path, space)
    archs = spread_architectures(space, n, seed)
    base = dict(base_config or {})
    config = dict(space=space, steps=steps, warmup=max(1, steps // 10), eval_every=steps, ckpt_every=50,
                  seed=seed, data_dir=str(ddir), **base)
    done = {}
    if out_json.exists():
        prev = json.loads(out_json.read_text())
        if prev.get("config") == {**config, "eval_tokens": eval_tokens, "n": n}:
            done = {r["id"]: r for r in prev["archs"]}
    rows = []
    for i, arch in enumerate(archs):
        if arch.id in done:
            rows.append(done[arch.id])
            continue
        if progress:
            print(f"[{i + 1}/{len(archs)}] standalone {arch.id} ({int(costs.params([arch])[0]):,} params)")
        run = Path(runs_dir) / arch.id
        train(TrainConfig(arch=arch.id, out_dir=str(run), **config), progress=progress)
        net, _ = load_run(run)
        standalone = measure_perplexity(net, arch, test, max_tokens=eval_tokens)
        inherited = measure_perplexity(supernet, arch, test, max_tokens=eval_tokens)
        rows.append({"id": arch.id, "params": int(costs.params([arch])[0]),
                     "standalone_ppl": standalone.perplexity, "supernet_ppl": inherited.perplexity,
                     "eval_tokens": standalone.tokens})
        _write_json(out_json, {"config": {**config, "eval_tokens": eval_tokens, "n": n}, "archs": rows})
    a = np.array([r["standalone_ppl"] for r in rows])
    b = np.array([r["supernet_ppl"] for r in rows])
    result = {"config": {**config, "eval_tokens": eval_tokens, "n": n}, "archs": rows,
              "kendall_tau": float(stats.kendalltau(a, b).statistic),
              "spearman_rho": float(stats.spearmanr(a, b).statistic),
              "tokens_per_standalone_run": steps * config.get("batch_size", TrainConfig.batch_size)
              * (config.get("block_size") or get_space(space).block_size)}
    _write_json(out_json, result)
    return result


def plot_study(result: dict, out_png: str | Path) -> Path:
    """Standalone vs inherited-weight test perplexity, one point per architecture (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import save_figure

    rows = result["archs"]
    x = [r["standalone_ppl"] for r in rows]
    y = [r["supernet_ppl"] for r in rows]
    p = np.array([r["params"] for r in rows]) / 1e6
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sc = ax.scatter(x, y, c=p, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="parameters (M)")
    ax.set(xscale="log", yscale="log", xlabel="standalone test perplexity",
           ylabel="supernet (inherited weights) test perplexity",
           title=f"Kendall τ = {result['kendall_tau']:.3f}, Spearman ρ = {result['spearman_rho']:.3f}")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):  # plain numbers; log-scale minor labels would overlap
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xticks(np.unique(np.round(np.geomspace(min(x), max(x), 5), -1)))
    ax.set_yticks(np.unique(np.round(np.geomspace(min(y), max(y), 5), -1)))
    ax.grid(alpha=0.3)
    return save_figure(fig, out_png)

