"""Modeled devices in a table: the roofline model calibrated on the table's measured devices.

:func:`add_modeled_devices` adds, for every device of the registry
(:mod:`benchmark.profiling.devices`), modeled ``latency_ms`` and ``energy_mj`` of every row of a
table at the settings of its measured device, as ``/hardware/<registry id>`` groups with source
``modeled`` (never measured). Calibration:

* CPU devices use :class:`~benchmark.profiling.roofline.RooflineParams` fitted
  (:func:`~benchmark.profiling.roofline.calibrate_many`) on one measured CPU device's latencies —
  the first measured CPU id in sorted order (``cpu-epyc-1c``, PyTorch eager, before its runtime
  variants ``cpu-epyc-1c-ort-*``) — all settings at once, with the spec that describes the measured
  CPU (``cpu_spec`` restricted to the threads used).
* GPU devices use parameters fitted on a measured GPU of the table when there is one, otherwise
  the uncalibrated defaults (``DEFAULT_PARAMS["gpu"]``) — the provenance says which.
* Energy is the utilisation power model (``idle_fraction`` of TDP at idle); where the table holds
  measured energies of a device (NVML, RAPL), ``idle_fraction`` is fitted to them.

The model's error on each measured device is estimated by two-fold cross-validation over
architectures (fit on one half, predict the other): MAPE, RMS log error, Kendall tau and
Spearman rho per setting, stored in the device provenance (``calibration``) and returned. With
two or more measured devices of a class, a leave-one-device-out estimate is the better one
(not implemented: the measured CPU devices so far are runtimes of one host, not other CPUs).

Modeled devices get their GPU settings in fp16 (bf16/fp32 where the device lacks fp16), CPU
settings in fp32; memory is not modeled.

The provenance of each modeled device (:func:`modeled_provenance`) holds the spec sheet, the
calibrated parameters and the dtype, so that the query API can rebuild the exact model
(:func:`roofline_from_provenance`) and evaluate it for architectures the table does not hold,
independently of later registry changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.profiling.devices import DeviceSpec, Figure, get_device, list_devices, match_registry, with_threads
from benchmark.profiling.roofline import DEFAULT_PARAMS, RooflineParams, calibrate_many, predict
from benchmark.table import Setting, Table, TableError, TableWriter

MODEL_NAME = "benchmark.profiling.roofline: per-operator roofline latency + utilisation power model"
#: the metrics the roofline model produces (memory is not modeled)
ROOFLINE_METRICS = ("latency_ms", "energy_mj")


def modeled_provenance(spec: DeviceSpec, params: RooflineParams, calibration: Any, dtype: str) -> dict[str, Any]:
    """The provenance of a modeled device as :func:`add_modeled_devices` stores it: everything
    :func:`roofline_from_provenance` needs to recompute its values (spec sheet figures, calibration
    parameters, dtype), so that a release stays self-consistent whatever the registry says later."""
    return {"model": MODEL_NAME, "spec": {k: dataclasses.asdict(f) for k, f in spec.figures.items()},
            "spec_name": spec.name, "roofline_params": dataclasses.asdict(params), "calibration": calibration,
            "dtype": dtype}


def roofline_from_provenance(device: str, kind: str | None,
                             provenance: dict[str, Any]) -> tuple[DeviceSpec, RooflineParams, str] | None:
    """``(spec, params, dtype)`` of a modeled device rebuilt from its stored provenance
    (:func:`modeled_provenance`) — not from the registry — or None when the provenance lacks them
    (e.g. a modeled device written by other means)."""
    try:
        figures = {k: Figure(**provenance["spec"][k]) for k in ("fp32", "fp16", "bf16", "bandwidth", "memory", "tdp")}
        fields = {f.name for f in dataclasses.fields(RooflineParams)}
        params = RooflineParams(**{k: v for k, v in provenance["roofline_params"].items() if k in fields})
        dtype = str(provenance["dtype"])
        spec = DeviceSpec(device, str(provenance.get("spec_name", device)), kind or "gpu", "", **figures,
                          notes="rebuilt from a modeled device's provenance")
        spec.peak_flops(dtype)  # the stored dtype must be computable on the stored spec
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return spec, params, dtype


def _measured_latency(t: Table, device: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    ids = t.ids
    out = []
    for s in t.settings(device):
        if "latency_ms" not in t.hardware_metrics(device, s):
            continue
        lat = t.hardware(device, s, "latency_ms")
        ok = np.isfinite(lat).any(1)
        out.append((s, {ids[i]: lat[i] for i in np.flatnonzero(ok)}))
    return out


def _decode_tokens(t: Table, device: str, setting: str) -> int:
    from benchmark.settings import DEFAULT_DECODE_TOKENS

    return int(t.setting_attrs(device, setting).get("decode_tokens", DEFAULT_DECODE_TOKENS))


def _measured_spec(t: Table, device: str, cpu_spec: str) -> DeviceSpec:
    prov = t.provenance(device)
    if prov.get("gpu_name"):
        spec = match_registry(str(prov["gpu_name"]))
        if spec is None:
            raise TableError(f"measured device {device!r}: GPU {prov['gpu_name']!r} matches no registry entry; "
                             f"allowed: one of {[d.id for d in list_devices('gpu')]} (add it to the registry)")
        return spec
    spec = match_registry(str(prov.get("cpu_model", ""))) or get_device(cpu_spec)
    threads = int(prov.get("torch_threads") or spec.cores)
    return with_threads(spec, min(threads, spec.cores))


def _scores(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    from scipy import stats

    return {"mape": float(np.mean(np.abs(pred - meas) / meas)),
            "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(meas)) ** 2))),
            "kendall_tau": float(stats.kendalltau(pred, meas).statistic),
            "spearman_rho": float(stats.spearmanr(pred, meas).statistic), "n": int(len(meas))}


def calibrate_device(t: Table, device: str, cpu_spec: str = "cpu-epyc-7513", seed: int = 0,
                     max_archs: int = 400) -> tuple[RooflineParams, dict[str, Any]]:
    """Roofline parameters fitted on ``device``'s measured latencies (all settings), and the
    two-fold cross-validated error per setting. At most ``max_archs`` architectures (seeded
    subsample) enter the fit: the fit is least squares over three parameters and more rows only
    cost time."""
    spec = _measured_spec(t, device, cpu_spec)
    obs = _measured_latency(t, device)
    if not obs:
        raise TableError(f"device {device!r} has no measured latency_ms to calibrate on")
    archs = {a.id: a for a in t.architectures()}
    ids = sorted(set().union(*(m.keys() for _, m in obs)))
    rng = np.random.default_rng(seed)
    ids = list(rng.permutation(ids)[:max_archs])
    folds = [set(ids[0::2]), set(ids[1::2])]
    dtok = {s: _decode_tokens(t, device, s) for s, _ in obs}
    by_setting: dict[str, dict[str, list]] = {s: {"pred": [], "meas": []} for s, _ in obs}
    for k in (0, 1):
        fit_ids, test_ids = folds[k], folds[1 - k]
        sub = [(s, {i: v for i, v in m.items() if i in fit_ids}) for s, m in obs]
        p = calibrate_many(sub, [archs[i] for i in fit_ids], spec, decode_tokens=max(dtok.values()))
        for s, m in obs:
            test = [i for i in m if i in test_ids]
            if not test:
                continue
            pred = predict([archs[i] for i in test], s, spec, p, decode_tokens=dtok[s]).latency_ms
            by_setting[s]["pred"] += list(pred)
            by_setting[s]["meas"] += [float(np.nanmedian(m[i])) for i in test]
    cv = {s: _scores(np.array(v["pred"]), np.array(v["meas"])) for s, v in by_setting.items() if v["meas"]}
    sub = [(s, {i: v for i, v in m.items() if i in set(ids)}) for s, m in obs]
    params = calibrate_many(sub, [archs[i] for i in ids], spec, decode_tokens=max(dtok.values()),
                            label=f"{device} ({spec.id}): {len(ids)} architectures x {len(obs)} settings, "
                                  f"measured latency medians")
    return params, {"measured_device": device, "spec": spec.id, "two_fold_cv": cv}


def _dtype_for(spec: DeviceSpec, gpu_dtype: str) -> str:
    if spec.kind == "cpu":
        return "fp32"
    for d in (gpu_dtype, "fp16", "bf16", "fp32"):
        if spec.supports(d):
            return d
    raise HwlmError(f"device {spec.id} supports no dtype")


def add_modeled_devices(table_path: str | Path, devices: Sequence[str] | None = None,
                        cpu_spec: str = "cpu-epyc-7513", gpu_dtype: str = "fp16", seed: int = 0) -> dict[str, Any]:
    """Add (or recompute) modeled devices of ``table_path`` in place (atomic rewrite).

    ``devices``: registry ids (default: the whole registry). ``cpu_spec``: the registry entry that
    describes the measured CPU when its model string matches none (e.g. a VM that reports only
    "AMD EPYC"). Returns ``{"calibration": {class: {...}}, "devices": [...]}``.
    """
    t = Table(table_path)
    measured = {d: m for d, m in t.devices().items() if m["source"] == "measured"}
    ref = {}
    for dev, meta in sorted(measured.items()):  # the first id in sorted order, whatever the merge order
        kind = "gpu" if meta["provenance"].get("gpu_name") else "cpu"
        if kind not in ref and any("latency_ms" in t.hardware_metrics(dev, s) for s in t.settings(dev)):
            ref[kind] = dev
    if not ref:
        raise TableError(f"table {table_path}: no measured device with latency_ms to calibrate the model on; "
                         f"devices: {sorted(t.devices())}")
    calib: dict[str, tuple[RooflineParams, dict]] = {}
    for kind, dev in ref.items():
        calib[kind] = calibrate_device(t, dev, cpu_spec, seed)
    base_dev = ref.get("cpu") or ref["gpu"]
    settings = [Setting.parse(s) for s in t.settings(base_dev) if "latency_ms" in t.hardware_metrics(base_dev, s)]
    dtok = {s.name: _decode_tokens(t, base_dev, s.name) for s in settings}
    archs = t.architectures()
    ids = [a.id for a in archs]
    specs = [get_device(d) for d in devices] if devices else list_devices()
    done = []
    with TableWriter(table_path, t.space.name, flush_every=None) as w:
        for spec in specs:
            kind = spec.kind
            params, info = calib.get(kind, (DEFAULT_PARAMS[kind], {"measured_device": None}))
            dtype = _dtype_for(spec, gpu_dtype)
            if spec.id in w.devices():
                if w.devices()[spec.id]["source"] != "modeled":
                    raise TableError(f"table {table_path}: {spec.id!r} is a measured device; a modeled device never "
                                     f"takes its name")
                w.remove_modeled_device(spec.id)
            prov = modeled_provenance(spec, params, info if info.get("measured_device") else
                                      f"uncalibrated defaults: no measured {kind.upper()} in this table", dtype)
            w.declare_device(spec.id, source="modeled", provenance=prov, kind=kind)
            for s in settings:
                ms = dataclasses.replace(s, dtype=dtype)
                extra = {"decode_tokens": dtok[s.name]} if s.mode == "decode" else {}
                name = w.declare_setting(spec.id, ms, **extra)
                r = predict(archs, name, spec, params, decode_tokens=dtok[s.name])
                for metric, unit, vals in (("latency_ms", "ms", r.latency_ms), ("energy_mj", "mJ", r.energy_mj)):
                    w.declare_hardware_metric(spec.id, name, metric, unit=unit, repeats=1)
                    w.set_modeled(spec.id, name, metric, dict(zip(ids, vals)))
            done.append(spec.id)
    return {"calibration": {k: {"params": dataclasses.asdict(p), **info} for k, (p, info) in calib.items()},
            "devices": done}
