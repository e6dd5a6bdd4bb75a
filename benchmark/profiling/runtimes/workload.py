"""The measured unit of a setting on a runtime backend, in the shape the latency protocol times.

:func:`runtime_workload` is :func:`benchmark.profiling.latency.prepare` for a
:class:`~benchmark.profiling.runtimes.base.Backend`: the same seeded token ids (so every runtime
sees the inputs the eager measurement sees), ``run()`` one prefill forward or ``k`` single-token
decode steps on a cache filled with the context, ``setup()`` (untimed) a fresh context prefill
per repeat, ``rewind()`` back to the end of the context. The setting's dtype part is not used:
the backend's dtype is the device's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from benchmark.profiling.latency import random_tokens
from benchmark.profiling.runtimes.base import Backend, RuntimeConfigError
from benchmark.settings import DEFAULT_DECODE_TOKENS, Setting, resolve_setting

__all__ = ["RuntimeWorkload", "runtime_workload"]


@dataclass
class RuntimeWorkload:
    setting: Setting
    backend: Backend
    run: Callable[[], Any]
    setup: Callable[[], Any]
    rewind: Callable[[], Any]
    tokens: int  # forwards per run(): per-token values divide by it


def runtime_workload(backend: Backend, setting: Any, vocab_size: int, block_size: int, seed: int = 0,
                     decode_tokens: int = DEFAULT_DECODE_TOKENS) -> RuntimeWorkload:
    """The workload of ``setting`` on a prepared ``backend`` (see the module docstring)."""
    st = resolve_setting(setting)
    if st.mode == "prefill":
        if st.seq_len > block_size:
            raise RuntimeConfigError(f"invalid seq_len: {st.seq_len}; allowed: at most block_size={block_size}")
        x = random_tokens(st.batch, st.seq_len, vocab_size, seed).numpy()
        return RuntimeWorkload(st, backend, lambda: backend.prefill(x), lambda: None, lambda: None, 1)
    k = decode_tokens
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or st.seq_len + k > block_size:
        raise RuntimeConfigError(f"invalid decode setting: context {st.seq_len} + {k!r} decoded tokens; allowed: "
                                 f"decode_tokens >= 1 and context + decode_tokens <= block_size={block_size}")
    k = int(k)
    ctx = random_tokens(st.batch, st.seq_len, vocab_size, seed).numpy()
    new = random_tokens(st.batch, k, vocab_size, seed + 1).numpy()
    state = []

    def setup():
        state[:] = [backend.start_decode(ctx, k)]

    def run():
        s = state[0]
        for t in range(k):
            out = backend.decode(s, new[:, t:t + 1])
        return out

    return RuntimeWorkload(st, backend, run, setup, lambda: state[0].rewind(), k)
