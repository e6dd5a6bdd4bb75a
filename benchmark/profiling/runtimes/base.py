"""What every inference runtime offers the profiler: one interface, timed the same way for all.

A :class:`Backend` is one runtime x dtype x threads. Its life:

1. ``prepare(model)`` once per architecture: takes the dense fp32 :class:`~benchmark.model.GPT`
   holding the weights (seeded random for latency, inherited supernet weights for accuracy) and
   builds what the runtime runs (a cast model, an ONNX Runtime session, a compiled OpenVINO
   model). Untimed.
2. ``prefill(tokens)``: one forward of ``tokens`` (int64 numpy, batch x seq) without a cache;
   returns the logits in the runtime's own form (the measured unit of a prefill setting).
3. ``start_decode(context, max_new)``: prefill ``context`` into a KV cache (untimed) and return a
   :class:`DecodeState`; then ``decode(state, token)`` runs one token (batch x 1) on the cache and
   advances it (the measured unit of a decode setting); ``state.rewind()`` moves the cache back to
   the end of the context, so that a timing repeat can run again without a new prefill.
4. ``running()``: a context manager around measured work (applies torch's process-wide thread
   count; a no-op for runtimes whose sessions carry their own).
5. ``logits(out)``: the logits of a prefill/decode result as float32 numpy (for checks; not timed).
6. ``provenance()``: what was measured — runtime name and version, dtype, threads, graph
   optimisation level, quantisation settings, export opset — JSON-serialisable.

Inputs are numpy so that every runtime receives the same bytes; the torch backend wraps them
without copying.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from benchmark.errors import HwlmError

__all__ = ["RuntimeConfigError", "Backend", "DecodeState", "PastDecode", "import_runtime", "relative_error"]


class RuntimeConfigError(HwlmError):
    """An unknown runtime, dtype, thread count or device id, or a runtime that cannot run here."""


def import_runtime(module: str, runtime: str):
    """Import a runtime's package, or raise :class:`RuntimeConfigError` with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeConfigError(f"invalid runtime: {runtime!r} needs {module} ({e}); install the extra: "
                                 f"pip install -e '.[runtimes]'") from None


class DecodeState:
    """A KV cache after a context was prefilled; ``decode`` advances it, ``rewind`` returns to the context."""

    def __init__(self, context_len: int):
        self.context_len = int(context_len)
        self.pos = self.context_len

    def rewind(self) -> None:
        self.pos = self.context_len


class PastDecode(DecodeState):
    """Decode state of an exported decoder: the past keys/values fed to the next step (``past``),
    and those of the context to rewind to."""

    def __init__(self, context_past: list[np.ndarray], context_len: int):
        super().__init__(context_len)
        self.context_past = context_past
        self.past = context_past

    def rewind(self) -> None:
        super().rewind()
        self.past = self.context_past


class Backend(ABC):
    runtime: str  # "torch", "ort" or "ov"
    dtype: str  # "fp32", "bf16" or "int8"
    threads: int

    @abstractmethod
    def prepare(self, model, export=None) -> "Backend":
        """Build the runnable form of ``model`` (a dense fp32 GPT). ONNX runtimes take an existing
        :class:`~benchmark.profiling.runtimes.export.OnnxExport` of it, or export into a temporary
        directory."""

    def running(self) -> contextlib.AbstractContextManager:
        """Context for a block of measured work: applies process-wide settings (torch's thread
        count) and restores them afterwards. Sessions of the other runtimes carry their own."""
        return contextlib.nullcontext()

    @abstractmethod
    def prefill(self, tokens: np.ndarray) -> Any:
        ...

    @abstractmethod
    def start_decode(self, context: np.ndarray, max_new: int) -> DecodeState:
        ...

    @abstractmethod
    def decode(self, state: DecodeState, token: np.ndarray) -> Any:
        ...

    @abstractmethod
    def logits(self, out: Any) -> np.ndarray:
        ...

    @abstractmethod
    def provenance(self) -> dict[str, Any]:
        ...

    def _check_tokens(self, tokens: Any, what: str) -> np.ndarray:
        if not isinstance(tokens, np.ndarray) or tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise RuntimeConfigError(f"invalid {what}: {type(tokens).__name__}; allowed: a 2-D numpy integer "
                                     f"array (batch x tokens)")
        return np.ascontiguousarray(tokens, dtype=np.int64)


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``max |out - ref| / max |ref|``: the largest deviation relative to the largest reference logit
    (scale-free, and not blown up by logits near zero as an element-wise ratio would be)."""
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise RuntimeConfigError(f"invalid output shape: {out.shape}; allowed: the reference's {ref.shape}")
    return float(np.abs(out - ref).max() / np.abs(ref).max())
