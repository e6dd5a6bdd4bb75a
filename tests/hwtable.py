"""A real HDF5 table of sampled ``t`` architectures for the surrogate and query-API tests.

THE HARDWARE VALUES ARE SYNTHETIC: every value is a deterministic function of the architecture's
exact costs (``benchmark.costs``) plus seeded noise, so that tests can check that a surrogate
learns it (rank correlation, interval coverage). Nothing here was measured on any device.

* ``perplexity`` = 400 * (params_no_embedding / 1e4) ** -0.35 * lognormal(0, 0.01) — measured-like;
  ``token_accuracy`` = 0.1 + 0.02 * log(params_no_embedding) + normal(0, 0.002);
* ``params``, ``params_no_embedding``, ``flops_<setting>`` — exact;
* device ``cpu-test-2c`` (source ``measured``, cpu), settings ``prefill-b1-s256-fp32`` and
  ``decode-b1-s128-fp32``: ``latency_ms`` (5 repeats) = (0.2 + flops / 2e8 ms (prefill) or
  flops / 2e6 ms (decode)) * lognormal(0, 0.05) per repeat; ``memory_mb`` (1 repeat) = weight MB + 1.5 + normal(0, 0.01); ``energy_mj`` declared
  with 5 repeats and **all NaN** with a ``missing_reason`` (no energy counter);
* device ``gpu-model`` (source ``modeled``, gpu), setting ``prefill-b1-s256-fp16``: ``latency_ms``
  and ``energy_mj`` (1 value each) from the roofline model (``benchmark.profiling.roofline.predict``)
  with the H100 SXM5 spec sheet and the uncalibrated GPU defaults, stored with the provenance
  ``hwlm table add-modeled`` writes (``benchmark.profiling.modeled.modeled_provenance``), so the
  query API can evaluate the model itself for unprofiled architectures.

The first ``n_table`` architectures of ``space.sample(seed, n_table + n_extra)`` go into the table;
the remaining ``n_extra`` are returned as unprofiled architectures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark import costs
from benchmark.profiling.devices import get_device
from benchmark.profiling.modeled import modeled_provenance
from benchmark.profiling.roofline import DEFAULT_PARAMS, predict
from benchmark.spaces import get_space
from benchmark.moo.synthetic import write_table
from surrogates.features import exact_flops

CPU, GPU = "cpu-test-2c", "gpu-model"
PREFILL, DECODE, GPU_SETTING = "prefill-b1-s256-fp32", "decode-b1-s128-fp32", "prefill-b1-s256-fp16"
ENERGY_REASON = "no energy counter on this CPU (synthetic test table)"
DECODE_TOKENS = 4
REPEATS = 5


def build_table(path: Path, n_table: int = 200, n_extra: int = 20, seed: int = 0):
    """Write the table to ``path``; returns (table archs, unprofiled archs)."""
    sp = get_space("t")
    archs = sp.sample(seed, n=n_table + n_extra)
    # unique ids (sampling with replacement may repeat an architecture)
    seen, uniq = set(), []
    for a in archs:
        if a.id not in seen:
            seen.add(a.id)
            uniq.append(a)
    table_archs, extra = uniq[:n_table], uniq[n_table:]
    enc = sp.encode_many(table_archs)
    rng = np.random.default_rng(seed + 1)
    p = costs.params(enc, space=sp).astype(float)
    pne = costs.params(enc, space=sp, embeddings=False).astype(float)
    fl = {s: exact_flops(sp, enc, s, DECODE_TOKENS) for s in (PREFILL, DECODE, GPU_SETTING)}
    ppl = 400 * (pne / 1e4) ** -0.35 * rng.lognormal(0, 0.01, len(enc))
    acc = 0.1 + 0.02 * np.log(pne) + rng.normal(0, 0.002, len(enc))
    scale = {PREFILL: 2e8, DECODE: 2e6}  # ms per FLOP: decode is memory-bound, far slower per FLOP
    lat = {s: (0.2 + fl[s][:, None] / scale[s]) * rng.lognormal(0, 0.05, (len(enc), REPEATS)) for s in scale}
    mem = {s: p * 4 / 2**20 + 1.5 + rng.normal(0, 0.01, len(enc)) for s in (PREFILL, DECODE)}
    gpu_spec, gpu_params = get_device("gpu-h100-sxm5-80gb"), DEFAULT_PARAMS["gpu"]
    gpu = predict(table_archs, GPU_SETTING, gpu_spec, gpu_params)
    exact, synthetic = dict(unit="1", source="exact"), dict(unit="1", source="measured", description="synthetic")
    metrics = {"params": (p, exact), "params_no_embedding": (pne, exact),
               **{f"flops_{s}": (fl[s], dict(unit="FLOPs", source="exact")) for s in fl},
               "perplexity": (ppl, synthetic), "token_accuracy": (acc, synthetic)}
    devices = {CPU: dict(source="measured", provenance={"cpu_model": "synthetic", "threads": 2}, kind="cpu"),
               GPU: dict(source="modeled", kind="gpu", provenance=modeled_provenance(
                   gpu_spec, gpu_params, "uncalibrated defaults (synthetic test table)", "fp16"))}
    settings = {(CPU, PREFILL): dict(warmup=1, repeats=REPEATS),
                (CPU, DECODE): dict(warmup=1, repeats=REPEATS, decode_tokens=DECODE_TOKENS), (GPU, GPU_SETTING): {}}
    hardware = {}
    for s in (PREFILL, DECODE):
        hardware[(CPU, s, "latency_ms")] = (lat[s], dict(unit="ms", repeats=REPEATS))
        hardware[(CPU, s, "memory_mb")] = (mem[s][:, None], dict(unit="MB", repeats=1))
        hardware[(CPU, s, "energy_mj")] = (None, dict(unit="mJ", repeats=REPEATS, missing_reason=ENERGY_REASON))
    hardware[(GPU, GPU_SETTING, "latency_ms")] = (np.asarray(gpu.latency_ms)[:, None], dict(unit="ms", repeats=1))
    hardware[(GPU, GPU_SETTING, "energy_mj")] = (np.asarray(gpu.energy_mj)[:, None], dict(unit="mJ", repeats=1))
    write_table(path, "t", table_archs, attrs={"synthetic": True}, metrics=metrics, devices=devices,
                settings=settings, hardware=hardware)
    return table_archs, extra


# a small, cheap candidate set for tests (the real fit uses surrogates.fit.CANDIDATES)
TEST_CANDIDATES = (
    {"max_depth": 3, "eta": 0.15, "num_boost_round": 80, "min_child_weight": 1.0, "subsample": 0.9},
    {"max_depth": 4, "eta": 0.1, "num_boost_round": 120, "min_child_weight": 1.0, "subsample": 0.8},
)


_RELEASE: dict = {}


def shared_release(tmp_path_factory):
    """A release directory (table + surrogates fitted with TEST_CANDIDATES, one thread), built once
    per test session and shared by tests/test_surrogates.py and tests/test_api.py. Treat as read-only."""
    if "path" not in _RELEASE:
        from surrogates.fit import fit_table

        d = tmp_path_factory.mktemp("release")
        archs, extra = build_table(d / "table_t.h5")
        result = fit_table(d / "table_t.h5", d, seed=0, candidates=TEST_CANDIDATES, nthread=1, progress=False,
                           report=d / "surrogates.md")
        _RELEASE.update(path=d, archs=archs, extra=extra, result=result)
    return _RELEASE
