"""Overlay releases: a device its user measured (``hwlm device add``), served beside a release.

An overlay directory holds::

    MANIFEST.json    sha256 of every file (benchmark.release), verified on opening
    overlay.json     the device, the release it extends (space, table sha256), the design of the K
                     measured architectures, the protocol, and per setting the latency model
                     (surrogates.transfer: method, plain-JSON model, cross-validated error)
    shard.h5         the K measured architectures (a timing-pass table shard)

``Benchmark("t", overlays=[DIR])`` lists the device in ``devices()`` (source ``measured``, with
``estimated_error``: the model's cross-validated scores on the K rows) and answers its
``latency_ms``: the measured median for the K architectures, otherwise the model's prediction
(source ``surrogate``, 5-95 % interval from the model's out-of-fold log residuals on the K rows;
``noise=True`` draws one of those residuals).

The model's reference columns are the release's devices (a modeled device's roofline model as
the release stores it, a measured device's surrogate): :func:`release_references` lists them,
:func:`surrogate_values` evaluates the surrogate ones. An overlay is refused for another space,
for a release whose table has another sha256, and when its device name is one of the release's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmark.query.lookup import Column, repeats_column
from benchmark.query.results import QueryError

__all__ = ["OVERLAY_FORMAT", "OVERLAY_FILE", "SHARD_FILE", "Overlay", "TransferPredictor", "release_references",
           "surrogate_values", "attach_overlays", "shape_of"]

OVERLAY_FORMAT = "hwlm-bench device overlay v1"
OVERLAY_FILE = "overlay.json"
SHARD_FILE = "shard.h5"


def shape_of(setting: str) -> str:
    """A setting's shape without its dtype (``prefill-b1-s256``): how a device's setting is matched
    to the release devices' settings (GPUs are timed in fp16, CPUs in fp32)."""
    return setting.rsplit("-", 1)[0]


# ---------------------------------------------------------------------------- reference columns
def release_references(table: Any, catalog: Any, models: Any, setting: str, exclude: Sequence[str] = (),
                       uncalibrated_from: Sequence[str] = ()) -> list[dict]:
    """The reference columns of a device timed at ``setting``: every release device (sorted, less
    ``exclude``) with a latency at the same shape — a modeled device as its roofline model, a
    measured device as its latency surrogate. A modeled device calibrated on one of
    ``uncalibrated_from`` gets its kind's uncalibrated parameters instead (a held-out device's
    timings must not reach its own prediction through another device's calibration)."""
    import dataclasses

    from benchmark.profiling.roofline import DEFAULT_PARAMS
    from surrogates.transfer import roofline_reference

    refs = []
    for d in sorted(catalog.devices):
        v = catalog.devices[d]
        if d in exclude or v.get("overlay"):
            continue
        st = next((s for s in v["settings"] if shape_of(s) == shape_of(setting)), None)
        if st is None or (d, st, "latency_ms") not in catalog.cells:
            continue
        roof = models.roofline(d, st, "latency_ms")
        if roof is not None:
            prov = dict(table.provenance(d)) if table is not None and d in table.devices() else \
                dict(((models.index or {}).get("roofline") or {}).get(d, {}).get("provenance") or {})
            cal = prov.get("calibration")
            if isinstance(cal, dict) and cal.get("measured_device") in uncalibrated_from:
                prov["roofline_params"] = dataclasses.asdict(DEFAULT_PARAMS[v["kind"]])
                prov["calibration"] = f"uncalibrated defaults (calibrated on {cal['measured_device']}, held out)"
            refs.append(roofline_reference(d, v["kind"], prov, st, models.decode_tokens(st)))
        elif ("latency_ms", d, st) in models.entries:
            refs.append({"name": d, "kind": v["kind"], "setting": st, "model": "surrogate"})
    return refs


def surrogate_values(models: Any, space: Any) -> Callable[[dict, np.ndarray], np.ndarray]:
    """``f(ref, enc)``: a surrogate reference column's latency (ms) of encodings ``enc``."""
    from surrogates.features import features

    def f(ref: dict, enc: np.ndarray) -> np.ndarray:
        s = models.surrogate("latency_ms", ref["name"], ref["setting"])
        return s.predict(features(space, enc, s.setting, s.decode_tokens))

    return f


# ---------------------------------------------------------------------------- one overlay
class TransferPredictor:
    """A device's latency at one setting for any encodings: ``(value, lo, hi)`` in ms."""

    def __init__(self, space: Any, entry: dict, refs: list[dict], decode_tokens: int, evaluate_surrogate):
        from surrogates.transfer import load_setting

        self.space, self.refs, self.decode_tokens = space, refs, int(decode_tokens)
        self.setting = entry["setting"]
        self.method, self.model, self.q = load_setting(entry)
        self.residuals = np.asarray(entry.get("residuals") or [0.0], np.float64)
        self._surrogate = evaluate_surrogate
        self._cache: dict = {}
        self._predict = None

    def predict(self, enc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from surrogates.transfer import Inputs, predictor, reference_matrix

        if self._predict is None:
            self._predict = predictor(self.method, self.model, self.space.name, self.setting, self.decode_tokens)
        refs = reference_matrix(self.space.name, self.refs, enc, self._surrogate, self._cache) \
            if self.method == "transfer" else np.zeros((len(enc), 0))
        z = self._predict(Inputs.build(self.space.name, self.setting, self.decode_tokens, enc, refs))
        return np.exp(z), np.exp(z + self.q[0]), np.exp(z + self.q[1])

    def draw(self, value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``value`` times one out-of-fold residual ratio each (noise=True)."""
        return value * np.exp(rng.choice(self.residuals, size=len(value)))


@dataclass
class Overlay:
    path: Path
    meta: dict
    shard: Any  # benchmark.table.Table

    @property
    def device(self) -> str:
        return self.meta["device"]

    @classmethod
    def open(cls, path: Any, space: str, base_sha256: str | None) -> "Overlay":
        """Verify and open the overlay at ``path`` for a release of ``space`` whose table has
        ``base_sha256``; QueryError (one line) naming what does not fit."""
        from benchmark.release import ReleaseError, verify_release
        from benchmark.table import Table, TableError

        if not isinstance(path, (str, os.PathLike)):
            raise QueryError.invalid("overlay", path, "an overlay directory (a str or os.PathLike): the --out of "
                                                      "hwlm device add")
        p = Path(path)
        if not p.is_dir():
            raise QueryError(f"invalid overlay: {str(p)!r} is not a directory; allowed: the --out of hwlm device add")
        if not (p / "MANIFEST.json").exists():
            raise QueryError(f"invalid overlay {p}: no MANIFEST.json, a half-finished run; allowed: a finished overlay "
                             f"(rerun the same hwlm device add command to resume it)")
        try:
            verify_release(p)
        except ReleaseError as e:
            raise QueryError(f"invalid overlay {p}: {' '.join(str(e).split())}") from None
        try:
            meta = json.loads((p / OVERLAY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise QueryError(f"invalid overlay {p}: cannot read {OVERLAY_FILE} ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != OVERLAY_FORMAT:
            raise QueryError(f"invalid overlay {p}: {OVERLAY_FILE} is not a {OVERLAY_FORMAT!r} file")
        if meta.get("space") != space:
            raise QueryError(f"invalid overlay {p}: it is for space {meta.get('space')!r}; allowed: an overlay "
                             f"for space {space!r}")
        if base_sha256 is None:
            raise QueryError(f"invalid overlay {p}: this release has no table_{space}.h5 to extend; allowed: "
                             f"overlays on a release with a table")
        if meta.get("release_table_sha256") != base_sha256:
            raise QueryError(f"invalid overlay {p}: made for the release whose table has sha256 "
                             f"{str(meta.get('release_table_sha256'))[:12]}…, not this one "
                             f"({base_sha256[:12]}…); allowed: the release it was made for "
                             f"(or rerun hwlm device add)")
        try:
            shard = Table(p / SHARD_FILE)
        except TableError as e:
            raise QueryError(f"invalid overlay {p}: {e}") from None
        if meta.get("device") not in shard.devices():
            raise QueryError(f"invalid overlay {p}: its shard has no device {meta.get('device')!r}")
        return cls(p, meta, shard)

    def column(self, setting: str, base_ids: Sequence[str]) -> Column:
        """The measured latencies of the K architectures, at the release table's rows (NaN elsewhere)."""
        rep = np.asarray(self.shard.hardware(self.device, setting, "latency_ms"), np.float64)
        full = np.full((len(base_ids), rep.shape[1]), np.nan)
        row = {a: i for i, a in enumerate(base_ids)}
        for j, a in enumerate(self.shard.ids.tolist()):
            if a not in row:
                raise QueryError(f"invalid overlay {self.path}: architecture {a} is not in the release's table")
            full[row[a]] = rep[j]
        return repeats_column("measured", "ms", full)


def attach_overlays(paths: Sequence[Any], space: Any, table: Any, catalog: Any, lookup: Any, models: Any) -> None:
    """Add the overlays at ``paths`` to a release's catalog, lookup and models (in place)."""
    if isinstance(paths, (str, Path)) or not isinstance(paths, (list, tuple)):
        raise QueryError.invalid("overlays", paths, "a list of overlay directories")
    base_ids = table.ids.tolist() if table is not None else []
    base_sha = table.sha256() if table is not None else None
    for path in paths:
        ov = Overlay.open(path, space.name, base_sha)
        name = ov.device
        if name in catalog.devices:
            raise QueryError(f"invalid overlay {ov.path}: device {name!r} is already in this release "
                             f"({catalog.devices[name].get('overlay') or 'its table'}); allowed: a new device name")
        settings = [e["setting"] for e in ov.meta["models"]]
        catalog.devices[name] = {"source": "measured", "kind": ov.meta.get("kind", "cpu"), "settings": settings,
                                 "overlay": str(ov.path), "estimated_error": {
                                     e["setting"]: {"method": e["method"], **e["cv"][e["method"]]}
                                     for e in ov.meta["models"]}}
        srcs = set(catalog.metrics.get("latency_ms", {}).get("source", "measured").split("|")) | {"measured"}
        catalog.metrics.setdefault("latency_ms", {"unit": "ms", "needs_device": True, "needs_setting": True})
        catalog.metrics["latency_ms"]["source"] = "|".join(sorted(srcs))
        evaluate = surrogate_values(models, space)
        for e in ov.meta["models"]:
            st = e["setting"]
            catalog.cells[(name, st, "latency_ms")] = {"unit": "ms", "repeats": ov.meta["protocol"]["rounds"] *
                                                       ov.meta["protocol"]["repeats_per_round"]}
            lookup.add("latency_ms", name, st, ov.column(st, base_ids))
            models.transfers[(name, st)] = TransferPredictor(space, e, e["references"], e["decode_tokens"], evaluate)
