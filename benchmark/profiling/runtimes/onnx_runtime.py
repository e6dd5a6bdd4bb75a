"""ONNX Runtime on the CPU execution provider: the exported graphs in fp32, or int8 by dynamic quantisation.

Session: ``CPUExecutionProvider`` only, ``graph_optimization_level=ORT_ENABLE_ALL`` (constant
folding, node fusions such as LayerNorm/GELU/attention patterns, layout optimisations),
sequential execution, ``intra_op_num_threads = inter_op_num_threads = threads``, thread spinning
off (a spinning idle pool thread would take CPU time from other work on a shared core).

int8: ``onnxruntime.quantization.quantize_dynamic`` on both fp32 graphs, restricted to the
**linear layers** — the ``MatMul`` nodes whose second input is a weight (an initializer): the
attention ``qkv``/``proj``, the MLP ``fc``/``proj`` and the tied output head. Weights become
signed int8, per tensor, symmetric (``QInt8``, ``per_channel=False``, ``reduce_range=False``);
activations are quantised to uint8 at run time per tensor (ORT's ``DynamicQuantizeLinear``) and
the product runs as ``MatMulInteger``. Attention's activation x activation products, LayerNorm,
GELU, softmax and the embedding gather stay fp32. The quantised graphs are written beside the export
(``*.int8.onnx``) and reused.

Decode feeds the previous step's ``present_*`` outputs as the next step's ``past_*`` inputs
(copies into numpy between steps, as a plain ``session.run`` loop does). A prefill measured for
latency asks for ``logits`` only; the presents are computed inside the graph either way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.profiling.runtimes.base import Backend, PastDecode, RuntimeConfigError, import_runtime

__all__ = ["OrtBackend", "quantize_linear_int8"]

QUANTIZATION = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                "activation_type": "QUInt8 (dynamic, per tensor)", "per_channel": False, "reduce_range": False,
                "nodes": "MatMul with an initializer weight (linear layers and the tied output head)"}


def _linear_matmuls(path: str) -> list[str]:
    """Names of the MatMul nodes of the graph at ``path`` whose second input is an initializer."""
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    weights = {t.name for t in g.initializer}
    return [n.name for n in g.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights]


def quantize_linear_int8(src: str, dst: str) -> list[str]:
    """Dynamically quantise the linear-layer MatMuls of the ONNX graph ``src`` into ``dst`` (see the
    module docstring); returns the quantised node names. Written to a temporary name first."""
    import_runtime("onnxruntime", "ort")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = _linear_matmuls(src)
    if not nodes:
        raise RuntimeConfigError(f"invalid graph {src}: no MatMul with a weight initializer to quantise")
    tmp = f"{dst}.tmp.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic's advice to run shape pre-processing (static quantisation's)
    try:
        quantize_dynamic(src, tmp, weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes)
    finally:
        root.setLevel(level)
    os.replace(tmp, dst)
    return nodes


class OrtBackend(Backend):
    runtime = "ort"

    def __init__(self, dtype: str = "fp32", threads: int = 1):
        if dtype not in ("fp32", "int8"):
            raise RuntimeConfigError(f"invalid dtype for runtime 'ort': {dtype!r}; allowed: ['fp32', 'int8']")
        self.dtype, self.threads = dtype, int(threads)
        self.export = None
        self.quantized_nodes: int | None = None
        self._ort = import_runtime("onnxruntime", "ort")

    def _session(self, path: str):
        ort = self._ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = self.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.log_severity_level = 3
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def prepare(self, model, export=None) -> "OrtBackend":
        from benchmark.profiling.runtimes.export import export_or_reuse

        self.export, self._tmp = export_or_reuse(model, export)
        paths = [self.export.prefill_path, self.export.decode_path]
        if self.dtype == "int8":
            int8 = [str(Path(p).with_suffix(".int8.onnx")) for p in paths]
            self.quantized_nodes = 0
            for src, dst in zip(paths, int8):
                # quantised graphs are derived from the export: redo them when they are older
                if not Path(dst).is_file() or Path(dst).stat().st_mtime < Path(src).stat().st_mtime:
                    quantize_linear_int8(src, dst)
                self.quantized_nodes += len(_linear_matmuls(src))
            paths = int8
        self._prefill, self._decode = self._session(paths[0]), self._session(paths[1])
        self._present = [o.name for o in self._prefill.get_outputs()[1:]]
        self._past = [i.name for i in self._decode.get_inputs()[1:]]
        return self

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        return self._prefill.run(["logits"], {"tokens": self._check_tokens(tokens, "tokens")})[0]

    def start_decode(self, context: np.ndarray, max_new: int) -> PastDecode:
        ctx = self._check_tokens(context, "context")
        out = self._prefill.run(None, {"tokens": ctx})
        return PastDecode(out[1:], ctx.shape[1])

    def decode(self, state: PastDecode, token: np.ndarray) -> np.ndarray:
        feeds = {"tokens": self._check_tokens(token, "token"), **dict(zip(self._past, state.past))}
        out = self._decode.run(None, feeds)
        state.past = out[1:]
        state.pos += token.shape[1]
        return out[0]

    def logits(self, out: np.ndarray) -> np.ndarray:
        return np.asarray(out, dtype=np.float32)

    def provenance(self) -> dict[str, Any]:
        from benchmark.profiling.runtimes.export import export_settings

        quantization: Any = "none"
        if self.dtype == "int8":
            quantization = dict(QUANTIZATION)
            # the count is one model's: a device's provenance, written before any model, has none
            if self.quantized_nodes is not None:
                quantization["quantized_nodes"] = self.quantized_nodes
        ort = self._ort
        return {"runtime": "onnxruntime", "runtime_version": ort.__version__, "dtype": self.dtype,
                "threads": self.threads, "intra_op_threads": self.threads, "inter_op_threads": self.threads,
                "execution_provider": "CPUExecutionProvider", "graph_optimization": "ORT_ENABLE_ALL",
                "execution_mode": "ORT_SEQUENTIAL", "thread_spinning": False, "quantization": quantization,
                **(self.export.provenance() if self.export is not None else export_settings())}
