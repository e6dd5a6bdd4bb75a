"""Standalone baselines and the weight-sharing rank study, on tiny real data."""

import json

import numpy as np
import pytest

from benchmark import costs
from benchmark.spaces import ArchitectureError, get_space
from benchmark.supernet.ranking import (design_study, job_key, plot_study, run_study, study_jobs, summarize,
                                        summary_markdown)
from benchmark.supernet.train import TrainConfig, load_run, read_log, train

TINY = dict(batch_size=2, block_size=32, eval_tokens=256, threads=1, lr=3e-3)


def test_design_matches_sizes_within_a_width():
    design = design_study("t", per_width=4, seed=0, pool=3000, band=0.05)
    sp = get_space("t")
    groups = {}
    for d in design:
        groups.setdefault(d["group"], []).append(sp.from_id(d["id"]))
    assert sorted(groups) == ["E=128", "E=192", "E=64", "extreme"]
    for g, archs in groups.items():
        if g == "extreme":
            assert archs == [sp.largest(), sp.smallest()]
            continue
        assert len(archs) == 4 and len(set(archs)) == 4 and {a.embed_dim for a in archs} == {int(g[2:])}
        p = costs.params(archs)
        assert p.max() / p.min() < 1.11  # within the +-5 % band of one median
        assert len({(a.n_layer, a.mlp_ratio, a.n_head) for a in archs}) == 4  # different allocations
    assert design_study("t", per_width=4, seed=0, pool=3000) == design  # seeded
    with pytest.raises(ValueError, match="band"):
        design_study("t", per_width=4, pool=50, band=0.001)


def test_jobs_interleave_widths_then_extremes_halfway_and_repeats():
    design = design_study("t", per_width=3, seed=0, pool=3000)
    jobs = study_jobs(design, seed=0, repeats={"E=64": 2, "E=192": 1})
    keys = [job_key(j) for j in jobs]
    assert len(keys) == len(set(keys)) == 9 + 2 + 1 + 3
    widths = [get_space("t").from_id(j["id"]).embed_dim for j in jobs[:9]]
    assert widths == [64, 128, 192] * 3
    assert jobs[11] == {"kind": "halfway"} and [j["seed"] for j in jobs[12:]] == [1, 1, 1]


def test_standalone_run_trains_only_its_architecture(tiny_corpus, tmp_path):
    arch = get_space("t").sample(3)
    run = tmp_path / "r"
    train(TrainConfig(arch=arch.id, data_dir=str(tiny_corpus), out_dir=str(run), steps=4, warmup=1, eval_every=4,
                      ckpt_every=2, **TINY), progress=False)
    log = read_log(run / "log.jsonl")
    assert all(set(e["loss"]) == {"arch"} for e in log) and set(log[-1]["val"]) == {"arch"}
    net, state = load_run(run)
    assert state["step"] == 4 and state["config"]["arch"] == arch.id
    # weights outside the architecture never receive gradients: the last layer's norms stay at init
    if arch.n_layer < get_space("t").max_layers:
        assert bool((net.blocks[-1].ln_1.weight == 1).all())


def test_train_until_stops_on_the_full_schedule_and_resumes(tiny_corpus, tmp_path):
    cfg = dict(data_dir=str(tiny_corpus), steps=4, warmup=1, eval_every=4, ckpt_every=4, **TINY)
    train(TrainConfig(out_dir=str(tmp_path / "a"), **cfg), progress=False, until=2)
    assert load_run(tmp_path / "a")[1]["step"] == 2
    train(TrainConfig(out_dir=str(tmp_path / "a"), **cfg), progress=False)
    train(TrainConfig(out_dir=str(tmp_path / "b"), **cfg), progress=False)
    lr = [e["lr"] for e in read_log(tmp_path / "a" / "log.jsonl")]
    assert lr == [e["lr"] for e in read_log(tmp_path / "b" / "log.jsonl")]  # one schedule, stopped halfway
    a, b = load_run(tmp_path / "a")[0], load_run(tmp_path / "b")[0]
    assert all(bool((a.state_dict()[k] == v).all()) for k, v in b.state_dict().items())
    with pytest.raises(ValueError, match="until"):
        train(TrainConfig(out_dir=str(tmp_path / "c"), **cfg), progress=False, until=5)


def test_standalone_arch_is_validated():
    with pytest.raises(ArchitectureError):
        TrainConfig(arch="gpt-t-9-64-2-2-True").validate()


def _tiny_study(tiny_corpus, tmp_path):
    """A supernet checkpoint, the study JSON's path and run_study's keywords for a seconds-long study."""
    from benchmark.supernet.elastic import Supernet, save_supernet

    ckpt = tmp_path / "supernet.safetensors"
    save_supernet(Supernet("t", vocab_size=300, block_size=32).init_weights(0), ckpt)
    design = design_study("t", per_width=2, seed=0, pool=3000)
    jobs = study_jobs(design, seed=0, repeats={"E=64": 2})
    sn_config = dict(TrainConfig(space="t", steps=4, warmup=2, eval_every=4, ckpt_every=2, **TINY).__dict__)
    kw = dict(design=design, jobs=jobs, steps=2, runs_dir=str(tmp_path / "runs"), data_dir=str(tiny_corpus),
              eval_tokens=128, base_config={k: v for k, v in TINY.items() if k != "eval_tokens"},
              supernet_config=sn_config, progress=False)
    return ckpt, tmp_path / "study.json", kw


def test_study_runs_resumes_and_summarizes(tiny_corpus, tmp_path):
    ckpt, out, kw = _tiny_study(tiny_corpus, tmp_path)
    design, jobs = kw["design"], kw["jobs"]
    r = run_study("t", ckpt, out, max_jobs=3, **kw)
    assert len(r["runs"]) == 3 and set(r["supernet"]) == {d["id"] for d in design}
    assert summarize(r, reps=50)["predictors"] == {}  # 3 architectures: no statistics
    r = run_study("t", ckpt, out, **kw)  # resumes: the remaining jobs only
    assert len(r["runs"]) == len(jobs) and r["runs"]["halfway-supernet"]["step"] == 2
    assert set(r["halfway"]) == set(r["supernet"])
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("state.json")}
    assert run_study("t", ckpt, out, **kw) == r  # finished: nothing retrained
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("state.json")}
    assert json.loads(out.read_text()) == r
    s = summarize(r, reps=200)
    assert s["n_archs"] == 8 and s["seed_noise"]["n"] == 2
    assert set(s["predictors"]) == {"supernet", "params", "flops", "supernet_halfway"}
    assert set(s["error_vs_design"]) == {"supernet", "supernet_halfway"}
    for p in s["predictors"].values():
        lo, hi = p["kendall_tau_ci"]
        assert -1 <= lo <= hi <= 1 and np.isfinite(p["kendall_tau"])
    assert plot_study(r, s, tmp_path / "rank.png").stat().st_size > 0
    md = summary_markdown(r, s)
    assert md.count("\n| E=") == 6 and "| supernet_halfway |" in md and "seed 0 / seed 1" in md
    header, rule, row = md.split("\n")[2:5]
    assert header.count("|") == rule.count("|") == row.count("|")  # a well-formed table


def test_study_workers_split_the_jobs_and_keep_each_others_runs(tiny_corpus, tmp_path):
    """Two processes on one study: each job is claimed by one of them and the JSON ends with every run,
    the same numbers a single worker gets."""
    import subprocess
    import sys

    from benchmark.files import WriterLock

    ckpt, out, kw = _tiny_study(tiny_corpus, tmp_path / "two")
    held = kw["jobs"][0]  # a third worker holds this job until the end: neither of the two may take it
    claim = WriterLock(tmp_path / "two" / "runs" / f"{held['id']}-seed{held['seed']}", busy=RuntimeError)
    code = ("import json, sys; from benchmark.supernet.ranking import run_study; "
            "run_study('t', sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))")
    workers = [subprocess.Popen([sys.executable, "-c", code, str(ckpt), str(out), json.dumps(kw)]) for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    two = json.loads(out.read_text())
    assert set(two["runs"]) == {job_key(j) for j in kw["jobs"]} - {job_key(held)}
    claim.release()
    two = run_study("t", ckpt, out, **kw)  # the held job, now free
    ckpt1, out1, kw1 = _tiny_study(tiny_corpus, tmp_path / "one")
    one = run_study("t", ckpt1, out1, **kw1)
    assert {k: r for k, r in two["runs"].items()} == one["runs"] and two["halfway"] == one["halfway"]


def test_a_remedy_supernet_is_scored_like_the_released_one(tiny_corpus, tmp_path):
    from benchmark.errors import HwlmError
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.ranking import measure_remedy

    ckpt, out, kw = _tiny_study(tiny_corpus, tmp_path)
    with pytest.raises(HwlmError, match="does not exist"):
        measure_remedy(out, "distill", ckpt, data_dir=tiny_corpus)  # no study yet
    kw["jobs"] = [j for j in kw["jobs"] if j["kind"] == "standalone" and j["seed"] == 0]
    run_study("t", ckpt, out, **kw)
    remedy = tmp_path / "remedy"  # a supernet trained differently: two steps with in-place distillation
    train(TrainConfig(space="t", steps=2, warmup=1, eval_every=2, ckpt_every=2, distill=0.5, out_dir=str(remedy),
                      data_dir=str(tiny_corpus), **{k: v for k, v in TINY.items() if k != "eval_tokens"}),
          progress=False)
    for bad, match in (("no-name", "invalid remedy name"), ("distill", "invalid supernet")):
        with pytest.raises(HwlmError, match=match):
            measure_remedy(out, bad, tmp_path if bad == "distill" else remedy, data_dir=tiny_corpus)
    r = measure_remedy(out, "distill", remedy, data_dir=tiny_corpus)
    assert json.loads(out.read_text()) == r and len(r["runs"]) == 8  # the study's runs kept
    net, _ = load_run(remedy)  # the remedy's perplexities are the study's measurement of its weights
    test = np.asarray(load_split("test", tiny_corpus))
    a = get_space("t").from_id(kw["design"][0]["id"])
    assert r["remedies"]["distill"]["ppl"][a.id] == measure_perplexity(net, a, test, max_tokens=128).perplexity
    assert r["remedies"]["distill"]["train_config"]["distill"] == 0.5 and r["remedies"]["distill"]["step"] == 2
    s = summarize(r, reps=50)
    assert "supernet_distill" in s["predictors"]
    md = summary_markdown(r, s)
    assert "| supernet_distill |" in md and "distill = 0.5" in md and md.count(" distill ppl |") == 1
    assert set(s["vs_supernet"]) == {"supernet_distill"} and "Δ within-width τ" in md


def test_finetune_remedy_starts_from_the_supernet_and_is_scored_like_one(tiny_corpus, tmp_path):
    from benchmark.errors import HwlmError
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.elastic import load_supernet
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.ranking import measure_finetune
    from benchmark.supernet.train import release_checkpoint

    ckpt, out, kw = _tiny_study(tiny_corpus, tmp_path)
    kw["jobs"] = [j for j in kw["jobs"] if j["kind"] == "standalone" and j["seed"] == 0]
    run_study("t", ckpt, out, **kw)
    train(TrainConfig(space="t", steps=2, warmup=1, eval_every=2, ckpt_every=2, out_dir=str(tmp_path / "sn"),
                      data_dir=str(tiny_corpus), min_lr=1e-3, **{k: v for k, v in TINY.items() if k != "eval_tokens"}),
          progress=False)
    released = release_checkpoint(tmp_path / "sn", tmp_path / "sn.safetensors")
    for bad, match in (({"steps": 0}, "invalid steps"), ({"steps": 2, "lr": -1.0}, "invalid lr")):
        with pytest.raises(HwlmError, match=match):
            measure_finetune(out, "ft", released, data_dir=tiny_corpus, progress=False, **bad)
    with pytest.raises(HwlmError, match="invalid init_from"):
        TrainConfig(space="t", init_from=str(tmp_path / "nope.safetensors")).validate()
    with pytest.raises(HwlmError, match="invalid init_from.*context 32"):  # another shape: refused, nothing written
        train(TrainConfig(space="t", steps=1, warmup=0, out_dir=str(tmp_path / "x"), data_dir=str(tiny_corpus),
                          init_from=str(released), batch_size=2, block_size=16, threads=1), progress=False)
    assert not (tmp_path / "x").exists()
    runs, ids = tmp_path / "ft", [d["id"] for d in kw["design"]]
    # a learning rate too small to move the weights: each model is the supernet's sub-network
    r = measure_finetune(out, "still", released, 1, lr=1e-12, runs_dir=runs, data_dir=tiny_corpus, progress=False)
    net, test = load_supernet(released, "t"), np.asarray(load_split("test", tiny_corpus))
    a = get_space("t").from_id(ids[0])
    inherited = measure_perplexity(net, a, test, max_tokens=128).perplexity
    assert r["remedies"]["still"]["ppl"][a.id] == pytest.approx(inherited, rel=1e-5)
    r = measure_finetune(out, "ft", released, 2, runs_dir=runs, data_dir=tiny_corpus, progress=False)
    ft = r["remedies"]["ft"]
    assert set(ft["ppl"]) == set(ids) and ft["finetune"] == {"steps": 2, "lr": 1e-3, "batch_size": 2, "seed": 0}
    assert ft["ppl"][a.id] != pytest.approx(inherited, rel=1e-3)  # the default rate (the supernet's last) moves it
    stamp = {p: p.stat().st_mtime_ns for p in runs.rglob("state.json")}
    assert measure_finetune(out, "ft", released, 2, runs_dir=runs, data_dir=tiny_corpus, progress=False) == r
    assert stamp == {p: p.stat().st_mtime_ns for p in runs.rglob("state.json")}  # done: nothing retrained
    s = summarize(r, reps=50)
    assert {"supernet_ft", "supernet_still"} <= set(s["predictors"])
    assert "fine-tuned per architecture for 2 steps" in summary_markdown(r, s)


def test_remedy_gain_is_a_paired_difference_of_taus():
    from benchmark.supernet.ranking import _bootstrap, _paired_gains, _tau, _within_tau

    rng = np.random.default_rng(0)
    groups = np.repeat(["e=64", "e=96", "e=128"], 10)
    x = rng.lognormal(4.5, 0.1, 30)
    base = x * rng.lognormal(0, 0.08, 30)  # a noisy supernet
    inner = np.ones(30, bool)
    close = base * rng.lognormal(0, 0.003, 30)  # a remedy that changes the supernet a little
    g = _paired_gains(x, {"supernet": base, "supernet_same": base.copy(), "supernet_exact": x.copy(),
                          "supernet_close": close, "params": -x}, groups, inner, reps=200, seed=0)
    assert set(g) == {"supernet_same", "supernet_exact", "supernet_close"}  # only other supernets are compared
    same = g["supernet_same"]
    assert same["delta_tau"] == same["delta_within_width_tau"] == 0 and same["delta_tau_ci"] == [0.0, 0.0]
    exact = g["supernet_exact"]
    assert exact["delta_tau"] == pytest.approx(1 - _tau(x, base))
    assert exact["delta_within_width_tau"] == pytest.approx(1 - _within_tau(x, base, groups))
    assert 0 < exact["delta_within_width_tau_ci"][0] <= exact["delta_within_width_tau"]  # ahead in every resample
    # paired: a small change gets a narrow interval, though each tau alone is uncertain
    width = np.diff(g["supernet_close"]["delta_within_width_tau_ci"])[0]
    base_ci = _bootstrap(lambda k: _within_tau(x[k], base[k], groups[k]), groups, 200, 0)
    assert width < (base_ci[1] - base_ci[0]) / 2


def test_supernet_error_is_related_to_the_design_choices_within_widths():
    from benchmark.supernet.ranking import _error_vs_design

    archs = get_space("t").sample(3, n=40)
    groups = np.array([f"E={a.embed_dim}" for a in archs])
    layers = np.array([a.n_layer for a in archs], float)
    offset = {g: 10.0 * k for k, g in enumerate(np.unique(groups))}  # width effects must cancel out
    x = np.full(len(archs), 50.0)
    y = x * np.exp(0.1 * layers + np.array([offset[g] for g in groups]))  # errs by depth only
    e = _error_vs_design(x, {"supernet": y}, archs, groups, reps=200, seed=0)["supernet"]
    assert e["layers"]["spearman_rho"] == pytest.approx(1.0) and e["layers"]["ci"][0] > 0.99
    assert abs(e["mean MLP ratio"]["spearman_rho"]) < 0.5  # sampled independently of depth
    assert _error_vs_design(x[:3], {"supernet": y[:3]}, archs[:3], groups[:3], reps=10, seed=0) == {}


def test_within_width_ceiling_is_what_a_perfect_predictor_reaches_against_one_noisy_seed():
    from benchmark.supernet.ranking import _within_tau, _within_width_ceiling

    rng = np.random.default_rng(0)
    groups = np.repeat(["E=64", "E=128", "E=192"], 300)
    true = rng.normal(0, 0.02, len(groups)) + np.repeat([4.4, 4.2, 4.0], 300)  # widths differ: centred away
    seed0, seed1 = (true + rng.normal(0, 0.02, len(groups)) for _ in range(2))  # reliability 0.5
    c = _within_width_ceiling((seed1 - seed0)[:200], seed0, groups, reps=100, seed=0)
    assert c["reliability"] == pytest.approx(0.5, abs=0.1) and c["noise_sd_log_ppl"] == pytest.approx(0.02, rel=0.15)
    assert c["tau_ceiling"] == pytest.approx(_within_tau(seed0, true, groups), abs=0.05)  # the perfect predictor
    assert c["expected_tau_seed_vs_seed"] == pytest.approx(_within_tau(seed0, seed1, groups), abs=0.05)
    assert c["tau_ceiling_ci"][0] < c["tau_ceiling"] < c["tau_ceiling_ci"][1]


def test_within_width_tau_ignores_pairs_across_widths():
    from benchmark.supernet.ranking import _within_tau

    x = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    g = np.array(["a", "a", "a", "b", "b", "b"])
    y = np.array([3.0, 2.0, 1.0, 30.0, 20.0, 10.0])  # overall agreement high, within each width reversed
    assert _within_tau(x, y, g) == -1.0


def test_within_width_rho_pools_ranks_taken_within_each_width():
    from scipy import stats

    from benchmark.supernet.ranking import _within_rho

    g = np.array(["a", "a", "a", "b", "b", "b"])
    x = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    assert _within_rho(x, np.array([3.0, 2.0, 1.0, 30.0, 20.0, 10.0]), g) == pytest.approx(-1.0)  # reversed within
    assert _within_rho(x, np.array([31.0, 32.0, 33.0, 1.0, 2.0, 3.0]), g) == pytest.approx(1.0)  # across: ignored
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=8), rng.normal(size=8)
    one = np.array(["a"] * 8)
    assert _within_rho(x, y, one) == pytest.approx(stats.spearmanr(x, y).statistic)  # one width: Spearman's rho
    two = np.array(["a"] * 4 + ["b"] * 4)  # equal sizes: the mean of the widths' own rho
    per = [stats.spearmanr(x[two == k], y[two == k]).statistic for k in "ab"]
    assert _within_rho(x, y, two) == pytest.approx(np.mean(per))


def test_study_json_with_older_ids_reads_as_canonical():
    """The study JSON keeps growing in the older concatenated id form: the report reads it with
    canonical ids (design, supernet/halfway maps, run keys), and the numbers do not change."""
    import json
    from pathlib import Path

    from benchmark.spaces import Architecture, concatenated_id
    from benchmark.supernet.ranking import canonical_ids, job_key, summarize, summary_markdown

    raw = json.loads((Path(__file__).resolve().parents[1] / "docs/supernet/t_rank_study.json").read_text())
    old = canonical_ids(raw)  # whatever form the file holds, rewrite it in the older form ...
    old = {**old, "design": [{**d, "id": concatenated_id(Architecture.from_id(d["id"]))} for d in old["design"]],
           "supernet": {concatenated_id(Architecture.from_id(i)): v for i, v in old["supernet"].items()}}
    new = canonical_ids(old)
    assert {d["id"] for d in new["design"]} == set(new["supernet"]) and all(i.count("-") > 6 for i in new["supernet"])
    for key, r in new["runs"].items():
        assert r["kind"] != "standalone" or key == job_key(r)
    same = lambda r: json.dumps(summarize(r, reps=50), sort_keys=True)  # noqa: E731  (NaN-safe comparison)
    assert same(old) == same(new) == same(raw)
    assert "`gpt-t-" in summary_markdown(old, summarize(old, reps=50))
    assert canonical_ids(new) == new
