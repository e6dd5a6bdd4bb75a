"""ONNX export of a dense GPT as two graphs: prefill and one-token decode with past keys/values.

Graphs (``L`` layers, ``H_i`` heads of layer ``i``, head size ``hs``, vocabulary ``V``):

* **prefill**: ``tokens`` int64 (batch, seq) -> ``logits`` float (batch, seq, V) and, per layer,
  ``present_key_i`` / ``present_value_i`` (batch, H_i, seq, hs) — the keys (after RoPE) and
  values of every position, i.e. the KV cache the decode graph continues from.
* **decode**: ``tokens`` int64 (batch, 1) and ``past_key_i`` / ``past_value_i``
  (batch, H_i, past, hs) -> ``logits`` (batch, 1, V) and ``present_*`` (batch, H_i, past + 1, hs).
  The new token's position is ``past`` (read from the past keys' shape), so decoding runs on the
  cache instead of re-running the prefix: each step's work grows with the context only through
  attention, as in :meth:`benchmark.model.GPT.forward` with a :class:`~benchmark.model.KVCache`.

Dynamic axes: batch and seq of prefill, batch and past of decode. The cache grows by
concatenation (``present = concat(past, new)``), the usual form of exported decoders; the eager
model writes into a pre-allocated cache instead — same arithmetic, different memory traffic.

The graphs compute exactly the dense model's forward (the same modules: embedding, LayerNorms,
the ``qkv``/``proj``/MLP linears, :func:`~benchmark.model.apply_rope`, the tied output head); only
the attention's cache handling is spelled out here, because ``KVCache`` writes in place, which an
exported graph cannot. Tests compare the graphs' logits with the eager model's, prefill and decode.

Exporter: torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) by
default. On this project's 2-vCPU machine it exports a ``t`` graph in ~3 s; the ``torch.export``-based
exporter (``dynamo=True``, torch's default since 2.9) gives graphs of the same accuracy but took
~30 s per graph, i.e. over a day for the 2 x 2,002 graphs of the ``t`` release. Both are
selectable (``exporter=``) and recorded in the export's provenance with the opset.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.model import GPT, apply_rope
from benchmark.profiling.runtimes.base import RuntimeConfigError

__all__ = ["OPSET", "EXPORTERS", "OnnxExport", "export_onnx", "export_or_reuse", "export_settings", "read_export_record",
           "weights_sha256"]

OPSET = 18  # LayerNormalization needs >= 17; 18 is the lowest opset both exporters emit
EXPORTERS = ("torchscript", "dynamo")


def _attention(attn, h: torch.Tensor, cos, sin, past: tuple[torch.Tensor, torch.Tensor] | None):
    """The dense model's attention on ``h`` (B, T, E); with ``past`` (decode of one token), the new
    key/value are appended to it and the token attends to every cached position."""
    B, T, _ = h.shape
    q, k, v = attn.qkv(h).view(B, T, 3, attn.n_head, attn.head_size).permute(2, 0, 3, 1, 4)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if past is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        y = F.scaled_dot_product_attention(q, k, v)
    return attn.proj(y.transpose(1, 2).reshape(B, T, attn.n_head * attn.head_size)), k, v


class _Graph(nn.Module):
    """Prefill (``decode=False``) or one-token decode forward of ``model`` with explicit keys/values."""

    def __init__(self, model: GPT, decode: bool):
        super().__init__()
        self.model, self.decode = model, decode

    def forward(self, tokens: torch.Tensor, *past: torch.Tensor):
        m = self.model
        T = tokens.shape[1]
        start = past[0].shape[2] if self.decode else 0
        x = m.wte(tokens)
        cos, sin = m.rope_cos[start:start + T], m.rope_sin[start:start + T]
        presents = []
        for i, block in enumerate(m.blocks):
            kv = (past[2 * i], past[2 * i + 1]) if self.decode else None
            a, k, v = _attention(block.attn, block.ln_1(x), cos, sin, kv)
            x = x + a + block.mlp(block.ln_2(x))
            presents += [k, v]
        return (F.linear(m.ln_f(x), m.wte.weight), *presents)


def _names(n_layer: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(n_layer) for kind in ("key", "value")]


def weights_sha256(model: GPT) -> str:
    """SHA-256 over the model's parameter names, shapes, dtypes and bytes: which weights a graph holds."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        t = p.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class OnnxExport:
    """The two exported graphs of one model and how they were made."""

    prefill_path: str
    decode_path: str
    n_layer: int
    opset: int
    exporter: str
    torch_version: str
    onnx_version: str
    weights_sha256: str
    arch_id: str

    def provenance(self) -> dict[str, Any]:
        return {**self.settings(), "weights_sha256": self.weights_sha256}

    def settings(self) -> dict[str, Any]:
        """How the graphs were made, without which weights they hold (the same for every export of a pass)."""
        return _settings(self.opset, self.exporter, self.torch_version, self.onnx_version)


def _settings(opset: int, exporter: str, torch_version: str, onnx_version: str) -> dict[str, Any]:
    return {"export_opset": opset, "exporter": exporter, "export_torch_version": torch_version,
            "onnx_version": onnx_version}


def export_settings(exporter: str = "torchscript", opset: int = OPSET) -> dict[str, Any]:
    """What :meth:`OnnxExport.settings` will record for an export made here with these arguments:
    a runtime's provenance before any model is exported (a timing pass records it first)."""
    import onnx

    return _settings(opset, exporter, torch.__version__, onnx.__version__)


def read_export_record(out_dir: str | os.PathLike, arch_id: str) -> OnnxExport | None:
    """The :class:`OnnxExport` recorded beside ``arch_id``'s graphs in ``out_dir``
    (``<arch_id>.export.json``), or None when there is none or it cannot be read."""
    try:
        return OnnxExport(**json.loads((Path(out_dir) / f"{arch_id}.export.json").read_text()))
    except (OSError, TypeError, ValueError):
        return None


def _export_graph(graph: _Graph, args: tuple, path: Path, input_names, output_names, dynamic: dict, exporter: str,
                  opset: int) -> None:
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice and tracer warnings about shape reads:
        # shapes are read on purpose, and dynamic axes make them graph values (tests check other shapes)
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(graph, args, str(tmp), dynamo=False, opset_version=opset, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic, do_constant_folding=True)
        else:
            # positional: the tokens, then the *past varargs as one sequence
            dims = [{a: torch.export.Dim.AUTO for a in dynamic[n]} for n in input_names]
            shapes = (dims[0], tuple(dims[1:])) if len(dims) > 1 else (dims[0],)
            torch.onnx.export(graph, args, str(tmp), dynamo=True, opset_version=opset, input_names=input_names,
                              output_names=output_names, dynamic_shapes=shapes, verbose=False)
    os.replace(tmp, path)


def export_onnx(model: GPT, out_dir: str | os.PathLike | None = None, *, exporter: str = "torchscript",
                opset: int = OPSET, arch_id: str = "model") -> OnnxExport:
    """Export ``model`` (fp32, eval) as ``<arch_id>.prefill.onnx`` and ``<arch_id>.decode.onnx`` in
    ``out_dir`` (a new temporary directory when None). Graphs already there for the same weights,
    exporter and opset (per the ``.export.json`` beside them) are reused, so several runtimes can
    share one export. Files are written under a temporary name and renamed into place."""
    import onnx

    if exporter not in EXPORTERS:
        raise RuntimeConfigError(f"invalid exporter: {exporter!r}; allowed: {list(EXPORTERS)}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= 23:
        raise RuntimeConfigError(f"invalid opset: {opset!r}; allowed: an integer 17..23 (LayerNormalization "
                                 f"needs 17)")
    if model.wte.weight.dtype != torch.float32:
        raise RuntimeConfigError(f"invalid model dtype: {model.wte.weight.dtype}; allowed: torch.float32 (the "
                                 f"graphs are exported in fp32; runtimes quantise or convert them)")
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="hwlm-onnx-"))
    out.mkdir(parents=True, exist_ok=True)
    stem = out / arch_id
    info = OnnxExport(f"{stem}.prefill.onnx", f"{stem}.decode.onnx", model.config.n_layer, opset, exporter,
                      torch.__version__, onnx.__version__, weights_sha256(model), arch_id)
    meta = Path(f"{stem}.export.json")
    # graphs recorded for the same weights, exporter and opset are reused; a missing or unreadable
    # record means export again
    if (Path(info.prefill_path).is_file() and Path(info.decode_path).is_file()
            and read_export_record(out, arch_id) == info):
        return info
    model = model.eval()
    L, cfg = model.config.n_layer, model.config
    batch, seq = 2, 8  # example inputs; every axis that varies is dynamic
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)
    past = tuple(torch.zeros(batch, h, seq, cfg.head_size) for h in cfg.n_head for _ in (0, 1))
    out_names = ["logits"] + _names(L, "present")
    with torch.no_grad():
        _export_graph(_Graph(model, decode=False), (tokens,), Path(info.prefill_path), ["tokens"], out_names,
                      {"tokens": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"},
                       **{n: {0: "batch", 2: "seq"} for n in out_names[1:]}}, exporter, opset)
        past_names = _names(L, "past")
        _export_graph(_Graph(model, decode=True), (tokens[:, :1], *past), Path(info.decode_path),
                      ["tokens"] + past_names, out_names,
                      {"tokens": {0: "batch"}, "logits": {0: "batch"}, **{n: {0: "batch", 2: "past"} for n in past_names},
                       **{n: {0: "batch", 2: "past_plus_1"} for n in out_names[1:]}}, exporter, opset)
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=1))
    os.replace(tmp, meta)
    return info


def export_or_reuse(model: GPT, export: OnnxExport | None):
    """``(export, None)`` when an export is given; otherwise an export of ``model`` into a temporary
    directory and the ``TemporaryDirectory`` that removes it (keep it alive as long as the graphs are used)."""
    if export is not None:
        return export, None
    tmp = tempfile.TemporaryDirectory(prefix="hwlm-onnx-")
    return export_onnx(model, tmp.name), tmp
