"""The weight-sharing GPT supernet: one set of weights of a space's largest architecture.

An :class:`~benchmark.spaces.Architecture` selects its sub-network by first-k slicing:

* embedding columns ``[:embed_dim]`` (also of every LayerNorm and of the tied output head),
* the first ``n_layer`` layers,
* per layer the first ``n_head[i]`` heads of q, k and v (``[:n_head[i] * head_size]`` rows),
* per layer the first ``mlp_ratio[i] * embed_dim`` MLP hidden units,
* biases of the attention and MLP linears on or off with ``bias`` (LayerNorms keep theirs).

The sliced forward is exactly the dense :class:`benchmark.model.GPT` of that architecture
(``extract_dense`` builds it; a test checks the logits agree).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.errors import HwlmError
from benchmark.files import atomic_path
from benchmark.model import (
    GPT,
    LN_EPS,
    GPTConfig,
    apply_rope,
    init_gpt_weights,
    rope_cache,
)
from benchmark.spaces import Architecture, SearchSpace, get_space


class ElasticLinear(nn.Module):
    """A linear layer of maximal size whose sub-matrix ``[:out, :in]`` serves smaller models."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor, out_features: int, bias: bool) -> torch.Tensor:
        return F.linear(x, self.weight[:out_features, : x.shape[-1]], self.bias[:out_features] if bias else None)


class ElasticLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x.shape[-1]
        return F.layer_norm(x, (e,), self.weight[:e], self.bias[:e], LN_EPS)


class ElasticBlock(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        e = max(space.embed_dim_choices)
        width = max(space.n_head_choices) * space.head_size
        hidden = max(space.mlp_ratio_choices) * e
        self.head_size = space.head_size
        self.ln_1 = ElasticLayerNorm(e)
        self.q = ElasticLinear(e, width)
        self.k = ElasticLinear(e, width)
        self.v = ElasticLinear(e, width)
        self.attn_proj = ElasticLinear(width, e)
        self.ln_2 = ElasticLayerNorm(e)
        self.fc = ElasticLinear(e, hidden)
        self.mlp_proj = ElasticLinear(hidden, e)

    def forward(self, x, cos, sin, n_head: int, mlp_ratio: int, bias: bool):
        B, T, E = x.shape
        w = n_head * self.head_size
        h = self.ln_1(x)
        q, k, v = (lin(h, w, bias).view(B, T, n_head, self.head_size).transpose(1, 2) for lin in (self.q, self.k, self.v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, w)
        attn = self.attn_proj(y, E, bias)
        mlp = self.mlp_proj(F.gelu(self.fc(self.ln_2(x), mlp_ratio * E, bias)), E, bias)
        return x + attn + mlp


class Supernet(nn.Module):
    """Elastic GPT over a search space; ``forward(idx, arch)`` runs the sub-network ``arch``."""

    def __init__(self, space: str | SearchSpace, vocab_size: int | None = None, block_size: int | None = None):
        super().__init__()
        self.space = get_space(space)
        self.vocab_size = vocab_size or self.space.vocab_size
        self.block_size = block_size or self.space.block_size
        self.wte = nn.Embedding(self.vocab_size, max(self.space.embed_dim_choices))
        self.blocks = nn.ModuleList(ElasticBlock(self.space) for _ in range(self.space.max_layers))
        self.ln_f = ElasticLayerNorm(max(self.space.embed_dim_choices))
        cos, sin = rope_cache(self.block_size, int(self.space.head_size * 0.5))
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, seed: int) -> "Supernet":
        init_gpt_weights(self, self.space.max_layers, seed)
        return self

    def check(self, arch) -> Architecture:
        return self.space.validate(arch)

    def forward(self, idx: torch.Tensor, arch: Architecture) -> torch.Tensor:
        arch = self.check(arch)
        T = idx.shape[1]
        if T > self.block_size:
            raise HwlmError(f"invalid sequence length: {T}; allowed: at most block_size={self.block_size}")
        x = F.embedding(idx, self.wte.weight[:, : arch.embed_dim])
        cos, sin = self.rope_cos[:T].to(x.dtype), self.rope_sin[:T].to(x.dtype)
        for i in range(arch.n_layer):
            x = self.blocks[i](x, cos, sin, arch.n_head[i], arch.mlp_ratio[i], arch.bias)
        return F.linear(self.ln_f(x), self.wte.weight[:, : arch.embed_dim])

    # ------------------------------------------------------------------ extraction
    def sub_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The sliced weights of ``arch`` under the dense model's parameter names (copies)."""
        arch = self.check(arch)
        E, hs = arch.embed_dim, self.space.head_size
        sd: dict[str, torch.Tensor] = {"wte.weight": self.wte.weight[:, :E]}
        for i in range(arch.n_layer):
            b, w, hid = self.blocks[i], arch.n_head[i] * hs, arch.mlp_ratio[i] * E
            p = f"blocks.{i}."
            sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = b.ln_1.weight[:E], b.ln_1.bias[:E]
            sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = b.ln_2.weight[:E], b.ln_2.bias[:E]
            sd[p + "attn.qkv.weight"] = torch.cat([b.q.weight[:w, :E], b.k.weight[:w, :E], b.v.weight[:w, :E]])
            sd[p + "attn.proj.weight"] = b.attn_proj.weight[:E, :w]
            sd[p + "mlp.fc.weight"] = b.fc.weight[:hid, :E]
            sd[p + "mlp.proj.weight"] = b.mlp_proj.weight[:E, :hid]
            if arch.bias:
                sd[p + "attn.qkv.bias"] = torch.cat([b.q.bias[:w], b.k.bias[:w], b.v.bias[:w]])
                sd[p + "attn.proj.bias"] = b.attn_proj.bias[:E]
                sd[p + "mlp.fc.bias"] = b.fc.bias[:hid]
                sd[p + "mlp.proj.bias"] = b.mlp_proj.bias[:E]
        sd["ln_f.weight"], sd["ln_f.bias"] = self.ln_f.weight[:E], self.ln_f.bias[:E]
        return {k: v.detach().clone().contiguous() for k, v in sd.items()}

    def extract_dense(self, arch: Architecture) -> GPT:
        """A dense :class:`GPT` holding the inherited weights of ``arch``."""
        arch = self.check(arch)
        config = GPTConfig.from_arch(arch, vocab_size=self.vocab_size, block_size=self.block_size)
        with torch.device("meta"):
            model = GPT(config)
        model = model.to_empty(device=self.wte.weight.device)
        cos, sin = rope_cache(config.block_size, config.rope_dims, device=self.wte.weight.device)
        model.rope_cos, model.rope_sin = cos, sin
        model.load_state_dict(self.sub_state_dict(arch), strict=True)
        return model.to(self.wte.weight.dtype)



# ---------------------------------------------------------------------- released weights
FORMAT = "hwlm-supernet"


class CheckpointError(HwlmError):
    """A supernet file that is missing, corrupt or not for the requested space."""


def save_supernet(net: Supernet, path, dtype: torch.dtype = torch.float16, **metadata: str) -> None:
    """Save the weights (safetensors, default fp16) with the metadata needed to rebuild the net."""
    from safetensors.torch import save_file

    meta = {"format": FORMAT, "space": net.space.name, "vocab_size": str(net.vocab_size),
            "block_size": str(net.block_size), "dtype": str(dtype).replace("torch.", "")}
    meta.update({k: str(v) for k, v in metadata.items()})
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)


def _check_sha256(path: Path, expected: str | None) -> None:
    """Refuse a checkpoint whose bytes are not the ones recorded for it (argument, release manifest)."""
    from benchmark.release import MANIFEST_NAME, ReleaseError, cached_sha256, find_release, read_manifest

    if not path.is_file():
        return  # reported by the loader
    wanted = []
    if expected is not None:
        wanted.append((str(expected).lower(), "the expected sha256 (the table's supernet_sha256)"))
    release = find_release(path.parent)
    if release is not None:
        try:
            rel = path.resolve().relative_to(release).as_posix()
            entry = next((f for f in read_manifest(release)["files"] if f["path"] == rel), None)
        except (ValueError, ReleaseError) as e:
            raise CheckpointError(f"supernet checkpoint {path}: cannot check it against {release / MANIFEST_NAME} "
                                  f"({e})") from None
        if entry is not None:
            wanted.append((entry["sha256"], f"its sha256 in {release / MANIFEST_NAME}"))
    if wanted:
        actual = cached_sha256(path)
        for digest, what in wanted:
            if actual != digest:
                raise CheckpointError(f"supernet checkpoint {path}: sha256 {actual} differs from {what} ({digest}); "
                                      "the file is corrupted or was replaced")


def load_supernet(path, space: str | None = None, sha256: str | None = None) -> Supernet:
    """Load a supernet saved by :func:`save_supernet` (as fp32), checking format and space.

    The file's sha256 is checked first against ``sha256`` when given (e.g. a table's
    ``supernet_sha256``), and against the ``MANIFEST.json`` of the release it lies in when the
    manifest lists it (:func:`benchmark.release.cached_sha256`: hashed once per file version)."""
    from safetensors import SafetensorError, safe_open

    _check_sha256(Path(path), sha256)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"supernet checkpoint {path}: no such file") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"supernet checkpoint {path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"supernet checkpoint {path}: format {meta.get('format')!r}; expected {FORMAT!r}")
    if space is not None and meta.get("space") != space:
        raise CheckpointError(f"supernet checkpoint {path}: space {meta.get('space')!r}; expected {space!r}")
    net = Supernet(meta["space"], vocab_size=int(meta["vocab_size"]), block_size=int(meta["block_size"]))
    try:
        net.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as e:
        raise CheckpointError(f"supernet checkpoint {path}: tensors do not match space {meta['space']!r} ({e})") from None
    net.metadata = meta
    return net.eval()
