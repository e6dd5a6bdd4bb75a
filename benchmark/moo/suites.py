"""Benchmark suites: fixed objective sets with fixed normalisation, reference point, budget and seeds.

Suites are versioned JSON shipped with the package (``benchmark/moo/suites.json``; another file
can be passed with ``--suites``). A suite names devices by *role* — ``cpu:measured``,
``gpu:modeled:h100`` (``kind:source[:substring]``) — or by id, and settings by a preference
list; :meth:`Suite.resolve` turns them into concrete ids against a release's devices, with a
clear error listing what the release has. Users override devices (``role=id``), mode, candidates,
budget and seeds; the resolved suite is stored with every result so runs are comparable only
when their resolved suites agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from benchmark.moo.problems import CANDIDATES, METRICS, QUERY_MODES, Objective, Problem, ProblemError, resolve_device

__all__ = ["Suite", "SUITES_FILE", "load_suites", "get_suite", "SUITES_VERSION"]

SUITES_FILE = Path(__file__).with_name("suites.json")
SUITES_VERSION = 1


def _fail(field_: str, value: Any, allowed: Any) -> ProblemError:
    return ProblemError.invalid(field_, value, allowed)


@dataclass(frozen=True)
class Suite:
    name: str
    objectives: tuple[dict, ...]
    reference_point: tuple[float, ...]
    budget: int
    seeds: int
    mode: str = "auto"
    noise: bool = False
    candidates: str = "space"
    space: str = "t"
    description: str = ""
    version: int = SUITES_VERSION
    needs: str = ""  # what the suite needs that a release may lack, said when it cannot resolve

    def __post_init__(self) -> None:
        if not self.objectives:
            raise _fail(f"suite {self.name!r} objectives", self.objectives, "a non-empty list")
        for o in self.objectives:
            if o.get("metric") not in METRICS:
                raise _fail(f"suite {self.name!r} objective metric", o.get("metric"), sorted(METRICS))
            b = o.get("bounds")
            if not isinstance(b, (list, tuple)) or len(b) != 2:
                raise _fail(f"suite {self.name!r} bounds of {o.get('metric')}", b, "[lower, upper]")
        if len(self.reference_point) != len(self.objectives):
            raise _fail(f"suite {self.name!r} reference_point", list(self.reference_point),
                        f"{len(self.objectives)} numbers (one per objective, normalised space)")
        if int(self.budget) < 1:
            raise _fail(f"suite {self.name!r} budget", self.budget, "an integer >= 1")
        if int(self.seeds) < 1:
            raise _fail(f"suite {self.name!r} seeds", self.seeds, "an integer >= 1")
        if self.mode not in QUERY_MODES:
            raise _fail(f"suite {self.name!r} mode", self.mode, list(QUERY_MODES))
        if self.candidates not in CANDIDATES:
            raise _fail(f"suite {self.name!r} candidates", self.candidates, list(CANDIDATES))

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any], version: int = SUITES_VERSION) -> "Suite":
        known = {"objectives", "reference_point", "budget", "seeds", "mode", "noise", "candidates", "space",
                 "description", "needs"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise _fail(f"suite {name!r} fields", unknown, sorted(known))
        ref = d.get("reference_point", 1.1)
        n = len(d.get("objectives", ()))
        ref = tuple(float(r) for r in (ref if isinstance(ref, (list, tuple)) else [ref] * n))
        return cls(name=name, objectives=tuple(dict(o) for o in d.get("objectives", ())), reference_point=ref,
                   budget=int(d.get("budget", 200)), seeds=int(d.get("seeds", 5)), mode=d.get("mode", "auto"),
                   noise=bool(d.get("noise", False)), candidates=d.get("candidates", "space"),
                   space=d.get("space", "t"), description=d.get("description", ""), version=version,
                   needs=d.get("needs", ""))

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "description": self.description, "space": self.space,
                "objectives": [dict(o) for o in self.objectives], "reference_point": list(self.reference_point),
                "budget": self.budget, "seeds": self.seeds, "mode": self.mode, "noise": self.noise,
                "candidates": self.candidates, **({"needs": self.needs} if self.needs else {})}

    def override(self, **changes: Any) -> "Suite":
        """A copy with ``budget``, ``seeds``, ``mode``, ``noise`` or ``candidates`` replaced (None = keep)."""
        allowed = {"budget", "seeds", "mode", "noise", "candidates"}
        bad = sorted(set(changes) - allowed)
        if bad:
            raise _fail("suite override", bad, sorted(allowed))
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def resolve(self, evaluator: Any, devices: Mapping[str, str] | None = None) -> "Suite":
        """Concrete device ids and settings for ``evaluator`` (a Benchmark). ``devices`` maps a role
        (or a device id of the suite) to the id to use instead. An objective's ``source`` (e.g.
        ``imported``, ``modeled``, ``measured``: its label) must be what the evaluator serves."""
        devices = dict(devices or {})
        table_devices = evaluator.devices()
        objs, used = [], set()
        for o in self.objectives:
            o = dict(o)
            dev = o.get("device")
            if dev is not None:
                dev_id = devices.get(dev)
                if dev_id is not None:
                    used.add(dev)
                try:
                    dev_id = resolve_device(dev_id or dev, table_devices)
                except ProblemError as e:
                    if not self.needs:
                        raise
                    raise ProblemError(f"suite {self.name!r} needs {self.needs}; here: {e}") from None
                o["role"] = o.get("role", dev)
                o["device"] = dev_id
            if "source" in o:
                have = (table_devices[o["device"]]["source"] if dev is not None
                        else evaluator.metrics().get(o["metric"], {}).get("source"))
                if have != o["source"]:
                    raise ProblemError(f"invalid suite {self.name!r}: objective {o['metric']} is labelled "
                                       f"{o['source']!r}, but the release serves it as {have!r}")
            s = o.get("setting")
            if s is not None:
                prefs = [s] if isinstance(s, str) else list(s)
                if dev is not None:
                    have = list(evaluator.settings(o["device"]))
                    hit = next((p for p in prefs if p in have), None)
                    if hit is None:
                        raise ProblemError(f"invalid setting for objective {o['metric']} on {o['device']}: none of "
                                           f"{prefs} exists; settings there: {have}")
                    o["setting"] = hit
                else:
                    if len(prefs) != 1:
                        raise _fail(f"setting of {o['metric']}", s, "one setting name")
                    o["setting"] = prefs[0]
            objs.append(o)
        unknown = sorted(set(devices) - used)
        if unknown:
            roles = sorted({str(o.get("device")) for o in self.objectives if o.get("device")})
            raise _fail("device override", unknown, f"roles of suite {self.name!r}: {roles}")
        return replace(self, objectives=tuple(objs))

    def value_sources(self) -> list[tuple[str, str]]:
        """Per objective, its label and where its values come from, read from the suite itself (no
        release needed): exact costs, imported values, a modeled device's roofline, or a measured
        table (device or perplexity) with the suite's mode deciding whether the surrogate fitted on
        it answers for architectures the table lacks."""
        measured = {"table": "measured table only", "surrogate": "surrogate of the measured table",
                    "auto": "measured table, else its surrogate"}[self.mode]
        out = []
        for o in self.objectives:
            dev = o.get("device")
            source = o.get("source")
            if source is None and dev is not None and ":" in dev:
                source = dev.split(":")[1]  # a role kind:source[:substring]
            if o["metric"] in ("params", "flops"):
                where = "exact (computed)"
            elif source == "imported":
                where = "imported (HW-GPT-Bench)"
            elif source == "modeled":
                where = "modeled (roofline)"
            elif source == "measured" or dev is None:
                where = measured
            else:  # a role of any source, or a device id without a source label
                where = f"{measured} if the device is measured, roofline if modeled"
            out.append(("@".join(x for x in (o["metric"], dev) if x), where))
        return out

    def objective_list(self) -> list[Objective]:
        """Objectives of a resolved suite."""
        out = []
        for o in self.objectives:
            dev, s = o.get("device"), o.get("setting")
            if (dev is not None and ":" in dev) or (s is not None and not isinstance(s, str)):
                raise ProblemError(f"suite {self.name!r} is not resolved (device {dev!r}, setting {s!r}); call resolve()")
            lo, hi = o["bounds"]
            out.append(Objective(o["metric"], dev, s, float(lo), float(hi), bool(o.get("log", False))))
        return out

    def problem(self, evaluator: Any, **kwargs: Any) -> Problem:
        """The :class:`Problem` of this (resolved) suite on ``evaluator``."""
        return Problem(self.objective_list(), evaluator, space=self.space, mode=self.mode, noise=self.noise,
                       candidates=self.candidates, **kwargs)


def load_suites(path: str | Path | None = None) -> dict[str, Suite]:
    """All suites of a suites JSON file (default: the shipped ``suites.json``)."""
    p = Path(path) if path is not None else SUITES_FILE
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ProblemError(f"cannot read suites file {p}: {e}") from None
    if d.get("format") != "hwlm-bench moo suites":
        raise _fail(f"format of {p}", d.get("format"), "'hwlm-bench moo suites'")
    version = int(d.get("version", 0))
    if version > SUITES_VERSION:
        raise _fail(f"version of {p}", version, f"<= {SUITES_VERSION} (upgrade hwlm-bench)")
    return {name: Suite.from_dict(name, s, version) for name, s in d.get("suites", {}).items()}


def get_suite(name: str, path: str | Path | None = None) -> Suite:
    suites = load_suites(path)
    if name not in suites:
        raise _fail("suite", name, sorted(suites))
    return suites[name]
