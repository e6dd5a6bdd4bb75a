"""Measured peak memory of one inference at a setting.

Units: ``memory_mb`` is in MB of **2**20 bytes** (:data:`BYTES_PER_MB`; what ``torch.cuda``'s
memory summary and ``nvidia-smi`` print as MiB/MB, and what HW-GPT-Bench divided by). All byte
counts are exact integers.

What "one inference" is
    * ``prefill``: one forward of ``batch x seq_len`` tokens without a cache (as latency times it).
    * ``decode``: one single-token forward on a KV cache that already holds ``seq_len`` tokens
      (the cache is allocated for ``seq_len + 1`` positions and filled, untimed and unmeasured,
      before the measured step). The prefill's own peak is the prefill setting's metric.

What is reported (:class:`MemoryResult`)
    ``peak_bytes = weight_bytes + other_resident_bytes + kv_cache_bytes + activation_bytes`` where
    ``weight_bytes`` are the parameters (equal to ``benchmark.costs.weight_bytes``),
    ``other_resident_bytes`` the model's buffers (rotary tables) and the input token ids,
    ``kv_cache_bytes`` the cache (decode only; ``benchmark.costs.kv_cache_bytes``) and
    ``activation_bytes`` the **peak of transient tensor bytes alive at once** during the measured
    forward (everything allocated during it, including the logits it returns, at the moment when
    most is alive). Tensors of the process that are not part of this inference (other models,
    leftovers) are excluded on both devices.

CUDA method
    ``torch.cuda.reset_peak_memory_stats``; ``base = torch.cuda.memory_allocated()`` with the
    model, inputs and cache in place; run; ``activation_bytes = max_memory_allocated() - base``.
    This is the caching allocator's count of bytes in allocated blocks (block-rounded to 512 B),
    i.e. what tensors occupy — not the reserved pool, not the CUDA context.

CPU method (allocator events)
    PyTorch's CPU allocator reports every allocation and free to the profiler when
    ``torch.profiler.profile(activities=[CPU], profile_memory=True)`` is active (c10's
    ``ProfiledCPUMemoryReporter``): each event carries the signed byte count and a nanosecond
    timestamp. We profile exactly the measured forward, sort its allocator events by time, and
    take the maximum of their running sum: the peak of bytes allocated during the forward and
    still alive — the same quantity CUDA's ``max_memory_allocated - base`` measures, from the same
    layer (tensor storage allocations through c10's allocator), exact to the byte, independent of
    glibc's caching of freed pages and of everything else in the process (unlike RSS). Frees of
    blocks allocated before profiling are not reported as events, so they cannot make the sum
    negative. One warm-up forward runs first, so one-time lazy initialisation is not counted.
    Not seen (on either device): memory that libraries allocate outside PyTorch's allocator
    (BLAS/oneDNN packing buffers, OpenMP thread stacks) and interpreter overhead — they are small
    next to the tensors and do not depend on the architecture in a way the benchmark compares.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from benchmark.model import GPT
from benchmark.profiling.latency import device_lock, prepare
from benchmark.spaces import Architecture

__all__ = ["BYTES_PER_MB", "MemoryResult", "cpu_peak_bytes", "measure_memory"]

BYTES_PER_MB = 2**20


@dataclass(frozen=True)
class MemoryResult:
    """Peak memory of one inference and its parts, in bytes; ``source`` is always ``"measured"``."""

    peak_bytes: int
    weight_bytes: int
    other_resident_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    device: str
    setting: str
    method: str
    source: str = "measured"

    @property
    def memory_mb(self) -> float:
        """Peak in MB of 2**20 bytes — the benchmark's ``memory_mb``."""
        return self.peak_bytes / BYTES_PER_MB

    @property
    def activation_mb(self) -> float:
        return self.activation_bytes / BYTES_PER_MB

    def as_dict(self) -> dict[str, Any]:
        return {"memory_mb": self.memory_mb, "activation_mb": self.activation_mb, "peak_bytes": self.peak_bytes,
                "weight_bytes": self.weight_bytes, "other_resident_bytes": self.other_resident_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "activation_bytes": self.activation_bytes,
                "device": self.device, "setting": self.setting, "method": self.method, "source": self.source}


_KINETO_BANNERS = (b"USDT:", b"STAGE:")


@contextlib.contextmanager
def _without_kineto_banners():
    """Drop the ``USDT: ... profiler_start/stop`` lines that kineto's C++ code writes to file
    descriptor 2 on every profiler start and stop (two per architecture and setting: they bury
    the progress bar and fill logs). Everything else written to stderr meanwhile is passed on."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured or replaced sys.stderr
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True) if not ln.startswith(_KINETO_BANNERS)]
            if kept:
                os.write(fd, b"".join(kept))


def cpu_peak_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``fn()`` once under the PyTorch profiler and return ``(peak, result)``: ``peak`` is the
    maximum over time of the bytes allocated through PyTorch's CPU allocator during the call and
    not yet freed (0 if nothing was allocated). ``result`` is what ``fn`` returned (it is freed
    after the profiler stops, so the bytes it holds count as alive at the end)."""
    from torch.profiler import ProfilerActivity, profile

    with _without_kineto_banners():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False,
                     with_stack=False) as prof:
            result = fn()
    cpu = torch.autograd.DeviceType.CPU
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == cpu]
    if not events:
        return 0, result
    events.sort(key=lambda t: t[0])
    running = np.cumsum(np.fromiter((b for _, b in events), dtype=np.int64, count=len(events)))
    return int(max(0, running.max())), result


def tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total


def measure_memory(arch: Architecture, setting: Any, device: Any = "cpu", seed: int = 0, *,
                   model: GPT | None = None, lock: bool = True, lock_timeout: float | None = None) -> MemoryResult:
    """Measured peak memory of one inference of ``arch`` at ``setting`` on ``device`` (see the
    module docstring for the method per device). Holds the device lock (as latency does): on CUDA
    the other processes' work does not change this process's allocator counts, but it can make
    an allocation fail; on CPU the profiler's overhead would disturb a concurrent timing."""
    w = prepare(arch, setting, device, seed, model, decode_tokens=1)
    dev = w.device
    weight_bytes = tensor_bytes(w.model.parameters())
    other = tensor_bytes(w.model.buffers()) + tensor_bytes(w.inputs)
    kv_bytes = w.cache.nbytes() if w.cache is not None else 0
    lock_cm = device_lock(dev, lock_timeout) if lock else contextlib.nullcontext()
    with torch.inference_mode(), lock_cm:
        # warm-up: one-time lazy initialisation is not part of the inference's peak
        w.setup()
        w.run()
        w.setup()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            out = w.run()
            torch.cuda.synchronize(dev)
            activation = int(torch.cuda.max_memory_allocated(dev) - base)
            del out
            method = "cuda max_memory_allocated - memory_allocated before the forward"
        else:
            activation, out = cpu_peak_bytes(w.run)
            del out
            method = "cpu allocator events (torch.profiler profile_memory): peak of the running sum"
    peak = weight_bytes + other + kv_bytes + activation
    return MemoryResult(int(peak), int(weight_bytes), int(other), int(kv_bytes), int(activation),
                        str(dev), w.setting.name, method)
