"""Search spaces: round trips, sampling, neighbourhoods, rejection of bad input."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from strategies import architectures

from benchmark.spaces import PAD, SPACES, Architecture, ArchitectureError, SearchSpace, concatenated_id, canonical_id, get_space

SPACE_NAMES = sorted(SPACES)




@given(architectures())
@settings(max_examples=200, deadline=None)
def test_round_trips(arch):
    sp = arch.search_space
    assert Architecture.from_id(arch.id) == arch
    assert sp.from_id(arch.id) == arch
    enc = arch.encoding()
    assert enc.shape == (sp.encoding_length,)
    assert sp.decode(enc) == arch
    d = arch.to_hwgpt_dict()
    assert d["sample_bias"] in ("True", "False")
    assert sp.from_hwgpt_dict(d) == arch
    assert hash(arch) == hash(sp.decode(enc))
    for form in (arch, arch.id, enc, d, list(enc)):
        assert sp.validate(form) == arch


@given(architectures(), st.integers(0, 3))
@settings(max_examples=50, deadline=None)
def test_hwgpt_dict_accepts_padded_lists(arch, extra):
    sp = arch.search_space
    d = arch.to_hwgpt_dict()
    pad = sp.max_layers - arch.n_layer + extra
    d["sample_mlp_ratio"] += [sp.mlp_ratio_choices[0]] * pad
    d["sample_n_head"] += [sp.n_head_choices[-1]] * pad
    assert sp.from_hwgpt_dict(d) == arch
    d["sample_bias"] = arch.bias  # a real bool is accepted too
    assert sp.from_hwgpt_dict(d) == arch


def test_hwgpt_id_format_matches_reference():
    """HW-GPT-Bench's convert_arch_to_str: choices (not indices), one dash between every value."""
    sp = get_space("s")
    a = sp.arch(768, 10, (12, 4, 8, 12, 12, 4, 4, 8, 8, 12), (4, 3, 2, 2, 3, 4, 4, 4, 2, 3), False)
    assert a.id == "gpt-s-10-768-4-3-2-2-3-4-4-4-2-3-12-4-8-12-12-4-4-8-8-12-False"
    assert Architecture.from_id(a.id) == a
    # what HW-GPT-Bench's convert_str_to_arch reads back from the id: the same dict
    parts = a.id.split("-")
    n = int(parts[2])
    assert [int(x) for x in parts[4:4 + n]] == a.to_hwgpt_dict()["sample_mlp_ratio"]
    assert [int(x) for x in parts[4 + n:4 + 2 * n]] == a.to_hwgpt_dict()["sample_n_head"]
    assert parts[-1] == a.to_hwgpt_dict()["sample_bias"]
    for name in ("m", "l"):
        big = SPACES[name].largest()
        assert Architecture.from_id(big.id) == big


def test_olderconcatenated_ids_accepted():
    """Ids written before the dash-separated form still parse (to the same architecture)."""
    a = get_space("s").arch(768, 10, (12, 4, 8, 12, 12, 4, 4, 8, 8, 12), (4, 3, 2, 2, 3, 4, 4, 4, 2, 3), False)
    assert Architecture.from_id("gpt-s-10-768-4322344423-12481212448812-False") == a
    assert canonical_id("gpt-t-4-64-2222-2222-False") == "gpt-t-4-64-2-2-2-2-2-2-2-2-False"
    assert get_space("t").validate("gpt-t-6-192-444444-666666-True") == get_space("t").largest()
    for name in "tsml":  # every architecture's older id parses back
        for arch in SPACES[name].sample(3, n=50) + [SPACES[name].largest(), SPACES[name].smallest()]:
            assert Architecture.from_id(concatenated_id(arch), space=name) == arch


def test_ambiguous_older_id_refused(monkeypatch):
    """The older form is refused where its digits split into choices more than one way (no space
    shipped today has such choices: theirs are prefix-free as digit strings)."""
    monkeypatch.setitem(SPACES, "x", SearchSpace("x", (64,), (3,), (1, 2, 12), (2,), (True, False),
                                                 head_size=32, block_size=64, vocab_size=256))
    a = Architecture("x", 64, 3, (12, 1, 2), (2, 2, 2), True)
    assert a.id == "gpt-x-3-64-2-2-2-12-1-2-True" and Architecture.from_id(a.id) == a
    with pytest.raises(ArchitectureError, match=r"invalid n_head digits in id 'gpt-x-3-64-222-1212-True' "
                                                r"\(ambiguous: \(1, 2, 12\) or \(12, 1, 2\)\): '1212'; allowed: .*dash-separated"):
        Architecture.from_id("gpt-x-3-64-222-1212-True")
    assert Architecture.from_id("gpt-x-3-64-222-1122-True").n_head == (1, 12, 2)  # one split only


def test_encodings_to_ids_vectorised():
    for name in "tsml":
        sp = SPACES[name]
        archs = sp.sample(4, n=40) + [sp.largest(), sp.smallest()]
        assert sp.ids_of_encodings(sp.encode_many(archs)).tolist() == [a.id for a in archs]


def test_encoding_padding_and_dtype():
    sp = get_space("t")
    a = sp.smallest()
    enc = a.encoding()
    assert enc.dtype == np.int8
    assert (enc[2 + a.n_layer: 2 + sp.max_layers] == PAD).all()
    assert (enc[2 + sp.max_layers + a.n_layer: -1] == PAD).all()
    m = sp.encode_many([a, sp.largest()])
    assert m.shape == (2, sp.encoding_length)


def test_space_sizes_and_extremes():
    t = get_space("t")
    assert t.size() == 3 * 2 * sum(9**n for n in (4, 5, 6))
    assert t.largest().id == "gpt-t-6-192-4-4-4-4-4-4-6-6-6-6-6-6-True"
    assert t.smallest().id == "gpt-t-4-64-2-2-2-2-2-2-2-2-False"
    assert SPACES["s"].head_size == 64 and SPACES["s"].block_size == 1024 and SPACES["s"].vocab_size == 50304
    assert t.head_size == 32 and t.block_size == 256 and t.vocab_size == 4096


def test_sampling_is_seeded_and_uniform_over_depth():
    t = get_space("t")
    assert t.sample(5, n=20) == t.sample(5, n=20)
    assert t.sample(5, n=20) != t.sample(6, n=20)
    assert t.sample(np.random.default_rng(3)) == t.sample(3)
    depths = np.array([a.n_layer for a in t.sample(0, n=3000)])
    # uniform over architectures: depth 6 holds 81/91 of the space
    assert abs((depths == 6).mean() - 6561 / (6561 + 729 + 81)) < 0.03
    with pytest.raises(ArchitectureError, match="seed"):
        t.sample(None)


def test_neighbours_and_mutation():
    t = get_space("t")
    a = t.sample(11)
    nb = t.neighbours(a)
    assert len(set(nb)) == len(nb) and a not in nb
    expected = 2 + 2 + a.n_layer * (2 + 2) + 1
    assert len(nb) == expected
    for b in nb:
        diff = (a.encoding() != b.encoding()).sum()
        assert diff >= 1
    m1, m2 = t.mutate(a, seed=4), t.mutate(a, seed=4)
    assert m1 == m2 and m1 != a
    with pytest.raises(ArchitectureError, match="p"):
        t.mutate(a, seed=0, p=1.5)


BAD = [
    (dict(embed_dim=65), "embed_dim.*65.*64, 128, 192"),
    (dict(embed_dim="64"), "embed_dim"),
    (dict(embed_dim=True), "embed_dim"),
    (dict(n_layer=7), "n_layer.*7"),
    (dict(n_head=(2, 2, 2)), "n_head.*length"),
    (dict(n_head=(2, 2, 2, 3)), r"n_head\[3\].*3.*\[2, 4, 6\]"),
    (dict(mlp_ratio=(2, 2, 2, 5)), r"mlp_ratio\[3\].*5"),
    (dict(mlp_ratio="2222"), "mlp_ratio"),
    (dict(bias="True"), "bias"),
    (dict(space="xl"), "space.*xl"),
]


@pytest.mark.parametrize("change,pattern", BAD)
def test_bad_architecture_rejected(change, pattern):
    fields = dict(space="t", embed_dim=64, n_layer=4, n_head=(2, 2, 2, 2), mlp_ratio=(2, 2, 2, 2), bias=False)
    fields.update(change)
    with pytest.raises(ArchitectureError, match=pattern):
        Architecture(**fields)
    assert issubclass(ArchitectureError, ValueError)


@pytest.mark.parametrize("bad_id", [
    "gpt-t-4-64-2222-2222", "gpt-t-4-64-2222-2222-true", "gpt-q-4-64-2222-2222-False",
    "gpt-t-4-64-222-2222-False", "gpt-t-4-64-2225-2222-False", "gpt-t-9-64-2222-2222-False",
    "gpt-t-4-65-2222-2222-False", "gpt-t-4-064-2222-2222-False", "", "hello",
    "gpt-t-4-64-2-2-2-2-2-2-2-False", "gpt-t-4-64-2-2-2-2-2-2-2-2-2-False", "gpt-t-4-64-2-2-2-5-2-2-2-2-False",
    "gpt-t-4-64-2-2-2-02-2-2-2-2-False", "gpt-t-4-64-2-2-2-2-2-2-2-2-True-", "gpt-t-4-64-2-2-2-2-2-2-2-²-True",
    "gpt-t-4-64-22-2-2-2-2-2-2-False", "gpt-t-4-64-2222-2-2-2-2-False", "gpt--4-64-2222-2222-False",
])
def test_malformed_ids_rejected(bad_id):
    with pytest.raises(ArchitectureError, match="invalid"):
        Architecture.from_id(bad_id)


def test_wrong_space_and_bad_forms():
    t, s = get_space("t"), get_space("s")
    with pytest.raises(ArchitectureError, match="space"):
        t.validate(s.largest())
    with pytest.raises(ArchitectureError, match=r"invalid space of architecture id 'gpt-s-12-.*': 's'; allowed: 't'"):
        t.from_id(s.largest().id)
    with pytest.raises(ArchitectureError, match=r"invalid space in id 'gpt-q-4-.*': 'q'; allowed: \['l', 'm', 's', 't'\]"):
        t.from_id("gpt-q-4-64-2-2-2-2-2-2-2-2-False")
    with pytest.raises(ArchitectureError, match="encoding"):
        t.decode(np.zeros(5, dtype=int))
    enc = t.smallest().encoding()
    enc[0] = 7
    with pytest.raises(ArchitectureError, match="embed_dim index"):
        t.decode(enc)
    enc = t.smallest().encoding()
    enc[2 + 5] = 0  # a live value in a padded layer slot
    with pytest.raises(ArchitectureError, match="beyond n_layer"):
        t.decode(enc)
    with pytest.raises(ArchitectureError, match="sample_bias"):
        t.from_hwgpt_dict({**t.smallest().to_hwgpt_dict(), "sample_bias": "yes"})
    with pytest.raises(ArchitectureError, match="missing"):
        t.from_hwgpt_dict({"sample_embed_dim": 64})
    with pytest.raises(ArchitectureError, match="sample_n_head"):
        t.from_hwgpt_dict({**t.largest().to_hwgpt_dict(), "sample_n_head": [6, 6]})
    with pytest.raises(ArchitectureError, match="architecture"):
        t.validate(3.5)
    with pytest.raises(ArchitectureError, match="space"):
        get_space("xl")


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_random_strings_never_parse_to_garbage(s):
    try:
        a = Architecture.from_id(s)
    except ArchitectureError:
        return
    assert a.id == s
