"""What a space without a release offers (HW-GPT-Bench's spaces ``s``, ``m``, ``l``): exact metrics,
the modeled devices of the embedded ``t`` release (their roofline model, with the parameters and
spec sheets stored in ``table_t.h5``) and HW-GPT-Bench's imported perplexity predictor.

It is described as a surrogate index without fitted models (:func:`standalone_index`), so the
catalog, planner and executor treat it like any release: nothing measured, no table, no surrogate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.spaces import SearchSpace

__all__ = ["IMPORTED_SPACES", "standalone_index", "calibration_note", "NO_INTERVAL_IMPORTED"]

IMPORTED_SPACES = ("s", "m", "l")  # spaces with HW-GPT-Bench's perplexity predictor
NO_INTERVAL_IMPORTED = ("no interval: HW-GPT-Bench publishes no error estimate for its perplexity "
                        "predictor, and no measured perplexity of these spaces exists here to estimate one")


def calibration_note(table_path: Path, sha256: str) -> str:
    return (f"modeled devices of the embedded 't' release ({table_path.name}, sha256 {sha256[:12]}…): "
            f"roofline parameters calibrated on its measured CPU latencies (CPU devices) or uncalibrated "
            f"defaults (GPU devices), applied unchanged to this space; no measured device")


def standalone_index(space: SearchSpace, release: Path) -> dict[str, Any]:
    """An index (the shape of :func:`surrogates.fit.fit_table`'s ``index.json``, with no models) for
    ``space`` built from the ``t`` table in ``release``: its modeled devices with the settings whose
    context fits ``space``, the FLOPs settings, and the imported ``perplexity``."""
    from benchmark.hwgpt_perplexity import PROVENANCE
    from benchmark.settings import Setting
    from benchmark.table import Table, device_kind
    from surrogates.fit import roofline_devices

    t = Table(release / "table_t.h5")
    note = calibration_note(t.path, t.sha256())
    roofline, devices, t_devices = {}, {}, t.devices()
    for dev, entry in roofline_devices(t).items():
        settings = [st for st in entry["metrics"] if _fits(space, Setting.parse(st), entry["decode_tokens"].get(st, 0))]
        if not settings:
            continue
        prov = dict(entry["provenance"], borrowed_from=note)
        roofline[dev] = {"provenance": prov, "metrics": {st: entry["metrics"][st] for st in settings},
                         "decode_tokens": {st: k for st, k in entry["decode_tokens"].items() if st in settings}}
        devices[dev] = {"source": "modeled", "kind": device_kind(dev, t_devices[dev]), "settings": settings,
                        "borrowed_from": note}
    metrics = {name: {"unit": meta.get("unit"), "source": "exact"}
               for name, meta in t.metrics().items() if name.startswith("flops_")}
    metrics["perplexity"] = {"unit": "1", "source": "imported", "provenance": dict(PROVENANCE),
                             "no_interval": NO_INTERVAL_IMPORTED}
    return {"space": space.name, "models": [], "missing": [], "devices": devices, "metrics": metrics,
            "roofline": roofline, "table_sha256": None, "standalone": True}


def _fits(space: SearchSpace, st: Any, decode_tokens: int) -> bool:
    """A setting the space's context holds (the prompt, plus the generated tokens when decoding)."""
    return st.seq_len + (decode_tokens if st.mode == "decode" else 0) <= space.block_size
