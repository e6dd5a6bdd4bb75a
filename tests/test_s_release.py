"""The `s` release pipeline end to end on a real tiny pass: a timing pass of `s` architectures without
a table (scripts/timing_pass.py), its shard, scripts/build_release.py --space s, and what
Benchmark("s") then serves (measured rows, surrogates, modeled devices, exact metrics, imported
perplexity, each labelled); the `s` MOO suites."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from benchmark import Benchmark
from benchmark.hwgpt_perplexity import predict as imported_perplexity
from benchmark.moo.problems import ProblemError
from benchmark.moo.suites import Suite, get_suite
from benchmark.paths import REPO_ROOT
from benchmark.profiling.runtimes.registry import RuntimeDevice
from benchmark.release import embedded_release, list_release_files, verify_release
from benchmark.spaces import Architecture, get_space
from benchmark.table import Table

# the tiny pass runs on this machine: its device id names this host (cpu-epyc-1c on the VM that timed
# the release; the table keeps PyTorch fp32 devices under the short id)
HERE = RuntimeDevice("torch", "fp32", 1).device_id()
DEV = HERE.removesuffix("-torch-fp32")
TINY = ["--settings", "prefill-b1-s16-fp32", "decode-b1-s8-fp32", "--decode-tokens", "2", "--warmup", "0",
        "--device", HERE, "--quiet"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _private_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLM_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("HWLM_CACHE_DIR", str(tmp_path / "cache"))


def _small_archs(n=8, seed=3):
    """``n`` distinct `s` architectures of the smallest width and depth (cheap to build and time)."""
    rng = np.random.default_rng(seed)
    out = {}
    while len(out) < n:
        a = Architecture("s", 192, 10, tuple(int(h) for h in rng.choice([4, 8, 12], 10)),
                         tuple(int(m) for m in rng.choice([2, 3, 4], 10)), bool(rng.integers(2)))
        out[a.id] = a
    return list(out.values())


@pytest.fixture(scope="module")
def s_release(tmp_path_factory):
    """A real tiny pass of 8 small `s` architectures (1 round x 2 repeats, tiny shapes), its shard and
    the release built from it, in data/s/ of a private data directory."""
    tmp = tmp_path_factory.mktemp("s_release")
    timing = _script("timing_pass")
    archs = _small_archs()
    (tmp / "archs.txt").write_text("\n".join(a.id for a in archs) + "\n")
    log = tmp / "s.jsonl"
    common = ["--archs", str(tmp / "archs.txt"), "--log", str(log), "--rounds", "1", "--repeats-per-round", "2",
              "--anchor-every", "4", *TINY]
    assert timing.main(common) == 0
    shard = tmp / "shard.h5"
    assert timing.main([*common, "--to-table", str(shard)]) == 0
    rel = tmp / "data" / "s"
    assert _script("build_release").main([str(shard), "--space", "s", "--out", str(rel), "--docs",
                                          str(tmp / "docs"), "--threads", "1"]) == 0
    return {"archs": archs, "log": log, "shard": shard, "release": rel, "docs": tmp / "docs"}


def test_the_shard_holds_exact_metrics_and_measured_latency_of_every_architecture(s_release):
    t = Table(s_release["shard"])
    archs = s_release["archs"]
    assert t.space.name == "s" and sorted(map(str, t.ids)) == sorted(a.id for a in archs)
    assert "perplexity" not in t.metrics()
    assert t.metrics()["params"]["source"] == "exact"
    from benchmark import costs

    rows = [t.row(a) for a in archs]
    assert np.array_equal(t.metric("params")[rows], costs.params(archs))
    prov = t.provenance(DEV)
    assert t.devices()[DEV]["source"] == "measured" and "seeded random" in prov["weights"]
    for s in ("prefill-b1-s16-fp32", "decode-b1-s8-fp32"):
        lat = t.hardware(DEV, s, "latency_ms")
        assert lat.shape == (8, 2) and np.isfinite(lat).all() and (lat > 0).all()
    assert Path(str(s_release["log"]) + ".archs").read_text().split() == [a.id for a in archs]


def test_benchmark_s_serves_every_source_labelled(s_release, monkeypatch):
    rel = s_release["release"]
    verify_release(rel, space="s")
    monkeypatch.setenv("HWLM_DATA_DIR", str(rel.parent))
    assert embedded_release("s") == rel  # data/s/ is a release of its own: Benchmark("s") opens it
    assert not any(p.startswith("s/") for p in list_release_files(rel.parent))  # never listed by data/'s manifest
    b = Benchmark("s")
    assert b.path == rel and b.table is not None
    devs = b.devices()
    assert devs[DEV]["source"] == "measured" and devs["gpu-rtx2080"]["source"] == "modeled"
    assert b.metrics()["perplexity"]["source"] == "imported"
    inside, outside = s_release["archs"][0], get_space("s").largest()
    r = b.query(inside, device=DEV, setting="prefill-b1-s16-fp32")
    assert r.sources == {"perplexity": "imported", "latency_ms": "measured", "params": "exact",
                         "params_no_embedding": "exact", "flops": "exact", "energy_mj": "missing"}
    assert "latency only" in r.missing["energy_mj"]  # a timing pass: the query says why there is no energy
    assert r["perplexity"] == pytest.approx(imported_perplexity("s", inside.encoding()[None])[0])
    assert "HW-GPT-Bench" in r.provenance["perplexity"]["predictor"]
    measured = b.table.hardware(DEV, "prefill-b1-s16-fp32", "latency_ms")[b.table.row(inside)]
    assert r["latency_ms"] == pytest.approx(np.median(measured))
    r = b.query(outside, device=DEV, setting="decode-b1-s8-fp32")
    assert r.sources["latency_ms"] == "surrogate" and r.sources["perplexity"] == "imported" and r["latency_ms"] > 0
    r = b.query(outside, metrics=["latency_ms"], device="gpu-rtx2080")
    assert r.sources == {"latency_ms": "modeled"} and r["latency_ms"] > 0
    card = (s_release["docs"] / "data_card_s.md").read_text()
    assert "holds no perplexity" in card and "`imported`" in card and "seeded random weights" in card


def test_the_measured_cpu_suite_runs_on_the_release_and_says_what_it_needs_without(s_release, tmp_path):
    cpu = json.loads(json.dumps(get_suite("s-ppl-latency-cpu").to_dict()))
    cpu["objectives"][1]["setting"] = ["prefill-b1-s16-fp32"]  # the tiny pass's shape
    suite = Suite.from_dict("s-tiny", {k: v for k, v in cpu.items() if k not in ("name", "version")})
    b = Benchmark("s", path=s_release["release"])
    resolved = suite.resolve(b)
    assert resolved.objectives[1]["device"] == DEV
    values = resolved.problem(b).evaluate(s_release["archs"][:2])
    assert values.shape == (2, 2) and np.isfinite(values).all()
    empty = tmp_path / "no-release"
    empty.mkdir()
    with pytest.raises(ProblemError, match="needs the s release .*build_release.py --space s"):
        get_suite("s-ppl-latency-cpu").resolve(Benchmark("s", path=empty))  # no s release: refused, saying how
    embedded = get_suite("s-ppl-latency-cpu").resolve(Benchmark("s"))  # the package's own s release
    assert [o["source"] for o in embedded.objectives] == ["imported", "measured"]


def test_the_gpu_suite_resolves_now_and_its_labels_are_checked():
    b = Benchmark("s")
    s = get_suite("s-ppl-latency-gpu")
    assert "imported" in s.description and "modeled" in s.description
    r = s.resolve(b)
    assert [o["source"] for o in r.objectives] == ["imported", "modeled"] and r.objectives[1]["device"] == "gpu-rtx2080"
    F = r.problem(b).evaluate(get_space("s").sample(0, 4))
    assert F.shape == (4, 2) and np.isfinite(F).all()
    wrong = s.to_dict()
    wrong["objectives"][0]["source"] = "measured"
    with pytest.raises(ProblemError, match="labelled 'measured', but the release serves it as 'imported'"):
        Suite.from_dict("wrong", {k: v for k, v in wrong.items() if k not in ("name", "version")}).resolve(b)


def test_a_sampled_pass_records_its_list_and_refuses_another(tmp_path, capsys):
    timing = _script("timing_pass")
    log = tmp_path / "s.jsonl"
    sp = get_space("s")
    base = ["--space", "s", "--log", str(log), "--rounds", "1", "--repeats-per-round", "1", *TINY]
    assert timing.main([*base, "--sample", "0", "--max-minutes", "0"]) == 0  # one visit, then a clean stop
    assert Path(str(log) + ".archs").read_text().split() == [sp.largest().id, sp.smallest().id]
    with pytest.raises(SystemExit) as e:
        timing.main([*base, "--sample", "3"])
    assert e.value.code == 2 and "records another list" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        timing.main([*base[2:], "--space", "s"])  # --space without --sample
    assert e.value.code == 2 and "--space/--sample" in capsys.readouterr().err


def test_the_front_of_the_embedded_s_table_takes_the_imported_perplexity_per_row():
    b = Benchmark("s")
    objs = [("perplexity", None, None), ("latency_ms", "cpu-epyc-1c", "prefill-b1-s256-fp32")]
    front = b.pareto_front(objs)
    lat = "latency_ms@cpu-epyc-1c@prefill-b1-s256-fp32"
    assert front.attrs["sources"] == {"perplexity": "imported", lat: "measured"} and 2 <= len(front) < len(b.table.ids)
    r = b.query_batch(list(front["id"]), metrics=["perplexity", "latency_ms"], device="cpu-epyc-1c",
                      setting="prefill-b1-s256-fp32", as_frame=False)
    assert np.array_equal(r["perplexity"], front["perplexity"].to_numpy())
    assert np.array_equal(r["latency_ms"], front[lat].to_numpy())
    # nothing of the table dominates a front row
    every = b.query_batch(list(b.table.ids), metrics=["perplexity", "latency_ms"], device="cpu-epyc-1c",
                          setting="prefill-b1-s256-fp32", as_frame=False)
    F = np.column_stack([every["perplexity"], every["latency_ms"]])
    for p, q in zip(front["perplexity"], front[lat]):
        assert not np.any((F[:, 0] <= p) & (F[:, 1] <= q) & ((F[:, 0] < p) | (F[:, 1] < q)))


def test_the_committed_data_card_is_what_the_script_writes(tmp_path):
    """docs/data_card_s.md (and its plots) come from ``build_release.py --card-only`` on the
    embedded release and the committed evidence and conditions, byte for byte."""
    docs = tmp_path / "docs"
    (docs / "protocol").mkdir(parents=True)
    (docs / "protocol" / "s_evidence.json").write_bytes((REPO_ROOT / "docs" / "protocol" / "s_evidence.json").read_bytes())
    assert _script("build_release").main(["--space", "s", "--card-only", "--docs", str(docs),
                                          "--notes", str(REPO_ROOT / "docs" / "data_card_s_conditions.md")]) == 0
    for f in ["data_card_s.md", *sorted(p.name for p in docs.glob("*.png"))]:
        assert (docs / f).read_bytes() == (REPO_ROOT / "docs" / f).read_bytes(), f
    assert _script("build_release").main(["--space", "s", "--card-only", "shard.h5"]) == 2  # one or the other


def test_a_timing_pass_refuses_a_device_id_of_another_host(tmp_path, capsys):
    """A shard names the host that timed it: an id of another CPU is refused before any timing."""
    other = "cpu-othercpu-1c-torch-fp32" if not HERE.startswith("cpu-othercpu-") else "cpu-elsewhere-1c-torch-fp32"
    args = ["--space", "s", "--sample", "2", "--log", str(tmp_path / "x.jsonl"), *TINY]
    args[args.index(HERE)] = other
    with pytest.raises(SystemExit) as e:
        _script("timing_pass").main(args)
    assert e.value.code == 2 or "invalid --device" in str(e.value)
    msg = str(e.value) + capsys.readouterr().err
    assert f"invalid --device: {other!r} names host" in msg and repr(HERE) in msg
    assert not list(tmp_path.iterdir())  # nothing written, not even the list of architectures
