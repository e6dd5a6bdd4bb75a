"""HW-GPT-Bench's spaces s, m, l through the query API without a release: exact metrics, the
embedded t release's modeled devices (roofline model), HW-GPT-Bench's imported perplexity. The
package ships an ``s`` release (tests/test_s_release.py), so ``s`` is opened here on an empty
directory: what a space without a release answers."""

import numpy as np
import pytest

from benchmark import costs
from benchmark import HWGPTBenchCompat
from benchmark.api import Benchmark, QueryError
from benchmark.hwgpt_perplexity import PROVENANCE
from benchmark.paths import data_dir
from benchmark.profiling.modeled import roofline_from_provenance
from benchmark.profiling.roofline import predict
from benchmark.table import Table

PUBLISHED = {"s": (21.30, 43.02), "m": (20.69, 36.22), "l": (18.02, 30.34)}  # largest, smallest
GPU, CPU = "gpu-rtx2080", "cpu-xeon-silver-4114"


@pytest.fixture(scope="module", params=["s", "m", "l"])
def b(request, tmp_path_factory):
    return Benchmark(request.param, path=tmp_path_factory.mktemp("no-release"))


@pytest.fixture(scope="module")
def t_table():
    return Table(data_dir() / "table_t.h5")


def test_opens_with_exact_imported_and_modeled_only(b, t_table):
    assert b.table is None and not b.models.entries
    devs = b.devices()
    modeled_t = {d for d, m in t_table.devices().items() if m["source"] == "modeled"}
    assert set(devs) == modeled_t and all(v["source"] == "modeled" for v in devs.values())
    assert all("table_t.h5" in v["borrowed_from"] for v in devs.values())
    for v in devs.values():  # the t release's settings, all within the space's context of 1024
        assert v["settings"] and all(int(s.split("-s")[1].split("-")[0]) <= b.space.block_size for s in v["settings"])
    m = b.metrics()
    assert m["perplexity"]["source"] == "imported" and m["perplexity"]["provenance"] == PROVENANCE
    assert {"params", "flops", "latency_ms", "energy_mj"} <= set(m)
    assert "token_accuracy" not in m and "memory_mb" not in m


def test_exact_params_and_imported_perplexity_of_the_extremes(b):
    sp = b.space
    for arch, want in zip((sp.largest(), sp.smallest()), PUBLISHED[sp.name]):
        r = b.query(arch, metrics=["params", "params_no_embedding", "perplexity"])
        assert r["params"] == costs.params(arch.encoding()[None], space=sp)[0]
        assert r["params_no_embedding"] == costs.params(arch.encoding()[None], space=sp, embeddings=False)[0]
        assert round(r["perplexity"], 2) == want
        assert r.sources == {"params": "exact", "params_no_embedding": "exact", "perplexity": "imported"}
        assert r.intervals["perplexity"] is None and "error estimate" in r.no_interval["perplexity"]
        assert r.provenance["perplexity"]["license"].startswith("Apache-2.0")
        assert "HW-GPT-Bench" in repr(r) and r.as_dict()["perplexity"]["source"] == "imported"


@pytest.mark.parametrize("device", [GPU, CPU])
def test_modeled_device_is_the_t_release_roofline_evaluated_directly(b, t_table, device):
    arch = b.space.sample(3)
    spec, params, _ = roofline_from_provenance(device, device.split("-")[0], t_table.devices()[device]["provenance"])
    for st in b.settings(device):
        dt = t_table.setting_attrs(device, st).get("decode_tokens", 16)
        want = predict([arch], st, spec, params, dt)
        r = b.query(arch, metrics=["latency_ms", "energy_mj"], device=device, setting=st)
        assert r.sources == {"latency_ms": "modeled", "energy_mj": "modeled"}
        assert r["latency_ms"] == pytest.approx(want.latency_ms[0], rel=1e-12)
        assert r["energy_mj"] == pytest.approx(want.energy_mj[0], rel=1e-12)


def test_what_the_space_cannot_answer_is_refused_clearly(b):
    arch = b.space.largest()
    with pytest.raises(QueryError, match=r"invalid device: 'cpu-epyc-1c'; allowed: .*gpu-rtx2080.*nothing measured"):
        b.query(arch, device="cpu-epyc-1c")
    with pytest.raises(QueryError, match=r"invalid metric: 'memory_mb'; allowed: .*perplexity"):
        b.query(arch, metrics="memory_mb", device=GPU)
    with pytest.raises(QueryError, match=r"invalid metric: 'token_accuracy'"):
        b.query(arch, metrics="token_accuracy")
    with pytest.raises(QueryError, match=r"invalid mode .*imported.*'table'"):
        b.query(arch, metrics="perplexity", mode="table")
    with pytest.raises(QueryError, match=r"invalid mode: 'table'.*no table"):
        b.query(arch, metrics="latency_ms", device=GPU, mode="table")
    other = "t" if b.space.name != "t" else "s"
    from benchmark.spaces import get_space

    with pytest.raises(QueryError, match=rf"space of architecture id 'gpt-{other}-.*': '{other}'; allowed: '{b.space.name}'"):
        b.query(get_space(other).largest().id)
    with pytest.raises(QueryError, match="has no table_.*archs="):
        b.pareto_front([("perplexity", None, None)])


def test_space_without_predictor_or_release_still_needs_one(tmp_path):
    with pytest.raises(QueryError, match=r"invalid path: .*neither is there"):
        Benchmark("t", tmp_path)


def test_batch_matches_single_queries(b):
    archs = b.space.sample(11, 1000)
    enc = b.space.encode_many(archs)
    metrics = ["perplexity", "params", "flops", "latency_ms", "energy_mj"]
    df = b.query_batch(enc, metrics=metrics, device=GPU)
    assert df.attrs["sources"] == {"perplexity": "imported", "params": "exact", "flops": "exact",
                                   "latency_ms": "modeled", "energy_mj": "modeled"}
    assert "perplexity" in df.attrs["no_interval"]
    assert df["id"].tolist() == [a.id for a in archs]
    from_ids = b.query_batch([a.id for a in archs], metrics=metrics, device=GPU, as_frame=False)
    for i in range(0, 1000, 97):
        r = b.query(archs[i], metrics=metrics, device=GPU)
        for m in metrics:
            assert df[m].iloc[i] == pytest.approx(r[m], rel=1e-6), m  # float32 MLP: batch vs one row
            assert from_ids[m][i] == df[m].iloc[i]


def test_pareto_front_over_given_candidates(b):
    enc = b.space.encode_many(b.space.sample(5, 300))
    obj = [("perplexity", None, None), ("latency_ms", GPU, None)]
    front = b.pareto_front(obj, archs=enc)
    ref = b.query_batch(enc, metrics=["perplexity", "latency_ms"], device=GPU)
    F = ref[["perplexity", "latency_ms"]].to_numpy()
    on = np.zeros(len(F), bool)
    on[front.index] = True
    for i in range(len(F)):  # a point is on the front exactly when nothing dominates it
        dominated = bool(((F <= F[i]).all(1) & (F < F[i]).any(1)).any())
        assert on[i] == (not dominated)
    assert front.attrs["sources"] == {"perplexity": "imported", f"latency_ms@{GPU}@{b.settings(GPU)[0]}": "modeled"}


def test_hwgpt_bench_compat_answers_the_space(b):
    from benchmark.hwgpt_compat import HWGPT_DEVICES

    api = HWGPTBenchCompat(b.space.name, use_supernet_surrogate=False, benchmark=b)
    arch = api.sample_arch()
    q = api.query(metric=["latencies", "params"])
    assert q["params"] == b.query(arch, metrics="params")["params"] and "perplexity" not in q
    assert api.query(metric="perplexity") == {"perplexity": b.query(arch, metrics="perplexity")["perplexity"]}
    assert api.sources == {"perplexity": "imported"}
    assert set(q["latencies"]) == set(api.device_list) and api.device_list[:13] == list(HWGPT_DEVICES)
    want = b.query(arch, metrics=["latency_ms", "energy_mj"], device=GPU)
    assert api.query(device="rtx2080") == {"latencies": {"rtx2080": want["latency_ms"]},
                                           "energies": {"rtx2080": want["energy_mj"] / 3.6e6}}  # mJ -> Wh
    assert api.metrics == ["perplexity"] and HWGPTBenchCompat(b.space.name).use_supernet_surrogate is False

@pytest.mark.parametrize("space", ["m", "l"])
def test_embedded_default_verifies_the_borrowed_release_but_has_no_manifest_of_its_own(space):
    t = Benchmark("t")
    b = Benchmark(space)
    assert t.manifest is not None and t.manifest["space"] == "t"
    assert b.manifest is None  # the t release's manifest does not describe this space
    assert set(b.devices()) == {d for d, m in t.devices().items() if m["source"] == "modeled"}


@pytest.mark.parametrize("space", ["t", "s", "m", "l"])
def test_weight_and_kv_cache_bytes_are_exact_at_the_setting(space):
    b = Benchmark(space)
    archs = list(b.space.sample(4, n=20))
    for setting, (batch, seq, dtype, size) in {"prefill-b8-s256-fp32": (8, 256, "fp32", 4),
                                               "decode-b1-s128-fp16": (1, 128, "fp16", 2)}.items():
        df = b.query_batch(archs, metrics=["weight_bytes", "kv_cache_bytes"], setting=setting)
        assert df.attrs["units"] == {"weight_bytes": "B", "kv_cache_bytes": "B"}
        assert df.attrs["sources"] == {"weight_bytes": "exact", "kv_cache_bytes": "exact"}
        assert df["weight_bytes"].tolist() == (costs.params(archs) * size).tolist()
        heads = np.array([sum(a.n_head) for a in archs])  # an independent count: K and V of every head
        assert df["kv_cache_bytes"].tolist() == (2 * batch * seq * b.space.head_size * heads * size).tolist()
        r = b.query(archs[0], metrics="kv_cache_bytes", setting=setting)
        assert r.setting == setting and r["kv_cache_bytes"] == df["kv_cache_bytes"][0]
    r = b.query(archs[0], metrics=["params", "weight_bytes"])  # no setting: the first one flops knows, named
    assert r.setting == b.catalog.flops_settings[0] and r.units["weight_bytes"] == "B"
    assert "weight_bytes" not in b.query(archs[0], device=sorted(b.devices())[0]).units  # only when named
    with pytest.raises(QueryError, match="invalid seq_len: 4096"):
        b.query(archs[0], metrics="kv_cache_bytes", setting="prefill-b1-s4096-fp32")
