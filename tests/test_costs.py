"""Exact costs: params and FLOPs against the built model (numel, FlopCounterMode), memory against
the model's own tensors, vectorised == per architecture, monotonicity, rejection of bad input.

Models of s/m/l are built on the meta device (no memory, no compute); FlopCounterMode counts
meta tensors, and there SDPA decomposes into two bmm that it counts in full (T x S)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.utils.flop_counter import FlopCounterMode

from benchmark import costs
from benchmark.model import GPT
from strategies import architectures

from benchmark.spaces import SPACES, ArchitectureError, get_space

SPACE_NAMES = sorted(SPACES)
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}


def meta_model(arch):
    with torch.device("meta"):
        return GPT(arch)


def count_flops(fn):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops(), fc.get_flop_counts()["Global"]


def archs_of(name, n=2, seed=0):
    sp = get_space(name)
    return [sp.smallest(), sp.largest()] + sp.sample(seed, n=n)




# --------------------------------------------------------------------------- against the model
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_params_and_weight_bytes_equal_built_model(name):
    archs = archs_of(name, n=3, seed=1)
    for a in archs:
        m = meta_model(a)
        total = sum(p.numel() for p in m.parameters())  # tied head: wte.weight appears once
        assert costs.params(a) == total
        assert costs.params(a, embeddings=False) == total - m.wte.weight.numel()
        assert costs.weight_bytes(a, "int8") == total
        for dt in ("fp32", "fp16", "bf16"):
            assert costs.weight_bytes(a, dt) == sum(p.numel() * p.element_size()
                                                    for p in m.to(TORCH_DTYPES[dt]).parameters())
    vec = costs.params(archs)
    assert vec.dtype == np.int64 and vec.shape == (len(archs),)
    assert vec.tolist() == [costs.params(a) for a in archs]


# Meta forwards cost ~0.03 s per layer, so each space checks few architectures: the smallest of
# t, the largest of s, and one sample per space (seeds chosen so that bias is on in some and off in others).
FLOP_CASES = {
    "t": [get_space("t").smallest(), get_space("t").sample(1)],
    "s": [get_space("s").largest(), get_space("s").sample(2)],
    "m": [get_space("m").sample(3)],
    "l": [get_space("l").sample(3)],
}


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_flops_equal_flop_counter_on_meta(name):
    """Prefill of c tokens, one decoded token on the KV cache, then a 5-token chunk on top."""
    for i, a in enumerate(FLOP_CASES[name]):
        m = meta_model(a)
        for batch, c in ((2, 9), (1, 1))[: 2 if name == "t" or (name == "s" and i == 0) else 1]:
            cache = m.new_cache(batch, c + 6)
            tokens = lambda n: torch.zeros(batch, n, dtype=torch.long, device="meta")  # noqa: E731
            total, _ = count_flops(lambda: m(tokens(c), cache))
            assert costs.flops_prefill(a, batch, c) == total, (a.id, batch, c)
            total, _ = count_flops(lambda: m(tokens(1), cache))
            assert costs.flops_decode(a, batch, c) == total, (a.id, batch, c)
            total, _ = count_flops(lambda: m(tokens(5), cache))  # masked-attention path
            assert costs.flops(a, batch, 5, context_len=c + 1) == total, (a.id, batch, c)
            assert cache.pos == c + 6


def test_prefill_flops_without_cache_on_meta():
    """The cache-free forward (is_causal SDPA on the full sequence), up to the context length."""
    sp = get_space("t")
    a = sp.sample(5)
    m = meta_model(a)
    for batch, seq in ((3, 16), (1, sp.block_size)):
        total, _ = count_flops(lambda: m(torch.zeros(batch, seq, dtype=torch.long, device="meta")))
        assert costs.flops_prefill(a, batch, seq) == total


def test_cpu_flop_counter_counts_linears_exactly(seed=0):
    """On CPU, FlopCounterMode has no formula for SDPA's CPU kernel (torch 2.13: 0 attention FLOPs);
    the matrix products it does count equal attention="none" exactly."""
    a = get_space("t").sample(seed)
    m = GPT(a).eval()
    idx = torch.zeros(2, 12, dtype=torch.long)
    total, by_op = count_flops(lambda: m(idx))
    linear = sum(v for op, v in by_op.items() if str(op) in ("aten.mm", "aten.addmm"))
    assert linear == costs.flops_prefill(a, 2, 12, attention="none")
    assert total in (costs.flops_prefill(a, 2, 12, attention="none"), costs.flops_prefill(a, 2, 12))
    cache = m.new_cache(2, 16)
    with torch.no_grad():
        m(idx, cache)
    total, by_op = count_flops(lambda: m(idx[:, :1], cache))
    linear = sum(v for op, v in by_op.items() if str(op) in ("aten.mm", "aten.addmm"))
    assert linear == costs.flops_decode(a, 2, 12, attention="none")
    assert total in (costs.flops_decode(a, 2, 12, attention="none"), costs.flops_decode(a, 2, 12))


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_kv_cache_bytes_equal_model_cache(name):
    for a in archs_of(name, n=1, seed=4):
        m = meta_model(a)
        for dt, tdt in TORCH_DTYPES.items():
            for batch, seq in ((1, 1), (3, 40)):
                assert costs.kv_cache_bytes(a, batch, seq, dt) == m.new_cache(batch, seq, dtype=tdt).nbytes()


# --------------------------------------------------------------------------- conventions
def test_attention_modes():
    a = get_space("s").sample(5)
    w = sum(a.n_head) * a.head_size
    full, causal, none = (costs.flops_prefill(a, 2, 64, attention=m) for m in ("full", "causal", "none"))
    assert full - none == 4 * 2 * w * 64 * 64
    assert causal - none == 4 * 2 * w * (64 * 65 // 2)
    # one decoded token sees all cached keys plus itself: no causal discount
    assert costs.flops_decode(a, 2, 30, attention="causal") == costs.flops_decode(a, 2, 30)
    assert costs.flops_decode(a, 2, 30) - costs.flops_decode(a, 2, 30, attention="none") == 4 * 2 * w * 31
    assert costs.flops(a, 1, 4, 10, attention="causal") - costs.flops(a, 1, 4, 10, attention="none") == \
        4 * w * (4 * 10 + 4 * 5 // 2)


def test_return_types_and_forms():
    sp = get_space("m")
    archs = sp.sample(0, n=4)
    enc = sp.encode_many(archs)
    for fn in (lambda x, **k: costs.params(x, **k), lambda x, **k: costs.flops_prefill(x, 2, 8, **k),
               lambda x, **k: costs.flops_decode(x, 2, 8, **k), lambda x, **k: costs.weight_bytes(x, "bf16", **k),
               lambda x, **k: costs.kv_cache_bytes(x, 2, 8, "fp16", **k)):
        vec = fn(archs)
        assert isinstance(vec, np.ndarray) and vec.dtype == np.int64 and vec.shape == (4,)
        assert np.array_equal(fn(enc, space="m"), vec)
        assert np.array_equal(fn(enc.astype(np.int64), space=sp), vec)
        assert np.array_equal(fn(tuple(archs), space="m"), vec)
        one = fn(archs[1])
        assert isinstance(one, np.int64) and one == vec[1]
        assert fn(enc[1], space="m") == vec[1]
        assert fn([]).shape == (0,)
    est = costs.activation_bytes_estimate(archs, 2, 8, "fp16")
    assert est.dtype == np.float64 and est.shape == (4,)


def test_activation_estimate_is_plausible():
    sp = get_space("t")
    archs = sp.sample(0, n=8)
    est = costs.activation_bytes_estimate(archs, 4, 64, "fp32")
    assert np.all(est >= 4 * 64 * sp.vocab_size * 4)  # at least the logits
    assert np.allclose(costs.activation_bytes_estimate(archs, 8, 64, "fp32"), 2 * est)
    assert np.allclose(costs.activation_bytes_estimate(archs, 4, 64, "bf16"), est / 2)


# --------------------------------------------------------------------------- properties
@given(st.lists(architectures("t"), min_size=1, max_size=6) | st.lists(architectures("l"), min_size=1, max_size=6),
       st.integers(1, 4), st.integers(1, 64), st.integers(0, 64))
@settings(max_examples=60, deadline=None)
def test_vectorised_equals_per_architecture(archs, batch, seq, ctx):
    sp = archs[0].search_space
    enc = sp.encode_many(archs)
    for attention in costs.ATTENTION_MODES:
        vec = costs.flops(enc, batch, seq, ctx, space=sp.name, attention=attention)
        assert vec.tolist() == [costs.flops(a, batch, seq, ctx, attention=attention) for a in archs]
    assert costs.params(enc, space=sp.name, embeddings=False).tolist() == \
        [costs.params(a, embeddings=False) for a in archs]
    assert costs.kv_cache_bytes(enc, batch, seq, space=sp.name).tolist() == \
        [costs.kv_cache_bytes(a, batch, seq) for a in archs]


def _bigger(choices, v):
    return [c for c in choices if c > v]


@given(architectures(), st.data())
@settings(max_examples=100, deadline=None)
def test_monotone_in_heads_mlp_embed_layers(arch, data):
    sp = arch.search_space
    layer = data.draw(st.integers(0, arch.n_layer - 1))
    bigger = []
    for h in _bigger(sp.n_head_choices, arch.n_head[layer]):
        bigger.append(arch.replace(n_head=arch.n_head[:layer] + (h,) + arch.n_head[layer + 1:]))
    for r in _bigger(sp.mlp_ratio_choices, arch.mlp_ratio[layer]):
        bigger.append(arch.replace(mlp_ratio=arch.mlp_ratio[:layer] + (r,) + arch.mlp_ratio[layer + 1:]))
    for e in _bigger(sp.embed_dim_choices, arch.embed_dim):
        bigger.append(arch.replace(embed_dim=e))
    if arch.n_layer < sp.max_layers:
        n = min(_bigger(sp.n_layer_choices, arch.n_layer))
        extra = n - arch.n_layer
        bigger.append(arch.replace(n_layer=n, n_head=arch.n_head + (arch.n_head[-1],) * extra,
                                   mlp_ratio=arch.mlp_ratio + (arch.mlp_ratio[-1],) * extra))
    for b in bigger:
        assert costs.params(b) > costs.params(arch)
        assert costs.flops_prefill(b, 2, 16) > costs.flops_prefill(arch, 2, 16)
        assert costs.flops_decode(b, 2, 16) > costs.flops_decode(arch, 2, 16)
        assert costs.kv_cache_bytes(b, 2, 16) >= costs.kv_cache_bytes(arch, 2, 16)
    # biases add parameters but no counted FLOPs (bias adds are not matrix products)
    nb, wb = arch.replace(bias=False), arch.replace(bias=True)
    assert costs.params(wb) > costs.params(nb)
    assert costs.flops_prefill(wb, 2, 16) == costs.flops_prefill(nb, 2, 16)


@given(architectures(), st.integers(1, 8), st.integers(1, 120), st.integers(0, 120))
@settings(max_examples=100, deadline=None)
def test_monotone_in_setting(arch, batch, seq, ctx):
    f = costs.flops(arch, batch, seq, ctx)
    assert costs.flops(arch, batch + 1, seq, ctx) > f
    assert costs.flops(arch, batch, seq + 1, ctx) > f
    assert costs.flops(arch, batch, seq, ctx + 1) > f
    none, causal = (costs.flops(arch, batch, seq, ctx, attention=m) for m in ("none", "causal"))
    assert none < causal <= f
    assert costs.flops_prefill(arch, batch, seq) == costs.flops(arch, batch, seq, 0)
    assert costs.flops_decode(arch, batch, ctx) == costs.flops(arch, batch, 1, ctx)


# --------------------------------------------------------------------------- bad input
def _raises(fn, *words):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    return e.value


def test_bad_input_names_field_value_and_allowed():
    sp = get_space("s")
    archs = sp.sample(0, n=3)
    enc = sp.encode_many(archs)
    _raises(lambda: costs.params(enc[:, :-1], space="s"), "encoding width", "26", "27")
    _raises(lambda: costs.params(enc, space="t"), "encoding width", "27", "15", "'t'")
    _raises(lambda: costs.params(enc), "space", "required")
    _raises(lambda: costs.params(enc, space="xl"), "space", "'xl'", "['l', 'm', 's', 't']")
    _raises(lambda: costs.params(archs, space="t"), "space", "'s'", "'t'")
    _raises(lambda: costs.params(archs + [get_space("t").sample(0)]), "space", "['s', 't']")
    _raises(lambda: costs.params(enc.astype(float), space="s"), "encoding dtype", "float64", "integer")
    _raises(lambda: costs.params(enc[None], space="s"), "encoding shape", "(1, 3, 27)")
    _raises(lambda: costs.params("gpt-s"), "archs", "'gpt-s'", "Architecture")
    _raises(lambda: costs.flops_prefill(archs, -1, 8), "batch", "-1", ">= 1")
    _raises(lambda: costs.flops_prefill(archs, 1.5, 8), "batch", "1.5", "integer")
    _raises(lambda: costs.flops_prefill(archs, 1, 0), "seq_len", "0", "1..1024")
    _raises(lambda: costs.flops_prefill(archs, 1, 2000), "seq_len", "2000", "1..1024")
    _raises(lambda: costs.flops_decode(archs, 1, 1024), "context_len", "1024", "0..1023")
    _raises(lambda: costs.flops_decode(archs, 1, -2), "context_len", "-2", "0..1023")
    _raises(lambda: costs.flops_prefill(archs, 10**15, 1024), "batch=1000000000000000", "2**62")
    _raises(lambda: costs.flops_prefill(archs, 1, 8, attention="half"), "attention", "'half'", "'causal'")
    _raises(lambda: costs.weight_bytes(archs, "fp8"), "dtype", "'fp8'", "fp32")
    _raises(lambda: costs.kv_cache_bytes(archs, 0, 8), "batch", "0", ">= 1")
    bad = enc.copy()
    bad[2, 2 + sp.max_layers] = 7  # n_head[0] index out of range
    _raises(lambda: costs.params(bad, space="s"), "row 2", "n_head[0] index", "7", "0..2", "[4, 8, 12]")
    bad = enc.copy()
    bad[1, 1] = 0  # n_layer 10, but slots 10 and 11 are not padded
    bad[1, 2:] = np.maximum(bad[1, 2:], 0)
    _raises(lambda: costs.params(bad, space="s"), "row 1", "beyond n_layer=10", "padding -1")
    bad = enc.copy()
    bad[0, 1], bad[0, 2:] = 2, 0
    bad[0, 2 + 3] = -1  # a padded slot inside the live layers
    _raises(lambda: costs.params(bad, space="s"), "row 0", "mlp_ratio[3] index", "-1")
    assert isinstance(_raises(lambda: costs.params(enc, space="t")), ArchitectureError)


def test_dtype_aliases():
    a = get_space("t").sample(0)
    assert costs.weight_bytes(a, "float16") == costs.weight_bytes(a, torch.float16) == costs.weight_bytes(a, "fp16")
    assert costs.weight_bytes(a, torch.bfloat16) == costs.weight_bytes(a, "bf16") == 2 * costs.params(a)
    assert costs.kv_cache_bytes(a, 1, 4, torch.int8) * 4 == costs.kv_cache_bytes(a, 1, 4)
