"""PyTorch eager execution of the dense model, fp32 or bf16, at a fixed thread count.

The model is :class:`benchmark.model.GPT` itself (the one ``benchmark.profiling.latency`` times):
prefill is one forward without a cache, decode one forward of one token on a pre-allocated
:class:`~benchmark.model.KVCache` in the same dtype. bf16 casts weights, activations, rotary
tables and cache to bfloat16 (oneDNN runs the matmuls with AVX512-BF16 instructions where the
CPU has them, otherwise it emulates them in fp32 at a cost); logits come back as bf16.

The thread count is torch's process-wide ``torch.set_num_threads``: :meth:`running` applies it
for a block of work and restores the previous value.
"""

from __future__ import annotations

import contextlib
import copy
import re
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.model import GPT, KVCache
from benchmark.profiling.runtimes.base import Backend, DecodeState, RuntimeConfigError

__all__ = ["TorchBackend", "cpu_flags"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where the file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def _onednn_version() -> str | None:
    m = re.search(r"MKL-DNN v([\w.]+)", torch.__config__.show())
    return m.group(1) if m else None


class _TorchDecode(DecodeState):
    def __init__(self, cache: KVCache, context_len: int):
        super().__init__(context_len)
        self.cache = cache

    def rewind(self) -> None:
        super().rewind()
        self.cache.pos = self.context_len


class TorchBackend(Backend):
    runtime = "torch"

    def __init__(self, dtype: str = "fp32", threads: int = 1):
        if dtype not in _DTYPES:
            raise RuntimeConfigError(f"invalid dtype for runtime 'torch': {dtype!r}; allowed: {list(_DTYPES)}")
        self.dtype, self.threads = dtype, int(threads)
        self.model: GPT | None = None

    def prepare(self, model: GPT, export=None) -> "TorchBackend":
        # Module.to() casts in place: cast a copy so the caller's fp32 model stays fp32
        self.model = model.eval() if self.dtype == "fp32" else copy.deepcopy(model).eval().to(_DTYPES[self.dtype])
        self.model.requires_grad_(False)
        return self

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(old)

    def _model(self) -> GPT:
        if self.model is None:
            raise RuntimeConfigError("invalid backend state: prepare(model) was not called")
        return self.model

    @torch.inference_mode()
    def prefill(self, tokens: np.ndarray) -> torch.Tensor:
        return self._model()(torch.from_numpy(self._check_tokens(tokens, "tokens")))

    @torch.inference_mode()
    def start_decode(self, context: np.ndarray, max_new: int) -> _TorchDecode:
        model = self._model()
        ctx = torch.from_numpy(self._check_tokens(context, "context"))
        cache = model.new_cache(ctx.shape[0], ctx.shape[1] + int(max_new))
        model(ctx, cache)
        return _TorchDecode(cache, ctx.shape[1])

    @torch.inference_mode()
    def decode(self, state: _TorchDecode, token: np.ndarray) -> torch.Tensor:
        out = self._model()(torch.from_numpy(self._check_tokens(token, "token")), state.cache)
        state.pos = state.cache.pos
        return out

    def logits(self, out: torch.Tensor) -> np.ndarray:
        return out.float().numpy()

    def provenance(self) -> dict[str, Any]:
        flags = cpu_flags()
        out = {"runtime": "pytorch-eager", "runtime_version": torch.__version__, "dtype": self.dtype,
               "threads": self.threads, "intra_op_threads": self.threads, "graph_optimization": "none (eager)",
               "quantization": "none", "export_opset": None,
               "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "onednn_version": _onednn_version()}
        if self.dtype == "bf16":
            out["cpu_avx512_bf16"] = "avx512_bf16" in flags
            out["cpu_amx_bf16"] = "amx_bf16" in flags
            out["onednn_bf16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return out
