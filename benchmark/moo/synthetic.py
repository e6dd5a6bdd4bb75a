"""A small **synthetic** release for tests and loop benchmarks of the MOO suite — not data.

:func:`write_synthetic_release` writes ``table_<space>.h5`` (and optionally surrogates fitted on it
with :mod:`surrogates.fit`) for ``n`` seeded architectures. Every value is a stated deterministic
function of exact costs (:mod:`benchmark.costs`) plus seeded noise, so tests can check behaviour
without the real (slow to produce) table:

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

import numpy as np

__all__ = ["write_synthetic_release", "CPU_DEVICE", "GPU_DEVICE"]

CPU_DEVICE = "cpu-test"
GPU_DEVICE = "gpu-h100-sxm5-80gb"
CPU_SETTINGS = ("prefill-b1-s256-fp32", "decode-b1-s128-fp32")
GPU_SETTING = "prefill-b8-s256-fp16"
REPEATS = 5


def write_synthetic_release(out: str | Path, n: int = 200, seed: int = 0, space: str = "t",
                            surrogates: bool = False) -> Path:
    """Write a synthetic release directory (see the module docstring); returns ``out``."""
    from benchmark import costs
    from benchmark.profiling import roofline
    from benchmark.spaces import get_space
    from benchmark.table import Setting, TableWriter

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
    lat = {s.name: flops[s.name] / 2e10 * 1e3 + 0.05 * n_layer for s in settings}
    mem_cpu = 1.5 * np.asarray(costs.weight_bytes(archs, dtype="fp32"), dtype=float) / 2**20 + 5
    mem_gpu = 1.5 * np.asarray(costs.weight_bytes(archs, dtype="fp16"), dtype=float) / 2**20 + 50
    from benchmark.profiling.devices import get_device
    from benchmark.profiling.modeled import modeled_provenance

    gpu_spec, gpu_params = get_device(GPU_DEVICE), roofline.DEFAULT_PARAMS["gpu"]
    gpu = roofline.predict(archs, GPU_SETTING, gpu_spec, gpu_params)
    path = out / f"table_{space}.h5"
    if path.exists():
        path.unlink()
    with TableWriter(path, space, attrs={"synthetic": "yes: values are functions of exact costs plus seeded noise",
                                         "synthetic_seed": int(seed)}, flush_every=None) as w:
        w.declare_metric("params", unit="1", source="exact", description="parameters (exact)")
        w.declare_metric("perplexity", unit="1", source="measured", description="SYNTHETIC perplexity")
        w.declare_metric("token_accuracy", unit="1", source="measured", description="SYNTHETIC token accuracy")
        for s in flops:
            w.declare_metric(f"flops_{s}", unit="FLOPs", source="exact", description="FLOPs per forward (exact)")
        w.declare_device(CPU_DEVICE, source="measured", provenance={"synthetic": True, "threads": 2}, kind="cpu")
        for s in settings:
            w.declare_setting(CPU_DEVICE, s, warmup=3, repeats=REPEATS)
            w.declare_hardware_metric(CPU_DEVICE, s, "latency_ms", unit="ms", repeats=REPEATS)
            w.declare_hardware_metric(CPU_DEVICE, s, "memory_mb", unit="MB", repeats=1)
            w.declare_hardware_metric(CPU_DEVICE, s, "energy_mj", unit="mJ", repeats=REPEATS,
                                      missing_reason="no energy counter on this CPU")
        w.declare_device(GPU_DEVICE, source="modeled", kind="gpu", provenance=modeled_provenance(
            gpu_spec, gpu_params, "uncalibrated defaults (synthetic release)", "fp16"))
        w.declare_setting(GPU_DEVICE, GPU_SETTING)
        for m, unit in (("latency_ms", "ms"), ("energy_mj", "mJ"), ("memory_mb", "MB")):
            w.declare_hardware_metric(GPU_DEVICE, GPU_SETTING, m, unit=unit, repeats=1)
        for i, a in enumerate(archs):
            hw = {}
            for s in settings:
                reps = lat[s.name][i] * np.exp(0.03 * rng.standard_normal(REPEATS))
                hw[(CPU_DEVICE, s.name)] = {"latency_ms": reps, "memory_mb": [mem_cpu[i]]}
            hw[(GPU_DEVICE, GPU_SETTING)] = {"latency_ms": [gpu.latency_ms[i]], "energy_mj": [gpu.energy_mj[i]],
                                             "memory_mb": [mem_gpu[i]]}
            w.append(a, metrics={"params": params[i], "perplexity": ppl[i], "token_accuracy": acc[i],
                                 **{f"flops_{s}": flops[s][i] for s in flops}}, hardware=hw)
    if surrogates:
        from surrogates.fit import fit_table

        fit_table(path, out, seed=seed, nthread=1, progress=False,
                  candidates=[{"max_depth": 4, "eta": 0.3, "num_boost_round": 40}])
    return out
