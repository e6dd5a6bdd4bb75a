"""Profile many architectures on this machine into a (shard) table: ``hwlm profile``.

For every architecture of a seeded sample (or an explicit list) that is not yet in the table,
one row is appended — and the table file rewritten atomically — holding:

* exact ``params``, ``params_no_embedding`` and ``flops_<setting>`` per setting (source
  ``exact``; decode settings: FLOPs per generated token averaged over the same
  ``decode_tokens`` steps that latency times);
* ``perplexity`` and ``token_accuracy`` of the sub-network with inherited supernet weights on
  the held-out test split (source ``measured``; the table attributes record ``eval_tokens``
  actually predicted, ``supernet_sha256`` and ``tokenizer_sha256``);
* per setting on this device: ``latency_ms`` (every repeat; decode = ms per generated token),
  ``memory_mb`` (one value, MB = 2**20 bytes) and ``energy_mj`` (every repeat, or declared
  missing with the reason when the device has no readable energy counter), plus the Unix time
  the row was measured at.

The device group's provenance is :func:`~benchmark.profiling.devices.host_provenance` (host,
CPU model, threads, torch version, GPU, driver, ...) without the fields that change from run to
run (``date_utc``, ``load_avg_1m``): those go to the table log ``runs``, one record per run.

Resume: rerunning with the same output continues it; rows already present are skipped, so a
``kill -9`` loses at most the architecture in flight. Timings from different machines are never
mixed: resuming a shard measured on another host / CPU model (or GPU, or thread count) is refused.

Order: the architecture list is deterministic (explicit ids, or ``space.sample(seed, n)``, then
largest and smallest, de-duplicated); ``shard=(i, n)`` keeps every n-th (``[i::n]``); the shard
is then profiled in an order shuffled with ``seed`` so that slow drift of the machine does not
correlate with the architecture. Drift itself is tracked: at the start and every
``reference_every`` rows the largest and smallest architectures are re-timed at the first
setting and logged to the table log ``reference_timings``.

One measurement per device at a time: :func:`~benchmark.profiling.latency.measure_latency`,
``measure_memory`` and ``measure_energy`` take the device's exclusive inter-process lock
(:func:`~benchmark.profiling.latency.device_lock`); the runner additionally holds it across all
hardware measurements of one architecture, and holds the CPU lock while computing perplexity
(which runs on the CPU), so several runners on one machine serialise their timings.

Parallel: ``profile_ray`` runs shards as Ray tasks (one task per machine at a time, through a
custom resource) and merges them. Perplexity runs in the profiling process (one per machine);
the separate perplexity pass :func:`add_perplexity` can use local worker processes (``workers``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.profiling.perplexity_pass import (add_perplexity, declare_perplexity,  # noqa: F401  add_perplexity: re-exported
                                                 measure_perplexity_for, perplexity_inputs, set_eval_tokens)
from benchmark.settings import DEFAULT_DECODE_TOKENS, Setting, resolve_setting
from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS
from benchmark.table import Table, TableError, TableWriter

__all__ = ["DEFAULT_SETTINGS", "default_settings", "ProfileConfig", "profile", "run_profile", "measure_hardware",
           "measure_setting", "declare_exact_metrics", "exact_metrics", "select_architectures", "profile_order",
           "parse_shard", "add_perplexity", "profile_ray", "shard_path"]

DEFAULT_SETTINGS: dict[str, tuple[str, ...]] = {
    # decode context + DEFAULT_DECODE_TOKENS must fit the space's context (t: 128 + 16 <= 256; s/m/l: 512 + 16 <= 1024)
    "t": ("prefill-b1-s256-fp32", "prefill-b8-s256-fp32", "decode-b1-s128-fp32"),
    **{sp: ("prefill-b1-s1024-fp32", "prefill-b8-s1024-fp32", "decode-b1-s512-fp32") for sp in ("s", "m", "l")},
}

REFERENCE_LOG = "reference_timings"
RUNS_LOG = "runs"  # one record per (resumed) run: start time, date, 1-min load average, rows so far, device
# provenance fields that must agree to append timings to an existing device of a shard
_SAME_MACHINE = ("hostname_sha256", "cpu_model", "gpu_name", "gpu_uuid", "torch_threads")


def default_settings(space: str, dtype: str = "fp32") -> tuple[str, ...]:
    """The space's default settings in ``dtype`` (fp32 on CPU; e.g. fp16 on GPU)."""
    return tuple(s.rsplit("-", 1)[0] + f"-{dtype}" for s in DEFAULT_SETTINGS[space])


def parse_shard(spec: str | Sequence[int]) -> tuple[int, int]:
    """``"i/n"`` (or a pair) -> ``(i, n)`` with ``0 <= i < n``; anything else is a ValueError."""
    try:
        if isinstance(spec, str):
            a, b = spec.split("/")
            i, n = int(a), int(b)
        else:
            i, n = (int(x) for x in spec)
    except (ValueError, TypeError):
        raise HwlmError(f"invalid shard: {spec!r}; allowed: 'i/n' with integers 0 <= i < n, e.g. '0/4'") from None
    if n < 1 or not 0 <= i < n:
        raise HwlmError(f"invalid shard: {spec!r}; allowed: 'i/n' with integers 0 <= i < n, e.g. '0/4'")
    return i, n


def select_architectures(space, n: int | None = None, archs: Iterable[Any] | None = None, seed: int = 0,
                         include_extremes: bool = True, shard: tuple[int, int] | str = (0, 1)) -> list:
    """The deterministic architecture list of a shard (before the seeded shuffle)."""
    from benchmark.spaces import get_space

    sp = get_space(space)
    if archs is not None:
        base = [sp.from_id(a) if isinstance(a, str) else sp.validate(a) for a in archs]
    elif n is not None:
        if int(n) < 0:
            raise HwlmError(f"invalid n: {n!r}; allowed: an integer >= 0")
        base = list(sp.sample(seed, int(n))) if int(n) > 0 else []
    else:
        raise HwlmError("invalid architectures: neither n nor archs given; allowed: n >= 0 or a list of ids")
    if include_extremes:
        base += [sp.largest(), sp.smallest()]
    seen, out = set(), []
    for a in base:
        if a.id not in seen:
            seen.add(a.id)
            out.append(a)
    i, k = parse_shard(shard)
    return out[i::k]


def profile_order(archs: Sequence, seed: int = 0) -> list:
    """``archs`` in the seeded shuffled order in which they are profiled."""
    rng = np.random.default_rng(seed)
    return [archs[j] for j in rng.permutation(len(archs))]


def _check_same_machine(path: Path, device_id: str, prov: dict) -> None:
    if not path.exists():
        return
    t = Table(path)
    if device_id not in t.devices():
        return
    old = t.provenance(device_id)
    diff = {k: (old.get(k), prov.get(k)) for k in _SAME_MACHINE if old.get(k) != prov.get(k)}
    if diff:
        what = ", ".join(f"{k}: {a!r} in the table vs {b!r} here" for k, (a, b) in diff.items())
        raise TableError(f"cannot resume {path}: device {device_id!r} was measured on a different machine or "
                         f"configuration ({what}); timings from different hosts are never mixed — profile into "
                         f"a new shard file (or use another --device id) and merge")


def _check_attrs(path: Path, attrs: dict) -> None:
    if not path.exists():
        return
    old = Table(path).attrs
    for k in ("supernet_sha256", "tokenizer_sha256"):
        if k in attrs and k in old and str(old[k]) != str(attrs[k]):
            raise TableError(f"cannot resume {path}: its {k} is {old[k]}, this run's is {attrs[k]}; perplexities "
                             f"from different checkpoints/tokenizers are never mixed — use a new shard file")


@dataclass(frozen=True)
class ProfileConfig:
    """What one :func:`profile` run measures, where, and how (the keyword arguments of ``profile``).

    ``torch_device`` is where the models run (``cpu``, ``cuda``, ``cuda:1``); ``device`` is the
    table's device id (default :func:`~benchmark.profiling.devices.local_device_id`). ``settings``
    default to ``DEFAULT_SETTINGS[space]`` in ``dtype`` (default fp32 on CPU, fp16 on CUDA).
    ``checkpoint`` defaults to ``data/supernet_<space>.safetensors``; ``data_dir`` (tokenizer +
    test split) to the package's data directory. ``threads`` sets ``torch.set_num_threads`` for
    the run (restored afterwards); the thread count is part of the device id and provenance.
    """

    space: str
    out: Path
    torch_device: str = "cpu"
    device: str | None = None
    n: int | None = None
    archs: Iterable[Any] | None = None
    seed: int = 0
    settings: Sequence[str] | None = None
    dtype: str | None = None
    shard: tuple[int, int] | str = (0, 1)
    warmup: int = 3
    repeats: int = 10
    checkpoint: Any = None
    data_dir: Any = None
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    perplexity: bool = True
    latency: bool = True
    memory: bool = True
    energy: bool = True
    include_extremes: bool = True
    reference_every: int = 50
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    threads: int | None = None
    progress: bool = True

    @property
    def hardware(self) -> bool:
        return self.latency or self.memory or self.energy

    def setting_list(self, space, device_type: str) -> list[Setting]:
        """The settings of the run on a ``device_type`` (cpu, cuda) device, each checked to fit the
        space's context."""
        dtype = self.dtype or ("fp32" if device_type == "cpu" else "fp16")
        names = list(self.settings) if self.settings else list(default_settings(space.name, dtype))
        out = [resolve_setting(s) for s in names]
        for st in out:
            need = st.seq_len + (self.decode_tokens if st.mode == "decode" else 0)
            if need > space.block_size:
                raise HwlmError(f"invalid setting: {st.name!r}; allowed: seq_len"
                                 f"{' + decode_tokens' if st.mode == 'decode' else ''} = {need} <= the space's "
                                 f"context {space.block_size}")
        return out


@dataclass
class _Run:
    """What the steps of one run share: the resolved inputs and the open table writer."""

    config: ProfileConfig
    space: Any
    torch_device: Any
    settings: list[Setting]
    device: str  # the table's device id
    writer: TableWriter
    net: Any = None  # supernet and test tokens for perplexity
    tokens: Any = None
    counter: Any = None  # energy counter (or EnergyUnavailable)
    run_record: dict = field(default_factory=dict)  # this run's entry of the "runs" log


def profile(space: str, out, **options: Any) -> Path:
    """Profile a shard of architectures of ``space`` into the table ``out``; returns its path.

    ``options`` are the fields of :class:`ProfileConfig`. See the module docstring for what a row
    holds, resume, order, drift records and the device lock (latency runs one at a time per device).
    """
    return run_profile(ProfileConfig(space, Path(out), **options))


def run_profile(config: ProfileConfig) -> Path:
    """:func:`profile` for a :class:`ProfileConfig`."""
    if config.threads is not None and int(config.threads) < 1:
        raise HwlmError(f"invalid threads: {config.threads!r}; allowed: an integer >= 1")
    if config.reference_every < 1:
        raise HwlmError(f"invalid reference_every: {config.reference_every!r}; allowed: an integer >= 1")
    from benchmark.profiling.latency import torch_threads

    with torch_threads(config.threads):
        return _profile(config)


def _profile(cfg: ProfileConfig) -> Path:
    import torch
    from tqdm.auto import tqdm

    from benchmark.spaces import get_space

    sp = get_space(cfg.space)
    settings = cfg.setting_list(sp, torch.device(cfg.torch_device).type)
    todo_all = profile_order(select_architectures(sp, cfg.n, cfg.archs, cfg.seed, cfg.include_extremes, cfg.shard),
                             cfg.seed)
    run = _open(cfg, sp, settings)
    w = run.writer
    with w:  # every append flushes atomically; the writer is closed (and flushed) on the way out
        todo = [a for a in todo_all if a not in w]
        if todo:
            w.log(RUNS_LOG, {**run.run_record, "rows": len(w.ids()), "device": run.device if cfg.hardware else ""})
        bar = tqdm(total=len(todo_all), initial=len(todo_all) - len(todo), desc=f"profile {cfg.out.name}",
                   unit="arch", disable=not cfg.progress, dynamic_ncols=True)
        if todo and cfg.hardware:
            _reference_timings(run)
        for i, arch in enumerate(todo, 1):
            metrics = exact_metrics(arch, settings, cfg.decode_tokens)
            if cfg.perplexity:
                metrics.update(_perplexity(run, arch))
            hw, when = measure_hardware(run, arch) if cfg.hardware else ({}, {})
            w.append(arch, metrics=metrics, hardware=hw, measured_at=when)  # flushed atomically
            bar.update(1)
            if cfg.hardware and i % cfg.reference_every == 0 and i < len(todo):
                _reference_timings(run)
        bar.close()
        rows = len(w.ids())
    if cfg.progress:
        where = f"{cfg.out}: {rows} rows ({len(todo)} profiled now), device {run.device if cfg.hardware else '-'}"
        print(f"shard written to {where}", file=sys.stderr)
    return cfg.out


def _open(cfg: ProfileConfig, sp, settings: list[Setting]) -> _Run:
    """Load the perplexity inputs, check that the run may extend ``cfg.out``, open and declare the table."""
    import torch

    from benchmark.profiling.devices import host_provenance, local_device_id

    attrs: dict[str, Any] = {}
    net = tokens = None
    if cfg.perplexity:
        net, tokens, attrs = perplexity_inputs(sp.name, cfg.checkpoint, cfg.data_dir)
        _check_attrs(cfg.out, attrs)
    tdev = torch.device(cfg.torch_device)
    dev_id = cfg.device or local_device_id(tdev)
    kind = "cpu" if tdev.type == "cpu" else "gpu"
    if not dev_id.startswith(kind + "-"):  # a label naming other hardware would mislabel every row
        raise HwlmError.invalid("device", dev_id, f"a table device id of a {kind} ('{kind}-...', e.g. "
                                f"{local_device_id(tdev)!r}) for --torch-device {cfg.torch_device}")
    prov = dict(host_provenance(tdev))
    prov["torch_threads"] = torch.get_num_threads()
    # what changes from run to run goes to the "runs" log, not into the device declaration (which
    # must be identical across resumed runs and across shards of one machine for them to merge)
    run_record = {"unix_time": time.time(), "date_utc": str(prov.pop("date_utc", "")),
                  "load_avg_1m": float("nan") if prov.get("load_avg_1m") is None else float(prov["load_avg_1m"])}
    prov.pop("load_avg_1m", None)
    if cfg.hardware:
        _check_same_machine(cfg.out, dev_id, prov)
    run = _Run(cfg, sp, tdev, settings, dev_id, TableWriter(cfg.out, sp.name, attrs=attrs), net, tokens,
               run_record=run_record)
    _declare(run, prov)
    return run


def _declare(run: _Run, provenance: dict) -> None:
    """Declare the metrics, device, settings and hardware metrics the rows of this run hold."""
    from benchmark.profiling.energy import EnergyUnavailable, energy_counter

    cfg, w = run.config, run.writer
    declare_exact_metrics(w, run.settings, cfg.decode_tokens)
    if cfg.perplexity:
        declare_perplexity(w)
    if not cfg.hardware:
        return
    if run.device not in w.devices():  # resuming on the same machine (checked before): keep its provenance
        w.declare_device(run.device, source="measured", provenance=provenance)
    if cfg.energy:
        run.counter = energy_counter(run.torch_device)
    for s in run.settings:
        extra = {"decode_tokens": cfg.decode_tokens} if s.mode == "decode" else {}
        w.declare_setting(run.device, s, warmup=cfg.warmup, repeats=cfg.repeats, **extra)
        if cfg.latency:
            w.declare_hardware_metric(run.device, s, "latency_ms", unit="ms", repeats=cfg.repeats)
        if cfg.memory:
            w.declare_hardware_metric(run.device, s, "memory_mb", unit="MB", repeats=1)
        if cfg.energy:
            reason = run.counter.reason if isinstance(run.counter, EnergyUnavailable) else None
            w.declare_hardware_metric(run.device, s, "energy_mj", unit="mJ", repeats=cfg.repeats,
                                      missing_reason=reason)


def declare_exact_metrics(w: TableWriter, settings: Sequence[Setting], decode_tokens: int) -> None:
    """Declare what :func:`exact_metrics` gives: params, params without the embedding, FLOPs per setting."""
    w.declare_metric("params", unit="1", source="exact", description="parameters (tied embedding counted once)")
    w.declare_metric("params_no_embedding", unit="1", source="exact", description="parameters without wte")
    for s in settings:
        desc = ("FLOPs of one forward at the setting" if s.mode == "prefill" else
                f"FLOPs per generated token (mean over {decode_tokens} steps after the context)")
        w.declare_metric(f"flops_{s.name}", unit="FLOPs", source="exact", description=desc)


def exact_metrics(arch, settings: Sequence[Setting], decode_tokens: int) -> dict[str, float]:
    """Parameters and FLOPs per setting (decode: mean per generated token over ``decode_tokens`` steps)."""
    from benchmark import costs

    metrics = {"params": float(costs.params([arch])[0]),
               "params_no_embedding": float(costs.params([arch], embeddings=False)[0])}
    for s in settings:
        if s.mode == "prefill":
            f = costs.flops_prefill([arch], batch=s.batch, seq_len=s.seq_len)[0]
        else:
            f = np.mean([costs.flops_decode([arch], batch=s.batch, context_len=s.seq_len + j)[0]
                         for j in range(decode_tokens)])
        metrics[f"flops_{s.name}"] = float(f)
    return metrics


def _perplexity(run: _Run, arch) -> dict[str, float]:
    from benchmark.profiling.latency import device_lock

    with device_lock("cpu"):  # perplexity runs on the CPU: no timing there meanwhile
        r = measure_perplexity_for(run.net, arch, run.tokens, run.config.eval_tokens)
    set_eval_tokens(run.writer, r.tokens)
    return {"perplexity": r.perplexity, "token_accuracy": r.token_accuracy}


def measure_hardware(run: _Run, arch) -> tuple[dict, dict]:
    """Every hardware metric of ``arch`` at every setting, holding the device lock throughout:
    ``({(device, setting, metric): repeats}, {(device, setting): unix time})``. One model per
    dtype is built and shared by the settings."""
    from benchmark.profiling.latency import build_model, device_lock

    cfg = run.config
    hw: dict = {}
    when: dict = {}
    with device_lock(run.torch_device):
        models: dict[str, Any] = {}
        for s in run.settings:
            if s.dtype not in models:
                models[s.dtype] = build_model(arch, run.torch_device, s.dtype, cfg.seed)
            when[(run.device, s.name)] = time.time()
            for metric, values in measure_setting(arch, models[s.dtype], s, run.torch_device, cfg,
                                                  run.counter).items():
                hw[(run.device, s.name, metric)] = values
        del models
    return hw, when


def measure_setting(arch, model, setting: Setting, torch_device, cfg: ProfileConfig, counter) -> dict[str, Any]:
    """The hardware metrics of ``arch`` at one setting on a built ``model``: ``{metric: values}``
    (latency and energy: every repeat; memory: one value). The caller holds the device lock.
    This is where a timing protocol or a runtime other than eager torch plugs in."""
    from benchmark.profiling.energy import EnergyUnavailable, measure_energy
    from benchmark.profiling.latency import measure_latency
    from benchmark.profiling.memory import measure_memory

    out: dict[str, Any] = {}
    if cfg.latency:
        out["latency_ms"] = measure_latency(arch, setting, torch_device, cfg.warmup, cfg.repeats, cfg.seed,
                                            decode_tokens=cfg.decode_tokens, model=model)
    if cfg.memory:
        out["memory_mb"] = [measure_memory(arch, setting, torch_device, cfg.seed, model=model).memory_mb]
    if cfg.energy and not isinstance(counter, EnergyUnavailable):
        e = measure_energy(arch, setting, torch_device, cfg.warmup, cfg.repeats, cfg.seed,
                           decode_tokens=cfg.decode_tokens, model=model, counter=counter)
        if isinstance(e, EnergyUnavailable):
            raise RuntimeError(f"energy counter became unavailable: {e.reason}")
        out["energy_mj"] = e.energy_mj
    return out


def _reference_timings(run: _Run) -> None:
    """Re-time the largest and smallest architectures at the first setting (the drift log)."""
    from benchmark.profiling.latency import measure_latency

    cfg = run.config
    if not cfg.latency:
        return
    for ref in (run.space.largest(), run.space.smallest()):
        ms = measure_latency(ref, run.settings[0], run.torch_device, cfg.warmup, cfg.repeats, cfg.seed,
                             decode_tokens=cfg.decode_tokens)
        run.writer.log(REFERENCE_LOG, {"arch": ref.id, "unix_time": time.time(), "rows": len(run.writer.ids()),
                                       "median_ms": float(np.median(ms))})
    run.writer.flush()


# --------------------------------------------------------------------------- Ray
RAY_RESOURCE = "hwlm_profile_slot"  # one per machine: at most one profiling task times a device at once


def shard_path(out, i: int, n: int) -> Path:
    """Where shard ``i`` of ``n`` of the table ``out`` is written by :func:`profile_ray`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{i}-of-{n}{out.suffix}")


def profile_ray(address: str, space: str, out, n_shards: int, **kwargs) -> Path:
    """Profile ``n_shards`` shards (``shard=(i, n_shards)``) as Ray tasks, then merge them into ``out``.

    ``address``: a Ray cluster address, or ``"local"`` for a Ray instance started here. Each task
    asks for one unit of the custom resource ``hwlm_profile_slot``: start every node of a cluster
    with ``ray start ... --resources '{"hwlm_profile_slot": 1}'`` so that one task at a time times a
    machine (the local instance gets one slot). Shards are written beside ``out``
    (:func:`shard_path`) — on a cluster, ``out`` must be on storage every node sees — and each
    resumes like a plain ``profile`` run, so rerunning after a failure redoes only what is missing.
    Devices of different machines stay apart: merging refuses shards whose device provenance
    disagrees (give each machine its own ``device_id``).
    """
    try:
        import ray
    except ImportError:
        raise HwlmError("invalid --ray: the 'ray' package is not installed (pip install -e .[moo-ray])") from None
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise HwlmError(f"invalid n_shards: {n_shards!r}; allowed: an integer >= 1")
    from benchmark.table import merge_tables

    if "shard" in kwargs:
        raise HwlmError("invalid shard with Ray: the shards are i/n_shards for i < n_shards")
    started = not ray.is_initialized()
    if started:
        local = address == "local"
        ray.init(address=None if local else address, include_dashboard=False, log_to_driver=False,
                 **({"num_cpus": 1, "resources": {RAY_RESOURCE: 1}} if local else {}))
    try:
        task = ray.remote(num_cpus=1, resources={RAY_RESOURCE: 1}, max_retries=0)(profile)
        refs = [task.remote(space, shard_path(out, i, n_shards), shard=(i, n_shards), **{**kwargs, "progress": False})
                for i in range(n_shards)]
        shards = ray.get(refs)
    finally:
        if started:
            ray.shutdown()
    return merge_tables(shards, out)
