"""What a release offers: devices (source, kind, settings), hardware cells, metrics and units,
read from the table's structure and the surrogate index (no column is loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.query.results import fail

__all__ = ["EXACT_METRICS", "SETTING_METRICS", "DEFAULT_UNITS", "Catalog", "setting_order", "model_key"]

EXACT_METRICS = ("params", "params_no_embedding", "flops", "weight_bytes", "kv_cache_bytes")
SETTING_METRICS = ("flops", "weight_bytes", "kv_cache_bytes")  # exact, but of a setting (shape, dtype)
DEFAULT_UNITS = {"perplexity": "1", "token_accuracy": "1", "params": "1", "params_no_embedding": "1",
                 "flops": "FLOPs", "weight_bytes": "B", "kv_cache_bytes": "B", "latency_ms": "ms", "energy_mj": "mJ",
                 "memory_mb": "MB"}


def setting_order(name: str) -> tuple:
    """Sort key of settings: prefill before decode, then batch, sequence length, dtype."""
    from benchmark.settings import Setting

    s = Setting.parse(name)
    return (s.mode != "prefill", s.batch, s.seq_len, s.dtype)


def model_key(k: tuple) -> str:
    """The surrogate name of a (metric, device, setting) key: ``metric`` or ``metric@device@setting``."""
    from surrogates.model import model_stem

    return model_stem(*k)


@dataclass
class Catalog:
    devices: dict[str, dict]  # device -> {"source", "kind", "settings"}
    cells: dict[tuple, dict]  # (device, setting, metric) -> {"unit", "repeats", ...}: hardware metrics offered
    metrics: dict[str, dict]  # metric -> {"unit", "source", "needs_device", "needs_setting"}
    flops_settings: list[str]  # settings the exact metric ``flops`` knows without a device
    scope: str | None = None  # what a release without measured devices offers, for error messages

    @classmethod
    def build(cls, table: Any, index: dict | None, models: dict, missing: dict) -> "Catalog":
        """From a :class:`benchmark.table.Table` (or None) and a surrogate index (or None);
        ``models`` / ``missing``: the index's entries by (metric, device, setting)."""
        from benchmark.table import device_kind
        devs: dict[str, dict] = {}
        cells: dict[tuple, dict] = {}
        if table is not None:
            for d, meta in table.devices().items():
                devs[d] = {"source": meta["source"], "kind": device_kind(d, meta),
                           "settings": sorted(table.settings(d), key=setting_order)}
                for st in devs[d]["settings"]:
                    for m, hm in table.hardware_metrics(d, st).items():
                        cells[(d, st, m)] = hm
        if index is not None:
            for d, meta in index["devices"].items():
                if d not in devs:
                    devs[d] = {"source": meta["source"], "kind": device_kind(d, meta),
                               "settings": sorted(meta["settings"], key=setting_order)}
                    if "borrowed_from" in meta:  # a space without a release: another release's modeled device
                        devs[d]["borrowed_from"] = meta["borrowed_from"]
            for (m, d, st), e in list(models.items()) + list(missing.items()):
                if d is not None and (d, st, m) not in cells:
                    cells[(d, st, m)] = {"unit": e.get("unit", DEFAULT_UNITS.get(m, "")), "repeats": None}
            for d, e in (index.get("roofline") or {}).items():  # modeled devices: no surrogate, the model
                for st, units in e.get("metrics", {}).items():
                    for m, unit in units.items():
                        cells.setdefault((d, st, m), {"unit": unit, "repeats": 1})
        metrics, flops_settings = _metrics(table, index, devs, cells)
        all_settings = set(flops_settings) | {s for d in devs.values() for s in d["settings"]}
        scope = None
        if table is None and index is not None and index.get("standalone"):
            scope = (f"space {index['space']!r} has no release here: exact metrics, imported metrics and the "
                     f"modeled devices listed; nothing measured")
        return cls(devs, cells, metrics, sorted(all_settings, key=setting_order), scope)

    def check_device(self, device: Any) -> None:
        if not isinstance(device, str) or device not in self.devices:
            allowed = self.available(sorted(self.devices))
            from benchmark.profiling.devices import hwgpt_device_ids

            ours = hwgpt_device_ids().get(device) if isinstance(device, str) else None
            if ours is not None:  # a HW-GPT-Bench user's name: say ours
                allowed = (f"{allowed}; HW-GPT-Bench's {device!r} is {ours!r} here"
                           + ("" if ours in self.devices else ", which this release does not hold"))
            raise fail("device", device, allowed)

    def available(self, names: list[str]) -> Any:
        """What an error lists as allowed: ``names``, and what the release offers at all when that is limited."""
        return f"{names} ({self.scope})" if self.scope else names

    def device_metrics(self, device: str, setting: str | None = None) -> list[str]:
        """The hardware metrics of ``device`` (at ``setting``, or at any)."""
        return [m for (d, s, m) in self.cells if d == device and (setting is None or s == setting)]


def _metrics(table: Any, index: dict | None, devs: dict, cells: dict) -> tuple[dict, list[str]]:
    metrics: dict[str, dict] = {}
    flops_settings = []
    sources = [table.metrics() if table is not None else {}, index["metrics"] if index is not None else {}]
    for declared in sources:
        for name, meta in declared.items():
            if name.startswith("flops_"):
                flops_settings.append(name[len("flops_"):])
            elif name not in metrics and name not in EXACT_METRICS:
                metrics[name] = {"unit": meta.get("unit", "1"), "source": meta.get("source"),
                                 "needs_device": False, "needs_setting": False}
                if meta.get("source") == "imported":  # another benchmark's predictor: say whose
                    metrics[name]["provenance"] = dict(meta["provenance"])
                    metrics[name]["no_interval"] = meta["no_interval"]
    for name in ("params", "params_no_embedding"):
        metrics[name] = {"unit": "1", "source": "exact", "needs_device": False, "needs_setting": False}
    for name in SETTING_METRICS:
        metrics[name] = {"unit": DEFAULT_UNITS[name], "source": "exact", "needs_device": False, "needs_setting": True}
    for (d, st, m), hm in cells.items():
        e = metrics.setdefault(m, {"unit": hm.get("unit", DEFAULT_UNITS.get(m, "")), "source": set(),
                                   "needs_device": True, "needs_setting": True})
        e["source"].add("missing" if "missing_reason" in hm else devs[d]["source"])  # a cell without values
    for e in metrics.values():
        if isinstance(e["source"], set):
            e["source"] = "|".join(sorted(e["source"]))
    return metrics, flops_settings
