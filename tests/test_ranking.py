"""Standalone baselines and the weight-sharing rank study, on tiny real data."""

import json

import numpy as np
import pytest

from benchmark import costs
from benchmark.spaces import ArchitectureError, get_space
from benchmark.supernet.ranking import plot_study, run_study, spread_architectures
from benchmark.supernet.train import TrainConfig, load_run, read_log, train

TINY = dict(batch_size=2, block_size=32, eval_tokens=256, threads=1, lr=3e-3)


def test_spread_covers_the_size_range():
    archs = spread_architectures("t", 5, seed=0, pool=300)
    p = costs.params(archs)
    assert len(archs) == 5 and list(p) == sorted(p)
    pool_p = costs.params(get_space("t").sample(0, 300))
    assert p[0] == pool_p.min() and p[-1] == pool_p.max()
    assert spread_architectures("t", 5, seed=0, pool=300) == archs  # seeded


def test_standalone_run_trains_only_its_architecture(tiny_corpus, tmp_path):
    arch = get_space("t").sample(3)
    run = tmp_path / "r"
    train(TrainConfig(arch=arch.id, data_dir=str(tiny_corpus), out_dir=str(run), steps=4, warmup=1, eval_every=4,
                      ckpt_every=2, **TINY), progress=False)
    log = read_log(run / "log.jsonl")
    assert all(set(e["loss"]) == {"arch"} for e in log) and set(log[-1]["val"]) == {"arch"}
    net, state = load_run(run)
    assert state["step"] == 4 and state["config"]["arch"] == arch.id
    # weights outside the architecture never receive gradients: the last layer's norms stay at init
    if arch.n_layer < get_space("t").max_layers:
        assert bool((net.blocks[-1].ln_1.weight == 1).all())


def test_standalone_arch_is_validated():
    with pytest.raises(ArchitectureError):
        TrainConfig(arch="gpt-t-9-64-2-2-True").validate()


def test_study_reports_rank_correlation_and_resumes(tiny_corpus, tmp_path):
    from benchmark.supernet.elastic import Supernet, save_supernet

    ckpt = tmp_path / "supernet.safetensors"
    save_supernet(Supernet("t", vocab_size=300, block_size=32).init_weights(0), ckpt)
    out = tmp_path / "study.json"
    kw = dict(n=3, steps=3, runs_dir=tmp_path / "runs", data_dir=tiny_corpus, eval_tokens=128,
              base_config={**{k: v for k, v in TINY.items() if k != "eval_tokens"}, "eval_tokens": 128},
              progress=False)
    r = run_study("t", ckpt, out, **kw)
    assert len(r["archs"]) == 3 and -1 <= r["kendall_tau"] <= 1 and -1 <= r["spearman_rho"] <= 1
    assert all(np.isfinite(a["standalone_ppl"]) and a["eval_tokens"] == 128 for a in r["archs"])
    # a finished study is not retrained: rerunning returns the same numbers without touching the runs
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("state.json")}
    assert run_study("t", ckpt, out, **kw)["archs"] == r["archs"]
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("state.json")}
    assert json.loads(out.read_text())["kendall_tau"] == r["kendall_tau"]
    assert plot_study(r, tmp_path / "rank.png").stat().st_size > 0
