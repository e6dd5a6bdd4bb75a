"""The budgeted GPU run (benchmark.profiling.gpu) and its ingest, without CUDA: energy windows on a
fake counter, the budget on a fake clock, real shards written, resumed and merged by CPU dry runs
on a tiny supernet, provenance with a fake NVML."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.profiling import gpu, gpu_run
from benchmark.profiling.devices import REGISTRY
from benchmark.profiling.gpu_ingest import check_shard, ingest
from benchmark.spaces import get_space
from benchmark.table import Table, TableError, TableWriter

REPO = Path(__file__).resolve().parents[1]
EVAL_TOKENS = 256


@pytest.fixture(autouse=True)
def _locks(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLM_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from benchmark.supernet.elastic import Supernet, save_supernet

    p = tmp_path_factory.mktemp("ckpt") / "supernet_t.safetensors"
    save_supernet(Supernet("t", vocab_size=300).init_weights(0), p)
    return p


def tiny_tier(archs, name="t", dtypes=("fp32",), energy_every=2) -> gpu.Tier:
    return gpu.Tier(name, "t", tuple(archs), dtypes, ("prefill-b1-s8", "decode-b1-s4"), energy_every, "trained",
                    f"gpu_{name}.h5")


def dry_run(tmp, plan, ckpt, corpus, budget_s=600.0, clock=None, **opts):
    kw = {"clock": clock} if clock is not None else {}
    options = gpu_run.RunOptions(**{"eval_tokens": EVAL_TOKENS, "ppl_check": 2, **opts})
    return gpu_run.run_plan(plan, tmp, budget_s=budget_s, dry_run_cpu=True, options=options, checkpoint=ckpt,
                        data_dir=corpus, quiet=True, **kw)


# --------------------------------------------------------------------------- energy windows
class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class StepCounter:
    """A cumulative energy counter (mJ) of a device drawing ``watts``, updated every ``step_s``."""

    def __init__(self, clock, watts, step_s=0.01):
        self.clock, self.watts, self.step_s = clock, watts, step_s

    def read_mj(self):
        return math.floor(self.clock() / self.step_s) * self.step_s * self.watts * 1e3


@pytest.mark.parametrize("run_s,unit_s", [(0.003, 0.003), (0.003, 0.0), (0.25, 0.25), (0.0007, 0.01)])
def test_energy_window_lasts_the_minimum_and_divides_by_runs(run_s, unit_s):
    clock = FakeClock()
    clock.t = 12.3456  # counters do not start at zero
    counter = StepCounter(clock, watts=300.0)
    syncs = []

    def run():
        clock.t += run_s

    w = gpu.energy_window(run, lambda: syncs.append(clock.t), counter.read_mj, clock, 0.1, unit_s)
    assert w.window_s >= 0.1
    assert w.runs * run_s == pytest.approx(w.window_s)
    if unit_s == run_s:  # sized right from the start: one batch of exactly enough runs
        assert w.runs == math.ceil(0.1 / run_s)
    # the counter's 10 ms steps bound the error: at most one step of energy spread over the runs
    assert abs(w.energy_mj - 300.0 * run_s * 1e3) <= 300.0 * 0.01 * 1e3 / w.runs + 1e-9
    assert len(syncs) >= 2  # synchronised before the first read and before the window was closed


def test_energy_window_refuses_a_counter_that_goes_backwards_and_a_short_window():
    clock = FakeClock()
    values = iter([1000.0, 900.0])

    def run():
        clock.t += 0.2

    with pytest.raises(RuntimeError, match="went backwards"):
        gpu.energy_window(run, lambda: None, lambda: next(values), clock, 0.1, 0.2)
    with pytest.raises(ValueError, match="min_window_s"):
        gpu.energy_window(run, lambda: None, lambda: 0.0, clock, 0.0)


# --------------------------------------------------------------------------- budget
def test_budget_admits_rows_while_the_expected_row_fits():
    clock = FakeClock()
    b = gpu.Budget(100.0, clock, reserve_s=5.0, safety=1.5)
    done = 0
    while b.allows("row"):
        t0 = clock.t
        clock.t += 4.0 + (done % 3)  # rows of 4, 5, 6 s
        b.record("row", clock.t - t0)
        done += 1
    assert clock.t <= 100.0 - 5.0
    assert b.left() < 1.5 * b.expected("row") + 5.0
    assert done == 18 and "budget" in b.stopped  # 90 s done; 10 s left < 1.5 x 5 s + 5 s
    # a kind never seen is expected to cost what the most expensive kind seen cost
    b.record("energy", 9.0)
    assert b.expected("new kind") == 9.0
    with pytest.raises(ValueError, match="budget"):
        gpu.Budget(0, clock)


# --------------------------------------------------------------------------- provenance
class FakeNVML:
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    class NVMLError_NotSupported(Exception):
        pass

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return {1: 1980, 2: 3201}[kind]

    def nvmlDeviceGetApplicationsClock(self, h, kind):
        raise self.NVMLError_NotSupported()

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return 700000

    def nvmlDeviceGetPersistenceMode(self, h):
        return 1

    def nvmlDeviceGetComputeMode(self, h):
        return 0

    def nvmlDeviceGetVbiosVersion(self, h):
        return b"96.00.AF.00.01"

    def nvmlSystemGetNVMLVersion(self):
        return "13.580.159.04"

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {1: 1980, 2: 3201}[kind]

    def nvmlDeviceGetTemperature(self, h, kind):
        return 41

    def nvmlDeviceGetPowerUsage(self, h):
        return 123456

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        raise self.NVMLError_NotSupported()


def test_provenance_names_the_gpu_clocks_versions_and_protocol():
    nv = FakeNVML()
    static = gpu.nvml_static(nv, "h")
    assert static["gpu_max_sm_clock_mhz"] == 1980 and static["gpu_max_mem_clock_mhz"] == 3201
    assert static["gpu_power_limit_w"] == 700.0 and static["gpu_vbios"] == "96.00.AF.00.01"
    assert static["gpu_app_sm_clock_mhz"] is None  # unsupported: None, not a guess
    state = gpu.nvml_state(nv, "h")
    assert state["sm_clock_mhz"] == 1980 and state["power_w"] == pytest.approx(123.456)
    assert math.isnan(state["throttle_reasons"])
    host = {"gpu_name": "NVIDIA H200", "gpu_uuid": "GPU-1", "driver_version": "580.159.04", "cuda_version": "13.0",
            "torch_version": "2.11.0+cu130", "date_utc": "2026-11-28T20:00:00+00:00", "load_avg_1m": 0.3}
    protocol = gpu.protocol_provenance("cuda", 1, 10, 1, 0.1, 1, "random", 7)
    prov = gpu.device_provenance(host, static, protocol, "gpu-h200-sxm-141gb-torch", dry_run=False)
    assert "date_utc" not in prov and "load_avg_1m" not in prov  # per run: the gpu_runs log holds them
    assert prov["kind"] == "gpu" and prov["dry_run"] is False and prov["driver_version"] == "580.159.04"
    assert prov["protocol"]["repeats"] == 10 and "CUDA events" in prov["protocol"]["timer"]
    assert "do not depend on weight values" in prov["protocol"]["weights"] and "init_weights(7)" in prov["protocol"]["weights"]
    assert "nvmlDeviceGetTotalEnergyConsumption" in prov["protocol"]["energy"]
    dry = gpu.device_provenance(host, {}, protocol, "dryrun-cpu-x", dry_run=True)
    assert dry["kind"] == "cpu" and dry["dry_run"] is True and "not a GPU measurement" in dry["note"]


@pytest.mark.parametrize("name,expected", [
    ("NVIDIA H200", "gpu-h200-sxm-141gb-torch"),
    ("NVIDIA H100 80GB HBM3", "gpu-h100-sxm5-80gb-torch"),
    ("NVIDIA H200 NVL", "gpu-h200-nvl-torch"),
    ("NVIDIA L4", "gpu-l4-torch"),
])
def test_measured_device_id_is_never_a_registry_id(name, expected):
    assert gpu.measured_device_id(name) == expected
    assert expected not in REGISTRY


# --------------------------------------------------------------------------- plan
def test_default_plan_orders_t_then_s(tmp_path):
    sp = get_space("t")
    release = tmp_path / "table_t.h5"
    with TableWriter(release, "t") as w:
        for a in sp.sample(3, 7):
            w.append(a)
    plan = gpu.default_plan(release, s_n=20)
    assert [t.name for t in plan] == ["t", "s-bf16", "s-fp16"]
    assert {a.id for a in plan[0].archs} == set(Table(release).ids) and plan[0].dtypes == ("fp16", "bf16")
    assert plan[0].setting_names()[:3] == ["prefill-b1-s256-fp16", "prefill-b8-s256-fp16", "decode-b1-s128-fp16"]
    s_ids = [a.id for a in plan[1].archs]
    assert len(s_ids) == 20 and s_ids == [a.id for a in plan[2].archs]
    assert {get_space("s").largest().id, get_space("s").smallest().id} <= set(s_ids)
    assert plan[1].setting_names() == ["prefill-b1-s1024-bf16", "prefill-b8-s1024-bf16", "decode-b1-s512-bf16"]
    assert [a.id for a in gpu.default_plan(release, s_n=20)[1].archs] == s_ids  # seeded
    assert len(gpu.default_plan(release, t_n=2, tiers=("t",))[0].archs) == 2
    with pytest.raises(ValueError, match="tier"):
        gpu.default_plan(release, tiers=("t", "x"))


def test_estimate_grows_with_repeats_and_energy_rows():
    archs = list(get_space("t").sample(0, 6))
    tier = tiny_tier(archs, dtypes=("fp16",))
    a = gpu_run.estimate_plan([tier], repeats=10, startup_s=0.0)
    b = gpu_run.estimate_plan([tier], repeats=20, startup_s=0.0)
    c = gpu_run.estimate_plan([tiny_tier(archs, dtypes=("fp16",), energy_every=1)], repeats=10, startup_s=0.0)
    assert 0 < a["total_s"] < b["total_s"] and a["tiers"]["t"]["energy_rows"] == 3
    assert c["tiers"]["t"]["energy_rows"] == 6 and c["tiers"]["t"]["energy_s"] > a["tiers"]["t"]["energy_s"]


# --------------------------------------------------------------------------- dry runs: shards, resume, budget
def test_dry_run_writes_a_labelled_resumable_shard(tmp_path, ckpt, tiny_corpus):
    archs = list(get_space("t").sample(1, 3))
    s = dry_run(tmp_path, [tiny_tier(archs, dtypes=("fp32", "bf16"))], ckpt, tiny_corpus)
    assert s["stopped"] == "plan complete" and s["dry_run"] and s["gpu_name"] is None
    assert s["tiers"]["t"]["rows"] == 3 and (tmp_path / "summary.json").exists()
    t = Table(tmp_path / "gpu_t.h5")
    (dev, meta), = t.devices().items()
    assert dev.startswith("dryrun-cpu-") and not dev.startswith("gpu") and meta["kind"] == "cpu"
    prov = meta["provenance"]
    assert prov["dry_run"] is True and "gpu_name" not in prov and prov["protocol"]["repeats"] == 10
    assert t.attrs["supernet_sha256"] and t.attrs["tokenizer_sha256"]
    assert sorted(t.settings(dev)) == ["decode-b1-s4-bf16", "decode-b1-s4-fp32", "prefill-b1-s8-bf16",
                                       "prefill-b1-s8-fp32"]
    for st in t.settings(dev):
        lat, mem = t.hardware(dev, st, "latency_ms"), t.hardware(dev, st, "memory_mb")
        assert lat.shape == (3, 10) and np.isfinite(lat).all() and (lat > 0).all()
        assert (mem[:, 0] > 0).all()
        assert "energy_every" in t.setting_attrs(dev, st) and t.hardware_metrics(dev, st)["energy_mj"]["missing_reason"]
    # memory: at least the weights in the setting's dtype; fp32 holds twice the bytes of bf16
    from benchmark import costs
    i = t.row(archs[0])
    no_embedding = costs.params([archs[0]], embeddings=False)[0]
    assert t.hardware(dev, "prefill-b1-s8-bf16", "memory_mb")[i, 0] * 2**20 >= 2 * no_embedding
    assert t.hardware(dev, "prefill-b1-s8-fp32", "memory_mb")[i, 0] > t.hardware(dev, "prefill-b1-s8-bf16",
                                                                                    "memory_mb")[i, 0]
    logs = t.logs()
    assert {"gpu_runs", "gpu_state", "gpu_reference_timings", "gpu_perplexity_check"} <= set(logs)
    ppl = t.log("gpu_perplexity_check")
    assert len(ppl["arch"]) == 2 and (ppl["tokens"] == EVAL_TOKENS).all() and np.isfinite(ppl["perplexity"]).all()
    # rerun: resumed, nothing duplicated; a longer plan adds only the new rows
    more = archs + list(get_space("t").sample(2, 2))
    s2 = dry_run(tmp_path, [tiny_tier(more, dtypes=("fp32", "bf16"))], ckpt, tiny_corpus)
    assert s2["tiers"]["t"]["already"] == 3 and s2["tiers"]["t"]["measured_now"] == 2
    t2 = Table(tmp_path / "gpu_t.h5")
    assert len(t2) == 5 and len(set(t2.ids)) == 5
    assert np.array_equal(t2.hardware(dev, "prefill-b1-s8-fp32", "latency_ms")[:3],
                          t.hardware(dev, "prefill-b1-s8-fp32", "latency_ms")[:3])
    assert len(t2.log("gpu_runs")["rows"]) == 2


def test_dry_run_stops_inside_its_budget_and_resumes(tmp_path, ckpt, tiny_corpus):
    archs = list(get_space("t").sample(4, 8))

    class Ticks:  # a clock that moves one second per reading: rows cost a few "seconds"
        t = 0.0

        def __call__(self):
            self.t += 1.0
            return self.t

    clock = Ticks()
    s = dry_run(tmp_path, [tiny_tier(archs)], ckpt, tiny_corpus, budget_s=32.0, clock=clock)
    rows = s["tiers"]["t"]["rows"]
    assert 0 < rows < 8 and s["stopped"].startswith("budget")
    assert clock.t <= 32.0 + 5  # the last admitted row ended inside the budget (plus the summary's readings)
    assert len(Table(tmp_path / "gpu_t.h5")) == rows  # everything finished was kept
    s2 = dry_run(tmp_path, [tiny_tier(archs)], ckpt, tiny_corpus)
    assert s2["stopped"] == "plan complete" and s2["tiers"]["t"]["already"] == rows
    assert len(Table(tmp_path / "gpu_t.h5")) == 8


def test_energy_rows_hold_counter_windows_of_the_minimum_length(tmp_path, ckpt, tiny_corpus, monkeypatch):
    import time

    class FiftyWatts:  # stands in for NVML / RAPL: a cumulative counter of a constant 50 W
        def read_mj(self):
            return time.perf_counter() * 50.0 * 1e3

    monkeypatch.setattr("benchmark.profiling.energy.energy_counter", lambda dev: FiftyWatts())
    archs = list(get_space("t").sample(7, 4))
    s = dry_run(tmp_path, [tiny_tier(archs, energy_every=2)], ckpt, tiny_corpus, ppl_check=0)
    assert s["tiers"]["t"]["energy_rows_now"] == 2 and s["energy"] == "measured"
    t = Table(tmp_path / "gpu_t.h5")
    (dev,) = t.devices()
    order = [t.row(a) for a in archs]
    for st in t.settings(dev):
        e = t.hardware(dev, st, "energy_mj")[order, 0]
        assert np.isfinite(e[[0, 2]]).all() and np.isnan(e[[1, 3]]).all()  # every 2nd row of the order
    log = t.log("gpu_energy_windows")
    assert len(log["arch"]) == 2 * len(t.settings(dev)) and (log["window_s"] >= 0.1).all() and (log["runs"] >= 1).all()
    # each window: 50 W x its length, divided by the runs it held (the counter is read just outside the clock)
    joules = log["energy_mj"] * log["runs"] / 1e3
    assert np.allclose(joules, 50.0 * log["window_s"], rtol=0.01)
    for a, st, mj in zip(log["arch"], log["setting"], log["energy_mj"]):
        assert mj in t.hardware(dev, str(st), "energy_mj")[t.row(str(a))]  # the table stores the window's value


def test_a_shard_is_not_resumed_with_another_protocol(tmp_path, ckpt, tiny_corpus):
    archs = list(get_space("t").sample(5, 1))
    dry_run(tmp_path, [tiny_tier(archs)], ckpt, tiny_corpus, ppl_check=0)
    with pytest.raises(ValueError, match="cannot resume"):
        dry_run(tmp_path, [tiny_tier(archs)], ckpt, tiny_corpus, warmup=2)


# --------------------------------------------------------------------------- ingest
@pytest.fixture(scope="module")
def dry_shard(tmp_path_factory, ckpt, tiny_corpus) -> Path:
    out = tmp_path_factory.mktemp("dry")
    archs = [get_space("t").largest(), *get_space("t").sample(6, 2)]
    dry_run(out, [tiny_tier(archs)], ckpt, tiny_corpus)
    return out / "gpu_t.h5"


def release_like(path: Path, ckpt: Path, corpus: Path, archs) -> Path:
    """A table like the release: perplexity measured on the CPU with the same checkpoint and tokens."""
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.files import sha256_file
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.elastic import load_supernet

    net, tokens = load_supernet(ckpt, "t"), np.asarray(load_split("test", corpus))
    attrs = {"supernet_sha256": sha256_file(ckpt), "tokenizer_sha256": sha256_file(corpus / "tokenizer.json"),
             "eval_tokens": EVAL_TOKENS}
    with TableWriter(path, "t", attrs=attrs) as w:
        w.declare_metric("perplexity", unit="1", source="measured")
        for a in archs:
            w.append(a, metrics={"perplexity": measure_perplexity(net, a, tokens, max_tokens=EVAL_TOKENS).perplexity})
    return path


def test_ingest_refuses_a_dry_run_and_merges_it_when_told_it_is_a_test(tmp_path, dry_shard, ckpt, tiny_corpus):
    archs = [get_space("t").largest(), get_space("t").smallest(), get_space("t").sample(9)]
    table = release_like(tmp_path / "table_t.h5", ckpt, tiny_corpus, archs)
    with pytest.raises(TableError, match="dry run"):
        ingest([dry_shard], table)
    before = Table(table).sha256()
    r = ingest([dry_shard], table, tmp_path / "merged.h5", allow_dry_run=True)
    assert Table(table).sha256() == before  # --out leaves the table alone
    m = Table(tmp_path / "merged.h5")
    dev = r["shards"][0]["device"]
    assert r["rows"] == len(m) == 5 and m.devices()[dev]["source"] == "measured"
    assert np.isfinite(m.hardware(dev, "prefill-b1-s8-fp32", "latency_ms")[m.row(archs[0])]).all()
    assert m.metric("perplexity")[m.row(archs[0])] == Table(table).metric("perplexity")[0]
    # the perplexity re-measured by the run agrees with the table's (same checkpoint and tokens)
    (c,) = [c for c in r["perplexity"] if c["arch"] == archs[0].id]
    assert c["comparable"] and c["rel_diff"] <= 1e-6
    # check_only merges nothing; a new table is created from the shards alone (e.g. table_s.h5)
    assert ingest([dry_shard], table, allow_dry_run=True, check_only=True)["out"] is None
    assert ingest([dry_shard], tmp_path / "new.h5", allow_dry_run=True)["rows"] == 3


def test_ingest_catches_a_perplexity_that_disagrees(tmp_path, dry_shard, ckpt, tiny_corpus):
    table = release_like(tmp_path / "table_t.h5", ckpt, tiny_corpus, [get_space("t").largest()])
    import h5py

    with h5py.File(table, "r+") as f:  # a different value for the same architecture
        f["metrics/perplexity"][0] = f["metrics/perplexity"][0] * 1.01
    with pytest.raises(TableError, match="perplexity of .* re-measured on the GPU"):
        ingest([dry_shard], table, allow_dry_run=True)


def test_check_shard_names_what_is_wrong(tmp_path, dry_shard):
    assert check_shard(dry_shard, allow_dry_run=True)["settings"]["prefill-b1-s8-fp32"]["rows"] == 3
    with pytest.raises(TableError, match=">= 20"):
        check_shard(dry_shard, allow_dry_run=True, min_repeats=20)
    bad = tmp_path / "modeled.h5"
    with TableWriter(bad, "t") as w:
        w.declare_device("gpu-h200-sxm-141gb", source="measured", provenance={"gpu_name": "NVIDIA H200"}, kind="gpu")
    with pytest.raises(TableError, match="registry"):
        check_shard(bad)
    noprov = tmp_path / "noprov.h5"
    with TableWriter(noprov, "t") as w:
        w.declare_device("gpu-h200-sxm-141gb-torch", source="measured", provenance={"gpu_name": "NVIDIA H200"},
                         kind="gpu")
    with pytest.raises(TableError, match="lacks"):
        check_shard(noprov)


def test_ingest_cli_exits_2_with_one_line(tmp_path, dry_shard):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "ingest_gpu.py"), "--table", str(tmp_path / "x.h5"),
                        str(dry_shard)], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "dry run" in r.stderr and "Traceback" not in r.stderr


def test_profile_cli_refuses_bad_input_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_gpu.py"), "--dry-run-cpu", "--repeats", "5",
                        "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "invalid repeats: 5" in r.stderr


def test_the_run_imports_nothing_the_gpu_image_lacks():
    code = ("import sys; import benchmark.profiling.gpu, benchmark.profiling.gpu_run, benchmark.profiling.gpu_ingest, benchmark.profiling.runner, "
            "benchmark.supernet.perplexity, benchmark.profiling.energy, benchmark.profiling.memory, "
            "benchmark.profiling.roofline, benchmark.supernet.elastic, benchmark.supernet.corpus; "
            "print(sorted(m for m in ('xgboost', 'transformers', 'ray', 'optuna', 'pymoo') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
