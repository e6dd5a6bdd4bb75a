"""HW-GPT-Bench's imported perplexity predictors: the values its authors publish, an independent
torch forward as oracle, and clear errors."""

import numpy as np
import pytest
import torch

from benchmark.hwgpt_perplexity import PROVENANCE, PredictorError, WEIGHTS_DIR, predict
from benchmark.spaces import get_space

# HW-GPT-Bench's predictors at the uniform extremes (their FACTS: largest with bias, smallest without)
PUBLISHED = {"s": (21.30, 43.02), "m": (20.69, 36.22), "l": (18.02, 30.34)}
RANGE_1000 = {"s": (21.5, 42.5), "m": (20.5, 36.5), "l": (18.5, 29.5)}  # "about 22-42, 21-36, 19-29"


def _oracle(space, archs):
    """One-hot from the HW-GPT-Bench dict, written out per architecture, through a torch MLP."""
    from safetensors.torch import load_file

    sp = get_space(space)
    lm = sp.max_layers
    w = load_file(str(WEIGHTS_DIR / f"perplexity_mlp_{space}.safetensors"))
    net = torch.nn.Sequential(*[m for k in range(1, 6) for m in (torch.nn.Linear(*w[f"fc{k}.weight"].T.shape),
                                                                   torch.nn.ReLU())][:-1])
    net.load_state_dict({f"{2 * (k - 1)}.{p}": w[f"fc{k}.{p}"] for k in range(1, 6) for p in ("weight", "bias")})
    rows = []
    for a in archs:
        d = a.to_hwgpt_dict()
        x = [0.0] * (6 + 6 * lm + 2)
        x[sp.embed_dim_choices.index(d["sample_embed_dim"])] = 1
        x[3 + sp.n_layer_choices.index(d["sample_n_layer"])] = 1
        for i, m in enumerate(d["sample_mlp_ratio"]):
            x[6 + 3 * i + sp.mlp_ratio_choices.index(m)] = 1
        for i, h in enumerate(d["sample_n_head"]):
            x[6 + 3 * lm + 3 * i + sp.n_head_choices.index(h)] = 1
        x[6 + 6 * lm + ("True", "False").index(d["sample_bias"])] = 1
        rows.append(x)
    with torch.no_grad():
        return net(torch.tensor(rows)).numpy()[:, 0]


@pytest.mark.parametrize("space", ["s", "m", "l"])
def test_matches_published_values_and_an_independent_forward(space):
    sp = get_space(space)
    ext = predict(space, np.stack([sp.largest().encoding(), sp.smallest().encoding()]))
    assert np.round(ext, 2).tolist() == list(PUBLISHED[space])
    archs = sp.sample(7, 1000)
    got = predict(space, sp.encode_many(archs), chunk=300)  # several chunks
    lo, hi = RANGE_1000[space]
    assert lo <= got.min() and got.max() <= hi
    np.testing.assert_allclose(got, _oracle(space, archs), rtol=2e-6)
    single = np.array([predict(space, a.encoding()[None])[0] for a in archs[:20]])
    np.testing.assert_allclose(single, got[:20], rtol=1e-6)


def test_bad_input_is_refused_with_the_field():
    with pytest.raises(PredictorError, match="invalid space: 't'"):
        predict("t", get_space("t").encode_many([get_space("t").largest()]))
    with pytest.raises(PredictorError, match="invalid encodings shape"):
        predict("s", np.zeros((2, 5), int))
    with pytest.raises(PredictorError, match="invalid encodings shape"):
        predict("s", get_space("s").largest().encoding())  # one row must be 2-D


def test_license_and_provenance_ship_with_the_weights():
    assert "Apache License" in (WEIGHTS_DIR / "LICENSE").read_text()
    assert "Apache" in (WEIGHTS_DIR / "NOTICE").read_text()
    assert PROVENANCE["source"] == "imported" and "OpenWebText" in PROVENANCE["data"]
