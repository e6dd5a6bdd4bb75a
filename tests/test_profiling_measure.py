"""Measurement layer: latency, device lock, energy counters, memory, device registry, roofline model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from benchmark import costs
from benchmark.profiling import devices as D
from benchmark.profiling import energy as En
from benchmark.profiling import latency as La
from benchmark.profiling import memory as Me
from benchmark.profiling import roofline as Ro
from benchmark.spaces import get_space

T = get_space("t")
SMALL = T.smallest()
LARGE = T.largest()


@pytest.fixture(autouse=True)
def _private_locks(tmp_path, monkeypatch):
    """Every test uses its own lock directory, so tests never wait on a real profiling run."""
    d = tmp_path / "locks"
    monkeypatch.setenv("HWLM_LOCK_DIR", str(d))
    return d


# --------------------------------------------------------------------------- settings
def test_resolve_setting_accepts_names_and_setting_objects():
    s = La.resolve_setting("prefill-b2-s64-fp32")
    assert (s.mode, s.batch, s.seq_len, s.dtype, s.name) == ("prefill", 2, 64, "fp32", "prefill-b2-s64-fp32")

    @dataclass(frozen=True)
    class Setting:  # the shape of benchmark.table.Setting
        mode: str
        batch: int
        seq_len: int
        dtype: str

    assert La.resolve_setting(Setting("decode", 1, 32, "bf16")).name == "decode-b1-s32-bf16"
    for bad in ("prefill-b0-s64-fp32", "train-b1-s1-fp32", "prefill-b1-s64-fp64", 3):
        with pytest.raises(ValueError):
            La.resolve_setting(bad)


def test_decode_context_plus_tokens_must_fit_the_block():
    with pytest.raises(ValueError, match="block_size"):
        La.measure_latency(SMALL, "decode-b1-s250-fp32", repeats=1, decode_tokens=16)
    with pytest.raises(ValueError, match="block_size"):
        La.measure_latency(SMALL, "prefill-b1-s257-fp32", repeats=1)


# --------------------------------------------------------------------------- latency
def test_latency_returns_every_repeat_positive_and_finite():
    r = La.measure_latency(SMALL, "prefill-b1-s32-fp32", warmup=1, repeats=3, seed=0)
    assert r.shape == (3,) and r.dtype == np.float64
    assert np.all(np.isfinite(r)) and np.all(r > 0)
    d = La.measure_latency(SMALL, "decode-b1-s32-fp32", warmup=1, repeats=3, decode_tokens=4)
    assert d.shape == (3,) and np.all(np.isfinite(d)) and np.all(d > 0)


def test_decode_token_is_faster_than_a_long_prefill():
    model = La.build_model(LARGE, "cpu", "fp32", seed=0)
    # one thread: robust to other work on a small machine; the claim is about the model's work
    prefill = La.measure_latency(LARGE, "prefill-b1-s256-fp32", warmup=1, repeats=3, model=model, threads=1)
    decode = La.measure_latency(LARGE, "decode-b1-s32-fp32", warmup=1, repeats=3, decode_tokens=4, model=model,
                                threads=1)
    assert np.median(decode) < np.median(prefill)


def test_latency_refuses_a_model_of_another_architecture():
    with pytest.raises(ValueError, match="invalid model"):
        La.measure_latency(LARGE, "prefill-b1-s8-fp32", repeats=1, model=La.build_model(SMALL))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_cuda_latency_and_memory(dtype):
    r = La.measure_latency(SMALL, f"prefill-b2-s64-{dtype}", device="cuda", warmup=2, repeats=3)
    assert r.shape == (3,) and np.all(np.isfinite(r)) and np.all(r > 0)
    m = Me.measure_memory(SMALL, f"decode-b2-s64-{dtype}", device="cuda")
    assert m.peak_bytes >= costs.weight_bytes(SMALL, dtype) + costs.kv_cache_bytes(SMALL, 2, 65, dtype)
    assert m.activation_bytes > 0


# --------------------------------------------------------------------------- lock
_HOLDER = textwrap.dedent("""
    import sys, time
    from benchmark.profiling.latency import device_lock
    with device_lock("cpu"):
        print("held", flush=True)
        time.sleep(float(sys.argv[1]))
""")


def _hold_lock(seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(seconds)], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ))
    assert p.stdout.readline().strip() == "held"
    return p


def test_device_lock_is_exclusive_between_processes():
    p = _hold_lock(1.0)
    try:
        with pytest.raises(La.DeviceBusy):
            with La.device_lock("cpu", timeout=0):
                pass
        with pytest.raises(La.DeviceBusy):  # a measurement does not start while another process holds the device
            La.measure_latency(SMALL, "prefill-b1-s8-fp32", repeats=1, lock_timeout=0.05)
        t0 = time.monotonic()
        with La.device_lock("cpu"):  # blocking: waits for the holder to finish
            waited = time.monotonic() - t0
    finally:
        p.wait(timeout=30)
    assert waited > 0.3
    assert p.returncode == 0


def _try_flock(path) -> bool:
    """A non-blocking flock from a fresh open file description (conflicts even within one process)."""
    import fcntl

    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_device_lock_is_reentrant_in_one_thread_and_released():
    with La.device_lock("cpu") as path:
        assert path.name == "cpu.lock" and path.read_text().strip() == str(os.getpid())
        with La.device_lock("cpu", timeout=0):  # re-entrant: a runner can hold it around measurements
            assert not _try_flock(path)
        assert not _try_flock(path)  # still held by the outer block
    assert _try_flock(path)  # released


# --------------------------------------------------------------------------- energy
def _rapl_readable() -> bool:
    import glob
    for f in glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj"):
        try:
            open(f).read()
            return True
        except OSError:
            pass
    return False


def test_energy_counter_here_is_missing_with_a_reason_or_a_real_counter():
    c = En.energy_counter("cpu")
    if _rapl_readable():
        assert isinstance(c, En.RaplCounter)
        assert c.read_mj() >= 0
    else:
        assert isinstance(c, En.EnergyUnavailable) and not c
        assert "RAPL" in c.reason and c.device == "cpu"
        r = En.measure_energy(SMALL, "prefill-b1-s8-fp32", repeats=1)
        assert isinstance(r, En.EnergyUnavailable) and r.reason == c.reason


def _fake_rapl(root, zones):
    for zone, name, energy, rng in zones:
        d = root / zone
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{rng}\n")


def test_rapl_sums_packages_only_and_handles_wraparound(tmp_path):
    _fake_rapl(tmp_path, [("intel-rapl:0", "package-0", 900, 1000), ("intel-rapl:1", "package-1", 10, 1000),
                          ("intel-rapl:0:0", "core", 5, 1000), ("intel-rapl:2", "psys", 7, 1000)])
    c = En.energy_counter("cpu", rapl_root=str(tmp_path))
    assert isinstance(c, En.RaplCounter)
    assert c.read_mj() == 0
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("100\n")  # wrapped: 900 -> 1000 -> 100 = +200 µJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("60\n")  # +50 µJ
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("999\n")  # sub-zone: ignored
    assert c.read_mj() == pytest.approx(0.25)


def test_rapl_unreadable_or_absent_gives_reason(tmp_path):
    r = En.energy_counter("cpu", rapl_root=str(tmp_path))
    assert isinstance(r, En.EnergyUnavailable) and "absent" in r.reason
    _fake_rapl(tmp_path, [("intel-rapl:0", "package-0", 1, 1000)])
    os.remove(tmp_path / "intel-rapl:0" / "energy_uj")
    r = En.energy_counter("cpu", rapl_root=str(tmp_path))
    assert isinstance(r, En.EnergyUnavailable) and "energy_uj" in r.reason


class _FakeNvml(types.ModuleType):
    class NVMLError(Exception):
        pass

    def __init__(self, supported=True):
        super().__init__("pynvml")
        self.supported, self.mj = supported, 1000

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"Fake GPU"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.supported:
            raise self.NVMLError("Not Supported")
        self.mj += 250
        return self.mj


def test_nvml_counter_reads_millijoules_or_reports_why_not(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("uses a fake NVML; a real GPU is tested by test_cuda_energy")
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    c = En.energy_counter("cuda:0")
    assert isinstance(c, En.NvmlCounter) and "Fake GPU" in c.describe()
    a = c.read_mj()
    assert c.read_mj() - a == 250
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(supported=False))
    r = En.energy_counter("cuda:0")
    assert isinstance(r, En.EnergyUnavailable) and "Not Supported" in r.reason


class _ClockCounter:
    """A stand-in counter: 10 W, integrated from the wall clock (only to exercise the protocol)."""

    name = "fake"

    def read_mj(self):
        return time.perf_counter() * 10.0 * 1e3

    def describe(self):
        return "fake 10 W clock"


def test_measure_energy_protocol_divides_by_forwards():
    r = En.measure_energy(SMALL, "decode-b1-s16-fp32", repeats=2, warmup=1, min_seconds=0.05, decode_tokens=2,
                          counter=_ClockCounter())
    assert isinstance(r, En.EnergyResult) and r.source == "measured"
    assert r.energy_mj.shape == (2,) and np.all(r.energy_mj > 0)
    assert r.forwards_per_repeat >= 1
    # 10 W x (per-token time, a few ms at most here) -> well below 10 W x 1 s
    assert np.all(r.energy_mj < 10.0 * 1e3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_energy():
    r = En.measure_energy(SMALL, "prefill-b4-s128-fp16", device="cuda", repeats=2, min_seconds=0.3)
    if isinstance(r, En.EnergyUnavailable):
        assert r.reason
    else:
        assert np.all(r.energy_mj > 0) and r.counter.startswith("NVML")


# --------------------------------------------------------------------------- memory
def test_cpu_peak_bytes_sees_a_known_allocation():
    def f():
        a = torch.empty(1_000_000, dtype=torch.uint8)
        b = torch.empty(500_000, dtype=torch.uint8)
        del a
        return b

    peak, out = Me.cpu_peak_bytes(f)
    assert out.numel() == 500_000
    assert 1_500_000 <= peak < 1_600_000
    assert Me.cpu_peak_bytes(lambda: None)[0] == 0


def test_cpu_peak_bytes_keeps_stderr_free_of_profiler_banners():
    """kineto prints two USDT lines per profiler start/stop to fd 2 (thousands in a profiling log);
    they are dropped, while anything else written to stderr meanwhile still gets through."""
    code = textwrap.dedent("""
        import os, torch
        from benchmark.profiling.memory import cpu_peak_bytes
        def f():
            os.write(2, b"a real warning\\n")
            return torch.ones(100) + 1
        print(cpu_peak_bytes(f)[0] > 0)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "True"
    assert "a real warning" in r.stderr and "USDT" not in r.stderr and "profiler_start" not in r.stderr


def test_cpu_memory_peak_grows_with_batch_and_covers_weights():
    model = La.build_model(SMALL)
    m1 = Me.measure_memory(SMALL, "prefill-b1-s64-fp32", model=model)
    m4 = Me.measure_memory(SMALL, "prefill-b4-s64-fp32", model=model)
    w = int(costs.weight_bytes(SMALL, "fp32"))
    assert m1.weight_bytes == w and m1.source == "measured"
    assert m4.peak_bytes > m1.peak_bytes >= w
    assert m4.activation_bytes > 3 * m1.activation_bytes  # activations scale ~linearly with batch
    logits = 64 * T.vocab_size * 4
    assert m1.activation_bytes >= logits  # the returned logits are alive at the end
    assert m1.memory_mb == pytest.approx(m1.peak_bytes / 2**20)
    assert m1.peak_bytes == m1.weight_bytes + m1.other_resident_bytes + m1.kv_cache_bytes + m1.activation_bytes


def test_cpu_decode_memory_includes_the_kv_cache():
    m = Me.measure_memory(LARGE, "decode-b2-s64-fp32")
    kv = int(costs.kv_cache_bytes(LARGE, 2, 65, "fp32"))
    assert m.kv_cache_bytes == kv
    assert m.peak_bytes >= int(costs.weight_bytes(LARGE, "fp32")) + kv
    assert 0 < m.activation_bytes < kv  # one token's transients are small next to the cache


# --------------------------------------------------------------------------- registry and provenance
def test_registry_is_complete_with_sources():
    hw = {"a100", "a40", "h100", "rtx2080", "rtx3080", "a6000", "v100", "P100", "cpu_xeon_silver", "cpu_xeon_gold",
          "cpu_amd_7502", "cpu_amd_7513", "cpu_amd_7452"}
    assert {d.hwgpt_name for d in D.REGISTRY.values() if d.hwgpt_name} == hw
    assert any("h200" in i for i in D.REGISTRY)
    assert sum(d.category == "edge" for d in D.REGISTRY.values()) >= 3
    for d in D.REGISTRY.values():
        assert d.kind in ("cpu", "gpu") and d.id.startswith(d.kind + "-")
        figs = d.figures
        assert set(figs) == {"fp32", "fp16", "bf16", "bandwidth", "memory", "tdp"}
        for name, f in figs.items():
            assert isinstance(f, D.Figure) and len(f.source) > 10 and f.basis in D.BASES, (d.id, name)
            if name in ("fp32", "bandwidth", "memory", "tdp"):
                assert f.value is not None and f.value > 0, (d.id, name)
        assert d.peak_flops("fp32") > 0 and d.bandwidth_bytes > 0 and d.tdp_w > 0
        if d.kind == "gpu" and d.category != "edge":
            assert d.supports("fp16")
        if d.kind == "cpu" and d.category == "server":
            assert d.cores
    assert D.get_device("a100") is D.get_device("gpu-a100-sxm4-40gb")
    with pytest.raises(ValueError, match="bf16"):
        D.get_device("v100").peak_flops("bf16")
    with pytest.raises(ValueError):
        D.get_device("no-such-device")


def test_docs_list_every_registry_device():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "devices.md").read_text()
    for d in D.REGISTRY.values():
        assert f"`{d.id}`" in doc, d.id


def test_registry_matches_runtime_names():
    assert D.match_registry("NVIDIA A100-SXM4-40GB").id == "gpu-a100-sxm4-40gb"
    assert D.match_registry("NVIDIA A100-PCIE-40GB") is None  # a different variant: no silent mismatch
    assert D.match_registry("NVIDIA H100 80GB HBM3").id == "gpu-h100-sxm5-80gb"
    assert D.match_registry("Intel(R) Xeon(R) Gold 6242 CPU @ 2.80GHz").id == "cpu-xeon-gold-6242"
    assert D.match_registry("AMD EPYC 7502 32-Core Processor").id == "cpu-epyc-7502"
    assert D.match_registry("NVIDIA GeForce RTX 2080 Ti") is None
    s = D.with_threads(D.get_device("cpu-epyc-7513"), 2)
    assert s.id == "cpu-epyc-7513-2c" and s.peak_flops() == pytest.approx(D.get_device("cpu-epyc-7513").peak_flops() / 16)


def test_local_device_id_and_slugs():
    assert D._cpu_slug("AMD EPYC") == "epyc"
    assert D._cpu_slug("Intel(R) Xeon(R) Gold 6242 CPU @ 2.80GHz") == "xeon-gold-6242"
    assert D._cpu_slug("AMD EPYC 7502 32-Core Processor") == "epyc-7502"
    assert D._gpu_slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"
    assert D._gpu_slug("NVIDIA A100-SXM4-40GB") == "a100-sxm4-40gb"
    assert D._gpu_slug("NVIDIA GeForce RTX 3080") == "rtx-3080"
    i = D.local_device_id("cpu", threads=2)
    assert i.startswith("cpu-") and i.endswith("-2c")
    assert D.local_device_id("cpu") == D.local_device_id("cpu")


def test_host_provenance_has_the_keys():
    p = D.host_provenance("cpu")
    for k in ("device_id", "device", "cpu_model", "logical_cores", "torch_threads", "torch_version", "numpy_version",
              "python_version", "platform", "hostname_sha256", "date_utc"):
        assert p[k] not in (None, ""), k
    assert p["torch_version"] == torch.__version__ and p["torch_threads"] == torch.get_num_threads()
    assert len(p["hostname_sha256"]) == 16
    if torch.cuda.is_available():
        g = D.host_provenance("cuda")
        for k in ("gpu_name", "gpu_uuid", "driver_version", "cuda_version", "gpu_memory_bytes"):
            assert k in g


# --------------------------------------------------------------------------- roofline
def test_operator_flops_match_costs_exactly():
    archs = T.sample(3, n=40)
    tab = Ro.operator_table(archs, "prefill-b2-s48-fp32")
    assert np.array_equal(tab.matmul_flops(), costs.flops_prefill(archs, 2, 48).astype(float))
    tab = Ro.operator_table(archs, "decode-b3-s40-fp32", decode_tokens=1)
    assert np.array_equal(tab.matmul_flops(), costs.flops_decode(archs, 3, 40).astype(float))
    # padding layers of shallow architectures carry no work and no overhead
    shallow = T.smallest()
    t = Ro.operator_table([shallow], "prefill-b1-s8-fp32")
    assert t.live.sum() == 3 + shallow.n_layer * (len(Ro.LAYER_OPS) - 1)  # no kv_write in prefill


def test_roofline_is_monotone_in_work_and_labelled_modeled():
    chain = [T.smallest(), T.smallest().replace(embed_dim=128), T.arch(128, 5, 4, 3, False), T.arch(192, 6, 6, 4, True)]
    flops = costs.flops_prefill(chain, 4, 128)
    assert np.all(np.diff(flops) > 0)
    for dev in ("cpu-epyc-7502", "gpu-a100-sxm4-40gb", "cpu-raspberry-pi-5"):
        r = Ro.predict(chain, "prefill-b4-s128-fp32", dev)
        assert r.source == "modeled" and r.params.source == "modeled"
        assert np.all(np.diff(r.latency_ms) > 0) and np.all(np.diff(r.energy_mj) > 0)
        assert np.allclose(r.energy_mj, r.power_w * r.latency_ms)  # W x ms = mJ
        tdp = D.get_device(dev).tdp_w
        assert np.all((r.power_w >= r.params.idle_fraction * tdp) & (r.power_w <= tdp))
    lat = [Ro.predict(chain[2], f"prefill-b{b}-s128-fp32", "gpu-a40").latency_ms[0] for b in (1, 2, 8, 32)]
    assert np.all(np.diff(lat) > 0)
    # a faster device is faster for the same work
    a100 = Ro.predict(chain, "prefill-b8-s256-bf16", "gpu-a100-sxm4-40gb").latency_ms
    h100 = Ro.predict(chain, "prefill-b8-s256-bf16", "gpu-h100-sxm5-80gb").latency_ms
    assert np.all(h100 < a100)
    with pytest.raises(ValueError, match="bf16"):
        Ro.predict(chain, "prefill-b1-s8-bf16", "gpu-v100-sxm2-32gb")


def test_calibration_recovers_known_parameters():
    # GPU spec and the s space: large-batch prefill is compute-bound, decode memory-bound, small
    # settings overhead-bound, so all three parameters are identifiable.
    S = get_space("s")
    archs = S.sample(5, n=25)
    spec = "gpu-a100-sxm4-40gb"
    true = Ro.RooflineParams(eff_compute=0.45, eff_memory=0.6, overhead_s=4e-6, idle_fraction=0.3)
    rng = np.random.default_rng(0)
    obs = []
    for st in ("prefill-b8-s512-bf16", "prefill-b1-s64-bf16", "decode-b1-s128-bf16", "decode-b16-s512-bf16"):
        r = Ro.predict(archs, st, spec, true)
        noisy = r.latency_ms * np.exp(rng.normal(0, 0.01, len(archs)))  # 1 % measurement noise
        obs.append((st, dict(zip(r.arch_ids, noisy))))
    fit = Ro.calibrate_many(obs, archs, spec)
    assert fit.source == "modeled" and fit.n_obs == 100 and fit.fitted_on
    assert fit.eff_compute == pytest.approx(0.45, rel=0.05)
    assert fit.eff_memory == pytest.approx(0.6, rel=0.05)
    assert fit.overhead_s == pytest.approx(4e-6, rel=0.05)
    assert fit.rmse_log < 0.015 < 0.1 < fit.rmse_log_start
    # noise-free data: exact recovery
    exact = [(st, {i: v for i, v in zip(Ro.predict(archs, st, spec, true).arch_ids,
                                        Ro.predict(archs, st, spec, true).latency_ms)}) for st, _ in obs]
    fit0 = Ro.calibrate_many(exact, archs, spec, prior_weight=0)
    assert (fit0.eff_compute, fit0.eff_memory, fit0.overhead_s) == pytest.approx((0.45, 0.6, 4e-6), rel=1e-4)
    # single-setting form; a parameter the data cannot see stays at its start value
    cpu = D.with_threads(D.get_device("cpu-epyc-7513"), 2)
    r = Ro.predict(archs[:10], "prefill-b8-s256-fp32", cpu, Ro.RooflineParams(0.3, 0.5, 8e-6))
    one = Ro.calibrate(dict(zip(r.arch_ids, r.latency_ms)), archs, "prefill-b8-s256-fp32", cpu)
    assert one.rmse_log < 0.01 < one.rmse_log_start
    assert one.eff_compute == pytest.approx(0.3, rel=0.02)
    # energy: idle fraction recovered in closed form
    e = Ro.predict(archs, "prefill-b8-s512-bf16", spec, true)
    got = Ro.calibrate_energy(dict(zip(e.arch_ids, e.energy_mj)), archs, "prefill-b8-s512-bf16", spec,
                              Ro.RooflineParams(true.eff_compute, true.eff_memory, true.overhead_s, idle_fraction=0.9))
    assert got.idle_fraction == pytest.approx(0.3, abs=1e-6) and got.source == "modeled"
