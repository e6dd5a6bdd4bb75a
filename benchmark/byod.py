"""Bring your own device: time K architectures on this machine and predict the whole space.

``hwlm device add NAME --out DIR`` (:func:`add_device`):

1. **Design.** K architectures (``--budget``, default 30) of the release's table, stratified over
   the release's reference latencies: the rows are sorted by their mean standardised log latency
   on the reference devices (all settings), cut into K strata of equal size, and one row is drawn
   from each (seeded, recorded). ``scripts/byod_validation.py`` compares it with uniform draws.
2. **Measure.** A timing pass (:mod:`benchmark.profiling.timing_pass`: rounds over shuffled
   architectures with anchors, every timing kept) on the runtime device ``--runtime`` /
   ``--dtype`` / ``--threads``, with a progress bar and its ETA; its visit log lives in
   ``DIR/run/`` and a rerun of the same command resumes it.
3. **Fit.** Per setting, the four predictors of :mod:`surrogates.transfer` (FLOPs scaling,
   roofline calibrated on the K rows, XGBoost on the K rows, transfer from the release's devices),
   cross-validated on the K rows; the one with the lowest cross-validated error is kept.
4. **Write** the overlay (:mod:`benchmark.query.overlay`): ``shard.h5``, ``overlay.json``,
   ``MANIFEST.json``; ``Benchmark(space, overlays=[DIR])`` serves it.

The reference columns of the transfer model are the release's devices and the uncalibrated roofline
model of this machine's spec sheet (registry entry matching the CPU, else an assumed one).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.errors import HwlmError

__all__ = ["ByodError", "DEFAULT_BUDGET", "DESIGNS", "RUNTIME_ALIASES", "DeviceRequest", "design_scores",
           "choose_rows", "fit_device", "add_device", "add_device_parser", "setting_inputs"]

DEFAULT_BUDGET = 30
DESIGNS = ("stratified", "random")
RUNTIME_ALIASES = {"torch": "torch", "pytorch": "torch", "ort": "ort", "onnxruntime": "ort", "ov": "ov",
                   "openvino": "ov"}


class ByodError(HwlmError):
    """Invalid input to ``hwlm device add`` (a runtime, a budget, a name, an output directory)."""


@dataclass(frozen=True)
class DeviceRequest:
    """What ``hwlm device add`` was asked for (recorded in the overlay)."""

    name: str
    out: str
    runtime: str = "torch"
    dtype: str = "fp32"
    threads: int = 1
    budget: int = DEFAULT_BUDGET
    release: str | None = None
    space: str = "t"
    design: str = "stratified"
    seed: int = 0
    rounds: int = 3
    repeats_per_round: int = 4
    warmup: int = 2
    settings: tuple[str, ...] | None = None  # None: the space's default settings, in the runtime's dtype


# ---------------------------------------------------------------------------- design
def design_scores(reference_logs: Sequence[np.ndarray]) -> np.ndarray:
    """Each row's mean standardised log latency over every reference column of every setting."""
    Z = np.column_stack([np.asarray(r, np.float64) for r in reference_logs])
    sd = Z.std(0)
    Z = (Z[:, sd > 0] - Z[:, sd > 0].mean(0)) / sd[sd > 0]
    return Z.mean(1) if Z.shape[1] else np.zeros(len(Z))


def choose_rows(scores: np.ndarray, k: int, seed: int, design: str = "stratified") -> np.ndarray:
    """K distinct row indices, sorted: one uniform draw from each of K equal-size strata of
    ``scores`` (``stratified``) or K uniform draws (``random``)."""
    n = len(scores)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ByodError.invalid("budget", k, f"an integer in 1..{n} (the release table's architectures)")
    rng = np.random.default_rng([int(seed), int(k)])
    if design == "random":
        return np.sort(rng.choice(n, k, replace=False))
    if design != "stratified":
        raise ByodError.invalid("design", design, list(DESIGNS))
    order = np.argsort(scores, kind="stable")
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return np.sort(np.array([order[rng.integers(a, b)] for a, b in zip(edges[:-1], edges[1:])]))


# ---------------------------------------------------------------------------- fitting
def setting_inputs(bench: Any, setting: str, decode_tokens: int, enc: np.ndarray, own_spec: dict,
                   exclude: Sequence[str] = (), uncalibrated_from: Sequence[str] = ()):
    """``(references, Inputs)`` of encodings ``enc`` at a device's ``setting``: the release's
    reference columns (:func:`benchmark.query.overlay.release_references`) plus this device's own
    spec sheet (uncalibrated roofline)."""
    from benchmark.query.overlay import release_references, surrogate_values
    from surrogates.transfer import Inputs, reference_matrix, roofline_reference

    refs = release_references(bench.table, bench.catalog, bench.models, setting, exclude, uncalibrated_from)
    refs.append(roofline_reference("spec sheet", "cpu", own_spec, setting, decode_tokens))
    R = reference_matrix(bench.space.name, refs, enc, surrogate_values(bench.models, bench.space))
    return refs, Inputs.build(bench.space.name, setting, decode_tokens, enc, R)


def fit_device(inputs: dict[str, Any], rows: np.ndarray, ms: dict[str, np.ndarray], own_spec: dict,
               seed: int = 0, methods: Sequence[str] | None = None) -> list[dict]:
    """Per setting, :func:`surrogates.transfer.fit_setting` on the ``rows`` of ``inputs[setting] =
    (references, Inputs)`` with measured ``ms[setting]`` (one per row), with the references and
    decode tokens stored beside each model."""
    from surrogates.transfer import METHODS, fit_setting

    out = []
    for st, (refs, inp) in inputs.items():
        fit = fit_setting(inp.take(rows), ms[st], own_spec, seed, methods or METHODS)
        fit.update({"references": refs, "decode_tokens": inp.decode_tokens})
        out.append(fit)
    return out


# ---------------------------------------------------------------------------- the command
def _validate(req: DeviceRequest, bench: Any):
    from benchmark.profiling.runtimes.registry import RuntimeDevice
    from benchmark.table import TableError
    from benchmark.table.schema import check_name
    from surrogates.transfer import MIN_ROWS

    try:
        check_name("device name", req.name)
    except TableError as e:
        raise ByodError(str(e)) from None
    if req.name in bench.catalog.devices:
        raise ByodError(f"invalid device name: {req.name!r} is already a device of the release; allowed: a new name")
    runtime = RUNTIME_ALIASES.get(req.runtime)
    if runtime is None:
        raise ByodError.invalid("runtime", req.runtime, sorted(RUNTIME_ALIASES))
    from benchmark.profiling.runtimes.base import RuntimeConfigError

    try:
        dev = RuntimeDevice(runtime, req.dtype, req.threads)
    except RuntimeConfigError as e:
        raise ByodError(str(e)) from None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if req.threads > cpus:  # more threads than cores would time the scheduler, not the device
        raise ByodError.invalid("threads", req.threads, f"1..{cpus} (the CPUs this process may run on)")
    n = len(bench.table.ids)
    if isinstance(req.budget, bool) or not isinstance(req.budget, int) or not MIN_ROWS <= req.budget <= n:
        raise ByodError.invalid("budget", req.budget, f"an integer in {MIN_ROWS}..{n} (at least what "
                                f"cross-validating the model needs, at most the release table's architectures)")
    if req.design not in DESIGNS:
        raise ByodError.invalid("design", req.design, list(DESIGNS))
    return dev


def _open_release(req: DeviceRequest):
    from benchmark.api import Benchmark

    bench = Benchmark(req.space, req.release)
    if bench.table is None:
        raise ByodError(f"invalid release: {bench.path} has no table_{req.space}.h5; allowed: a release with a table")
    return bench


def add_device(req: DeviceRequest, progress: bool = True, log=print) -> Path:
    """Design, measure (resumably), fit and write the overlay of ``req`` (see the module docstring);
    returns the overlay directory."""
    from benchmark.files import write_text
    from benchmark.profiling.devices import cpu_model_name
    from benchmark.profiling.protocol import RoundsProtocol
    from benchmark.profiling.runner import DEFAULT_SETTINGS
    from benchmark.profiling.timing_pass import TimingPass, device_settings, pass_to_table, run_pass
    from benchmark.query.overlay import OVERLAY_FILE, OVERLAY_FORMAT, SHARD_FILE
    from benchmark.release import MANIFEST_NAME, write_manifest
    from benchmark.settings import DEFAULT_DECODE_TOKENS
    from benchmark.table import Table

    bench = _open_release(req)
    dev = _validate(req, bench)
    out = Path(req.out)
    if (out / MANIFEST_NAME).exists():
        raise ByodError(f"invalid out: {out} already holds a finished overlay; allowed: a new directory")
    if out.exists() and any(out.iterdir()) and not (out / "run").is_dir():
        raise ByodError(f"invalid out: {out} is a non-empty directory that is not a device run; allowed: a new "
                        f"or empty directory, or the --out of an unfinished run of the same command")
    t = bench.table
    settings = device_settings(req.settings or DEFAULT_SETTINGS[req.space], dev)
    own_spec = _own_spec(cpu_model_name(), req.threads)
    enc = np.asarray(t.encodings)
    inputs = {s: setting_inputs(bench, s, DEFAULT_DECODE_TOKENS, enc, own_spec) for s in settings}
    rows = choose_rows(design_scores([inp.refs for _, inp in inputs.values()]), req.budget, req.seed, req.design)
    ids = tuple(str(t.ids[i]) for i in rows)
    params = t.metric("params")[rows]
    anchor = ids[int(np.argsort(params, kind="stable")[len(ids) // 2])]
    proto = RoundsProtocol(req.rounds, req.repeats_per_round, req.warmup, 25, req.seed)
    tp = TimingPass(req.space, ids, dev, req.name, settings, proto, anchor, DEFAULT_DECODE_TOKENS, req.seed)
    visits = len(proto.schedule(len(ids)))
    log(f"hwlm device add {req.name}: {len(ids)} architectures x {len(settings)} settings, {visits} visits "
        f"({proto.rounds} rounds, {proto.repeats_per_round} timed runs per visit); log {out / 'run'}")
    t0 = time.monotonic()
    done = run_pass(tp, out / "run" / "visits.jsonl", progress=progress)
    if done < visits:
        raise ByodError(f"invalid run {out}: {done} of {visits} visits done; rerun the same command to resume")
    shard = out / SHARD_FILE
    if shard.exists():  # written by an earlier attempt that stopped before the manifest: derived, rewrite it
        shard.unlink()
    pass_to_table(out / "run" / "visits.jsonl", shard, ids)
    st_table = Table(shard)
    ms = {s: np.nanmedian(np.asarray(st_table.hardware(req.name, s, "latency_ms"), np.float64), 1) for s in settings}
    order = [st_table.ids.tolist().index(a) for a in ids]
    fits = fit_device(inputs, rows, {s: ms[s][order] for s in settings}, own_spec, req.seed)
    meta = {"format": OVERLAY_FORMAT, "device": req.name, "kind": "cpu", "space": req.space,
            "release_table_sha256": t.sha256(), "release": str(bench.path), "request": asdict(req),
            "runtime": dev.runtime, "dtype": dev.dtype, "threads": dev.threads,
            "design": {"method": req.design, "seed": req.seed, "budget": req.budget, "rows": rows.tolist(),
                       "archs": list(ids), "score": "mean standardised log latency of the reference columns"},
            "protocol": asdict(proto), "anchor": anchor, "spec": own_spec, "measure_seconds": time.monotonic() - t0,
            "models": [{k: v for k, v in f.items() if k != "models"} for f in fits]}
    write_text(out / OVERLAY_FILE, json.dumps(meta, indent=1, default=_json) + "\n")
    export = out / "run" / "visits.onnx"
    if export.is_dir():  # ONNX export cache of the pass: large and rebuilt on demand
        shutil.rmtree(export)
    write_manifest(out, req.space, extra={"overlay": {"device": req.name, "release_table_sha256": t.sha256()}})
    for f in fits:
        cv = f["cv"][f["method"]]
        log(f"  {f['setting']}: {f['method']} (cross-validated on the {req.budget} rows: Kendall tau "
            f"{cv['kendall_tau']:.3f}, MAPE {100 * cv['mape']:.1f} %)")
    log(f"overlay: {out}  (Benchmark({req.space!r}, overlays=[{str(out)!r}]))")
    return out


def _own_spec(cpu_model: str, threads: int) -> dict:
    from surrogates.transfer import cpu_spec_provenance

    return cpu_spec_provenance(cpu_model, threads)


def _json(o: Any) -> Any:
    from benchmark.files import json_default

    return json_default(o)


# ---------------------------------------------------------------------------- command line
def _run(args) -> int:
    req = DeviceRequest(name=args.name, out=args.out, runtime=args.runtime, dtype=args.dtype, threads=args.threads,
                        budget=args.budget, release=args.release, space=args.space, design=args.design,
                        seed=args.seed, rounds=args.rounds, repeats_per_round=args.repeats_per_round,
                        warmup=args.warmup)
    try:
        add_device(req, progress=not args.no_progress)
    except HwlmError as e:
        print(f"hwlm device add: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


def add_device_parser(sub: Any) -> None:
    """Register ``hwlm device add``."""
    p = sub.add_parser("device", help="bring your own device: measure a few architectures, predict the rest",
                       description="Devices of your own next to a release.")
    dsub = p.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    a = dsub.add_parser("add", help="time K architectures here and write an overlay release",
                        description=__doc__.split("\n\n")[0] + " See docs/devices.md.")
    a.add_argument("name", help="the new device's name (not one of the release's devices)")
    a.add_argument("--out", required=True, help="overlay directory to write (rerun the command to resume)")
    a.add_argument("--runtime", default="torch", help="torch (PyTorch eager), ort/onnxruntime, ov/openvino")
    a.add_argument("--dtype", default="fp32", help="fp32; bf16 (torch); int8 (ort)")
    a.add_argument("--threads", type=int, default=1, help="threads the runtime uses (default 1)")
    a.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help=f"K, architectures to time (default "
                   f"{DEFAULT_BUDGET})")
    a.add_argument("--release", default=None, help="release directory (default: the embedded one)")
    a.add_argument("--space", default="t", help="search space of the release (default t)")
    a.add_argument("--design", default="stratified", choices=DESIGNS, help="how the K are chosen")
    a.add_argument("--seed", type=int, default=0, help="seed of the design and the protocol")
    a.add_argument("--rounds", type=int, default=3, help="timing rounds (default 3)")
    a.add_argument("--repeats-per-round", type=int, default=4, help="timed runs per visit (default 4)")
    a.add_argument("--warmup", type=int, default=2, help="untimed runs per visit (default 2)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.set_defaults(func=_run)
