"""Correctness of the inference runtimes before any of them is timed.

    PYTHONPATH=$PWD python scripts/check_runtimes.py                 # writes docs/runtimes_check.json

For a few architectures of space ``t`` (largest, smallest, 3 seeded samples) with the released
supernet's inherited weights (data/supernet_t.safetensors), on the test split (data/corpus):

* **fp32 agreement** of ONNX Runtime and OpenVINO with PyTorch eager fp32 on the same input:
  prefill logits of ``--windows`` test windows (batch x 256 tokens), and decode logits of
  ``--decode-tokens`` KV-cache steps after a 128-token context; the figure is the relative error
  ``max |logits - ref| / max |ref|`` (over all positions and steps). Pass: <= 1e-4.
* **perplexity delta** of every backend (int8 and bf16 are the point; the fp32 runtimes show the
  baseline is exact) against PyTorch fp32 on the first ``--tokens`` predicted test tokens, the
  windows ``benchmark.supernet.perplexity`` uses: ``ppl(runtime) - ppl(torch fp32)``, absolute
  and relative, plus top-1 agreement of the predicted tokens.

Not a timing pass: nothing here is timed. Runs all backends with one thread each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.profiling.devices import host_provenance
from benchmark.profiling.runtimes.base import relative_error
from benchmark.profiling.runtimes.export import export_onnx
from benchmark.profiling.runtimes.registry import RuntimeDevice, make_backend
from benchmark.supernet.corpus import iter_eval_windows, load_split
from benchmark.supernet.elastic import load_supernet

FP32_TOLERANCE = 1e-4
BACKENDS = [("torch", "bf16"), ("ort", "fp32"), ("ort", "int8"), ("ov", "fp32")]


def _nll(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """Summed next-token cross-entropy (nats) and the number of argmax hits."""
    x = torch.from_numpy(logits).double()
    y = torch.from_numpy(targets)
    nll = torch.nn.functional.cross_entropy(x.flatten(0, 1), y.flatten(), reduction="sum").item()
    return nll, int((x.argmax(-1) == y).sum())


def check_arch(net, arch, test: np.ndarray, tokens: int, windows: int, decode_tokens: int, export_dir: Path,
               batch: int) -> dict:
    model = net.extract_dense(arch).eval()
    export = export_onnx(model, export_dir, arch_id=arch.id)
    backends = {"torch-fp32": make_backend("torch", "fp32", 1).prepare(model)}
    for rt, dt in BACKENDS:
        backends[f"{rt}-{dt}"] = make_backend(rt, dt, 1).prepare(model, export)
    block = net.block_size
    agree_x = np.stack([x.numpy() for x, _ in iter_eval_windows(test, block, windows * block)])[:, 0]
    ctx_len = min(128, block - decode_tokens)
    ctx, new = agree_x[:1, :ctx_len], agree_x[:1, ctx_len:ctx_len + decode_tokens]
    ref_prefill = ref_decode = None
    out: dict = {"arch": arch.id, "params": None, "backends": {}}
    out["params"] = int(sum(p.numel() for p in model.parameters()))
    for name, b in backends.items():
        r: dict = {"provenance": b.provenance()}
        with b.running():
            pre = b.logits(b.prefill(agree_x))
            state = b.start_decode(ctx, decode_tokens)
            dec = np.concatenate([b.logits(b.decode(state, new[:, t:t + 1])) for t in range(decode_tokens)], axis=1)
            nll, hits, n, top1_same = 0.0, 0, 0, 0
            for x, y in iter_eval_windows(test, block, tokens, batch_size=batch):
                lg = b.logits(b.prefill(x.numpy()))
                s, h = _nll(lg, y.numpy())
                nll, hits, n = nll + s, hits + h, n + y.numel()
                r.setdefault("_argmax", []).append(lg.argmax(-1))
        if name == "torch-fp32":
            ref_prefill, ref_decode = pre, dec
        r["prefill_rel_error"] = relative_error(pre, ref_prefill)
        r["decode_rel_error"] = relative_error(dec, ref_decode)
        r["perplexity"] = math.exp(nll / n)
        r["token_accuracy"] = hits / n
        r["tokens"] = n
        out["backends"][name] = r
    ref = out["backends"]["torch-fp32"]
    ref_argmax = np.concatenate([a.ravel() for a in ref["_argmax"]])
    for name, r in out["backends"].items():
        r["top1_agreement"] = float((np.concatenate([a.ravel() for a in r.pop("_argmax")]) == ref_argmax).mean())
        r["perplexity_delta"] = r["perplexity"] - ref["perplexity"]
        r["perplexity_delta_rel"] = r["perplexity"] / ref["perplexity"] - 1
        if r["provenance"]["dtype"] == "fp32":
            r["fp32_pass"] = bool(max(r["prefill_rel_error"], r["decode_rel_error"]) <= FP32_TOLERANCE)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--supernet", default="data/supernet_t.safetensors")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="seeded architectures (default 0 1 2)")
    ap.add_argument("--tokens", type=int, default=16384, help="predicted test tokens for perplexity (default 16384)")
    ap.add_argument("--windows", type=int, default=4, help="test windows for the prefill agreement check")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--export-dir", default="runs/onnx-check", help="where the ONNX graphs are written (reused)")
    ap.add_argument("--out", default="docs/runtimes_check.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    net = load_supernet(a.supernet, "t")
    test = np.asarray(load_split("test", a.data_dir))
    space = net.space
    archs = [space.largest(), space.smallest()] + [space.sample(seed=s) for s in a.seeds]
    results = []
    for arch in archs:
        r = check_arch(net, arch, test, a.tokens, a.windows, a.decode_tokens, Path(a.export_dir), a.batch)
        results.append(r)
        print(f"{arch.id}:")
        for name, b in r["backends"].items():
            print(f"  {name:<11} prefill rel err {b['prefill_rel_error']:.2e}  decode rel err "
                  f"{b['decode_rel_error']:.2e}  ppl {b['perplexity']:.4f} (delta {b['perplexity_delta']:+.4f}, "
                  f"{100 * b['perplexity_delta_rel']:+.3f} %)  top-1 agreement {b['top1_agreement']:.4f}", flush=True)
    summary = {}
    for name in results[0]["backends"]:
        rows = [r["backends"][name] for r in results]
        summary[name] = {"max_prefill_rel_error": max(b["prefill_rel_error"] for b in rows),
                         "max_decode_rel_error": max(b["decode_rel_error"] for b in rows),
                         "max_abs_perplexity_delta_rel": max(abs(b["perplexity_delta_rel"]) for b in rows),
                         "min_top1_agreement": min(b["top1_agreement"] for b in rows)}
        if "fp32_pass" in rows[0]:
            summary[name]["fp32_pass"] = all(b["fp32_pass"] for b in rows)
    doc = {
        "what": "runtime correctness against PyTorch eager fp32 on the same inputs (scripts/check_runtimes.py)",
        "relative_error": "max |logits - ref| / max |ref| over all positions (prefill) or steps (decode)",
        "fp32_tolerance": FP32_TOLERANCE,
        "weights": a.supernet, "split": "test", "perplexity_tokens": a.tokens,
        "agreement_inputs": f"{a.windows} test windows of {net.block_size} tokens (prefill); context 128 + "
                            f"{a.decode_tokens} decode steps on the first window (decode)",
        "devices": {f"1c-{rt}-{dt}": RuntimeDevice(rt, dt, 1).device_id() for rt, dt in [("torch", "fp32")] + BACKENDS},
        "host": host_provenance("cpu"),
        "command": "python scripts/check_runtimes.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(time.time() - t0, 1),
        "summary": summary,
        "architectures": results,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"summary: {json.dumps(summary, indent=1)}\nwritten {out} in {doc['seconds']} s")
    return 0 if all(s.get("fp32_pass", True) for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
