"""OpenVINO's CPU plugin running the same exported ONNX graphs, fp32.

``ov.Core().read_model`` reads the ONNX files of :mod:`~benchmark.profiling.runtimes.export`;
``compile_model(..., "CPU", config)`` with ``INFERENCE_NUM_THREADS = threads``, one stream,
``PERFORMANCE_HINT = LATENCY`` and **``INFERENCE_PRECISION_HINT = f32``** — on CPUs with
AVX512-BF16 or AMX the plugin otherwise runs fp32 graphs in bf16 by default, which would be a
different dtype under an fp32 device id. The dynamic axes stay dynamic (the plugin compiles per
input shape on first use; warm-up covers it).

Decode copies the ``present_*`` output tensors (the request reuses their buffers) and feeds them
as the next step's ``past_*`` inputs, as the ONNX Runtime backend does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.profiling.runtimes.base import Backend, PastDecode, RuntimeConfigError, import_runtime

__all__ = ["OpenVinoBackend"]


class OpenVinoBackend(Backend):
    runtime = "ov"

    def __init__(self, dtype: str = "fp32", threads: int = 1):
        if dtype != "fp32":
            raise RuntimeConfigError(f"invalid dtype for runtime 'ov': {dtype!r}; allowed: ['fp32']")
        self.dtype, self.threads = dtype, int(threads)
        self.export = None
        self._ov = import_runtime("openvino", "ov")

    def _config(self) -> dict[str, Any]:
        return {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"}

    def prepare(self, model, export=None) -> "OpenVinoBackend":
        from benchmark.profiling.runtimes.export import export_or_reuse

        self.export, self._tmp = export_or_reuse(model, export)
        core = self._ov.Core()
        self._compiled = [core.compile_model(core.read_model(p), "CPU", self._config())
                          for p in (self.export.prefill_path, self.export.decode_path)]
        self._prefill, self._decode = (c.create_infer_request() for c in self._compiled)
        self._present = [o.get_any_name() for o in self._compiled[0].outputs[1:]]
        self._past = [i.get_any_name() for i in self._compiled[1].inputs[1:]]
        self._precision = self._compiled[0].get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return self

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        self._prefill.infer({"tokens": self._check_tokens(tokens, "tokens")})
        return self._prefill.get_tensor("logits").data

    def start_decode(self, context: np.ndarray, max_new: int) -> PastDecode:
        ctx = self._check_tokens(context, "context")
        self._prefill.infer({"tokens": ctx})
        return PastDecode([self._prefill.get_tensor(n).data.copy() for n in self._present], ctx.shape[1])

    def decode(self, state: PastDecode, token: np.ndarray) -> np.ndarray:
        self._decode.infer({"tokens": self._check_tokens(token, "token"), **dict(zip(self._past, state.past))})
        state.past = [self._decode.get_tensor(n).data.copy() for n in self._present]
        state.pos += token.shape[1]
        return self._decode.get_tensor("logits").data

    def logits(self, out: np.ndarray) -> np.ndarray:
        return np.array(out, dtype=np.float32)  # a copy: the request's buffer is overwritten by the next run

    def provenance(self) -> dict[str, Any]:
        from benchmark.profiling.runtimes.export import export_settings

        return {"runtime": "openvino", "runtime_version": self._ov.get_version(), "dtype": self.dtype,
                "threads": self.threads, "intra_op_threads": self.threads, "plugin": "CPU",
                "compile_config": {k: str(v) for k, v in self._config().items()},
                "inference_precision": getattr(self, "_precision", None),
                "graph_optimization": "OpenVINO CPU plugin transformations (always on)", "quantization": "none",
                **(self.export.provenance() if self.export is not None else export_settings())}
