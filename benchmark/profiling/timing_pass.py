"""A timing pass: latency of many architectures on one runtime device under the rounds protocol.

A pass times every architecture of a list at every setting on one
:class:`~benchmark.profiling.runtimes.registry.RuntimeDevice` (runtime x dtype x threads), visiting
them in the order :meth:`RoundsProtocol.schedule` gives: ``rounds`` shuffled rounds over all
architectures, an anchor architecture every ``anchor_every`` visits. At each visit the model is
built (seeded random weights: latency does not depend on weight values), handed to the runtime
(ONNX runtimes read an export cached in ``export_dir``), and each setting gets ``warmup`` untimed
and ``repeats_per_round`` timed runs; building and exporting are never timed.

Every visit is appended to a visit log (JSON lines, flushed and fsynced per visit) whose first
line is the pass's header (what is measured, how, on which machine). Rerunning with the same log
resumes after the last complete visit — a kill loses at most the visit in flight — and a log
written by another pass, protocol or machine is refused.

:func:`pass_to_table` turns a log into a table shard: per setting, ``latency_ms`` holds every
timing (``rounds x repeats_per_round`` columns, in round order) and ``measured_at`` the median
visit time; the raw visits, with their timestamps and the anchor's interpolated latency at that
moment, go to the table log ``timings`` so that drift can be analysed and normalised later
(:mod:`benchmark.profiling.protocol`).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.profiling.protocol import ANCHOR, RoundsProtocol, local_anchor
from benchmark.profiling.record_log import append_record, open_records, read_records
from benchmark.profiling.runtimes.registry import RuntimeDevice
from benchmark.settings import DEFAULT_DECODE_TOKENS, resolve_setting

__all__ = ["TimingPass", "run_pass", "read_log", "pass_to_table", "device_settings", "TIMINGS_LOG", "PASSES_LOG",
           "LEVELS_LOG"]

TIMINGS_LOG = "timings"
PASSES_LOG = "timing_passes"  # one record per shard: when the pass ran, how long it timed
LEVELS_LOG = "timing_levels"  # one record per setting of a part levelled to its reference part
# in every table pass's device provenance, so that all parts of a device declare one device
LEVELLING = ("a pass split in parts (--start/--n) may be levelled to one reference part: a part's latency_ms is "
             "its raw timings times, per setting, the anchor's median latency in the reference part over that in "
             "this part (factors in the table log timing_levels; no record = not levelled; the log timings keeps "
             "raw values)")
LOG_FORMAT = "hwlm-bench timing pass log v1"
# a shard declares energy_mj so that a query names why it is missing instead of "no such metric"
ENERGY_NOT_MEASURED = ("not measured: a timing pass measures latency only (peak memory by its memory pass); "
                       "`hwlm profile` measures energy where the host has a counter (RAPL on CPUs, NVML on GPUs)")
# provenance fields that must agree for a log to be resumed here (same machine, same software)
_SAME_MACHINE = ("hostname_sha256", "cpu_model", "torch_version", "runtime", "runtime_version", "threads")


def device_settings(base: Sequence[str], device: RuntimeDevice) -> tuple[str, ...]:
    """The setting names a runtime device is timed at: ``base``'s shapes in the dtype the runtime
    is fed (bf16 for torch bf16; fp32 otherwise — int8 graphs take and return fp32 activations)."""
    dtype = "bf16" if device.dtype == "bf16" else "fp32"
    return tuple(resolve_setting(s).name.rsplit("-", 1)[0] + f"-{dtype}" for s in base)


@dataclass(frozen=True)
class TimingPass:
    """What one pass measures: architecture ids (in table order), device, settings, protocol, anchor."""

    space: str
    archs: tuple[str, ...]
    device: RuntimeDevice
    device_id: str
    settings: tuple[str, ...]
    protocol: RoundsProtocol
    anchor: str
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.archs:
            raise HwlmError("invalid archs: an empty list; allowed: at least one architecture id")
        if len(set(self.archs)) != len(self.archs):
            raise HwlmError("invalid archs: the list repeats an id; allowed: distinct ids")
        for s in self.settings:
            resolve_setting(s)

    def header(self) -> dict[str, Any]:
        """The JSON header of the pass's log (the architectures as a count and a hash)."""
        return {"format": LOG_FORMAT, "space": self.space, "device_id": self.device_id,
                "runtime": self.device.runtime, "dtype": self.device.dtype, "threads": self.device.threads,
                "settings": list(self.settings), "protocol": asdict(self.protocol), "anchor": self.anchor,
                "decode_tokens": self.decode_tokens, "seed": self.seed, "n_archs": len(self.archs),
                "archs_sha256": _archs_sha256(self.archs)}


def read_log(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """``(header line, visits)`` of a visit log; a torn last line (a kill mid-write) is dropped."""
    head, visits = read_records(path, "timing log")
    if head.get("pass", {}).get("format") != LOG_FORMAT:
        raise HwlmError(f"invalid timing log {path}: no {LOG_FORMAT!r} header")
    return head, visits


def _open_log(path: Path, tp: TimingPass, provenance: dict) -> int:
    """Create the log, or check that an existing one is this pass on this machine; returns the
    number of complete visits (a torn last line is cut off)."""
    head, visits = open_records(path, {"pass": tp.header(), "provenance": provenance}, "timing log")
    if head is None:
        return 0
    if head.get("pass", {}).get("format") != LOG_FORMAT:
        raise HwlmError(f"invalid timing log {path}: no {LOG_FORMAT!r} header")
    if head["pass"] != tp.header():
        diff = sorted(k for k in tp.header() if head["pass"].get(k) != tp.header()[k])
        raise HwlmError(f"cannot resume {path}: it is another pass (differs in {diff}); use a new log file")
    old = head.get("provenance", {})
    diff = [k for k in _SAME_MACHINE if old.get(k) != provenance.get(k)]
    if diff:
        raise HwlmError(f"cannot resume {path}: it was measured on another machine or software "
                        f"({', '.join(f'{k}: {old.get(k)!r} vs {provenance.get(k)!r}' for k in diff)}); "
                        f"timings of different hosts are never mixed")
    return len(visits)


def _visits(tp: TimingPass, space) -> Iterator[tuple[int, int, int, Any]]:
    """``(visit index, round, arch index or ANCHOR, Architecture)`` in schedule order."""
    anchor = space.from_id(tp.anchor)
    for k, (r, i) in enumerate(tp.protocol.schedule(len(tp.archs))):
        yield k, int(r), int(i), anchor if i == ANCHOR else space.from_id(tp.archs[i])


def _time_visit(tp: TimingPass, arch, export_dir: Path | None) -> dict[str, list[float]]:
    """Build ``arch`` on the device's runtime and time every setting: ``{setting: [ms, ...]}``."""
    from benchmark.profiling.latency import build_model, device_timer, gc_paused
    from benchmark.profiling.runtimes.export import export_onnx
    from benchmark.profiling.runtimes.workload import runtime_workload

    model = build_model(arch, "cpu", "fp32", tp.seed)
    export = export_onnx(model, export_dir, arch_id=arch.id) if tp.device.runtime != "torch" else None
    backend = tp.device.backend().prepare(model, export)
    timer = device_timer(model.wte.weight.device)
    p = tp.protocol
    out: dict[str, list[float]] = {}
    with backend.running():
        for s in tp.settings:
            w = runtime_workload(backend, s, model.config.vocab_size, arch.search_space.block_size, tp.seed,
                                 tp.decode_tokens)
            for _ in range(p.warmup):
                w.setup()
                w.run()
            times = []
            with gc_paused():
                for _ in range(p.repeats_per_round):
                    w.setup()
                    times.append(timer(w.run) / w.tokens)
            out[s] = times
    return out


def run_pass(tp: TimingPass, log: str | os.PathLike, export_dir: str | os.PathLike | None = None,
             progress: bool = True, max_seconds: float | None = None) -> int:
    """Run (or resume) the pass, appending each visit to ``log``; returns the visits now in it.

    ``export_dir`` caches ONNX exports across visits (ONNX runtimes; default a directory beside the
    log); ``max_seconds`` stops cleanly after the visit that crosses it. Hold nothing else on the
    CPUs the process is pinned to: every visit is a measurement.
    """
    import torch
    from tqdm.auto import tqdm

    from benchmark.profiling.latency import device_lock
    from benchmark.profiling.runtimes.registry import runtime_device_provenance
    from benchmark.spaces import get_space

    sp = get_space(tp.space)
    log = Path(log)
    if export_dir is None and tp.device.runtime != "torch":
        export_dir = _default_export_dir(log)
    torch.set_num_threads(tp.device.threads)  # building models and exporting stay on the device's threads
    prov = runtime_device_provenance(tp.device.backend())
    prov.pop("date_utc", None)
    prov.pop("load_avg_1m", None)
    prov["weights"] = _weights_statement(tp.seed)
    done = _open_log(log, tp, prov)
    total = len(tp.protocol.schedule(len(tp.archs)))
    start = time.monotonic()
    bar = tqdm(total=total, initial=done, desc=f"timing {tp.device_id}", unit="visit", disable=not progress,
               dynamic_ncols=True)
    with open(log, "ab") as f, device_lock("cpu"):
        for k, r, i, arch in _visits(tp, sp):
            if k < done:
                continue
            t0 = time.time()
            ms = _time_visit(tp, arch, Path(export_dir) if export_dir is not None else None)
            append_record(f, {"visit": k, "round": r, "arch": i, "unix_time": t0, "ms": ms})
            done = k + 1
            bar.update(1)
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                break
    bar.close()
    return done


def _weights_statement(seed: int) -> str:
    return (f"seeded random (seed {seed}), built at every visit: latency and memory do not depend "
            f"on weight values (same operators, same shapes)")


def _current_provenance(prov: dict, header: dict) -> dict:
    """A log header's provenance in today's wording, so that two halves of one device's pass, logged
    by different versions of :func:`run_pass`, declare one device and their shards merge. Older logs
    left the weights unstated (they were the same seeded random weights: :func:`_time_visit` has
    always built them from the pass's seed) and recorded an int8 device's ``quantized_nodes`` as
    null (a count belongs to one model, not to a device)."""
    prov = dict(prov)
    prov.setdefault("weights", _weights_statement(header["seed"]))
    q = prov.get("quantization")
    if isinstance(q, dict) and "quantized_nodes" in q and q["quantized_nodes"] is None:
        prov["quantization"] = {k: v for k, v in q.items() if k != "quantized_nodes"}
    return prov


def _default_export_dir(log: Path) -> Path:
    return log.with_name(log.stem + ".onnx")


def _export_settings(export_dir: Path, ids: Sequence[str], recorded: dict) -> dict:
    """The export fields of a pass's provenance from its graphs' ``.export.json`` records: one
    setting for every exported architecture, agreeing with what the log's header recorded."""
    from benchmark.profiling.runtimes.export import read_export_record

    if not export_dir.is_dir():
        if recorded.get("export_opset") is not None:
            return {}  # the header names the export settings; the graphs are gone
        raise HwlmError(f"invalid export_dir: {export_dir} is not a directory; allowed: the pass's export "
                        f"directory (its .export.json records name the ONNX opset and exporter)")
    records = (read_export_record(export_dir, i) for i in ids)
    made = {tuple(sorted(e.settings().items())) for e in records if e is not None}
    if len(made) != 1:
        raise HwlmError(f"invalid export_dir: {export_dir} holds {len(made)} export settings for the pass's "
                        f"{len(ids)} architectures; allowed: the one directory the pass exported into")
    settings = dict(made.pop())
    differ = [k for k, v in settings.items() if recorded.get(k) is not None and recorded[k] != v]
    if differ:
        raise HwlmError(f"invalid export_dir: its graphs were made with {({k: settings[k] for k in differ})}, the "
                        f"log records {({k: recorded[k] for k in differ})}; allowed: the pass's own exports")
    return settings


def _archs_sha256(archs: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(archs).encode()).hexdigest()


def _same_archs(archs: Sequence[str], header: dict) -> bool:
    """Whether ``archs`` are the pass's architectures, in order, in either id spelling (a log written
    when ids were concatenated hashes that form)."""
    from benchmark.spaces import Architecture, concatenated_id

    if _archs_sha256(archs) == header["archs_sha256"]:
        return True
    try:
        parsed = [Architecture.from_id(a) for a in archs]
    except ValueError:
        return False
    return header["archs_sha256"] in (_archs_sha256([a.id for a in parsed]),
                                      _archs_sha256([concatenated_id(a) for a in parsed]))


def _anchor_series(visits: list[dict], setting: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([v["unix_time"] for v in visits if v["arch"] == ANCHOR], float)
    ms = np.array([np.median(v["ms"][setting]) for v in visits if v["arch"] == ANCHOR], float)
    return t, ms


def _memory(memory_log, h: dict, sp) -> dict[str, dict[str, float]]:
    from benchmark.profiling.memory_pass import memory_values

    head, values = memory_values(memory_log)
    key = RuntimeDevice(h["runtime"], h["dtype"], h["threads"]).key
    if head["device_key"] != key or sorted(head["settings"]) != sorted(h["settings"]):
        raise HwlmError(f"invalid memory_log {memory_log}: device {head['device_key']!r} at {head['settings']}; "
                        f"allowed: a memory pass of {key!r} at the timing pass's settings {h['settings']}")
    return {sp.from_id(a).id: v for a, v in values.items()}


def _memory_from_table(path, h: dict, prov: dict, sp) -> tuple[dict[str, dict[str, float]], dict]:
    """``memory_mb`` of the eager PyTorch fp32 device copied from a table profiled by ``hwlm profile``
    on the same host and PyTorch build. That value counts allocator events of one inference
    (:mod:`benchmark.profiling.memory`): exact bytes that do not depend on timing, load or thread
    count, so a re-timing keeps it instead of measuring it again. Returns the values and what the
    device's provenance records about them."""
    from benchmark.table import Table

    if (h["runtime"], h["dtype"]) != ("torch", "fp32"):
        raise HwlmError(f"invalid memory_from {path}: the pass is {h['runtime']} {h['dtype']}; allowed only for "
                        "PyTorch eager fp32 (the runtime whose allocator events give memory_mb); "
                        "measure other runtimes with a memory pass (--memory)")
    t = Table(path)
    dev = h["device_id"]
    if dev not in t.devices() or t.devices()[dev].get("source") != "measured":
        raise HwlmError(f"invalid memory_from {path}: no measured device {dev!r}; allowed: a table profiled on "
                        f"{dev!r}")
    theirs = t.provenance(dev)
    for k in ("hostname_sha256", "cpu_model", "torch_version"):
        if theirs.get(k) != prov.get(k):
            raise HwlmError(f"invalid memory_from {path}: {k} is {theirs.get(k)!r} there and {prov.get(k)!r} in the "
                            "pass; allowed: a table profiled on the same host with the same PyTorch build")
    ids = [sp.from_id(a).id for a in t.ids]
    values: dict[str, dict[str, float]] = {a: {} for a in ids}
    for s in h["settings"]:
        if s not in t.settings(dev) or "memory_mb" not in t.hardware_metrics(dev, s):
            raise HwlmError(f"invalid memory_from {path}: {dev} has no memory_mb at {s}; allowed: a table with "
                            f"memory_mb at every setting of the pass ({', '.join(h['settings'])})")
        col = np.nanmedian(t.hardware(dev, s, "memory_mb"), axis=1) if len(ids) else np.empty(0)
        for a, v in zip(ids, col):
            values[a][s] = float(v)
    stamps = np.concatenate([t.measured_at(dev, s) for s in h["settings"]])
    first = float(stamps[np.isfinite(stamps)].min()) if np.isfinite(stamps).any() else float("nan")
    note = {"method": "allocator events of one inference (benchmark.profiling.memory); exact bytes, independent "
                      "of timing, load and threads",
            "copied_from_table_sha256": t.sha256(),
            "measured": time.strftime("%Y-%m-%d", time.gmtime(first)) if np.isfinite(first) else None}
    return values, note


def _reference_level(ref: str | os.PathLike, dev: str, anchor: str, protocol: dict) -> dict[str, float]:
    """Per setting, the anchor's median latency in the reference part ``ref`` (a shard of the same
    device, anchor and protocol, with its raw timings): the median of the ``anchor_ms`` its
    ``timings`` log stores on the anchor's own rows, which is each anchor visit's median latency."""
    from benchmark.table import Table

    t = Table(ref)
    prov = t.devices().get(dev, {}).get("provenance")
    if prov is None or TIMINGS_LOG not in t.logs():
        raise HwlmError(f"invalid level_to: {ref} has no timing pass of {dev}; allowed: a shard of the same "
                        f"device written by pass_to_table (with its raw timings)")
    if prov.get("anchor_arch") != anchor or prov.get("timing_protocol") != protocol:
        raise HwlmError(f"invalid level_to: {ref} timed {dev} with anchor {prov.get('anchor_arch')} and protocol "
                        f"{prov.get('timing_protocol')}; allowed: a part with this pass's anchor {anchor} and "
                        f"protocol {protocol}")
    lg = t.log(TIMINGS_LOG)
    sel = (lg["device"] == dev) & (lg["arch"] == "anchor")
    settings, anchor_ms = lg["setting"][sel].astype(str), lg["anchor_ms"][sel].astype(float)
    return {str(s): float(np.median(anchor_ms[settings == s])) for s in np.unique(settings)}


def pass_to_table(log: str | os.PathLike, out: str | os.PathLike, archs: Sequence[str] | None = None,
                  memory_log: str | os.PathLike | None = None,
                  memory_from: str | os.PathLike | None = None,
                  export_dir: str | os.PathLike | None = None,
                  level_to: str | os.PathLike | None = None) -> Path:
    """Write the visits of ``log`` as a table shard ``out`` (one row per architecture visited at
    least once; see the module docstring). ``archs``: the pass's architecture ids (checked against
    the header's hash). Rows of architectures not yet visited in every round have NaN columns.
    ``memory_log``: a :mod:`~benchmark.profiling.memory_pass` log of the same device, stored as
    ``memory_mb`` (peak resident MB of one unit; NaN for architectures outside its subset).
    ``memory_from``: for the eager PyTorch fp32 device only, a table of the same host whose
    allocator-event ``memory_mb`` is kept (:func:`_memory_from_table`); not with ``memory_log``.
    ``export_dir``: for ONNX runtimes, the pass's export directory (default beside the log, as
    :func:`run_pass`); the graphs' ``.export.json`` records give the provenance's export fields
    (opset, exporter, versions), which must be one setting for the whole pass.
    ``level_to``: for one part of a pass split with ``--start``/``--n``, the shard of the part it is
    levelled to (same device, anchor and protocol): its stored latencies are scaled per setting by
    the ratio of the anchor's median latency there to that here, so a change of the host's level
    between sessions does not land on the architectures one part timed; the factors go to the log
    ``timing_levels``, the raw timings stay in ``timings``."""
    from benchmark.profiling.runner import declare_exact_metrics, exact_metrics
    from benchmark.spaces import get_space
    from benchmark.table import TableWriter

    head, visits = read_log(log)
    h = head["pass"]
    prov = _current_provenance(head["provenance"], h)
    if archs is None or not _same_archs(archs, h):
        raise HwlmError(f"invalid archs for {log}: not the {h['n_archs']} architectures the pass was run on")
    sp = get_space(h["space"])
    proto = RoundsProtocol(**h["protocol"])
    rpr, rounds = proto.repeats_per_round, proto.rounds
    settings = [resolve_setting(s) for s in h["settings"]]
    per_arch: dict[int, list[dict]] = {}
    for v in visits:
        if v["arch"] != ANCHOR:
            per_arch.setdefault(v["arch"], []).append(v)
    dev = h["device_id"]
    level = {s.name: 1.0 for s in settings}
    if level_to is not None:
        ref = _reference_level(level_to, dev, sp.from_id(h["anchor"]).id, h["protocol"])
        missing = [s for s in level if s not in ref]
        if missing:
            raise HwlmError(f"invalid level_to: no anchor timings of {missing} in {level_to}; allowed: a part whose "
                            f"anchor was timed at every setting of this pass")
        if not any(v["arch"] == ANCHOR for v in visits):
            raise HwlmError(f"invalid level_to: {log} has no anchor visit to level; allowed: a part with anchor visits")
        own = {s: float(np.median(_anchor_series(visits, s)[1])) for s in level}
        level = {s: ref[s] / own[s] for s in level}
    if memory_log is not None and memory_from is not None:
        raise HwlmError("invalid memory_from: given with memory_log; allowed: one source of memory_mb")
    memory, memory_note = None, None
    if memory_log is not None:
        from benchmark.profiling.runtimes.rss import METHOD

        memory, memory_note = _memory(memory_log, h, sp), {"method": METHOD}
    elif memory_from is not None:
        memory, memory_note = _memory_from_table(memory_from, h, prov, sp)
    if h["runtime"] != "torch":  # the runtime reads exported ONNX graphs
        made = _export_settings(Path(export_dir) if export_dir is not None else _default_export_dir(Path(log)),
                                [archs[i] for i in per_arch], prov)
        prov = {**prov, **made}
    out = Path(out)
    if out.exists():
        raise HwlmError(f"invalid out: {out} exists; allowed: a new file (shards are written once, then merged)")
    with TableWriter(out, sp.name, flush_every=None) as w:  # written once: one rewrite, not one per log record
        declare_exact_metrics(w, settings, h["decode_tokens"])
        extra_prov = {"memory_mb": memory_note} if memory_note else {}
        w.declare_device(dev, source="measured", provenance={**prov, "timing_protocol": h["protocol"],
                                                              "anchor_arch": sp.from_id(h["anchor"]).id,
                                                              "part_levelling": LEVELLING, **extra_prov})
        for s in settings:
            extra = {"decode_tokens": h["decode_tokens"]} if s.mode == "decode" else {}
            w.declare_setting(dev, s, warmup=proto.warmup, repeats=proto.repeats, rounds=rounds,
                              repeats_per_round=rpr, **extra)
            w.declare_hardware_metric(dev, s, "latency_ms", unit="ms", repeats=proto.repeats)
            w.declare_hardware_metric(dev, s, "energy_mj", unit="mJ", repeats=proto.repeats,
                                      missing_reason=ENERGY_NOT_MEASURED)
            if memory is not None:
                w.declare_hardware_metric(dev, s, "memory_mb", unit="MB", repeats=1)
        parsed = {i: sp.from_id(archs[i]) for i in per_arch}  # the log may hold an older id format
        for i in sorted(per_arch):
            arch = parsed[i]
            hw, when = {}, {}
            for s in settings:
                row = np.full(proto.repeats, np.nan)
                for v in per_arch[i]:
                    row[v["round"] * rpr:(v["round"] + 1) * rpr] = v["ms"][s.name]
                hw[(dev, s.name, "latency_ms")] = row * level[s.name]
                when[(dev, s.name)] = float(np.median([v["unix_time"] for v in per_arch[i]]))
                if memory is not None:
                    hw[(dev, s.name, "memory_mb")] = [memory.get(arch.id, {}).get(s.name, np.nan)]
            w.append(arch, metrics=exact_metrics(arch, settings, h["decode_tokens"]), hardware=hw, measured_at=when)
        times = np.array([v["unix_time"] for v in visits], float)
        if len(times):
            gaps = np.diff(np.sort(times))
            w.log(PASSES_LOG, {"device": dev, "archs": len(per_arch), "visits": len(visits),
                               "start": float(times.min()), "end": float(times.max()),
                               # a gap of minutes is the pass stopped and resumed, not timing
                               "busy_s": float(gaps[gaps < 600].sum())})
            if level_to is not None:
                for s in settings:
                    w.log(LEVELS_LOG, {"device": dev, "setting": s.name, "start": float(times.min()),
                                       "end": float(times.max()), "reference": Path(level_to).name,
                                       "reference_anchor_ms": ref[s.name], "anchor_ms": own[s.name],
                                       "factor": level[s.name]})
        local = {}  # the anchor's latency at every visit, per setting
        for s in settings:
            t_a, ms_a = _anchor_series(visits, s.name)
            local[s.name] = local_anchor(times, t_a, ms_a) if len(t_a) else np.full(len(times), np.nan)
        for k, v in enumerate(visits):
            name = "anchor" if v["arch"] == ANCHOR else parsed[v["arch"]].id
            for s in settings:
                loc = float(local[s.name][k])
                for j, ms in enumerate(v["ms"][s.name]):
                    w.log(TIMINGS_LOG, {"device": dev, "setting": s.name, "arch": name, "round": v["round"],
                                        "visit": v["visit"], "repeat": j, "unix_time": v["unix_time"], "ms": ms,
                                        "anchor_ms": loc})
    return out
