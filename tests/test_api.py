"""The query API against a real table and real surrogates (tests/hwtable.py: synthetic hardware values)."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from benchmark import Benchmark, QueryError, costs
from benchmark import HWGPTBenchCompat
from benchmark.spaces import get_space
from hwtable import CPU, DECODE, DECODE_TOKENS, ENERGY_REASON, GPU, GPU_SETTING, PREFILL, shared_release

T = get_space("t")


@pytest.fixture(scope="module")
def rel(tmp_path_factory):
    return shared_release(tmp_path_factory)


@pytest.fixture(scope="module")
def b(rel):
    return Benchmark("t", rel["path"])


@pytest.fixture(scope="module")
def raw(rel):
    """The table read with plain h5py, as a check independent of the package."""
    with h5py.File(rel["path"] / "table_t.h5", "r") as f:
        ids = f["archs/id"].asstr()[()].tolist()
        return {"row": {a: i for i, a in enumerate(ids)},
                "lat": f[f"hardware/{CPU}/{PREFILL}/latency_ms"][()],
                "lat_decode": f[f"hardware/{CPU}/{DECODE}/latency_ms"][()],
                "mem": f[f"hardware/{CPU}/{PREFILL}/memory_mb"][()],
                "gpu_lat": f[f"hardware/{GPU}/{GPU_SETTING}/latency_ms"][()],
                "ppl": f["metrics/perplexity"][()],
                "flops": {s: f[f"metrics/flops_{s}"][()] for s in (PREFILL, DECODE, GPU_SETTING)}}


# ---------------------------------------------------------------------------- vocabulary
def test_vocabulary(b):
    assert b.space.name == "t" and len(b.table) == 200
    d = b.devices()
    assert d[CPU] == {"source": "measured", "kind": "cpu", "settings": [PREFILL, DECODE]}
    assert d[GPU] == {"source": "modeled", "kind": "gpu", "settings": [GPU_SETTING]}
    m = b.metrics()
    assert m["perplexity"] == {"unit": "1", "source": "measured", "needs_device": False, "needs_setting": False}
    assert m["flops"] == {"unit": "FLOPs", "source": "exact", "needs_device": False, "needs_setting": True}
    assert m["params"]["source"] == "exact" and m["params_no_embedding"]["unit"] == "1"
    assert m["latency_ms"]["unit"] == "ms" and m["latency_ms"]["needs_device"] and m["latency_ms"]["needs_setting"]
    assert m["memory_mb"] == {"unit": "MB", "source": "measured", "needs_device": True, "needs_setting": True}
    assert m["energy_mj"]["unit"] == "mJ"
    assert not any(k.startswith("flops_") for k in m)
    assert b.settings(CPU)[0] == PREFILL  # the default: prefill first


def test_import_benchmark_stays_light():
    code = "import benchmark, sys; print('pandas' in sys.modules, 'xgboost' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_the_command_line_parser_imports_no_heavy_library():
    # every `hwlm` call builds the whole parser: torch alone would add ~1.5 s to `hwlm --help`
    code = ("import sys, benchmark.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'xgboost', 'pandas', 'transformers', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- table values
def test_table_values_are_medians_of_stored_repeats(b, rel, raw):
    for a in rel["archs"][:10]:
        i = raw["row"][a.id]
        r = b.query(a, device=CPU)
        assert r.in_table and r.arch == a.id and r.setting == PREFILL and r.device == CPU
        assert r["latency_ms"] == np.median(raw["lat"][i]) and r.sources["latency_ms"] == "measured"
        assert r["memory_mb"] == raw["mem"][i, 0] and r.units["memory_mb"] == "MB"
        assert r["perplexity"] == raw["ppl"][i] and r.sources["perplexity"] == "measured"
        assert r["params"] == costs.params(a) and r.sources["params"] == "exact" and r.units["params"] == "1"
        assert r["flops"] == raw["flops"][PREFILL][i] and r.units["flops"] == "FLOPs"
        lo, hi = r.intervals["latency_ms"]
        assert lo <= r["latency_ms"] <= hi
        d = b.query(a, metrics=["latency_ms", "flops"], device=CPU, setting=DECODE)
        assert d["latency_ms"] == np.median(raw["lat_decode"][i])
        assert d["flops"] == raw["flops"][DECODE][i]  # exact, with the table's decode_tokens
        g = b.query(a, metrics="latency_ms", device=GPU)  # the device's only setting
        assert g.setting == GPU_SETTING and g["latency_ms"] == raw["gpu_lat"][i, 0]
        assert g.sources["latency_ms"] == "modeled"  # never labelled measured


def test_repeats_are_returned_on_request(b, rel, raw):
    a = rel["archs"][3]
    r = b.query(a, metrics=["latency_ms"], device=CPU, repeats=True)
    assert np.array_equal(r.repeats["latency_ms"], raw["lat"][raw["row"][a.id]])
    assert b.query(a, metrics=["latency_ms"], device=CPU).repeats == {}


def test_missing_energy_is_reported_with_its_reason(b, rel):
    for arch, mode in ((rel["archs"][0], "auto"), (rel["extra"][0], "auto"), (rel["archs"][0], "surrogate")):
        r = b.query(arch, device=CPU, mode=mode)
        assert np.isnan(r["energy_mj"]) and r.sources["energy_mj"] == "missing"
        assert r.missing == {"energy_mj": ENERGY_REASON}
    assert np.isfinite(b.query(rel["archs"][0], metrics=["energy_mj"], device=GPU)["energy_mj"])


# ---------------------------------------------------------------------------- modes
def test_auto_switches_to_the_surrogate_for_unprofiled_architectures(b, rel):
    a = rel["extra"][0]
    assert a.id not in b.table
    r = b.query(a, device=CPU)
    assert not r.in_table
    assert r.sources["latency_ms"] == r.sources["perplexity"] == r.sources["memory_mb"] == "surrogate"
    assert r.target_sources["latency_ms"] == "measured"
    assert r.sources["params"] == r.sources["flops"] == "exact" and r["params"] == costs.params(a)
    lo, hi = r.intervals["latency_ms"]
    assert 0 < lo <= r["latency_ms"] <= hi and lo < hi  # the interval is centred on the point (its median)
    g = b.query(a, metrics=["latency_ms"], device=GPU)  # a modeled device: its roofline model, exactly
    assert g.sources["latency_ms"] == "modeled" and "latency_ms" not in g.target_sources
    d = b.query(a, device=CPU, setting=DECODE)  # exact FLOPs per generated token, the table's decode_tokens
    assert d["flops"] == np.mean([costs.flops_decode(a, 1, 128 + j) for j in range(DECODE_TOKENS)])
    assert d["params_no_embedding"] == costs.params(a, embeddings=False)


def test_surrogate_perplexity_has_a_conformal_interval_from_held_out_residuals(b, rel, raw):
    """A surrogate without a quantile model (perplexity: one value per architecture) gets its 90 %
    interval from its residuals on the architectures held out at fit time: it contains the point,
    and covers the held-out architectures' stored values at the promised rate."""
    from surrogates.fit import split_rows

    s = b.surrogate("perplexity")
    assert not s.noisy
    r = b.query(rel["extra"][0], metrics=["perplexity"])
    lo, hi = r.intervals["perplexity"]
    assert lo < r["perplexity"] < hi
    meta = s.meta
    _, test = split_rows(len(b.table), meta["split_seed"], meta["test_fraction"])
    df = b.query_batch(np.asarray(b.table.encodings)[test], metrics=["perplexity"], mode="surrogate")
    lo, hi = df.attrs["intervals"]["perplexity"]
    truth = raw["ppl"][test]
    assert np.mean((lo <= truth) & (truth <= hi)) >= 0.9
    assert b.query(rel["extra"][0], metrics=["perplexity"], intervals=False).intervals == {}


def test_surrogate_mode_predicts_close_to_the_table(b, rel, raw):
    archs = rel["archs"][:40]
    df = b.query_batch(archs, metrics=["latency_ms", "perplexity"], device=CPU, mode="surrogate")
    assert df.attrs["sources"] == {"latency_ms": "surrogate", "perplexity": "surrogate"}
    rows = [raw["row"][a.id] for a in archs]
    med = np.median(raw["lat"][rows], axis=1)
    assert np.median(np.abs(df["latency_ms"].to_numpy() / med - 1)) < 0.1
    assert np.median(np.abs(df["perplexity"].to_numpy() / raw["ppl"][rows] - 1)) < 0.05


def test_intervals_off_gives_the_same_values_without_intervals(b, rel):
    """``intervals=False`` (what the MOO loop asks for) changes no value, only drops the intervals,
    for table rows and surrogate rows, single and batched; noise still draws from the quantiles."""
    archs = rel["archs"][:5] + rel["extra"][:5]
    kw = dict(metrics=["latency_ms", "perplexity", "memory_mb"], device=CPU)
    full = b.query_batch(archs, as_frame=False, **kw)
    lean = b.query_batch(archs, as_frame=False, intervals=False, **kw)
    for m in kw["metrics"]:
        np.testing.assert_array_equal(lean[m], full[m])
    assert lean["intervals"] == {} and "latency_ms" in full["intervals"]
    lo, hi = full["intervals"]["latency_ms"]
    assert (lo <= full["latency_ms"]).all() and (full["latency_ms"] <= hi).all()
    for a in (rel["archs"][0], rel["extra"][0]):
        one = b.query(a, intervals=False, **kw)
        assert one.value == b.query(a, **kw).value and one.intervals == {}
    noisy = dict(kw, noise=True, seed=4)
    assert b.query(rel["extra"][0], intervals=False, **noisy).value == b.query(rel["extra"][0], **noisy).value
    with pytest.raises(QueryError, match="intervals"):
        b.query(archs[0], intervals="no", **kw)


def _assert_same_output(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k, w in want.items():
        g = got[k]
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype, k
            np.testing.assert_array_equal(g, w, err_msg=k)
        elif k in ("row_sources", "intervals"):
            assert g.keys() == w.keys(), k
            for m in w:
                np.testing.assert_array_equal(np.asarray(g[m]), np.asarray(w[m]), err_msg=f"{k}[{m}]")
        else:
            assert g == w, k


def test_batches_and_single_queries_run_one_plan(b, rel):
    """A NAS loop's call (an encoding matrix, ``as_frame=False, intervals=False``), the same batch
    given as ids, and one ``query`` per architecture go through one plan and one executor: the same
    values, sources and targets, row by row, whichever rows the table holds (mixed batches too)."""
    tab, new = T.encode_many(rel["archs"][:7]), T.encode_many(rel["extra"][:7])
    mixed = np.concatenate([tab[:3], new[:4]])
    cases = [(["latency_ms", "perplexity"], CPU, None), (["perplexity", "params", "flops", "latency_ms"], CPU, DECODE),
             (["energy_mj", "memory_mb", "params_no_embedding"], CPU, None), (["latency_ms", "flops"], GPU, None),
             (["energy_mj", "perplexity", "latency_ms"], GPU, None),
             (["perplexity", "params"], None, None), (["flops", "token_accuracy"], None, GPU_SETTING),
             (None, CPU, None)]
    for metrics, device, setting in cases:
        for enc in (tab, new, new[:1], new.astype(np.int64), mixed):
            ids = [T.decode(e).id for e in enc]
            for mode in ("auto", "surrogate"):
                kw = dict(metrics=metrics, device=device, setting=setting, mode=mode)
                got = b.query_batch(enc, as_frame=False, intervals=False, **kw)
                _assert_same_output(got, b.query_batch(ids, as_frame=False, intervals=False, **kw))
                for i, aid in enumerate(ids):
                    one = b.query(aid, intervals=False, **kw)
                    for m, v in one.items():
                        assert np.array_equal(got[m][i], v, equal_nan=True), (m, aid, mode)
                        src = got["row_sources"][m][i] if m in got["row_sources"] else got["source"][m]
                        assert src == one.sources[m], (m, aid, mode)
    assert (b.query_batch(new, metrics=["perplexity"], as_frame=False, intervals=False)["perplexity"]
            == b.query_batch(list(rel["extra"][:7]), metrics=["perplexity"])["perplexity"].to_numpy()).all()
    bad = new.copy()
    bad[1, 0] = 9  # not an embed_dim index
    with pytest.raises(QueryError, match="row 1 of 7.*embed_dim"):
        b.query_batch(bad, metrics=["perplexity"], as_frame=False, intervals=False)


def _roofline(archs):
    """What hwtable stored for the modeled GPU: the roofline model with the H100 spec and GPU defaults."""
    from benchmark.profiling.devices import get_device
    from benchmark.profiling.roofline import DEFAULT_PARAMS, predict

    return predict(archs, GPU_SETTING, get_device("gpu-h100-sxm5-80gb"), DEFAULT_PARAMS["gpu"])


def test_modeled_device_is_answered_by_its_roofline_model(b, rel, raw):
    """A modeled device's latency and energy are a deterministic function of the architecture: the
    API evaluates that model (parameters and spec from the table's provenance) for any architecture,
    source ``modeled``, no interval, never noised; on the table's rows it reproduces the stored values."""
    tab = T.encode_many(rel["archs"])
    rows = [raw["row"][a.id] for a in rel["archs"]]
    with h5py.File(rel["path"] / "table_t.h5", "r") as f:
        gpu_energy = f[f"hardware/{GPU}/{GPU_SETTING}/energy_mj"][()][rows, 0]
    for mode in ("surrogate", "auto"):
        out = b.query_batch(tab, metrics=["latency_ms", "energy_mj"], device=GPU, mode=mode, as_frame=False)
        assert out["source"] == {"latency_ms": "modeled", "energy_mj": "modeled"} and out["intervals"] == {
            "latency_ms": None, "energy_mj": None}
        np.testing.assert_allclose(out["latency_ms"], raw["gpu_lat"][rows, 0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(out["energy_mj"], gpu_energy, rtol=1e-12, atol=0)
    extra = rel["extra"]
    want = _roofline(extra)
    df = b.query_batch(extra, metrics=["latency_ms", "energy_mj", "perplexity"], device=GPU)
    assert df.attrs["sources"] == {"latency_ms": "modeled", "energy_mj": "modeled", "perplexity": "surrogate"}
    assert "latency_ms" not in df.attrs["target_sources"] and not df.attrs["in_table"].any()
    np.testing.assert_allclose(df["latency_ms"], want.latency_ms, rtol=1e-12, atol=0)
    np.testing.assert_allclose(df["energy_mj"], want.energy_mj, rtol=1e-12, atol=0)
    mixed = rel["archs"][:3] + extra[:3]  # table rows keep the table's value; one source, "modeled"
    m = b.query_batch(mixed, metrics=["latency_ms"], device=GPU)
    assert m.attrs["sources"] == {"latency_ms": "modeled"} and m.attrs["in_table"].tolist() == [True] * 3 + [False] * 3
    assert m["latency_ms"].tolist()[:3] == [raw["gpu_lat"][raw["row"][a.id], 0] for a in rel["archs"][:3]]
    r = b.query(extra[0], device=GPU)
    assert r.sources["latency_ms"] == r.sources["energy_mj"] == "modeled" and not r.in_table
    assert r.intervals["latency_ms"] is None and r.as_dict()["energy_mj"]["interval"] is None
    assert r["latency_ms"] == df["latency_ms"].iloc[0] and r["energy_mj"] == df["energy_mj"].iloc[0]
    assert b.query(extra[0], device=GPU, mode="surrogate").value == r.value  # the model is the prediction
    noisy = b.query(extra[0], device=GPU, noise=True, seed=3)  # deterministic: noise leaves it unchanged
    assert noisy["latency_ms"] == r["latency_ms"] and noisy["energy_mj"] == r["energy_mj"]
    with pytest.raises(QueryError, match=f"{extra[0].id}.*mode='auto' or 'surrogate'"):
        b.query(extra[0], metrics=["latency_ms"], device=GPU, mode="table")
    with pytest.raises(QueryError, match="none was fitted|surrogate"):  # nothing was fitted for it
        b.surrogate("latency_ms", GPU, GPU_SETTING)


def test_release_with_modeled_device_surrogates_uses_the_roofline(rel, tmp_path):
    """An older release whose index still lists surrogates of a modeled device keeps working: the
    roofline model takes precedence over them."""
    from surrogates.fit import Surrogate, fit_target, split_rows, targets

    shutil.copy(rel["path"] / "table_t.h5", tmp_path / "table_t.h5")
    shutil.copytree(rel["path"] / "surrogates", tmp_path / "surrogates")
    from benchmark.table import Table

    table = Table(tmp_path / "table_t.h5")
    tg = next(t for t in targets(table) if (t.metric, t.device, t.setting) == ("latency_ms", GPU, GPU_SETTING))
    train, _ = split_rows(len(table), 0, 0.2)
    from hwtable import TEST_CANDIDATES

    s = fit_target("t", np.asarray(table.encodings), tg, train, table_sha256=table.sha256(), split_seed=0, seed=0,
                   nthread=1, candidates=TEST_CANDIDATES[:1])
    sdir = tmp_path / "surrogates" / "t"
    s.save(sdir)
    idx = json.loads((sdir / "index.json").read_text())
    idx["models"].append({"metric": "latency_ms", "device": GPU, "setting": GPU_SETTING, "stem": s.stem, "unit": "ms",
                          "target_source": "modeled", "noisy": False, "device_source": "modeled",
                          "device_kind": "gpu", "decode_tokens": DECODE_TOKENS, "transform": "log"})
    del idx["roofline"]  # as an index written before modeled devices were evaluated directly
    (sdir / "index.json").write_text(json.dumps(idx))
    bl = Benchmark("t", tmp_path)
    assert isinstance(bl.surrogate("latency_ms", GPU, GPU_SETTING), Surrogate)  # still loadable
    a = rel["extra"][0]
    r = bl.query(a, metrics=["latency_ms"], device=GPU)
    assert r.sources["latency_ms"] == "modeled" and r["latency_ms"] == pytest.approx(_roofline([a]).latency_ms[0],
                                                                                      rel=1e-12)


def test_table_mode_refuses_unprofiled_architectures(b, rel):
    a = rel["extra"][1]
    with pytest.raises(QueryError, match=f"{a.id}.*mode='auto' or 'surrogate'"):
        b.query(a, metrics=["latency_ms"], device=CPU, mode="table")
    with pytest.raises(QueryError, match=a.id):
        b.query_batch([rel["archs"][0], a], metrics=["perplexity"], mode="table")
    # exact metrics need no table
    assert b.query(a, metrics=["params"], mode="table")["params"] == costs.params(a)


# ---------------------------------------------------------------------------- noise
def test_noise_is_seeded_and_reproducible(b, rel, raw):
    a, u = rel["archs"][5], rel["extra"][2]
    kw = dict(metrics=["latency_ms", "perplexity"], device=CPU, noise=True)
    r1, r2, r3 = (b.query(a, seed=s, **kw) for s in (7, 7, 8))
    assert r1.value == r2.value
    assert r1["latency_ms"] in raw["lat"][raw["row"][a.id]]  # a stored repeat
    assert r1["perplexity"] == b.query(a, metrics=["perplexity"])["perplexity"]  # one value: never noised
    draws = {b.query(a, seed=s, **kw)["latency_ms"] for s in range(20)}
    assert len(draws) > 1
    s1, s2 = b.query(u, seed=3, **kw), b.query(u, seed=3, **kw)
    assert s1.value == s2.value and s1.sources["latency_ms"] == "surrogate"
    sd = [b.query(u, seed=s, **kw)["latency_ms"] for s in range(30)]
    lo, hi = b.query(u, **{**kw, "noise": False}).intervals["latency_ms"]
    assert len(set(sd)) > 1 and np.mean([lo <= x <= hi for x in sd]) > 0.6
    base = b.query(u, metrics=["latency_ms"], device=CPU)
    assert base.value == b.query(u, metrics=["latency_ms"], device=CPU).value  # default: deterministic
    f1 = b.query_batch(rel["extra"], metrics=["latency_ms"], device=CPU, noise=True, seed=1)
    f2 = b.query_batch(rel["extra"], metrics=["latency_ms"], device=CPU, noise=True, seed=1)
    assert f1.equals(f2)


# ---------------------------------------------------------------------------- batches and input forms
def test_query_batch_equals_looping_query(b, rel):
    archs = rel["archs"][:6] + rel["extra"][:6]
    for device, setting in ((CPU, None), (CPU, DECODE), (GPU, None)):
        df = b.query_batch(archs, device=device, setting=setting)
        assert list(df.columns) == ["id"] + list(b.query(archs[0], device=device, setting=setting).value)
        assert df["id"].tolist() == [a.id for a in archs]
        for i, a in enumerate(archs):
            r = b.query(a, device=device, setting=setting)
            for m, v in r.items():
                assert v == df[m].iloc[i] or (np.isnan(v) and np.isnan(df[m].iloc[i])), (m, i)
                src = df.attrs["row_sources"][m][i] if df.attrs["sources"][m] == "mixed" else df.attrs["sources"][m]
                assert src == r.sources[m]
            assert df.attrs["units"] == r.units
    assert df.attrs["in_table"].tolist() == [True] * 6 + [False] * 6


def test_input_forms_agree(b, rel):
    archs = rel["archs"][:5] + rel["extra"][:5]
    ref = b.query_batch(archs, device=CPU)
    enc = T.encode_many(archs)
    for form in (enc, enc.astype(np.int64), [a.id for a in archs], [a.to_hwgpt_dict() for a in archs],
                 np.array([a.id for a in archs])):
        assert b.query_batch(form, device=CPU).equals(ref)
    d = b.query_batch(enc, device=CPU, as_frame=False)
    metrics = [c for c in ref.columns if c != "id"]
    assert set(metrics) <= set(d) and "id" not in d and d["source"] == ref.attrs["sources"]
    assert d["units"] == ref.attrs["units"]
    assert all(np.array_equal(d[c], ref[c].to_numpy(), equal_nan=True) for c in metrics)
    hw = archs[7].to_hwgpt_dict()
    hw["sample_n_head"] = list(hw["sample_n_head"]) + [2, 2]  # HW-GPT-Bench pads per-layer lists
    assert _same(b.query(hw, device=CPU), b.query(archs[7].id, device=CPU))
    assert _same(b.query(enc[7], device=CPU), b.query(archs[7], device=CPU))
    assert len(b.query_batch(np.zeros((0, T.encoding_length), np.int8), device=CPU)) == 0


def _same(r1, r2) -> bool:
    return list(r1) == list(r2) and np.array_equal(list(r1.values()), list(r2.values()), equal_nan=True)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, match", [
    (lambda b, a: b.query("gpt-t-9-64-2-2-True"), r"n_layer.*\[4, 5, 6\]"),
    (lambda b, a: b.query("not-an-id"), "architecture id"),
    (lambda b, a: b.query({"sample_embed_dim": 64}), "HW-GPT-Bench dict keys"),
    (lambda b, a: b.query(np.zeros(3, np.int8)), "encoding"),
    (lambda b, a: b.query(a, metrics=["latency"], device=CPU), r"metric: 'latency'.*latency_ms"),
    (lambda b, a: b.query(a, metrics=["latency_ms"]), r"device \(metric 'latency_ms'.*cpu-test-2c"),
    (lambda b, a: b.query(a, device="tpu"), r"device: 'tpu'.*cpu-test-2c.*gpu-model"),
    (lambda b, a: b.query(a, device=CPU, setting="prefill-b2-s256-fp32"), r"setting of device.*prefill-b1-s256"),
    (lambda b, a: b.query(a, metrics=["memory_mb"], device=GPU), r"memory_mb.*\['energy_mj', 'latency_ms'\]"),
    (lambda b, a: b.query(a, mode="exact"), r"mode.*\['auto', 'table', 'surrogate'\]"),
    (lambda b, a: b.query(a, noise="yes"), "noise"),
    (lambda b, a: b.query(a, metrics=["flops"], setting="prefill-b1-s999-fp32"), "setting"),
    (lambda b, a: b.query(a, metrics=["flops"], setting="fast"), "setting"),
    (lambda b, a: b.query(a, metrics=42), "metrics"),
    (lambda b, a: b.query_batch(np.zeros((2, 4), np.int8)), r"encoding width.*15"),
    (lambda b, a: b.query_batch(np.full((1, 15), 9, np.int8)), "encoding row 0"),
    (lambda b, a: b.query_batch(np.zeros((2, 15))), "encoding dtype"),
    (lambda b, a: b.query_batch(np.full((1, 15), 5, np.int8), metrics=["energy_mj"], device=CPU), "encoding row 0"),
    (lambda b, a: b.query_batch("gpt-t"), "sequence of architectures"),
    (lambda b, a: b.query_batch([a, "bad"]), "architecture 1 of 2"),
    (lambda b, a: b.pareto_front([("latency_ms", None, None)]), "device"),
    (lambda b, a: b.pareto_front([("energy_mj", CPU, None)]), "missing"),
    (lambda b, a: b.pareto_front(["perplexity"]), "triple"),
    (lambda b, a: Benchmark("x"), r"space.*\['l', 'm', 's', 't'\]"),
])
def test_bad_input_raises_query_error(b, rel, call, match):
    with pytest.raises(QueryError, match=match):
        call(b, rel["archs"][0])


def test_missing_surrogate_is_a_query_error(rel, tmp_path):
    shutil.copy(rel["path"] / "table_t.h5", tmp_path / "table_t.h5")  # a release with a table only
    bt = Benchmark("t", tmp_path)
    a, u = rel["archs"][0], rel["extra"][0]
    assert bt.query(a, device=CPU).sources["latency_ms"] == "measured"
    with pytest.raises(QueryError, match="surrogate.*latency_ms@cpu-test-2c@prefill-b1-s256-fp32.*hwlm fit"):
        bt.query(u, metrics=["latency_ms"], device=CPU)
    (tmp_path / "empty").mkdir()
    with pytest.raises(QueryError, match="neither is there"):
        Benchmark("t", tmp_path / "empty")
    with pytest.raises(QueryError, match="invalid path: .*nothing'; allowed: an existing release directory"):
        Benchmark("t", tmp_path / "nothing")  # a typo: not opened as an empty release


def test_surrogates_of_another_table_warn(rel, tmp_path):
    shutil.copytree(rel["path"] / "surrogates", tmp_path / "surrogates")
    from hwtable import build_table

    build_table(tmp_path / "table_t.h5", n_table=30, n_extra=0, seed=5)  # a different table
    with pytest.warns(UserWarning, match="fitted on table sha256"):
        Benchmark("t", tmp_path).query(rel["extra"][0], metrics=["perplexity"])


def test_release_without_table_serves_surrogates(rel, tmp_path):
    shutil.copytree(rel["path"] / "surrogates", tmp_path / "surrogates")
    bs = Benchmark("t", tmp_path)
    assert bs.table is None and bs.devices() == Benchmark("t", rel["path"]).devices()
    a = rel["archs"][0]
    r = bs.query(a, device=CPU)
    assert r.sources["latency_ms"] == "surrogate" and r.sources["energy_mj"] == "missing"
    g = bs.query(rel["extra"][0], device=GPU)  # the modeled device's model, from the index's roofline entry
    assert g.sources["latency_ms"] == g.sources["energy_mj"] == "modeled"
    assert g["latency_ms"] == Benchmark("t", rel["path"]).query(rel["extra"][0], device=GPU)["latency_ms"]
    with pytest.raises(QueryError, match="has no table"):
        bs.query(a, metrics=["latency_ms"], device=CPU, mode="table")
    with pytest.raises(QueryError, match="no table"):
        bs.pareto_front([("perplexity", None, None), ("params", None, None)])


# ---------------------------------------------------------------------------- Pareto front
def test_pareto_front_is_the_non_dominated_table_rows(b, raw):
    objs = [("perplexity", None, None), ("latency_ms", CPU, None), ("params", None, None)]
    df = b.pareto_front(objs)
    cols = ["perplexity", f"latency_ms@{CPU}@{PREFILL}", "params"]
    assert list(df.columns) == ["id"] + cols and df.attrs["sources"][cols[1]] == "measured"
    F = np.stack([raw["ppl"], np.median(raw["lat"], axis=1), costs.params(T.encode_many(
        [T.from_id(i) for i in sorted(raw["row"], key=raw["row"].get)]), space=T)], 1)
    front = df[cols].to_numpy()
    for f in front:  # nothing in the table dominates a front member
        assert not ((F <= f).all(1) & (F < f).any(1)).any()
    others = np.setdiff1d(np.arange(len(F)), df.index.to_numpy())
    for i in others:  # every other row is dominated by a front member
        assert ((front <= F[i]).all(1) & (front < F[i]).any(1)).any()
    acc = b.pareto_front([("token_accuracy", None, None), ("params", None, None)])
    assert (acc["token_accuracy"] > 0).all()  # reported as is, maximised internally
    assert acc["token_accuracy"].max() == b.table.metric("token_accuracy").max()


# ---------------------------------------------------------------------------- HW-GPT-Bench compatibility
def test_hwgpt_bench_compat(rel):
    api = HWGPTBenchCompat("t", base_path=rel["path"], seed=0)
    arch = api.sample_arch()
    assert set(arch) == {"sample_embed_dim", "sample_n_layer", "sample_mlp_ratio", "sample_n_head", "sample_bias"}
    assert HWGPTBenchCompat("t", base_path=rel["path"], seed=0).sample_arch() == arch
    api.config = None
    with pytest.raises(QueryError, match="set_arch"):
        api.query()
    api.set_arch(rel["archs"][0].to_hwgpt_dict())
    with pytest.warns(UserWarning, match="float16_memory"):
        res = api.query()
    b = Benchmark("t", rel["path"])
    r = b.query(rel["archs"][0], device=CPU)
    assert res["perplexity"] == r["perplexity"] and res["accuracy"] == r["token_accuracy"]
    assert res["params"] == r["params"] and api.sources["perplexity"] == r.sources["perplexity"]
    assert res["latencies"][CPU] == r["latency_ms"] and set(res["latencies"]) == {CPU, GPU}
    gpu = b.query(rel["archs"][0], device=GPU)
    got = api.query(metric="latencies", device=GPU)
    assert got["latencies"] == {GPU: gpu["latency_ms"]} and got["perplexity"] == r["perplexity"]
    assert HWGPTBenchCompat("t", False, rel["path"]).set_arch(arch) is None
    # no HW-GPT-Bench device in this release: a clear error listing what it has
    with pytest.raises(QueryError, match=rf"invalid device: 'a100'; allowed: one this release has: \['{CPU}', '{GPU}'\] "
                                         r"\(HW-GPT-Bench's 'a100' is 'gpu-a100-sxm4-40gb' here"):
        api.query(device="a100")
    with pytest.raises(QueryError, match="metric"):
        api.query(metric="speed")
    with pytest.raises(QueryError):
        api.set_arch({"sample_embed_dim": 1})