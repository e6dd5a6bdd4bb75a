"""The models a query consults for architectures the table lacks: surrogates (loaded on first use
and cached; :mod:`surrogates.fit`), modeled devices' roofline models
(:class:`benchmark.profiling.roofline.EncodedRoofline`, rebuilt from the release's provenance) and
imported predictors (:mod:`benchmark.hwgpt_perplexity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.spaces import SearchSpace
from benchmark.query.catalog import Catalog, model_key
from benchmark.query.results import fail

__all__ = ["ROOFLINE_OUTPUT", "Models", "draw_repeats", "draw_quantiles"]

ROOFLINE_OUTPUT = {"latency_ms": 0, "energy_mj": 1}  # EncodedRoofline.evaluate's outputs


class Models:
    """Surrogates listed in a release's ``index.json`` and the roofline models of its modeled devices."""

    def __init__(self, space: SearchSpace, table: Any, index: dict | None, surrogate_path: Path):
        self.space, self.table, self.index, self.path = space, table, index, surrogate_path
        self.entries: dict[tuple, dict] = {}  # (metric, device, setting) -> index entry of a fitted model
        self.missing: dict[tuple, dict] = {}  # (metric, device, setting) -> index entry of a target not fitted
        if index is not None:
            for m in index["models"]:
                self.entries[(m["metric"], m.get("device"), m.get("setting"))] = m
            for m in index["missing"]:
                self.missing[(m["metric"], m.get("device"), m.get("setting"))] = m
        self._loaded: dict[str, Any] = {}
        self._rooflines: dict[tuple, Any] = {}
        self._decode_tokens: dict[str, int] = {}
        self._fused: dict[tuple, Any] = {}
        self.transfers: dict[tuple, Any] = {}  # (device, setting) -> an overlay device's latency model (query.overlay)
        self.catalog: Catalog | None = None  # set by the owner once built (decode tokens, roofline kinds)

    # ------------------------------------------------------------------ surrogates
    def surrogate(self, metric: str, device: str | None = None, setting: str | None = None):
        """The loaded :class:`surrogates.fit.Surrogate` (cached); QueryError if there is none."""
        key = (metric, device, setting)
        if not isinstance(metric, str) or not all(x is None or isinstance(x, str) for x in (device, setting)):
            raise fail("surrogate", key, "a metric name with a device and setting name (or None) each")
        entry = self.entries.get(key)
        if entry is None and key in self.missing:
            raise fail("surrogate", model_key(key), f"none was fitted: {self.missing[key]['reason']}")
        if entry is None:
            have = sorted(model_key(k) for k in self.entries)
            raise fail("surrogate", model_key(key), f"{have} (in {self.path})" if have else
                       f"none: {self.path} has no surrogates (fit them with `hwlm fit`)")
        s = self._loaded.get(entry["stem"])
        if s is None:
            from surrogates.model import Surrogate

            if not self._loaded:
                self._check_table()
            s = self._loaded[entry["stem"]] = Surrogate.load(self.path, entry["stem"])
            if not s.noisy and self.table is not None:  # an interval from its held-out residuals
                from surrogates.fit import heldout_calibration

                s.heldout = heldout_calibration(s, self.table)
        return s

    def _check_table(self) -> None:
        """Warn (once) when the surrogates were fitted on another table than the release's."""
        fitted_on = (self.index or {}).get("table_sha256")
        if self.table is not None and fitted_on and fitted_on != self.table.sha256():
            import warnings

            warnings.warn(f"surrogates in {self.path} were fitted on table sha256 {fitted_on[:12]}…, "
                          f"not on {self.table.path} (sha256 {self.table.sha256()[:12]}…); refit them with "
                          f"`hwlm fit --table {self.table.path} --out {self.path.parent.parent}`", stacklevel=5)

    def fused(self, parts: tuple, ensembles: list):
        """A :class:`surrogates.fastpredict.FusedEnsembles` of ``ensembles`` (cached by ``parts``)."""
        f = self._fused.get(parts)
        if f is None:
            from surrogates.fastpredict import FusedEnsembles

            f = self._fused[parts] = FusedEnsembles(ensembles)
        return f

    # ------------------------------------------------------------------ imported predictors
    def imported(self, metric: str, encodings: np.ndarray) -> np.ndarray:
        """An imported metric (another benchmark's released predictor; only HW-GPT-Bench's
        perplexity so far) of validated encodings, float64."""
        from benchmark.hwgpt_perplexity import predict

        if metric != "perplexity":
            raise fail("imported metric", metric, ["perplexity"])
        return predict(self.space.name, encodings)

    # ------------------------------------------------------------------ settings
    def decode_tokens(self, setting: str) -> int:
        """Generated tokens a decode setting's figures average over (the table's, else the index's)."""
        dt = self._decode_tokens.get(setting)
        if dt is None:
            dt = self._decode_tokens[setting] = self._find_decode_tokens(setting)
        return dt

    def _find_decode_tokens(self, setting: str) -> int:
        from surrogates.features import DEFAULT_DECODE_TOKENS

        if self.table is not None:
            for d, v in self.catalog.devices.items():
                if setting in v["settings"] and d in self.table.devices():
                    return int(self.table.setting_attrs(d, setting).get("decode_tokens", DEFAULT_DECODE_TOKENS))
        for m in self.entries.values():
            if m.get("setting") == setting:
                return int(m.get("decode_tokens", DEFAULT_DECODE_TOKENS))
        return DEFAULT_DECODE_TOKENS

    # ------------------------------------------------------------------ overlay devices
    def transfer(self, device: str, setting: str | None, metric: str | None = None):
        """An overlay device's latency model at ``setting`` (:class:`benchmark.query.overlay.TransferPredictor`),
        or None."""
        return self.transfers.get((device, setting)) if metric in (None, "latency_ms") else None

    # ------------------------------------------------------------------ modeled devices
    def roofline(self, device: str, setting: str | None, metric: str | None = None):
        """The roofline model (cached) that produced a modeled device's ``latency_ms`` /
        ``energy_mj`` at ``setting``, rebuilt from the parameters and spec sheet stored in the
        release (the table's device provenance, else the surrogate index's ``roofline`` entry) —
        not from the registry; None for measured devices, other metrics, or a modeled device whose
        provenance lacks them."""
        if metric is not None and metric not in ROOFLINE_OUTPUT:
            return None
        key = (device, setting)
        if key not in self._rooflines:
            self._rooflines[key] = self._build_roofline(device, setting)
        return self._rooflines[key]

    def _build_roofline(self, device: str, setting: str | None):
        dev = self.catalog.devices.get(device)
        if dev is None or dev["source"] != "modeled" or setting not in dev["settings"]:
            return None
        from benchmark.profiling.modeled import roofline_from_provenance
        from benchmark.profiling.roofline import EncodedRoofline
        from surrogates.features import DEFAULT_DECODE_TOKENS

        t = self.table
        if t is not None and device in t.devices():
            prov = t.devices()[device]["provenance"]
            decode_tokens = t.setting_attrs(device, setting).get("decode_tokens", DEFAULT_DECODE_TOKENS)
        else:
            entry = ((self.index or {}).get("roofline") or {}).get(device) or {}
            prov = entry.get("provenance") or {}
            decode_tokens = (entry.get("decode_tokens") or {}).get(setting, DEFAULT_DECODE_TOKENS)
        model = roofline_from_provenance(device, dev["kind"], prov)
        if model is None:
            return None
        spec, params, _ = model
        return EncodedRoofline(self.space, setting, spec, params, int(decode_tokens))


def draw_repeats(rep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of each row's finite repeats, uniformly."""
    finite = np.isfinite(rep)
    k = finite.sum(1)
    order = np.argsort(~finite, axis=1, kind="stable")  # finite entries first
    j = np.minimum((rng.random(len(rep)) * np.maximum(k, 1)).astype(np.int64), np.maximum(k - 1, 0))
    return rep[np.arange(len(rep)), order[np.arange(len(rep)), j]]


def draw_quantiles(q: np.ndarray, transform: str, rng: np.random.Generator) -> np.ndarray:
    """Draws from the piecewise-linear quantile function through the 5/50/95 % predictions (in the
    model's transformed space), tails extended linearly to the 0 and 100 % points."""
    from surrogates.model import QUANTILES, forward_transform, inverse_transform

    z = forward_transform(transform, q)
    a = np.array(QUANTILES)
    lo = z[:, 0] - (z[:, 1] - z[:, 0]) * a[0] / (a[1] - a[0])
    hi = z[:, 2] + (z[:, 2] - z[:, 1]) * (1 - a[2]) / (a[2] - a[1])
    knots_p = np.concatenate([[0.0], a, [1.0]])
    knots_z = np.column_stack([lo, z, hi])
    u = rng.random(len(q))
    seg = np.clip(np.searchsorted(knots_p, u, side="right") - 1, 0, len(knots_p) - 2)
    i = np.arange(len(q))
    frac = (u - knots_p[seg]) / (knots_p[seg + 1] - knots_p[seg])
    return inverse_transform(transform, knots_z[i, seg] + frac * (knots_z[i, seg + 1] - knots_z[i, seg]))
