"""The MOO benchmark suite: problems, algorithms, runner, indicators, report, CLI.

Real-benchmark tests use a session-scoped *synthetic* release (benchmark.moo.synthetic: ~200 sampled
``t`` architectures whose values are stated functions of exact costs plus seeded noise, one measured
CPU device ``cpu-test`` and a roofline-modeled H100, surrogates fitted with ``surrogates.fit``).
Algorithm-level tests also run on a small analytic evaluator (exact params vs exact FLOPs).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import costs
from benchmark.moo import algorithms as A
from benchmark.moo.indicators import attainment, hypervolume, hypervolume_curve, igd_plus, igd_plus_curve
from benchmark.moo.problems import Objective, Problem, ProblemError, resolve_device
from benchmark.moo.runner import load_results, run_problem, run_suite
from benchmark.moo.suites import get_suite, load_suites
from benchmark.spaces import PAD, get_space

FAST = [a for a in A.ALGORITHMS if a not in A.SLOW_ALGORITHMS]
BUDGET = 30


class Analytic:
    """A tiny evaluator with the query API's ``query_batch`` signature: exact params and FLOPs."""

    space = "t"

    def __init__(self):
        self.calls = 0

    def query_batch(self, archs, metrics, device=None, setting=None, mode="auto", noise=False, seed=None,
                    as_frame=True):
        self.calls += 1
        sp = get_space("t")
        archs = [sp.decode(e) for e in np.asarray(archs)]
        out = {}
        for m in metrics:
            if m == "params":
                out[m] = np.asarray(costs.params(archs), dtype=float)
            elif m == "flops":
                out[m] = np.asarray(costs.flops_prefill(archs, batch=1, seq_len=256), dtype=float)
            else:
                raise ValueError(m)
        return out


def analytic_problem(**kw) -> Problem:
    objs = [Objective("params", lower=3e5, upper=5e6, log=True),
            Objective("flops", setting="prefill-b1-s256-fp32", lower=2e8, upper=3e9, log=True)]
    return Problem(objs, Analytic(), **kw)


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    from benchmark.moo.synthetic import write_synthetic_release

    return write_synthetic_release(tmp_path_factory.mktemp("moo_release"), n=200, seed=0, surrogates=True)


@pytest.fixture(scope="session")
def bench(release):
    from benchmark import Benchmark

    return Benchmark(space="t", path=release)


def suite_problem(bench, name="ppl-latency-cpu", **over):
    s = get_suite(name).override(**over).resolve(bench)
    return s, s.problem(bench)


# ---------------------------------------------------------------------------- indicators
def test_hypervolume_hand_computed_2d():
    P = np.array([[0.2, 0.6], [0.5, 0.3]])
    # [0.2,1]x[0.6,1] = 0.32; [0.5,1]x[0.3,1] = 0.35; overlap [0.5,1]x[0.6,1] = 0.20 -> 0.47
    assert hypervolume(P, [1, 1]) == pytest.approx(0.47)
    curve = hypervolume_curve(np.vstack([P, [[0.6, 0.7]], [[1.5, 0.0]]]), [1, 1])
    assert curve == pytest.approx([0.32, 0.47, 0.47, 0.47])  # dominated / beyond the reference add nothing
    assert hypervolume(np.array([[2.0, 2.0]]), [1, 1]) == 0.0
    assert igd_plus(P, P) == pytest.approx(0.0)
    assert igd_plus_curve(P, P)[-1] == pytest.approx(0.0)
    surf = attainment([P, P + 0.1], percentiles=(0, 100))
    assert surf[0.0].tolist() == P.tolist() and np.allclose(surf[100.0], P + 0.1)


# ---------------------------------------------------------------------------- problem
def test_objective_and_problem_validation():
    with pytest.raises(ProblemError, match="allowed.*latency_ms"):
        Objective("latency")
    with pytest.raises(ProblemError, match="device of objective 'latency_ms'"):
        Objective("latency_ms", setting="prefill-b1-s256-fp32")
    with pytest.raises(ProblemError, match="bounds"):
        Objective("params", lower=0, upper=10, log=True)
    with pytest.raises(ProblemError, match="candidates.*space"):
        analytic_problem(candidates="everything")
    with pytest.raises(ProblemError, match="cpu-a \\(cpu, measured\\)"):
        resolve_device("gpu:measured", {"cpu-a": {"kind": "cpu", "source": "measured"}})
    assert resolve_device("cpu:measured", {"cpu-b": {"source": "measured"}, "cpu-a": {"source": "measured"}}) == "cpu-a"


def test_repair_genes_is_deterministic_and_valid():
    p = analytic_problem()
    sp = p.space
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.uniform(-3, 9, size=sp.encoding_length)  # out of range, fractional, garbage in padding
        a, b = p.repair_genes(x), p.repair_genes(x.copy())
        assert a == b and sp.validate(a) == a
    g = p.genes(sp.smallest())
    assert (g >= 0).all() and p.repair_genes(g) == sp.smallest()
    enc = sp.largest().encoding()
    assert PAD not in enc and p.repair_genes(enc) == sp.largest()


def test_problem_counts_clock_and_caches():
    p = analytic_problem()
    archs = p.space.sample(0, n=5)
    F = p.evaluate(archs)
    assert F.shape == (5, 2) and p.n_evals == 5
    assert p.clock_s == pytest.approx(5 * 2.0)  # only the 2 s overhead: no perplexity, no hardware objective
    calls, clock = p.evaluator.calls, p.clock_s
    F2 = p.evaluate(archs[:2])  # re-evaluation: counted, free, same values, no query
    assert np.array_equal(F2, F[:2]) and p.n_evals == 7 and p.clock_s == clock and p.evaluator.calls == calls
    assert np.allclose(p.normalise(F)[:, 0], np.log(F[:, 0] / 3e5) / np.log(5e6 / 3e5))


def test_clock_advances_per_evaluation_in_order():
    p = analytic_problem()
    a = p.space.sample(1, n=4)
    p.evaluate(a[:2])
    clock = p.clock_s
    p.evaluate([a[2], a[0], a[3], a[2]])  # a[0] evaluated before, a[2] twice in the batch: free
    assert p.last_clock.tolist() == [clock + 2.0, clock + 2.0, clock + 4.0, clock + 4.0]
    assert p.clock_s == clock + 4.0


def test_random_search_batch_size_changes_no_recorded_value(bench):
    """Random search asks the whole remaining budget at once (one query per objective group); any
    batch size proposes the same architectures and records the same values and clock."""
    s, p = suite_problem(bench)
    runs = {k: run_problem(p, A.get_algorithm("random", batch=k), 2, 40, s.reference_point) for k in (None, 1, 7, 40)}
    ref = runs[None]
    assert ref.n_queries == 1 and runs[1].n_queries == 40
    for r in runs.values():
        assert r.ids == ref.ids and np.array_equal(r.objectives, ref.objectives)
        assert np.array_equal(r.clock_s, ref.clock_s) and np.array_equal(r.hypervolume, ref.hypervolume)
    with pytest.raises(ValueError, match="batch"):
        A.get_algorithm("random", batch=0)


def test_nsga3_asks_a_generation_at_once_with_the_same_run():
    """NSGA-III's sampler draws a generation from the previous one only: asking a whole generation
    (the default) proposes what asking one trial at a time does, with a twentieth of the queries."""
    runs = {k: run_problem(analytic_problem(), A.get_algorithm("nsga3", batch=k), 0, 60, [1.1, 1.1])
            for k in (None, 1, 4)}  # batches that divide the population (20)
    ref = runs[None]
    assert ref.n_queries == 3 * 2 and runs[1].n_queries > 50 * 2  # 2 query groups; repeats are not queried
    for r in runs.values():
        assert r.ids == ref.ids and np.array_equal(r.objectives, ref.objectives)


def test_simulated_clock_matches_the_stated_model(bench):
    s, p = suite_problem(bench, candidates="table", mode="table")
    a = p.table_architectures[:3]
    p.evaluate(a)
    lat = np.nanmedian(bench.table.hardware("cpu-test", "prefill-b1-s256-fp32", "latency_ms"), axis=1)[:3]
    flops_per_token = np.asarray(costs.flops_prefill(a, batch=1, seq_len=256), dtype=float) / 256
    expected = 2.0 + 65536 * flops_per_token / 2e10 + (3 + 10) * lat / 1e3
    assert p.clock_s == pytest.approx(expected.sum())


# ---------------------------------------------------------------------------- algorithms
@pytest.mark.parametrize("name", FAST)
def test_algorithm_on_analytic_problem_is_seeded(name):
    p = analytic_problem()
    r1 = run_problem(p, name, 3, BUDGET, [1.1, 1.1])
    r2 = run_problem(p, name, 3, BUDGET, [1.1, 1.1])
    assert len(r1.ids) == BUDGET and all(p.space.from_id(i) for i in r1.ids)
    assert r1.ids == r2.ids and np.array_equal(r1.objectives, r2.objectives)
    assert np.array_equal(r1.clock_s, r2.clock_s) and np.all(np.diff(r1.clock_s) >= 0)
    assert np.all(np.diff(r1.hypervolume) >= 0) and r1.hypervolume[-1] > 0
    r3 = run_problem(p, name, 4, BUDGET, [1.1, 1.1])
    assert r3.ids != r1.ids


@pytest.mark.parametrize("name", FAST)
def test_algorithm_on_real_suite_table_candidates(bench, name):
    s, p = suite_problem(bench, candidates="table", mode="table")
    r = run_problem(p, name, 0, BUDGET, s.reference_point)
    table_ids = set(bench.table.ids.tolist())
    assert len(r.ids) == BUDGET and set(r.ids) <= table_ids
    assert np.isfinite(r.objectives).all() and r.hypervolume[-1] > 0
    r2 = run_problem(p, name, 0, BUDGET, s.reference_point)
    assert r2.ids == r.ids and np.array_equal(r2.objectives, r.objectives)


@pytest.mark.parametrize("name", ["nsga2", "morea", "motpe"])
def test_algorithm_on_real_suite_surrogate_three_objectives(bench, name):
    s, p = suite_problem(bench, "ppl-latency-energy")
    assert p.n_obj == 3
    r = run_problem(p, name, 1, BUDGET, s.reference_point)
    assert len(r.ids) == BUDGET and np.isfinite(r.objectives).all()
    assert any(i not in set(bench.table.ids.tolist()) for i in r.ids)  # the whole space, via surrogates


def test_modeled_objective_is_the_roofline_model(bench):
    """A modeled device's objective (energy on the modeled H100) is the roofline model itself for any
    architecture, through the NAS loop's lean query path, in the problem's objective values."""
    from benchmark.moo.synthetic import GPU_DEVICE, GPU_SETTING
    from benchmark.profiling import roofline

    s, p = suite_problem(bench, "ppl-energy-gpu")
    archs = [a for a in p.sample(np.random.default_rng(11), 40) if a.id not in bench.table][:20]
    want = roofline.predict(archs, GPU_SETTING, GPU_DEVICE, roofline.DEFAULT_PARAMS["gpu"]).energy_mj
    out = bench.query_batch(p.space.encode_many(archs), metrics=["energy_mj", "latency_ms", "perplexity"],
                            device=GPU_DEVICE, setting=GPU_SETTING, as_frame=False, intervals=False)
    assert out["source"]["energy_mj"] == "modeled" and out["source"]["perplexity"] == "surrogate"
    np.testing.assert_allclose(out["energy_mj"], want, rtol=1e-12, atol=0)
    F = p.evaluate(archs)
    np.testing.assert_array_equal(F[:, 1], out["energy_mj"])


def test_noisy_suite_is_seeded(bench):
    s, p = suite_problem(bench, noise=True)
    r1 = run_problem(p, "random", 5, 20, s.reference_point)
    r2 = run_problem(p, "random", 5, 20, s.reference_point)
    assert np.array_equal(r1.objectives, r2.objectives)


def test_user_defined_algorithm():
    class Smallest(A.Algorithm):
        name = "smallest-first"

        def ask(self):
            return [self.problem.space.smallest()] + self.problem.sample(self.rng, 3)

    A.register_algorithm("smallest-first", Smallest)
    try:
        r = run_problem(analytic_problem(), "smallest-first", 0, 9, [1.1, 1.1])
        assert r.ids[0] == get_space("t").smallest().id and len(r.ids) == 9
    finally:
        del A.ALGORITHMS["smallest-first"]
    with pytest.raises(ValueError, match="allowed: .*nsga2"):
        A.get_algorithm("nsga4")


@pytest.mark.slow
def test_qnehvi_small_budget(bench):
    pytest.importorskip("botorch")
    s, p = suite_problem(bench, candidates="table", mode="table")
    r = run_problem(p, A.get_algorithm("qnehvi", n_init=6, pool=64, mc_samples=16), 0, 9, s.reference_point)
    assert len(r.ids) == 9 and set(r.ids) <= set(bench.table.ids.tolist())
    from botorch.acquisition.multi_objective import logei

    assert logei._C is None  # botorch's JIT-compiled kernel stayed unloaded (see QNEHVI.ask)


# ---------------------------------------------------------------------------- suites
def test_suites_file_and_errors(bench):
    suites = load_suites()
    assert {"ppl-latency-cpu", "ppl-energy-gpu", "ppl-memory", "ppl-params", "ppl-latency-energy"} <= set(suites)
    for s in suites.values():
        assert len(s.reference_point) == len(s.objectives)
        if s.space == "t" and not s.needs:  # resolves on a release with a measured CPU and a modeled H100
            s.resolve(bench)
        elif s.space == "t":  # a suite on the embedded release's runtime devices says what it needs
            with pytest.raises(ProblemError, match=f"suite {s.name!r} needs"):
                s.resolve(bench)
    with pytest.raises(ProblemError, match="allowed: .*ppl-latency-cpu"):
        get_suite("ppl-nothing")
    with pytest.raises(ProblemError, match="cpu-test \\(cpu, measured\\)"):
        get_suite("ppl-latency-cpu").resolve(bench, devices={"cpu:measured": "cpu-missing"})
    with pytest.raises(ProblemError, match="roles of suite"):
        get_suite("ppl-params").resolve(bench, devices={"cpu:measured": "cpu-test"})


# ---------------------------------------------------------------------------- runner, report, CLI
def test_run_suite_resumes_and_report(bench, release, tmp_path, monkeypatch):
    import benchmark.moo.runner as R

    suite = get_suite("ppl-latency-cpu").override(budget=12, candidates="table", mode="table")
    out = tmp_path / "res.h5"
    run_suite(suite, ["random", "nsga2"], out, release=str(release), seeds=2, workers=1, progress=False)
    c = load_results(out)["ppl-latency-cpu"]
    assert sorted(c["runs"]) == ["nsga2", "random"] and sorted(c["runs"]["random"]) == [0, 1]
    assert c["reference_front"] is not None and len(c["reference_front"]) > 0
    assert len(c["runs"]["random"][0]["ids"]) == 12
    calls = []
    real = R._run_job
    monkeypatch.setattr(R, "_run_job", lambda *a: calls.append(a[2:]) or real(*a))
    run_suite(suite, ["random", "nsga2"], out, release=str(release), seeds=3, workers=1, progress=False)
    assert sorted(calls) == [("nsga2", 2), ("random", 2)]  # finished runs skipped
    assert load_results(out)["ppl-latency-cpu"]["runs"]["random"][0]["finished"] == c["runs"]["random"][0]["finished"]
    with pytest.raises(ProblemError, match="different configuration"):
        run_suite(suite.override(budget=13), ["random"], out, release=str(release), seeds=1, workers=1,
                  progress=False)
    assert not list(tmp_path.glob(".res.h5.tmp-*"))
    from benchmark.moo.report import write_report

    rep = write_report(out, tmp_path / "report")
    names = {p.name for p in rep["plots"]}
    assert {"ppl-latency-cpu-hv-evals.png", "ppl-latency-cpu-hv-time.png", "ppl-latency-cpu-igd-evals.png",
            "ppl-latency-cpu-fronts.png", "ppl-latency-cpu-eaf.png"} <= names
    md = rep["summary"].read_text()
    assert "| random | 3 | 12 |" in md and "mean rank" in md
    assert "best perplexity" in md and "table front found" in md and "Holm" in md
    assert "### Final fronts" in md and "### The table's Pareto front" in md
    front = c["runs"]["random"][0]  # an id on the final-front table carries its values' sources
    assert any(f"`{i}`" in md for i in front["ids"]) and "measured" in md
    page = rep["html"].read_text()
    assert page.count("data:image/png;base64,") == len(rep["plots"]) and "src='ppl" not in page


def test_report_three_objectives(release, tmp_path):
    from benchmark.moo.report import write_report

    suite = get_suite("ppl-latency-energy").override(budget=10, candidates="table", mode="table")
    out = tmp_path / "res3.h5"
    run_suite(suite, ["random", "morea"], out, release=str(release), seeds=2, workers=1, progress=False)
    rep = write_report(out, tmp_path / "report3")
    assert "ppl-latency-energy-fronts.png" in {p.name for p in rep["plots"]}
    assert "best energy (mJ)" in rep["summary"].read_text()


def test_pairwise_tests_holm():
    from scipy.stats import mannwhitneyu

    from benchmark.moo.report import pairwise_tests

    rng = np.random.default_rng(0)
    hv = {"a": rng.normal(0.5, 0.01, 10), "b": rng.normal(0.6, 0.01, 10), "c": rng.normal(0.5, 0.01, 10)}
    p = pairwise_tests(hv)
    raw = {k: mannwhitneyu(hv[k[0]], hv[k[1]]).pvalue for k in p}
    order = sorted(raw, key=raw.get)
    # Holm: the k-th smallest p-value times (number of pairs - k), made monotone
    assert p[order[0]] == pytest.approx(3 * raw[order[0]])
    assert p[order[1]] == pytest.approx(max(3 * raw[order[0]], 2 * raw[order[1]]))
    assert p[("a", "b")] < 0.05 and p[("b", "c")] < 0.05 and p[("a", "c")] > 0.05
    assert pairwise_tests({"a": np.ones(5), "b": np.ones(5)}) == {("a", "b"): 1.0}


def test_suite_hypervolume_matches_a_hand_rolled_loop(bench):
    from benchmark.moo.indicators import normalise_objectives, suite_hypervolume

    s, p = suite_problem(bench)
    r = run_problem(p, "random", 3, 25, s.reference_point)
    # a loop outside the suite: query the API directly, normalise and compute the hypervolume by hand
    lat = s.objectives[1]
    df = bench.query_batch(r.ids, metrics=["perplexity", "latency_ms"], device=lat["device"], setting=lat["setting"])
    F = df[["perplexity", "latency_ms"]].to_numpy(dtype=float)
    Z = np.column_stack([(np.log(F[:, j]) - np.log(o["bounds"][0])) / (np.log(o["bounds"][1]) - np.log(o["bounds"][0]))
                         for j, o in enumerate(s.objectives)])
    ref = np.asarray(s.reference_point)
    P = Z[np.all(Z < ref, axis=1)]
    P = P[np.lexsort((P[:, 1], P[:, 0]))]
    hv, best_y = 0.0, ref[1]
    for x, y in P:  # 2-D staircase: each point adds the strip up to the best y so far
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    assert np.allclose(normalise_objectives(s, F), Z) and np.allclose(normalise_objectives("ppl-latency-cpu", F), Z)
    assert suite_hypervolume(s, F) == pytest.approx(hv) == pytest.approx(r.hypervolume[-1])
    assert suite_hypervolume("ppl-latency-cpu", Z, normalised=True) == pytest.approx(hv)
    with pytest.raises(ValueError, match="one per objective"):
        normalise_objectives(s, F[:, :1])


PLUGIN = """
import numpy as np
from benchmark.moo.algorithms import Algorithm


class SmallestFirst(Algorithm):
    name = "smallest-first"

    def ask(self):
        return [self.problem.space.smallest()] + self.problem.sample(self.rng, 3)
"""


def test_plugin_module_attr_through_the_cli_with_two_workers(release, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "plug_algo.py").write_text(PLUGIN)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    hwlm = [sys.executable, "-c", "import sys; from benchmark.cli import main; sys.exit(main())"]
    run = subprocess.run(hwlm + ["moo", "run", "--suite", "ppl-params", "--algorithms", "plug_algo:SmallestFirst",
                                 "random", "--seeds", "2", "--budget", "9", "--workers", "2", "--quiet",
                                 "--release", str(release), "--out", "plug.h5"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    runs = load_results(tmp_path / "plug.h5")["ppl-params"]["runs"]
    assert sorted(runs) == ["plug_algo:SmallestFirst", "random"] and sorted(runs["plug_algo:SmallestFirst"]) == [0, 1]
    assert all(r["ids"][0] == get_space("t").smallest().id for r in runs["plug_algo:SmallestFirst"].values())
    rep = subprocess.run(hwlm + ["moo", "report", "plug.h5", "--out", "rep"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    assert "| plug_algo:SmallestFirst | 2 | 9 |" in (tmp_path / "rep" / "summary.md").read_text()
    bad = subprocess.run(hwlm + ["moo", "run", "--suite", "ppl-params", "--algorithms", "no_such_mod:X", "--out",
                                 "x.h5", "--release", str(release)], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "invalid algorithm: 'no_such_mod:X'" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_plugin_entry_point(tmp_path, monkeypatch):
    import sys

    (tmp_path / "ep_algo.py").write_text(PLUGIN)
    dist = tmp_path / "ep_algo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-algo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hwlm.algorithms]\nsmallest-ep = ep_algo:SmallestFirst\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "smallest-ep" in A.available_algorithms()
    r = run_problem(analytic_problem(), "smallest-ep", 0, 5, [1.1, 1.1])
    assert r.ids[0] == get_space("t").smallest().id
    monkeypatch.delitem(A._PLUGINS, "smallest-ep")
    monkeypatch.delitem(sys.modules, "ep_algo")


def test_moo_list_shows_each_suites_space_and_where_its_values_come_from(capsys):
    from benchmark.cli import main
    from benchmark.moo.suites import Suite, get_suite

    assert main(["moo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    block = {ln.split(":")[0][len("suite "):]: (ln, nxt) for ln, nxt in zip(lines, lines[1:]) if ln.startswith("suite ")}
    head, values = block["ppl-energy-gpu"]
    assert "space t" in head
    assert values == "  values: perplexity: measured table, else its surrogate; energy_mj@gpu:modeled:h100: modeled (roofline)"
    assert "space s" in block["s-ppl-latency-gpu"][0]
    assert "perplexity: imported (HW-GPT-Bench)" in block["s-ppl-latency-gpu"][1]
    assert "params: exact (computed)" in block["ppl-params"][1]
    # the mode decides whether a surrogate answers for architectures the measured table lacks
    cpu = get_suite("ppl-latency-cpu")
    assert cpu.override(mode="table").value_sources()[1] == ("latency_ms@cpu:measured", "measured table only")
    assert cpu.override(mode="surrogate").value_sources()[0] == ("perplexity", "surrogate of the measured table")
    anyrole = Suite.from_dict("x", {"objectives": [{"metric": "latency_ms", "device": "gpu:any", "setting": "s",
                                                     "bounds": [1, 2]}]})
    assert "roofline if modeled" in anyrole.value_sources()[0][1]


def test_cli(release, tmp_path, capsys):
    from benchmark.cli import build_parser, main

    for argv in (["moo", "--help"], ["moo", "run", "--help"], ["moo", "report", "--help"], ["moo", "demo", "--help"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 0
    capsys.readouterr()
    assert main(["moo", "run", "--suite", "nope", "--algorithms", "random", "--out", str(tmp_path / "x.h5"),
                 "--release", str(release)]) == 2
    assert "allowed: ['ppl-energy-gpu'" in capsys.readouterr().err
    assert main(["moo", "run", "--suite", "ppl-params", "--algorithms", "nsga4", "--out", str(tmp_path / "x.h5"),
                 "--release", str(release)]) == 2
    assert "allowed: ['local', 'moead'" in capsys.readouterr().err
    assert main(["moo", "run", "--suite", "ppl-latency-cpu", "--algorithms", "random", "--out",
                 str(tmp_path / "x.h5"), "--release", str(release), "--device", "cpu:measured=cpu-nope"]) == 2
    assert "devices there: cpu-test" in capsys.readouterr().err
    assert main(["moo", "list"]) == 0 and "ppl-latency-energy" in capsys.readouterr().out
    rc = main(["moo", "demo", "--release", str(release), "--out-dir", str(tmp_path / "demo"), "--budget", "10",
               "--seeds", "1", "--algorithms", "random", "morea", "--workers", "1", "--quiet",
               "--candidates", "table", "--mode", "table"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"summary: {tmp_path / 'demo' / 'summary.md'}" in out and "plot:" in out
    assert (tmp_path / "demo" / "results.h5").exists()


@pytest.mark.slow
def test_run_suite_parallel_matches_serial(release, tmp_path):
    suite = get_suite("ppl-params").override(budget=15)
    a, b = tmp_path / "serial.h5", tmp_path / "parallel.h5"
    run_suite(suite, ["random", "morea"], a, release=str(release), seeds=2, workers=1, progress=False)
    run_suite(suite, ["random", "morea"], b, release=str(release), seeds=2, workers=2, progress=False)
    ra, rb = load_results(a)["ppl-params"]["runs"], load_results(b)["ppl-params"]["runs"]
    for alg in ra:
        for s in ra[alg]:
            assert ra[alg][s]["ids"] == rb[alg][s]["ids"]
            assert np.array_equal(ra[alg][s]["objectives"], rb[alg][s]["objectives"])


@pytest.mark.slow
def test_run_suite_on_local_ray_matches_serial(release, tmp_path):
    pytest.importorskip("ray")
    suite = get_suite("ppl-params").override(budget=12)
    a, b = tmp_path / "serial.h5", tmp_path / "ray.h5"
    run_suite(suite, ["random", "nsga2"], a, release=str(release), seeds=1, workers=1, progress=False)
    run_suite(suite, ["random", "nsga2"], b, release=str(release), seeds=1, workers=2, progress=False,
              ray_address="local")
    ra, rb = load_results(a)["ppl-params"]["runs"], load_results(b)["ppl-params"]["runs"]
    assert sorted(rb) == ["nsga2", "random"]
    for alg in ra:
        assert ra[alg][0]["ids"] == rb[alg][0]["ids"]


def test_results_written_with_older_ids_read_as_canonical_ids(tmp_path):
    """A results file that stores the older concatenated ids (as files written before the id
    migration do) reads as canonical ids, so they match the table's (the report's "found" column
    depends on it)."""
    import shutil
    from pathlib import Path

    import h5py

    from benchmark.spaces import Architecture, concatenated_id

    path = tmp_path / "results.h5"
    shutil.copy(Path(__file__).resolve().parents[1] / "docs" / "moo-demo" / "results.h5", path)
    with h5py.File(path, "r+") as f:
        runs = f["ppl-latency-cpu"]
        for alg in runs:
            for seed in runs[alg]:
                g = runs[alg][seed]
                canonical = g["ids"].asstr()[()].tolist()
                del g["ids"]
                g["ids"] = [concatenated_id(Architecture.from_id(i)) for i in canonical]
        stored = runs["random/0/ids"].asstr()[()].tolist()
    assert all(i.count("-") == 6 for i in stored)  # the older form
    ids = load_results(path)["ppl-latency-cpu"]["runs"]["random"][0]["ids"]
    assert ids == [Architecture.from_id(i).id for i in stored] and all(i.count("-") > 6 for i in ids)


@pytest.mark.slow
def test_plugin_module_attr_on_local_ray(release, tmp_path, monkeypatch):
    """A MODULE:ATTR plug-in whose module is only on the driver's path (not the workers' working
    directory, not PYTHONPATH) reaches the Ray workers."""
    import sys

    pytest.importorskip("ray")
    plugins, work = tmp_path / "plugins", tmp_path / "work"
    plugins.mkdir()
    work.mkdir()
    (plugins / "ray_plug_algo.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.chdir(work)
    out = work / "ray.h5"
    run_suite(get_suite("ppl-params").override(budget=9), ["ray_plug_algo:SmallestFirst"], out, release=str(release),
              seeds=2, workers=2, progress=False, ray_address="local")
    runs = load_results(out)["ppl-params"]["runs"]["ray_plug_algo:SmallestFirst"]
    assert sorted(runs) == [0, 1] and all(r["ids"][0] == get_space("t").smallest().id for r in runs.values())
    monkeypatch.delitem(A._PLUGINS, "ray_plug_algo:SmallestFirst")
    monkeypatch.delitem(sys.modules, "ray_plug_algo")
