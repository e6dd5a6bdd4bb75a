"""A memory pass: peak resident memory of a seeded subset of architectures on one runtime device.

Each (architecture, setting) is measured by :func:`~benchmark.profiling.runtimes.rss.measure_rss`
in a fresh process (the only way to see what ONNX Runtime's and OpenVINO's own allocators hold),
which costs a process start per value; so the pass covers a seeded subset of the timing pass's
architectures (the largest and smallest always in it) and the release answers the others from a
surrogate. Resident memory does not depend on how busy the other CPUs are, so a memory pass may
run beside a timing pass on another CPU.

The pass appends one JSON line per value to a log (header first; resumable like a timing pass);
:func:`memory_values` reads it back as ``{arch id: {setting: MB}}`` (MB = 2**20 bytes of
``inference_rss_bytes``: peak minus the interpreter-and-libraries baseline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.profiling.record_log import append_record, open_records, read_records
from benchmark.profiling.runtimes.registry import RuntimeDevice

__all__ = ["memory_subset", "run_memory_pass", "memory_values", "MEMORY_LOG_FORMAT"]

MEMORY_LOG_FORMAT = "hwlm-bench memory pass log v1"


def memory_subset(archs: Sequence[str], n: int, seed: int = 0, space: str = "t") -> list[str]:
    """``n`` of ``archs`` (seeded), always including the space's largest and smallest when present."""
    from benchmark.spaces import get_space

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise HwlmError.invalid("n", n, "an integer >= 1")
    sp = get_space(space)
    canonical = [sp.from_id(a).id for a in archs]  # stored ids may be of an older format
    extremes = (sp.largest().id, sp.smallest().id)
    must = [a for a, c in zip(archs, canonical) if c in extremes]
    rest = [a for a, c in zip(archs, canonical) if c not in extremes]
    pick = np.random.default_rng(seed).permutation(len(rest))[:max(0, n - len(must))]
    return must + [rest[i] for i in sorted(pick)]


def _check_header(path, head: dict) -> None:
    if head.get("format") != MEMORY_LOG_FORMAT:
        raise HwlmError(f"invalid memory log {path}: no {MEMORY_LOG_FORMAT!r} header")


def run_memory_pass(archs: Sequence[str], device: RuntimeDevice, settings: Sequence[str], log: str | os.PathLike,
                    export_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True) -> int:
    """Measure (or resume measuring) every (architecture, setting); returns the values in the log."""
    from tqdm.auto import tqdm

    from benchmark.profiling.runtimes.rss import measure_rss

    log = Path(log)
    head = {"format": MEMORY_LOG_FORMAT, "device_key": device.key, "archs": list(archs), "settings": list(settings),
            "seed": seed}
    old, done = open_records(log, head, "memory log")
    if old is not None:
        _check_header(log, old)
        if old != head:
            raise HwlmError(f"cannot resume {log}: it is another memory pass; use a new log file")
    todo = [(a, s) for a in archs for s in settings][len(done):]
    n = len(done)
    with open(log, "ab") as f:
        for a, s in tqdm(todo, desc=f"memory {device.key}", unit="value", disable=not progress):
            r = measure_rss(device.runtime, device.dtype, device.threads, a, s, seed,
                            export_dir=None if export_dir is None else str(export_dir))
            append_record(f, r.as_dict())
            n += 1
    return n


def memory_values(log: str | os.PathLike) -> tuple[dict, dict[str, dict[str, float]]]:
    """``(header, {arch id: {setting: inference MB}})``; values a child could not measure are NaN."""
    head, rows = read_records(log, "memory log")
    _check_header(log, head)
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        b = r.get("inference_rss_bytes")
        out.setdefault(r["arch_id"], {})[r["setting"]] = float("nan") if b is None else b / 2**20
    return head, out
