"""Surrogates: features, fitting, quality, save/load round trip and refusal of tampered files.

Data: tests/hwtable.py — a real HDF5 table (real writer) of 200 sampled ``t`` architectures whose
hardware values are a deterministic function of exact costs plus seeded noise (synthetic).
"""

import json
import shutil

import numpy as np
import pytest

from benchmark import costs
from benchmark.spaces import ArchitectureError, get_space
from benchmark.table import Table
from hwtable import CPU, DECODE, DECODE_TOKENS, ENERGY_REASON, GPU, GPU_SETTING, PREFILL, TEST_CANDIDATES, \
    shared_release
from surrogates.features import exact_flops, feature_names, features
from surrogates.fit import QUANTILES, Surrogate, SurrogateError, fit_target, model_stem, read_index, split_rows, \
    surrogate_dir, targets
from surrogates.model import architecture_features
from surrogates.report import write_report

T = get_space("t")


@pytest.fixture(scope="module")
def rel(tmp_path_factory):
    return shared_release(tmp_path_factory)


@pytest.fixture(scope="module")
def sdir(rel):
    return surrogate_dir(rel["path"], "t")


# ---------------------------------------------------------------------------- features
def test_features_match_exact_costs():
    archs = T.sample(3, n=20)
    enc = T.encode_many(archs)
    X = features(T, enc, PREFILL)
    names = feature_names(T, PREFILL)
    assert X.shape == (20, len(names)) and len(set(names)) == len(names)
    col = {n: X[:, i] for i, n in enumerate(names)}
    assert np.array_equal(col["params"], costs.params(archs).astype(float))
    assert np.array_equal(col["flops_setting"], costs.flops_prefill(archs, 1, 256).astype(float))
    assert np.array_equal(col["total_heads"], [sum(a.n_head) for a in archs])
    assert np.array_equal(col["mlp_hidden"], [sum(a.mlp_ratio) * a.embed_dim for a in archs])
    a = archs[0]
    assert col["n_head_0"][0] == a.n_head[0] and col[f"n_head_{T.max_layers - 1}"][0] == (
        a.n_head[-1] if a.n_layer == T.max_layers else 0)
    assert feature_names(T) == names[:-2]  # device-independent: no setting features


def test_decode_flops_are_the_profilers_mean_over_generated_tokens():
    archs = T.sample(4, n=5)
    got = exact_flops(T, T.encode_many(archs), DECODE, decode_tokens=DECODE_TOKENS)
    want = [np.mean([costs.flops_decode([a], 1, 128 + j)[0] for j in range(DECODE_TOKENS)]) for a in archs]
    assert np.array_equal(got, want)


def test_features_refuse_invalid_encodings():
    enc = T.encode_many(T.sample(0, n=2))
    enc[1, 0] = 7
    with pytest.raises(ArchitectureError, match="row 1"):
        features(T, enc)


def test_split_is_seeded_and_disjoint():
    a, b = split_rows(100, 3, 0.2)
    assert len(b) == 20 and not set(a) & set(b) and len(a) + len(b) == 100
    a2, b2 = split_rows(100, 3, 0.2)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert not np.array_equal(b, split_rows(100, 4, 0.2)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        split_rows(10, 0, 1.5)


# ---------------------------------------------------------------------------- fitting
def test_fit_writes_models_index_and_report(rel, sdir):
    idx = read_index(sdir)
    stems = {m["stem"] for m in idx["models"]}
    assert stems == {"perplexity", "token_accuracy",
                     *(model_stem(m, CPU, s) for m in ("latency_ms", "memory_mb") for s in (PREFILL, DECODE))}
    # the modeled GPU is not fitted: the query API evaluates its roofline model directly
    assert set(idx["roofline"]) == {GPU}
    gpu = idx["roofline"][GPU]
    assert gpu["metrics"] == {GPU_SETTING: {"energy_mj": "mJ", "latency_ms": "ms"}}
    assert gpu["provenance"] == Table(rel["path"] / "table_t.h5").provenance(GPU)
    assert not list(sdir.glob(f"*@{GPU}@*"))
    for stem in stems:
        assert (sdir / f"{stem}.json").is_file() and (sdir / f"{stem}.meta.json").is_file()
    # all-NaN energy on the CPU is not fitted; it is recorded missing with the table's reason
    missing = {(m["metric"], m["device"], m["setting"]): m["reason"] for m in idx["missing"]}
    assert missing == {("energy_mj", CPU, PREFILL): ENERGY_REASON, ("energy_mj", CPU, DECODE): ENERGY_REASON}
    assert not (sdir / f"{model_stem('energy_mj', CPU, PREFILL)}.json").exists()
    # only noisy metrics (repeats > 1) have a quantile model
    noisy = {m["stem"] for m in idx["models"] if m["noisy"]}
    assert noisy == {model_stem("latency_ms", CPU, PREFILL), model_stem("latency_ms", CPU, DECODE)}
    assert all((sdir / f"{s}.quantile.json").is_file() for s in noisy)
    report = (rel["path"] / "surrogates.md").read_text()
    assert "| latency_ms | cpu-test-2c | prefill-b1-s256-fp32 |" in report and ENERGY_REASON in report
    assert "evaluated by the roofline model directly" in report and f"| {GPU} | {GPU_SETTING} |" in report
    assert (sdir / "REPORT.md").read_text() == report
    assert write_report(sdir, rel["path"] / "again.md").read_text() == report
    assert not list(sdir.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_sidecar_records_provenance(rel, sdir):
    import xgboost

    meta = json.loads((sdir / f"{model_stem('latency_ms', CPU, PREFILL)}.meta.json").read_text())
    assert meta["table_sha256"] == Table(rel["path"] / "table_t.h5").sha256()
    assert meta["xgboost_version"] == xgboost.__version__
    assert meta["feature_names"] == feature_names("t", PREFILL)
    assert meta["target_transform"] == "log" and meta["quantiles"] == list(QUANTILES)
    assert meta["split_seed"] == 0 and meta["target_source"] == "measured" and meta["unit"] == "ms"
    assert meta["hyperparameters"]["chosen"] in [dict(c) for c in TEST_CANDIDATES]
    assert len(meta["hyperparameters"]["candidates"]) == len(TEST_CANDIDATES)
    assert set(meta["files"]) == {"mean", "quantile"}
    cal = meta["interval_calibration"]  # conformal widening, out-of-fold on the training split
    assert cal["method"].startswith("split-conformal") and np.isfinite(cal["widening"]) and cal["n_scores"] > 0
    mem = json.loads((sdir / f"{model_stem('memory_mb', CPU, PREFILL)}.meta.json").read_text())
    assert mem["interval_calibration"] is None  # one stored value: no interval
    acc = json.loads((sdir / "token_accuracy.meta.json").read_text())
    assert acc["target_transform"] == "identity" and acc["device"] is None


def test_surrogates_learn_the_synthetic_costs(rel, sdir):
    q = {m["stem"]: m["quality"] for m in read_index(sdir)["models"]}
    lat = q[model_stem("latency_ms", CPU, PREFILL)]
    assert lat["kendall_tau"] > 0.7 and lat["spearman_rho"] > 0.85 and lat["mape"] < 15
    assert 0.8 <= lat["coverage_90"] <= 1.0 and lat["n_test_repeats"] > 0, lat
    assert q["perplexity"]["kendall_tau"] > 0.85 and q["perplexity"]["r2"] > 0.9
    assert q[model_stem("memory_mb", CPU, PREFILL)]["r2"] > 0.95
    for stem, v in q.items():
        hv = v["pareto"]["hv_ratio"]
        assert 0.5 < hv <= 1.0 + 1e-12, stem
        assert v["coverage_90"] is None or stem.startswith("latency_ms@cpu")
    assert q[model_stem("memory_mb", CPU, PREFILL)]["pareto"]["objectives"] == ["perplexity", "memory_mb"]


def test_save_load_round_trip_gives_identical_predictions(rel, tmp_path):
    table = Table(rel["path"] / "table_t.h5")
    target = next(t for t in targets(table) if (t.metric, t.device, t.setting) == ("latency_ms", CPU, PREFILL))
    train, _ = split_rows(len(table), 0, 0.2)
    enc = np.asarray(table.encodings)
    s = fit_target("t", enc, target, train, table_sha256=table.sha256(), split_seed=0, candidates=TEST_CANDIDATES[:1])
    probe = architecture_features(s, T.encode_many(rel["extra"]))
    for fmt in ("json", "ubj"):
        s.save(tmp_path / fmt, model_format=fmt)
        assert (tmp_path / fmt / f"{s.stem}.{fmt}").is_file()
        loaded = Surrogate.load(tmp_path / fmt, s.stem)
        assert np.array_equal(loaded.predict(probe), s.predict(probe))
        q = loaded.predict_quantiles(probe)
        assert np.array_equal(q, s.predict_quantiles(probe)) and (np.diff(q, axis=1) >= 0).all()


def test_surrogate_is_an_estimator_on_feature_matrices(rel):
    """``Surrogate(meta, hyperparameters=...).fit(X, y, repeats)`` on a feature matrix is what
    ``fit_target`` releases: the same boosters, so the same predictions and quantiles."""
    table = Table(rel["path"] / "table_t.h5")
    target = next(t for t in targets(table) if (t.metric, t.device, t.setting) == ("latency_ms", CPU, PREFILL))
    train, _ = split_rows(len(table), 0, 0.2)
    enc = np.asarray(table.encodings)
    released = fit_target("t", enc, target, train, table_sha256=table.sha256(), split_seed=0,
                          candidates=TEST_CANDIDATES[:1])
    X = features(T, enc, PREFILL)
    est = Surrogate({"metric": "latency_ms", "device": CPU, "setting": PREFILL, "space": "t",
                     "target_transform": "log"}, hyperparameters=TEST_CANDIDATES[0])
    assert est.fit(X[train], target.y[train], target.repeats[train]) is est and est.noisy
    probe = architecture_features(released, T.encode_many(rel["extra"]))
    assert np.array_equal(est.predict(probe), released.predict(probe))
    assert np.array_equal(est.predict_quantiles(probe), released.predict_quantiles(probe))
    with pytest.raises(SurrogateError, match="hyperparameters"):
        Surrogate({"metric": "perplexity", "space": "t", "target_transform": "log"}).fit(X, target.y)


def _copy(sdir, tmp_path):
    d = tmp_path / "s"
    shutil.copytree(sdir, d)
    return d


STEM = model_stem("latency_ms", CPU, PREFILL)


def test_tampered_model_file_is_refused(sdir, tmp_path):
    d = _copy(sdir, tmp_path)
    p = d / f"{STEM}.quantile.json"
    p.write_text(p.read_text().replace('"', ' "', 1))
    with pytest.raises(SurrogateError, match=r"files\.quantile\.sha256.*modified or replaced") as e:
        Surrogate.load(d, STEM)
    assert str(d / f"{STEM}.meta.json") in str(e.value)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.pop("table_sha256"), "field 'table_sha256'"),
    (lambda m: m.update(target_transform="sqrt"), r"'target_transform': 'sqrt'; allowed: \['log', 'identity'\]"),
    (lambda m: m.update(feature_names=["a"]), "field 'feature_names'.*embed_dim"),
    (lambda m: m.update(format="pickle"), "field 'format'"),
    (lambda m: m["files"]["mean"].update(path="../x.json"), r"files\.mean\.path"),
    (lambda m: m["files"]["mean"].update(sha256="0" * 64), r"files\.mean\.sha256"),
    (lambda m: m.update(format_version=99), "format_version"),
])
def test_tampered_sidecar_is_refused(sdir, tmp_path, edit, match):
    d = _copy(sdir, tmp_path)
    p = d / f"{STEM}.meta.json"
    meta = json.loads(p.read_text())
    edit(meta)
    p.write_text(json.dumps(meta))
    with pytest.raises(SurrogateError, match=match):
        Surrogate.load(d, STEM)


def test_missing_or_broken_sidecar_is_refused(sdir, tmp_path):
    d = _copy(sdir, tmp_path)
    (d / f"{STEM}.meta.json").write_text("{not json")
    with pytest.raises(SurrogateError, match="sidecar.*JSON"):
        Surrogate.load(d, STEM)
    (d / f"{STEM}.meta.json").unlink()
    with pytest.raises(SurrogateError, match="missing"):
        Surrogate.load(d, STEM)
    assert issubclass(SurrogateError, ValueError)


def test_no_pickle_in_saved_files(sdir):
    for p in sdir.iterdir():
        assert p.suffix in (".json", ".md"), p
        json.loads(p.read_text()) if p.suffix == ".json" else None


@pytest.mark.slow
def test_hwlm_fit_cli(rel, tmp_path, capsys):
    from benchmark.cli import main

    assert main(["fit", "--table", str(rel["path"] / "table_t.h5"), "--out", str(tmp_path), "--threads", "1",
                 "--quiet", "--format", "ubj"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "surrogates" / "t") in out
    assert (tmp_path / "surrogates" / "t" / "perplexity.ubj").is_file()


def test_numpy_tree_walk_is_bit_identical_to_the_booster(sdir):
    from surrogates.fastpredict import TreeEnsemble

    enc = T.encode_many(T.sample(11, n=500))
    for stem in ("perplexity", STEM, model_stem("memory_mb", CPU, DECODE)):
        s = Surrogate.load(sdir, stem)
        X = architecture_features(s, enc)
        for booster in (s.mean_booster, s.quantile_booster):
            if booster is not None:
                assert np.array_equal(TreeEnsemble(booster).predict(X), booster.inplace_predict(X))
        # few rows take the numpy walk, many the booster: the same numbers either way
        assert np.array_equal(s.predict(X[:3]), s.predict(X)[:3])
        assert np.array_equal(s.predict(X[7:8]), s.predict(X)[7:8])
        if s.noisy:
            assert np.array_equal(s.predict_quantiles(X[7:8]), s.predict_quantiles(X)[7:8])


def test_heap_walk_is_bit_identical_for_one_row_many_rows_and_missing_features(sdir):
    from surrogates.fastpredict import TreeEnsemble

    X = architecture_features(Surrogate.load(sdir, STEM), T.encode_many(T.sample(13, n=40)))
    X[5, 4] = np.nan  # a missing value follows default_left: the pointer walk, not the heap
    for stem in ("perplexity", STEM):
        s = Surrogate.load(sdir, stem)
        Xs = X[:, :len(s.meta["feature_names"])]
        for booster in (s.mean_booster, s.quantile_booster):
            if booster is None:
                continue
            e = TreeEnsemble(booster)
            assert e._heap_layout() is not None
            for rows in (Xs[:1], Xs[1:2], Xs[:5], Xs[4:6], Xs):
                want = booster.inplace_predict(rows)
                got = e.predict(rows)
                assert got.dtype == np.float32 and np.array_equal(got.reshape(want.shape), want)


def test_fast_encoding_check_accepts_exactly_the_valid_encodings():
    for name in ("t", "s"):
        sp = get_space(name)
        enc = sp.encode_many(sp.sample(5, n=300))
        assert costs.all_valid(sp, enc) and costs.all_valid(sp, enc[:0])
        rng = np.random.default_rng(2)
        for k in range(600):
            e = enc[k % 300].copy()
            e[rng.integers(sp.encoding_length)] = rng.integers(-2, 6)
            try:
                sp.decode(e)
                valid = True
            except ArchitectureError:
                valid = False
            assert costs.all_valid(sp, e[None, :]) == valid, e


def test_hypervolume_ratio_is_one_for_a_perfect_surrogate_and_less_otherwise():
    from surrogates.quality import hypervolume_ratio, quality

    rng = np.random.default_rng(0)
    t = rng.random((60, 2))
    assert hypervolume_ratio(t, t) == pytest.approx(1.0)
    assert hypervolume_ratio(t, t * 3 + 1) == pytest.approx(1.0)  # only the ranking of predictions matters
    worse = hypervolume_ratio(t, -t)  # picks the worst architectures
    assert 0 <= worse < 0.5
    q = quality(t[:, 0], t[:, 0] * 1.1, np.stack([t[:, 0] * 0.9, t[:, 0], t[:, 0] * 1.2], 1),
                np.stack([t[:, 0], t[:, 0] * 2], 1))
    assert q["kendall_tau"] == pytest.approx(1.0) and q["mape"] == pytest.approx(10.0)
    assert q["coverage_90"] == pytest.approx(0.5)  # every first repeat inside, every second outside


def test_fused_walk_of_several_models_equals_each_model(sdir):
    from surrogates.fastpredict import FusedEnsembles

    ss = [Surrogate.load(sdir, st) for st in ("perplexity", STEM, model_stem("memory_mb", CPU, PREFILL))]
    ens = [s.tree_ensemble(role) for s in ss for role in (("mean", "quantile") if s.noisy else ("mean",))]
    X = architecture_features(ss[1], T.encode_many(T.sample(12, n=20)))  # a setting's features extend the base ones
    fused = FusedEnsembles(ens)
    for i in range(len(X)):
        for e, out in zip(ens, fused.predict_one(X[i:i + 1])):
            one = e.predict(X[i:i + 1])
            assert np.array_equal(out, one) and out.shape == one.shape
