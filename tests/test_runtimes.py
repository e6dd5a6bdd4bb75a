"""Inference runtimes as backends: ONNX export, agreement with PyTorch, int8/bf16 bounds, provenance, names."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.model import GPT, GPTConfig
from benchmark.profiling.runtimes.base import RuntimeConfigError, relative_error
from benchmark.profiling.runtimes.registry import (MEASURED_RUNTIME_DEVICES, RuntimeDevice, make_backend,
                                                   parse_device_id, runtime_device_provenance)
from benchmark.profiling.runtimes.torch_eager import cpu_flags
from benchmark.spaces import get_space

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from benchmark.profiling.runtimes.export import export_onnx  # noqa: E402

VOCAB, BLOCK = 512, 64  # a small vocabulary and context keep the exports fast; the layers are the space's


def small_model(arch, seed=0) -> GPT:
    return GPT(GPTConfig.from_arch(arch, vocab_size=VOCAB, block_size=BLOCK)).init_weights(seed).eval()


@pytest.fixture(scope="module", params=["largest", "seed3"])
def exported(request, tmp_path_factory):
    t = get_space("t")
    arch = t.largest() if request.param == "largest" else t.sample(seed=3)
    model = small_model(arch)
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx"), arch_id=arch.id)


def run_all(backend, x, ctx_len, steps):
    """Prefill logits of x, and decode logits of x[:, ctx_len:ctx_len+steps] after a ctx_len context."""
    with backend.running():
        pre = backend.logits(backend.prefill(x))
        state = backend.start_decode(x[:, :ctx_len], steps)
        dec = [backend.logits(backend.decode(state, x[:, ctx_len + i:ctx_len + i + 1])) for i in range(steps)]
        state.rewind()
        again = backend.logits(backend.decode(state, x[:, ctx_len:ctx_len + 1]))
    return pre, np.concatenate(dec, axis=1), again


def reference(model, x, ctx_len, steps):
    return run_all(make_backend("torch", "fp32", 1).prepare(model), x, ctx_len, steps)


TOKENS = np.random.default_rng(0).integers(0, VOCAB, (3, 41))  # shapes unlike the export's example (2 x 8)


@pytest.mark.parametrize("runtime", ["ort", "ov"])
def test_fp32_runtime_matches_torch_prefill_and_decode(exported, runtime):
    if runtime == "ov":
        pytest.importorskip("openvino")
    model, export = exported
    ref_pre, ref_dec, _ = reference(model, TOKENS, 33, 6)
    pre, dec, again = run_all(make_backend(runtime, "fp32", 1).prepare(model, export), TOKENS, 33, 6)
    assert pre.shape == ref_pre.shape == (3, 41, VOCAB) and dec.shape == (3, 6, VOCAB)
    assert relative_error(pre, ref_pre) <= 1e-4
    assert relative_error(dec, ref_dec) <= 1e-4
    np.testing.assert_allclose(again, dec[:, :1], rtol=0, atol=1e-6)  # rewind returns to the context
    # decoding is not re-prefill: the decode graph's inputs are one token and the cache
    assert relative_error(dec[:, -1:], ref_pre[:, 38:39]) <= 1e-4


def test_int8_differs_within_bound_and_records_quantisation(exported):
    model, export = exported
    ref_pre, ref_dec, _ = reference(model, TOKENS, 33, 4)
    b = make_backend("ort", "int8", 1).prepare(model, export)
    pre, dec, _ = run_all(b, TOKENS, 33, 4)
    for out, ref in ((pre, ref_pre), (dec, ref_dec)):
        assert 1e-5 < relative_error(out, ref) < 0.1
    q = b.provenance()["quantization"]
    assert q["weight_type"] == "QInt8" and q["per_channel"] is False
    assert q["quantized_nodes"] == 2 * (4 * model.config.n_layer + 1)  # qkv, proj, fc, proj per layer + head, 2 graphs
    assert os.path.isfile(export.prefill_path.replace(".onnx", ".int8.onnx"))


def test_bf16_torch_differs_within_bound_and_keeps_the_callers_model(exported):
    model, _ = exported
    ref_pre, ref_dec, _ = reference(model, TOKENS, 33, 4)
    b = make_backend("torch", "bf16", 1).prepare(model)
    pre, dec, _ = run_all(b, TOKENS, 33, 4)
    assert model.wte.weight.dtype == torch.float32 and b.model.wte.weight.dtype == torch.bfloat16
    for out, ref in ((pre, ref_pre), (dec, ref_dec)):
        assert 1e-5 < relative_error(out, ref) < 0.05
    prov = b.provenance()
    assert prov["cpu_avx512_bf16"] == ("avx512_bf16" in cpu_flags())


def test_provenance_fields_and_device_ids(exported):
    model, export = exported
    required = {"runtime", "runtime_version", "dtype", "threads", "graph_optimization", "quantization", "export_opset"}
    pairs = [("torch", "fp32"), ("torch", "bf16"), ("ort", "fp32"), ("ort", "int8")]
    try:
        import openvino  # noqa: F401
        pairs.append(("ov", "fp32"))
    except ImportError:
        pass
    for rt, dt in pairs:
        b = make_backend(rt, dt, 1).prepare(model, export)
        prov = runtime_device_provenance(b, host="cpu-epyc")
        assert required <= set(prov), (rt, dt, required - set(prov))
        assert prov["device_id"] == f"cpu-epyc-1c-{rt}-{dt}" and prov["dtype"] == dt and prov["threads"] == 1
        assert prov["export_opset"] == (None if rt == "torch" else export.opset)
        json.dumps(prov)  # JSON-serialisable
    ov = [p for p in pairs if p[0] == "ov"]
    if ov:
        prov = make_backend("ov", "fp32", 1).prepare(model, export).provenance()
        assert prov["inference_precision"] == "f32"  # never the plugin's bf16 default
    ids = {d.device_id("cpu-epyc") for d in MEASURED_RUNTIME_DEVICES}
    assert {"cpu-epyc-1c-ort-int8", "cpu-epyc-2c-torch-fp32", "cpu-epyc-1c-torch-bf16", "cpu-epyc-1c-ort-fp32",
            "cpu-epyc-1c-ov-fp32", "cpu-epyc-1c-torch-fp32"} == ids
    assert parse_device_id("cpu-xeon-gold-6242-16c-ort-int8") == ("cpu-xeon-gold-6242", RuntimeDevice("ort", "int8", 16))


@pytest.mark.parametrize("call, match", [
    (lambda: make_backend("tensorrt"), r"invalid runtime: 'tensorrt'; allowed: \['torch', 'ort', 'ov'\]"),
    (lambda: make_backend("ort", "bf16"), r"invalid dtype for runtime 'ort': 'bf16'; allowed: \['fp32', 'int8'\]"),
    (lambda: make_backend("torch", "int8"), r"invalid dtype for runtime 'torch': 'int8'"),
    (lambda: make_backend("ov", "int8"), r"invalid dtype for runtime 'ov': 'int8'; allowed: \['fp32'\]"),
    (lambda: make_backend("ort", "fp32", 0), r"invalid threads: 0"),
    (lambda: parse_device_id("cpu-epyc-ort-int8"), r"invalid runtime device id: 'cpu-epyc-ort-int8'"),
    (lambda: parse_device_id("cpu-epyc-1c-ort-fp16"), r"invalid dtype for runtime 'ort': 'fp16'"),
    (lambda: export_onnx(small_model(get_space("t").smallest()), exporter="jit"), r"invalid exporter: 'jit'"),
    (lambda: export_onnx(small_model(get_space("t").smallest()), opset=11), r"invalid opset: 11"),
    (lambda: make_backend("torch").prefill(np.zeros((1, 4), dtype=np.int64)), r"prepare\(model\) was not called"),
])
def test_bad_names_give_clear_errors(call, match):
    with pytest.raises(RuntimeConfigError, match=match) as e:
        call()
    assert isinstance(e.value, ValueError)


def test_export_is_reused_for_the_same_weights_and_redone_for_others(tmp_path):
    arch = get_space("t").smallest()
    a = export_onnx(small_model(arch, seed=0), tmp_path, arch_id=arch.id)
    stamp = os.stat(a.prefill_path).st_mtime_ns
    assert export_onnx(small_model(arch, seed=0), tmp_path, arch_id=arch.id) == a
    assert os.stat(a.prefill_path).st_mtime_ns == stamp
    b = export_onnx(small_model(arch, seed=1), tmp_path, arch_id=arch.id)
    assert b.weights_sha256 != a.weights_sha256 and os.stat(b.prefill_path).st_mtime_ns != stamp


def test_runtime_workload_runs_the_latency_inputs(exported):
    from benchmark.profiling.runtimes.workload import runtime_workload

    model, export = exported
    outs = {}
    for rt in ("torch", "ort"):
        b = make_backend(rt, "fp32", 1).prepare(model, export)
        for setting in ("prefill-b2-s16-fp32", "decode-b1-s20-fp32"):
            w = runtime_workload(b, setting, VOCAB, BLOCK, seed=0, decode_tokens=3)
            with b.running():
                w.setup()
                outs[rt, setting] = b.logits(w.run())
                w.rewind()
                np.testing.assert_allclose(b.logits(w.run()), outs[rt, setting], rtol=0, atol=1e-6)
            assert w.tokens == (1 if setting.startswith("prefill") else 3)
    for setting in ("prefill-b2-s16-fp32", "decode-b1-s20-fp32"):
        assert relative_error(outs["ort", setting], outs["torch", setting]) <= 1e-4
    with pytest.raises(RuntimeConfigError, match="decode_tokens >= 1 and context"):
        runtime_workload(b, "decode-b1-s60-fp32", VOCAB, BLOCK, decode_tokens=8)


def test_peak_rss_in_a_child_process(tmp_path):
    from benchmark.profiling.runtimes.rss import measure_rss

    r = measure_rss("ort", "fp32", 1, get_space("t").smallest(), "prefill-b1-s32-fp32", export_dir=str(tmp_path))
    assert r.reason is None and r.source == "measured"
    assert r.peak_rss_bytes > r.baseline_rss_bytes > 0
    # at the peak: at least the graph's weights (the tied embedding twice: gather table + transposed head)
    assert r.inference_rss_bytes > 4096 * 64 * 4


def test_query_api_does_not_import_the_runtimes():
    code = ("import sys, benchmark; from benchmark import Benchmark; "
            "import benchmark.profiling.runtimes.registry as r; r.RuntimeDevice('ort', 'int8', 1).device_id('cpu-x'); "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_logits(tmp_path):
    arch = get_space("t").smallest()
    model = small_model(arch)
    export = export_onnx(model, tmp_path, exporter="dynamo", arch_id=arch.id)
    assert export.exporter == "dynamo" and export.opset == 18
    ref_pre, ref_dec, _ = reference(model, TOKENS, 33, 3)
    pre, dec, _ = run_all(make_backend("ort", "fp32", 1).prepare(model, export), TOKENS, 33, 3)
    assert relative_error(pre, ref_pre) <= 1e-4 and relative_error(dec, ref_dec) <= 1e-4


def test_missing_runtime_package_names_the_extra():
    from benchmark.profiling.runtimes.base import import_runtime

    with pytest.raises(RuntimeConfigError, match=r"'ort' needs no_such_runtime_pkg .*pip install -e '\.\[runtimes\]'"):
        import_runtime("no_such_runtime_pkg", "ort")


def test_check_script_on_a_small_supernet(tmp_path):
    """scripts/check_runtimes.py's per-architecture check, on a random supernet with a small vocabulary."""
    import importlib.util
    from pathlib import Path

    from benchmark.supernet.elastic import Supernet

    pytest.importorskip("openvino")  # the script checks every runtime
    spec = importlib.util.spec_from_file_location("check_runtimes", Path(__file__).parents[1] / "scripts" / "check_runtimes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = Supernet("t", vocab_size=VOCAB, block_size=BLOCK).init_weights(0).eval()
    test = np.random.default_rng(1).integers(0, VOCAB, 4 * BLOCK + 1).astype(np.uint16)
    r = mod.check_arch(net, get_space("t").sample(seed=2), test, tokens=2 * BLOCK, windows=2, decode_tokens=4,
                       export_dir=tmp_path, batch=2)
    b = r["backends"]
    assert set(b) == {"torch-fp32", "torch-bf16", "ort-fp32", "ort-int8", "ov-fp32"}
    assert b["torch-fp32"]["perplexity_delta"] == 0 and b["ort-fp32"]["fp32_pass"]
    assert b["ort-int8"]["prefill_rel_error"] > 1e-5 and b["ort-int8"]["tokens"] == 2 * BLOCK
    assert abs(b["ort-fp32"]["perplexity_delta_rel"]) < 1e-5 and 0 < b["torch-bf16"]["top1_agreement"] <= 1


def test_torch_backend_applies_its_threads_only_while_running():
    before = torch.get_num_threads()
    b = make_backend("torch", "fp32", 2).prepare(small_model(get_space("t").smallest()))
    with b.running():
        assert torch.get_num_threads() == 2 and torch.is_inference_mode_enabled()
    assert torch.get_num_threads() == before
