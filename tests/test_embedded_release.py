"""The embedded `t` release in data/: its table, surrogates and supernet answer every query.

These tests read the real released files (nothing synthetic); they are skipped only in a
checkout that has no release yet.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.paths import data_dir

pytestmark = pytest.mark.skipif(not (data_dir() / "table_t.h5").exists(), reason="no embedded table in data/")


@pytest.fixture(scope="module")
def bench():
    from benchmark import Benchmark

    return Benchmark("t")


def test_release_is_consistent(bench):
    from benchmark.release import verify_release
    from benchmark.table import Table

    verify_release(data_dir(), space="t")
    t = Table(data_dir() / "table_t.h5")
    from benchmark.release import sha256_file

    assert t.attrs["supernet_sha256"] == sha256_file(data_dir() / "supernet_t.safetensors")
    assert t.attrs["tokenizer_sha256"] == sha256_file(data_dir() / "tokenizer.json")
    assert t.attrs["eval_tokens"] >= 65536
    measured = [d for d, m in t.devices().items() if m["source"] == "measured"]
    assert measured and all(m["source"] in ("measured", "modeled") for m in t.devices().values())


def test_every_metric_of_every_device_for_profiled_and_unprofiled_archs(bench):
    profiled = bench.table.architectures()[0]
    # not seed 0: the release's table holds space.sample(seed=0, n=2000) itself
    rng = np.random.default_rng(2026)
    unprofiled = next(a for a in bench.space.sample(rng, 200) if a not in bench.table)
    row = bench.table.row(profiled)
    for dev, info in bench.devices().items():
        for setting in info["settings"]:
            # table mode answers only what the row has (memory of runtime devices covers a subset)
            stored = [m for m in bench.table.hardware_metrics(dev, setting)
                      if np.isfinite(bench.table.hardware(dev, setting, m)[row]).any()]
            for arch, mode in ((profiled, "table"), (unprofiled, "surrogate")):
                metrics = ["perplexity", "params", *stored] if mode == "table" else None
                r = bench.query(arch, device=dev, setting=setting, mode=mode, metrics=metrics)
                for m in r:
                    if r.sources[m] == "missing":
                        assert np.isnan(r[m]) and r.missing[m]
                        continue
                    assert np.isfinite(r[m]) and r[m] > 0, (dev, setting, m, r[m])
                    if m in ("params", "params_no_embedding", "flops"):
                        assert r.sources[m] == "exact"
                    elif mode == "table":
                        assert r.sources[m] == ("measured" if m in ("perplexity", "token_accuracy")
                                                else info["source"])
                    elif info["source"] == "modeled" and m in ("latency_ms", "energy_mj"):
                        assert r.sources[m] == "modeled"  # the device's roofline model, evaluated directly
                    else:
                        assert r.sources[m] == "surrogate"


def test_modeled_devices_are_their_roofline_model(bench):
    """For every modeled device, setting and metric, the roofline model the API evaluates (with the
    parameters and spec sheet in the device's provenance) reproduces the table's stored values on
    the table's rows — the direct path is what profiling stored — and answers unprofiled
    architectures with source ``modeled``."""
    t = bench.table
    enc = np.asarray(t.encodings)
    rng = np.random.default_rng(1)
    unprofiled = bench.space.encode_many([a for a in bench.space.sample(rng, 300) if a not in t][:50])
    modeled = {d: i for d, i in bench.devices().items() if i["source"] == "modeled"}
    assert modeled
    for dev, info in modeled.items():
        for setting in info["settings"]:
            metrics = sorted(t.hardware_metrics(dev, setting))
            assert set(metrics) == {"latency_ms", "energy_mj"}, (dev, setting)
            got = bench.query_batch(enc, metrics=metrics, device=dev, setting=setting, mode="surrogate", as_frame=False)
            new = bench.query_batch(unprofiled, metrics=metrics, device=dev, setting=setting, as_frame=False)
            for m in metrics:
                assert got["source"][m] == new["source"][m] == "modeled", (dev, setting, m)
                np.testing.assert_allclose(got[m], t.hardware(dev, setting, m)[:, 0], rtol=1e-12, atol=0,
                                           err_msg=f"{dev} {setting} {m}")
                assert np.isfinite(new[m]).all() and (new[m] > 0).all()


def test_inherited_perplexity_is_reproducible_from_the_release(bench):
    """A table perplexity is what the released supernet gives on the released test split."""
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.corpus import load_split
    from benchmark.supernet.elastic import load_supernet

    t = bench.table
    ppl = t.metric("perplexity")
    i = int(np.flatnonzero(np.isfinite(ppl))[0])
    arch = t.architectures()[i]
    net = load_supernet(data_dir() / "supernet_t.safetensors", "t")
    r = measure_perplexity(net, arch, np.asarray(load_split("test", data_dir())),
                           max_tokens=int(t.attrs["eval_tokens"]))
    assert r.perplexity == pytest.approx(ppl[i], rel=1e-5)


def test_every_shipped_t_suite_resolves_and_runs_on_the_embedded_release(bench):
    from benchmark.moo.suites import load_suites

    for s in load_suites().values():
        if s.space != "t":
            continue
        r = s.resolve(bench)
        devices = [o.device for o in r.objective_list() if o.device is not None]
        assert all(d in bench.devices() for d in devices), (s.name, devices)
        problem = r.override(budget=3).problem(bench)
        y = problem.evaluate(bench.space.sample(3, 2))
        assert np.isfinite(np.asarray(y, float)).all(), s.name


def test_info_lists_what_each_space_answers_from(bench, capsys):
    from benchmark.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    measured = [d for d, v in bench.devices().items() if v["source"] == "measured"]
    line = next(x for x in out.splitlines() if x.startswith(f"  table of {bench.table.n:,} architectures"))
    assert all(d in line for d in measured) and f"{len(bench.models.entries)} surrogates" in line
    assert "perplexity (measured)" in out and "perplexity (imported)" in out  # t's own, HW-GPT-Bench's for s/m/l
    assert out.count("no table;") == 2  # m and l: exact, modeled and imported only
