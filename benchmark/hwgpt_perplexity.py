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
    from safetensors.numpy import load_file

    if space not in SPACES:
        raise PredictorError(f"invalid space: {space!r}; allowed: {list(SPACES)} (HW-GPT-Bench's spaces)")
    w = load_file(str(WEIGHTS_DIR / f"perplexity_mlp_{space}.safetensors"))
    # float32 as HW-GPT-Bench evaluates them; a single row and a batch agree to float32 rounding
    return tuple((np.ascontiguousarray(w[f"fc{k}.weight"].T), w[f"fc{k}.bias"]) for k in range(1, 6))


def one_hot(space: str, encodings: np.ndarray) -> np.ndarray:
    """HW-GPT-Bench's one-hot input for a (n, encoding_length) matrix of this package's encodings."""
    sp = get_space(space)
    enc = np.asarray(encodings, dtype=np.int64)
    if enc.ndim != 2 or enc.shape[1] != sp.encoding_length:
        raise PredictorError(f"invalid encodings shape: {enc.shape}; allowed: (n, {sp.encoding_length}) for space "
                             f"{space!r}")
    lm = sp.max_layers
    n_mlp, n_head = len(sp.mlp_ratio_choices), len(sp.n_head_choices)
    x = np.zeros((len(enc), 6 + (n_mlp + n_head) * lm + 2), np.float32)
    rows = np.arange(len(enc))
    x[rows, enc[:, 0]] = 1
    x[rows, 3 + enc[:, 1]] = 1
    for block, (start, n) in enumerate(((2, n_mlp), (2 + lm, n_head))):
        base = 6 + block * n_mlp * lm
        idx = enc[:, start:start + lm]
        r, layer = np.nonzero(idx != PAD)
        x[r, base + n * layer + idx[r, layer]] = 1
    # our bias choices are (True, False), the same order as HW-GPT-Bench's ("True", "False")
    x[rows, x.shape[1] - 2 + enc[:, -1]] = 1
    return x


def predict(space: str, encodings: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Imported perplexity of each row of ``encodings`` (valid encodings of ``space``), computed in
    float32 in chunks of ``chunk`` rows (bounded memory) and returned as float64."""
    layers = _weights(space)
    enc = np.asarray(encodings)
    if enc.ndim != 2:
        one_hot(space, enc)  # raises the shape error
    out = np.empty(len(enc))
    for start in range(0, len(enc), chunk):
        x = one_hot(space, enc[start:start + chunk])
        for w, b in layers[:-1]:
            x = x @ w
            x += b
            np.maximum(x, 0.0, out=x)
        w, b = layers[-1]
        out[start:start + len(x)] = (x @ w + b)[:, 0]
    return out
