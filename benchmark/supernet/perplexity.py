"""Perplexity and token accuracy of sub-networks with inherited supernet weights.

Measured on the held-out **test** split (never used for training or model selection), in
fp32, on the same deterministic, non-overlapping windows for every architecture, so that
values are comparable; the number of predicted tokens is returned with the result and
stored in the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.supernet.corpus import DEFAULT_EVAL_TOKENS, iter_eval_windows, num_eval_windows
from benchmark.supernet.elastic import Supernet


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    token_accuracy: float
    loss: float  # mean next-token cross-entropy, nats
    tokens: int  # predicted tokens


@torch.inference_mode()
def measure_perplexity(net: Supernet, arch, tokens: np.ndarray, max_tokens: int = DEFAULT_EVAL_TOKENS,
                       batch_size: int = 16, block_size: int | None = None) -> PerplexityResult:
    """Perplexity of ``arch`` (inherited weights of ``net``) on the first ``max_tokens``
    predicted tokens of ``tokens`` in windows of the supernet's context length."""
    block = block_size or net.block_size
    if num_eval_windows(len(tokens), block, max_tokens) == 0:
        raise ValueError(f"invalid max_tokens: {max_tokens}; allowed: at least one window of {block} tokens "
                         f"from a split of {len(tokens)} tokens")
    was_training = net.training
    net.eval()
    total_loss, correct, n = 0.0, 0, 0
    for x, y in iter_eval_windows(tokens, block, max_tokens, batch_size=batch_size):
        logits = net(x, arch).float()
        total_loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        n += y.numel()
    net.train(was_training)
    loss = total_loss / n
    return PerplexityResult(math.exp(loss), correct / n, loss, n)
