"""A dense GPT for one architecture, GPT-NeoX style as in HW-GPT-Bench.

* parallel residual: ``x + attn(ln_1(x)) + mlp(ln_2(x))``
* LayerNorm (eps 1e-5), exact GELU MLP with hidden width ``mlp_ratio[i] * embed_dim``
* rotary position embedding on the first half of each head (base 10000), no learned positions
* attention width ``n_head[i] * head_size``, independent of ``embed_dim``
* tied input embedding / output head; ``bias`` switches the biases of every attention and MLP
  linear (LayerNorms always keep theirs)
* causal attention with ``scaled_dot_product_attention``; incremental decoding with a
  pre-allocated KV cache that gives the same logits as the full forward.

This is the model latency is measured on, and what the supernet reproduces exactly when it
is sliced to an architecture (``benchmark.supernet``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.spaces import Architecture

# the package's dtype names (benchmark.settings.DTYPES) as torch dtypes
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

ROTARY_FRACTION = 0.5
ROPE_BASE = 10000.0
LN_EPS = 1e-5


@dataclass(frozen=True)
class GPTConfig:
    embed_dim: int
    n_head: tuple[int, ...]
    mlp_ratio: tuple[int, ...]
    bias: bool
    head_size: int
    block_size: int
    vocab_size: int

    @property
    def n_layer(self) -> int:
        return len(self.n_head)

    @property
    def rope_dims(self) -> int:
        return int(self.head_size * ROTARY_FRACTION)

    @classmethod
    def from_arch(cls, arch: Architecture, vocab_size: int | None = None, block_size: int | None = None) -> "GPTConfig":
        sp = arch.search_space
        return cls(arch.embed_dim, arch.n_head, arch.mlp_ratio, arch.bias, sp.head_size,
                   block_size or sp.block_size, vocab_size or sp.vocab_size)


def rope_cache(seq_len: int, rope_dims: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (seq_len, rope_dims) for rotate-half RoPE."""
    theta = 1.0 / (ROPE_BASE ** (torch.arange(0, rope_dims, 2, device=device, dtype=torch.float32) / rope_dims))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), theta).repeat(1, 2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of each head of x (B, H, T, hs)."""
    n = cos.shape[-1]
    xr, xp = x[..., :n], x[..., n:]
    x1, x2 = xr[..., : n // 2], xr[..., n // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((xr * cos + rotated * sin, xp), dim=-1)


def init_gpt_weights(module: nn.Module, n_layer: int, seed: int) -> None:
    """GPT-2 style init, seeded: weights N(0, 0.02), output projections N(0, 0.02/sqrt(2 n_layer)),
    biases 0, LayerNorm scales 1. Shared by the dense model and the supernet (same names)."""
    g = torch.Generator().manual_seed(int(seed))
    resid_std = 0.02 / math.sqrt(2 * n_layer)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln_" in name or name.startswith("ln_f"):
                p.fill_(1.0)
            else:
                std = resid_std if name.endswith("proj.weight") else 0.02
                p.copy_(torch.randn(p.shape, generator=g) * std)


class KVCache:
    """Pre-allocated keys and values per layer; ``pos`` counts the tokens already cached."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        if max_len > config.block_size:
            raise ValueError(f"invalid max_len: {max_len}; allowed: at most block_size={config.block_size}")
        self.k = [torch.zeros(batch_size, h, max_len, config.head_size, device=device, dtype=dtype) for h in config.n_head]
        self.v = [torch.zeros_like(k) for k in self.k]
        self.max_len = max_len
        self.pos = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class Attention(nn.Module):
    def __init__(self, config: GPTConfig, n_head: int):
        super().__init__()
        self.n_head, self.head_size = n_head, config.head_size
        width = n_head * config.head_size
        self.qkv = nn.Linear(config.embed_dim, 3 * width, bias=config.bias)
        self.proj = nn.Linear(width, config.embed_dim, bias=config.bias)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            p = cache.pos
            cache.k[layer][:, :, p:p + T] = k
            cache.v[layer][:, :, p:p + T] = v
            k, v = cache.k[layer][:, :, : p + T], cache.v[layer][:, :, : p + T]
            if p == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            elif T == 1:  # one new token sees every cached one
                y = F.scaled_dot_product_attention(q, k, v)
            else:
                mask = torch.ones(T, p + T, dtype=torch.bool, device=x.device).tril(diagonal=p)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_size))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig, mlp_ratio: int):
        super().__init__()
        hidden = mlp_ratio * config.embed_dim
        self.fc = nn.Linear(config.embed_dim, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.embed_dim, bias=config.bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.embed_dim, eps=LN_EPS)
        self.attn = Attention(config, config.n_head[layer])
        self.ln_2 = nn.LayerNorm(config.embed_dim, eps=LN_EPS)
        self.mlp = MLP(config, config.mlp_ratio[layer])
        self.layer = layer

    def forward(self, x, cos, sin, cache=None):
        return x + self.attn(self.ln_1(x), cos, sin, cache, self.layer) + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig | Architecture):
        super().__init__()
        if isinstance(config, Architecture):
            config = GPTConfig.from_arch(config)
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.embed_dim)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.embed_dim, eps=LN_EPS)
        cos, sin = rope_cache(config.block_size, config.rope_dims)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, seed: int) -> "GPT":
        init_gpt_weights(self, self.config.n_layer, seed)
        return self

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype=None) -> KVCache:
        p = self.wte.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, p.device, dtype or p.dtype)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, vocab). With ``cache``, ``idx`` continues the cached sequence."""
        B, T = idx.shape
        start = 0 if cache is None else cache.pos
        if start + T > (self.config.block_size if cache is None else cache.max_len):
            raise ValueError(f"invalid sequence length: {start + T}; allowed: at most "
                             f"{self.config.block_size if cache is None else cache.max_len}")
        x = self.wte(idx)
        cos = self.rope_cos[start:start + T].to(x.dtype)
        sin = self.rope_sin[start:start + T].to(x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin, cache)
        if cache is not None:
            cache.pos += T
        return F.linear(self.ln_f(x), self.wte.weight)

    @torch.inference_mode()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None) -> torch.Tensor:
        """Sample continuations with the KV cache; greedy when ``temperature == 0``."""
        g = torch.Generator(device=idx.device).manual_seed(seed) if seed is not None else None
        cache = self.new_cache(idx.shape[0], min(self.config.block_size, idx.shape[1] + max_new_tokens))
        logits = self(idx, cache)[:, -1]
        out = [idx]
        for i in range(max_new_tokens):
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=g)
            out.append(nxt)
            if i + 1 < max_new_tokens:
                logits = self(nxt, cache)[:, -1]
        return torch.cat(out, dim=1)
