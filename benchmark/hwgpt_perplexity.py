"""HW-GPT-Bench's perplexity predictors for the spaces ``s``, ``m`` and ``l`` (imported, not measured).

HW-GPT-Bench (automl/HW-GPT-Bench, Apache-2.0; the license and notice ship next to the weights in
``benchmark/data/hwgpt/``) released one small MLP per space that predicts the perplexity of a
sub-network of *its* GPT supernet, trained and evaluated on OpenWebText, from the architecture.
They are the only perplexity figures that exist for those spaces. This module evaluates them in
numpy, vectorised over architectures; the weights are theirs, converted unchanged from their
``torch.save`` state dicts to safetensors.

Every value from here is ``imported``: HW-GPT-Bench's surrogate of its own supernet, on its data
and protocol. It is never mixed with this project's measured perplexities (space ``t``), whose
tokenizer, corpus and supernet differ, so the two are not on one scale.

Network: ``fc5(relu(fc4(relu(fc3(relu(fc2(relu(fc1(x)))))))))``; the output is the perplexity.
Input: one-hot, ``3 + 3 + 3 * Lmax + 3 * Lmax + 2`` slots — embed_dim index, n_layer index, per
layer the mlp_ratio index (row-major, absent layers all zero), per layer the n_head index, bias
(slot 0 for True, 1 for False).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmark.errors import HwlmError
from benchmark.spaces import PAD, get_space

SPACES = ("s", "m", "l")
WEIGHTS_DIR = Path(__file__).resolve().parent / "data" / "hwgpt"
PROVENANCE = {
    "source": "imported",
    "predictor": "HW-GPT-Bench perplexity MLP (data_collection/gpt_datasets/predictor_ckpts/metric/perplexity_{space}.pt)",
    "data": "HW-GPT-Bench's GPT supernet, trained and evaluated on OpenWebText (their protocol, not this project's)",
    "license": "Apache-2.0 (benchmark/data/hwgpt/LICENSE)",
    "url": "https://github.com/automl/HW-GPT-Bench",
}


class PredictorError(HwlmError):
    """A space without an imported predictor, or encodings it cannot read."""


@lru_cache(maxsize=None)
def _weights(space: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The five layers as (weight (in, out), bias); ``fc1``'s weight has one extra zero row, the
    input slot of padded layers (see :func:`_slots`)."""
    from safetensors.numpy import load_file

    if space not in SPACES:
        raise PredictorError(f"invalid space: {space!r}; allowed: {list(SPACES)} (HW-GPT-Bench's spaces)")
    w = load_file(str(WEIGHTS_DIR / f"perplexity_mlp_{space}.safetensors"))
    # float32 as HW-GPT-Bench evaluates them; a single row and a batch agree to float32 rounding
    layers = [(np.ascontiguousarray(w[f"fc{k}.weight"].T), w[f"fc{k}.bias"]) for k in range(1, 6)]
    w1, b1 = layers[0]
    layers[0] = (np.vstack([w1, np.zeros((1, w1.shape[1]), w1.dtype)]), b1)
    return tuple(layers)


@lru_cache(maxsize=None)
def _slots(space: str) -> tuple[np.ndarray, int]:
    """(first one-hot slot of each encoding column, input width): column ``j`` with choice index
    ``v`` sets slot ``first[j] + v``; a padded layer (``v = PAD``) is sent to slot ``width``, which
    :func:`_weights` pairs with a zero row."""
    sp = get_space(space)
    lm, n_mlp, n_head = sp.max_layers, len(sp.mlp_ratio_choices), len(sp.n_head_choices)
    width = 6 + (n_mlp + n_head) * lm + 2
    first = np.concatenate([[0, 3], 6 + n_mlp * np.arange(lm), 6 + n_mlp * lm + n_head * np.arange(lm),
                            [width - 2]]).astype(np.int64)
    return first, width


def _slot_index(space: str, encodings: np.ndarray) -> np.ndarray:
    """(n, encoding_length) one-hot slot of every encoding entry (padded layers -> the zero slot)."""
    sp = get_space(space)
    enc = np.asarray(encodings, dtype=np.int64)
    if enc.ndim != 2 or enc.shape[1] != sp.encoding_length:
        raise PredictorError(f"invalid encodings shape: {enc.shape}; allowed: (n, {sp.encoding_length}) for space "
                             f"{space!r}")
    first, width = _slots(space)
    return np.where(enc == PAD, width, first + enc)


def one_hot(space: str, encodings: np.ndarray) -> np.ndarray:
    """HW-GPT-Bench's one-hot input (n, width) for a (n, encoding_length) matrix of this package's
    encodings. Our bias choices are (True, False), the same order as HW-GPT-Bench's ("True", "False")."""
    idx = _slot_index(space, encodings)
    width = _slots(space)[1]
    x = np.zeros((len(idx), width + 1), np.float32)
    x[np.arange(len(idx))[:, None], idx] = 1
    return x[:, :width]


def predict(space: str, encodings: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Imported perplexity of each row of ``encodings`` (valid encodings of ``space``), computed in
    float32 in chunks of ``chunk`` rows (a chunk's activations stay in cache) and returned as float64."""
    layers = _weights(space)
    idx = _slot_index(space, encodings)
    width = _slots(space)[1]
    out = np.empty(len(idx))
    x = np.zeros((min(chunk, len(idx)), width + 1), np.float32)  # + the padded layers' zero slot
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        h = x[:len(part)]
        h.fill(0)
        h[np.arange(len(part))[:, None], part] = 1
        for w, b in layers[:-1]:
            h = h @ w
            h += b
            np.maximum(h, 0.0, out=h)
        w, b = layers[-1]
        out[start:start + len(h)] = (h @ w + b)[:, 0]
    return out
