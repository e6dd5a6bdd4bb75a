"""Measured latency: prefill of a batch x sequence setting, and decode time per token with the KV cache.

What is timed
    The dense model of the architecture (:class:`benchmark.model.GPT`) with seeded random
    weights (:meth:`GPT.init_weights`; weights do not change the work, so they do not change
    timing) and seeded random token ids, under ``torch.inference_mode()``.

    * ``prefill``: one forward of ``batch x seq_len`` tokens without a cache (logits at every
      position, as in HW-GPT-Bench). One value per repeat: ms per forward.
    * ``decode``: per repeat, prefill a context of ``c = seq_len`` tokens into a KV cache
      (untimed), then time ``k = decode_tokens`` forwards of one token each, feeding pre-drawn
      random tokens (the sampling step is not part of the model's work). One value per repeat:
      the ``k`` steps' total divided by ``k`` — ms per token, at contexts ``c .. c+k-1``. Needs
      ``c + k <= block_size``.

Clock
    CPU: ``time.perf_counter_ns`` around the work (the kernels are synchronous). CUDA: CUDA
    events recorded on the current stream around the work, after a ``torch.cuda.synchronize()``,
    read after ``end.synchronize()`` — GPU time without host-side launch jitter at the edges.
    Python's garbage collector is disabled while timing.

Protocol
    ``warmup`` untimed runs of the same work, then ``repeats`` timed runs; every repeat is
    returned (the table stores ``N x repeats``). The benchmark's production default is
    ``repeats=10``; tests use fewer.

One measurement per device at a time
    Timing is only meaningful when nothing else runs on the device. :func:`measure_latency`
    (and the energy and memory measurements) hold an exclusive inter-process lock for the
    device (:func:`device_lock`: ``fcntl.flock`` on ``<lock dir>/<device key>.lock``) from the
    first warm-up to the last repeat. A second process measuring the same device blocks until
    the first is done. The lock covers cooperating processes only (anything using this module);
    it cannot stop unrelated programs. The CPU is one device (one lock for the whole machine);
    each CUDA GPU has its own lock, keyed by the GPU's UUID so that different
    ``CUDA_VISIBLE_DEVICES`` numberings agree. Lock directory: ``$HWLM_LOCK_DIR``, else
    ``~/.cache/hwlm/locks``, else ``<tmp>/hwlm-locks-<uid>``. POSIX only (fcntl).

dtype
    fp32 on CPU (the benchmark's CPU settings); fp32, fp16 and bf16 on CUDA. fp32 matmuls run in
    true fp32 (PyTorch's default ``allow_tf32=False`` for matmul is left alone).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from benchmark.errors import HwlmError
from benchmark.model import TORCH_DTYPES, GPT, KVCache  # TORCH_DTYPES: re-exported
from benchmark.settings import DEFAULT_DECODE_TOKENS, MODES, Setting, resolve_setting  # noqa: F401 (re-exported)
from benchmark.spaces import Architecture

__all__ = [
    "DEFAULT_DECODE_TOKENS", "DEFAULT_REPEATS", "DEFAULT_WARMUP", "TORCH_DTYPES", "MODES", "Setting",
    "DeviceBusy", "resolve_setting", "build_model", "random_tokens", "lock_dir", "lock_key", "device_lock",
    "Workload", "prepare", "measure_latency",
]

DEFAULT_WARMUP = 3
DEFAULT_REPEATS = 10


# --------------------------------------------------------------------------- model and inputs
def as_torch_device(device: Any) -> torch.device:
    """``device`` as a torch device; a bare ``cuda`` becomes the current CUDA device."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HwlmError(f"invalid device: {device!r}; CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise HwlmError(f"invalid device: {device!r}; allowed: 'cpu' or 'cuda[:i]'")
    return dev


def build_model(arch: Architecture, device: Any = "cpu", dtype: str = "fp32", seed: int = 0) -> GPT:
    """The dense GPT of ``arch`` with seeded random weights, in eval mode, on ``device`` in ``dtype``."""
    if dtype not in TORCH_DTYPES:
        raise HwlmError(f"invalid dtype: {dtype!r}; allowed: {list(TORCH_DTYPES)}")
    model = GPT(arch).init_weights(seed).eval().requires_grad_(False)
    return model.to(device=as_torch_device(device), dtype=TORCH_DTYPES[dtype])


def random_tokens(batch: int, length: int, vocab_size: int, seed: int, device: Any = "cpu") -> torch.Tensor:
    """Seeded uniform token ids of shape (batch, length), drawn on the CPU then moved."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, vocab_size, (batch, length), generator=g).to(as_torch_device(device))


# --------------------------------------------------------------------------- the device lock
class DeviceBusy(TimeoutError):
    """The device lock was not acquired within the timeout."""


def lock_dir() -> Path:
    """Directory of the lock files: ``$HWLM_LOCK_DIR``, ``~/.cache/hwlm/locks`` or a temp dir."""
    candidates = []
    if os.environ.get("HWLM_LOCK_DIR"):
        candidates.append(Path(os.environ["HWLM_LOCK_DIR"]))
    candidates.append(Path.home() / ".cache" / "hwlm" / "locks")
    candidates.append(Path(tempfile.gettempdir()) / f"hwlm-locks-{os.getuid()}")
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise OSError(errno.EACCES, f"no writable lock directory among {[str(c) for c in candidates]}")


def lock_key(device: Any = "cpu") -> str:
    """File-name key of a device's lock: ``"cpu"`` (one lock per machine) or ``"cuda-<uuid>"``."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        dev = as_torch_device(dev)
        uuid = getattr(torch.cuda.get_device_properties(dev), "uuid", None)
        return f"cuda-{uuid}" if uuid is not None else f"cuda-{dev.index}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(dev))


_local = threading.Lock()
_held: dict[str, tuple[threading.RLock, list[int]]] = {}  # key -> (thread lock, [depth]) in this process


@contextlib.contextmanager
def device_lock(device: Any = "cpu", timeout: float | None = None, poll_s: float = 0.05) -> Iterator[Path]:
    """Hold the exclusive measurement lock of ``device`` (inter-process, ``fcntl.flock``).

    Blocks until the lock is free; with ``timeout`` (seconds), raises :class:`DeviceBusy` when
    it is still held by another process (or thread) after that long — ``timeout=0`` is a
    non-blocking try. Re-entrant within a thread, so a runner may hold the lock around several
    measurements that take it themselves. Yields the lock file's path.
    """
    key = lock_key(device)
    with _local:
        rlock, depth = _held.setdefault(key, (threading.RLock(), [0]))
    deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
    if not rlock.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
        raise DeviceBusy(f"device {key!r} is being measured by another thread (waited {timeout} s)")
    fd = None
    try:
        path = lock_dir() / f"{key}.lock"
        if depth[0] == 0:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            if deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise DeviceBusy(f"device {key!r} is being measured by another process "
                                             f"(lock {path}, waited {timeout} s)") from None
                        time.sleep(poll_s)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        depth[0] += 1
        try:
            yield path
        finally:
            depth[0] -= 1
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        rlock.release()


# --------------------------------------------------------------------------- timing
def device_timer(dev: torch.device) -> Callable[[Callable[[], Any]], float]:
    """A function that runs ``fn`` once and returns its duration in ms on ``dev``'s clock."""
    if dev.type == "cuda":
        def time_cuda(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(dev)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        return time_cuda

    def time_cpu(fn):
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e6
    return time_cpu


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (restored afterwards); ``None`` changes nothing."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def gc_paused():
    """Run the block with Python's garbage collector off (a collection inside a timed run is noise)."""
    was = gc.isenabled()
    # Long-lived objects (torch's modules, the table) move to the permanent generation first, so
    # the collection before timing scans only what is new: ~0.3 s less per measurement. Unfrozen
    # afterwards, so that garbage among them is still collected by the automatic collector.
    gc.freeze()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()


def check_counts(warmup: int, repeats: int) -> None:
    """Refuse a negative ``warmup`` or ``repeats`` < 1, naming the value."""
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise HwlmError(f"invalid warmup: {warmup!r}; allowed: an integer >= 0")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise HwlmError(f"invalid repeats: {repeats!r}; allowed: an integer >= 1 (production default "
                         f"{DEFAULT_REPEATS})")


def _check_model(model: GPT, arch: Architecture, dev: torch.device, dtype: str) -> None:
    p = model.wte.weight
    if model.config.n_head != arch.n_head or model.config.mlp_ratio != arch.mlp_ratio or \
            model.config.embed_dim != arch.embed_dim or model.config.bias != arch.bias:
        raise HwlmError(f"invalid model: its config {model.config} is not architecture {arch.id}")
    if p.device != dev or p.dtype != TORCH_DTYPES[dtype]:
        raise HwlmError(f"invalid model: on {p.device} in {p.dtype}; allowed: on {dev} in {TORCH_DTYPES[dtype]}")


@dataclass
class Workload:
    """One measurable unit of work of an architecture at a setting (shared by latency, energy, memory).

    ``run()`` is the measured unit: one prefill forward, or ``tokens`` single-token decode
    forwards on a cache filled with the context. ``setup()`` (untimed) prepares a repeat: it
    resets the cache and prefills the context (decode; a no-op for prefill). ``rewind()`` moves
    the cache back to the end of the context so ``run()`` can go again without a new prefill —
    the cached context is untouched, the decoded positions are overwritten. ``tokens`` is the
    number of forwards per ``run()`` (1 for prefill): per-token values divide by it.
    """

    setting: Setting
    device: torch.device
    model: GPT
    run: Callable[[], Any]
    setup: Callable[[], Any]
    rewind: Callable[[], Any]
    tokens: int
    inputs: tuple[torch.Tensor, ...] = ()
    cache: KVCache | None = None


def _noop() -> None:
    return None


def prepare(arch: Architecture, setting: Any, device: Any = "cpu", seed: int = 0, model: GPT | None = None,
            decode_tokens: int = DEFAULT_DECODE_TOKENS) -> Workload:
    """Validate ``setting`` for ``arch`` and build the :class:`Workload` (model with seeded random
    weights unless ``model`` is given; seeded random token ids)."""
    st = resolve_setting(setting)
    dev = as_torch_device(device)
    if not isinstance(arch, Architecture):
        raise HwlmError(f"invalid arch: {arch!r}; allowed: an Architecture")
    block = arch.search_space.block_size
    if model is None:
        model = build_model(arch, dev, st.dtype, seed)
    else:
        _check_model(model, arch, dev, st.dtype)
    vocab = model.config.vocab_size
    if st.mode == "prefill":
        if st.seq_len > block:
            raise HwlmError(f"invalid seq_len: {st.seq_len}; allowed: at most block_size={block} of space "
                             f"{arch.space!r}")
        x = random_tokens(st.batch, st.seq_len, vocab, seed, dev)
        return Workload(st, dev, model, lambda: model(x), _noop, _noop, 1, (x,))
    k = decode_tokens
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or st.seq_len + k > block:
        raise HwlmError(f"invalid decode setting: context {st.seq_len} + {k!r} decoded tokens; allowed: "
                         f"decode_tokens >= 1 and context + decode_tokens <= block_size={block} of space "
                         f"{arch.space!r}")
    k = int(k)
    ctx = random_tokens(st.batch, st.seq_len, vocab, seed, dev)
    new = random_tokens(st.batch, k, vocab, seed + 1, dev)
    cache = model.new_cache(st.batch, st.seq_len + k)

    def setup():
        cache.pos = 0
        model(ctx, cache)

    def rewind():
        cache.pos = st.seq_len

    def run():
        for t in range(k):
            model(new[:, t:t + 1], cache)

    return Workload(st, dev, model, run, setup, rewind, k, (ctx, new), cache)


def measure_latency(arch: Architecture, setting: Any, device: Any = "cpu", warmup: int = DEFAULT_WARMUP,
                    repeats: int = DEFAULT_REPEATS, seed: int = 0, *, decode_tokens: int = DEFAULT_DECODE_TOKENS,
                    model: GPT | None = None, threads: int | None = None, lock: bool = True,
                    lock_timeout: float | None = None) -> np.ndarray:
    """Measured latency in ms, every repeat: an array of shape ``(repeats,)``.

    ``prefill`` settings: ms per forward of ``batch x seq_len`` tokens. ``decode`` settings: ms
    per generated token with the KV cache, averaged over ``decode_tokens`` tokens after a context
    of ``seq_len`` tokens (see the module docstring). ``model`` reuses an already built model
    (it must be ``arch`` on ``device`` in the setting's dtype); otherwise one is built with
    seeded random weights. ``threads`` sets ``torch.set_num_threads`` for the measurement
    (restored afterwards).

    Holds the device's exclusive inter-process lock (:func:`device_lock`) from the first warm-up
    to the last repeat, so that two measurements never share a device; ``lock=False`` only for
    callers that already hold it or deliberately measure contention. ``lock_timeout`` as in
    :func:`device_lock`.
    """
    check_counts(warmup, repeats)
    w = prepare(arch, setting, device, seed, model, decode_tokens)
    timer = device_timer(w.device)
    times = np.empty(int(repeats), dtype=np.float64)
    lock_cm = device_lock(w.device, lock_timeout) if lock else contextlib.nullcontext()
    with torch_threads(threads), torch.inference_mode(), lock_cm:
        for _ in range(int(warmup)):
            w.setup()
            w.run()
        with gc_paused():
            for r in range(int(repeats)):
                w.setup()
                times[r] = timer(w.run) / w.tokens
    return times
