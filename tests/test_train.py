"""Sandwich-rule training on tiny real data: it learns, and a resumed run is bit-identical."""


import pytest
import torch
from safetensors.torch import load_file

from benchmark.supernet.train import TrainConfig, lr_at, plot_log, read_log, train

TINY = dict(steps=6, batch_size=2, block_size=32, eval_every=3, eval_tokens=256, ckpt_every=2, warmup=2,
            n_random=1, threads=1, lr=3e-3)


def _weights(run_dir, step):
    return load_file(str(run_dir / "checkpoint" / f"model-{step}.safetensors"))


def test_resumed_run_continues_identically(tiny_corpus, tmp_path):
    straight, interrupted = tmp_path / "a", tmp_path / "b"
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(straight), **TINY), progress=False)
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(interrupted), **{**TINY, "steps": 3}), progress=False)
    # the first run stopped after step 3 with its last checkpoint at step 3: resume to 6
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(interrupted), **TINY), progress=False)
    a, b = _weights(straight, 6), _weights(interrupted, 6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a, log_b = read_log(straight / "log.jsonl"), read_log(interrupted / "log.jsonl")
    assert [e["step"] for e in log_b] == list(range(1, 7))
    assert [e["loss"] for e in log_a] == [e["loss"] for e in log_b]
    assert "val" in log_a[2] and log_a[2]["val"]["largest"]["tokens"] == 256
    assert plot_log(straight / "log.jsonl", tmp_path / "loss.png").stat().st_size > 0


def test_resume_with_a_different_config_is_refused(tiny_corpus, tmp_path):
    run = tmp_path / "r"
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(run), **{**TINY, "steps": 3}), progress=False)
    with pytest.raises(ValueError, match="resume"):
        train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(run), **{**TINY, "lr": 1e-2}), progress=False)


def test_standalone_run_started_with_an_older_id_resumes(tiny_corpus, tmp_path):
    """A run whose config names its architecture in the older id form resumes under the canonical
    id (the same architecture); another architecture is still refused."""
    from benchmark.spaces import concatenated_id, get_space

    arch = get_space("t").sample(seed=2)
    run = tmp_path / "r"
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(run), arch=concatenated_id(arch), **{**TINY, "steps": 3}),
          progress=False)
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(run), arch=arch.id, **TINY), progress=False)
    assert [e["step"] for e in read_log(run / "log.jsonl")] == list(range(1, 7))
    other = get_space("t").sample(seed=3)
    with pytest.raises(ValueError, match="resume"):
        train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(run), arch=other.id, **{**TINY, "steps": 8}),
              progress=False)


def test_training_reduces_loss(tiny_corpus, tmp_path):
    cfg = {**TINY, "steps": 30, "eval_every": 30, "ckpt_every": 30, "warmup": 3, "distill": 0.5}
    train(TrainConfig(data_dir=str(tiny_corpus), out_dir=str(tmp_path), **cfg), progress=False)
    log = read_log(tmp_path / "log.jsonl")
    first = sum(e["loss"]["largest"] for e in log[:5]) / 5
    last = sum(e["loss"]["largest"] for e in log[-5:]) / 5
    assert last < first - 0.3


@pytest.mark.parametrize("field,value", [("steps", 0), ("n_random", -1), ("distill", 2.0), ("warmup", 10)])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{**TINY, field: value}).validate()


def test_schedule_warms_up_then_decays():
    c = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr=0.1)
    lrs = [lr_at(s, c) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
