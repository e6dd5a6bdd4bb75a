"""The HDF5 table: round trip, resume, crash safety, merge, and clear errors on bad files."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from benchmark.spaces import get_space
from benchmark.table import SCHEMA_VERSION, Setting, Table, TableError, TableWriter, merge_tables

T = get_space("t")
PREFILL = Setting("prefill", 1, 256)
DEV = "cpu-test"


def declare(w: TableWriter, host="host-a"):
    w.declare_metric("perplexity", "1", "measured", "test-split perplexity")
    w.declare_metric("params", "1", "exact")
    w.declare_device(DEV, "measured", {"host": host, "threads": 2})
    w.declare_setting(DEV, PREFILL, warmup=3, repeats=4)
    w.declare_hardware_metric(DEV, PREFILL, "latency_ms", "ms", repeats=4)
    w.declare_hardware_metric(DEV, PREFILL, "energy_mj", "mJ", repeats=4, missing_reason="no counter")


def row(w, arch, i):
    return w.append(arch, metrics={"perplexity": 10.0 + i, "params": 1000 * i},
                    hardware={(DEV, PREFILL.name, "latency_ms"): [i, i + 1, i + 2, i + 3]},
                    measured_at={(DEV, PREFILL.name): 1e9 + i})


def test_round_trip(tmp_path):
    path = tmp_path / "t.h5"
    archs = T.sample(0, n=5)
    with TableWriter(path, "t", attrs={"corpus_sha256": "abc"}) as w:
        declare(w)
        for i, a in enumerate(archs):
            assert row(w, a, i)
        w.log("drift", {"arch": archs[0].id, "time": 1.0, "median_ms": 3.0})
    t = Table(path)
    assert len(t) == 5 and t.attrs["schema_version"] == SCHEMA_VERSION and t.attrs["corpus_sha256"] == "abc"
    assert t.ids.tolist() == [a.id for a in archs]
    assert (t.encodings == T.encode_many(archs)).all()
    assert t.metric("perplexity").tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert t.metrics()["params"]["source"] == "exact"
    assert t.devices()[DEV]["source"] == "measured" and t.provenance(DEV)["host"] == "host-a"
    assert t.settings(DEV) == [PREFILL.name]
    assert t.setting_attrs(DEV, PREFILL)["repeats"] == 4
    lat = t.hardware(DEV, PREFILL, "latency_ms")
    assert lat.shape == (5, 4) and lat[2].tolist() == [2, 3, 4, 5]
    assert np.isnan(t.hardware(DEV, PREFILL, "energy_mj")).all()
    assert t.hardware_metrics(DEV, PREFILL)["energy_mj"]["missing_reason"] == "no counter"
    assert t.row(archs[3]) == 3 and t.row(archs[3].id) == 3 and archs[3] in t
    assert T.sample(99) not in t
    assert t.log("drift")["arch"].tolist() == [archs[0].id]
    assert len(t.sha256()) == 64
    with pytest.raises(KeyError, match="not in table"):
        t.row(T.sample(99))


def test_resume_skips_existing_rows(tmp_path):
    path = tmp_path / "t.h5"
    archs = T.sample(1, n=6)
    w = TableWriter(path, "t")
    declare(w)
    for i, a in enumerate(archs[:3]):
        row(w, a, i)
    del w  # "crash": never closed; every append was flushed
    w = TableWriter(path, "t")
    declare(w)  # same declarations are accepted again
    assert archs[0] in w
    added = [row(w, a, i) for i, a in enumerate(archs)]
    assert added == [False] * 3 + [True] * 3
    w.close()
    t = Table(path)
    assert t.ids.tolist() == [a.id for a in archs] and len(set(t.ids.tolist())) == 6
    with pytest.raises(TableError, match="space"):
        TableWriter(path, "s")
    w = TableWriter(path, "t")
    with pytest.raises(TableError, match="already declared"):
        w.declare_metric("params", "MB", "exact")


def test_kill_9_leaves_a_valid_table(tmp_path):
    path = tmp_path / "t.h5"
    script = textwrap.dedent(f"""
        import sys
        from benchmark.spaces import get_space
        from benchmark.table import TableWriter, Setting
        T = get_space("t")
        w = TableWriter({str(path)!r}, "t")
        w.declare_metric("params", "1", "exact")
        w.declare_metric("blob", "1", "exact")
        for i, a in enumerate(T.sample(0, n=100000)):
            w.append(a, metrics={{"params": i, "blob": i}})
            if i == 5:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t = Table(path)  # whatever was last renamed into place is complete and valid
    n = len(t)
    assert n >= 6
    assert t.metric("params").tolist() == list(range(n))
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    w = TableWriter(path, "t")  # resumes despite a possible stale temporary file
    assert len(w.ids()) == n and len(leftovers) <= 1


def _shard(path, archs, host="host-a", offset=0):
    with TableWriter(path, "t") as w:
        declare(w, host=host)
        for i, a in enumerate(archs):
            row(w, a, i + offset)
    return path


def test_merge_deduplicates_first_wins(tmp_path):
    archs = T.sample(2, n=6)
    a = _shard(tmp_path / "a.h5", archs[:4])
    b = _shard(tmp_path / "b.h5", archs[2:], offset=100)
    out = merge_tables([a, b], tmp_path / "m.h5")
    t = Table(out)
    assert t.ids.tolist() == [x.id for x in archs]
    assert t.metric("perplexity").tolist() == [10, 11, 12, 13, 112, 113]
    assert t.hardware(DEV, PREFILL, "latency_ms").shape == (6, 4)
    assert json.loads(t.attrs["merged_from"]) == [str(a), str(b)]


def test_merge_refuses_disagreeing_shards(tmp_path):
    archs = T.sample(3, n=4)
    a = _shard(tmp_path / "a.h5", archs[:2])
    b = _shard(tmp_path / "b.h5", archs[2:], host="host-b")
    with pytest.raises(TableError, match="device 'cpu-test' differs"):
        merge_tables([a, b], tmp_path / "m.h5")
    with TableWriter(tmp_path / "c.h5", "t") as w:
        w.declare_metric("perplexity", "nats", "measured")
    with pytest.raises(TableError, match="metric 'perplexity' differs"):
        merge_tables([a, tmp_path / "c.h5"], tmp_path / "m.h5")
    with TableWriter(tmp_path / "s.h5", "s") as w:
        w.declare_metric("params", "1", "exact")
    with pytest.raises(TableError, match="spaces"):
        merge_tables([a, tmp_path / "s.h5"], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_reader_errors_name_file_and_problem(tmp_path):
    good = _shard(tmp_path / "good.h5", T.sample(4, n=3))
    with pytest.raises(TableError, match="no such file"):
        Table(tmp_path / "missing.h5")
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(TableError, match="trunc.h5"):
        Table(trunc)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(TableError, match="text.h5.*not a readable HDF5"):
        Table(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(TableError, match="foreign.h5.*not an hwlm-bench table"):
        Table(foreign)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(good.read_bytes())
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(TableError, match="newer.*upgrade"):
        Table(newer)
    bad_shape = tmp_path / "shape.h5"
    bad_shape.write_bytes(good.read_bytes())
    with h5py.File(bad_shape, "a") as f:
        del f["metrics/params"]
        f["metrics/params"] = np.zeros(7)
    with pytest.raises(TableError, match="metrics/params has shape"):
        Table(bad_shape)
    t = Table(good)
    with pytest.raises(TableError, match="metric.*latency.*allowed"):
        t.metric("latency")
    with pytest.raises(TableError, match="device"):
        t.settings("gpu-x")
    with pytest.raises(TableError, match="hardware metric"):
        t.hardware(DEV, PREFILL, "memory_mb")


def test_writer_rejects_undeclared_and_bad_values(tmp_path):
    w = TableWriter(tmp_path / "t.h5", "t")
    declare(w)
    a = T.sample(5)
    with pytest.raises(TableError, match="metric.*flops"):
        w.append(a, metrics={"flops": 1.0})
    with pytest.raises(TableError, match="hardware key"):
        w.append(a, hardware={("gpu-x", PREFILL.name, "latency_ms"): [1.0]})
    with pytest.raises(TableError, match="repeats"):
        w.append(a, hardware={(DEV, PREFILL.name, "latency_ms"): [1.0] * 5})
    with pytest.raises(TableError, match="source"):
        w.declare_metric("x", "1", "guessed")
    with pytest.raises(TableError, match="device"):
        w.declare_setting("gpu-x", PREFILL)
    assert w.ids() == []  # nothing was half-appended


@pytest.mark.parametrize("bad", ["prefill-b0-s256-fp32", "train-b1-s256-fp32", "prefill-b1-s256-fp64", "x"])
def test_setting_names(bad):
    assert Setting.parse("decode-b1-s128-fp32") == Setting("decode", 1, 128)
    assert Setting.parse(PREFILL.name) == PREFILL
    with pytest.raises(TableError, match="setting"):
        Setting.parse(bad)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(allow_nan=True, allow_infinity=False, width=32),
                          st.lists(st.floats(0, 1e6, width=32), max_size=4)), min_size=1, max_size=8))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hypothesis_round_trip(tmp_path, rows):
    path = tmp_path / "h.h5"
    if path.exists():
        path.unlink()
    expected = {}
    with TableWriter(path, "t", flush_every=1000) as w:
        declare(w)
        for seed, ppl, reps in rows:
            a = T.sample(seed)
            if w.append(a, metrics={"perplexity": ppl}, hardware={(DEV, PREFILL.name, "latency_ms"): reps}):
                expected[a.id] = (ppl, reps)
    t = Table(path)
    assert set(t.ids.tolist()) == set(expected)
    for aid, (ppl, reps) in expected.items():
        i = t.row(aid)
        np.testing.assert_equal(t.metric("perplexity")[i], ppl)
        lat = t.hardware(DEV, PREFILL, "latency_ms")[i]
        np.testing.assert_allclose(lat[: len(reps)], reps)
        assert np.isnan(lat[len(reps):]).all()
