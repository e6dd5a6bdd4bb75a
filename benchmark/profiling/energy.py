"""Measured energy per forward, from hardware energy counters only.

Counters
    * NVIDIA GPUs: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since
      the driver was loaded; Volta and newer). It covers the whole board.
    * CPUs: RAPL through Linux powercap, ``/sys/class/powercap/intel-rapl:<n>/energy_uj`` (µJ; the
      ``intel-rapl`` driver also serves AMD Zen packages). We sum the top-level **package** zones
      (``name`` = ``package-<n>``) — sub-zones (core, uncore, dram) are inside or beside them and
      ``psys`` contains them, so adding those would double count; DRAM energy is not included.
      The counter wraps at ``max_energy_range_uj``; a reading lower than the previous one is
      corrected by adding that range (one wrap per read interval at most, which holds for read
      intervals far below the wrap time of minutes to hours).
    Nothing else. Where no counter can be read (no NVML driver, a pre-Volta GPU, no RAPL files,
    ``energy_uj`` readable only by root, as is usual since CVE-2020-8694), the result is
    :class:`EnergyUnavailable` with the reason — never an estimate from TDP or utilisation
    (that is the roofline model's job, and it is labelled ``modeled``).

Protocol (:func:`measure_energy`)
    Warm-up, then ``repeats`` times: read the counter, run ``n`` forwards back to back (``n``
    chosen once from a timing probe so that a repeat lasts at least ``min_seconds``, because the
    counters update every few to tens of ms), synchronise, read again; the repeat's value is the
    counter delta divided by ``n``, in mJ per forward (per decoded token for decode settings).
    The device lock is held throughout (:func:`benchmark.profiling.latency.device_lock`): the
    counters are device-wide, so concurrent work would be billed to this measurement. The
    reading is total device (package/board) energy, idle power included — nothing is subtracted.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmark.model import GPT
from benchmark.profiling.latency import (DEFAULT_DECODE_TOKENS, DEFAULT_REPEATS, DEFAULT_WARMUP, check_counts,
                                         as_torch_device, gc_paused, torch_threads, device_lock, prepare)
from benchmark.spaces import Architecture

__all__ = ["EnergyUnavailable", "EnergyResult", "RaplCounter", "NvmlCounter", "energy_counter", "measure_energy",
           "RAPL_ROOT"]

RAPL_ROOT = "/sys/class/powercap"


@dataclass(frozen=True)
class EnergyUnavailable:
    """No hardware energy counter for this device; ``reason`` says why. The metric is missing."""

    device: str
    reason: str
    source: str = "unavailable"

    def __bool__(self) -> bool:  # `if result:` reads as "got a measurement"
        return False


@dataclass(frozen=True)
class EnergyResult:
    """Energy per forward in mJ, one value per repeat (``source="measured"``)."""

    energy_mj: np.ndarray = field(compare=False)
    forwards_per_repeat: int
    counter: str
    device: str
    setting: str
    source: str = "measured"


class RaplCounter:
    """Sum of the RAPL package zones under ``root`` (default ``/sys/class/powercap``), in mJ,
    monotone across wrap-arounds. Construct with :meth:`open`, which raises ``OSError`` with a
    reason when no zone can be read."""

    name = "rapl"

    def __init__(self, zones: list[tuple[str, int]]):
        self._zones = zones  # (energy_uj path, max_energy_range_uj)
        self._last = [self._read_raw(p) for p, _ in zones]
        self._total_uj = 0

    @classmethod
    def open(cls, root: str = RAPL_ROOT) -> "RaplCounter":
        dirs = sorted(glob.glob(os.path.join(root, "intel-rapl:*")))
        top = [d for d in dirs if os.path.basename(d).count(":") == 1]  # intel-rapl:N, not intel-rapl:N:M
        if not top:
            raise OSError(f"no RAPL powercap zones ({root}/intel-rapl:* absent; no RAPL driver or not exposed "
                          f"to this machine)")
        zones, problems = [], []
        for d in top:
            try:
                with open(os.path.join(d, "name")) as f:
                    zname = f.read().strip()
            except OSError as e:
                problems.append(f"{d}/name: {e.strerror or e}")
                continue
            if not zname.startswith("package"):
                continue  # psys / dram at top level: would double count or is not the processor
            path = os.path.join(d, "energy_uj")
            try:
                cls._read_raw(path)
                with open(os.path.join(d, "max_energy_range_uj")) as f:
                    rng = int(f.read().strip())
            except (OSError, ValueError) as e:
                reason = getattr(e, "strerror", None) or str(e)
                problems.append(f"{path}: {reason}")
                continue
            zones.append((path, rng))
        if not zones:
            detail = "; ".join(problems) if problems else "no zone named package-*"
            raise OSError(f"RAPL package energy not readable ({detail})")
        return cls(zones)

    @staticmethod
    def _read_raw(path: str) -> int:
        with open(path) as f:
            return int(f.read().strip())

    def read_mj(self) -> float:
        """Cumulative package energy since this counter was opened, in mJ."""
        for i, (path, rng) in enumerate(self._zones):
            now = self._read_raw(path)
            delta = now - self._last[i]
            if delta < 0:  # wrapped
                delta += rng
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e3

    def describe(self) -> str:
        return f"RAPL package zones {[os.path.dirname(p) for p, _ in self._zones]}"


class NvmlCounter:
    """NVML total-energy counter of one GPU, in mJ (``nvmlDeviceGetTotalEnergyConsumption``)."""

    name = "nvml"

    def __init__(self, pynvml_module, handle, gpu_name: str):
        self._nvml, self._handle, self.gpu_name = pynvml_module, handle, gpu_name

    @classmethod
    def open(cls, device: Any) -> "NvmlCounter":
        dev = torch.device(device)
        try:
            import pynvml
        except ImportError as e:
            raise OSError(f"nvidia-ml-py (pynvml) is not installed: {e}") from None
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVMLError_* (no driver, no library)
            raise OSError(f"NVML could not initialise: {e}") from None
        try:
            handle = cls._handle(pynvml, dev)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as e:  # noqa: BLE001 - e.g. NVMLError_NotSupported on pre-Volta GPUs
            raise OSError(f"NVML total-energy counter not available: {e}") from None
        return cls(pynvml, handle, name)

    @staticmethod
    def _handle(pynvml, dev: torch.device):
        # Prefer the UUID: NVML numbers GPUs by PCI order, CUDA may not (and CUDA_VISIBLE_DEVICES remaps).
        if torch.cuda.is_available():
            idx = dev.index if dev.index is not None else torch.cuda.current_device()
            uuid = getattr(torch.cuda.get_device_properties(idx), "uuid", None)
            if uuid is not None:
                s = str(uuid)
                for cand in (s if s.startswith("GPU-") else f"GPU-{s}", s):
                    try:
                        return pynvml.nvmlDeviceGetHandleByUUID(cand)
                    except Exception:  # noqa: BLE001
                        continue
            return pynvml.nvmlDeviceGetHandleByIndex(idx)
        return pynvml.nvmlDeviceGetHandleByIndex(dev.index or 0)

    def read_mj(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def describe(self) -> str:
        return f"NVML total energy ({self.gpu_name})"


def energy_counter(device: Any = "cpu", rapl_root: str = RAPL_ROOT) -> RaplCounter | NvmlCounter | EnergyUnavailable:
    """The hardware energy counter of ``device``, or :class:`EnergyUnavailable` with the reason."""
    dev = torch.device(device)
    try:
        if dev.type == "cpu":
            return RaplCounter.open(rapl_root)
        if dev.type == "cuda":
            return NvmlCounter.open(dev)
        return EnergyUnavailable(str(dev), f"no supported energy counter for device type {dev.type!r} "
                                           f"(NVML on NVIDIA GPUs, RAPL on CPUs)")
    except OSError as e:
        return EnergyUnavailable(str(dev), str(e))


def measure_energy(arch: Architecture, setting: Any, device: Any = "cpu", warmup: int = DEFAULT_WARMUP,
                   repeats: int = DEFAULT_REPEATS, seed: int = 0, *, min_seconds: float = 1.0,
                   decode_tokens: int = DEFAULT_DECODE_TOKENS, model: GPT | None = None, threads: int | None = None,
                   lock: bool = True, lock_timeout: float | None = None,
                   counter: RaplCounter | NvmlCounter | EnergyUnavailable | None = None
                   ) -> EnergyResult | EnergyUnavailable:
    """Measured energy per forward (mJ; per decoded token for decode settings), ``repeats`` values,
    or :class:`EnergyUnavailable` when the device has no readable counter (checked before any
    model is built). Holds the device lock throughout (the counters are device-wide)."""
    check_counts(warmup, repeats)
    dev = as_torch_device(device)
    counter = energy_counter(dev) if counter is None else counter
    if isinstance(counter, EnergyUnavailable):
        return counter
    w = prepare(arch, setting, dev, seed, model, decode_tokens)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    values = np.empty(int(repeats), dtype=np.float64)
    lock_cm = device_lock(dev, lock_timeout) if lock else contextlib.nullcontext()
    with torch_threads(threads), torch.inference_mode(), lock_cm:
        w.setup()
        for _ in range(max(1, int(warmup))):
            w.rewind()
            w.run()
        sync()
        # timing probe: how many work units make a repeat last at least min_seconds
        w.rewind()
        t0 = time.perf_counter()
        w.run()
        sync()
        unit_s = max(time.perf_counter() - t0, 1e-6)
        n = max(1, math.ceil(float(min_seconds) / unit_s))
        with gc_paused():
            for r in range(int(repeats)):
                w.setup()  # decode: fresh cache + context prefill, outside the counted interval
                sync()
                e0 = counter.read_mj()
                for _ in range(n):
                    w.rewind()
                    w.run()
                sync()
                values[r] = (counter.read_mj() - e0) / (n * w.tokens)
    return EnergyResult(values, n, counter.describe(), str(dev), w.setting.name)
