"""Configuration of an exported hwlm-bench sub-network (a dense GPT-NeoX-style GPT).

Self-contained: imports only ``transformers``. It is copied beside the weights of every export
(see ``benchmark.export``), so that ``AutoConfig.from_pretrained(dir, trust_remote_code=True)``
works without the hwlm-bench package.

The architecture is per-layer heterogeneous: ``n_head[i]`` heads of fixed size ``head_size``
(attention width ``n_head[i] * head_size``, independent of ``embed_dim``) and an MLP of hidden
width ``mlp_ratio[i] * embed_dim`` in layer ``i``.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class HwlmConfig(PretrainedConfig):
    """Configuration of :class:`HwlmForCausalLM`.

    Args:
        vocab_size: rows of the (tied) token embedding; may exceed the tokenizer's vocabulary.
        embed_dim: model width.
        n_head: heads per layer (its length is the number of layers).
        mlp_ratio: MLP hidden width per layer, as a multiple of ``embed_dim``.
        bias: biases of every attention and MLP linear (LayerNorms always have theirs).
        head_size: size of every attention head.
        block_size: context length (the longest sequence the model was trained on).
        rotary_fraction: fraction of each head that is rotated (rotate-half RoPE).
        rope_base: RoPE frequency base.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the normal init (only used for weights missing from a checkpoint).
        architecture_id: the hwlm-bench architecture id the weights were sliced for.
    """

    model_type = "hwlm"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    attribute_map = {
        "hidden_size": "embed_dim",
        "max_position_embeddings": "block_size",
        "n_positions": "block_size",
    }

    def __init__(
        self,
        vocab_size: int = 4096,
        embed_dim: int = 192,
        n_head: list[int] | tuple[int, ...] = (6, 6, 6, 6, 6, 6),
        mlp_ratio: list[int] | tuple[int, ...] = (4, 4, 4, 4, 4, 4),
        bias: bool = True,
        head_size: int = 32,
        block_size: int = 256,
        rotary_fraction: float = 0.5,
        rope_base: float = 10000.0,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        architecture_id: str | None = None,
        use_cache: bool = True,
        bos_token_id: int | None = 0,
        eos_token_id: int | None = 0,
        pad_token_id: int | None = 0,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        n_head = [int(h) for h in n_head]
        mlp_ratio = [int(m) for m in mlp_ratio]
        if not n_head or len(n_head) != len(mlp_ratio):
            raise ValueError(f"invalid n_head / mlp_ratio: {n_head} / {mlp_ratio}; allowed: two non-empty "
                             "lists of the same length (one value per layer)")
        self.vocab_size = int(vocab_size)
        self.embed_dim = int(embed_dim)
        self.n_head = n_head
        self.mlp_ratio = mlp_ratio
        self.num_hidden_layers = len(n_head)
        # the largest head count, for tools that expect one number; every layer has its own n_head[i]
        self.num_attention_heads = max(n_head)
        self.bias = bool(bias)
        self.head_size = int(head_size)
        self.head_dim = int(head_size)
        self.block_size = int(block_size)
        self.rotary_fraction = float(rotary_fraction)
        self.rope_base = float(rope_base)
        self.layer_norm_eps = float(layer_norm_eps)
        self.initializer_range = float(initializer_range)
        self.architecture_id = architecture_id
        self.use_cache = bool(use_cache)
        # set here as well as in the base class: transformers 5 moved the token ids out of the base config
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = bool(tie_word_embeddings)
        super().__init__(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)

    @property
    def n_layer(self) -> int:
        return len(self.n_head)

    @property
    def rope_dims(self) -> int:
        return int(self.head_size * self.rotary_fraction)
