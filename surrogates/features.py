"""Surrogate input features: the architecture encoding plus exact derived quantities, vectorised.

For an ``(N, encoding_length)`` integer encoding matrix of one space, :func:`features` returns an
``(N, F)`` float64 matrix whose columns are named by :func:`feature_names`:

* the choices themselves: ``embed_dim``, ``n_layer``, ``bias`` and, per layer slot ``i``,
  ``n_head_i`` and ``mlp_ratio_i`` (0 for slots beyond ``n_layer``);
* per-layer sums and maxima: ``total_heads``, ``attn_width`` (sum of ``n_head_i * head_size``),
  ``total_mlp_ratio``, ``mlp_hidden`` (sum of ``mlp_ratio_i * embed_dim``), ``max_heads``,
  ``max_mlp_ratio``;
* exact costs from :mod:`benchmark.costs`: ``params``, ``params_no_embedding``;
* for a hardware setting only: ``flops_setting`` (exact FLOPs at the setting — for decode, the
  mean per generated token over ``decode_tokens`` steps, exactly as the profiler stores
  ``flops_<setting>``) and ``kv_elems`` (``batch * context * sum_i n_head_i * head_size``).

No Python object is built per row: everything is a table lookup or a sum over the matrix, and
:mod:`benchmark.costs` validates the encodings (an invalid row raises
:class:`~benchmark.spaces.ArchitectureError` naming the row, the field and what is allowed).
"""

from __future__ import annotations

import numpy as np

from benchmark import costs
from benchmark.spaces import SearchSpace, get_space
from benchmark.settings import DEFAULT_DECODE_TOKENS, Setting

__all__ = ["DEFAULT_DECODE_TOKENS", "feature_names", "features", "exact_flops"]



def feature_names(space: str | SearchSpace, setting: str | Setting | None = None) -> list[str]:
    sp = get_space(space)
    lm = sp.max_layers
    names = ["embed_dim", "n_layer", "bias"]
    names += [f"n_head_{i}" for i in range(lm)] + [f"mlp_ratio_{i}" for i in range(lm)]
    names += ["total_heads", "attn_width", "total_mlp_ratio", "mlp_hidden", "max_heads", "max_mlp_ratio",
              "params", "params_no_embedding"]
    if setting is not None:
        Setting.parse(setting)
        names += ["flops_setting", "kv_elems"]
    return names


def exact_flops(space: str | SearchSpace, enc: np.ndarray, setting: str | Setting,
                decode_tokens: int = DEFAULT_DECODE_TOKENS) -> np.ndarray:
    """Exact FLOPs (float64, shape (N,)) of the setting, as the profiler stores ``flops_<setting>``:
    one prefill forward, or for decode the mean over ``decode_tokens`` generated tokens at contexts
    ``seq_len .. seq_len + decode_tokens - 1``."""
    sp, s = get_space(space), Setting.parse(setting)
    enc = costs.encoded_batch(enc, sp)  # validate once
    if s.mode == "prefill":
        return costs.flops_prefill(enc, batch=s.batch, seq_len=s.seq_len, space=sp).astype(np.float64)
    # FLOPs are affine in the context, so the mean over the steps is the mean of the first and the last
    # step; both are integers far below 2**53, so this equals numpy's mean of all steps bit for bit
    first = costs.flops_decode(enc, batch=s.batch, context_len=s.seq_len, space=sp)
    last = costs.flops_decode(enc, batch=s.batch, context_len=s.seq_len + int(decode_tokens) - 1, space=sp)
    return (first.astype(np.float64) + last) / 2


_LOOKUPS: dict = {}


def _lookups(sp: SearchSpace) -> tuple[np.ndarray, ...]:
    t = _LOOKUPS.get(sp.name)
    if t is None:
        t = _LOOKUPS[sp.name] = (np.array(sp.embed_dim_choices, np.float64), np.array(sp.n_layer_choices, np.float64),
                                 np.array([float(b) for b in sp.bias_choices]),
                                 np.array(sp.mlp_ratio_choices + (0,), np.float64),
                                 np.array(sp.n_head_choices + (0,), np.float64))
    return t


_SETTINGS: dict = {}


def _setting(setting: str | Setting) -> Setting:
    """``Setting.parse``, remembered per name (features are built once per query)."""
    s = _SETTINGS.get(setting) if isinstance(setting, str) else None
    if s is None:
        s = Setting.parse(setting)
        if isinstance(setting, str):
            _SETTINGS[setting] = s
    return s


def features(space: str | SearchSpace, enc: np.ndarray, setting: str | Setting | None = None,
             decode_tokens: int = DEFAULT_DECODE_TOKENS) -> np.ndarray:
    """``(N, F)`` float64 features of an ``(N, encoding_length)`` integer encoding matrix."""
    sp = get_space(space)
    if isinstance(enc, costs.EncodedBatch):  # already validated (benchmark.api validates once per query)
        batch, enc = enc, enc.encodings
    else:
        enc = np.asarray(enc)
        if enc.ndim == 1:
            enc = enc[None, :]
        batch = costs.encoded_batch(enc, sp)  # validates every row, once
    s = _setting(setting) if setting is not None else None
    params_ne = costs.batch_params(batch, False)
    params = params_ne + costs.embedding_params(batch)  # exactly costs.params, without recomputing the rest
    lm = sp.max_layers
    t_embed, t_layer, t_bias, t_mlp, t_heads = _lookups(sp)
    embed = t_embed[enc[:, 0]]
    mlp = t_mlp[enc[:, 2:2 + lm]]  # PAD (-1) reads the trailing 0
    heads = t_heads[enc[:, 2 + lm:2 + 2 * lm]]
    total_heads, total_mlp = heads.sum(1), mlp.sum(1)
    X = np.empty((len(enc), 3 + 2 * lm + 8 + (2 if s is not None else 0)))
    X[:, 0], X[:, 1], X[:, 2] = embed, t_layer[enc[:, 1]], t_bias[enc[:, -1]]
    X[:, 3:3 + lm], X[:, 3 + lm:3 + 2 * lm] = heads, mlp
    k = 3 + 2 * lm
    X[:, k], X[:, k + 1], X[:, k + 2], X[:, k + 3] = total_heads, total_heads * sp.head_size, total_mlp, \
        total_mlp * embed
    X[:, k + 4], X[:, k + 5], X[:, k + 6], X[:, k + 7] = heads.max(1), mlp.max(1), params, params_ne
    if s is not None:
        context = s.seq_len + (int(decode_tokens) - 1) / 2 if s.mode == "decode" else s.seq_len
        X[:, k + 8] = exact_flops(sp, batch, s, decode_tokens)
        X[:, k + 9] = s.batch * context * total_heads * sp.head_size
    return X
