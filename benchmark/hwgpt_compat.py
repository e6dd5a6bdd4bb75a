"""HW-GPT-Bench's ``HWGPT`` API (``hwgpt/api.py`` of automl/HW-GPT-Bench) on top of :class:`Benchmark`.

A script written for HW-GPT-Bench runs after one changed line::

    api = HWGPTBenchCompat(search_space="s", use_supernet_surrogate=False)   # was: HWGPT(...)
    api.set_arch(api.sample_arch())
    api.query()                                   # {"latencies": {device: ms}, "energies": {device: Wh}, "flops", "params"}
    api.query(metric="energies")                  # every device
    api.query(device="rtx2080")                   # latencies and energies of one device
    api.query(metric="perplexity", predictor="mlp")

What answers, and where it differs from HW-GPT-Bench (docs/api.md has the table):

* devices: HW-GPT-Bench's names map to this package's device ids (:data:`HWGPT_DEVICES`, from
  the device registry); the release's other devices are reachable by their own ids. Values are at
  each device's default setting (``setting=`` picks another), deterministic unless ``noise=True``
  (HW-GPT-Bench draws every hardware value from its surrogate's Gaussian).
* units are HW-GPT-Bench's (``lib/utils.py``, ``metrics_map``): latencies in ms, energies in Wh
  (this package's mJ / 3.6e6); ``units`` holds them and ``sources`` the source of the last
  query's values (measured, modeled, surrogate, exact, imported).
* ``flops`` / ``params`` are exact counts of this package's model of the architecture (its
  embedding and LM head are tied, counted once); ``flops`` is one forward over the space's full
  context, batch 1 (HW-GPT-Bench estimates that case from the parameter count).
* perplexity: ``predictor="mlp"`` is HW-GPT-Bench's own released MLP (spaces ``s``, ``m``,
  ``l``; labelled ``imported``); ``predictor="supernet"`` and ``use_supernet_surrogate`` are this
  package's weight-sharing supernet (space ``t``: measured, or its surrogate off the table).
* refused with ``NotImplementedError`` naming the alternative: GPU memory (``float16_memory``,
  ``bfloat16_memory``, ``get_memory``), HW-GPT-Bench's ground-truth pickles (``get_gt_*``,
  ``query_gt_all_archs``), and a perplexity source the space does not have. Every other bad value
  is a :class:`QueryError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import costs
from benchmark.profiling.devices import hwgpt_device_ids
from benchmark.query.results import QueryError, fail
from benchmark.spaces import ArchitectureError

__all__ = ["HWGPTBenchCompat", "HWGPT_DEVICES", "UNITS"]

#: HW-GPT-Bench's device names -> this package's device ids (the registry's ``hwgpt_name``), in
#: HW-GPT-Bench's ``device_list`` order.
HWGPT_DEVICES: dict[str, str] = hwgpt_device_ids()

#: HW-GPT-Bench's metric -> (this package's metric, unit HW-GPT-Bench states, ours per one of theirs).
_HW_METRICS = {"latencies": ("latency_ms", "ms", 1.0), "energies": ("energy_mj", "Wh", 3.6e6)}
UNITS = {"latencies": "ms", "energies": "Wh", "flops": "FLOPs", "params": "1", "perplexity": "1", "accuracy": "1"}
_TRUE_METRICS = ("flops", "params")
_MEMORY = ("float16_memory", "bfloat16_memory")
_PREDICTORS = ("mlp", "supernet")


def _memory_refused(name: Any) -> Exception:
    if name not in _MEMORY:  # not one of HW-GPT-Bench's memory objectives: a plain bad value
        return fail("objective", name, list(_MEMORY))
    return NotImplementedError(
        f"{name}: HW-GPT-Bench's GPU memory (MB, {name.split('_')[0]}, batch 8 x full context) is not "
        f"available here; alternatives: Benchmark(space).query(arch, metrics='memory_mb', device=...) "
        f"where a release measured memory (space 't': cpu-epyc-1c, fp32), or the exact "
        f"benchmark.costs.weight_bytes(arch, dtype='fp16') and kv_cache_bytes(...)")


class HWGPTBenchCompat:
    """HW-GPT-Bench's ``HWGPT`` over :class:`benchmark.api.Benchmark` (see the module docstring).

    ``search_space``: ``"t"``, ``"s"``, ``"m"`` or ``"l"``. ``use_supernet_surrogate``: add the
    weight-sharing supernet's perplexity (and accuracy) to :meth:`query`, as HW-GPT-Bench does;
    None (default) means "where the space has a supernet" (``t`` yes, ``s``/``m``/``l`` no: their
    supernet checkpoints are not part of this package, True is refused there). ``base_path``: a
    release directory (HW-GPT-Bench's data root; default the embedded release). ``seed``: seeds
    :meth:`sample_arch` and ``noise``. ``setting``: the setting of every value (default: each
    device's first); devices without it are left out of all-device answers, refused when named. ``benchmark``: an open Benchmark to wrap instead of opening one.
    """

    def __init__(self, search_space: str = "t", use_supernet_surrogate: bool | None = None,
                 base_path: str | Path | None = None, *, seed: int = 0, noise: bool = False,
                 setting: str | None = None, benchmark: Any = None):
        from benchmark.api import Benchmark  # the layer below (tests/test_layers.py)

        if benchmark is not None and base_path is not None:
            raise fail("base_path", str(base_path), "None when an open benchmark= is given (it has its path)")
        b = benchmark if benchmark is not None else Benchmark(search_space, base_path)
        if base_path is not None and b.table is None and not b.models.entries:  # e.g. HW-GPT-Bench's own data root
            warnings.warn(f"base_path {str(base_path)!r} holds no hwlm-bench release of space {b.space.name!r}; "
                          f"answering from exact metrics, the modeled devices and HW-GPT-Bench's perplexity "
                          f"predictor (base_path=None opens the embedded release)", UserWarning, stacklevel=2)
        if b.space.name != search_space:
            raise fail("search_space", search_space, f"{b.space.name!r} (the space of the benchmark given)")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise fail("seed", seed, "an int (sampling and noise are seeded)")
        if not isinstance(noise, bool):
            raise fail("noise", noise, "True or False")
        self.benchmark = b
        self.search_space_name = b.space.name
        sp = b.space
        self.search_space = {"embed_dim_choices": list(sp.embed_dim_choices), "n_layer_choices": list(sp.n_layer_choices),
                             "mlp_ratio_choices": list(sp.mlp_ratio_choices), "n_head_choices": list(sp.n_head_choices),
                             "bias_choices": [str(c) for c in sp.bias_choices]}
        self.has_supernet = "token_accuracy" in b.metrics()  # the space's perplexity comes from our supernet
        if use_supernet_surrogate is None:
            use_supernet_surrogate = self.has_supernet
        if not isinstance(use_supernet_surrogate, bool):
            raise fail("use_supernet_surrogate", use_supernet_surrogate, "True, False or None")
        if use_supernet_surrogate and not self.has_supernet:
            raise NotImplementedError(self._no_supernet())
        self.use_supernet_surrogate = use_supernet_surrogate
        self.base_path = b.path
        if setting is not None and not any(setting in b.settings(d) for d in b.devices()):
            raise fail("setting", setting, sorted({st for d in b.devices() for st in b.settings(d)}))
        self.setting = setting
        self.noise = noise
        self._rng = np.random.default_rng(int(seed))
        ours = set(b.devices())
        self.device_list = [h for h, d in HWGPT_DEVICES.items() if d in ours] + \
            sorted(ours - set(HWGPT_DEVICES.values()))
        self.hw_metrics_surrogate = [m for m, (o, _, _) in _HW_METRICS.items() if o in b.metrics()]
        self.hw_metrics_true = list(_TRUE_METRICS)
        self.metrics = ["perplexity"] + (["accuracy"] if self.has_supernet else [])
        self.units = dict(UNITS)
        self.sources: dict[str, Any] = {}
        self.config: dict | None = None
        self._missing = ""

    # ------------------------------------------------------------------ architectures
    def sample_arch(self) -> dict:
        """A uniformly sampled architecture as HW-GPT-Bench's dict; also set as the current one."""
        self.config = self.benchmark.space.sample(self._rng).to_hwgpt_dict()
        return dict(self.config)

    def set_arch(self, config: Mapping) -> None:
        try:
            self.config = self.benchmark.space.from_hwgpt_dict(config).to_hwgpt_dict()
        except ArchitectureError as e:
            raise QueryError(str(e)) from None

    def _arch(self) -> dict:
        if self.config is None:
            raise QueryError("invalid state: no architecture set; allowed: call set_arch(config) or sample_arch() first")
        return self.config

    # ------------------------------------------------------------------ devices
    def device_id(self, device: str) -> str:
        """This package's id of ``device`` (a HW-GPT-Bench name or one of the release's ids)."""
        b = self.benchmark
        if isinstance(device, str) and device in HWGPT_DEVICES:
            ours = HWGPT_DEVICES[device]
            if ours in b.devices():
                return ours
            raise fail("device", device, f"one this release has: {self.device_list} (HW-GPT-Bench's {device!r} "
                                         f"is {ours!r} here, which {b.path} does not hold)")
        if isinstance(device, str) and device in b.devices():
            return device
        raise fail("device", device, f"{self.device_list} (HW-GPT-Bench names map as {HWGPT_DEVICES})")

    # ------------------------------------------------------------------ metrics
    def compute_predictions_hw(self, hw_metric: str, device: str) -> float:
        """One hardware value of the current architecture, in HW-GPT-Bench's unit."""
        v = self._hw(hw_metric, device)
        if v is None:
            reason = self._missing
            have = [d for d in self.device_list if self._hw(hw_metric, d, probe=True)]
            raise fail("device", device, f"a device with {hw_metric} ({device}: {reason}); these have it: {have}")
        return v

    def _hw(self, hw_metric: str, device: str, probe: bool = False) -> float | bool | None:
        """The value (None where the device lacks the metric or its value is missing); ``probe``:
        only whether it would have one."""
        if hw_metric in _MEMORY:
            raise _memory_refused(hw_metric)
        if hw_metric not in self.hw_metrics_surrogate:
            raise fail("hw_metric", hw_metric, self.hw_metrics_surrogate)
        ours, _, per_unit = _HW_METRICS[hw_metric]
        d, b = self.device_id(device), self.benchmark
        if self.setting is not None and self.setting not in b.settings(d):
            self._missing = f"no setting {self.setting!r}"
            return None
        if ours not in b.hardware_metrics(d, self.setting):
            self._missing = f"no {ours} for this device in this release"
            return None
        r = b.query(self._arch(), metrics=[ours], device=d, setting=self.setting, noise=self.noise and not probe,
                    seed=int(self._rng.integers(2**31)) if self.noise and not probe else None, intervals=False)
        if r.sources[ours] == "missing":
            self._missing = f"missing: {r.missing.get(ours)}"
            return None
        if probe:
            return True
        self.sources.setdefault(hw_metric, {})[device] = r.sources[ours]
        return r[ours] / per_unit

    def get_flops(self) -> int:
        """Exact FLOPs of one forward over the space's full context (batch 1), this package's model."""
        sp = self.benchmark.space
        self.sources["flops"] = "exact"
        return int(costs.flops_prefill(sp.from_hwgpt_dict(self._arch()), 1, sp.block_size))

    def get_params(self) -> int:
        """Exact parameter count of this package's model (tied embedding / LM head counted once)."""
        self.sources["params"] = "exact"
        return int(costs.params(self.benchmark.space.from_hwgpt_dict(self._arch())))

    def get_memory(self, objective: str = "float16_memory") -> float:
        raise _memory_refused(objective)

    def compute_predictions_ppl(self) -> float:
        """HW-GPT-Bench's perplexity MLP of the space (``s``, ``m``, ``l``; ``imported``)."""
        b = self.benchmark
        if b.metrics().get("perplexity", {}).get("source") != "imported":
            raise NotImplementedError(
                f"space {self.search_space_name!r} has no HW-GPT-Bench perplexity MLP (HW-GPT-Bench released "
                f"it for 's', 'm', 'l'); its perplexity is this package's supernet's: "
                f"query(metric='perplexity', predictor='supernet') or eval_supernet_surrogate()")
        self.sources["perplexity"] = "imported"
        return b.query(self._arch(), metrics=["perplexity"])["perplexity"]

    def eval_supernet_surrogate(self) -> dict[str, float]:
        """Perplexity and next-token accuracy of the architecture in this package's supernet
        (measured where the table has it, else its surrogate)."""
        if not self.has_supernet:
            raise NotImplementedError(self._no_supernet())
        r = self.benchmark.query(self._arch(), metrics=["perplexity", "token_accuracy"])
        self.sources.update(perplexity=r.sources["perplexity"], accuracy=r.sources["token_accuracy"])
        return {"perplexity": r["perplexity"], "accuracy": r["token_accuracy"]}

    def _no_supernet(self) -> str:
        return (f"space {self.search_space_name!r} has no supernet here (HW-GPT-Bench's checkpoints are not part "
                f"of this package); alternative: HW-GPT-Bench's perplexity MLP, use_supernet_surrogate=False and "
                f"query(metric='perplexity', predictor='mlp') or compute_predictions_ppl()")

    # ------------------------------------------------------------------ ground truth of HW-GPT-Bench's own runs
    def _no_gt(self, *_: Any, **__: Any):
        raise NotImplementedError(
            "HW-GPT-Bench's ground-truth pickles (stats.pkl) are not part of this package; alternative: the "
            "release's table, Benchmark(space).table (space 't'), or Benchmark.query(arch, mode='table', repeats=True)")

    get_gt_latencies = get_gt_energies = get_gt_agnostic = query_gt_all_archs = _no_gt

    # ------------------------------------------------------------------ query
    def query(self, device: str | Sequence[str] | None = None, metric: str | Sequence[str] | None = None,
              predictor: str = "mlp") -> dict:
        """HW-GPT-Bench's ``query``: ``{hw_metric: {device: value}, true_metric: value}``.

        No argument: latencies and energies of every device (devices without a value for one are
        left out of it), flops and params. ``device`` alone: latencies and energies of that device
        (or list). ``metric`` alone: that metric (or list) on every device. With
        ``use_supernet_surrogate`` every such answer also holds the supernet's perplexity and accuracy.
        ``metric="perplexity"``: ``{"perplexity": value}`` from ``predictor`` (``"mlp"``: HW-GPT-Bench's
        MLP; ``"supernet"``: this package's supernet, also ``"accuracy"``).
        """
        if not isinstance(predictor, str) or predictor not in _PREDICTORS:
            raise fail("predictor", predictor, list(_PREDICTORS))
        self._arch()
        self.sources = {}
        if metric == "perplexity":
            if device is not None:
                raise fail("device", device, "None with metric='perplexity' (perplexity needs no device)")
            return {"perplexity": self.compute_predictions_ppl()} if predictor == "mlp" else self.eval_supernet_surrogate()
        if predictor != "mlp":
            raise fail("predictor", predictor, "'mlp' (the default) unless metric='perplexity'")
        names = self._metric_names(metric, device)
        devices = self.device_list if device is None else [device] if isinstance(device, str) else \
            list(device) if isinstance(device, (list, tuple)) else None
        if not devices or not all(isinstance(d, str) for d in devices):
            raise fail("device", device, f"a device name or a list of them: {self.device_list}")
        for d in devices:
            self.device_id(d)
        results: dict[str, Any] = {}
        for name in names:
            if name in _TRUE_METRICS:
                results[name] = self.get_flops() if name == "flops" else self.get_params()
            elif device is not None:
                results[name] = {d: self.compute_predictions_hw(name, d) for d in devices}
            else:  # every device: those without a value for the metric are left out
                values = {d: self._hw(name, d) for d in devices}
                results[name] = {d: v for d, v in values.items() if v is not None}
        if self.use_supernet_surrogate:
            results.update(self.eval_supernet_surrogate())
        return results

    def _metric_names(self, metric: Any, device: Any) -> list[str]:
        allowed = self.hw_metrics_surrogate + self.hw_metrics_true
        if metric is None:
            if device is not None:
                return list(self.hw_metrics_surrogate)
            warnings.warn(f"HWGPTBenchCompat.query(): {list(_MEMORY)} are left out (not available here: "
                          f"{_memory_refused('float16_memory')})", UserWarning, stacklevel=3)
            return allowed
        names = [metric] if isinstance(metric, str) else list(metric) if isinstance(metric, (list, tuple)) else None
        if not names:
            raise fail("metric", metric, f"one of {allowed + ['perplexity']} or a list of {allowed}")
        for m in names:
            if m in _MEMORY:
                raise _memory_refused(m)
            if m not in allowed:
                raise fail("metric", m, allowed + ["perplexity"] if isinstance(metric, str) else allowed)
        return names
