"""The values-only path (benchmark/query/fastpath.py) answers exactly what the executor answers, on
the embedded release (real table, real surrogates) and on a space without a release (``s``), with
its numpy kernels and with the compiled ones (benchmark/query/compiled.py, numba) alike."""

import sys

import numpy as np
import pytest

from benchmark import Benchmark
from benchmark.query import fastpath
from benchmark.query.fastpath import ValuesPath


@pytest.fixture(scope="module")
def b():
    return Benchmark("t")


@pytest.fixture(params=["numpy", "compiled"])
def kernels(request, monkeypatch):
    """The values-only path with the numpy kernels, then with the compiled ones (where numba is
    installed); loaded once per process, so each test sets the one it checks."""
    if request.param == "compiled":
        if not fastpath.load_compiled():
            pytest.skip("numba is not installed")
    else:
        monkeypatch.setattr(fastpath, "_COMPILED", None)
    return request.param


def _inputs(b, n_table, n_new, seed):
    """Encodings: ``n_table`` rows of the table and ``n_new`` sampled architectures, shuffled."""
    rng = np.random.default_rng(seed)
    tab = np.asarray(b.table.encodings)[rng.integers(0, len(b.table.ids), n_table)]
    new = b.space.encode_many(b.space.sample(seed, n=n_new))
    enc = np.concatenate([tab, new]).astype(np.int8)
    return enc[rng.permutation(len(enc))]


def _same(fast, ref):
    assert list(fast["values"]) == list(ref["values"])  # the plan's order (frame columns)
    for m, v in ref["values"].items():
        np.testing.assert_array_equal(fast["values"][m], v, err_msg=m)  # bit for bit, NaN where NaN
        assert fast["values"][m].dtype == v.dtype
        s, t = fast["sources"][m], ref["sources"][m]
        assert type(s) is type(t) and np.array_equal(s, t), m
    for k in ("target_sources", "intervals", "missing", "repeats", "no_interval"):
        assert fast[k] == ref[k], k
    np.testing.assert_array_equal(fast["in_table"], ref["in_table"])


def _check(b, metrics, device, mode, enc, trusted=False):
    plan = b.planner.plan(metrics, device, None)
    path = ValuesPath.compile(b.executor, plan, mode)
    assert path is not None, "the values-only path must serve this plan"
    rows, enc = b.inputs.many(enc)
    fast = path.run(rows, enc, trusted)
    assert fast is not None
    ref = b.executor.run(plan, rows, enc, mode, False, None, trusted=trusted, intervals=False)
    _same(fast, ref)
    return fast


@pytest.mark.parametrize("n_table,n_new", [(0, 1), (1, 0), (0, 4), (2, 3), (0, 200), (60, 140), (300, 0)])
@pytest.mark.parametrize("mode", ["auto", "surrogate"])
def test_measured_device_and_surrogates_bit_identical(b, n_table, n_new, mode, kernels):
    enc = _inputs(b, n_table, n_new, seed=n_table * 1000 + n_new)
    # the MOO suites' call, then every metric of the device (exact, memory) at two settings, and the
    # runtime devices (measured on half the table; memory on a subset of it, or none)
    _check(b, ["perplexity", "latency_ms"], "cpu-epyc-1c", mode, enc)
    fast = _check(b, None, "cpu-epyc-1c", mode, enc)
    assert {"latency_ms", "memory_mb", "perplexity", "params"} <= set(fast["sources"])
    for runtime in ("cpu-epyc-1c-ort-fp32", "cpu-epyc-1c-ort-int8", "cpu-epyc-1c-ov-fp32", "cpu-epyc-1c-torch-bf16"):
        _check(b, None, runtime, mode, enc)
    plan = b.planner.plan(["latency_ms", "token_accuracy", "flops"], "cpu-epyc-1c", "decode-b1-s128-fp32")
    rows, e = b.inputs.many(enc)
    _same(ValuesPath(b.executor, plan, mode).run(rows, e, False),
          b.executor.run(plan, rows, e, mode, False, None, intervals=False))


@pytest.mark.parametrize("n_table,n_new", [(0, 3), (5, 5), (40, 0)])
def test_modeled_device_bit_identical(b, n_table, n_new, kernels):
    enc = _inputs(b, n_table, n_new, seed=7)
    for mode in ("auto", "surrogate"):
        fast = _check(b, None, "gpu-a100-sxm4-40gb", mode, enc)
        assert fast["sources"]["latency_ms"] == "modeled"


def test_table_mode_serves_table_rows_and_leaves_errors_to_the_executor(b, kernels):
    enc = _inputs(b, 50, 0, seed=3)
    _check(b, ["perplexity", "latency_ms", "params"], "cpu-epyc-1c", "table", enc)
    path = ValuesPath.compile(b.executor, b.planner.plan(["latency_ms"], "cpu-epyc-1c", None), "table")
    rows, e = b.inputs.many(_inputs(b, 3, 1, seed=4))
    assert path.run(rows, e, False) is None  # an unprofiled row: the executor raises the documented error
    with pytest.raises(ValueError, match="mode='table'"):
        b.query_batch(e, metrics=["latency_ms"], device="cpu-epyc-1c", mode="table", intervals=False)


def test_invalid_encodings_are_left_to_the_executor(b):
    enc = b.space.encode_many(b.space.sample(1, n=3))
    enc[1, 0] = 9  # no such embed_dim choice
    path = ValuesPath.compile(b.executor, b.planner.plan(["latency_ms"], "cpu-epyc-1c", None), "auto")
    rows, e = b.inputs.many(enc)
    assert path.run(rows, e, False) is None
    with pytest.raises(ValueError, match="embed_dim"):
        b.query_batch(enc, metrics=["latency_ms"], device="cpu-epyc-1c", intervals=False)


def test_query_batch_values_do_not_depend_on_the_path(b, kernels):
    """query_batch with intervals=False (values-only path) and with intervals (executor): same
    values and sources, ids, dicts and encodings alike."""
    from benchmark import costs

    archs = b.space.sample(11, n=30) + [b.space.from_id(i) for i in b.table.ids[:10]]
    for form in (b.space.encode_many(archs), [a.id for a in archs], [a.to_hwgpt_dict() for a in archs],
                 costs.encoded_batch(archs, b.space)):
        fast = b.query_batch(form, device="cpu-epyc-1c", as_frame=False, intervals=False)
        ref = b.query_batch(form, device="cpu-epyc-1c", as_frame=False, intervals=True)
        for m in ("perplexity", "latency_ms", "memory_mb", "params", "flops"):
            np.testing.assert_array_equal(fast[m], ref[m])
        assert fast["source"] == ref["source"]
        assert {m: list(v) for m, v in fast["row_sources"].items()} == \
            {m: list(v) for m, v in ref["row_sources"].items()}


@pytest.mark.parametrize("mode", ["auto", "surrogate", "table"])
def test_values_function_equals_query_batch(b, mode, kernels):
    """The loop's compiled question: query_batch's metric columns bit for bit, table rows and new
    architectures alike (mode table: table rows only); anything but an EncodedBatch is refused."""
    from benchmark import costs
    from benchmark.query.results import QueryError

    archs = [b.space.from_id(i) for i in b.table.ids[:12]] + ([] if mode == "table" else b.space.sample(3, n=20))
    batch = costs.encoded_batch(archs, b.space)
    for metrics, device in ((["latency_ms", "perplexity"], "cpu-epyc-1c"), (["params", "flops"], None)):
        f = b.values_function(metrics, device, None, mode)
        got = f(batch)
        ref = b.query_batch(batch.encodings, metrics=metrics, device=device, mode=mode, as_frame=False,
                            intervals=False)
        assert list(got) == metrics
        for m in metrics:
            np.testing.assert_array_equal(got[m], ref[m])
        np.testing.assert_array_equal(f(costs.encoded_batch(archs[:1], b.space))[metrics[0]], ref[metrics[0]][:1])
        if mode != "table":  # new architectures only: every value from the surrogates (ValuesPath.models_only)
            new = costs.encoded_batch(b.space.sample(5, n=7), b.space)
            got, ref = f(new), b.query_batch(new.encodings, metrics=metrics, device=device, mode=mode,
                                             as_frame=False, intervals=False)
            assert list(got) == metrics and all(np.array_equal(got[m], ref[m]) for m in metrics)
    with pytest.raises(QueryError, match="batch"):
        f(batch.encodings)
    with pytest.raises(QueryError, match="mode"):
        b.values_function(["params"], mode="fast")


def test_space_without_release_exact_and_imported_bit_identical(kernels):
    s = Benchmark("s")
    enc = s.space.encode_many(s.space.sample(5, n=50))
    for metrics, device in ((["params", "flops", "perplexity"], None), (None, "gpu-a100-sxm4-40gb")):
        fast = _check(s, metrics, device, "auto", enc)
        assert fast["sources"]["perplexity"] == "imported"
    assert ValuesPath.compile(s.executor, s.planner.plan(["perplexity"], None, None), "table") is None


def test_moo_runs_are_the_same_with_and_without_the_values_path(b, monkeypatch):
    """A NAS loop gets the same evaluations (ids, objectives, simulated clock, counts) from the
    values-only path with its compiled kernels (a Problem loads them where numba is installed), with
    its numpy kernels, and from the executor."""
    import importlib.util

    from benchmark.moo import problems
    from benchmark.moo.runner import run_problem
    from benchmark.moo.suites import get_suite

    suite = get_suite("ppl-latency-cpu").resolve(b, {})
    runs = []
    for way in ("compiled", "numpy", "executor"):
        if way == "numpy":
            monkeypatch.setattr(fastpath, "_COMPILED", None)
            monkeypatch.setattr(problems, "load_compiled", lambda: False)
        if way == "executor":
            monkeypatch.setattr(b, "_values_path", lambda plan, mode: None)
        p = suite.problem(b)
        if way == "compiled":
            assert (fastpath._COMPILED is not None) == (importlib.util.find_spec("numba") is not None)
        runs.append([run_problem(p, alg, 0, 60, suite.reference_point) for alg in ("random", "local", "morea")])
    for other in runs[1:]:
        for f, r in zip(runs[0], other):
            assert f.ids == r.ids and f.n_queries == r.n_queries
            np.testing.assert_array_equal(f.objectives, r.objectives)
            np.testing.assert_array_equal(f.clock_s, r.clock_s)


def test_without_numba_the_numpy_kernels_answer(b, monkeypatch):
    """Where numba cannot be imported, load_compiled says so and the path keeps its numpy kernels."""
    import benchmark.query

    monkeypatch.setattr(fastpath, "_COMPILED", None)
    monkeypatch.delitem(sys.modules, "benchmark.query.compiled", raising=False)
    monkeypatch.delattr(benchmark.query, "compiled", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    assert fastpath.load_compiled() is False and fastpath._COMPILED is None
    _check(b, ["perplexity", "latency_ms"], "cpu-epyc-1c", "auto", _inputs(b, 2, 5, seed=1))


def test_encode_many_equals_each_architectures_encoding(monkeypatch):
    """encode_many's bytes tables give Architecture.encoding row by row, in every space, for ids and
    Architectures, also once its memo of per-layer tuples is full; the result is writable."""
    from benchmark import spaces

    for name in ("t", "s", "l"):
        sp = spaces.get_space(name)
        archs = sp.sample(3, n=100) + [sp.smallest(), sp.largest()]
        want = np.stack([a.encoding() for a in archs]).astype(np.int8)
        for form in (archs, [a.id for a in archs], tuple(archs)):
            got = sp.encode_many(form)
            np.testing.assert_array_equal(got, want)
            assert got.dtype == np.int8 and got.flags.writeable
        assert sp.encode_many([]).shape == (0, sp.encoding_length)
    monkeypatch.setattr(spaces, "_MEMO_MAX", 0)  # nothing more remembered: computed each time
    sp = spaces.get_space("m")
    archs = sp.sample(4, n=20)
    np.testing.assert_array_equal(sp.encode_many(archs), np.stack([a.encoding() for a in archs]))
    with pytest.raises(ValueError, match="archs"):
        sp.encode_many(archs[0])


def test_dicts_parsed_without_architectures_agree_with_the_space(b):
    """HW-GPT-Bench dicts take the parser of Inputs.many: the same rows and encodings as
    SearchSpace.from_hwgpt_dict, table rows found, anything not plainly valid left to the space."""
    archs = b.space.sample(21, n=40) + [b.space.from_id(i) for i in b.table.ids[:5]]
    dicts = []
    for k, a in enumerate(archs):
        d = a.to_hwgpt_dict()
        if k % 3 == 0:  # padded per-layer lists, as HW-GPT-Bench writes them, tuples, bool bias
            d["sample_mlp_ratio"] = tuple(d["sample_mlp_ratio"]) + (99,) * 2
            d["sample_n_head"] = d["sample_n_head"] + [0]
            d["sample_bias"] = a.bias
        if k % 5 == 0:  # numpy integers: the space's own path
            d["sample_embed_dim"] = np.int64(a.embed_dim)
        dicts.append(d)
    rows, enc = b.inputs.many(dicts)
    ref_rows, ref_enc = b.inputs.many([a.id for a in archs])
    np.testing.assert_array_equal(enc, b.space.encode_many([b.space.from_hwgpt_dict(d) for d in dicts]))
    np.testing.assert_array_equal(enc, ref_enc)
    np.testing.assert_array_equal(rows, ref_rows)
    assert (rows[-5:] == np.arange(5)).all()
    good = archs[0].to_hwgpt_dict()
    for field, bad, match in (("sample_embed_dim", float(archs[0].embed_dim), "embed_dim"),
                              ("sample_n_layer", True, "n_layer"), ("sample_bias", "yes", "bias"),
                              ("sample_n_head", [2.0] * 6, "n_head")):
        with pytest.raises(ValueError, match=match):
            b.query_batch([good, {**good, field: bad}], metrics=["params"])


@pytest.mark.parametrize("n", [1, 5, 32, 33, 300])
def test_table_rows_of_encodings_agree_with_ids(b, n):
    """Few rows are found by a dict of encoding bytes, many by a hash; both give the table's rows."""
    enc = _inputs(b, n - n // 3, n // 3, seed=n)
    ids = b.space.ids_of_encodings(enc)
    np.testing.assert_array_equal(b.inputs.rows_of_encodings(enc), [b.inputs.row.get(i, -1) for i in ids])


@pytest.mark.parametrize("space", ["t", "s", "m", "l"])
@pytest.mark.parametrize("setting,decode_tokens", [(None, 0), ("prefill-b8-s256-fp32", 0),
                                                   ("decode-b1-s128-fp32", 16)])
def test_feature_function_equals_surrogate_features(space, setting, decode_tokens, kernels):
    """The feature map (t, s) and the fallback (m, l: too many tuples for a table) give
    surrogates.features bit for bit, on sampled architectures and the smallest and largest."""
    from benchmark.query.fastpath import FeatureMap, feature_function
    from benchmark.spaces import get_space
    from surrogates.features import features

    sp = get_space(space)
    f = feature_function(sp, setting, decode_tokens)
    assert isinstance(f, FeatureMap) == (space in ("t", "s"))
    enc = sp.encode_many(sp.sample(99, n=500) + [sp.smallest(), sp.largest()])
    for rows in (enc, enc[:1], enc[3:7]):
        want = features(sp, rows, setting, decode_tokens)
        np.testing.assert_array_equal(f(rows), want)
        if isinstance(f, FeatureMap):
            np.testing.assert_array_equal(f.float32(rows), want.astype(np.float32))


@pytest.mark.parametrize("bitvectors", [True, False])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 500])
def test_fused_walk_equals_each_ensembles_own_walk(b, n, bitvectors, kernels):
    from benchmark.query.fastpath import FusedHeapWalk, feature_function

    st = "prefill-b1-s256-fp32"
    ens = [b.surrogate("latency_ms", "cpu-epyc-1c", st).tree_ensemble("mean"),
           b.surrogate("perplexity").tree_ensemble("mean"), b.surrogate("memory_mb", "cpu-epyc-1c", st)
           .tree_ensemble("mean")]
    walk = FusedHeapWalk(ens, bitvectors=bitvectors)
    assert (walk.bits is not None) == bitvectors  # the embedded release's trees are shallow enough
    x = feature_function(b.space, st, 0)(b.space.encode_many(b.space.sample(n, n=n))).astype(np.float32)
    for got, e in zip(walk.predict(x), ens):
        np.testing.assert_array_equal(got, e.predict(x))  # TreeEnsemble: XGBoost's own values (test_surrogates)


@pytest.mark.parametrize("max_depth", [1, 3, 4, 6])
def test_bitvector_walk_equals_xgboost_on_unbalanced_trees_and_rows_at_thresholds(max_depth, kernels):
    """A real XGBoost ensemble on integer features (unbalanced trees: leaves above the last level;
    many splits on one feature at one threshold), asked at rows exactly at its thresholds
    (x >= threshold goes right) and in between: the bit-vector walk (depth <= 4) and the level walk
    give XGBoost's own predictions."""
    import xgboost as xgb

    from benchmark.query.fastpath import FusedHeapWalk
    from surrogates.fastpredict import TreeEnsemble

    rng = np.random.default_rng(max_depth)
    X = rng.integers(0, 6, (300, 5)).astype(np.float32)
    y = X[:, 0] * 2 + (X[:, 1] > 2) * X[:, 2] - X[:, 3] ** 2 / 5 + rng.normal(0, 0.1, 300)
    booster = xgb.train({"max_depth": max_depth, "eta": 0.3, "nthread": 1, "seed": 0},
                        xgb.DMatrix(X, label=y), num_boost_round=25)
    e = TreeEnsemble(booster)
    splits = ~e.is_leaf
    at = np.zeros((int(splits.sum()), 5), np.float32)
    at[np.arange(len(at)), e.feat[splits]] = e.thr[splits]  # one row per split, exactly at its threshold
    x = np.concatenate([at, X[:50], X[:20] + 0.5]).astype(np.float32)
    fast, level = FusedHeapWalk([e]), FusedHeapWalk([e], bitvectors=False)
    assert (fast.bits is not None) == (e.depth <= 4) and level.bits is None
    want = booster.inplace_predict(x).astype(np.float32)
    np.testing.assert_array_equal(e.predict(x), want)
    for walk in (fast, level):
        np.testing.assert_array_equal(walk.predict(x)[0], want)
        np.testing.assert_array_equal(walk.predict(x[:1])[0], want[:1])


def test_table_keys_identify_table_rows_exactly(b, tmp_path):
    """The compiled membership test's keys: one integer per encoding, distinct for distinct
    encodings (mixed radix), equal to a table row's exactly when the encoding is that row's."""
    from benchmark.api import Benchmark

    w, keys = b.inputs.table_keys()
    assert len(keys) == len(b.table.ids) and (np.diff(keys) > 0).all()  # sorted, no two rows alike
    enc = _inputs(b, 40, 60, seed=3)
    k = (enc.astype(np.int64) + 1) @ w
    np.testing.assert_array_equal(np.isin(k, keys), b.inputs.rows_of_encodings(enc) >= 0)
    assert len(np.unique(k)) == len(np.unique(enc, axis=0))  # distinct encodings, distinct keys
    assert Benchmark("m").inputs.table_keys() is None  # would not fit 63 bits: the dict lookup answers
    assert len(Benchmark("s", path=tmp_path).inputs.table_keys()[1]) == 0  # no table: nothing is a table row


@pytest.mark.parametrize("mode", ["auto", "surrogate"])
def test_membership_and_models_in_one_call_fall_back_for_table_rows(b, mode, kernels):
    from benchmark import costs

    f = b.values_function(["perplexity", "latency_ms"], "cpu-epyc-1c", None, mode)
    path = b._values_path(b.planner.plan(["perplexity", "latency_ms"], "cpu-epyc-1c", None), mode)
    keys = b.inputs.table_keys()
    new = costs.encoded_batch(b.space.sample(8, n=9), b.space)
    mixed = costs.encoded_batch(list(b.space.sample(8, n=9)) + [b.space.from_id(b.table.ids[7])], b.space)
    compiled = kernels == "compiled"
    assert (path.models_off_table(new.encodings, keys) is not None) == compiled
    assert (path.models_off_table(mixed.encodings, keys) is not None) == (compiled and mode == "surrogate")
    for batch in (new, mixed):  # either way, query_batch's values
        ref = b.query_batch(batch.encodings, metrics=["perplexity", "latency_ms"], device="cpu-epyc-1c", mode=mode,
                            as_frame=False, intervals=False)
        got = f(batch)
        assert all(np.array_equal(got[m], ref[m]) for m in ("perplexity", "latency_ms"))
