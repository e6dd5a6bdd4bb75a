"""One budgeted profiling run on a CUDA GPU: the measured GPU device of a release, in one command.

A GPU is lent for minutes at a time (one command of at most ~10 minutes), so this run is built
around a wall-clock budget: architectures are measured in a fixed priority order, one row at a
time, and the run stops itself before the budget is spent, keeping every finished row.

Plan (:func:`default_plan`), in priority order, each tier its own resumable shard:

1. ``t`` — every architecture of the release table (``data/table_t.h5``), fp16 and bf16, with
   the trained supernet's weights (first-k slices, as the perplexities were measured);
2. ``s-bf16`` — a seeded sample of ``s`` (largest and smallest included), bf16, with the
   weights of a seeded random ``s`` supernet (timing, memory and energy depend on shapes, not on
   weight values; the provenance says so);
3. ``s-fp16`` — the same ``s`` architectures in fp16, with what is left of the budget.

Per architecture, dtype and setting (the space's default settings, ``runner.default_settings``):

* the dense model (:meth:`Supernet.extract_dense`) in the dtype, the setting's workload
  (:func:`benchmark.profiling.latency.prepare`: seeded tokens; decode: a KV cache prefilled with
  the context, then ``decode_tokens`` single-token steps per run, rewound between runs);
* ``warmup`` untimed runs, the last of them measuring peak memory (CUDA:
  ``reset_peak_memory_stats`` / ``max_memory_allocated``; reported like
  :mod:`benchmark.profiling.memory`: weights + other resident + KV cache + activation peak);
* ``repeats`` timed runs, each between CUDA events after ``torch.cuda.synchronize()``
  (:func:`benchmark.profiling.latency.device_timer`); every repeat is stored;
* on every ``energy_every``-th architecture of the tier's order: ``energy_windows`` windows of
  back-to-back runs read on NVML's cumulative counter (``nvmlDeviceGetTotalEnergyConsumption``),
  each repeated until it lasts ``min_window_s`` (0.1 s: the counter updates every few to tens of
  ms), divided by the runs (:func:`energy_window`). Never power x time.

Alongside: the GPU's clocks, temperature and power every ``reference_every`` rows and the
largest/smallest architectures re-timed (drift), and the perplexity of a few ``t`` rows
re-measured on the GPU (fp32, the release's test windows) for the ingest step to compare with
the release's CPU values. Logs: ``gpu_runs``, ``gpu_state``, ``gpu_reference_timings``,
``gpu_perplexity_check``, ``gpu_energy_windows``.

``dry_run_cpu=True`` runs the same code on the CPU with tiny settings (:data:`DRY_RUN_SETTINGS`):
timer ``perf_counter``, memory from the CPU allocator events, energy from RAPL where readable;
its device id starts with ``dryrun-cpu-`` and its provenance says ``dry_run: true`` — the
ingest refuses it unless told it is a test.

This module imports torch, h5py and the package's measurement layer only (no xgboost,
transformers, ray or optuna), so that it runs on a GPU image from the source tree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["GPU_DTYPES", "DRY_RUN_SETTINGS", "MIN_ENERGY_WINDOW_S", "Tier", "Budget", "EnergyWindow", "energy_window",
           "measured_device_id", "nvml_static", "nvml_state", "device_provenance", "default_plan",
           "measure_setting", "SupernetWeights"]

GPU_DTYPES = ("fp16", "bf16")
#: the issue-sized lower bound of an energy window: NVML's counter updates every few to tens of ms
MIN_ENERGY_WINDOW_S = 0.1
#: single-token decode steps per run on the GPU (the CPU table uses 16; a GPU step is launch-bound,
#: so more tokens per run buy nothing but time)
GPU_DECODE_TOKENS = 1
#: the dry run's settings: the production settings' shapes are minutes per row on a CPU in fp16
DRY_RUN_SETTINGS = ("prefill-b1-s32", "prefill-b2-s32", "decode-b1-s16")
DRY_RUN_PREFIX = "dryrun-cpu-"
DEVICE_SUFFIX = "-torch"  # eager PyTorch on the device: distinct from the registry's modeled entry
#: what a tier needs before its first row (a random `s` supernet, the process warm-up, references)
TIER_START_S = 10.0
LOGS = {"runs": "gpu_runs", "state": "gpu_state", "reference": "gpu_reference_timings",
        "perplexity": "gpu_perplexity_check", "energy": "gpu_energy_windows"}


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Tier:
    """One shard of the plan: architectures (already in measuring order), dtypes, settings (names
    without dtype, e.g. ``prefill-b1-s256``), every how many rows energy is measured, and the
    weights: ``"trained"`` (the release's supernet) or ``"random"`` (seeded random supernet)."""

    name: str
    space: str
    archs: tuple
    dtypes: tuple[str, ...]
    settings: tuple[str, ...]
    energy_every: int
    weights: str
    shard: str

    def setting_names(self) -> list[str]:
        return [f"{s}-{d}" for d in self.dtypes for s in self.settings]


def _space_settings(space: str, dry_run: bool) -> tuple[str, ...]:
    from benchmark.profiling.runner import default_settings

    return DRY_RUN_SETTINGS if dry_run else tuple(s.rsplit("-", 1)[0] for s in default_settings(space))


def default_plan(release_table, *, seed: int = 0, t_n: int | None = None, s_n: int = 500,
                 energy_every_t: int = 50, energy_every_s: int = 10, tiers: Sequence[str] = ("t", "s-bf16", "s-fp16"),
                 dry_run: bool = False) -> list[Tier]:
    """The priority-ordered tiers (see the module docstring). ``t_n`` keeps the first ``t_n`` of
    the release's architectures in measuring order (default all); ``s_n`` is the size of the ``s``
    sample, largest and smallest included."""
    from benchmark.profiling.runner import profile_order, select_architectures
    from benchmark.table import Table

    allowed = ("t", "s-bf16", "s-fp16")
    for name in tiers:
        if name not in allowed:
            raise ValueError(f"invalid tier: {name!r}; allowed: {list(allowed)}")
    for what, v, lo in (("energy_every_t", energy_every_t, 1), ("energy_every_s", energy_every_s, 1),
                        ("t_n", 0 if t_n is None else t_n, 0), ("s_n", s_n, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"invalid {what}: {v!r}; allowed: an integer >= {lo}")
    out = []
    if "t" in tiers:
        ids = list(Table(release_table).ids)
        order = profile_order(select_architectures("t", archs=ids, include_extremes=False), seed)
        if t_n is not None:
            order = order[: int(t_n)]
        out.append(Tier("t", "t", tuple(order), GPU_DTYPES, _space_settings("t", dry_run), energy_every_t, "trained",
                        "gpu_t.h5"))
    if s_n and {"s-bf16", "s-fp16"} & set(tiers):
        # the extremes are part of the sample except in the dry run, where the largest `s` is minutes on a CPU
        base = select_architectures("s", n=max(0, s_n - (0 if dry_run else 2)), seed=seed, include_extremes=not dry_run)
        order = tuple(profile_order(base, seed)[:s_n])
        for name, dtype in (("s-bf16", "bf16"), ("s-fp16", "fp16")):
            if name in tiers:
                out.append(Tier(name, "s", order, (dtype,), _space_settings("s", dry_run), energy_every_s, "random",
                                f"gpu_s_{dtype}.h5"))
    return out


# --------------------------------------------------------------------------- budget
class Budget:
    """A wall-clock budget that admits one more row only if it is expected to finish in time.

    ``record(key, seconds)`` keeps the durations of finished rows per kind of row (e.g. a tier,
    with or without energy); ``allows(key)`` is true when ``safety`` times the mean duration of
    that kind (the longest kind seen when it is new) plus ``reserve_s`` (the final flush and
    summary) still fits in what is left. ``clock`` is injectable (tests use a fake one)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, reserve_s: float = 5.0,
                 safety: float = 1.5):
        if not seconds > 0:
            raise ValueError(f"invalid budget: {seconds!r}; allowed: seconds > 0")
        self.seconds, self.clock, self.reserve_s, self.safety = float(seconds), clock, float(reserve_s), float(safety)
        self.start = clock()
        self._done: dict[Any, list[float]] = {}
        self.stopped: str | None = None

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def record(self, key: Any, seconds: float) -> None:
        self._done.setdefault(key, []).append(float(seconds))

    def expected(self, key: Any) -> float:
        if key in self._done:
            return float(np.mean(self._done[key]))
        return max((float(np.mean(v)) for v in self._done.values()), default=0.0)

    def allows(self, key: Any, extra_s: float = 0.0) -> bool:
        ok = self.left() >= self.safety * self.expected(key) + self.reserve_s + extra_s
        if not ok and self.stopped is None:
            self.stopped = (f"budget: {self.left():.1f} s left < {self.safety} x {self.expected(key):.2f} s "
                            f"expected for the next row + {self.reserve_s:.0f} s reserve")
        return ok


# --------------------------------------------------------------------------- energy
@dataclass(frozen=True)
class EnergyWindow:
    """One counter window: energy per run in mJ, the runs it held and its length in seconds."""

    energy_mj: float
    runs: int
    window_s: float


def energy_window(run: Callable[[], Any], sync: Callable[[], Any], read_mj: Callable[[], float],
                  clock: Callable[[], float], min_window_s: float = MIN_ENERGY_WINDOW_S,
                  unit_s: float = 0.0) -> EnergyWindow:
    """Read the cumulative counter ``read_mj`` around back-to-back ``run()`` calls, repeated until
    the window (``clock``, after ``sync()``) lasts at least ``min_window_s``; the energy per run
    is the counter's difference divided by the runs. ``unit_s`` (e.g. the median latency) sizes
    the first batch of runs; later batches top the window up from the observed rate. A counter
    that goes backwards is an error (no silent zero)."""
    if not min_window_s > 0:
        raise ValueError(f"invalid min_window_s: {min_window_s!r}; allowed: > 0")
    n = max(1, math.ceil(min_window_s / unit_s)) if unit_s > 0 else 1
    sync()
    e0, t0, runs = read_mj(), clock(), 0
    while True:
        for _ in range(n):
            run()
        runs += n
        sync()
        elapsed = clock() - t0
        if elapsed >= min_window_s:
            break
        per_run = elapsed / runs
        n = max(1, math.ceil((min_window_s - elapsed) / per_run)) if per_run > 0 else 2 * runs
    e1 = read_mj()
    if not e1 >= e0:
        raise RuntimeError(f"energy counter went backwards ({e0} -> {e1} mJ) over a {elapsed:.3f} s window")
    return EnergyWindow((e1 - e0) / runs, runs, elapsed)


# --------------------------------------------------------------------------- device identity and provenance
def measured_device_id(gpu_name: str) -> str:
    """The table id of a GPU measured by this run: the registry entry its runtime name matches,
    plus ``-torch`` (``"NVIDIA H200"`` -> ``gpu-h200-sxm-141gb-torch``); otherwise a slug of the
    name. Distinct from every registry (modeled) id by construction."""
    from benchmark.profiling.devices import match_registry

    spec = match_registry(gpu_name)
    # the registry lists the SXM parts; a PCIe / NVL variant has other clocks, power and bandwidth
    if spec is not None and spec.kind == "gpu" and not any(v in gpu_name.lower() for v in ("pcie", "nvl")):
        return spec.id + DEVICE_SUFFIX
    slug = "-".join(w for w in "".join(c if c.isalnum() else " " for c in gpu_name.lower()).split()
                    if w not in ("nvidia", "geforce", "tesla"))
    return f"gpu-{slug or 'unknown'}{DEVICE_SUFFIX}"


def _nvml_call(nvml, name: str, *args) -> Any:
    try:
        v = getattr(nvml, name)(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: the field is None
        return None
    return v.decode() if isinstance(v, bytes) else v


def nvml_static(nvml, handle) -> dict[str, Any]:
    """What does not change during a run: maximum and application clocks (MHz), power limits (W),
    persistence and compute mode, VBIOS, NVML version. Unsupported fields are None."""
    c = nvml
    mw = lambda v: None if v is None else v / 1000.0
    return {
        "gpu_max_sm_clock_mhz": _nvml_call(c, "nvmlDeviceGetMaxClockInfo", handle, c.NVML_CLOCK_SM),
        "gpu_max_mem_clock_mhz": _nvml_call(c, "nvmlDeviceGetMaxClockInfo", handle, c.NVML_CLOCK_MEM),
        "gpu_app_sm_clock_mhz": _nvml_call(c, "nvmlDeviceGetApplicationsClock", handle, c.NVML_CLOCK_SM),
        "gpu_app_mem_clock_mhz": _nvml_call(c, "nvmlDeviceGetApplicationsClock", handle, c.NVML_CLOCK_MEM),
        "gpu_power_limit_w": mw(_nvml_call(c, "nvmlDeviceGetEnforcedPowerLimit", handle)),
        "gpu_power_default_limit_w": mw(_nvml_call(c, "nvmlDeviceGetPowerManagementDefaultLimit", handle)),
        "gpu_persistence_mode": _nvml_call(c, "nvmlDeviceGetPersistenceMode", handle),
        "gpu_compute_mode": _nvml_call(c, "nvmlDeviceGetComputeMode", handle),
        "gpu_vbios": _nvml_call(c, "nvmlDeviceGetVbiosVersion", handle),
        "nvml_version": _nvml_call(c, "nvmlSystemGetNVMLVersion"),
    }


def nvml_state(nvml, handle) -> dict[str, float]:
    """What a run logs as it goes: current SM and memory clocks (MHz), temperature (C), power (W)
    and the clock-throttle reason bitmask; NaN where unsupported."""
    c = nvml
    nan = float("nan")

    def num(v, scale=1.0):
        return nan if v is None else float(v) * scale

    return {
        "sm_clock_mhz": num(_nvml_call(c, "nvmlDeviceGetClockInfo", handle, c.NVML_CLOCK_SM)),
        "mem_clock_mhz": num(_nvml_call(c, "nvmlDeviceGetClockInfo", handle, c.NVML_CLOCK_MEM)),
        "temperature_c": num(_nvml_call(c, "nvmlDeviceGetTemperature", handle, c.NVML_TEMPERATURE_GPU)),
        "power_w": num(_nvml_call(c, "nvmlDeviceGetPowerUsage", handle), 1e-3),
        "throttle_reasons": num(_nvml_call(c, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)),
    }


def device_provenance(host: dict[str, Any], nvml_info: dict[str, Any], protocol: dict[str, Any],
                      device_id: str, dry_run: bool) -> dict[str, Any]:
    """The device group's provenance: the host's (:func:`~benchmark.profiling.devices.host_provenance`
    without the per-run date and load, which go to the ``gpu_runs`` log), NVML's static fields, and
    the measurement protocol (timer, warm-up, repeats, energy window, memory method, weights)."""
    prov = {k: v for k, v in host.items() if k not in ("date_utc", "load_avg_1m")}
    prov.update(nvml_info)
    prov.update(device_id=device_id, kind="cpu" if dry_run else "gpu", dry_run=bool(dry_run), protocol=protocol)
    if dry_run:
        prov["note"] = ("CPU dry run of scripts/profile_gpu.py with tiny settings: exercises the run's logic, is "
                        "not a GPU measurement and is never merged into a release")
    return prov


def protocol_provenance(dev_type: str, warmup: int, repeats: int, decode_tokens: int, min_window_s: float,
              energy_windows: int, weights: str, seed: int) -> dict[str, Any]:
    cuda = dev_type == "cuda"
    return {
        "tool": "scripts/profile_gpu.py (benchmark.profiling.gpu)",
        "timer": ("CUDA events around each run after torch.cuda.synchronize(); elapsed read after the end event "
                  "synchronised" if cuda else "time.perf_counter_ns around each run (CPU dry run)"),
        "mode": "eager PyTorch, torch.inference_mode(), garbage collector off while measuring",
        "warmup": warmup, "repeats": repeats, "decode_tokens": decode_tokens,
        "memory": ("torch.cuda.reset_peak_memory_stats / max_memory_allocated around the last warm-up run; "
                   "memory_mb = weights + buffers and inputs + KV cache + activation peak" if cuda else
                   "CPU allocator events (benchmark.profiling.memory.cpu_peak_bytes) around the last warm-up run"),
        "energy": (f"cumulative counter (NVML nvmlDeviceGetTotalEnergyConsumption on GPU, RAPL on CPU) read around "
                   f"back-to-back runs repeated until the window lasts >= {min_window_s} s, divided by the runs; "
                   f"{energy_windows} window(s) per setting on every energy_every-th row (setting attribute)"),
        "weights": ("first-k slices of the trained supernet (data/supernet_t.safetensors, sha256 in the table "
                    "attributes)" if weights == "trained" else
                    f"first-k slices of a random supernet (Supernet(space).init_weights({seed})): latency and memory "
                    f"do not depend on weight values (same kernels, same shapes); energy can depend weakly on the "
                    f"bit patterns, so GPT-2-scale random values are used, not zeros"),
        "seed": seed,
    }


# --------------------------------------------------------------------------- measuring one setting
@dataclass
class SettingResult:
    latency_ms: np.ndarray
    memory_mb: float
    energy: list[EnergyWindow] = field(default_factory=list)


def activation_peak(dev) -> Callable[[Callable[[], Any]], int]:
    """Bytes allocated during ``fn()`` on top of what was allocated before, at the peak."""
    import torch

    if dev.type == "cuda":
        def peak_cuda(fn):
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            out = fn()
            torch.cuda.synchronize(dev)
            del out
            return int(torch.cuda.max_memory_allocated(dev) - base)
        return peak_cuda
    from benchmark.profiling.memory import cpu_peak_bytes

    return lambda fn: cpu_peak_bytes(fn)[0]


def measure_setting(w, warmup: int, repeats: int, timer, peak, energy: Callable[[Callable[[], Any], float],
                    list[EnergyWindow]] | None = None) -> SettingResult:
    """Warm-up (the last run measures the activation peak), ``repeats`` timed runs, then the energy
    windows when ``energy`` is given. ``w`` is a :class:`benchmark.profiling.latency.Workload`."""
    from benchmark.profiling.memory import BYTES_PER_MB, tensor_bytes

    w.setup()

    def step():
        w.rewind()
        return w.run()

    for _ in range(warmup - 1):
        step()
    activation = peak(step)
    resident = (tensor_bytes(w.model.parameters()) + tensor_bytes(w.model.buffers()) + tensor_bytes(w.inputs)
                + (w.cache.nbytes() if w.cache is not None else 0))
    times = np.empty(repeats)
    for r in range(repeats):
        w.rewind()
        times[r] = timer(w.run) / w.tokens
    windows = energy(step, float(np.median(times)) * w.tokens / 1e3) if energy is not None else []
    return SettingResult(times, (resident + activation) / BYTES_PER_MB,
                         [EnergyWindow(e.energy_mj / w.tokens, e.runs, e.window_s) for e in windows])


# --------------------------------------------------------------------------- weights
class SupernetWeights:
    """Dense models of a space's architectures as first-k slices of one supernet held on the device."""

    def __init__(self, net, dev, description: str):
        self.net, self.dev, self.description = net.to(dev).eval().requires_grad_(False), dev, description

    @classmethod
    def trained(cls, space: str, checkpoint, dev) -> SupernetWeights:
        from benchmark.supernet.elastic import load_supernet

        return cls(load_supernet(checkpoint, space), dev, f"trained supernet {Path(checkpoint).name}")

    @classmethod
    def random(cls, space: str, seed: int, dev) -> SupernetWeights:
        from benchmark.supernet.elastic import Supernet

        return cls(Supernet(space).init_weights(seed), dev, f"random supernet, seed {seed}")

    def model(self, arch, dtype: str):
        import torch

        from benchmark.model import TORCH_DTYPES

        with torch.no_grad():
            return self.net.extract_dense(arch).to(TORCH_DTYPES[dtype]).eval().requires_grad_(False)


class HostLoss:
    """The supernet on the device, seen by :func:`benchmark.supernet.perplexity.measure_perplexity`
    as a CPU module: inputs go to the device, logits come back, and the loss is computed exactly as
    for the release's CPU perplexities (same windows, same batches, same reductions)."""

    def __init__(self, net, dev):
        self.net, self.dev, self.block_size = net, dev, net.block_size

    @property
    def training(self) -> bool:
        return self.net.training

    def eval(self):
        self.net.eval()
        return self

    def train(self, mode: bool = True):
        self.net.train(mode)
        return self

    def __call__(self, x, arch):
        return self.net(x.to(self.dev), arch).float().cpu()
