"""Cross-device figures against oracles on a synthetic table (real HDF5): known latency orders,
brute-force Pareto sets, exactly recoverable exponents; and the data card section."""

import itertools

import numpy as np
import pytest

from benchmark import crossdevice
from benchmark.datacard import write_data_card
from benchmark.errors import HwlmError
from benchmark.spaces import get_space
from benchmark.table import Table, TableWriter


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    sp = get_space("t")
    archs = list(sp.sample(3, 60))
    rng = np.random.default_rng(0)
    ppl = rng.uniform(50, 100, len(archs))
    base = np.array([a.n_layer * a.embed_dim ** 2 * np.mean(a.n_head) ** 0.5 for a in archs], float)
    lat = {"dev-a": base * 1e-4, "dev-b": 1e-3 / base, "dev-c": rng.uniform(1, 2, len(archs))}
    path = tmp_path_factory.mktemp("x") / "t.h5"
    with TableWriter(path, "t") as w:
        w.declare_metric("perplexity", unit="1", source="measured")
        for d, dtype in (("dev-a", "fp32"), ("dev-b", "fp16"), ("dev-c", "fp32")):
            w.declare_device(d, source="measured" if d != "dev-b" else "modeled", provenance={})
            w.declare_setting(d, f"prefill-b1-s64-{dtype}")
            w.declare_hardware_metric(d, f"prefill-b1-s64-{dtype}", "latency_ms", unit="ms", repeats=2)
        for i, a in enumerate(archs):
            hw = {(d, f"prefill-b1-s64-{'fp16' if d == 'dev-b' else 'fp32'}", "latency_ms"): [v[i], v[i]]
                  for d, v in lat.items()}
            w.append(a, metrics={"perplexity": ppl[i]}, hardware=hw)
    return path, archs, ppl, lat


def _brute_pareto(p, l):
    return {i for i in range(len(p)) if not any(p[j] <= p[i] and l[j] <= l[i] and (p[j] < p[i] or l[j] < l[i])
                                                 for j in range(len(p)))}


def test_rank_agreement_matches_known_orders(table):
    path, archs, ppl, lat = table
    t = Table(path)
    assert crossdevice.shapes(t) == ["prefill-b1-s64"]  # fp32 and fp16 settings meet at their shape
    m = crossdevice.rank_agreement(t, "prefill-b1-s64")
    i = {d: k for k, d in enumerate(m.devices)}
    assert m.values[i["dev-a"], i["dev-b"]] == pytest.approx(-1)  # one is the inverse of the other
    assert np.allclose(np.diag(m.values), 1) and (m.rows == len(archs)).all()
    with pytest.raises(HwlmError, match="invalid shape"):
        crossdevice.device_latencies(t, "decode-b1-s8")


def test_pareto_overlap_matches_brute_force(table):
    path, archs, ppl, lat = table
    ov = crossdevice.pareto_overlap(Table(path), "prefill-b1-s64")
    for (ia, a), (ib, b) in itertools.product(enumerate(ov.devices), repeat=2):
        fa, fb = _brute_pareto(ppl, lat[a]), _brute_pareto(ppl, lat[b])
        assert ov.values[ia, ib] == pytest.approx(1.0 if a == b else len(fa & fb) / len(fa))


def test_elasticities_recover_the_exponents(table):
    path, *_ = table
    e = crossdevice.elasticities(Table(path), "prefill-b1-s64")["dev-a"]
    assert e["n_layer"] == pytest.approx(1, abs=1e-9) and e["embed_dim"] == pytest.approx(2, abs=1e-9)
    assert e["mean_heads"] == pytest.approx(0.5, abs=1e-9) and e["mean_mlp_ratio"] == pytest.approx(0, abs=1e-9)
    assert e["r2"] == pytest.approx(1)


def test_data_card_has_the_across_devices_section(table, tmp_path):
    path, *_ = table
    md = write_data_card(path, tmp_path / "card.md").read_text()
    assert "## Across devices" in md and "Pareto-front overlap" in md and "| `dev-b` | modeled |" in md
    assert (tmp_path / "card_rank_agreement.png").stat().st_size > 0
