"""Profiling: how hardware metrics are measured, and how unmeasured devices are modeled.

Measurement layer (every value it returns is ``source="measured"``):

* :mod:`benchmark.profiling.latency` — prefill latency of a batch x sequence setting and decode
  time per token with the KV cache; ``time.perf_counter_ns`` on CPU, CUDA events on GPU;
  warm-up, ``R`` timed repeats (all returned); one measurement per device at a time, enforced
  with an inter-process file lock (:func:`~benchmark.profiling.latency.device_lock`).
* :mod:`benchmark.profiling.memory` — peak bytes of one inference (weights, KV cache, inputs
  and the transient activation peak); CUDA allocator statistics on GPU, allocator-level
  allocation/free events from ``torch.profiler`` on CPU. ``memory_mb`` is in units of 2**20 bytes.
* :mod:`benchmark.profiling.energy` — energy per forward from hardware counters only (NVML's
  total-energy counter, RAPL); where no counter exists the result is
  :class:`~benchmark.profiling.energy.EnergyUnavailable` with the reason, never an estimate.
* :mod:`benchmark.profiling.devices` — the registry of device spec sheets (with sources) and the
  provenance of the machine a measurement runs on (:func:`host_provenance`,
  :func:`local_device_id`).

Model layer (every value it returns is ``source="modeled"``):

* :mod:`benchmark.profiling.roofline` — per-operator roofline latency and a utilisation-based
  power model from spec sheets, calibrated on measured devices.

See ``docs/devices.md``.
"""
