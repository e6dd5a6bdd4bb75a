"""The budgeted GPU run: tiers of architectures measured into resumable shards until the budget
ends, the time estimate of a plan, and the command line (``scripts/profile_gpu.py``).

The pieces it runs (plan, budget, energy windows, provenance, one setting's measurement) are in
:mod:`benchmark.profiling.gpu`. Like that module it imports no xgboost, transformers, ray or
optuna, so that it runs on a GPU image from the source tree.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from benchmark.profiling.gpu import (
    DRY_RUN_PREFIX,
    GPU_DECODE_TOKENS,
    LOGS,
    MIN_ENERGY_WINDOW_S,
    TIER_START_S,
    Budget,
    EnergyWindow,
    HostLoss,
    SupernetWeights,
    Tier,
    activation_peak,
    default_plan,
    device_provenance,
    energy_window,
    measure_setting,
    measured_device_id,
    nvml_state,
    nvml_static,
    protocol_provenance,
)
from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS

__all__ = ["RunOptions", "run_plan", "estimate_plan", "main"]


# --------------------------------------------------------------------------- the run
@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``'s first signal) ends the run like Ctrl-C: the writers flush what they hold."""
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        old = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass
class RunOptions:
    """How every setting is measured (see the module docstring); validated on construction."""

    seed: int = 0
    warmup: int = 1
    repeats: int = 10
    decode_tokens: int = GPU_DECODE_TOKENS
    min_window_s: float = MIN_ENERGY_WINDOW_S
    energy_windows: int = 1
    ppl_check: int = 3
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    reference_every: int = 100
    flush_s: float = 20.0

    def __post_init__(self) -> None:
        for what, lo in (("seed", 0), ("warmup", 1), ("repeats", 10), ("decode_tokens", 1), ("energy_windows", 1),
                         ("ppl_check", 0), ("eval_tokens", 1), ("reference_every", 1)):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"invalid {what}: {v!r}; allowed: an integer >= {lo}")
        if not self.min_window_s >= MIN_ENERGY_WINDOW_S:
            raise ValueError(f"invalid min_window_s: {self.min_window_s!r}; allowed: >= {MIN_ENERGY_WINDOW_S} s")


class _Run:
    """The state of one run: the device, its id and provenance, clocks, counter and budget."""

    def __init__(self, out_dir: Path, budget: Budget, opts: RunOptions, device: str, dry_run: bool, checkpoint,
                 data_dir, quiet: bool):
        import torch

        from benchmark.paths import data_dir as default_data_dir
        from benchmark.profiling.devices import host_provenance, local_device_id
        from benchmark.profiling.energy import EnergyUnavailable, NvmlCounter, energy_counter
        from benchmark.profiling.latency import device_timer

        if dry_run:
            dev = torch.device("cpu")
        else:
            if not torch.cuda.is_available():
                raise ValueError(f"invalid device: {device!r}; CUDA is not available here (--dry-run-cpu exercises "
                                 f"the run on the CPU)")
            dev = torch.device(device)
            if dev.type != "cuda":
                raise ValueError(f"invalid device: {device!r}; allowed: cuda or cuda:<i> (or --dry-run-cpu)")
            dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
            torch.cuda.set_device(dev)
        self.out_dir, self.budget, self.opts, self.dev, self.dry_run, self.quiet = out_dir, budget, opts, dev, dry_run, quiet
        self.ddir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.ckpt = Path(checkpoint) if checkpoint is not None else self.ddir / "supernet_t.safetensors"
        self.counter = energy_counter(dev)
        self.energy_reason = self.counter.reason if isinstance(self.counter, EnergyUnavailable) else None
        # NVML's handle for the clock and power readings (the counter already found the right GPU)
        self.nvml = (self.counter._nvml, self.counter._handle) if isinstance(self.counter, NvmlCounter) else None
        self.host = host_provenance(dev)
        self.device_id = (DRY_RUN_PREFIX + local_device_id(dev).removeprefix("cpu-") if dry_run
                          else measured_device_id(str(self.host["gpu_name"])))
        self.static = nvml_static(*self.nvml) if self.nvml else {}
        self.timer, self.peak = device_timer(dev), activation_peak(dev)
        self.sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        self.tiers: dict[str, dict] = {}

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def state(self, rows: int, tier: str) -> dict[str, Any]:
        return {"unix_time": time.time(), "rows": rows, "tier": tier, **(nvml_state(*self.nvml) if self.nvml else {})}

    def energy(self, step: Callable[[], Any], unit_s: float) -> list[EnergyWindow]:
        return [energy_window(step, self.sync, self.counter.read_mj, time.perf_counter, self.opts.min_window_s, unit_s)
                for _ in range(self.opts.energy_windows)]

    def measure(self, src: SupernetWeights, arch, settings, energy: bool) -> dict[str, dict]:
        """Every setting of ``settings`` (grouped by dtype: one model per dtype) for one architecture:
        ``{setting name: SettingResult}`` and the Unix time each setting started."""
        import torch

        from benchmark.profiling.latency import gc_paused, prepare

        results, when = {}, {}
        for dtype in dict.fromkeys(s.dtype for s in settings):
            model = src.model(arch, dtype)
            with torch.inference_mode(), gc_paused():
                for s in (s for s in settings if s.dtype == dtype):
                    wl = prepare(arch, s, self.dev, self.opts.seed, model=model, decode_tokens=self.opts.decode_tokens)
                    when[s.name] = time.time()
                    results[s.name] = measure_setting(wl, self.opts.warmup, self.opts.repeats, self.timer, self.peak,
                                                      self.energy if energy else None)
                    del wl
            del model
        return {"results": results, "when": when}

    def tier(self, tier: Tier, src: SupernetWeights) -> dict[str, Any]:
        """Measure one tier into its shard, row by row, while the budget allows."""
        from benchmark.files import sha256_file
        from benchmark.table import Setting, TableWriter

        o, dev_id, path = self.opts, self.device_id, self.out_dir / tier.shard
        attrs = {}
        if tier.weights == "trained":
            attrs = {"supernet_sha256": sha256_file(self.ckpt),
                     "tokenizer_sha256": sha256_file(self.ddir / "tokenizer.json")}
        protocol = protocol_provenance(self.dev.type, o.warmup, o.repeats, o.decode_tokens, o.min_window_s, o.energy_windows,
                             tier.weights, o.seed)
        prov = device_provenance(self.host, self.static, protocol, dev_id, self.dry_run)
        settings = [Setting.parse(s) for s in tier.setting_names()]
        t_start = self.budget.elapsed()
        info = {"shard": tier.shard, "planned": len(tier.archs), "rows": 0, "measured_now": 0, "energy_rows_now": 0}
        self.tiers[tier.name] = info  # the summary holds what was done even when the run is interrupted
        with TableWriter(path, tier.space, attrs=attrs, flush_every=None) as w:
            try:
                self._fill(w, tier, src, settings, prov, info)
            finally:
                info["rows"] = len(w)
                info["seconds"] = round(self.budget.elapsed() - t_start, 1)
                info["seconds_per_row"] = round(info["seconds"] / max(info["measured_now"], 1), 4)
        self.log(f"[{tier.name}] {info['rows']}/{len(tier.archs)} rows in {path} ({info['measured_now']} now, "
                 f"{info['seconds']} s)")
        return info

    def _fill(self, w, tier: Tier, src: SupernetWeights, settings: list, prov: dict, info: dict) -> None:
        o, dev_id = self.opts, self.device_id
        energy_ok = self.energy_reason is None
        try:
            w.declare_device(dev_id, source="measured", provenance=prov, kind=prov["kind"])
        except ValueError as e:
            raise ValueError(f"cannot resume {w.path}: {e} (a shard is resumed only on the machine and with the "
                             f"protocol that started it; write to a new --out)") from None
        for s in settings:
            extra = {"decode_tokens": o.decode_tokens} if s.mode == "decode" else {}
            w.declare_setting(dev_id, s, warmup=o.warmup, repeats=o.repeats, energy_every=tier.energy_every,
                              energy_min_window_s=o.min_window_s, **extra)
            w.declare_hardware_metric(dev_id, s, "latency_ms", unit="ms", repeats=o.repeats)
            w.declare_hardware_metric(dev_id, s, "memory_mb", unit="MB", repeats=1)
            w.declare_hardware_metric(
                dev_id, s, "energy_mj", unit="mJ", repeats=o.energy_windows,
                missing_reason=self.energy_reason or f"measured on every {tier.energy_every}-th architecture of "
                                                     f"the run's order only (time budget); NaN elsewhere")
        todo = [(i, a) for i, a in enumerate(tier.archs) if a not in w]
        info["already"] = len(tier.archs) - len(todo)
        load = self.host.get("load_avg_1m")
        w.log(LOGS["runs"], {"unix_time": time.time(), "date_utc": str(self.host.get("date_utc", "")),
                             "load_avg_1m": float("nan") if load is None else float(load), "rows": len(w),
                             "tier": tier.name, "budget_left_s": self.budget.left()})
        if not todo:
            return
        self.log(f"[{tier.name}] {len(todo)} of {len(tier.archs)} architectures to measure -> {w.path}")

        def references() -> None:
            sp, first = tier.archs[0].search_space, settings[0]
            for ref in (sp.largest(), sp.smallest()):
                ms = self.measure(src, ref, [first], energy=False)["results"][first.name].latency_ms
                w.log(LOGS["reference"], {"arch": ref.id, "setting": first.name, "unix_time": time.time(),
                                          "rows": len(w), "median_ms": float(np.median(ms))})
            w.log(LOGS["state"], self.state(len(w), tier.name))

        # process warm-up (CUDA context, cuBLAS workspaces, every setting's kernels) before anything is stored:
        # the first row's memory peak would otherwise hold one-time allocations
        self.measure(src, todo[0][1], settings, energy=False)
        references()
        if tier.weights == "trained" and o.ppl_check > 0:
            self.perplexity_check(w, tier, src)
        w.flush()
        last_flush = self.budget.elapsed()
        for i, arch in todo:
            kind = (tier.name, energy_ok and i % tier.energy_every == 0)
            if not self.budget.allows(kind):
                break
            t0 = self.budget.elapsed()
            m = self.measure(src, arch, settings, energy=kind[1])
            hw = {}
            for name, r in m["results"].items():
                hw[(dev_id, name, "latency_ms")] = r.latency_ms
                hw[(dev_id, name, "memory_mb")] = [r.memory_mb]
                if r.energy:
                    hw[(dev_id, name, "energy_mj")] = [e.energy_mj for e in r.energy]
            w.append(arch, hardware=hw, measured_at={(dev_id, n): t for n, t in m["when"].items()})
            for name, r in m["results"].items():
                for e in r.energy:
                    w.log(LOGS["energy"], {"arch": arch.id, "setting": name, "runs": e.runs,
                                           "window_s": e.window_s, "energy_mj": e.energy_mj})
            self.budget.record(kind, self.budget.elapsed() - t0)
            info["measured_now"] += 1
            info["energy_rows_now"] += int(kind[1])
            if info["measured_now"] % o.reference_every == 0:
                references()
            if self.budget.elapsed() - last_flush >= o.flush_s:
                w.flush()
                last_flush = self.budget.elapsed()


    def perplexity_check(self, w, tier: Tier, src: SupernetWeights) -> None:
        """Perplexity of the space's largest and smallest and the tier's first architectures with the
        supernet on the device (fp32), logged for the ingest step to compare with the release's CPU values."""
        from benchmark.supernet.corpus import load_split
        from benchmark.supernet.perplexity import measure_perplexity

        tokens = np.asarray(load_split("test", self.ddir))
        sp = tier.archs[0].search_space
        picks = list({a.id: a for a in (sp.largest(), sp.smallest(), *tier.archs[:self.opts.ppl_check])}.values())
        for arch in picks[: self.opts.ppl_check]:
            t0 = time.perf_counter()
            r = measure_perplexity(HostLoss(src.net, self.dev), arch, tokens, max_tokens=self.opts.eval_tokens)
            w.log(LOGS["perplexity"], {"arch": arch.id, "perplexity": r.perplexity, "token_accuracy": r.token_accuracy,
                                       "tokens": r.tokens, "dtype": "fp32", "unix_time": time.time()})
            self.log(f"[{tier.name}] perplexity of {arch.id} on {self.dev}: {r.perplexity:.4f} "
                     f"({time.perf_counter() - t0:.1f} s)")


def run_plan(plan: Sequence[Tier], out_dir, *, budget_s: float, device: str = "cuda", dry_run_cpu: bool = False,
             options: RunOptions | None = None, checkpoint=None, data_dir=None,
             clock: Callable[[], float] = time.monotonic, quiet: bool = False) -> dict[str, Any]:
    """Measure ``plan`` into one shard per tier under ``out_dir`` within ``budget_s`` seconds of wall
    clock (see the module docstring); returns the summary, also written to ``out_dir/summary.json``.
    Rerunning with the same ``out_dir`` on the same machine resumes every shard."""
    import torch

    threads = torch.get_num_threads()
    if dry_run_cpu:
        torch.set_num_threads(1)  # the dry run exercises the logic; one thread stays fast on a shared CPU
    try:
        return _run_plan(plan, Path(out_dir), budget_s, device, dry_run_cpu, options or RunOptions(), checkpoint,
                         data_dir, clock, quiet)
    finally:
        torch.set_num_threads(threads)


def _run_plan(plan, out_dir: Path, budget_s, device, dry_run_cpu, opts, checkpoint, data_dir, clock, quiet):
    from benchmark.profiling.latency import device_lock

    budget = Budget(budget_s, clock)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(out_dir, budget, opts, device, dry_run_cpu, checkpoint, data_dir, quiet)
    summary: dict[str, Any] = {"device_id": run.device_id, "device": str(run.dev), "dry_run": dry_run_cpu,
                               "gpu_name": run.host.get("gpu_name"), "budget_s": budget_s, "tiers": {},
                               "energy": run.energy_reason or "measured", "stopped": None}
    run.log(f"profile_gpu: {run.device_id} on {run.dev}; plan {[(t.name, len(t.archs)) for t in plan]}; "
            f"budget {budget_s} s")
    weights: dict[tuple, SupernetWeights] = {}
    with _sigterm_as_interrupt(), device_lock(run.dev):
        try:
            for tier in plan:
                if budget.stopped or not tier.archs:
                    continue
                if not budget.allows(("start", tier.name), extra_s=TIER_START_S):
                    break
                key = (tier.weights, tier.space)
                if key not in weights:
                    weights.clear()  # one supernet on the device at a time
                    weights[key] = (SupernetWeights.trained(tier.space, run.ckpt, run.dev) if tier.weights == "trained"
                                    else SupernetWeights.random(tier.space, opts.seed, run.dev))
                run.tier(tier, weights[key])
        except KeyboardInterrupt as e:
            summary["stopped"] = f"interrupted ({e})"
    summary["tiers"] = run.tiers
    summary["stopped"] = summary["stopped"] or budget.stopped or "plan complete"
    summary["elapsed_s"] = round(budget.elapsed(), 1)
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    tmp.replace(out_dir / "summary.json")
    return summary


# --------------------------------------------------------------------------- the estimate
@functools.lru_cache(maxsize=None)
def _op_counts(space: str, mode: str) -> dict[int, int]:
    """Operators dispatched by one forward of the dense model, per number of layers (counted on the
    meta device: the same Python and dispatcher path as on a GPU, no data)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from benchmark.model import GPT
    from benchmark.spaces import get_space

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    sp = get_space(space)
    out = {}
    for n_layer in sp.n_layer_choices:
        arch = sp.arch(max(sp.embed_dim_choices), n_layer, max(sp.n_head_choices), max(sp.mlp_ratio_choices), True)
        with torch.device("meta"):
            model = GPT(arch)
        with torch.inference_mode():
            if mode == "prefill":
                x, cache = torch.zeros(1, 8, dtype=torch.long, device="meta"), None
            else:
                x, cache = torch.zeros(1, 1, dtype=torch.long, device="meta"), model.new_cache(1, 16)
                cache.pos = 8
            Count.n = 0
            with Count():
                model(x, cache)
        out[n_layer] = Count.n
    return out


def estimate_plan(plan: Sequence[Tier], *, op_s: float = 10e-6, warmup: int = 1, repeats: int = 10,
                  decode_tokens: int = GPU_DECODE_TOKENS, min_window_s: float = MIN_ENERGY_WINDOW_S,
                  energy_windows: int = 1, prep_s: dict[str, float] | None = None, startup_s: float = 30.0,
                  spec: str = "gpu-h200-sxm-141gb") -> dict[str, Any]:
    """Expected seconds of each tier on the GPU: per run, the larger of the host's dispatch time
    (operators dispatched x ``op_s``) and the device's roofline time (the registry spec at 60 % of
    tensor peak and 75 % of HBM bandwidth, no overhead); runs per setting = warm-up + repeats (+ one
    context prefill for decode); energy windows on every ``energy_every``-th row; ``prep_s`` per
    architecture and dtype (slicing the supernet, building inputs) per space; ``startup_s`` once."""
    from benchmark.profiling.roofline import RooflineParams, predict

    prep_s = prep_s or {"t": 0.005, "s": 0.015}
    floor = RooflineParams(eff_compute=0.6, eff_memory=0.75, overhead_s=1e-9)
    ops = {}
    out: dict[str, Any] = {"op_s": op_s, "startup_s": startup_s, "tiers": {}}
    total = startup_s
    for tier in plan:
        archs = list(tier.archs)
        if not archs:
            continue
        for mode in ("prefill", "decode"):
            ops.setdefault((tier.space, mode), _op_counts(tier.space, mode))
        n_layers = np.array([a.n_layer for a in archs])
        seconds = 0.0
        for name in tier.setting_names():
            mode = name.split("-", 1)[0]
            host = np.vectorize(ops[(tier.space, mode)].get)(n_layers) * op_s
            gpu = predict(archs, name, spec, floor, decode_tokens=decode_tokens).latency_ms / 1e3
            per_run = np.maximum(host, gpu)
            runs = warmup + repeats
            if mode == "decode":
                ctx = predict(archs, name.replace("decode", "prefill", 1), spec, floor).latency_ms / 1e3
                seconds += float(np.sum(runs * decode_tokens * per_run + np.maximum(
                    ctx, np.vectorize(ops[(tier.space, "prefill")].get)(n_layers) * op_s)))
            else:
                seconds += float(np.sum(runs * per_run))
        n_energy = len(range(0, len(archs), tier.energy_every))
        energy = n_energy * len(tier.setting_names()) * energy_windows * min_window_s * 1.05
        prep = len(archs) * len(tier.dtypes) * prep_s[tier.space]
        t = seconds + energy + prep
        out["tiers"][tier.name] = {"rows": len(archs), "timing_s": round(seconds, 1), "energy_rows": n_energy,
                                   "energy_s": round(energy, 1), "prep_s": round(prep, 1), "total_s": round(t, 1),
                                   "per_row_s": round(t / len(archs), 4)}
        total += t
    out["total_s"] = round(total, 1)
    return out


# --------------------------------------------------------------------------- CLI
def build_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="profile_gpu.py", description="Measure the release's t architectures, then a seeded s sample, on a CUDA "
        "GPU within a wall-clock budget, into resumable HDF5 shards (docs/profiling.md).")
    p.add_argument("--out", default=None, help="directory of the shards and summary.json (e.g. $OUT); required "
                                               "unless --estimate")
    p.add_argument("--budget-s", type=float, default=500.0,
                   help="wall-clock seconds the run may take, start-up included (default 500)")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--dry-run-cpu", action="store_true",
                   help="run the same logic on the CPU with tiny settings (device id dryrun-cpu-...; not a GPU "
                        "measurement, never merged into a release)")
    p.add_argument("--tiers", nargs="+", default=["t", "s-bf16", "s-fp16"], choices=["t", "s-bf16", "s-fp16"],
                   help="tiers in priority order (default: t s-bf16 s-fp16)")
    p.add_argument("--t-n", type=int, default=None, help="measure only the first N t architectures (default all)")
    p.add_argument("--s-n", type=int, default=500, help="size of the seeded s sample (default 500)")
    p.add_argument("--seed", type=int, default=0, help="order, s sample, random weights and tokens (default 0)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per setting, the last measures memory (default 1)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs stored per setting, >= 10 (default 10)")
    p.add_argument("--decode-tokens", type=int, default=GPU_DECODE_TOKENS,
                   help=f"decode steps per run (default {GPU_DECODE_TOKENS})")
    p.add_argument("--energy-every-t", type=int, default=50, help="energy on every k-th t row (default 50)")
    p.add_argument("--energy-every-s", type=int, default=10, help="energy on every k-th s row (default 10)")
    p.add_argument("--energy-window-s", type=float, default=MIN_ENERGY_WINDOW_S,
                   help=f"minimum counter window in seconds (default {MIN_ENERGY_WINDOW_S})")
    p.add_argument("--energy-windows", type=int, default=1, help="windows per setting on energy rows (default 1)")
    p.add_argument("--ppl-check", type=int, default=3, help="t rows whose perplexity is re-measured on the device "
                                                            "(default 3)")
    p.add_argument("--eval-tokens", type=int, default=65536,
                   help="test tokens of each perplexity check (default 65536, as in the release)")
    p.add_argument("--release", default=None, help="table whose t ids are measured (default data/table_t.h5)")
    p.add_argument("--checkpoint", default=None, help="t supernet (default data/supernet_t.safetensors)")
    p.add_argument("--data-dir", default=None, help="tokenizer and test split (default data)")
    p.add_argument("--estimate", action="store_true", help="print the expected seconds of the plan and exit")
    p.add_argument("--op-us", type=float, default=10.0, help="--estimate: host microseconds per operator (default 10)")
    p.add_argument("--quiet", action="store_true", help="only the one-line summary")
    return p


def summary_line(s: dict[str, Any]) -> str:
    tiers = "; ".join(f"{n}: {v['rows']}/{v['planned']} rows ({v['measured_now']} now, energy {v['energy_rows_now']}) "
                      f"-> {v['shard']}" for n, v in s["tiers"].items())
    return (f"profile_gpu: {s['device_id']}{' (CPU DRY RUN)' if s['dry_run'] else ''}; {tiers or 'nothing measured'}; "
            f"{s['elapsed_s']} s of {s['budget_s']} s; stopped: {s['stopped']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None and not args.estimate:
        parser.error("the following arguments are required: --out")
    from benchmark.paths import data_dir

    release = Path(args.release) if args.release else data_dir() / "table_t.h5"
    try:
        plan = default_plan(release, seed=args.seed, t_n=args.t_n, s_n=args.s_n, energy_every_t=args.energy_every_t,
                            energy_every_s=args.energy_every_s, tiers=args.tiers, dry_run=args.dry_run_cpu)
        if args.estimate:
            e = estimate_plan(plan, op_s=args.op_us * 1e-6, warmup=args.warmup, repeats=args.repeats,
                              decode_tokens=args.decode_tokens, min_window_s=args.energy_window_s,
                              energy_windows=args.energy_windows)
            print(json.dumps(e, indent=1))
            return 0
        opts = RunOptions(seed=args.seed, warmup=args.warmup, repeats=args.repeats, decode_tokens=args.decode_tokens,
                          min_window_s=args.energy_window_s, energy_windows=args.energy_windows,
                          ppl_check=args.ppl_check, eval_tokens=args.eval_tokens)
        s = run_plan(plan, args.out, budget_s=args.budget_s, device=args.device, dry_run_cpu=args.dry_run_cpu,
                     options=opts, checkpoint=args.checkpoint, data_dir=args.data_dir, quiet=args.quiet)
    except ValueError as e:
        print(f"profile_gpu.py: error: {e}", file=sys.stderr)
        return 2
    print(summary_line(s))
    return 0
