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

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from benchmark.table import Setting, Table, TableError, TableWriter

__all__ = ["DEFAULT_SETTINGS", "default_settings", "profile", "select_architectures", "profile_order",
           "parse_shard", "add_profile_parser", "add_table_parser", "add_perplexity", "profile_ray", "shard_path"]

DECODE_TOKENS = 16

DEFAULT_SETTINGS: dict[str, tuple[str, ...]] = {
    # decode context + DECODE_TOKENS must fit the space's context (t: 128 + 16 <= 256; s/m/l: 512 + 16 <= 1024)
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
        raise ValueError(f"invalid shard: {spec!r}; allowed: 'i/n' with integers 0 <= i < n, e.g. '0/4'") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"invalid shard: {spec!r}; allowed: 'i/n' with integers 0 <= i < n, e.g. '0/4'")
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
            raise ValueError(f"invalid n: {n!r}; allowed: an integer >= 0")
        base = list(sp.sample(seed, int(n))) if int(n) > 0 else []
    else:
        raise ValueError("invalid architectures: neither n nor archs given; allowed: n >= 0 or a list of ids")
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


def profile(space: str, out, *, device: str = "cpu", n: int | None = None, archs: Iterable[Any] | None = None,
            seed: int = 0, settings: Sequence[str] | None = None, dtype: str | None = None,
            shard: tuple[int, int] | str = (0, 1), warmup: int = 3, repeats: int = 10, device_id: str | None = None,
            checkpoint=None, data_dir=None, eval_tokens: int = 65536, perplexity: bool = True,
            latency: bool = True, memory: bool = True, energy: bool = True, include_extremes: bool = True,
            reference_every: int = 50, decode_tokens: int = DECODE_TOKENS, threads: int | None = None,
            progress: bool = True) -> Path:
    """Profile a shard of architectures of ``space`` on ``device`` into the table ``out``; returns its path.

    ``settings`` default to ``DEFAULT_SETTINGS[space]`` in ``dtype`` (default fp32 on CPU, fp16
    on CUDA). ``device_id`` is the table's device name (default
    :func:`~benchmark.profiling.devices.local_device_id`). ``checkpoint`` defaults to
    ``data/supernet_<space>.safetensors``; ``data_dir`` (tokenizer + test split) to the
    package's data directory. ``threads`` sets ``torch.set_num_threads`` for the run (restored
    afterwards); the thread count is part of the device id and provenance. See the module docstring for what a row holds, resume, order,
    drift records and the device lock (latency runs one at a time per device).
    """
    import torch

    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"invalid threads: {threads!r}; allowed: an integer >= 1")
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return profile(space, out, device=device, n=n, archs=archs, seed=seed, settings=settings, dtype=dtype,
                           shard=shard, warmup=warmup, repeats=repeats, device_id=device_id, checkpoint=checkpoint,
                           data_dir=data_dir, eval_tokens=eval_tokens, perplexity=perplexity, latency=latency,
                           memory=memory, energy=energy, include_extremes=include_extremes,
                           reference_every=reference_every, decode_tokens=decode_tokens, threads=None,
                           progress=progress)
        finally:
            torch.set_num_threads(before)
    from tqdm.auto import tqdm

    from benchmark import costs
    from benchmark.profiling.devices import host_provenance, local_device_id
    from benchmark.profiling.energy import EnergyUnavailable, energy_counter, measure_energy
    from benchmark.profiling.latency import build_model, device_lock, measure_latency, resolve_setting
    from benchmark.profiling.memory import measure_memory
    from benchmark.spaces import get_space

    sp = get_space(space)
    out = Path(out)
    tdev = torch.device(device)
    if dtype is None:
        dtype = "fp32" if tdev.type == "cpu" else "fp16"
    setting_names = list(settings) if settings else list(default_settings(sp.name, dtype))
    run_settings = [resolve_setting(s) for s in setting_names]
    for rs in run_settings:
        need = rs.seq_len + (decode_tokens if rs.mode == "decode" else 0)
        if need > sp.block_size:
            raise ValueError(f"invalid setting: {rs.name!r}; allowed: seq_len{' + decode_tokens' if rs.mode == 'decode' else ''}"
                             f" = {need} <= the space's context {sp.block_size}")
    table_settings = [Setting(rs.mode, rs.batch, rs.seq_len, rs.dtype) for rs in run_settings]
    hardware = latency or memory or energy
    if reference_every < 1:
        raise ValueError(f"invalid reference_every: {reference_every!r}; allowed: an integer >= 1")

    todo_all = profile_order(select_architectures(sp, n, archs, seed, include_extremes, shard), seed)

    # -- perplexity inputs
    attrs: dict[str, Any] = {}
    net = tokens = None
    if perplexity:
        net, tokens, pins = _perplexity_inputs(sp.name, checkpoint, data_dir)
        attrs.update(pins)
        _check_attrs(out, attrs)

    # -- device provenance (refuse to mix machines)
    dev_id = device_id or local_device_id(tdev)
    prov = dict(host_provenance(tdev))
    prov["torch_threads"] = torch.get_num_threads()
    # what changes from run to run goes to the "runs" log, not into the device declaration (which
    # must be identical across resumed runs and across shards of one machine for them to merge)
    run_record = {"unix_time": time.time(), "date_utc": str(prov.pop("date_utc", "")),
                  "load_avg_1m": float("nan") if prov.get("load_avg_1m") is None else float(prov["load_avg_1m"])}
    prov.pop("load_avg_1m", None)
    if hardware:
        _check_same_machine(out, dev_id, prov)

    w = TableWriter(out, sp.name, attrs=attrs)
    if True:  # (block kept for readability) every append flushes atomically; nothing to clean up on error
        w.declare_metric("params", unit="1", source="exact", description="parameters (tied embedding counted once)")
        w.declare_metric("params_no_embedding", unit="1", source="exact", description="parameters without wte")
        for s in table_settings:
            desc = ("FLOPs of one forward at the setting" if s.mode == "prefill" else
                    f"FLOPs per generated token (mean over {decode_tokens} steps after the context)")
            w.declare_metric(f"flops_{s.name}", unit="FLOPs", source="exact", description=desc)
        if perplexity:
            _declare_perplexity(w)
        counter = None
        if hardware:
            if dev_id in w._c.device_meta:  # resuming on the same machine (checked above): keep its provenance
                pass
            else:
                w.declare_device(dev_id, source="measured", provenance=prov)
            if energy:
                counter = energy_counter(tdev)
            for s in table_settings:
                extra = {"decode_tokens": decode_tokens} if s.mode == "decode" else {}
                w.declare_setting(dev_id, s, warmup=warmup, repeats=repeats, **extra)
                if latency:
                    w.declare_hardware_metric(dev_id, s, "latency_ms", unit="ms", repeats=repeats)
                if memory:
                    w.declare_hardware_metric(dev_id, s, "memory_mb", unit="MB", repeats=1)
                if energy:
                    reason = counter.reason if isinstance(counter, EnergyUnavailable) else None
                    w.declare_hardware_metric(dev_id, s, "energy_mj", unit="mJ", repeats=repeats,
                                              missing_reason=reason)

        def reference_timings(rows: int) -> None:
            if not latency:
                return
            rs = run_settings[0]
            for ref in (sp.largest(), sp.smallest()):
                ms = measure_latency(ref, rs, tdev, warmup, repeats, seed, decode_tokens=decode_tokens)
                w.log(REFERENCE_LOG, {"arch": ref.id, "unix_time": time.time(), "rows": rows,
                                      "median_ms": float(np.median(ms))})
            w.flush()

        todo = [a for a in todo_all if a not in w]
        if todo:
            w.log(RUNS_LOG, {**run_record, "rows": len(w.ids()), "device": dev_id if hardware else ""})
        bar = tqdm(total=len(todo_all), initial=len(todo_all) - len(todo), desc=f"profile {out.name}",
                   unit="arch", disable=not progress, dynamic_ncols=True)
        profiled = 0
        if todo and hardware:
            reference_timings(len(w.ids()))
        for arch in todo:
            metrics: dict[str, float] = {
                "params": float(costs.params([arch])[0]),
                "params_no_embedding": float(costs.params([arch], embeddings=False)[0]),
            }
            for s in table_settings:
                if s.mode == "prefill":
                    f = costs.flops_prefill([arch], batch=s.batch, seq_len=s.seq_len)[0]
                else:
                    f = np.mean([costs.flops_decode([arch], batch=s.batch, context_len=s.seq_len + j)[0]
                                 for j in range(decode_tokens)])
                metrics[f"flops_{s.name}"] = float(f)
            if perplexity:
                with device_lock("cpu"):
                    r = measure_perplexity_for(net, arch, tokens, eval_tokens)
                metrics["perplexity"], metrics["token_accuracy"] = r.perplexity, r.token_accuracy
                _set_eval_tokens(w, r.tokens)
            hw: dict = {}
            when: dict = {}
            if hardware:
                with device_lock(tdev):
                    models: dict[str, Any] = {}
                    for rs, s in zip(run_settings, table_settings):
                        if rs.dtype not in models:
                            models[rs.dtype] = build_model(arch, tdev, rs.dtype, seed)
                        model = models[rs.dtype]
                        when[(dev_id, s.name)] = time.time()
                        if latency:
                            hw[(dev_id, s.name, "latency_ms")] = measure_latency(
                                arch, rs, tdev, warmup, repeats, seed, decode_tokens=decode_tokens, model=model)
                        if memory:
                            hw[(dev_id, s.name, "memory_mb")] = [measure_memory(arch, rs, tdev, seed,
                                                                                model=model).memory_mb]
                        if energy and not isinstance(counter, EnergyUnavailable):
                            e = measure_energy(arch, rs, tdev, warmup, repeats, seed, decode_tokens=decode_tokens,
                                               model=model, counter=counter)
                            if isinstance(e, EnergyUnavailable):
                                raise RuntimeError(f"energy counter became unavailable: {e.reason}")
                            hw[(dev_id, s.name, "energy_mj")] = e.energy_mj
                    del models
            w.append(arch, metrics=metrics, hardware=hw, measured_at=when)  # flushed atomically
            profiled += 1
            bar.update(1)
            if hardware and profiled % reference_every == 0 and profiled < len(todo):
                reference_timings(len(w.ids()))
        bar.close()
        w.flush()
    where = f"{out}: {len(w.ids())} rows ({profiled} profiled now), device {dev_id if hardware else '-'}"
    if progress:
        print(f"shard written to {where}", file=sys.stderr)
    return out


def _declare_perplexity(w: TableWriter) -> None:
    w.declare_metric("perplexity", unit="1", source="measured",
                     description="test-split perplexity with inherited supernet weights")
    w.declare_metric("token_accuracy", unit="1", source="measured",
                     description="test-split next-token accuracy with inherited supernet weights")


def _set_eval_tokens(w: TableWriter, tokens: int) -> None:
    if w.attrs.get("eval_tokens") not in (None, tokens):
        raise TableError(f"table {w.path}: eval_tokens {w.attrs['eval_tokens']} there, {tokens} now; "
                         f"perplexities on different token counts are never mixed")
    w.set_attrs(eval_tokens=int(tokens))


def _perplexity_paths(space: str, checkpoint, data_dir) -> tuple[Path, Path]:
    """The supernet checkpoint and the data directory (tokenizer, test split), defaults resolved."""
    from benchmark.paths import data_dir as default_data_dir

    ddir = Path(data_dir) if data_dir is not None else default_data_dir()
    ckpt = Path(checkpoint) if checkpoint is not None else default_data_dir() / f"supernet_{space}.safetensors"
    return ckpt, ddir


def _perplexity_pins(ckpt: Path, ddir: Path) -> dict[str, str]:
    """The root attributes that pin a perplexity: sha256 of the checkpoint and of the tokenizer."""
    from benchmark.files import sha256_file

    return {"supernet_sha256": sha256_file(ckpt), "tokenizer_sha256": sha256_file(ddir / "tokenizer.json")}


def _load_perplexity_inputs(space: str, ckpt: Path, ddir: Path) -> tuple[Any, np.ndarray]:
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.elastic import load_supernet

    return load_supernet(ckpt, space), np.asarray(load_split("test", ddir))


def _perplexity_inputs(space: str, checkpoint, data_dir) -> tuple[Any, np.ndarray, dict[str, str]]:
    """The supernet, the test tokens and the root attributes that pin them (sha256s)."""
    ckpt, ddir = _perplexity_paths(space, checkpoint, data_dir)
    net, tokens = _load_perplexity_inputs(space, ckpt, ddir)
    return net, tokens, _perplexity_pins(ckpt, ddir)


# one perplexity worker process (add_perplexity(workers=N)): its supernet and test tokens, loaded once
_WORKER: dict[str, Any] = {}


def _perplexity_worker_init(space: str, ckpt: str, ddir: str, eval_tokens: int) -> None:
    import torch

    torch.set_num_threads(1)  # N workers share the machine's cores, one thread each
    net, tokens = _load_perplexity_inputs(space, Path(ckpt), Path(ddir))
    _WORKER.update(space=space, net=net, tokens=tokens, eval_tokens=int(eval_tokens))


def _perplexity_worker(arch_id: str) -> tuple[str, float, float, int]:
    from benchmark.spaces import get_space

    arch = get_space(_WORKER["space"]).from_id(arch_id)
    return _perplexity_record(_WORKER["net"], arch, _WORKER["tokens"], _WORKER["eval_tokens"])


def _perplexity_record(net, arch, tokens, eval_tokens) -> tuple[str, float, float, int]:
    """``(id, perplexity, token_accuracy, tokens predicted)`` of one architecture."""
    r = measure_perplexity_for(net, arch, tokens, eval_tokens)
    return arch.id, float(r.perplexity), float(r.token_accuracy), int(r.tokens)


def add_perplexity(table, checkpoint=None, data_dir=None, eval_tokens: int = 65536, flush_every: int = 10,
                   progress: bool = True, reuse: Sequence = (), workers: int = 1) -> int:
    """Measure perplexity and token accuracy for every row of ``table`` that lacks them (a
    perplexity pass after a hardware-only ``profile(..., perplexity=False)``). Resumable: values
    are flushed every ``flush_every`` rows and rows already measured are skipped; the checkpoint
    and tokenizer must be those of earlier perplexities (sha256 in the root attributes).

    ``reuse``: tables whose perplexities are copied instead of measured again (e.g. an earlier
    shard of the same architectures whose timings were superseded). Perplexity does not depend
    on the machine, but each must pin the same checkpoint, tokenizer and ``eval_tokens`` (checked;
    a mismatch is a TableError). Returns the number of rows measured now (copies not counted).

    ``workers``: 1 (default) measures in this process, taking the CPU's measurement lock per
    architecture (a timing runner on this machine interleaves). ``N > 1`` measures in N local
    processes with one torch thread each, and holds the CPU lock for the whole pass (no timing runs
    meanwhile: perplexity then uses the cores); results are written in table order, flushed as
    with one worker, so a killed pass resumes the same way. Values agree with one worker's to float
    rounding (thread count changes the order of float sums)."""
    from tqdm.auto import tqdm

    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ValueError(f"invalid flush_every: {flush_every!r}; allowed: an integer >= 1")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"invalid workers: {workers!r}; allowed: an integer >= 1")
    t = Table(table)
    sp = t.space
    todo = t.architectures()
    if "perplexity" in t.metrics():
        missing = np.isnan(t.metric("perplexity"))
        todo = [a for a, m in zip(todo, missing) if m]
    ckpt, ddir = _perplexity_paths(sp.name, checkpoint, data_dir)
    attrs = _perplexity_pins(ckpt, ddir)
    copies = _reusable_perplexities(reuse, {a.id for a in todo}, attrs, eval_tokens)
    done = 0
    # flushed here, per row, not per fill: a row is two fills
    with TableWriter(table, sp.name, attrs=attrs, flush_every=None) as w:
        _declare_perplexity(w)
        if copies:
            _set_eval_tokens(w, eval_tokens)
            for name in ("token_accuracy", "perplexity"):
                w.fill_metric(name, {aid: v[name] for aid, v in copies.items()})
            w.flush()
            todo = [a for a in todo if a.id not in copies]
            if progress:
                print(f"perplexity of {len(copies)} rows copied from {', '.join(map(str, reuse))}", file=sys.stderr)
        bar = tqdm(total=len(todo), desc=f"perplexity {Path(table).name}", unit="arch", disable=not progress)
        for aid, ppl, acc, n_tokens in _perplexities(todo, sp.name, ckpt, ddir, eval_tokens, workers):
            _set_eval_tokens(w, n_tokens)
            w.fill_metric("token_accuracy", {aid: acc})
            w.fill_metric("perplexity", {aid: ppl})
            done += 1
            bar.update(1)
            if done % flush_every == 0:
                w.flush()
        bar.close()
    if progress:
        print(f"perplexity of {done} rows written to {table}", file=sys.stderr)
    return done


def _perplexities(todo: Sequence, space: str, ckpt: Path, ddir: Path, eval_tokens: int, workers: int):
    """Yield ``(id, perplexity, token_accuracy, tokens)`` for ``todo``, in order (see add_perplexity)."""
    from benchmark.profiling.latency import device_lock

    if not todo:
        return
    if workers == 1:
        net, tokens = _load_perplexity_inputs(space, ckpt, ddir)
        for arch in todo:
            with device_lock("cpu"):
                record = _perplexity_record(net, arch, tokens, eval_tokens)
            yield record
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (no forked torch/OpenMP state)
    with device_lock("cpu"), ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_perplexity_worker_init, initargs=(space, str(ckpt), str(ddir), eval_tokens)) as pool:
        yield from pool.map(_perplexity_worker, [a.id for a in todo])


def _reusable_perplexities(reuse: Sequence, wanted: set, attrs: Mapping[str, str], eval_tokens: int) -> dict:
    """{architecture id: {"perplexity", "token_accuracy"}} from the ``reuse`` tables for ids in
    ``wanted``, after checking that each table measured them the same way (first table wins)."""
    out: dict[str, dict[str, float]] = {}
    for path in reuse:
        src = Table(path)
        for key, want in (*attrs.items(), ("eval_tokens", eval_tokens)):
            have = src.attrs.get(key)
            if have is None or (int(have) != int(want) if key == "eval_tokens" else have != want):
                raise TableError(f"cannot reuse perplexities of {path}: its {key} is {have!r}, this pass uses "
                                 f"{want!r}; perplexities measured differently are never mixed")
        if "perplexity" not in src.metrics():
            continue
        ppl, acc = src.metric("perplexity"), src.metric("token_accuracy")
        for aid, p, a in zip(src.ids, ppl, acc):
            if aid in wanted and aid not in out and np.isfinite(p) and np.isfinite(a):
                out[aid] = {"perplexity": float(p), "token_accuracy": float(a)}
    return out


def measure_perplexity_for(net, arch, tokens, eval_tokens):
    from benchmark.supernet.perplexity import measure_perplexity

    return measure_perplexity(net, arch, tokens, max_tokens=eval_tokens)


# --------------------------------------------------------------------------- CLI
def _shard_arg(s: str) -> tuple[int, int]:
    try:
        return parse_shard(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
        raise ValueError("invalid --ray: the 'ray' package is not installed (pip install -e .[moo-ray])") from None
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"invalid n_shards: {n_shards!r}; allowed: an integer >= 1")
    from benchmark.table import merge_tables

    if "shard" in kwargs:
        raise ValueError("invalid shard with Ray: the shards are i/n_shards for i < n_shards")
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


def _profile_args(args) -> dict:
    return dict(device=args.device, n=args.n, archs=args.archs, seed=args.seed, settings=args.settings,
                dtype=args.dtype, warmup=args.warmup, repeats=args.repeats, device_id=args.device_id,
                checkpoint=args.checkpoint, data_dir=args.data_dir, eval_tokens=args.eval_tokens,
                perplexity=not args.no_perplexity, latency=not args.no_latency, memory=not args.no_memory,
                energy=not args.no_energy, include_extremes=not args.no_extremes,
                reference_every=args.reference_every, threads=args.threads)


def _profile_cmd(args) -> int:
    if args.ray:
        out = profile_ray(args.ray, args.space, args.out, args.ray_shards, **_profile_args(args))
    else:
        out = profile(args.space, args.out, shard=args.shard, progress=not args.quiet, **_profile_args(args))
    print(out)
    return 0


def add_profile_parser(sub) -> None:
    s = sub.add_parser(
        "profile", help="profile architectures on this machine into a shard table (resumable)",
        description="Measure perplexity (inherited supernet weights, test split), exact params/FLOPs, and "
                    "latency, peak memory and energy per setting on this device; one row per architecture, "
                    "written atomically, so a rerun resumes. Shards (--shard i/n) merge with 'hwlm table merge'. "
                    "With --ray, shards run as Ray tasks and are merged into --out.")
    s.add_argument("--space", default="t", help="search space (t, s, m, l); default t")
    s.add_argument("--out", required=True, help="shard table to write or resume (HDF5)")
    s.add_argument("--device", default="cpu", help="torch device to measure on: cpu, cuda, cuda:1 (default cpu)")
    s.add_argument("--device-id", default=None, help="device name in the table (default: derived from the "
                                                     "hardware, e.g. cpu-epyc-2c)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("-n", type=int, default=None, help="number of architectures to sample uniformly (seeded)")
    g.add_argument("--archs", nargs="+", default=None, metavar="ID", help="explicit architecture ids")
    s.add_argument("--seed", type=int, default=0, help="seed of the sample, the profiling order and the random "
                                                       "weights/tokens used for timing (default 0)")
    s.add_argument("--settings", nargs="+", default=None, metavar="NAME",
                   help="settings like prefill-b1-s256-fp32 decode-b1-s128-fp32 (default: the space's defaults)")
    s.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"],
                   help="dtype of the default settings (default fp32 on CPU, fp16 on GPU)")
    s.add_argument("--shard", type=_shard_arg, default=(0, 1), metavar="i/n",
                   help="profile every n-th architecture starting at i (0 <= i < n); default 0/1")
    s.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run --ray-shards shards as Ray tasks (a cluster address, or 'local') and merge them into "
                        "--out; needs the moo-ray extra and nodes started with one 'hwlm_profile_slot' resource")
    s.add_argument("--ray-shards", type=int, default=2, help="number of shards with --ray (default 2)")
    s.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    s.add_argument("--repeats", type=int, default=10, help="timed repeats stored per setting (default 10)")
    s.add_argument("--checkpoint", default=None, help="supernet safetensors (default data/supernet_<space>.safetensors)")
    s.add_argument("--data-dir", default=None, help="directory with tokenizer.json and corpus/test.npy (default data)")
    s.add_argument("--eval-tokens", type=int, default=65536, help="test tokens for perplexity (default 65536)")
    s.add_argument("--reference-every", type=int, default=50,
                   help="re-time the largest/smallest architectures every this many rows (drift log; default 50)")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads for the whole run (default: torch's; part of the device id)")
    s.add_argument("--no-perplexity", action="store_true", help="skip perplexity and token accuracy")
    s.add_argument("--no-latency", action="store_true", help="skip latency")
    s.add_argument("--no-memory", action="store_true", help="skip peak memory")
    s.add_argument("--no-energy", action="store_true", help="skip energy")
    s.add_argument("--no-extremes", action="store_true", help="do not add the largest and smallest architectures")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_profile_cmd)


def _merge_cmd(args) -> int:
    from benchmark.table import Table, merge_tables

    out = merge_tables(args.shards, args.out)
    print(f"merged {len(args.shards)} shard(s) into {out}: {len(Table(out))} rows")
    return 0


def add_table_parser(sub) -> None:
    s = sub.add_parser("table", help="operations on benchmark tables",
                       description="Operations on hwlm-bench HDF5 tables.")
    tsub = s.add_subparsers(dest="table_command", metavar="ACTION", required=True)
    m = tsub.add_parser("merge", help="merge shard tables (de-duplicated by architecture id)",
                        description="Merge shard tables into OUT, written atomically. The first shard holding an "
                                    "architecture wins; shards must agree on space, declarations and device "
                                    "provenance.")
    m.add_argument("out", metavar="OUT", help="merged table to write")
    m.add_argument("shards", nargs="+", metavar="SHARD", help="shard tables, in priority order")
    m.set_defaults(func=_merge_cmd)
    a = tsub.add_parser("add-modeled", help="add (or recompute) modeled devices, calibrated on the measured ones",
                        description="Add modeled latency_ms and energy_mj of every row for the registry's devices "
                                    "(roofline + power model, source 'modeled'), calibrated on the table's measured "
                                    "latencies; rewrites TABLE atomically. See docs/devices.md.")
    a.add_argument("table", metavar="TABLE", help="table to extend in place")
    a.add_argument("--devices", nargs="+", default=None, metavar="ID", help="registry ids (default: all)")
    a.add_argument("--cpu-spec", default="cpu-epyc-7513",
                   help="registry entry describing the measured CPU when its model string matches none "
                        "(default cpu-epyc-7513)")
    a.set_defaults(func=_add_modeled_cmd)
    pp = tsub.add_parser("add-perplexity", help="measure perplexity of rows that lack it (resumable)",
                         description="Fill perplexity and token accuracy (inherited supernet weights, test split) "
                                     "of every row of TABLE that lacks them, e.g. after 'hwlm profile "
                                     "--no-perplexity'. Resumable; never overwrites a value.")
    pp.add_argument("table", metavar="TABLE")
    pp.add_argument("--checkpoint", default=None, help="supernet safetensors (default data/supernet_<space>.safetensors)")
    pp.add_argument("--data-dir", default=None, help="directory with tokenizer.json and corpus/test.npy (default data)")
    pp.add_argument("--eval-tokens", type=int, default=65536, help="test tokens (default 65536)")
    pp.add_argument("--reuse", nargs="+", default=(), metavar="TABLE",
                    help="copy perplexities of the same architectures from these tables (same checkpoint, "
                         "tokenizer and --eval-tokens, checked) instead of measuring them again")
    pp.add_argument("--workers", type=int, default=1,
                    help="local worker processes, one torch thread each (default 1: this process); with "
                         "N > 1 the CPU's measurement lock is held for the whole pass")
    pp.set_defaults(func=lambda a: print(add_perplexity(a.table, a.checkpoint, a.data_dir, a.eval_tokens,
                                                        reuse=a.reuse, workers=a.workers)) or 0)
    c = tsub.add_parser("card", help="write the data card of a table (markdown + plots)",
                        description="Rows and provenance per device, profiling time, noise (CV of repeats), drift "
                                    "of the reference architectures, modeled-device calibration error and metric "
                                    "distributions, as a markdown page with plots beside it.")
    c.add_argument("table", metavar="TABLE")
    c.add_argument("--out", required=True, help="markdown file to write (plots go beside it)")
    c.set_defaults(func=_card_cmd)


def _card_cmd(args) -> int:
    from benchmark.datacard import write_data_card

    print(f"data card written to {write_data_card(args.table, args.out)}")
    return 0


def _add_modeled_cmd(args) -> int:
    from benchmark.profiling.modeled import add_modeled_devices

    r = add_modeled_devices(args.table, devices=args.devices, cpu_spec=args.cpu_spec)
    for kind, c in r["calibration"].items():
        cv = ", ".join(f"{s}: MAPE {v['mape']:.1%}, Kendall tau {v['kendall_tau']:.2f}"
                       for s, v in c["two_fold_cv"].items())
        print(f"{kind} model calibrated on {c['measured_device']} ({c['spec']}); two-fold CV: {cv}")
    print(f"{len(r['devices'])} modeled devices written to {args.table}")
    return 0
