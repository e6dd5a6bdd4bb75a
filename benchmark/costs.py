"""Exact parameter counts, FLOPs and memory of architectures — closed form, vectorised.

Every function takes ``archs`` as

* one :class:`~benchmark.spaces.Architecture` (the result is a numpy scalar),
* a list/tuple of Architectures of one space (the result is an array of shape ``(N,)``),
* an integer encoding matrix ``(N, space.encoding_length)`` as made by ``space.encode_many``
  (or one encoding row, giving a scalar); then ``space`` is required.

Results are plain numpy ``int64`` (params, FLOPs, bytes) or ``float64`` (the modeled activation
estimate). Everything is computed from per-architecture sums looked up in tables built from the
space's choices (validation included), so params + FLOPs of 1e5 encodings take well under 0.1 s
(``scripts/bench_costs.py``).

Model (``benchmark.model.GPT``), with ``E = embed_dim``, ``V = vocab_size``, ``hs = head_size``,
``W_i = n_head[i] * hs`` (attention width of layer i) and ``r_i = mlp_ratio[i]``:

Parameters
    ``V*E`` (token embedding ``wte``; the LM head is ``F.linear(x, wte.weight)``, so the tied
    matrix is counted once) + per layer ``4E`` (``ln_1``, ``ln_2``: weight and bias always)
    + ``E*3W_i`` (qkv) + ``W_i*E`` (attention proj) + ``2*r_i*E*E`` (MLP fc, proj)
    + with ``bias``: ``3W_i + E + r_i*E + E`` + ``2E`` (``ln_f``). ``embeddings=False`` drops
    ``V*E``. This equals ``sum(p.numel() for p in GPT(arch).parameters())``. The rotary
    ``cos``/``sin`` tables are non-persistent buffers, not parameters, and are not counted.

FLOPs (convention)
    One multiply-add = 2 FLOPs. Counted: every matrix product — the four linears of each
    block, the LM head, and (by default) the two attention products ``Q K^T`` and ``P V``.
    Not counted: bias additions, LayerNorm, GELU, softmax, rotary embedding, residual adds,
    the embedding lookup. For ``T`` new tokens per sequence on top of ``c`` cached tokens
    (prefill: ``c = 0``; one decoded token: ``T = 1``) and batch ``B``::

        flops = B*T * (2 * sum_i (4*E*W_i + 2*r_i*E*E) + 2*E*V)      # linears + LM head
              + 4 * B * sum_i W_i * A                                # attention products
        A = T * (c + T)                       attention="full"   (default)
        A = T * c + T * (T + 1) / 2           attention="causal" (only unmasked query-key pairs)
        A = 0                                 attention="none"

    The LM head is applied to all ``T`` positions (the model returns logits for every
    position). The default ``attention="full"`` is exactly what
    ``torch.utils.flop_counter.FlopCounterMode`` counts on the built model wherever it sees
    the attention: it counts ``scaled_dot_product_attention`` as full ``T x (c+T)`` products
    with no causal discount — on the ``meta`` device (SDPA decomposes into two ``bmm``) and on
    CUDA (the flash / memory-efficient / cuDNN kernels are registered with
    ``sdpa_flop_count``, which ignores ``is_causal``; read from torch's source, the tests run
    on meta). On CPU (torch 2.13) SDPA runs
    ``_scaled_dot_product_flash_attention_for_cpu``, which has no registered formula, so
    FlopCounterMode reports **0** attention FLOPs there; ``attention="none"`` reproduces that
    count. ``attention="causal"`` is the work a causal kernel needs in principle (prefill
    attention roughly halved; a decoded token is unchanged, it sees all ``c + 1`` keys).

Memory
    ``weight_bytes``: parameters (embeddings once) x bytes per element of the dtype
    (``DTYPE_BYTES``: fp32 4, fp16 2, bf16 2, int8 1). For int8 every parameter is counted at
    one byte; quantisation scales/zero points and layers kept in higher precision are not
    included. ``kv_cache_bytes``: ``2 * B * seq_len * hs * sum_i n_head[i]`` elements, exactly
    ``model.new_cache(B, seq_len, dtype).nbytes()``. ``activation_bytes_estimate`` is a
    **modeled** estimate (not measured) of the largest set of transient activations alive at
    once during an inference forward; see its docstring.

Invalid input raises a ``ValueError`` (an :class:`~benchmark.spaces.ArchitectureError` for
architectures, encodings and spaces) that names the field, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from benchmark.errors import HwlmError
from benchmark.spaces import PAD, Architecture, ArchitectureError, SearchSpace, get_space

__all__ = [
    "DTYPE_BYTES", "ATTENTION_MODES", "params", "flops", "flops_prefill", "flops_decode",
    "weight_bytes", "kv_cache_bytes", "activation_bytes_estimate",
    "LayerTables", "layer_tables", "EncodedBatch", "encoded_batch", "all_valid", "batch_params", "embedding_params",
]

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
_DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16",
                  "bfloat16": "bf16", "int8": "int8", "qint8": "int8"}
ATTENTION_MODES = ("full", "causal", "none")
_INT64_LIMIT = float(2**62)  # refuse settings whose counts could overflow int64


# --------------------------------------------------------------------------- input resolution
@dataclass(frozen=True)
class LayerTables:
    """Per-choice lookup tables of a space (the roofline model reads them too)."""

    embed: np.ndarray
    n_layer: np.ndarray
    heads: np.ndarray  # int16 choices + [0]: index PAD (-1) reads the trailing 0
    mlp: np.ndarray
    bias: np.ndarray


_TABLES: dict[SearchSpace, LayerTables] = {}


def layer_tables(sp: SearchSpace) -> LayerTables:
    """The space's :class:`LayerTables`, built once per space."""
    t = _TABLES.get(sp)
    if t is None:
        assert PAD == -1  # the trailing 0 of the per-layer tables is what index -1 reads
        t = LayerTables(np.array(sp.embed_dim_choices, np.int64), np.array(sp.n_layer_choices, np.int64),
                    np.array(sp.n_head_choices + (0,), np.int16), np.array(sp.mlp_ratio_choices + (0,), np.int16),
                    np.array([int(b) for b in sp.bias_choices], np.int64))
        _TABLES[sp] = t
    return t


class EncodedBatch:
    """Validated encodings of one space and their per-architecture sums (int64, shape (N,)), each
    computed on first use (a query of the batch needs none of them)."""

    def __init__(self, space: SearchSpace, enc: np.ndarray, scalar: bool):
        self.space, self.scalar, self._enc = space, scalar, enc

    @cached_property
    def embed(self) -> np.ndarray:
        return layer_tables(self.space).embed[self._enc[:, 0]]

    @cached_property
    def n_layer(self) -> np.ndarray:
        return layer_tables(self.space).n_layer[self._enc[:, 1]]

    @cached_property
    def bias(self) -> np.ndarray:
        return layer_tables(self.space).bias[self._enc[:, -1]]

    @cached_property
    def heads_sum(self) -> np.ndarray:  # sum_i n_head[i]
        lm = self.space.max_layers
        return layer_tables(self.space).heads[self._enc[:, 2 + lm:2 + 2 * lm]].sum(1, dtype=np.int64)

    @cached_property
    def mlp_sum(self) -> np.ndarray:  # sum_i mlp_ratio[i]
        lm = self.space.max_layers
        return layer_tables(self.space).mlp[self._enc[:, 2:2 + lm]].sum(1, dtype=np.int64)

    @property
    def encodings(self) -> np.ndarray:
        """The ``(N, encoding_length)`` encodings the batch was built from."""
        return self._enc

    def per_layer_max(self) -> tuple[np.ndarray, np.ndarray]:
        """Largest n_head and mlp_ratio over the live layers."""
        t, lm, enc = layer_tables(self.space), self.space.max_layers, self._enc
        return (t.heads[enc[:, 2 + lm:2 + 2 * lm]].max(1, initial=0).astype(np.int64),
                t.mlp[enc[:, 2:2 + lm]].max(1, initial=0).astype(np.int64))


def _space_arg(space: Any) -> SearchSpace | None:
    if space is None:
        return None
    return get_space(space)  # raises ArchitectureError naming the space and the allowed names


def encoded_batch(archs: Any, space: Any) -> EncodedBatch:
    """Validate architectures (Architecture(s), ids, encodings) once into an :class:`EncodedBatch`
    that the cost functions accept as it is."""
    if isinstance(archs, EncodedBatch):  # validated once, costed several times (surrogates.features)
        return archs
    sp = _space_arg(space)
    if isinstance(archs, Architecture):
        if sp is not None and archs.space != sp.name:
            raise ArchitectureError.invalid("space", archs.space, f"{sp.name!r} (the space argument)")
        return EncodedBatch(archs.search_space, archs.encoding()[None, :], scalar=True)
    if isinstance(archs, np.ndarray):
        return _from_array(archs, sp)
    if isinstance(archs, (list, tuple)):
        if len(archs) == 0:  # nothing to count; any space gives empty results
            sp = sp or get_space("t")
            return EncodedBatch(sp, np.zeros((0, sp.encoding_length), np.int8), scalar=False)
        if all(isinstance(a, Architecture) for a in archs):
            names = sorted({a.space for a in archs})
            if len(names) > 1:
                raise ArchitectureError.invalid("space", names, "architectures of one space per call")
            if sp is not None and names[0] != sp.name:
                raise ArchitectureError.invalid("space", names[0], f"{sp.name!r} (the space argument)")
            sp = archs[0].search_space
            enc = np.empty((len(archs), sp.encoding_length), np.int8)
            for i, a in enumerate(archs):
                enc[i] = a.encoding()
            return EncodedBatch(sp, enc, scalar=False)
        if any(isinstance(a, Architecture) for a in archs):
            bad = next(a for a in archs if not isinstance(a, Architecture))
            raise ArchitectureError.invalid("architecture", bad, "a list of Architecture objects (not mixed with other values)")
        return _from_array(np.asarray(archs), sp)
    raise ArchitectureError.invalid("archs", archs, "an Architecture, a list of Architectures, or an (N, encoding_length) "
                                     "integer encoding array with space=")


def _from_array(enc: np.ndarray, sp: SearchSpace | None) -> EncodedBatch:
    if sp is None:
        raise ArchitectureError.invalid("space", None, "a space name or SearchSpace (required with an encoding array)")
    if not np.issubdtype(enc.dtype, np.integer):
        raise ArchitectureError.invalid("encoding dtype", str(enc.dtype), "an integer dtype (choice indices, PAD=-1)")
    if enc.ndim == 1:
        scalar, enc = True, enc[None, :]
    elif enc.ndim == 2:
        scalar = False
    else:
        raise ArchitectureError.invalid("encoding shape", enc.shape, f"(N, {sp.encoding_length}) or ({sp.encoding_length},) "
                                                      f"for space {sp.name!r}")
    if enc.shape[1] != sp.encoding_length:
        raise ArchitectureError.invalid("encoding width", enc.shape[1], f"{sp.encoding_length} (encoding_length of space "
                                                         f"{sp.name!r})")
    if len(enc):
        _validate_encoding(sp, enc)
    return EncodedBatch(sp, enc, scalar)


_VALID: dict[SearchSpace, tuple[np.ndarray, int]] = {}


def _validity(sp: SearchSpace) -> tuple[np.ndarray, int]:
    """``(ok, width)``: ``ok[l + 1, c, v + 1]`` is True when value ``v`` may stand at encoding column
    ``c`` of an architecture whose n_layer column holds ``l`` (all False for an invalid ``l``);
    values range over ``PAD .. width - 2``."""
    t = _VALID.get(sp)
    if t is None:
        lm, L = sp.max_layers, sp.encoding_length
        width = max(sp.encoding_choices) + 2  # PAD (-1) .. largest index, plus one always-invalid value
        ok = np.zeros((width, L, width), bool)
        for li, n_layer in enumerate(sp.n_layer_choices):
            for c, n in ((0, len(sp.embed_dim_choices)), (L - 1, len(sp.bias_choices))):
                ok[li + 1, c, 1:n + 1] = True
            ok[li + 1, 1, li + 1] = True
            for start, n in ((2, len(sp.mlp_ratio_choices)), (2 + lm, len(sp.n_head_choices))):
                for j in range(lm):
                    if j < n_layer:
                        ok[li + 1, start + j, 1:n + 1] = True
                    else:
                        ok[li + 1, start + j, 0] = True  # PAD exactly beyond n_layer
        t = _VALID[sp] = (ok, width)
    return t


def all_valid(sp: SearchSpace, enc: np.ndarray) -> bool:
    """Whether every row of an ``(N, encoding_length)`` integer matrix is a valid encoding: one
    lookup per value in :func:`_validity`'s table (a few numpy calls whatever the batch size)."""
    ok, width = _validity(sp)
    if len(enc) == 0:
        return True
    if enc.min() < PAD or enc.max() >= width - 1:
        return False
    e = enc.astype(np.intp) + 1
    return bool(ok[e[:, 1:2], np.arange(sp.encoding_length), e].all())


def _validate_encoding(sp: SearchSpace, enc: np.ndarray) -> None:
    """Vectorised check (:func:`all_valid`); on failure, the per-column check below finds the
    first bad row and ``sp.decode`` of it words the error."""
    if all_valid(sp, enc):
        return
    lm, min_layer = sp.max_layers, min(sp.n_layer_choices)
    bad = np.zeros(len(enc), bool)
    for col, n in ((0, len(sp.embed_dim_choices)), (1, len(sp.n_layer_choices)), (-1, len(sp.bias_choices))):
        bad |= (enc[:, col] < 0) | (enc[:, col] >= n)
    n_layer = np.array(sp.n_layer_choices)[np.clip(enc[:, 1], 0, len(sp.n_layer_choices) - 1)]
    for start, n in ((2, len(sp.mlp_ratio_choices)), (2 + lm, len(sp.n_head_choices))):
        block = enc[:, start:start + lm]
        if block.min() < PAD or block.max() >= n:  # global test first; per-row only when needed
            bad |= ((block < PAD) | (block >= n)).any(1)
        if min_layer and block[:, :min_layer].min() < 0:  # slots every architecture uses
            bad |= (block[:, :min_layer] < 0).any(1)
        for j in range(min_layer, lm):  # slots live only for deeper architectures: PAD exactly beyond n_layer
            bad |= (block[:, j] != PAD) != (n_layer > j)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        try:
            sp.decode(enc[row])
        except ArchitectureError as e:
            raise ArchitectureError(f"encoding row {row} of {len(enc)}: {e}") from None
        raise ArchitectureError.invalid(f"encoding row {row}", enc[row].tolist(), f"a valid encoding of space {sp.name!r}")


# --------------------------------------------------------------------------- setting validation
def _pos_int(field: str, value: Any, lo: int, hi: int | None = None) -> int:
    allowed = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise HwlmError.invalid(field, value, allowed)
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise HwlmError.invalid(field, value, allowed)
    return v


def _dtype_bytes(dtype: Any) -> int:
    name = str(dtype)
    name = name[len("torch."):] if name.startswith("torch.") else name
    key = name if name in DTYPE_BYTES else _DTYPE_ALIASES.get(name)
    if key is None:
        raise HwlmError.invalid("dtype", dtype, f"{sorted(DTYPE_BYTES)} (or float32/float16/bfloat16/torch dtypes)")
    return DTYPE_BYTES[key]


def _attention(mode: Any) -> str:
    if mode not in ATTENTION_MODES:
        raise HwlmError.invalid("attention", mode, list(ATTENTION_MODES))
    return mode


def _out(b: EncodedBatch, values: np.ndarray):
    return values[0] if b.scalar else values


def _check_range(setting: str, bound: float) -> None:
    if bound >= _INT64_LIMIT:
        raise HwlmError(f"invalid setting ({setting}): results up to ~{bound:.3e}; allowed: settings whose "
                         f"results stay below 2**62 (int64)")


# --------------------------------------------------------------------------- public API
def params(archs, space=None, embeddings: bool = True):
    """Number of parameters (``int64``), exactly ``sum(p.numel() for p in GPT(arch).parameters())``.

    The embedding is tied with the LM head and counted once. ``embeddings=False`` excludes the
    token embedding ``wte`` (``vocab_size * embed_dim``) — the usual "non-embedding" count.
    """
    b = encoded_batch(archs, space)
    return _out(b, batch_params(b, bool(embeddings)))


def batch_params(b: EncodedBatch, embeddings: bool) -> np.ndarray:
    """Parameters of a validated batch (``params`` without re-validating)."""
    sp, E = b.space, b.embed
    W = b.heads_sum * sp.head_size  # sum of attention widths
    R = b.mlp_sum
    p = 4 * E * b.n_layer + 4 * E * W + 2 * E * E * R  # LayerNorms, qkv + proj, fc + proj
    p += b.bias * (3 * W + 2 * E * b.n_layer + E * R)  # linear biases
    p += 2 * E  # ln_f
    if embeddings:
        p += embedding_params(b)
    return p


def embedding_params(b: EncodedBatch) -> np.ndarray:
    """The token embedding ``wte`` (tied with the LM head): ``params - params(embeddings=False)``."""
    return b.space.vocab_size * b.embed


def flops(archs, batch: int, seq_len: int, context_len: int = 0, space=None, attention: str = "full"):
    """FLOPs (``int64``) of one forward of ``seq_len`` new tokens per sequence, for ``batch``
    sequences that already have ``context_len`` tokens in the KV cache.

    ``context_len=0`` is a prefill; ``seq_len=1`` is one decoded token; ``context_len + seq_len``
    may not exceed the space's ``block_size`` (the model refuses longer inputs). See the module
    docstring for the convention (multiply-add = 2 FLOPs, matrix products only);
    ``attention="full"`` (default) equals ``FlopCounterMode`` on the built model (meta / CUDA),
    ``"causal"`` counts only unmasked query-key pairs, ``"none"`` leaves the attention products
    out (what ``FlopCounterMode`` reports on CPU, where SDPA's kernel has no formula).
    """
    b = encoded_batch(archs, space)
    attention = _attention(attention)
    sp = b.space
    B = _pos_int("batch", batch, 1)
    T = _pos_int("seq_len", seq_len, 1, sp.block_size)
    c = _pos_int("context_len", context_len, 0, sp.block_size - T)
    if attention == "full":
        pairs = T * (c + T)
    elif attention == "causal":
        pairs = T * c + T * (T + 1) // 2
    else:
        pairs = 0
    E = b.embed
    W = b.heads_sum * sp.head_size
    per_token = 2 * (4 * E * W + 2 * E * E * b.mlp_sum) + 2 * E * sp.vocab_size
    per_pair = 4 * W
    if len(E):
        _check_range(f"batch={B}, seq_len={T}, context_len={c}", float(B) * T * float(per_token.max()) + float(B) * pairs * float(per_pair.max()))
    return _out(b, (B * T) * per_token + (B * pairs) * per_pair)


def flops_prefill(archs, batch: int, seq_len: int, space=None, attention: str = "full"):
    """FLOPs of a prefill forward of ``batch`` x ``seq_len`` tokens (logits at every position)."""
    return flops(archs, batch, seq_len, 0, space=space, attention=attention)


def flops_decode(archs, batch: int, context_len: int, space=None, attention: str = "full"):
    """FLOPs of decoding one new token per sequence with ``context_len`` tokens already cached
    (query length 1, key length ``context_len + 1``)."""
    return flops(archs, batch, 1, context_len, space=space, attention=attention)


def weight_bytes(archs, dtype: str = "fp32", space=None):
    """Bytes of the parameters stored in ``dtype`` (embeddings once; ``int64``)."""
    b = encoded_batch(archs, space)
    return _out(b, batch_params(b, True) * _dtype_bytes(dtype))


def kv_cache_bytes(archs, batch: int, seq_len: int, dtype: str = "fp32", space=None):
    """Bytes of a KV cache for ``batch`` sequences of ``seq_len`` positions (``int64``):
    ``2 * batch * seq_len * head_size * sum_i n_head[i] * bytes`` — exactly
    ``model.new_cache(batch, seq_len, dtype).nbytes()``."""
    b = encoded_batch(archs, space)
    B = _pos_int("batch", batch, 1)
    S = _pos_int("seq_len", seq_len, 1, b.space.block_size)
    nbytes = _dtype_bytes(dtype)
    if len(b.heads_sum):
        _check_range(f"batch={B}, seq_len={S}", 2.0 * B * S * b.space.head_size * float(b.heads_sum.max()) * nbytes)
    return _out(b, (2 * B * S * b.space.head_size * nbytes) * b.heads_sum)


def activation_bytes_estimate(archs, batch: int, seq_len: int, dtype: str = "fp32", space=None):
    """MODELED estimate (``float64``, not measured) of the peak bytes of transient activations
    in one inference forward (no autograd) of ``batch`` x ``seq_len`` new tokens; excludes
    weights and the KV cache.

    Model: the largest of the per-token element counts alive at once

    * attention half of a block: residual ``x``, ``ln_1(x)`` (2E), qkv output (3W), rotated
      q and k (2W), attention output and its reshaped copy (2W) -> ``2E + 7W_i``;
    * MLP half of a block: ``x``, the attention branch result, ``ln_2(x)`` (3E), fc output and
      GELU output (2 r_i E) -> ``3E + 2 r_i E``;
    * the head: final hidden state and logits -> ``E + V``;

    times ``batch * seq_len * bytes``. Fused SDPA kernels do not materialise the ``T x S``
    score matrix, so it is not included. Real peaks depend on the allocator and kernels; the
    profiling module measures them.
    """
    b = encoded_batch(archs, space)
    B = _pos_int("batch", batch, 1)
    S = _pos_int("seq_len", seq_len, 1, b.space.block_size)
    sp, E = b.space, b.embed
    heads_max, mlp_max = b.per_layer_max()
    attn = 2 * E + 7 * heads_max * sp.head_size
    mlp = 3 * E + 2 * mlp_max * E
    head = E + sp.vocab_size
    per_token = np.maximum(np.maximum(attn, mlp), head).astype(np.float64)
    return _out(b, per_token * float(B * S * _dtype_bytes(dtype)))
