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
  (:func:`benchmark.profiling.latency._timer`); every repeat is stored;
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

import functools
import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = ["GPU_DTYPES", "DRY_RUN_SETTINGS", "MIN_ENERGY_WINDOW_S", "Tier", "Budget", "EnergyWindow", "energy_window",
           "measured_device_id", "nvml_static", "nvml_state", "device_provenance", "default_plan", "RunOptions",
           "run_plan", "estimate_plan", "main"]

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


def _protocol(dev_type: str, warmup: int, repeats: int, decode_tokens: int, min_window_s: float,
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


def _activation_peak(dev) -> Callable[[Callable[[], Any]], int]:
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
    from benchmark.profiling.memory import BYTES_PER_MB, _tensor_bytes

    w.setup()

    def step():
        w.rewind()
        return w.run()

    for _ in range(warmup - 1):
        step()
    activation = peak(step)
    resident = (_tensor_bytes(w.model.parameters()) + _tensor_bytes(w.model.buffers()) + _tensor_bytes(w.inputs)
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

        from benchmark.profiling.latency import TORCH_DTYPES

        with torch.no_grad():
            return self.net.extract_dense(arch).to(TORCH_DTYPES[dtype]).eval().requires_grad_(False)


class _HostLoss:
    """The supernet on the device, seen by :func:`benchmark.profiling.perplexity.measure_perplexity`
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


# --------------------------------------------------------------------------- the run
@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``'s first signal) ends the run like Ctrl-C: the writers flush what they hold."""
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        old = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass
class RunOptions:
    """How every setting is measured (see the module docstring); validated on construction."""

    seed: int = 0
    warmup: int = 1
    repeats: int = 10
    decode_tokens: int = GPU_DECODE_TOKENS
    min_window_s: float = MIN_ENERGY_WINDOW_S
    energy_windows: int = 1
    ppl_check: int = 3
    eval_tokens: int = 65536
    reference_every: int = 100
    flush_s: float = 20.0

    def __post_init__(self) -> None:
        for what, lo in (("seed", 0), ("warmup", 1), ("repeats", 10), ("decode_tokens", 1), ("energy_windows", 1),
                         ("ppl_check", 0), ("eval_tokens", 1), ("reference_every", 1)):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"invalid {what}: {v!r}; allowed: an integer >= {lo}")
        if not self.min_window_s >= MIN_ENERGY_WINDOW_S:
            raise ValueError(f"invalid min_window_s: {self.min_window_s!r}; allowed: >= {MIN_ENERGY_WINDOW_S} s")


class _Run:
    """The state of one run: the device, its id and provenance, clocks, counter and budget."""

    def __init__(self, out_dir: Path, budget: Budget, opts: RunOptions, device: str, dry_run: bool, checkpoint,
                 data_dir, quiet: bool):
        import torch

        from benchmark.paths import data_dir as default_data_dir
        from benchmark.profiling.devices import host_provenance, local_device_id
        from benchmark.profiling.energy import EnergyUnavailable, NvmlCounter, energy_counter
        from benchmark.profiling.latency import _timer

        if dry_run:
            dev = torch.device("cpu")
        else:
            if not torch.cuda.is_available():
                raise ValueError(f"invalid device: {device!r}; CUDA is not available here (--dry-run-cpu exercises "
                                 f"the run on the CPU)")
            dev = torch.device(device)
            if dev.type != "cuda":
                raise ValueError(f"invalid device: {device!r}; allowed: cuda or cuda:<i> (or --dry-run-cpu)")
            dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
            torch.cuda.set_device(dev)
        self.out_dir, self.budget, self.opts, self.dev, self.dry_run, self.quiet = out_dir, budget, opts, dev, dry_run, quiet
        self.ddir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.ckpt = Path(checkpoint) if checkpoint is not None else self.ddir / "supernet_t.safetensors"
        self.counter = energy_counter(dev)
        self.energy_reason = self.counter.reason if isinstance(self.counter, EnergyUnavailable) else None
        # NVML's handle for the clock and power readings (the counter already found the right GPU)
        self.nvml = (self.counter._nvml, self.counter._handle) if isinstance(self.counter, NvmlCounter) else None
        self.host = host_provenance(dev)
        self.device_id = (DRY_RUN_PREFIX + local_device_id(dev).removeprefix("cpu-") if dry_run
                          else measured_device_id(str(self.host["gpu_name"])))
        self.static = nvml_static(*self.nvml) if self.nvml else {}
        self.timer, self.peak = _timer(dev), _activation_peak(dev)
        self.sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        self.tiers: dict[str, dict] = {}

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def state(self, rows: int, tier: str) -> dict[str, Any]:
        return {"unix_time": time.time(), "rows": rows, "tier": tier, **(nvml_state(*self.nvml) if self.nvml else {})}

    def energy(self, step: Callable[[], Any], unit_s: float) -> list[EnergyWindow]:
        return [energy_window(step, self.sync, self.counter.read_mj, time.perf_counter, self.opts.min_window_s, unit_s)
                for _ in range(self.opts.energy_windows)]

    def measure(self, src: SupernetWeights, arch, settings, energy: bool) -> dict[str, dict]:
        """Every setting of ``settings`` (grouped by dtype: one model per dtype) for one architecture:
        ``{setting name: SettingResult}`` and the Unix time each setting started."""
        import torch

        from benchmark.profiling.latency import _no_gc, prepare

        results, when = {}, {}
        for dtype in dict.fromkeys(s.dtype for s in settings):
            model = src.model(arch, dtype)
            with torch.inference_mode(), _no_gc():
                for s in (s for s in settings if s.dtype == dtype):
                    wl = prepare(arch, s, self.dev, self.opts.seed, model=model, decode_tokens=self.opts.decode_tokens)
                    when[s.name] = time.time()
                    results[s.name] = measure_setting(wl, self.opts.warmup, self.opts.repeats, self.timer, self.peak,
                                                      self.energy if energy else None)
                    del wl
            del model
        return {"results": results, "when": when}

    def tier(self, tier: Tier, src: SupernetWeights) -> dict[str, Any]:
        """Measure one tier into its shard, row by row, while the budget allows."""
        from benchmark.release import sha256_file
        from benchmark.table import Setting, TableWriter

        o, dev_id, path = self.opts, self.device_id, self.out_dir / tier.shard
        attrs = {}
        if tier.weights == "trained":
            attrs = {"supernet_sha256": sha256_file(self.ckpt),
                     "tokenizer_sha256": sha256_file(self.ddir / "tokenizer.json")}
        protocol = _protocol(self.dev.type, o.warmup, o.repeats, o.decode_tokens, o.min_window_s, o.energy_windows,
                             tier.weights, o.seed)
        prov = device_provenance(self.host, self.static, protocol, dev_id, self.dry_run)
        settings = [Setting.parse(s) for s in tier.setting_names()]
        t_start = self.budget.elapsed()
        info = {"shard": tier.shard, "planned": len(tier.archs), "rows": 0, "measured_now": 0, "energy_rows_now": 0}
        self.tiers[tier.name] = info  # the summary holds what was done even when the run is interrupted
        with TableWriter(path, tier.space, attrs=attrs, flush_every=None) as w:
            try:
                self._fill(w, tier, src, settings, prov, info)
            finally:
                info["rows"] = len(w)
                info["seconds"] = round(self.budget.elapsed() - t_start, 1)
                info["seconds_per_row"] = round(info["seconds"] / max(info["measured_now"], 1), 4)
        self.log(f"[{tier.name}] {info['rows']}/{len(tier.archs)} rows in {path} ({info['measured_now']} now, "
                 f"{info['seconds']} s)")
        return info

    def _fill(self, w, tier: Tier, src: SupernetWeights, settings: list, prov: dict, info: dict) -> None:
        o, dev_id = self.opts, self.device_id
        energy_ok = self.energy_reason is None
        try:
            w.declare_device(dev_id, source="measured", provenance=prov, kind=prov["kind"])
        except ValueError as e:
            raise ValueError(f"cannot resume {w.path}: {e} (a shard is resumed only on the machine and with the "
                             f"protocol that started it; write to a new --out)") from None
        for s in settings:
            extra = {"decode_tokens": o.decode_tokens} if s.mode == "decode" else {}
            w.declare_setting(dev_id, s, warmup=o.warmup, repeats=o.repeats, energy_every=tier.energy_every,
                              energy_min_window_s=o.min_window_s, **extra)
            w.declare_hardware_metric(dev_id, s, "latency_ms", unit="ms", repeats=o.repeats)
            w.declare_hardware_metric(dev_id, s, "memory_mb", unit="MB", repeats=1)
            w.declare_hardware_metric(
                dev_id, s, "energy_mj", unit="mJ", repeats=o.energy_windows,
                missing_reason=self.energy_reason or f"measured on every {tier.energy_every}-th architecture of "
                                                     f"the run's order only (time budget); NaN elsewhere")
        todo = [(i, a) for i, a in enumerate(tier.archs) if a not in w]
        info["already"] = len(tier.archs) - len(todo)
        load = self.host.get("load_avg_1m")
        w.log(LOGS["runs"], {"unix_time": time.time(), "date_utc": str(self.host.get("date_utc", "")),
                             "load_avg_1m": float("nan") if load is None else float(load), "rows": len(w),
                             "tier": tier.name, "budget_left_s": self.budget.left()})
        if not todo:
            return
        self.log(f"[{tier.name}] {len(todo)} of {len(tier.archs)} architectures to measure -> {w.path}")

        def references() -> None:
            sp, first = tier.archs[0].search_space, settings[0]
            for ref in (sp.largest(), sp.smallest()):
                ms = self.measure(src, ref, [first], energy=False)["results"][first.name].latency_ms
                w.log(LOGS["reference"], {"arch": ref.id, "setting": first.name, "unix_time": time.time(),
                                          "rows": len(w), "median_ms": float(np.median(ms))})
            w.log(LOGS["state"], self.state(len(w), tier.name))

        # process warm-up (CUDA context, cuBLAS workspaces, every setting's kernels) before anything is stored:
        # the first row's memory peak would otherwise hold one-time allocations
        self.measure(src, todo[0][1], settings, energy=False)
        references()
        if tier.weights == "trained" and o.ppl_check > 0:
            self.perplexity_check(w, tier, src)
        w.flush()
        last_flush = self.budget.elapsed()
        for i, arch in todo:
            kind = (tier.name, energy_ok and i % tier.energy_every == 0)
            if not self.budget.allows(kind):
                break
            t0 = self.budget.elapsed()
            m = self.measure(src, arch, settings, energy=kind[1])
            hw = {}
            for name, r in m["results"].items():
                hw[(dev_id, name, "latency_ms")] = r.latency_ms
                hw[(dev_id, name, "memory_mb")] = [r.memory_mb]
                if r.energy:
                    hw[(dev_id, name, "energy_mj")] = [e.energy_mj for e in r.energy]
            w.append(arch, hardware=hw, measured_at={(dev_id, n): t for n, t in m["when"].items()})
            for name, r in m["results"].items():
                for e in r.energy:
                    w.log(LOGS["energy"], {"arch": arch.id, "setting": name, "runs": e.runs,
                                           "window_s": e.window_s, "energy_mj": e.energy_mj})
            self.budget.record(kind, self.budget.elapsed() - t0)
            info["measured_now"] += 1
            info["energy_rows_now"] += int(kind[1])
            if info["measured_now"] % o.reference_every == 0:
                references()
            if self.budget.elapsed() - last_flush >= o.flush_s:
                w.flush()
                last_flush = self.budget.elapsed()


    def perplexity_check(self, w, tier: Tier, src: SupernetWeights) -> None:
        """Perplexity of the space's largest and smallest and the tier's first architectures with the
        supernet on the device (fp32), logged for the ingest step to compare with the release's CPU values."""
        from benchmark.profiling.perplexity import measure_perplexity
        from benchmark.supernet.corpus import load_split

        tokens = np.asarray(load_split("test", self.ddir))
        sp = tier.archs[0].search_space
        picks = list({a.id: a for a in (sp.largest(), sp.smallest(), *tier.archs[:self.opts.ppl_check])}.values())
        for arch in picks[: self.opts.ppl_check]:
            t0 = time.perf_counter()
            r = measure_perplexity(_HostLoss(src.net, self.dev), arch, tokens, max_tokens=self.opts.eval_tokens)
            w.log(LOGS["perplexity"], {"arch": arch.id, "perplexity": r.perplexity, "token_accuracy": r.token_accuracy,
                                       "tokens": r.tokens, "dtype": "fp32", "unix_time": time.time()})
            self.log(f"[{tier.name}] perplexity of {arch.id} on {self.dev}: {r.perplexity:.4f} "
                     f"({time.perf_counter() - t0:.1f} s)")


def run_plan(plan: Sequence[Tier], out_dir, *, budget_s: float, device: str = "cuda", dry_run_cpu: bool = False,
             options: RunOptions | None = None, checkpoint=None, data_dir=None,
             clock: Callable[[], float] = time.monotonic, quiet: bool = False) -> dict[str, Any]:
    """Measure ``plan`` into one shard per tier under ``out_dir`` within ``budget_s`` seconds of wall
    clock (see the module docstring); returns the summary, also written to ``out_dir/summary.json``.
    Rerunning with the same ``out_dir`` on the same machine resumes every shard."""
    import torch

    threads = torch.get_num_threads()
    if dry_run_cpu:
        torch.set_num_threads(1)  # the dry run exercises the logic; one thread stays fast on a shared CPU
    try:
        return _run_plan(plan, Path(out_dir), budget_s, device, dry_run_cpu, options or RunOptions(), checkpoint,
                         data_dir, clock, quiet)
    finally:
        torch.set_num_threads(threads)


def _run_plan(plan, out_dir: Path, budget_s, device, dry_run_cpu, opts, checkpoint, data_dir, clock, quiet):
    from benchmark.profiling.latency import device_lock

    budget = Budget(budget_s, clock)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(out_dir, budget, opts, device, dry_run_cpu, checkpoint, data_dir, quiet)
    summary: dict[str, Any] = {"device_id": run.device_id, "device": str(run.dev), "dry_run": dry_run_cpu,
                               "gpu_name": run.host.get("gpu_name"), "budget_s": budget_s, "tiers": {},
                               "energy": run.energy_reason or "measured", "stopped": None}
    run.log(f"profile_gpu: {run.device_id} on {run.dev}; plan {[(t.name, len(t.archs)) for t in plan]}; "
            f"budget {budget_s} s")
    weights: dict[tuple, SupernetWeights] = {}
    with _sigterm_as_interrupt(), device_lock(run.dev):
        try:
            for tier in plan:
                if budget.stopped or not tier.archs:
                    continue
                if not budget.allows(("start", tier.name), extra_s=TIER_START_S):
                    break
                key = (tier.weights, tier.space)
                if key not in weights:
                    weights.clear()  # one supernet on the device at a time
                    weights[key] = (SupernetWeights.trained(tier.space, run.ckpt, run.dev) if tier.weights == "trained"
                                    else SupernetWeights.random(tier.space, opts.seed, run.dev))
                run.tier(tier, weights[key])
        except KeyboardInterrupt as e:
            summary["stopped"] = f"interrupted ({e})"
    summary["tiers"] = run.tiers
    summary["stopped"] = summary["stopped"] or budget.stopped or "plan complete"
    summary["elapsed_s"] = round(budget.elapsed(), 1)
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    tmp.replace(out_dir / "summary.json")
    return summary


# --------------------------------------------------------------------------- the estimate
@functools.lru_cache(maxsize=None)
def _op_counts(space: str, mode: str) -> dict[int, int]:
    """Operators dispatched by one forward of the dense model, per number of layers (counted on the
    meta device: the same Python and dispatcher path as on a GPU, no data)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from benchmark.model import GPT
    from benchmark.spaces import get_space

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    sp = get_space(space)
    out = {}
    for n_layer in sp.n_layer_choices:
        arch = sp.arch(max(sp.embed_dim_choices), n_layer, max(sp.n_head_choices), max(sp.mlp_ratio_choices), True)
        with torch.device("meta"):
            model = GPT(arch)
        with torch.inference_mode():
            if mode == "prefill":
                x, cache = torch.zeros(1, 8, dtype=torch.long, device="meta"), None
            else:
                x, cache = torch.zeros(1, 1, dtype=torch.long, device="meta"), model.new_cache(1, 16)
                cache.pos = 8
            Count.n = 0
            with Count():
                model(x, cache)
        out[n_layer] = Count.n
    return out


def estimate_plan(plan: Sequence[Tier], *, op_s: float = 10e-6, warmup: int = 1, repeats: int = 10,
                  decode_tokens: int = GPU_DECODE_TOKENS, min_window_s: float = MIN_ENERGY_WINDOW_S,
                  energy_windows: int = 1, prep_s: dict[str, float] | None = None, startup_s: float = 30.0,
                  spec: str = "gpu-h200-sxm-141gb") -> dict[str, Any]:
    """Expected seconds of each tier on the GPU: per run, the larger of the host's dispatch time
    (operators dispatched x ``op_s``) and the device's roofline time (the registry spec at 60 % of
    tensor peak and 75 % of HBM bandwidth, no overhead); runs per setting = warm-up + repeats (+ one
    context prefill for decode); energy windows on every ``energy_every``-th row; ``prep_s`` per
    architecture and dtype (slicing the supernet, building inputs) per space; ``startup_s`` once."""
    from benchmark.profiling.roofline import RooflineParams, predict

    prep_s = prep_s or {"t": 0.005, "s": 0.015}
    floor = RooflineParams(eff_compute=0.6, eff_memory=0.75, overhead_s=1e-9)
    ops = {}
    out: dict[str, Any] = {"op_s": op_s, "startup_s": startup_s, "tiers": {}}
    total = startup_s
    for tier in plan:
        archs = list(tier.archs)
        if not archs:
            continue
        for mode in ("prefill", "decode"):
            ops.setdefault((tier.space, mode), _op_counts(tier.space, mode))
        n_layers = np.array([a.n_layer for a in archs])
        seconds = 0.0
        for name in tier.setting_names():
            mode = name.split("-", 1)[0]
            host = np.vectorize(ops[(tier.space, mode)].get)(n_layers) * op_s
            gpu = predict(archs, name, spec, floor, decode_tokens=decode_tokens).latency_ms / 1e3
            per_run = np.maximum(host, gpu)
            runs = warmup + repeats
            if mode == "decode":
                ctx = predict(archs, name.replace("decode", "prefill", 1), spec, floor).latency_ms / 1e3
                seconds += float(np.sum(runs * decode_tokens * per_run + np.maximum(
                    ctx, np.vectorize(ops[(tier.space, "prefill")].get)(n_layers) * op_s)))
            else:
                seconds += float(np.sum(runs * per_run))
        n_energy = len(range(0, len(archs), tier.energy_every))
        energy = n_energy * len(tier.setting_names()) * energy_windows * min_window_s * 1.05
        prep = len(archs) * len(tier.dtypes) * prep_s[tier.space]
        t = seconds + energy + prep
        out["tiers"][tier.name] = {"rows": len(archs), "timing_s": round(seconds, 1), "energy_rows": n_energy,
                                   "energy_s": round(energy, 1), "prep_s": round(prep, 1), "total_s": round(t, 1),
                                   "per_row_s": round(t / len(archs), 4)}
        total += t
    out["total_s"] = round(total, 1)
    return out


# --------------------------------------------------------------------------- CLI
def build_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="profile_gpu.py", description="Measure the release's t architectures, then a seeded s sample, on a CUDA "
        "GPU within a wall-clock budget, into resumable HDF5 shards (docs/profiling.md).")
    p.add_argument("--out", default=None, help="directory of the shards and summary.json (e.g. $OUT); required "
                                               "unless --estimate")
    p.add_argument("--budget-s", type=float, default=500.0,
                   help="wall-clock seconds the run may take, start-up included (default 500)")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--dry-run-cpu", action="store_true",
                   help="run the same logic on the CPU with tiny settings (device id dryrun-cpu-...; not a GPU "
                        "measurement, never merged into a release)")
    p.add_argument("--tiers", nargs="+", default=["t", "s-bf16", "s-fp16"], choices=["t", "s-bf16", "s-fp16"],
                   help="tiers in priority order (default: t s-bf16 s-fp16)")
    p.add_argument("--t-n", type=int, default=None, help="measure only the first N t architectures (default all)")
    p.add_argument("--s-n", type=int, default=500, help="size of the seeded s sample (default 500)")
    p.add_argument("--seed", type=int, default=0, help="order, s sample, random weights and tokens (default 0)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per setting, the last measures memory (default 1)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs stored per setting, >= 10 (default 10)")
    p.add_argument("--decode-tokens", type=int, default=GPU_DECODE_TOKENS,
                   help=f"decode steps per run (default {GPU_DECODE_TOKENS})")
    p.add_argument("--energy-every-t", type=int, default=50, help="energy on every k-th t row (default 50)")
    p.add_argument("--energy-every-s", type=int, default=10, help="energy on every k-th s row (default 10)")
    p.add_argument("--energy-window-s", type=float, default=MIN_ENERGY_WINDOW_S,
                   help=f"minimum counter window in seconds (default {MIN_ENERGY_WINDOW_S})")
    p.add_argument("--energy-windows", type=int, default=1, help="windows per setting on energy rows (default 1)")
    p.add_argument("--ppl-check", type=int, default=3, help="t rows whose perplexity is re-measured on the device "
                                                            "(default 3)")
    p.add_argument("--eval-tokens", type=int, default=65536,
                   help="test tokens of each perplexity check (default 65536, as in the release)")
    p.add_argument("--release", default=None, help="table whose t ids are measured (default data/table_t.h5)")
    p.add_argument("--checkpoint", default=None, help="t supernet (default data/supernet_t.safetensors)")
    p.add_argument("--data-dir", default=None, help="tokenizer and test split (default data)")
    p.add_argument("--estimate", action="store_true", help="print the expected seconds of the plan and exit")
    p.add_argument("--op-us", type=float, default=10.0, help="--estimate: host microseconds per operator (default 10)")
    p.add_argument("--quiet", action="store_true", help="only the one-line summary")
    return p


def summary_line(s: dict[str, Any]) -> str:
    tiers = "; ".join(f"{n}: {v['rows']}/{v['planned']} rows ({v['measured_now']} now, energy {v['energy_rows_now']}) "
                      f"-> {v['shard']}" for n, v in s["tiers"].items())
    return (f"profile_gpu: {s['device_id']}{' (CPU DRY RUN)' if s['dry_run'] else ''}; {tiers or 'nothing measured'}; "
            f"{s['elapsed_s']} s of {s['budget_s']} s; stopped: {s['stopped']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None and not args.estimate:
        parser.error("the following arguments are required: --out")
    from benchmark.paths import data_dir

    release = Path(args.release) if args.release else data_dir() / "table_t.h5"
    try:
        plan = default_plan(release, seed=args.seed, t_n=args.t_n, s_n=args.s_n, energy_every_t=args.energy_every_t,
                            energy_every_s=args.energy_every_s, tiers=args.tiers, dry_run=args.dry_run_cpu)
        if args.estimate:
            e = estimate_plan(plan, op_s=args.op_us * 1e-6, warmup=args.warmup, repeats=args.repeats,
                              decode_tokens=args.decode_tokens, min_window_s=args.energy_window_s,
                              energy_windows=args.energy_windows)
            print(json.dumps(e, indent=1))
            return 0
        opts = RunOptions(seed=args.seed, warmup=args.warmup, repeats=args.repeats, decode_tokens=args.decode_tokens,
                          min_window_s=args.energy_window_s, energy_windows=args.energy_windows,
                          ppl_check=args.ppl_check, eval_tokens=args.eval_tokens)
        s = run_plan(plan, args.out, budget_s=args.budget_s, device=args.device, dry_run_cpu=args.dry_run_cpu,
                     options=opts, checkpoint=args.checkpoint, data_dir=args.data_dir, quiet=args.quiet)
    except ValueError as e:
        print(f"profile_gpu.py: error: {e}", file=sys.stderr)
        return 2
    print(summary_line(s))
    return 0
