"""The dense GPT: shapes, KV-cache decoding equals the full forward, architecture switches."""

import pytest
import torch

from benchmark.model import GPT, GPTConfig
from benchmark.spaces import get_space

T = get_space("t")


def small(arch, vocab=257):
    return GPT(GPTConfig.from_arch(arch, vocab_size=vocab)).init_weights(0).eval()


@pytest.mark.parametrize("seed", range(4))
def test_kv_cache_decoding_matches_full_forward(seed):
    arch = T.sample(seed)
    m = small(arch)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 257, (2, 48), generator=g)
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(2, 64)
        parts = [m(x[:, :16], cache), m(x[:, 16:21], cache)]  # prefill, then a multi-token chunk
        parts += [m(x[:, i:i + 1], cache) for i in range(21, 48)]  # then token by token
    assert cache.pos == 48
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_greedy_generate_agrees_with_argmax_of_full_forward():
    m = small(T.sample(7))
    x = torch.randint(0, 257, (1, 8), generator=torch.Generator().manual_seed(1))
    out = m.generate(x, 12, temperature=0)
    with torch.no_grad():
        logits = m(out[:, :-1])
    assert torch.equal(logits[:, 7:].argmax(-1), out[:, 8:])
    assert torch.equal(m.generate(x, 5, seed=3), m.generate(x, 5, seed=3))


def test_architecture_shapes_and_bias_switch():
    a = T.arch(128, 4, (2, 4, 6, 2), (2, 3, 4, 2), bias=False)
    m = small(a)
    assert m.blocks[2].attn.qkv.weight.shape == (3 * 6 * 32, 128)  # width = heads x head size
    assert m.blocks[1].mlp.fc.weight.shape == (3 * 128, 128)
    assert all(b.attn.qkv.bias is None and b.mlp.proj.bias is None for b in m.blocks)
    assert m.blocks[0].ln_1.bias is not None  # LayerNorms keep their bias
    mb = small(a.replace(bias=True))
    assert all(b.attn.qkv.bias is not None and b.mlp.fc.bias is not None for b in mb.blocks)


def test_causality_and_tied_head():
    m = small(T.sample(2))
    x = torch.randint(0, 257, (1, 20))
    y = x.clone()
    y[0, 15] = (y[0, 15] + 1) % 257
    with torch.no_grad():
        a, b = m(x), m(y)
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])
    assert "lm_head" not in dict(m.named_parameters())


def test_too_long_sequence_is_refused():
    m = small(T.smallest())
    with pytest.raises(ValueError, match="sequence length"):
        m(torch.zeros(1, 257, dtype=torch.long))
    cache = m.new_cache(1, 8)
    m(torch.zeros(1, 8, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="sequence length"):
        m(torch.zeros(1, 1, dtype=torch.long), cache)
