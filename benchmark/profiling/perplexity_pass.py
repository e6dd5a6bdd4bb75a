"""The perplexity pass: perplexity and token accuracy of table rows that lack them (``hwlm table
add-perplexity``), and the pieces :mod:`benchmark.profiling.runner` shares with it.

A perplexity is pinned to the supernet checkpoint and the tokenizer (their sha256 are root
attributes of the table) and to the number of predicted test tokens (``eval_tokens``); values
measured differently are never mixed in one table.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS
from benchmark.table import Table, TableError, TableWriter

__all__ = ["add_perplexity", "declare_perplexity", "set_eval_tokens", "perplexity_inputs", "measure_perplexity_for"]


def declare_perplexity(w: TableWriter) -> None:
    """Declare the two measured perplexity metrics of a table."""
    w.declare_metric("perplexity", unit="1", source="measured",
                     description="test-split perplexity with inherited supernet weights")
    w.declare_metric("token_accuracy", unit="1", source="measured",
                     description="test-split next-token accuracy with inherited supernet weights")


def set_eval_tokens(w: TableWriter, tokens: int) -> None:
    """Record the predicted-token count of the table's perplexities; a different count is refused."""
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


def perplexity_inputs(space: str, checkpoint, data_dir) -> tuple[Any, np.ndarray, dict[str, str]]:
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


def add_perplexity(table, checkpoint=None, data_dir=None, eval_tokens: int = DEFAULT_EVAL_TOKENS, flush_every: int = 10,
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
        declare_perplexity(w)
        if copies:
            set_eval_tokens(w, eval_tokens)
            for name in ("token_accuracy", "perplexity"):
                w.fill_metric(name, {aid: v[name] for aid, v in copies.items()})
            w.flush()
            todo = [a for a in todo if a.id not in copies]
            if progress:
                print(f"perplexity of {len(copies)} rows copied from {', '.join(map(str, reuse))}", file=sys.stderr)
        bar = tqdm(total=len(todo), desc=f"perplexity {Path(table).name}", unit="arch", disable=not progress)
        for aid, ppl, acc, n_tokens in _perplexities(todo, sp.name, ckpt, ddir, eval_tokens, workers):
            set_eval_tokens(w, n_tokens)
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
    """:func:`~benchmark.supernet.perplexity.measure_perplexity` on the first ``eval_tokens`` test tokens."""
    from benchmark.supernet.perplexity import measure_perplexity

    return measure_perplexity(net, arch, tokens, max_tokens=eval_tokens)
