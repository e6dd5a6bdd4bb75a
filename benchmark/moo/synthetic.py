"""A small **synthetic** release for tests and loop benchmarks of the MOO suite — not data.

:func:`write_synthetic_release` writes ``table_<space>.h5`` (and optionally surrogates fitted on it
with :mod:`surrogates.fit`) for ``n`` seeded architectures. Every value is a stated deterministic
function of exact costs (:mod:`benchmark.costs`) plus seeded noise, so tests can check behaviour
without the real (slow to produce) table (:func:`write_table`, which writes the columns, also
builds the tests' table in ``tests/hwtable.py``):

* ``params``, ``flops_<setting>``: exact (source ``exact``);
* ``perplexity`` = ``20 × (params / 3.456e6) ^ -0.5 × exp(0.05 z)`` — **synthetic**, declared
  source ``measured`` only because the schema has no "synthetic" source; the table attribute
  ``synthetic = "yes: values are functions of exact costs plus seeded noise"`` says so;
  ``token_accuracy`` = ``0.6 - 0.1 log10(perplexity)``;
* device ``cpu-test`` (measured, cpu), settings ``prefill-b1-s256-fp32`` and
  ``decode-b1-s128-fp32``: ``latency_ms`` = FLOPs / 2e10 FLOP/s (ms) + 0.05 ms × n_layer, five
  repeats with 3 % log-normal noise; ``memory_mb`` = 1.5 × fp32 weight bytes / 2**20 + 5;
  ``energy_mj`` declared missing ("no energy counter on this CPU");
* device ``gpu-h100-sxm5-80gb`` (modeled, gpu), setting ``prefill-b8-s256-fp16``: ``latency_ms``
  and ``energy_mj`` from the roofline model (:func:`benchmark.profiling.roofline.predict`, its
  default parameters; the provenance holds them as ``hwlm table add-modeled`` writes it, so the
  query API evaluates the model itself for unprofiled architectures), ``memory_mb`` = 1.5 × fp16
  weight bytes / 2**20 + 50 (synthetic; answered by a surrogate), one value each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["write_synthetic_release", "write_table", "CPU_DEVICE", "GPU_DEVICE"]

CPU_DEVICE = "cpu-test"
GPU_DEVICE = "gpu-h100-sxm5-80gb"
CPU_SETTINGS = ("prefill-b1-s256-fp32", "decode-b1-s128-fp32")
GPU_SETTING = "prefill-b8-s256-fp16"
REPEATS = 5


def write_table(path: str | Path, space: str, archs: Sequence, *, attrs: Mapping[str, Any],
                metrics: Mapping[str, tuple[np.ndarray, Mapping[str, Any]]], devices: Mapping[str, Mapping[str, Any]],
                settings: Mapping[tuple[str, str], Mapping[str, Any]],
                hardware: Mapping[tuple[str, str, str], tuple[np.ndarray | None, Mapping[str, Any]]]) -> Path:
    """Write (or resume) a table of precomputed columns, one row per architecture: the one builder of synthetic
    tables (this module's release, the tests' table). ``metrics``: ``{name: (values (N,), declaration)}``;
    ``devices``: ``{device: declare_device arguments}``; ``settings``: ``{(device, setting): attributes}``;
    ``hardware``: ``{(device, setting, metric): (repeats (N, R) or None when declared missing, declaration)}``."""
    from benchmark.table import TableWriter

    path = Path(path)
    with TableWriter(path, space, attrs=dict(attrs), flush_every=None) as w:
        for name, (_, decl) in metrics.items():
            w.declare_metric(name, **decl)
        for device, decl in devices.items():
            w.declare_device(device, **decl)
        for (device, setting), setting_attrs in settings.items():
            w.declare_setting(device, setting, **setting_attrs)
        for (device, setting, metric), (_, decl) in hardware.items():
            w.declare_hardware_metric(device, setting, metric, **decl)
        for i, a in enumerate(archs):
            w.append(a, metrics={k: v[i] for k, (v, _) in metrics.items()},
                     hardware={k: v[i] for k, (v, _) in hardware.items() if v is not None})
    return path


def write_synthetic_release(out: str | Path, n: int = 200, seed: int = 0, space: str = "t",
                            surrogates: bool = False) -> Path:
    """Write a synthetic release directory (see the module docstring); returns ``out``."""
    from benchmark import costs
    from benchmark.profiling import roofline
    from benchmark.profiling.devices import get_device
    from benchmark.profiling.modeled import modeled_provenance
    from benchmark.settings import Setting
    from benchmark.spaces import get_space

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    archs = list({a.id: a for a in sp.sample(rng, n=n) + [sp.smallest(), sp.largest()]}.values())
    params = np.asarray(costs.params(archs), dtype=float)
    ppl = 20.0 * (params / 3.456e6) ** -0.5 * np.exp(0.05 * rng.standard_normal(len(archs)))
    acc = 0.6 - 0.1 * np.log10(ppl)
    settings = [Setting.parse(s) for s in CPU_SETTINGS]
    flops = {}
    for s in settings + [Setting.parse(GPU_SETTING)]:
        if s.mode == "prefill":
            flops[s.name] = np.asarray(costs.flops_prefill(archs, batch=s.batch, seq_len=s.seq_len), dtype=float)
        else:
            flops[s.name] = np.asarray(costs.flops_decode(archs, batch=s.batch, context_len=s.seq_len), dtype=float)
    n_layer = np.array([a.n_layer for a in archs], dtype=float)
    # 3 % noise per repeat, drawn row by row and setting by setting
    noise = np.exp(0.03 * rng.standard_normal((len(archs), len(settings), REPEATS)))
    lat = {s.name: (flops[s.name] / 2e10 * 1e3 + 0.05 * n_layer)[:, None] * noise[:, j] for j, s in enumerate(settings)}
    mem_cpu = 1.5 * np.asarray(costs.weight_bytes(archs, dtype="fp32"), dtype=float) / 2**20 + 5
    mem_gpu = 1.5 * np.asarray(costs.weight_bytes(archs, dtype="fp16"), dtype=float) / 2**20 + 50
    gpu_spec, gpu_params = get_device(GPU_DEVICE), roofline.DEFAULT_PARAMS["gpu"]
    gpu = roofline.predict(archs, GPU_SETTING, gpu_spec, gpu_params)

    metrics = {"params": (params, dict(unit="1", source="exact", description="parameters (exact)")),
               "perplexity": (ppl, dict(unit="1", source="measured", description="SYNTHETIC perplexity")),
               "token_accuracy": (acc, dict(unit="1", source="measured", description="SYNTHETIC token accuracy")),
               **{f"flops_{s}": (f, dict(unit="FLOPs", source="exact", description="FLOPs per forward (exact)"))
                  for s, f in flops.items()}}
    devices = {CPU_DEVICE: dict(source="measured", provenance={"synthetic": True, "threads": 2}, kind="cpu"),
               GPU_DEVICE: dict(source="modeled", kind="gpu", provenance=modeled_provenance(
                   gpu_spec, gpu_params, "uncalibrated defaults (synthetic release)", "fp16"))}
    hw_settings = {**{(CPU_DEVICE, s.name): dict(warmup=3, repeats=REPEATS) for s in settings},
                   (GPU_DEVICE, GPU_SETTING): {}}
    hardware: dict = {}
    for s in settings:
        hardware[(CPU_DEVICE, s.name, "latency_ms")] = (lat[s.name], dict(unit="ms", repeats=REPEATS))
        hardware[(CPU_DEVICE, s.name, "memory_mb")] = (mem_cpu[:, None], dict(unit="MB", repeats=1))
        hardware[(CPU_DEVICE, s.name, "energy_mj")] = (None, dict(unit="mJ", repeats=REPEATS,
                                                                  missing_reason="no energy counter on this CPU"))
    for m, unit, v in (("latency_ms", "ms", gpu.latency_ms), ("energy_mj", "mJ", gpu.energy_mj),
                       ("memory_mb", "MB", mem_gpu)):
        hardware[(GPU_DEVICE, GPU_SETTING, m)] = (np.asarray(v, dtype=float)[:, None], dict(unit=unit, repeats=1))
    path = out / f"table_{space}.h5"
    if path.exists():  # a fresh table, not a resumed one
        path.unlink()
    write_table(path, space, archs,
                       attrs={"synthetic": "yes: values are functions of exact costs plus seeded noise",
                              "synthetic_seed": int(seed)},
                       metrics=metrics, devices=devices, settings=hw_settings, hardware=hardware)
    if surrogates:
        from surrogates.fit import fit_table

        fit_table(path, out, seed=seed, nthread=1, progress=False,
                  candidates=[{"max_depth": 4, "eta": 0.3, "num_boost_round": 40}])
    return out
