"""Planning: each requested metric resolved once per (metrics, device, setting) to where its
values come from — an exact formula, a modeled device's roofline model, the table (with a
surrogate for architectures it lacks), another benchmark's predictor (``imported``), or nothing (missing, with the reason). Plans are cached;
the executor (:mod:`benchmark.query.execute`) runs them for one architecture or a million."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmark.query.catalog import EXACT_METRICS, SETTING_METRICS, Catalog
from benchmark.query.lookup import Column, TableLookup
from benchmark.query.models import Models
from benchmark.query.results import QueryError, fail

__all__ = ["Spec", "Plan", "Planner"]


@dataclass(frozen=True)
class Spec:
    """Where one metric's values come from."""

    metric: str
    kind: str  # "exact", "value" (table and/or surrogate or roofline), "imported", "missing"
    device: str | None
    setting: str | None
    unit: str
    reason: str | None = None  # why there is no value (missing) or no interval (imported)
    roofline: bool = False  # a modeled device's latency/energy: answered by the roofline model
    transfer: bool = False  # an overlay device's latency: answered by its model (query.overlay)


@dataclass
class Plan:
    specs: tuple[Spec, ...]
    device: str | None
    setting: str | None  # the resolved setting (the device's default when none was given; without a
    # device, that of the exact metrics of a setting, e.g. flops)
    hw_setting: str | None  # the setting of the hardware metrics (features of surrogates are built at it)
    units: dict[str, str]
    columns: dict[str, Column | None] = field(default_factory=dict)  # metric -> its table column (values)
    surrogates: dict = field(default_factory=dict)  # metric -> its surrogate, loaded on first use

    @property
    def has_exact(self) -> bool:
        return any(sp.kind == "exact" for sp in self.specs)


class Planner:
    def __init__(self, catalog: Catalog, lookup: TableLookup, models: Models):
        self.catalog, self.lookup, self.models = catalog, lookup, models
        self._plans: dict[tuple, Plan] = {}

    def plan(self, metrics: Any, device: Any, setting: Any) -> Plan:
        """The (cached) plan of a query's ``metrics`` / ``device`` / ``setting`` arguments; QueryError
        naming the bad argument otherwise."""
        key = (tuple(metrics) if isinstance(metrics, (list, tuple)) else metrics, device, setting)
        try:
            hit = self._plans.get(key)
        except TypeError:  # unhashable input: validated below, not cached
            hit, key = None, None
        if hit is not None:
            return hit
        plan = self._make(metrics, device, setting)
        if key is not None:
            self._plans[key] = plan
        return plan

    def resolve_setting(self, device: str | None, setting: Any) -> str | None:
        if device is not None:
            self.catalog.check_device(device)
            available = self.catalog.devices[device]["settings"]
            if setting is None:
                return available[0] if available else None
            if setting not in available:
                raise fail(f"setting of device {device!r}", setting, available)
            return setting
        if setting is None:
            return None
        from benchmark.settings import Setting

        try:
            return Setting.parse(setting).name
        except ValueError as e:
            raise QueryError(f"invalid setting: {setting!r}; allowed: {self.catalog.flops_settings} or any "
                             f"canonical setting name ({e})") from None

    def _names(self, metrics: Any, device: str | None, st: str | None) -> list[str]:
        cat = self.catalog
        if metrics is None:
            # all metrics: the byte counts only when named (closed forms that would slow every
            # single query for no news)
            names = [m for m, e in cat.metrics.items() if not e["needs_device"] and m not in SETTING_METRICS]
            if st is not None or cat.flops_settings:
                names.append("flops")
            if device is not None:
                names += cat.device_metrics(device, st)
            return names
        if isinstance(metrics, str):
            return [metrics]
        if isinstance(metrics, (list, tuple)) and all(isinstance(m, str) for m in metrics):
            if len(set(metrics)) != len(metrics):
                raise fail("metrics", metrics, "distinct metric names")
            return list(metrics)
        raise fail("metrics", metrics, f"None (all), a metric name or a list of names from {sorted(cat.metrics)}")

    def _make(self, metrics: Any, device: Any, setting: Any) -> Plan:
        cat = self.catalog
        st = self.resolve_setting(device, setting)
        specs = []
        for m in self._names(metrics, device, st):
            if m not in cat.metrics:
                raise fail("metric", m, cat.available(sorted(cat.metrics)))
            e = cat.metrics[m]
            if m in SETTING_METRICS:
                fs = st if st is not None else (cat.flops_settings[0] if cat.flops_settings else None)
                if fs is None:
                    raise fail(f"setting (needed by metric {m!r})", None, "a setting name such as "
                               "'prefill-b1-s256-fp32'")
                specs.append(Spec(m, "exact", None, fs, e["unit"]))
            elif m in EXACT_METRICS:
                specs.append(Spec(m, "exact", None, None, "1"))
            elif e["source"] == "imported":  # another benchmark's predictor, evaluated here
                specs.append(Spec(m, "imported", None, None, e["unit"], e["no_interval"]))
            elif not e["needs_device"]:
                specs.append(self._value_spec(m, None, None, e["unit"]))
            else:
                if device is None:
                    raise fail(f"device (metric {m!r} is measured per device)", None, sorted(cat.devices))
                if (device, st, m) not in cat.cells:
                    raise fail(f"metric at device {device!r}, setting {st!r}", m, sorted(cat.device_metrics(device, st)))
                specs.append(self._value_spec(m, device, st, cat.cells[(device, st, m)].get("unit", e["unit"])))
        hw_setting = next((sp.setting for sp in specs if sp.device is not None), None)
        columns = {sp.metric: self.lookup.column(sp.metric, sp.device, sp.setting)
                   for sp in specs if sp.kind == "value"}
        if st is None:  # no device: the setting the exact metrics of a setting were computed at (if any)
            st = next((sp.setting for sp in specs if sp.metric in SETTING_METRICS), None)
        return Plan(tuple(specs), device, st, hw_setting, {sp.metric: sp.unit for sp in specs}, columns)

    def _value_spec(self, metric: str, device: str | None, setting: str | None, unit: str) -> Spec:
        if device is not None and self.models.roofline(device, setting, metric) is not None:
            return Spec(metric, "value", device, setting, unit, None, True)
        if device is not None and self.models.transfer(device, setting, metric) is not None:
            return Spec(metric, "value", device, setting, unit, transfer=True)
        col = self.lookup.column(metric, device, setting)
        if col is not None:
            reason = col.missing_reason
        else:
            miss = self.models.missing.get((metric, device, setting))
            reason = miss["reason"] if miss is not None else None
        return Spec(metric, "missing" if reason else "value", device, setting, unit, reason)
