"""Bring your own device: the design, the four latency predictors and their choice, ``hwlm device
add`` end to end (a real timing pass of five architectures at tiny settings, one round), the
overlay served by ``Benchmark``, resuming a half-finished run, and every refusal."""

import json
import shutil

import numpy as np
import pytest

from benchmark import Benchmark
from benchmark.byod import ByodError, DeviceRequest, add_device, choose_rows
from benchmark.errors import HwlmError
from benchmark.query.results import QueryError
from benchmark.release import write_manifest
from benchmark.spaces import get_space
from surrogates.transfer import METHODS, Inputs, TransferError, fit_setting, predict_log, roofline_reference

SETTINGS = ("prefill-b1-s16-fp32", "decode-b1-s8-fp32")
TINY = dict(budget=5, rounds=1, repeats_per_round=1, warmup=0, settings=SETTINGS)


@pytest.fixture(autouse=True)
def _private_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLM_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    out = tmp_path_factory.mktemp("byod") / "box"
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWLM_LOCK_DIR", str(out.parent / "locks"))
        add_device(DeviceRequest("my-box", str(out), **TINY), progress=False, log=lines.append)
    return out, lines


# ---------------------------------------------------------------------------- design
def test_stratified_design_draws_one_row_per_stratum_and_is_seeded():
    scores = np.arange(100.0)[::-1]  # row i has score 99 - i
    rows = choose_rows(scores, 10, seed=3)
    assert len(set(rows)) == 10 and np.array_equal(rows, choose_rows(scores, 10, seed=3))
    strata = sorted((99 - rows) // 10)
    assert strata == list(range(10))  # one per tenth of the score range
    assert not np.array_equal(rows, choose_rows(scores, 10, seed=4))
    assert len(set(choose_rows(scores, 10, seed=0, design="random"))) == 10
    for bad in (0, 101, 2.5, True):
        with pytest.raises(ByodError, match="invalid budget"):
            choose_rows(scores, bad, seed=0)
    with pytest.raises(ByodError, match="invalid design"):
        choose_rows(scores, 5, seed=0, design="latin")


# ---------------------------------------------------------------------------- predictors
def _roofline_device(enc, setting):
    """A device whose latency is a known roofline model (real operator tables), and its spec."""
    from benchmark.profiling.devices import get_device
    from benchmark.profiling.modeled import modeled_provenance
    from benchmark.profiling.roofline import DEFAULT_PARAMS, RooflineParams
    from surrogates.transfer import reference_matrix

    spec = get_device("cpu-epyc-7513")
    true = modeled_provenance(spec, RooflineParams(eff_compute=0.2, eff_memory=0.3, overhead_s=2e-5), "test", "fp32")
    start = modeled_provenance(spec, DEFAULT_PARAMS["cpu"], "test", "fp32")
    ms = np.exp(reference_matrix("t", [roofline_reference("dev", "cpu", true, setting, 16)], enc)[:, 0])
    return ms, start


def test_each_predictor_fits_round_trips_as_json_and_the_best_is_kept():
    sp = get_space("t")
    enc = np.array([a.encoding() for a in sp.sample(11, 60)])
    st = "prefill-b1-s256-fp32"
    ms, spec = _roofline_device(enc, st)
    refs = np.log(ms)[:, None] + np.random.default_rng(0).normal(0, 0.05, (60, 1))  # a related device
    inp = Inputs.build("t", st, 16, enc, refs)
    rows = np.arange(12)
    fit = fit_setting(inp.take(rows), ms[rows], spec, seed=0)
    assert set(fit["cv"]) == set(METHODS) and fit["method"] == "roofline"  # the truth is a roofline model
    assert fit["cv"]["roofline"]["rmse_log"] < 0.01 < fit["cv"]["flops"]["rmse_log"]
    test = inp.take(np.arange(12, 60))
    for m in METHODS:
        model = json.loads(json.dumps(fit["models"][m]))  # plain JSON, nothing else
        pred = predict_log(m, model, test)
        assert np.array_equal(pred, predict_log(m, fit["models"][m], test)) and np.isfinite(pred).all()
    assert np.allclose(np.exp(predict_log("roofline", fit["model"], test)), ms[12:], rtol=0.02)
    q5, q95 = fit["residual_q"]
    assert q5 <= 0 <= q95 or abs(q5) < 0.01


def test_predictor_inputs_are_checked():
    sp = get_space("t")
    enc = np.array([a.encoding() for a in sp.sample(1, 8)])
    inp = Inputs.build("t", "prefill-b1-s256-fp32", 16, enc, np.zeros((8, 0)))
    ms, spec = _roofline_device(enc, "prefill-b1-s256-fp32")
    with pytest.raises(TransferError, match="at least 5"):
        fit_setting(inp.take(np.arange(4)), ms[:4], spec)
    with pytest.raises(TransferError, match="invalid ms"):
        fit_setting(inp, np.where(np.arange(8) == 3, np.nan, ms), spec)
    with pytest.raises(TransferError, match="invalid methods"):
        fit_setting(inp, ms, spec, methods=("gp",))


# ---------------------------------------------------------------------------- hwlm device add
def test_device_add_writes_an_overlay_that_benchmark_serves(overlay):
    out, lines = overlay
    meta = json.loads((out / "overlay.json").read_text())
    assert meta["device"] == "my-box" and len(meta["design"]["archs"]) == 5 and meta["design"]["seed"] == 0
    assert [m["setting"] for m in meta["models"]] == list(SETTINGS)
    assert any("overlay:" in line and str(out) in line for line in lines)
    b = Benchmark("t", overlays=[out])
    info = b.devices()["my-box"]
    assert info["source"] == "measured" and info["settings"] == list(SETTINGS)
    assert set(info["estimated_error"]) == set(SETTINGS)
    assert all(e["method"] in METHODS and "kendall_tau" in e for e in info["estimated_error"].values())
    measured = meta["design"]["archs"][0]
    r = b.query(measured, metrics=["latency_ms"], device="my-box", setting=SETTINGS[1])
    assert r.sources["latency_ms"] == "measured"
    from benchmark.table import Table

    t = Table(out / "shard.h5")
    assert r["latency_ms"] == pytest.approx(np.nanmedian(t.hardware("my-box", SETTINGS[1], "latency_ms")[0]))
    other = next(a for a in b.table.ids.tolist() if a not in meta["design"]["archs"])
    r = b.query(other, metrics=["latency_ms"], device="my-box", setting=SETTINGS[0])
    lo, hi = r.intervals["latency_ms"]
    assert r.sources["latency_ms"] == "surrogate" and lo <= r["latency_ms"] <= hi and r["latency_ms"] > 0
    df = b.query_batch([measured, other, b.space.sample(seed=5).id], metrics=["latency_ms"], device="my-box",
                       setting=SETTINGS[0], source_columns=True)
    assert df["latency_ms_source"].tolist() == ["measured", "surrogate", "surrogate"]
    assert df["latency_ms"].tolist()[1] == pytest.approx(r["latency_ms"])
    everything = b.query(other, device="my-box")  # every metric, at the device's first setting
    assert everything["latency_ms"] == pytest.approx(r["latency_ms"]) and everything.sources["flops"] == "exact"
    with pytest.raises(QueryError, match="invalid architecture"):
        b.query(other, metrics=["latency_ms"], device="my-box", setting=SETTINGS[0], mode="table")
    assert "my-box" not in Benchmark("t").devices()


def test_a_half_finished_run_resumes_to_the_same_design(overlay, tmp_path):
    out, _ = overlay
    half = tmp_path / "half"
    (half / "run").mkdir(parents=True)
    log = (out / "run" / "visits.jsonl").read_text().splitlines()
    (half / "run" / "visits.jsonl").write_text("\n".join(log[:3]) + "\n")  # header + two visits: a killed run
    with pytest.raises(QueryError, match="half-finished"):
        Benchmark("t", overlays=[half])
    with pytest.raises(HwlmError, match="another pass"):
        add_device(DeviceRequest("my-box", str(half), **{**TINY, "seed": 1}), progress=False, log=lambda _: None)
    add_device(DeviceRequest("my-box", str(half), **TINY), progress=False, log=lambda _: None)
    a, b = (json.loads((d / "overlay.json").read_text()) for d in (out, half))
    assert a["design"] == b["design"]
    assert (half / "run" / "visits.jsonl").read_text().splitlines()[:3] == log[:3]  # kept, not re-timed
    with pytest.raises(ByodError, match="finished overlay"):
        add_device(DeviceRequest("my-box", str(half), **TINY), progress=False, log=lambda _: None)


@pytest.mark.parametrize("change, match", [
    (dict(runtime="tensorrt"), "invalid runtime"),
    (dict(runtime="onnxruntime", dtype="bf16"), "invalid dtype"),
    (dict(budget=4), "invalid budget"),
    (dict(budget=10 ** 6), "invalid budget"),
    (dict(name="cpu-epyc-1c"), "already a device of the release"),
    (dict(name="my box"), "invalid device name"),
    (dict(threads=4096), "invalid threads: 4096; allowed: 1.."),
])
def test_device_add_refuses_bad_input(tmp_path, change, match):
    req = DeviceRequest(**{"name": "my-box", "out": str(tmp_path / "o"), **TINY, **change})
    with pytest.raises(ByodError, match=match):
        add_device(req, progress=False, log=lambda _: None)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_the_command_line_says_one_line_and_exits_2(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["device", "add", "my-box", "--out", str(tmp_path / "o"), "--runtime", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid runtime: 'tensorrt'" in err and "onnxruntime" in err


def test_overlays_for_another_release_or_tampered_or_clashing_are_refused(overlay, tmp_path):
    out, _ = overlay
    with pytest.raises(QueryError, match="already in this release"):
        Benchmark("t", overlays=[out, out])
    other = tmp_path / "other"
    shutil.copytree(out, other)
    meta = json.loads((other / "overlay.json").read_text())
    (other / "overlay.json").write_text(json.dumps({**meta, "release_table_sha256": "0" * 64}))
    with pytest.raises(QueryError, match="does not match its MANIFEST"):  # edited after the manifest
        Benchmark("t", overlays=[other])
    write_manifest(other, "t")
    with pytest.raises(QueryError, match="made for the release whose table has sha256 000000000000"):
        Benchmark("t", overlays=[other])
    (other / "overlay.json").write_text(json.dumps({**meta, "space": "s"}))
    write_manifest(other, "t")
    with pytest.raises(QueryError, match="for space 's'"):
        Benchmark("t", overlays=[other])
    with pytest.raises(QueryError, match="invalid overlays"):
        Benchmark("t", overlays=str(out))
    for bad in (1, None, b"bytes"):
        with pytest.raises(QueryError, match="invalid overlay: "):
            Benchmark("t", overlays=[bad])


def test_the_published_validation_renders_its_summary_for_every_held_out_device():
    """docs/devices.md quotes the summary that ``--from-json --summary-k`` prints from the shipped JSON."""
    import subprocess
    import sys

    from benchmark.paths import REPO_ROOT

    summary = json.loads((REPO_ROOT / "docs" / "byod_validation.json").read_text())
    out = subprocess.run([sys.executable, "scripts/byod_validation.py", "--out", "docs/byod_validation.json",
                          "--from-json", "--markdown", "--summary-k", "20"], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith(("| held-out", "| ---"))]
    measured = {e["device"] for e in summary["aggregate"] if e["source"] == "measured"}
    assert len(measured) >= 5 and {r.split(" | ")[0][2:] for r in rows} == measured
    assert len(rows) == sum(len(summary["devices"][d]["settings"]) for d in measured)
    docs = (REPO_ROOT / "docs" / "devices.md").read_text()
    assert all(r in docs for r in rows)  # the docs hold this run's figures, not an older run's
