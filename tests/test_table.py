"""The HDF5 table: round trip, resume, crash safety (real SIGKILL), merge, and clear errors on bad files."""

import json
import math
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

from benchmark import __version__
from benchmark.spaces import get_space
from benchmark.settings import SettingError
from benchmark.table import (FORMAT, SCHEMA_VERSION, Setting, Table, TableError, TableWriter, merge_tables)

T = get_space("t")
PREFILL = Setting("prefill", 1, 256)
DECODE = Setting("decode", 1, 128)
DEV = "cpu-test"
PROV = {"host": "host-a", "cpu_model": "Test CPU", "logical_cores": 2, "torch_threads": 2, "gpu_name": None}


def declare(w: TableWriter, host="host-a", warmup=3, dev=DEV, unit="1"):
    w.declare_metric("perplexity", unit, "measured", "test-split perplexity")
    w.declare_metric("params", "1", "exact")
    w.declare_device(dev, "measured", {**PROV, "host": host}, kind="cpu")
    w.declare_setting(dev, PREFILL, warmup=warmup, repeats=4)
    w.declare_hardware_metric(dev, PREFILL, "latency_ms", "ms", repeats=4)
    w.declare_hardware_metric(dev, PREFILL, "energy_mj", "mJ", repeats=4, missing_reason="no counter")


def row(w, arch, i, dev=DEV):
    return w.append(arch, metrics={"perplexity": 10.0 + i, "params": 1000 * i},
                    hardware={(dev, PREFILL.name, "latency_ms"): [i, i + 1, i + 2, i + 3]},
                    measured_at={(dev, PREFILL.name): 1e9 + i})


def _shard(path, archs, offset=0, **kw):
    dev = kw.pop("dev", DEV)
    with TableWriter(path, "t", attrs=kw.pop("attrs", None)) as w:
        declare(w, dev=dev, **kw)
        for i, a in enumerate(archs):
            row(w, a, i + offset, dev=dev)
    return path


# ---------------------------------------------------------------------------- settings
def test_setting_names():
    s = Setting(mode="prefill", batch=1, seq_len=256, dtype="fp32")
    assert s.name == str(s) == "prefill-b1-s256-fp32" and Setting.parse(s.name) == s and Setting.parse(s) is s
    assert Setting.parse("decode-b8-s128-bf16") == Setting("decode", 8, 128, "bf16")
    assert Setting("decode", np.int64(2), 64).name == "decode-b2-s64-fp32"
    assert type(Setting("decode", np.int64(2), 64).batch) is int
    assert Setting("prefill", 1, 256).attrs() == {"mode": "prefill", "batch": 1, "seq_len": 256, "dtype": "fp32"}
    with pytest.raises(AttributeError):
        s.batch = 2  # frozen
    assert len({s, Setting.parse(s.name)}) == 1  # hashable


@pytest.mark.parametrize("bad, field", [("prefill-b0-s256-fp32", "batch"), ("train-b1-s256-fp32", "mode"),
                                        ("prefill-b1-s256-fp64", "dtype"), ("x", "setting name"),
                                        ("prefill-b01-s256-fp32", "canonical"), (3, "setting name")])
def test_setting_names_refused(bad, field):
    with pytest.raises(SettingError, match=field):
        Setting.parse(bad)


def test_setting_fields_validated():
    for kw, field in [(dict(mode="train"), "mode"), (dict(batch=0), "batch"), (dict(batch=True), "batch"),
                      (dict(seq_len=1.5), "seq_len"), (dict(dtype="int4"), "dtype")]:
        with pytest.raises(SettingError, match=f"invalid setting {field}.*allowed"):
            Setting(**{"mode": "prefill", "batch": 1, "seq_len": 8, **kw})


@given(st.sampled_from(["prefill", "decode"]), st.integers(1, 10**6), st.integers(1, 10**6),
       st.sampled_from(["fp32", "fp16", "bf16"]))
def test_setting_name_round_trip(mode, batch, seq_len, dtype):
    s = Setting(mode, batch, seq_len, dtype)
    assert Setting.parse(s.name) == s


# ---------------------------------------------------------------------------- round trip
def test_round_trip(tmp_path):
    path = tmp_path / "t.h5"
    archs = T.sample(0, n=5)
    with TableWriter(path, "t", attrs={"corpus_sha256": "abc", "eval_tokens": 4096}) as w:
        declare(w)
        w.declare_metric("token_accuracy", "1", "measured", missing_reason="not evaluated yet")
        w.declare_setting(DEV, DECODE, warmup=1, repeats=2, decode_tokens=16)
        w.declare_hardware_metric(DEV, DECODE, "decode_ms_per_token", "ms", repeats=2)
        for i, a in enumerate(archs):
            assert row(w, a, i)
        w.append(T.largest(), metrics={"params": np.float32(7.0)},
                 hardware={(DEV, DECODE): {"decode_ms_per_token": np.array([1.5])}})  # nested form, 1 of 2 repeats
        w.log("drift", {"arch": archs[0].id, "unix_time": 1.0, "median_ms": np.float64(3.0)})
        w.log("drift", {"arch": archs[1].id, "unix_time": 2.0, "median_ms": None})
        assert len(w) == 6 and archs[0] in w and w.attrs["eval_tokens"] == 4096
    t = Table.open(path)
    assert len(t) == 6 and "rows=6" in repr(t)
    assert t.attrs["format"] == FORMAT and t.attrs["schema_version"] == SCHEMA_VERSION and t.attrs["space"] == "t"
    assert t.attrs["corpus_sha256"] == "abc" and t.attrs["eval_tokens"] == 4096
    assert t.attrs["package_version"] == __version__ and t.attrs["created"].endswith("+00:00")
    allx = archs + [T.largest()]
    assert t.ids.tolist() == [a.id for a in allx]
    assert (t.encodings == T.encode_many(allx)).all() and t.architectures() == allx
    np.testing.assert_equal(t.metric("perplexity"), [10.0, 11.0, 12.0, 13.0, 14.0, np.nan])
    assert t.metric("params")[-1] == 7.0
    assert t.metrics()["params"] == {"unit": "1", "source": "exact", "description": ""}
    assert t.metrics()["token_accuracy"]["missing_reason"] == "not evaluated yet"
    assert np.isnan(t.metric("token_accuracy")).all()
    assert t.devices() == {DEV: {"source": "measured", "kind": "cpu", "provenance": PROV}}
    assert t.provenance(DEV)["host"] == "host-a" and t.provenance(DEV)["gpu_name"] is None
    assert t.settings(DEV) == [DECODE.name, PREFILL.name]
    assert t.setting_attrs(DEV, PREFILL) == {**PREFILL.attrs(), "warmup": 3, "repeats": 4}
    assert t.setting_attrs(DEV, DECODE.name)["decode_tokens"] == 16
    lat = t.hardware(DEV, PREFILL, "latency_ms")
    assert lat.shape == (6, 4) and lat[2].tolist() == [2, 3, 4, 5] and np.isnan(lat[5]).all()
    assert np.isnan(t.hardware(DEV, PREFILL, "energy_mj")).all()
    assert t.hardware_metrics(DEV, PREFILL)["energy_mj"] == {"unit": "mJ", "repeats": 4, "missing_reason": "no counter"}
    dec = t.hardware(DEV, DECODE.name, "decode_ms_per_token")
    assert dec.shape == (6, 2) and dec[5, 0] == 1.5 and np.isnan(dec[5, 1]) and np.isnan(dec[:5]).all()
    np.testing.assert_equal(t.measured_at(DEV, PREFILL), [1e9, 1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4, np.nan])
    assert t.row(archs[3]) == 3 and t.row(archs[3].id) == 3 and t.row(archs[3].encoding()) == 3 and archs[3] in t
    assert T.sample(99) not in t
    with pytest.raises(KeyError, match="not in table"):
        t.row(T.sample(99))
    assert t.logs() == ["drift"]
    drift = t.log("drift")
    assert drift["arch"].tolist() == [archs[0].id, archs[1].id] and drift["unix_time"].tolist() == [1.0, 2.0]
    assert drift["median_ms"][0] == 3.0 and np.isnan(drift["median_ms"][1])
    assert len(t.sha256()) == 64 and t.sha256() == t.sha256()
    with pytest.raises(ValueError, match="read-only"):
        t.metric("params")[0] = 1.0  # cached columns cannot be corrupted by a caller


def test_plain_h5py_layout(tmp_path):
    """What docs/table.md promises to readers without the package: dtypes, shapes, chunking, compression."""
    path = _shard(tmp_path / "t.h5", T.sample(1, n=3))
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["schema_version"] == SCHEMA_VERSION
        enc, ids = f["archs/encoding"], f["archs/id"]
        assert enc.dtype == np.int8 and enc.shape == (3, T.encoding_length)
        assert h5py.check_string_dtype(ids.dtype).encoding == "utf-8" and ids.shape == (3,)
        for d in (enc, ids, f["metrics/perplexity"], f[f"hardware/{DEV}/{PREFILL.name}/latency_ms"]):
            assert d.chunks is not None and d.compression == "gzip"
        assert f["metrics/perplexity"].dtype == np.float64 and f["metrics/perplexity"].attrs["source"] == "measured"
        g = f[f"hardware/{DEV}"]
        assert g.attrs["source"] == "measured" and json.loads(g.attrs["provenance"])["host"] == "host-a"
        assert f[f"hardware/{DEV}/{PREFILL.name}"].attrs["seq_len"] == 256
        assert f[f"hardware/{DEV}/{PREFILL.name}/latency_ms"].shape == (3, 4)
        assert f[f"hardware/{DEV}/{PREFILL.name}/measured_at"].shape == (3,)


def test_lzf_and_empty_tables(tmp_path):
    with TableWriter(tmp_path / "e.h5", "s", compression="lzf") as w:
        declare(w)
    t = Table(tmp_path / "e.h5")
    assert len(t) == 0 and t.ids.shape == (0,) and t.encodings.shape == (0, get_space("s").encoding_length)
    assert t.hardware(DEV, PREFILL, "latency_ms").shape == (0, 4) and t.metric("params").shape == (0,)
    with h5py.File(tmp_path / "e.h5", "r") as f:
        assert f["metrics/params"].compression == "lzf"
    with TableWriter(tmp_path / "e.h5", "s", compression=None) as w:  # resume an empty table
        assert w.append(get_space("s").largest(), metrics={"params": 1})
    assert Table(tmp_path / "e.h5").metric("params").tolist() == [1.0]


# ---------------------------------------------------------------------------- resume
def test_resume_skips_existing_rows(tmp_path):
    path = tmp_path / "t.h5"
    archs = T.sample(1, n=6)
    w = TableWriter(path, "t", attrs={"corpus_sha256": "abc"})
    declare(w)
    w.declare_device("cpu-nan", "measured", {"load_avg_1m": math.nan})
    for i, a in enumerate(archs[:3]):
        row(w, a, i)
    w.log("runs", {"unix_time": 1.0})
    del w  # "crash": never closed; every append and log record was flushed (flush_every=1)
    w = TableWriter(path, "t", attrs={"corpus_sha256": "abc"})
    declare(w)  # the same declarations are accepted again
    w.declare_device("cpu-nan", "measured", {"load_avg_1m": math.nan})  # NaN equals NaN here
    assert archs[0] in w and len(w) == 3
    added = [row(w, a, i) for i, a in enumerate(archs)]
    assert added == [False] * 3 + [True] * 3
    w.log("runs", {"unix_time": 2.0})
    w.close()
    w.close()  # idempotent
    with pytest.raises(TableError, match="closed"):
        w.append(T.sample(77))
    t = Table(path)
    assert t.ids.tolist() == [a.id for a in archs] and len(set(t.ids.tolist())) == 6
    assert t.metric("perplexity").tolist() == [10, 11, 12, 13, 14, 15]
    assert t.log("runs")["unix_time"].tolist() == [1.0, 2.0]
    with pytest.raises(TableError, match="holds space 't'.*space 's'"):
        TableWriter(path, "s")
    with pytest.raises(TableError, match="corpus_sha256.*'abc' in the file.*'xyz' here"):
        TableWriter(path, "t", attrs={"corpus_sha256": "xyz"})
    with TableWriter(path, "t") as w:
        with pytest.raises(TableError, match="metric 'params' already declared differently.*unit"):
            w.declare_metric("params", "MB", "exact")
        with pytest.raises(TableError, match="device 'cpu-test' already declared differently.*host"):
            w.declare_device(DEV, "measured", {**PROV, "host": "host-b"}, kind="cpu")
        with pytest.raises(TableError, match="setting.*already declared differently.*warmup"):
            w.declare_setting(DEV, PREFILL, warmup=5, repeats=4)


def test_unflushed_rows_are_lost_flushed_rows_kept(tmp_path):
    path = tmp_path / "t.h5"
    archs = T.sample(2, n=5)
    w = TableWriter(path, "t", flush_every=2)
    declare(w)
    for i, a in enumerate(archs):
        row(w, a, i)
    del w  # rows 0-3 were flushed (every 2), row 4 was not
    assert Table(path).ids.tolist() == [a.id for a in archs[:4]]
    w = TableWriter(path, "t", flush_every=None)
    declare(w)
    row(w, archs[4], 4)
    assert len(Table(path)) == 4  # no automatic flush
    w.flush()
    assert len(Table(path)) == 5
    w.close()


def test_one_writer_per_file(tmp_path):
    path = tmp_path / "t.h5"
    w = TableWriter(path, "t")
    with pytest.raises(TableError, match=f"another writer \\(process {os.getpid()}\\)"):
        TableWriter(path, "t")
    TableWriter(tmp_path / "other.h5", "t").close()  # other files are independent
    w.close()
    TableWriter(path, "t").close()
    w = TableWriter(path, "t")
    del w  # a dropped writer releases the file
    TableWriter(path, "t").close()
    assert sorted(os.listdir(tmp_path)) == ["other.h5", "t.h5"]  # no lock or temporary files left


def test_merge_takes_the_output_lock_before_reading_and_the_cli_says_so_in_one_line(tmp_path, capsys,
                                                                                    monkeypatch):
    from benchmark.cli import main as hwlm
    import benchmark.table.merge as merge

    archs = T.sample(3, n=2)
    a = _shard(tmp_path / "a.h5", archs)
    out = tmp_path / "m.h5"
    read = []
    monkeypatch.setattr(merge, "read_content", lambda t: read.append(t) or pytest.fail("input read"))
    w = TableWriter(out, "t")  # another writer of the output
    with pytest.raises(TableError, match="another writer"):
        merge_tables([a], out)
    assert read == []  # refused before any input was read
    monkeypatch.undo()
    assert hwlm(["table", "merge", str(out), str(a)]) == 2
    err = capsys.readouterr().err
    assert "another writer" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    w.close()
    assert hwlm(["table", "merge", str(out), str(a)]) == 0 and len(Table(out)) == 2


def test_a_saved_state_reopens_the_same_table_and_refuses_another_file(tmp_path):
    archs = T.sample(5, n=4)
    path = _shard(tmp_path / "a.h5", archs)
    t = Table(path)
    state = json.loads(json.dumps(t.state()))
    st = os.stat(path)
    again = Table.from_state(path, state, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    assert again.attrs == t.attrs and again._structure == t._structure and len(again) == len(t)
    assert again.ids.tolist() == t.ids.tolist()
    np.testing.assert_array_equal(again.hardware(DEV, PREFILL, "latency_ms"), t.hardware(DEV, PREFILL, "latency_ms"))
    stale = Table.from_state(path, state, (st.st_dev, st.st_ino + 1, st.st_size, st.st_mtime_ns))
    with pytest.raises(TableError, match="changed on disk"):
        stale.ids


def test_check_rows_refuses_duplicated_and_disagreeing_rows(tmp_path):
    archs = T.sample(6, n=3)
    path = _shard(tmp_path / "a.h5", archs)
    Table(path).check_rows()
    with h5py.File(path, "r+") as f:
        enc = f["archs/encoding"][()]
        f["archs/id"][2] = archs[0].id
    with pytest.raises(TableError, match="row 2 is .*, but its encoding is"):  # the id alone: disagrees
        Table(path).check_rows()
    with h5py.File(path, "r+") as f:
        f["archs/encoding"][2] = enc[0]  # the whole row duplicated
    with pytest.raises(TableError, match="archs/id: row 0 .* appears 2 times"):
        Table(path).check_rows()
    with h5py.File(path, "r+") as f:
        f["archs/id"][2] = archs[2].id
        f["archs/encoding"][...] = enc[[1, 0, 2]]
    with pytest.raises(TableError, match="row 0 is .*, but its encoding is"):
        Table(path).check_rows()


def test_permissions_follow_umask_and_existing_file(tmp_path):
    path = tmp_path / "t.h5"
    old = os.umask(0o022)
    try:
        TableWriter(path, "t").close()
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == 0o644  # readable by others, not mkstemp's 0600
    os.chmod(path, 0o640)
    with TableWriter(path, "t") as w:
        w.declare_metric("params", "1", "exact")
    assert (os.stat(path).st_mode & 0o777) == 0o640


# ---------------------------------------------------------------------------- crash safety
_CHILD = """
import os, sys, time
sys.path.insert(0, {repo!r})
import benchmark.table as tb
import benchmark.table.storage as storage  # where a flush writes (the hooks below stall it)
from benchmark.spaces import get_space
T = get_space("t")
archs = T.sample(0, n=3000)
hook, at = {hook!r}, {at}
calls = [0]
if hook:
    real = getattr(os if hook == "replace" else storage, "replace" if hook == "replace" else "_chunk")
    def stall(*a, **k):
        calls[0] += 1
        if calls[0] == at:
            print("stalled", flush=True)
            time.sleep(600)
        return real(*a, **k)
    if hook == "replace":
        os.replace = stall  # the atomic rename of every flush (benchmark.files.atomic_path)
    else:
        storage._chunk = stall
w = tb.TableWriter({path!r}, "t")
w.declare_metric("params", "1", "exact")
w.declare_metric("i", "1", "exact")
for i, a in enumerate(archs):
    w.append(a, metrics={{"params": i, "i": i}})
    if i == 20:
        print("ready", flush=True)
"""


def _child(tmp_path, hook="", at=0):
    path = tmp_path / "t.h5"
    script = textwrap.dedent(_CHILD).format(repo=os.getcwd(), path=str(path), hook=hook, at=at)
    return path, subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def _check_after_kill(tmp_path, path):
    t = Table(path)  # whatever was last renamed into place is complete and valid
    n = len(t)
    assert t.metric("i").tolist() == list(range(n)) and t.ids.tolist() == [a.id for a in T.sample(0, n=n)]
    with TableWriter(path, "t") as w:  # resumes; the dead writer's lock and temporaries are gone
        assert len(w) == n
        w.declare_metric("i", "1", "exact")
        assert w.append(T.sample(0, n=n + 1)[-1], metrics={"i": n})
    assert sorted(os.listdir(tmp_path)) == ["t.h5"]
    assert Table(path).metric("i").tolist() == list(range(n + 1))
    return n


def test_sigkill_while_appending_leaves_a_valid_table(tmp_path):
    path, proc = _child(tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)  # almost all of the child's time is spent inside a flush
    proc.wait()
    assert _check_after_kill(tmp_path, path) >= 21


@pytest.mark.parametrize("hook", ["chunk", "replace"])  # killed mid-HDF5-write / after fsync, before rename
def test_sigkill_inside_a_flush_keeps_the_previous_table(tmp_path, hook):
    path, proc = _child(tmp_path, hook, at=60 if hook == "chunk" else 10)
    assert proc.stdout.readline().strip() == "stalled"
    assert any(p.endswith(tuple("0123456789abcdef")) and ".tmp-" in p for p in os.listdir(tmp_path))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n = _check_after_kill(tmp_path, path)
    # "chunk" stalls in the 4th of the 4 datasets of the 15th flush, "replace" before the 10th rename
    assert n == (9 if hook == "replace" else 14)


def test_readers_while_a_writer_replaces_the_file(tmp_path):
    path, proc = _child(tmp_path)
    try:
        assert proc.stdout.readline().strip() == "ready"
        consistent = changed = 0
        # on a loaded machine many reads overlap a rewrite: read on until one sees a whole version
        # (the writer ends after its rows), at least 60 reads
        deadline = time.monotonic() + 120
        while (consistent + changed < 60 or consistent == 0) and time.monotonic() < deadline:
            try:
                t = Table(path)  # every open sees one complete version of the file ...
                ids, i = t.ids, t.metric("i")
                assert i.tolist() == list(range(len(t))) and len(ids) == len(t)
                consistent += 1
            except TableError as e:  # ... or notices that it was replaced in between
                assert "changed on disk" in str(e)
                changed += 1
        assert consistent > 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------------------- merge
def test_merge_combines_rows_and_devices(tmp_path):
    archs = T.sample(2, n=6)
    a = _shard(tmp_path / "a.h5", archs[:4])
    b = _shard(tmp_path / "b.h5", archs[2:], offset=100)  # same device, overlapping rows: first wins
    g = _shard(tmp_path / "g.h5", archs[1:3], offset=200, dev="gpu-test")  # another device, same archs
    out = merge_tables([a, b, g], tmp_path / "m.h5")
    t = Table(out)
    assert t.ids.tolist() == [x.id for x in archs]
    assert t.metric("perplexity").tolist() == [10, 11, 12, 13, 112, 113]
    lat = t.hardware(DEV, PREFILL, "latency_ms")
    assert lat[:, 0].tolist() == [0, 1, 2, 3, 102, 103]
    gpu = t.hardware("gpu-test", PREFILL, "latency_ms")  # kept although rows 1, 2 came from a.h5 first
    assert np.isnan(gpu[[0, 3, 4, 5]]).all() and gpu[1:3, 0].tolist() == [200, 201]
    assert t.measured_at("gpu-test", PREFILL)[1] == 1e9 + 200
    assert sorted(t.devices()) == [DEV, "gpu-test"]
    merged = json.loads(t.attrs["merged_from"])
    assert [m["path"] for m in merged] == [str(a), str(b), str(g)]
    assert [m["rows"] for m in merged] == [4, 4, 2] and merged[0]["sha256"] == Table(a).sha256()
    assert merged[1]["conflicts"] > 0 and merged[0]["conflicts"] == 0
    with pytest.raises(TableError, match=f"{archs[2].id} has different metric 'perplexity'.*a.h5.*b.h5|"
                                         f"a.h5 and .*b.h5: architecture {archs[2].id}"):
        merge_tables([a, b], tmp_path / "x.h5", on_conflict="error")
    assert not (tmp_path / "x.h5").exists()
    # merging into one of the inputs is refused before anything is read or written
    with pytest.raises(TableError, match="invalid merge output.*not one of the inputs"):
        merge_tables([out, g, a], out)
    # re-merging the same shard changes no value
    before = {k: t.hardware(*k) for k in [(DEV, PREFILL.name, "latency_ms"), ("gpu-test", PREFILL.name, "latency_ms")]}
    again = merge_tables([out, out, g, a], tmp_path / "m2.h5")
    merge_tables([again, again], tmp_path / "m3.h5", on_conflict="error")  # a table never conflicts with itself
    t2 = Table(tmp_path / "m3.h5")
    assert t2.ids.tolist() == t.ids.tolist()
    for k, v in before.items():
        np.testing.assert_array_equal(t2.hardware(*k), v)
    assert sorted(os.listdir(tmp_path)) == ["a.h5", "b.h5", "g.h5", "m.h5", "m2.h5", "m3.h5"]


def test_merge_logs_and_attrs(tmp_path):
    archs = T.sample(6, n=2)
    for name, arch in (("a", archs[0]), ("b", archs[1])):
        with TableWriter(tmp_path / f"{name}.h5", "t", attrs={"corpus_sha256": "c", f"only_{name}": 1}) as w:
            w.declare_metric("params", "1", "exact")
            w.append(arch, metrics={"params": 1})
            w.log("drift", {"arch": arch.id, "ms": 1.0})
    out = merge_tables([tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "a.h5"], tmp_path / "m.h5")
    t = Table(out)
    assert t.log("drift")["arch"].tolist() == [archs[0].id, archs[1].id]  # exact duplicates dropped
    assert t.attrs["corpus_sha256"] == "c" and t.attrs["only_a"] == 1 and t.attrs["only_b"] == 1


def test_drop_removes_a_device_and_a_log_so_a_retimed_device_can_replace_it(tmp_path, capsys):
    from benchmark.cli import main as hwlm
    from benchmark.table import drop_from_table

    archs = T.sample(8, n=3)
    a = _shard(tmp_path / "a.h5", archs)
    with TableWriter(a, "t") as w:  # reopening resumes: add a log to the same table
        w.log("drift", {"arch": archs[0].id, "ms": 1.0})
    g = _shard(tmp_path / "g.h5", archs, offset=50, dev="gpu-test")
    both = merge_tables([a, g], tmp_path / "both.h5")
    out = drop_from_table(both, tmp_path / "base.h5", devices=[DEV], logs=["drift"])
    t, src = Table(out), Table(both)
    assert t.ids.tolist() == src.ids.tolist()
    assert list(t.devices()) == ["gpu-test"] and t.logs() == []
    np.testing.assert_array_equal(t.metric("perplexity"), src.metric("perplexity"))
    np.testing.assert_array_equal(t.hardware("gpu-test", PREFILL, "latency_ms"),
                                  src.hardware("gpu-test", PREFILL, "latency_ms"))
    assert json.loads(t.attrs["dropped_from"]) == {"path": "both.h5", "sha256": src.sha256(), "devices": [DEV],
                                                   "logs": ["drift"]}
    # a re-timed shard of the dropped device with another provenance now merges
    new = _shard(tmp_path / "new.h5", archs, offset=300, host="host-b")
    with pytest.raises(TableError, match="device 'cpu-test' differs"):
        merge_tables([both, new], tmp_path / "refused.h5")
    m = Table(merge_tables([out, new], tmp_path / "m.h5"))
    assert m.hardware(DEV, PREFILL, "latency_ms")[:, 0].tolist() == [300, 301, 302]
    assert m.provenance(DEV)["host"] == "host-b" and "dropped_from" not in m.attrs
    for kw, match in [(dict(devices=["nope"]), "invalid device: 'nope'"), (dict(logs=["nope"]), "invalid log"),
                      ({}, "at least one device or log")]:
        with pytest.raises(TableError, match=match):
            drop_from_table(both, tmp_path / "x.h5", **kw)
    with pytest.raises(TableError, match="a path other than the source"):
        drop_from_table(both, both, devices=[DEV])
    assert not (tmp_path / "x.h5").exists()
    assert hwlm(["table", "drop", str(both), str(tmp_path / "cli.h5"), "--device", "nope"]) == 2
    err = capsys.readouterr().err
    assert "invalid device: 'nope'" in err and len(err.strip().splitlines()) == 1
    assert hwlm(["table", "drop", str(both), str(tmp_path / "cli.h5"), "--device", "gpu-test"]) == 0
    assert list(Table(tmp_path / "cli.h5").devices()) == [DEV]


def _modify(src, dst, fn):
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        fn(f)
    return dst


def test_merge_refuses_disagreeing_shards(tmp_path):
    archs = T.sample(3, n=4)
    a = _shard(tmp_path / "a.h5", archs[:2], attrs={"corpus_sha256": "c1"})
    m = tmp_path / "m.h5"
    cases = [
        (_shard(tmp_path / "host.h5", archs[2:], host="host-b"), r"device 'cpu-test' differs \(provenance: host: "
                                                                 r"'host-a' in a.h5 vs 'host-b' in host.h5\)"),
        (_shard(tmp_path / "warm.h5", archs[2:], warmup=5), r"setting \('cpu-test', 'prefill-b1-s256-fp32'\) differs "
                                                            r"\(warmup: 3 in a.h5 vs 5 in warm.h5\)"),
        (_shard(tmp_path / "unit.h5", archs[2:], unit="nats"), r"metric 'perplexity' differs \(unit"),
        (_shard(tmp_path / "corp.h5", archs[2:], attrs={"corpus_sha256": "c2"}), r"attribute 'corpus_sha256' differs"),
        (_modify(a, tmp_path / "rep.h5", lambda f: f[f"hardware/{DEV}/{PREFILL.name}/latency_ms"].attrs.modify(
            "unit", "s")), r"hardware metric .*latency_ms.* differs \(unit: 'ms' in a.h5 vs 's' in rep.h5\)"),
        (_modify(a, tmp_path / "src.h5", lambda f: f[f"hardware/{DEV}"].attrs.modify("source", "modeled")),
         r"device 'cpu-test' differs \(source"),
        (_modify(a, tmp_path / "newer.h5", lambda f: f.attrs.modify("schema_version", SCHEMA_VERSION + 1)),
         rf"newer.h5: schema version {SCHEMA_VERSION + 1} is newer.*upgrade"),
    ]
    with TableWriter(tmp_path / "s.h5", "s") as w:
        w.declare_metric("params", "1", "exact")
    cases.append((tmp_path / "s.h5", r"a.h5 and .*s.h5: spaces differ \('t' vs 's'\)"))
    for other, msg in cases:
        with pytest.raises(TableError, match=msg):
            merge_tables([a, other], m)
        assert not m.exists()
    with pytest.raises(TableError, match="at least one"):
        merge_tables([], m)
    with pytest.raises(TableError, match="on_conflict"):
        merge_tables([a], m, on_conflict="last")


# ---------------------------------------------------------------------------- reader errors
def test_reader_errors_name_file_and_problem(tmp_path):
    good = _shard(tmp_path / "good.h5", T.sample(4, n=30))
    data = good.read_bytes()
    with pytest.raises(TableError, match="missing.h5: no such file"):
        Table(tmp_path / "missing.h5")
    with pytest.raises(TableError, match="is a directory"):
        Table(tmp_path)
    for cut in (0, 7, 2000, len(data) // 2, len(data) - 1):
        trunc = tmp_path / f"trunc{cut}.h5"
        trunc.write_bytes(data[:cut])
        with pytest.raises(TableError, match=f"trunc{cut}.h5: "):
            t = Table(trunc)
            for k in [(DEV, PREFILL.name, "latency_ms")]:  # a damage found only when loading is a TableError too
                t.hardware(*k), t.metric("perplexity"), t.ids, t.encodings
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(TableError, match="text.h5: not a readable HDF5 file"):
        Table(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(TableError, match="foreign.h5: not an hwlm-bench table"):
        Table(foreign)
    for name, fn, msg in [
        ("newer", lambda f: f.attrs.modify("schema_version", SCHEMA_VERSION + 1),
         f"schema version {SCHEMA_VERSION + 1} is newer than this package reads.*upgrade hwlm-bench"),
        ("zero", lambda f: f.attrs.modify("schema_version", 0), "schema version 0"),
        ("strver", lambda f: f.attrs.__setitem__("schema_version", "1"), "schema_version '1' is not an integer"),
        ("space", lambda f: f.attrs.modify("space", "q"), "space: 'q'"),
        ("noids", lambda f: f.__delitem__("archs/id"), "dataset /archs/id is missing"),
        ("enc", lambda f: (f.__delitem__("archs/encoding"), f.create_dataset("archs/encoding", data=np.zeros((30, 3)))),
         r"/archs/encoding is float64 of shape \(30, 3\)"),
        ("shape", lambda f: (f.__delitem__("metrics/params"), f.create_dataset("metrics/params", data=np.zeros(7))),
         r"/metrics/params has shape \(7,\)"),
        ("hw", lambda f: f.create_dataset(f"hardware/{DEV}/{PREFILL.name}/x", data=np.zeros(30)),
         r"latency|/x has shape \(30,\)"),
        ("stname", lambda f: f.move(f"hardware/{DEV}/{PREFILL.name}", f"hardware/{DEV}/prefill-b2-s256-fp32"),
         "disagree with its name"),
        ("msrc", lambda f: f["metrics/params"].attrs.modify("source", "guessed"), "source 'guessed'"),
        ("prov", lambda f: f[f"hardware/{DEV}"].attrs.modify("provenance", "[1]"), "provenance is not a JSON object"),
        ("log", lambda f: (f.create_dataset("log/d/a", data=[1.0]), f.create_dataset("log/d/b", data=[1.0, 2.0])),
         "/log/d columns are not aligned"),
    ]:
        with pytest.raises(TableError, match=f"{name}.h5: .*{msg}"):
            Table(_modify(good, tmp_path / f"{name}.h5", fn))
    t = Table(good)
    with pytest.raises(TableError, match="metric.*latency.*allowed: \\['params', 'perplexity'\\]"):
        t.metric("latency")
    with pytest.raises(TableError, match="device.*gpu-x"):
        t.settings("gpu-x")
    with pytest.raises(TableError, match="setting.*decode-b1-s128-fp32"):
        t.hardware(DEV, DECODE, "latency_ms")
    with pytest.raises(TableError, match="hardware metric.*memory_mb.*energy_mj"):
        t.hardware(DEV, PREFILL, "memory_mb")
    with pytest.raises(TableError, match="log"):
        t.log("drift")
    mismatch = _modify(good, tmp_path / "mismatch.h5", lambda f: f["archs/id"].__setitem__(1, f["archs/id"][0]))
    with pytest.raises(TableError, match=r"mismatch.h5: /archs/id row 1 is 'gpt-t-.*', but its encoding is 'gpt-t-"):
        Table(mismatch).ids

    def duplicate(f):
        f["archs/id"][1], f["archs/encoding"][1] = f["archs/id"][0], f["archs/encoding"][0]

    with pytest.raises(TableError, match="appears more than once"):
        Table(_modify(good, tmp_path / "dup.h5", duplicate)).row(T.sample(4))


def test_schema_1_table_upgraded_on_read(tmp_path):
    """A schema-1 table stores the older concatenated ids: read, its ids are the canonical ones;
    lookups by either form find the row; a stored id naming another architecture is refused."""
    from benchmark.spaces import concatenated_id

    archs = T.sample(6, n=4)
    path = _shard(tmp_path / "new.h5", archs)

    def downgrade(f):
        f.attrs.modify("schema_version", 1)
        f["archs/id"][...] = [concatenated_id(T.from_id(a)) for a in f["archs/id"].asstr()[()]]

    old = Table(_modify(path, tmp_path / "old.h5", downgrade))
    with h5py.File(old.path, "r") as f:
        assert f["archs/id"].asstr()[0].count("-") == 6  # stored in the older form
    assert old.ids.tolist() == Table(path).ids.tolist() == [a.id for a in archs]
    assert old.row(archs[2]) == old.row(concatenated_id(archs[2])) == old.row(archs[2].id) == 2
    assert np.array_equal(old.metric("perplexity"), Table(path).metric("perplexity"), equal_nan=True)
    # a writer resuming it writes the current schema and ids
    with TableWriter(old.path, "t"):
        pass
    with h5py.File(old.path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert f["archs/id"].asstr()[()].tolist() == [a.id for a in archs]

    def wrong(f):
        f.attrs.modify("schema_version", 1)
        f["archs/id"][0] = concatenated_id(archs[1])

    with pytest.raises(TableError, match=r"wrong.h5: /archs/id row 0 is 'gpt-t-\d-\d+-\d+-\d+-(True|False)', but its encoding"):
        Table(_modify(path, tmp_path / "wrong.h5", wrong)).ids


def test_reader_notices_a_replaced_file(tmp_path):
    path = _shard(tmp_path / "t.h5", T.sample(5, n=3))
    t = Table(path)
    ids = t.ids
    _shard(tmp_path / "t.h5", T.sample(6, n=2))  # a writer resumes and renames a new file into place
    assert t.ids is ids  # what was loaded stays usable
    with pytest.raises(TableError, match="changed on disk since it was opened.*open it again"):
        t.metric("perplexity")
    assert len(Table(path)) == 5


# ---------------------------------------------------------------------------- writer refusals
def test_writer_rejects_undeclared_and_bad_values(tmp_path):
    w = TableWriter(tmp_path / "t.h5", "t")
    declare(w)
    a = T.sample(5)
    for kw, msg in [
        (dict(metrics={"flops": 1.0}), "metric: 'flops'.*declared metric"),
        (dict(metrics={"params": "12"}), "value of metric 'params'"),
        (dict(hardware={("gpu-x", PREFILL.name, "latency_ms"): [1.0]}), "hardware key.*gpu-x"),
        (dict(hardware={(DEV, PREFILL.name, "latency_ms"): [1.0] * 5}), "repeats.*5.*at most the declared 4"),
        (dict(hardware={(DEV, PREFILL.name, "latency_ms"): ["fast"]}), "repeat of"),
        (dict(hardware={(DEV, "prefill-b1-s256"): {"latency_ms": 1.0}}), "setting name"),
        (dict(hardware={DEV: [1.0]}), "hardware key"),
        (dict(measured_at={(DEV, DECODE.name): 1.0}), "measured_at key"),
    ]:
        with pytest.raises(TableError, match=msg):
            w.append(a, **kw)
    with pytest.raises(TableError, match="space"):
        w.append(get_space("s").largest())
    for call, msg in [
        (lambda: w.declare_metric("x", "1", "guessed"), "source of metric 'x'.*guessed"),
        (lambda: w.declare_metric("../x", "1", "exact"), "metric name"),
        (lambda: w.declare_device("gpu-x", "estimated", {}), "source of device"),
        (lambda: w.declare_device("gpu-x", "measured", {"a": object()}), "JSON-serialisable"),
        (lambda: w.declare_device("gpu-x", "measured", {}, kind="tpu"), "kind"),
        (lambda: w.declare_setting("gpu-x", PREFILL), "device.*declare_device first"),
        (lambda: w.declare_setting(DEV, DECODE, mode="prefill"), "setting attribute.*mode"),
        (lambda: w.declare_setting(DEV, DECODE, warmup=[1, 2]), "setting attribute 'warmup'"),
        (lambda: w.declare_hardware_metric(DEV, DECODE, "latency_ms", "ms", 3), "setting.*cpu-test/decode"),
        (lambda: w.declare_hardware_metric(DEV, PREFILL, "measured_at", "s", 1), "reserved 'measured_at'"),
        (lambda: w.declare_hardware_metric(DEV, PREFILL, "memory_mb", "MB", 0), "repeats"),
        (lambda: w.set_attrs(schema_version=2), "reserved"),
        (lambda: w.set_attrs(note=None), "attribute 'note'"),
        (lambda: TableWriter(tmp_path / "x.h5", "t", attrs={"space": "s"}), "reserved"),
        (lambda: TableWriter(tmp_path / "x.h5", "q"), "space"),
        (lambda: TableWriter(tmp_path / "x.h5", "t", flush_every=0), "flush_every"),
        (lambda: TableWriter(tmp_path / "x.h5", "t", compression="zstd"), "compression"),
        (lambda: w.log("drift", {}), "non-empty"),
    ]:
        with pytest.raises(TableError, match=msg):
            call()
    w.log("drift", {"arch": a.id, "ms": 1.0})
    with pytest.raises(TableError, match="columns of log 'drift'"):
        w.log("drift", {"arch": a.id})
    with pytest.raises(TableError, match="column 'ms'.*float like the earlier"):
        w.log("drift", {"arch": a.id, "ms": "slow"})
    with pytest.raises(TableError, match="column of log"):
        w.log("other", {"ok": 1.0, "bad name": 2.0})
    assert len(w) == 0 and "other" not in w._c.logs  # nothing was half-appended
    assert w.append(a, metrics={"params": 1}) and not w.append(a.id, metrics={"params": 2})
    w.close()
    t = Table(tmp_path / "t.h5")
    assert t.metric("params").tolist() == [1.0] and len(t.log("drift")["ms"]) == 1
    assert not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------------- property test
_ROW = st.tuples(
    st.integers(0, 10**6),  # architecture seed
    st.dictionaries(st.sampled_from(["perplexity", "params"]),
                    st.floats(allow_nan=True, allow_infinity=True, width=64)),
    st.dictionaries(st.sampled_from([(DEV, PREFILL.name, "latency_ms"), (DEV, PREFILL.name, "energy_mj"),
                                     ("gpu-test", DECODE.name, "latency_ms")]),
                    st.lists(st.one_of(st.floats(-1e9, 1e9), st.just(math.nan)), max_size=4)),
    st.one_of(st.none(), st.floats(0, 2e9)),  # measured_at of the cpu prefill setting
)


@given(st.lists(_ROW, max_size=10), st.integers(0, 10), st.sampled_from([1, 3, None]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hypothesis_round_trip(tmp_path, rows, crash_at, flush_every):
    """Random rows with random subsets of values, written with a simulated crash and resume."""
    path = tmp_path / "h.h5"
    if path.exists():
        path.unlink()

    def open_writer():
        w = TableWriter(path, "t", flush_every=flush_every)
        declare(w)
        w.declare_device("gpu-test", "measured", {"host": "g"}, kind="gpu")
        w.declare_setting("gpu-test", DECODE)
        w.declare_hardware_metric("gpu-test", DECODE, "latency_ms", "ms", repeats=4)
        return w

    expected: dict = {}
    w = open_writer()
    for k, (seed, metrics, hw, when) in enumerate(rows):
        if k == crash_at:
            w.flush()
            del w  # a crash after a flush: the next writer resumes
            w = open_writer()
        a = T.sample(seed)
        ok = w.append(a, metrics=metrics, hardware=hw,
                      measured_at={} if when is None else {(DEV, PREFILL): when})
        assert ok == (a.id not in expected)
        if ok:
            expected[a.id] = (metrics, hw, when)
    w.close()
    t = Table(path)
    assert t.ids.tolist() == list(expected)
    for aid, (metrics, hw, when) in expected.items():
        i = t.row(aid)
        for name in ("perplexity", "params"):
            np.testing.assert_equal(t.metric(name)[i], metrics.get(name, np.nan))
        for key in [(DEV, PREFILL.name, "latency_ms"), (DEV, PREFILL.name, "energy_mj"),
                    ("gpu-test", DECODE.name, "latency_ms")]:
            got, want = t.hardware(*key)[i], hw.get(key, [])
            np.testing.assert_equal(got[: len(want)], want)
            assert np.isnan(got[len(want):]).all()
        np.testing.assert_equal(t.measured_at(DEV, PREFILL)[i], math.nan if when is None else when)
