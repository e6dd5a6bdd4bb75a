"""Modeled devices added to a real measured table (``hwlm table add-modeled``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.profiling.devices import get_device
from benchmark.profiling.modeled import add_modeled_devices
from benchmark.profiling.roofline import DEFAULT_PARAMS, RooflineParams, predict
from benchmark.profiling.runner import profile
from benchmark.table import Table, TableError, TableWriter

SETTINGS = ["prefill-b1-s32-fp32", "prefill-b4-s32-fp32", "decode-b1-s16-fp32"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> "Path":  # noqa: F821
    out = tmp_path_factory.mktemp("modeled") / "t.h5"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWLM_LOCK_DIR", str(out.parent / "locks"))
        profile("t", out, n=6, seed=1, settings=SETTINGS, warmup=1, repeats=2, threads=1, perplexity=False,
                memory=False, energy=False, progress=False)
    return out


def test_modeled_devices_cover_every_row(measured, tmp_path):
    path = tmp_path / "t.h5"
    path.write_bytes(measured.read_bytes())
    r = add_modeled_devices(path, devices=["gpu-h100-sxm5-80gb", "cpu-xeon-gold-6242"])
    t = Table(path)
    assert r["devices"] == ["gpu-h100-sxm5-80gb", "cpu-xeon-gold-6242"]
    h100 = t.devices()["gpu-h100-sxm5-80gb"]
    assert h100["source"] == "modeled" and h100["kind"] == "gpu"
    assert "uncalibrated" in h100["provenance"]["calibration"]  # no measured GPU in this table
    assert t.settings("gpu-h100-sxm5-80gb") == sorted(s.replace("fp32", "fp16") for s in SETTINGS)
    assert t.settings("cpu-xeon-gold-6242") == sorted(SETTINGS)
    # the stored values are the roofline model's, with the parameters recorded in the provenance
    lat = t.hardware("gpu-h100-sxm5-80gb", "prefill-b4-s32-fp16", "latency_ms")
    assert lat.shape == (len(t), 1) and np.isfinite(lat).all()
    want = predict(t.architectures(), "prefill-b4-s32-fp16", get_device("gpu-h100-sxm5-80gb"),
                   DEFAULT_PARAMS["gpu"]).latency_ms
    np.testing.assert_allclose(lat[:, 0], want)
    cpu = t.devices()["cpu-xeon-gold-6242"]["provenance"]
    params = RooflineParams(**cpu["roofline_params"])
    assert params.fitted_on and params.n_obs == 3 * len(t)
    cv = cpu["calibration"]["two_fold_cv"]
    assert set(cv) == set(SETTINGS) and all(v["n"] == len(t) and v["mape"] >= 0 for v in cv.values())
    # measured rows are untouched
    m = Table(measured)
    dev = next(iter(m.devices()))
    np.testing.assert_array_equal(t.hardware(dev, SETTINGS[0], "latency_ms"), m.hardware(dev, SETTINGS[0], "latency_ms"))


def test_query_api_evaluates_the_stored_roofline_model(measured, tmp_path):
    """The query API answers a modeled device with its roofline model rebuilt from the provenance
    (calibrated CPU parameters, decode_tokens from the setting): on the table's rows it reproduces
    every stored value, and unprofiled architectures get source ``modeled`` (no surrogate exists)."""
    from benchmark import Benchmark

    path = tmp_path / "table_t.h5"
    path.write_bytes(measured.read_bytes())
    add_modeled_devices(path, devices=["gpu-h100-sxm5-80gb", "cpu-xeon-gold-6242"])
    b = Benchmark("t", tmp_path)  # a release with a table only
    t = b.table
    enc = np.asarray(t.encodings)
    new = b.space.encode_many([a for a in b.space.sample(7, n=40) if a not in t])
    for dev in ("gpu-h100-sxm5-80gb", "cpu-xeon-gold-6242"):
        for setting in t.settings(dev):
            got = b.query_batch(enc, metrics=["latency_ms", "energy_mj"], device=dev, setting=setting,
                                mode="surrogate", as_frame=False)
            for m in ("latency_ms", "energy_mj"):
                assert got["source"][m] == "modeled"
                np.testing.assert_allclose(got[m], t.hardware(dev, setting, m)[:, 0], rtol=1e-12, atol=0)
            r = b.query_batch(new, metrics=["latency_ms", "energy_mj"], device=dev, setting=setting, as_frame=False)
            assert r["source"] == {"latency_ms": "modeled", "energy_mj": "modeled"}
            prov = t.provenance(dev)
            want = predict([b.space.decode(e) for e in new], setting, get_device(dev),
                           RooflineParams(**prov["roofline_params"]),
                           decode_tokens=t.setting_attrs(dev, setting).get("decode_tokens", 16))
            np.testing.assert_allclose(r["latency_ms"], want.latency_ms, rtol=1e-12, atol=0)
            np.testing.assert_allclose(r["energy_mj"], want.energy_mj, rtol=1e-12, atol=0)


@pytest.mark.parametrize("space", ["t", "s", "l"])
def test_encoded_roofline_equals_predict(space):
    """EncodedRoofline (per-layer lookup from integer encodings) and operator_table_encodings give
    what predict / operator_table give on Architecture objects."""
    from benchmark.profiling.roofline import EncodedRoofline, operator_table, operator_table_encodings
    from benchmark.spaces import get_space

    sp = get_space(space)
    archs = sp.sample(3, n=60) + [sp.smallest(), sp.largest()]
    enc = sp.encode_many(archs)
    for setting, dev, params in (("prefill-b2-s64-fp16", "gpu-a100-sxm4-40gb", None),
                                 ("decode-b4-s32-fp32", "cpu-epyc-7513", RooflineParams(0.3, 5.0, 2e-5, 0.4)),
                                 ("prefill-b1-s16-fp32", "gpu-rtx2080", None)):
        a = operator_table(archs, setting, decode_tokens=5)
        e = operator_table_encodings(space, enc, setting, decode_tokens=5)
        assert a.names == e.names and np.array_equal(a.flops, e.flops) and np.array_equal(a.bytes, e.bytes)
        assert np.array_equal(a.live, e.live) and e.arch_ids == ()
        want = predict(archs, setting, dev, params, decode_tokens=5)
        lat, energy = EncodedRoofline(space, setting, dev, params, decode_tokens=5).evaluate(enc)
        np.testing.assert_allclose(lat, want.latency_ms, rtol=1e-12, atol=0)
        np.testing.assert_allclose(energy, want.energy_mj, rtol=1e-12, atol=0)
        one = EncodedRoofline(space, setting, dev, params, decode_tokens=5).evaluate(enc[4:5])
        assert one[0][0] == lat[4] and one[1][0] == energy[4]  # the same sum whatever the batch


def test_recompute_replaces_and_measured_devices_are_protected(measured, tmp_path):
    path = tmp_path / "t.h5"
    path.write_bytes(measured.read_bytes())
    add_modeled_devices(path, devices=["gpu-a100-sxm4-40gb"])
    add_modeled_devices(path, devices=["gpu-a100-sxm4-40gb"])  # recomputation replaces, never duplicates
    t = Table(path)
    assert sorted(t.devices()) == sorted([*Table(measured).devices(), "gpu-a100-sxm4-40gb"])
    dev = next(d for d, m in t.devices().items() if m["source"] == "measured")
    with TableWriter(path, "t") as w:
        with pytest.raises(TableError, match="modeled"):
            w.remove_modeled_device(dev)
        with pytest.raises(TableError, match="modeled"):
            w.set_modeled(dev, SETTINGS[0], "latency_ms", {t.ids[0]: 1.0})
        with pytest.raises(TableError, match="architecture id"):
            w.set_modeled("gpu-a100-sxm4-40gb", "prefill-b1-s32-fp16", "latency_ms", {"gpt-t-nope": 1.0})


def test_no_measured_device_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.h5"
    with TableWriter(path, "t") as w:
        w.declare_metric("params", unit="1", source="exact")
    with pytest.raises(TableError, match="no measured device"):
        add_modeled_devices(path)


def test_data_card_reports_devices_noise_drift_and_calibration(measured, tmp_path):
    from benchmark.datacard import noise_table, write_data_card

    path = tmp_path / "t.h5"
    path.write_bytes(measured.read_bytes())
    add_modeled_devices(path, devices=["gpu-h100-sxm5-80gb", "cpu-epyc-7513"])
    md = write_data_card(path, tmp_path / "card" / "t.md").read_text()
    t = Table(path)
    dev = next(d for d, m in t.devices().items() if m["source"] == "measured")
    assert f"| `{dev}` | measured | 3 | {len(t)} |" in md and "| `gpu-h100-sxm5-80gb` | modeled |" in md
    noise = noise_table(t)
    assert {r["setting"] for r in noise} == set(SETTINGS) and all(r["rows"] == len(t) for r in noise)
    x = t.hardware(dev, SETTINGS[0], "latency_ms")
    cv = np.median(np.nanstd(x, 1, ddof=1) / np.nanmean(x, 1))
    assert f"{cv:.1%}" in md  # the card's noise figures are the table's
    assert "uncalibrated defaults" in md and "Two-fold cross-validated error" in md
    assert (tmp_path / "card" / "t_distributions.png").stat().st_size > 0
    assert (tmp_path / "card" / "t_drift.png").stat().st_size > 0
