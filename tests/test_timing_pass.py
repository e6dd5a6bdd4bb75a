"""The timing pass: schedule followed visit by visit, resume after a kill, refusal of a foreign log,
and the table shard it becomes (real models, real HDF5)."""

import json

import numpy as np
import pytest

from benchmark.errors import HwlmError
from benchmark.profiling.protocol import ANCHOR, RoundsProtocol
from benchmark.profiling.runtimes.registry import RuntimeDevice
from benchmark.profiling.timing_pass import PASSES_LOG, TIMINGS_LOG, TimingPass, device_settings, pass_to_table, read_log, run_pass
from benchmark.spaces import get_space
from benchmark.table import Table

SETTINGS = ("prefill-b1-s16-fp32", "decode-b1-s8-fp32")


@pytest.fixture(autouse=True)
def _private_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLM_LOCK_DIR", str(tmp_path / "locks"))


def _pass(n=3, rounds=2, **kw):
    sp = get_space("t")
    archs = [a.id for a in sp.sample(7, n)]
    return TimingPass("t", tuple(archs), RuntimeDevice("torch", "fp32", 1), "cpu-test-1c", SETTINGS,
                      RoundsProtocol(rounds, 2, 0, 2, 0), archs[0], decode_tokens=2, **kw)


def test_visits_follow_the_schedule_and_resume_after_a_torn_line(tmp_path):
    tp = _pass()
    log = tmp_path / "p.jsonl"
    schedule = tp.protocol.schedule(len(tp.archs))
    assert run_pass(tp, log, progress=False, max_seconds=0) == 1  # stops after the first visit
    with open(log, "ab") as f:
        f.write(b'{"visit": 1, "round"')  # a kill in the middle of a write
    assert run_pass(tp, log, progress=False) == len(schedule)
    head, visits = read_log(log)
    assert head["pass"] == tp.header()
    assert [(v["round"], v["arch"]) for v in visits] == [tuple(map(int, s)) for s in schedule]
    assert [v["visit"] for v in visits] == list(range(len(schedule)))
    times = [v["unix_time"] for v in visits]
    assert times == sorted(times)
    for v in visits:
        assert set(v["ms"]) == set(SETTINGS)
        assert all(len(x) == 2 and all(t > 0 for t in x) for x in v["ms"].values())


def test_a_log_of_another_pass_or_machine_is_refused(tmp_path):
    log = tmp_path / "p.jsonl"
    run_pass(_pass(), log, progress=False, max_seconds=0)
    with pytest.raises(HwlmError, match="another pass"):
        run_pass(_pass(rounds=3), log, progress=False)
    head, visits = read_log(log)
    head["provenance"]["cpu_model"] = "another CPU"
    log.write_text("\n".join(json.dumps(x) for x in [head, *visits]) + "\n")
    with pytest.raises(HwlmError, match="another machine"):
        run_pass(_pass(), log, progress=False)


def test_the_shard_holds_every_timing_in_round_order_and_the_raw_visits(tmp_path):
    tp = _pass()
    log = tmp_path / "p.jsonl"
    run_pass(tp, log, progress=False)
    out = pass_to_table(log, tmp_path / "shard.h5", tp.archs)
    t = Table(out)
    assert sorted(map(str, t.ids)) == sorted(tp.archs)
    assert t.devices()["cpu-test-1c"]["source"] == "measured"
    _, visits = read_log(log)
    raw = t.log(TIMINGS_LOG)
    assert len(raw["ms"]) == len(visits) * len(SETTINGS) * 2
    for s in SETTINGS:
        lat = t.hardware("cpu-test-1c", s, "latency_ms")
        assert lat.shape == (3, 4) and np.isfinite(lat).all()
        # energy is declared missing with the reason, so a query says why rather than "no such metric"
        assert "latency only" in t.hardware_metrics("cpu-test-1c", s)["energy_mj"]["missing_reason"]
        assert np.isnan(t.hardware("cpu-test-1c", s, "energy_mj")).all()
        for v in visits:
            if v["arch"] != ANCHOR:
                row = t.row(get_space("t").from_id(tp.archs[v["arch"]]))
                assert lat[row, v["round"] * 2:(v["round"] + 1) * 2].tolist() == v["ms"][s]
        sel = raw["setting"] == s
        # the anchor's interpolated latency is the anchor visits' median exactly at their own times
        anchor_rows = sel & (raw["arch"] == "anchor")
        med = {int(v["visit"]): float(np.median(v["ms"][s])) for v in visits if v["arch"] == ANCHOR}
        assert np.allclose(raw["anchor_ms"][anchor_rows], [med[int(k)] for k in raw["visit"][anchor_rows]])
    rec = t.log(PASSES_LOG)  # when the pass ran, for the data card
    times = [v["unix_time"] for v in visits]
    assert rec["device"].tolist() == ["cpu-test-1c"] and rec["visits"].tolist() == [len(visits)]
    assert rec["archs"].tolist() == [3] and rec["start"][0] == min(times) and rec["end"][0] == max(times)
    assert 0 < rec["busy_s"][0] <= max(times) - min(times)
    with pytest.raises(HwlmError, match="exists"):
        pass_to_table(log, out, tp.archs)
    with pytest.raises(HwlmError, match="invalid archs"):
        pass_to_table(log, tmp_path / "other.h5", tp.archs[::-1])


def test_device_settings_name_the_dtype_the_runtime_is_fed():
    base = ("prefill-b1-s256-fp32", "decode-b1-s128-fp32")
    assert device_settings(base, RuntimeDevice("torch", "bf16", 1)) == ("prefill-b1-s256-bf16", "decode-b1-s128-bf16")
    assert device_settings(base, RuntimeDevice("ort", "int8", 1)) == base


def test_memory_pass_values_land_in_the_shard(tmp_path):
    from benchmark.profiling.memory_pass import memory_subset, memory_values, run_memory_pass

    tp = _pass(n=2, rounds=1)
    log = tmp_path / "p.jsonl"
    run_pass(tp, log, progress=False)
    sp = get_space("t")
    subset = memory_subset(list(tp.archs), 1, seed=0)
    assert len(subset) == 1 and subset[0] in tp.archs
    mlog = tmp_path / "m.jsonl"
    assert run_memory_pass(subset, tp.device, SETTINGS[:1], mlog, progress=False) == 1
    with pytest.raises(HwlmError, match="at the timing pass's settings"):
        pass_to_table(log, tmp_path / "bad.h5", tp.archs, memory_log=mlog)
    assert run_memory_pass(subset, tp.device, SETTINGS, tmp_path / "m2.jsonl", progress=False) == 2
    _, values = memory_values(tmp_path / "m2.jsonl")
    t = Table(pass_to_table(log, tmp_path / "shard.h5", tp.archs, memory_log=tmp_path / "m2.jsonl"))
    for s in SETTINGS:
        mem = t.hardware("cpu-test-1c", s, "memory_mb")[:, 0]
        row = t.row(sp.from_id(subset[0]))
        assert mem[row] == pytest.approx(values[subset[0]][s]) and mem[row] > 0
        assert np.isnan(np.delete(mem, row)).all()  # outside the subset: not measured
    assert memory_subset([sp.largest().id, sp.smallest().id, *tp.archs], 2) == [sp.largest().id, sp.smallest().id]


def test_a_log_hashed_with_concatenated_ids_converts_with_canonical_ones(tmp_path):
    from benchmark.spaces import concatenated_id

    sp = get_space("t")
    canonical = _pass(n=2, rounds=1)
    old = [concatenated_id(sp.from_id(a)) for a in canonical.archs]
    tp = TimingPass("t", tuple(old), canonical.device, "cpu-test-1c", SETTINGS, canonical.protocol, old[0],
                    decode_tokens=2)
    log = tmp_path / "p.jsonl"
    run_pass(tp, log, progress=False)
    t = Table(pass_to_table(log, tmp_path / "shard.h5", list(canonical.archs)))
    assert sorted(map(str, t.ids)) == sorted(canonical.archs)
    assert set(t.log(TIMINGS_LOG)["arch"]) == {"anchor", *canonical.archs}


def test_a_retimed_eager_device_keeps_the_allocator_memory_of_its_profiled_table(tmp_path):
    from benchmark.table import TableWriter

    tp = _pass(n=2, rounds=1)
    log = tmp_path / "p.jsonl"
    run_pass(tp, log, progress=False)
    head, _ = read_log(log)
    sp = get_space("t")

    def profiled(path, **prov_changes):
        with TableWriter(path, "t") as w:
            w.declare_device("cpu-test-1c", source="measured", provenance={**head["provenance"], **prov_changes})
            for s in SETTINGS:
                w.declare_setting("cpu-test-1c", s)
                w.declare_hardware_metric("cpu-test-1c", s, "memory_mb", unit="MB", repeats=1)
            for i, a in enumerate(tp.archs[::-1]):  # another row order than the pass
                w.append(sp.from_id(a), hardware={("cpu-test-1c", s, "memory_mb"): [10.0 + i + k]
                                                  for k, s in enumerate(SETTINGS)})
        return path

    src = profiled(tmp_path / "profiled.h5")
    t = Table(pass_to_table(log, tmp_path / "shard.h5", tp.archs, memory_from=src))
    for k, s in enumerate(SETTINGS):
        mem = t.hardware("cpu-test-1c", s, "memory_mb")[:, 0]
        for i, a in enumerate(tp.archs[::-1]):
            assert mem[t.row(sp.from_id(a))] == 10.0 + i + k
    note = t.provenance("cpu-test-1c")["memory_mb"]
    assert note["copied_from_table_sha256"] == Table(src).sha256() and "allocator events" in note["method"]
    with pytest.raises(HwlmError, match="torch_version.*same PyTorch build"):
        pass_to_table(log, tmp_path / "x.h5", tp.archs, memory_from=profiled(tmp_path / "o.h5", torch_version="9"))
    with pytest.raises(HwlmError, match="one source of memory_mb"):
        pass_to_table(log, tmp_path / "x.h5", tp.archs, memory_from=src, memory_log=tmp_path / "m.jsonl")
    ort = TimingPass("t", tp.archs, RuntimeDevice("ort", "fp32", 1), "cpu-test-1c-ort-fp32", SETTINGS,
                     tp.protocol, tp.anchor, decode_tokens=2)
    head["pass"] = ort.header()
    log.write_text(json.dumps(head) + "\n")
    with pytest.raises(HwlmError, match="allowed only for PyTorch eager fp32"):
        pass_to_table(log, tmp_path / "x.h5", tp.archs, memory_from=src)
    assert not (tmp_path / "x.h5").exists()


def test_an_onnx_pass_records_its_export_settings_from_the_graphs_it_timed(tmp_path):
    pytest.importorskip("onnxruntime")
    from benchmark.profiling.runtimes.export import OPSET

    sp = get_space("t")
    archs = [a.id for a in sp.sample(3, 2)]
    tp = TimingPass("t", tuple(archs), RuntimeDevice("ort", "fp32", 1), "cpu-test-1c-ort-fp32", SETTINGS,
                    RoundsProtocol(1, 1, 0, 2, 0), archs[0], decode_tokens=2)
    log, exports = tmp_path / "p.jsonl", tmp_path / "graphs"
    run_pass(tp, log, exports, progress=False)
    head = json.loads(log.read_text().splitlines()[0])
    assert head["provenance"]["export_opset"] == OPSET  # known before the first export
    prov = Table(pass_to_table(log, tmp_path / "a.h5", tp.archs, export_dir=exports)).provenance(tp.device_id)
    assert prov["export_opset"] == OPSET and prov["exporter"] == "torchscript"
    # a log whose header lacks the export fields takes them from its graphs, and only from them
    head["provenance"] = {k: v for k, v in head["provenance"].items() if k != "export_opset"}
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join([json.dumps(head), *log.read_text().splitlines()[1:]]) + "\n")
    with pytest.raises(HwlmError, match="invalid export_dir.*not a directory"):
        pass_to_table(old, tmp_path / "b.h5", tp.archs)
    prov = Table(pass_to_table(old, tmp_path / "b.h5", tp.archs, export_dir=exports)).provenance(tp.device_id)
    assert prov["export_opset"] == OPSET
    meta = exports / f"{archs[1]}.export.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "opset": OPSET - 1}))
    with pytest.raises(HwlmError, match="2 export settings"):
        pass_to_table(log, tmp_path / "c.h5", tp.archs, export_dir=exports)


def _two_parts(tmp_path, seed: int, protocol: RoundsProtocol) -> tuple[list[str], list]:
    """Four architectures timed as two parts of one device's pass (two each, one anchor): their
    ids and the parts' logs."""
    archs = [a.id for a in get_space("t").sample(seed, 4)]
    logs = []
    for k, part in enumerate((archs[:2], archs[2:])):
        tp = TimingPass("t", tuple(part), RuntimeDevice("torch", "fp32", 1), "cpu-test-1c", SETTINGS, protocol,
                        archs[0], decode_tokens=2)
        logs.append(tmp_path / f"p{k}.jsonl")
        run_pass(tp, logs[-1], progress=False)
    return archs, logs


def test_halves_of_one_device_logged_by_an_older_pass_merge_into_one_device(tmp_path):
    """A device's pass split in two (--start/--n) whose first half was logged before the header stated
    the weights, and while it recorded a null quantized-node count, still declares one device."""
    from benchmark.table.merge import merge_tables

    archs, logs = _two_parts(tmp_path, 11, RoundsProtocol(1, 1, 0, 2, 0))
    shards = []
    for k, (half, log) in enumerate(zip((archs[:2], archs[2:]), logs)):
        head, visits = read_log(log)
        if k == 0:  # as an older pass logged it
            assert "seed 0" in head["provenance"].pop("weights")
            head["provenance"]["quantization"] = {"method": "m", "quantized_nodes": None}
        else:
            head["provenance"]["quantization"] = {"method": "m"}
        log.write_text("\n".join(json.dumps(x) for x in [head, *visits]) + "\n")
        shards.append(pass_to_table(log, tmp_path / f"h{k}.h5", half))
    first = Table(shards[0]).provenance("cpu-test-1c")
    assert "seed 0" in first["weights"] and first["quantization"] == {"method": "m"}
    merged = Table(merge_tables(shards, tmp_path / "m.h5", on_conflict="error"))
    assert sorted(map(str, merged.ids)) == sorted(archs)
    assert merged.provenance("cpu-test-1c") == first


def test_a_part_levelled_to_its_reference_part_loses_a_level_shift_of_the_host(tmp_path):
    """Two parts of one device's pass; the second timed on a host 25 % slower throughout (every
    timing, the anchor's too). Levelled by the anchor, it stores what it would have stored on the
    unchanged host, keeps its raw timings, logs its factors and merges with the first part."""
    from benchmark.profiling.timing_pass import LEVELS_LOG
    from benchmark.table.merge import merge_tables

    archs, logs = _two_parts(tmp_path, 12, RoundsProtocol(2, 2, 0, 2, 0))
    first = pass_to_table(logs[0], tmp_path / "p0.h5", archs[:2])
    head, visits = read_log(logs[1])
    for v in visits:
        v["ms"] = {s: [x * 1.25 for x in ms] for s, ms in v["ms"].items()}
    slow = tmp_path / "slow.jsonl"
    slow.write_text("\n".join(json.dumps(x) for x in [head, *visits]) + "\n")
    as_timed = Table(pass_to_table(logs[1], tmp_path / "p1.h5", archs[2:], level_to=first))
    levelled = Table(pass_to_table(slow, tmp_path / "slow.h5", archs[2:], level_to=first))
    raw = Table(pass_to_table(slow, tmp_path / "raw.h5", archs[2:]))
    for s in SETTINGS:
        lat = levelled.hardware("cpu-test-1c", s, "latency_ms")
        assert np.allclose(lat, as_timed.hardware("cpu-test-1c", s, "latency_ms"), rtol=1e-12)
        assert not np.allclose(lat, raw.hardware("cpu-test-1c", s, "latency_ms"))
    assert np.allclose(levelled.log(TIMINGS_LOG)["ms"], raw.log(TIMINGS_LOG)["ms"])  # raw timings kept
    rec = levelled.log(LEVELS_LOG)
    assert sorted(rec["setting"]) == sorted(SETTINGS) and rec["reference"].tolist() == ["p0.h5"] * 2
    assert np.allclose(rec["factor"], rec["reference_anchor_ms"] / rec["anchor_ms"])
    assert np.allclose(rec["factor"], Table(tmp_path / "p1.h5").log(LEVELS_LOG)["factor"] / 1.25)
    assert "timing_levels" in levelled.provenance("cpu-test-1c")["part_levelling"]
    merged = Table(merge_tables([first, tmp_path / "slow.h5"], tmp_path / "m.h5", on_conflict="error"))
    assert len(merged) == 4 and LEVELS_LOG in merged.logs()
    other = TimingPass("t", tuple(archs[:1]), RuntimeDevice("torch", "fp32", 1), "cpu-other-1c", SETTINGS,
                       RoundsProtocol(1, 1, 0, 2, 0), archs[0], decode_tokens=2)
    run_pass(other, tmp_path / "o.jsonl", progress=False)
    with pytest.raises(HwlmError, match="invalid level_to.*no timing pass of cpu-other-1c"):
        pass_to_table(tmp_path / "o.jsonl", tmp_path / "o.h5", archs[:1], level_to=first)
