"""HWGPTBenchCompat runs HW-GPT-Bench's documented usage unchanged (but for the class name), with
HW-GPT-Bench's return shapes and units, and refuses what it cannot answer clearly."""

import math

import pytest

from benchmark import Benchmark
from benchmark import HWGPTBenchCompat
from benchmark.api import QueryError
from benchmark.hwgpt_compat import HWGPT_DEVICES
from benchmark.spaces import Architecture

# HW-GPT-Bench's device_list (hwgpt/api.py), in its order
THEIR_DEVICES = ["a100", "a40", "h100", "rtx2080", "rtx3080", "a6000", "v100", "P100", "cpu_xeon_silver",
                 "cpu_xeon_gold", "cpu_amd_7502", "cpu_amd_7513", "cpu_amd_7452"]


def hwgpt_bench_readme(HWGPT, search_space):
    """HW-GPT-Bench's README example ("Example api usage"), line for line."""
    api = HWGPT(search_space=search_space, use_supernet_surrogate=False)  # initialize API
    random_arch = api.sample_arch()  # sample random arch
    api.set_arch(random_arch)  # set  arch
    results = api.query()  # query all for the sampled arch
    energy = api.query(metric="energies")  # query energy
    rtx2080 = api.query(device="rtx2080")  # query device
    perplexity_mlp = api.query(metric="perplexity", predictor="mlp")  # query perplexity based on mlp predictor
    return api, random_arch, results, energy, rtx2080, perplexity_mlp


@pytest.mark.parametrize("space", ["s", "m", "l"])
def test_hwgpt_bench_readme_runs_unchanged(space):
    with pytest.warns(UserWarning, match=r"float16_memory.*left out"):
        api, arch, results, energy, rtx2080, ppl = hwgpt_bench_readme(HWGPTBenchCompat, space)
    b = api.benchmark
    assert api.device_list[:13] == THEIR_DEVICES and list(HWGPT_DEVICES) == THEIR_DEVICES
    assert set(results) == {"latencies", "energies", "flops", "params"}
    assert set(results["latencies"]) == set(api.device_list)
    # every device has energy but a measured one whose timing pass did not measure it (the s release's
    # CPU): left out of the all-device answer, refused by name when asked for alone
    without = set(api.device_list) - set(results["energies"])
    assert all(b.devices()[api.device_id(d)]["source"] == "measured" for d in without)
    assert without == ({"cpu-epyc-1c"} if space == "s" else set())
    assert set(energy) == {"energies"} and energy["energies"] == results["energies"]
    assert set(rtx2080) == {"latencies", "energies"} and list(rtx2080["latencies"]) == ["rtx2080"]
    assert set(ppl) == {"perplexity"}
    # the same values as the query API, in HW-GPT-Bench's units (ms, Wh)
    for name, ours in HWGPT_DEVICES.items():
        r = b.query(arch, metrics=["latency_ms", "energy_mj"], device=ours)
        assert results["latencies"][name] == r["latency_ms"]
        assert results["energies"][name] == r["energy_mj"] / 3.6e6
    assert ppl["perplexity"] == b.query(arch, metrics="perplexity")["perplexity"] and api.sources["perplexity"] == "imported"
    a = Architecture.from_id(b.space.validate(arch).id)
    assert results["params"] == b.query(a, metrics="params")["params"]
    assert api.units["latencies"] == "ms" and api.units["energies"] == "Wh"
    for d in without:
        with pytest.raises(QueryError, match=rf"allowed: a device with energies \({d}: missing: not measured"):
            api.query(metric="energies", device=d)


def test_hwgpt_bench_main_loop_every_device():
    """HW-GPT-Bench's own check (``__main__`` of hwgpt/api.py): every metric on every device."""
    api = HWGPTBenchCompat(search_space="s", use_supernet_surrogate=False)
    for metric in ["energies", "latencies"]:
        for device in THEIR_DEVICES:
            api.set_arch(api.sample_arch())
            hwmetric = api.query(metric=metric, device=device)
            assert list(hwmetric) == [metric] and list(hwmetric[metric]) == [device]
            assert math.isfinite(hwmetric[metric][device]) and hwmetric[metric][device] > 0
            assert api.sources == {metric: {device: "modeled"}}
    largest = {"sample_embed_dim": 768, "sample_n_layer": 12, "sample_mlp_ratio": [4] * 12,
               "sample_n_head": [12] * 12, "sample_bias": "True"}
    api.set_arch(largest)
    assert api.query(metric="perplexity", predictor="mlp")["perplexity"] == pytest.approx(21.30, abs=0.005)  # FACTS.md
    assert api.compute_predictions_ppl() == api.query(metric="perplexity")["perplexity"]
    assert api.get_flops() == api.query(metric="flops")["flops"] > 0
    assert api.get_params() == api.query(metric="params")["params"] > 0


def test_space_t_supernet_and_seeded_noise():
    api = HWGPTBenchCompat("t", seed=3)  # default: the supernet answers perplexity and accuracy
    arch = api.sample_arch()
    b = api.benchmark
    r = b.query(arch, metrics=["perplexity", "token_accuracy"])
    got = api.query(metric="latencies", device="cpu-epyc-1c")
    assert got["perplexity"] == r["perplexity"] and got["accuracy"] == r["token_accuracy"]
    assert api.query(metric="perplexity", predictor="supernet") == {"perplexity": r["perplexity"],
                                                                  "accuracy": r["token_accuracy"]}
    assert api.metrics == ["perplexity", "accuracy"]
    noisy = [HWGPTBenchCompat("t", seed=5, noise=True) for _ in range(2)]
    for n in noisy:
        n.set_arch(arch)
    v = [n.compute_predictions_hw("latencies", "cpu-epyc-1c") for n in noisy]
    assert v[0] == v[1]  # seeded
    gpu = HWGPTBenchCompat("t", setting="decode-b1-s128-fp16")  # one setting: the devices that have it
    gpu.set_arch(arch)
    lat = gpu.query(metric="latencies")["latencies"]
    assert set(lat) == {d for d in gpu.device_list if "decode-b1-s128-fp16" in b.settings(gpu.device_id(d))}
    assert lat["a100"] == b.query(arch, metrics="latency_ms", device="gpu-a100-sxm4-40gb",
                                  setting="decode-b1-s128-fp16")["latency_ms"]
    with pytest.raises(QueryError, match=r"invalid device: 'cpu_amd_7502'; allowed: a device with latencies "
                                         r"\(cpu_amd_7502: no setting 'decode-b1-s128-fp16'\)"):
        gpu.query(metric="latencies", device="cpu_amd_7502")


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: HWGPTBenchCompat("q"), QueryError, r"invalid space: 'q'; allowed: \['l', 'm', 's', 't'\]"),
    (lambda: HWGPTBenchCompat("s", use_supernet_surrogate=True), NotImplementedError,
     r"space 's' has no supernet here.*alternative: .*predictor='mlp'"),
    (lambda: HWGPTBenchCompat("s", use_supernet_surrogate="yes"), QueryError, "invalid use_supernet_surrogate"),
    (lambda: HWGPTBenchCompat("s", setting="prefill-b1-s9-fp32"), QueryError, "invalid setting"),
    (lambda: HWGPTBenchCompat("s", base_path="/no/such/dir"), QueryError,
     r"invalid path: '/no/such/dir'; allowed: an existing release directory"),
])
def test_constructor_refusals(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.fixture(scope="module")
def s_api():
    api = HWGPTBenchCompat("s", use_supernet_surrogate=False, seed=1)
    api.sample_arch()
    return api


@pytest.mark.parametrize("call, error, pattern", [
    (lambda a: a.query(device="tpu_v5"), QueryError, r"invalid device: 'tpu_v5'; allowed: \['a100', .*'cpu_amd_7452'"),
    (lambda a: a.query(device="cpu-epyc-1c"), QueryError, r"invalid device: 'cpu-epyc-1c'"),
    (lambda a: a.query(metric="float16_memory"), NotImplementedError, r"float16_memory: .*alternatives: .*memory_mb"),
    (lambda a: a.get_memory("bfloat16_memory"), NotImplementedError, r"bfloat16_memory.*weight_bytes"),
    (lambda a: a.query(metric="perplexity", predictor="supernet"), NotImplementedError, r"no supernet here"),
    (lambda a: a.query(metric="accuracy"), QueryError, r"invalid metric: 'accuracy'; allowed: \['latencies'"),
    (lambda a: a.query(metric="latencies", predictor="supernet"), QueryError, "invalid predictor"),
    (lambda a: a.query(predictor="xgboost"), QueryError, r"invalid predictor: 'xgboost'; allowed: \['mlp', 'supernet'\]"),
    (lambda a: a.query(metric="perplexity", device="a100"), QueryError, "invalid device: 'a100'; allowed: None"),
    (lambda a: a.query_gt_all_archs("latencies", "a100"), NotImplementedError, r"ground-truth.*alternative"),
    (lambda a: a.compute_predictions_hw("float16_memory", "a100"), NotImplementedError, "float16_memory"),
    (lambda a: a.query(device=5), QueryError, r"invalid device: 5; allowed: a device name or a list"),
    (lambda a: a.query(device=1.5), QueryError, r"invalid device: 1.5"),
    (lambda a: a.get_memory(5), QueryError, r"invalid objective: 5; allowed: \['float16_memory', 'bfloat16_memory'\]"),
    (lambda a: a.set_arch({"sample_embed_dim": 64, "sample_n_layer": 10, "sample_mlp_ratio": [2] * 10,
                           "sample_n_head": [4] * 10, "sample_bias": "True"}), QueryError,
     r"invalid embed_dim: 64; allowed: \[192, 384, 768\]"),
])
def test_bad_calls_refused_clearly(s_api, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(s_api)


def test_t_refuses_the_mlp_predictor_and_missing_values():
    api = HWGPTBenchCompat("t", use_supernet_surrogate=False)
    api.sample_arch()
    with pytest.raises(NotImplementedError, match=r"space 't' has no HW-GPT-Bench perplexity MLP.*predictor='supernet'"):
        api.query(metric="perplexity")
    with pytest.raises(QueryError, match=r"invalid device: 'cpu-epyc-1c'; allowed: a device with energies "
                                         r"\(cpu-epyc-1c: missing: not measured: a timing pass measures latency only"):
        api.query(metric="energies", device="cpu-epyc-1c")
    every = api.query(metric="energies")["energies"]  # every device: the one without a value is left out
    # the release's measured devices (the VM's runtimes and thread counts) have no energy counter
    no_energy = {d for d, m in Benchmark("t").devices().items() if m["source"] == "measured"}
    assert "cpu-epyc-1c" in no_energy and set(every) == set(api.device_list) - no_energy


def test_memory_of_m_architecture_is_refused_by_the_query_api():
    """A metric the space cannot answer: one clear error, never a value from another source."""
    b = Benchmark("m")
    with pytest.raises(QueryError, match=r"invalid metric: 'memory_mb'; allowed: .*nothing measured"):
        b.query(b.space.largest(), metrics="memory_mb", device="gpu-a100-sxm4-40gb")
    with pytest.raises(QueryError, match=r"invalid device: 'cpu-epyc-1c'"):
        b.query(b.space.largest(), metrics="latency_ms", device="cpu-epyc-1c")


def test_a_base_path_without_a_release_of_the_space_is_said(tmp_path):
    """A HW-GPT-Bench user's own data root opens (their scripts pass one) but says what answers."""
    with pytest.warns(UserWarning, match="holds no hwlm-bench release of space 's'"):
        api = HWGPTBenchCompat("s", base_path=tmp_path)
    api.sample_arch()
    assert api.query(metric="perplexity")["perplexity"] > 0 and api.sources["perplexity"] == "imported"


def test_the_query_api_names_our_id_for_a_hwgpt_bench_device_name():
    b = Benchmark("t")
    with pytest.raises(QueryError, match="invalid device: 'rtx2080'; allowed: .*HW-GPT-Bench's 'rtx2080' is 'gpu-rtx2080' here$"):
        b.query(b.space.sample(seed=0), device="rtx2080")
    with pytest.raises(QueryError, match=r"invalid device: 'tpu'; allowed: \[[^;]*\]$"):
        b.query(b.space.sample(seed=0), device="tpu")
