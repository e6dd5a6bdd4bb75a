"""The profiling runner (``hwlm profile``) and ``hwlm table merge`` on a tiny supernet and corpus."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.profiling.runner import parse_shard, profile, profile_order, select_architectures
from benchmark.table import Table, TableError

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["prefill-b1-s32-fp32", "decode-b1-s16-fp32"]
FAST = dict(settings=SETTINGS, warmup=1, repeats=2, eval_tokens=256, threads=1, progress=False)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from benchmark.supernet.elastic import Supernet, save_supernet

    p = tmp_path_factory.mktemp("ckpt") / "supernet_t.safetensors"
    save_supernet(Supernet("t", vocab_size=300).init_weights(0), p)
    return p


@pytest.fixture(autouse=True)
def _locks(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLM_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture(scope="module")
def full(tmp_path_factory, ckpt, tiny_corpus) -> Path:
    out = tmp_path_factory.mktemp("full") / "shard.h5"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWLM_LOCK_DIR", str(out.parent / "locks"))
        return profile("t", out, n=3, seed=0, checkpoint=ckpt, data_dir=tiny_corpus, **FAST)


def test_rows_metrics_provenance(full, ckpt, tiny_corpus):
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.release import sha256_file
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.elastic import load_supernet

    t = Table(full)
    expected = select_architectures("t", n=3, seed=0)
    assert len(expected) == 5 and sorted(t.ids) == sorted(a.id for a in expected)
    assert {"params", "params_no_embedding", "perplexity", "token_accuracy",
            "flops_prefill-b1-s32-fp32", "flops_decode-b1-s16-fp32"} <= set(t.metrics())
    assert t.metrics()["params"]["source"] == "exact" and t.metrics()["perplexity"]["source"] == "measured"
    assert (t.metric("params") > t.metric("params_no_embedding")).all()
    assert t.attrs["eval_tokens"] == 256
    assert t.attrs["supernet_sha256"] == sha256_file(ckpt)
    assert t.attrs["tokenizer_sha256"] == sha256_file(tiny_corpus / "tokenizer.json")
    dev = next(iter(t.devices()))
    assert dev.endswith("-1c")  # threads=1 is part of the device id
    assert len(t.devices()) == 1 and t.devices()[dev]["source"] == "measured"
    prov = t.provenance(dev)
    assert prov["cpu_model"] and "torch_threads" in prov and "hostname_sha256" in prov
    assert t.settings(dev) == sorted(SETTINGS) or set(t.settings(dev)) == set(SETTINGS)
    for s in SETTINGS:
        lat = t.hardware(dev, s, "latency_ms")
        assert lat.shape == (5, 2) and np.isfinite(lat).all() and (lat > 0).all()
        mem = t.hardware(dev, s, "memory_mb")
        assert mem.shape == (5, 1) and (mem > 0).all()
        hm = t.hardware_metrics(dev, s)
        assert hm["latency_ms"]["unit"] == "ms" and hm["memory_mb"]["unit"] == "MB"
        assert np.isfinite(t.measured_at(dev, s)).all()
        from benchmark.profiling.energy import EnergyUnavailable, energy_counter
        if isinstance(energy_counter("cpu"), EnergyUnavailable):  # this VM: no RAPL
            assert hm["energy_mj"].get("missing_reason")
            assert np.isnan(t.hardware(dev, s, "energy_mj")).all()
    ref = t.log("reference_timings")
    assert set(ref) == {"arch", "unix_time", "rows", "median_ms"} and len(ref["median_ms"]) == 2
    ppl = t.metric("perplexity")
    assert np.isfinite(ppl).all() and np.isfinite(t.metric("token_accuracy")).all()
    a = expected[0]
    r = measure_perplexity(load_supernet(ckpt, "t"), a, np.asarray(load_split("test", tiny_corpus)), max_tokens=256)
    assert math.isclose(ppl[t.row(a)], r.perplexity, rel_tol=1e-9)


def test_resume_refuses_other_host(full, tmp_path, ckpt, tiny_corpus, monkeypatch):
    import shutil

    from benchmark.profiling import devices

    copy = tmp_path / "copy.h5"
    shutil.copy(full, copy)
    real = devices.host_provenance
    monkeypatch.setattr(devices, "host_provenance", lambda d="cpu": {**real(d), "hostname_sha256": "0" * 16})
    with pytest.raises(TableError, match="different machine"):
        profile("t", copy, n=4, seed=0, checkpoint=ckpt, data_dir=tiny_corpus, **FAST)


def test_order_is_seeded():
    archs = select_architectures("t", n=6, seed=1)
    assert [a.id for a in profile_order(archs, 3)] == [a.id for a in profile_order(archs, 3)]
    assert sorted(a.id for a in profile_order(archs, 3)) == sorted(a.id for a in archs)
    assert [a.id for a in profile_order(archs, 3)] != [a.id for a in profile_order(archs, 4)]


def test_bad_shard():
    for bad in ("3/2", "2/2", "-1/2", "1/0", "a/b", "1"):
        with pytest.raises(ValueError, match="invalid shard"):
            parse_shard(bad)
    assert parse_shard("1/3") == (1, 3)
    r = subprocess.run([sys.executable, "-m", "benchmark.cli", "profile", "--out", "x.h5", "-n", "2", "--shard", "3/2"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "invalid shard" in r.stderr


def test_shards_merge_to_full_set(tmp_path, ckpt, tiny_corpus):
    from benchmark.cli import main

    kw = dict(n=4, seed=2, checkpoint=ckpt, data_dir=tiny_corpus, perplexity=False, memory=False, include_extremes=False,
              settings=["prefill-b1-s16-fp32"], warmup=0, repeats=1, eval_tokens=256, threads=1, progress=False)
    s0 = profile("t", tmp_path / "s0.h5", shard="0/2", **kw)
    s1 = profile("t", tmp_path / "s1.h5", shard=(1, 2), **kw)
    ids0, ids1 = set(Table(s0).ids), set(Table(s1).ids)
    assert ids0 and ids1 and not ids0 & ids1
    assert main(["table", "merge", str(tmp_path / "m.h5"), str(s0), str(s1)]) == 0
    merged = Table(tmp_path / "m.h5")
    assert sorted(merged.ids) == sorted(a.id for a in select_architectures("t", n=4, seed=2, include_extremes=False))


def test_resume_after_kill9(tmp_path, ckpt, tiny_corpus):
    out = tmp_path / "k.h5"
    cmd = [sys.executable, str(REPO / "scripts" / "profile_archs.py"), "--space", "t", "--out", str(out), "-n", "8",
           "--seed", "5", "--settings", SETTINGS[0], "--warmup", "0", "--repeats", "1", "--eval-tokens", "256",
           "--checkpoint", str(ckpt), "--data-dir", str(tiny_corpus), "--no-extremes", "--no-memory", "--threads", "1", "--quiet"]
    env = {**os.environ, "HWLM_LOCK_DIR": str(tmp_path / "locks")}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 40
    rows = 0
    while time.monotonic() < deadline and p.poll() is None:
        if out.exists():
            try:
                rows = len(Table(out))
            except TableError:
                rows = 0
            if rows >= 1:
                break
        time.sleep(0.02)
    assert p.poll() is None, f"profile finished before it could be killed: {p.stderr.read().decode()[-2000:]}"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stderr.close()
    killed_rows = len(Table(out))
    assert 1 <= killed_rows < 8
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    t = Table(out)
    expected = sorted(a.id for a in select_architectures("t", n=8, seed=5, include_extremes=False))
    assert sorted(t.ids) == expected and len(set(t.ids)) == len(t.ids)
    assert np.isfinite(t.metric("perplexity")).all()
    assert len(t.log("runs")["rows"]) == 2 and t.log("runs")["rows"][0] == 0  # two runs; the second resumed


def test_perplexity_pass_after_hardware_pass(tmp_path, ckpt, tiny_corpus):
    """A hardware-only shard gets its perplexities in a second, resumable pass; values equal a
    one-pass profile's, and a different checkpoint is refused."""
    from benchmark.profiling.runner import add_perplexity
    from benchmark.supernet.elastic import Supernet, save_supernet

    out = profile("t", tmp_path / "hw.h5", n=2, seed=0, checkpoint=ckpt, data_dir=tiny_corpus, perplexity=False,
                  memory=False, energy=False, **FAST)
    assert "perplexity" not in Table(out).metrics()
    assert add_perplexity(out, ckpt, tiny_corpus, eval_tokens=256, progress=False) == 4
    assert add_perplexity(out, ckpt, tiny_corpus, eval_tokens=256, progress=False) == 0  # nothing left to do
    one_pass = profile("t", tmp_path / "one.h5", n=2, seed=0, checkpoint=ckpt, data_dir=tiny_corpus, latency=False,
                       memory=False, energy=False, **FAST)
    a, b = Table(out), Table(one_pass)
    for m in ("perplexity", "token_accuracy"):
        np.testing.assert_array_equal(a.metric(m)[[a.row(i) for i in b.ids]], b.metric(m))
    assert a.attrs["eval_tokens"] == 256 and a.attrs["supernet_sha256"] == b.attrs["supernet_sha256"]
    other = tmp_path / "other.safetensors"
    save_supernet(Supernet("t", vocab_size=300).init_weights(1), other)
    with pytest.raises(TableError, match="supernet_sha256"):
        add_perplexity(out, other, tiny_corpus, eval_tokens=256, progress=False)
    # a re-timed shard of the same architectures copies them instead of measuring again ...
    again = profile("t", tmp_path / "again.h5", n=2, seed=0, checkpoint=ckpt, data_dir=tiny_corpus,
                    perplexity=False, memory=False, energy=False, **FAST)
    assert add_perplexity(again, ckpt, tiny_corpus, eval_tokens=256, progress=False, reuse=[one_pass]) == 0
    c = Table(again)
    for m in ("perplexity", "token_accuracy"):
        np.testing.assert_array_equal(c.metric(m)[[c.row(i) for i in b.ids]], b.metric(m))
    # ... but never from a table measured with other tokens or another checkpoint
    fresh = profile("t", tmp_path / "fresh.h5", n=2, seed=0, checkpoint=ckpt, data_dir=tiny_corpus,
                    perplexity=False, memory=False, energy=False, **FAST)
    with pytest.raises(TableError, match="eval_tokens"):
        add_perplexity(fresh, ckpt, tiny_corpus, eval_tokens=128, progress=False, reuse=[one_pass])
    assert "perplexity" not in Table(fresh).metrics() or np.isnan(Table(fresh).metric("perplexity")).all()


@pytest.mark.slow
def test_shards_as_ray_tasks_on_a_local_instance(tmp_path, ckpt, tiny_corpus, monkeypatch):
    """``profile_ray`` runs the shards on a local Ray instance and merges them: the same rows as
    one serial run, each shard a resumable table of its own."""
    pytest.importorskip("ray")
    from benchmark.profiling.runner import profile_ray, shard_path

    monkeypatch.setenv("HWLM_LOCK_DIR", str(tmp_path / "locks"))
    out = profile_ray("local", "t", tmp_path / "t.h5", 2, n=3, seed=0, checkpoint=str(ckpt),
                      data_dir=str(tiny_corpus), memory=False, energy=False, **{k: v for k, v in FAST.items()
                                                                                 if k != "progress"})
    t = Table(out)
    assert sorted(t.ids) == sorted(a.id for a in select_architectures("t", n=3, seed=0))
    for i in range(2):
        shard = Table(shard_path(tmp_path / "t.h5", i, 2))
        assert sorted(shard.ids) == sorted(a.id for a in select_architectures("t", n=3, seed=0, shard=(i, 2)))
    assert np.isfinite(t.metric("perplexity")).all()


def test_perplexity_pass_with_worker_processes(tmp_path, ckpt, tiny_corpus):
    """add_perplexity(workers=2) measures in two local processes: the same rows, values equal to one
    worker's up to float rounding, written in table order; a second pass has nothing left to do."""
    from benchmark.profiling.runner import add_perplexity

    kw = dict(n=3, seed=1, checkpoint=ckpt, data_dir=tiny_corpus, perplexity=False, memory=False, energy=False, **FAST)
    one = profile("t", tmp_path / "one.h5", **kw)
    two = profile("t", tmp_path / "two.h5", **kw)
    assert add_perplexity(one, ckpt, tiny_corpus, eval_tokens=256, progress=False) == 5
    assert add_perplexity(two, ckpt, tiny_corpus, eval_tokens=256, progress=False, workers=2) == 5
    assert add_perplexity(two, ckpt, tiny_corpus, eval_tokens=256, progress=False, workers=2) == 0
    a, b = Table(one), Table(two)
    assert list(a.ids) == list(b.ids) and b.attrs["eval_tokens"] == 256
    for m in ("perplexity", "token_accuracy"):
        assert np.isfinite(b.metric(m)).all()
        np.testing.assert_allclose(b.metric(m), a.metric(m), rtol=1e-5)
    with pytest.raises(ValueError, match="workers"):
        add_perplexity(two, ckpt, tiny_corpus, eval_tokens=256, progress=False, workers=0)


def test_a_device_label_of_other_hardware_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmark.cli", "profile", "--out", str(tmp_path / "x.h5"), "-n", "1",
                        "--device", "tpu", "--no-perplexity"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "invalid device: 'tpu'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
