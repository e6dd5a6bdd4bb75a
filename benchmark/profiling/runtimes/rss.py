"""Peak resident memory of one inference on a runtime backend, in a fresh child process.

ONNX Runtime and OpenVINO allocate through their own arenas, which PyTorch's allocator events
(:mod:`benchmark.profiling.memory`) cannot see; what every runtime shares is the process's
resident set. So each measurement runs in a new process (``multiprocessing`` spawn: no memory
inherited from the caller):

1. import torch and the runtime; ``baseline_rss_bytes`` = ``VmRSS`` (interpreter + libraries);
2. build the model (seeded random weights), prepare the backend (export, session, compile), then
   drop the torch model unless the backend runs it; one warm-up unit of the setting;
3. reset the high-water mark (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0: HWM := current RSS),
   run the measured unit once, read ``VmHWM`` = ``peak_rss_bytes``.

``inference_rss_bytes = peak_rss_bytes - baseline_rss_bytes`` is what the model, the runtime's
prepared state, the cache and the forward's transient memory keep resident at the peak. RSS
counts pages, not tensors: memory an allocator freed but kept (glibc's heap, the runtimes'
arenas) still counts, so this is an upper bound of what the inference needs, comparable across
runtimes, and not the same quantity as the eager device's allocator-event ``memory_mb``. Where
``/proc/self/clear_refs`` or ``/proc/self/status`` is unavailable (not Linux), the result is
missing with the reason.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["RssResult", "measure_rss"]

METHOD = ("VmHWM of a fresh spawned process over one measured unit after a warm-up, high-water mark reset "
          "via /proc/self/clear_refs; baseline = VmRSS after importing torch and the runtime")


@dataclass(frozen=True)
class RssResult:
    device_key: str  # "<threads>c-<runtime>-<dtype>"
    arch_id: str
    setting: str
    peak_rss_bytes: int | None
    baseline_rss_bytes: int | None
    inference_rss_bytes: int | None
    method: str
    reason: str | None = None  # why the values are missing
    source: str = "measured"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the kernel prints kB
    raise OSError(f"/proc/self/status has no {field}")


def _child(runtime: str, dtype: str, threads: int, arch_id: str, setting: str, seed: int,
           export_dir: str | None, decode_tokens: int) -> dict[str, Any]:
    import torch

    from benchmark.profiling.latency import build_model
    from benchmark.profiling.runtimes.registry import make_backend
    from benchmark.profiling.runtimes.workload import runtime_workload
    from benchmark.spaces import Architecture

    torch.set_num_threads(threads)
    backend = make_backend(runtime, dtype, threads)  # imports the runtime
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_bytes("VmRSS")
    except OSError as e:
        return {"reason": f"cannot reset or read the RSS high-water mark ({e})"}
    arch = Architecture.from_id(arch_id)
    model = build_model(arch, "cpu", "fp32", seed)
    export = None
    if runtime != "torch":
        from benchmark.profiling.runtimes.export import export_onnx

        export = export_onnx(model, export_dir, arch_id=arch.id)
    backend.prepare(model, export)
    del model
    gc.collect()
    sp = arch.search_space
    w = runtime_workload(backend, setting, sp.vocab_size, sp.block_size, seed, decode_tokens)
    with backend.running():
        w.setup()
        w.run()  # warm-up: lazy initialisation and shape-specific compilation are not the inference
        w.setup()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        out = w.run()
        peak = _status_bytes("VmHWM")
    del out
    return {"peak": peak, "base": base}


def measure_rss(runtime: str, dtype: str, threads: int, arch, setting: Any, seed: int = 0, *,
                export_dir: str | None = None, decode_tokens: int = 1, timeout_s: float = 600) -> RssResult:
    """Peak RSS of one unit of ``setting`` (a prefill forward; ``decode_tokens`` decode steps after
    the context, default one) of ``arch`` on the backend ``runtime``/``dtype``/``threads``, measured
    in a fresh process (see the module docstring). ``export_dir`` shares ONNX exports between calls."""
    from benchmark.profiling.runtimes.registry import RuntimeDevice
    from benchmark.settings import resolve_setting
    from benchmark.spaces import Architecture

    dev = RuntimeDevice(runtime, dtype, threads)
    arch_id = arch.id if isinstance(arch, Architecture) else Architecture.from_id(arch).id
    st = resolve_setting(setting)
    # a child that dies (e.g. killed for memory) raises BrokenProcessPool here instead of hanging
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        r = pool.submit(_child, runtime, dtype, threads, arch_id, st.name, seed, export_dir,
                        decode_tokens).result(timeout_s)
    if "reason" in r:
        return RssResult(dev.key, arch_id, st.name, None, None, None, METHOD, r["reason"])
    return RssResult(dev.key, arch_id, st.name, r["peak"], r["base"], r["peak"] - r["base"], METHOD)
