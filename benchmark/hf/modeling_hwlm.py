"""An exported hwlm-bench sub-network as a ``transformers`` causal language model.

Self-contained: imports only ``torch`` and ``transformers`` (and its sibling
``configuration_hwlm``). It is copied beside the weights of every export (see
``benchmark.export``), so ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``
works without the hwlm-bench package.

The model is the dense GPT of ``benchmark.model`` (GPT-NeoX style, as in HW-GPT-Bench):

* parallel residual ``x + attn(ln_1(x)) + mlp(ln_2(x))``, LayerNorm (eps 1e-5), exact GELU;
* per layer ``n_head[i]`` heads of size ``head_size`` and an MLP of ``mlp_ratio[i] * embed_dim``;
* rotary position embedding (rotate-half, base 10000) on the first ``rotary_fraction`` of each
  head, no learned positions; tied input embedding / output head;
* causal ``scaled_dot_product_attention``.

Incremental decoding uses the ``transformers`` KV cache (``DynamicCache``): the forward takes it
as ``cache`` (the name since transformers 5.2x) or ``past_key_values`` (older releases), calls
``cache.update(k, v, layer_idx)`` in every layer and returns it in the output under the field
name that the installed ``CausalLMOutputWithPast`` has. A 2-D ``attention_mask`` (padding) is
supported; positions are then counted from the first unmasked token, so left-padded batches
generate the same text as unpadded single prompts.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

try:  # transformers >= 4.50 moved GenerationMixin out of PreTrainedModel
    from transformers.generation import GenerationMixin
except ImportError:  # pragma: no cover - very old transformers
    from transformers.generation.utils import GenerationMixin

try:
    from transformers.cache_utils import Cache, DynamicCache
except ImportError:  # pragma: no cover - transformers without cache classes
    Cache, DynamicCache = None, None

from .configuration_hwlm import HwlmConfig

# the output field that carries the cache: "cache" in transformers >= 5.2x, "past_key_values" before
_CACHE_FIELD = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


def rope_angles(position_ids: torch.Tensor, rope_dims: int, base: float) -> torch.Tensor:
    """Rotation angles (B, T, rope_dims) of rotate-half RoPE for integer positions (B, T)."""
    theta = 1.0 / (base ** (torch.arange(0, rope_dims, 2, device=position_ids.device, dtype=torch.float32) / rope_dims))
    angles = position_ids.to(torch.float32)[..., None] * theta
    return torch.cat((angles, angles), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of each head of x (B, H, T, hs)."""
    n = cos.shape[-1]
    xr, xp = x[..., :n], x[..., n:]
    x1, x2 = xr[..., : n // 2], xr[..., n // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((xr * cos + rotated * sin, xp), dim=-1)


class HwlmAttention(nn.Module):
    def __init__(self, config: HwlmConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.head_size = config.n_head[layer_idx], config.head_size
        width = self.n_head * self.head_size
        self.qkv = nn.Linear(config.embed_dim, 3 * width, bias=config.bias)
        self.proj = nn.Linear(width, config.embed_dim, bias=config.bias)

    def forward(self, x, cos, sin, attn_mask=None, is_causal=False, cache=None):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_size))


class HwlmMLP(nn.Module):
    def __init__(self, config: HwlmConfig, layer_idx: int):
        super().__init__()
        hidden = config.mlp_ratio[layer_idx] * config.embed_dim
        self.fc = nn.Linear(config.embed_dim, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.embed_dim, bias=config.bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class HwlmBlock(nn.Module):
    def __init__(self, config: HwlmConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = HwlmAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = HwlmMLP(config, layer_idx)

    def forward(self, x, cos, sin, attn_mask=None, is_causal=False, cache=None):
        return x + self.attn(self.ln_1(x), cos, sin, attn_mask, is_causal, cache) + self.mlp(self.ln_2(x))


class HwlmPreTrainedModel(PreTrainedModel):
    config_class = HwlmConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["HwlmBlock"]
    _supports_sdpa = True
    _supports_cache_class = True  # transformers 4.x: pass Cache objects, not legacy tuples
    _supports_static_cache = False

    def _init_weights(self, module):
        # only used for weights that a checkpoint lacks (transformers skips loaded ones)
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _resolve_cache(cache, past_key_values):
    """The cache under either name; legacy tuples (transformers 4.x) become a DynamicCache."""
    if cache is None:
        cache = past_key_values
    if cache is not None and not (Cache is not None and isinstance(cache, Cache)):
        if DynamicCache is not None and hasattr(DynamicCache, "from_legacy_cache"):
            cache = DynamicCache.from_legacy_cache(cache)
        else:
            raise TypeError(f"invalid cache: {type(cache).__name__}; allowed: a transformers Cache (DynamicCache)")
    return cache


def _new_cache(config):
    if DynamicCache is None:
        raise RuntimeError("this transformers version has no DynamicCache; call with use_cache=False")
    try:
        return DynamicCache(config=config)
    except TypeError:  # older DynamicCache() takes no config
        return DynamicCache()


class HwlmModel(HwlmPreTrainedModel):
    """The transformer without the LM head: returns the final (normed) hidden states."""

    def __init__(self, config: HwlmConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.embed_dim)
        self.blocks = nn.ModuleList(HwlmBlock(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, return_dict=None, **kwargs):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("invalid inputs: give exactly one of input_ids and inputs_embeds")
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = x.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = _resolve_cache(cache, past_key_values)
        if cache is None and use_cache:
            cache = _new_cache(self.config)
        past = cache.get_seq_length() if cache is not None else 0
        total = past + T
        if position_ids is None and total > self.config.block_size:
            raise ValueError(f"invalid sequence length: {total} (cached {past} + new {T}); allowed: at most "
                             f"block_size={self.config.block_size}, the context the model was trained on")

        attn_mask, is_causal = None, False
        pad = None
        if attention_mask is not None and attention_mask.dim() == 2:
            if attention_mask.shape[-1] != total:
                raise ValueError(f"invalid attention_mask length: {attention_mask.shape[-1]}; allowed: "
                                 f"{total} (cached tokens + new tokens)")
            if not bool(attention_mask.all()):
                pad = attention_mask.to(torch.bool)
        if position_ids is None:
            if pad is not None:  # count positions from the first real token of each row (left padding)
                position_ids = (pad.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            else:
                position_ids = torch.arange(past, total, device=x.device).expand(B, T)
        if attention_mask is not None and attention_mask.dim() == 4:  # prepared by the caller
            attn_mask = attention_mask
            if attn_mask.dtype != torch.bool:
                attn_mask = attn_mask.to(x.dtype)
        elif pad is not None:
            q_pos = torch.arange(past, total, device=x.device)
            k_pos = torch.arange(total, device=x.device)
            causal = k_pos[None, :] <= q_pos[:, None]  # (T, S)
            attn_mask = causal[None] & pad[:, None, :]
            attn_mask = attn_mask | (k_pos[None, :] == q_pos[:, None])[None]  # a padded query sees itself: no NaN
            attn_mask = attn_mask[:, None]  # (B, 1, T, S)
        elif past == 0:
            is_causal = True
        elif T > 1:
            attn_mask = torch.ones(T, total, dtype=torch.bool, device=x.device).tril(diagonal=past)

        angles = rope_angles(position_ids, self.config.rope_dims, self.config.rope_base)[:, None]  # (B, 1, T, r)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask, is_causal, cache)
        x = self.ln_f(x)
        out = BaseModelOutputWithPast(last_hidden_state=x, **{_CACHE_FIELD: cache if use_cache else None})
        return out if return_dict is not False else out.to_tuple()


class HwlmForCausalLM(HwlmPreTrainedModel, GenerationMixin):
    """:class:`HwlmModel` with the tied LM head (logits = hidden @ wte.weight.T).

    ``forward(input_ids, labels=...)`` returns the mean next-token cross-entropy (ignore index
    -100) as ``loss``; ``exp(loss)`` is the perplexity.
    """

    def __init__(self, config: HwlmConfig):
        super().__init__(config)
        self.model = HwlmModel(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.wte

    def set_input_embeddings(self, value):
        self.model.wte = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, return_dict=None, logits_to_keep=0, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                         return_dict=True)
        h = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            h = h[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            h = h[:, logits_to_keep]
        logits = F.linear(h, self.model.wte.weight)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)
        result = CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: getattr(out, _CACHE_FIELD)})
        return result if return_dict is not False else result.to_tuple()
