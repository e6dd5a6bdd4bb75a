"""Device registry (spec sheets with sources) and the provenance of the measuring machine.

Two kinds of device appear in the benchmark:

* **Registry devices** (:data:`REGISTRY`): spec-sheet figures — peak FLOP/s per dtype, memory
  bandwidth, memory size, TDP — each a :class:`Figure` that carries its unit, its source and
  its basis (``"datasheet"``: printed by the vendor; ``"derived"``: computed from vendor figures
  by a stated formula; ``"estimate"``: the vendor publishes no such figure, the value is an
  approximation and says where it comes from). These figures feed the roofline model
  (:mod:`benchmark.profiling.roofline`); values computed from them are *modeled*.
* **Measured devices**: the machine a measurement runs on. Its id comes from
  :func:`local_device_id` (e.g. ``"cpu-epyc-2c"``, ``"gpu-h100-80gb-hbm3"``) and its provenance
  — CPU model, threads, library versions, GPU name, driver — from :func:`host_provenance`, read
  at run time and stored with every measured value. :func:`match_registry` links a runtime device
  name to a registry entry where one fits.

GPU peaks are dense (no 2:4 sparsity) at boost clock; fp16/bf16 are tensor-core rates with FP32
accumulation where the vendor distinguishes (that is what PyTorch uses). CPU peaks are
``cores x base clock x FP32 FLOPs per cycle per core`` (vendors do not print FP32 peaks for
server CPUs); AVX-512 licence clocks are lower than the base clock, so these are upper bounds.
A dtype a device cannot compute natively has ``value=None`` and the reason as its source.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import re
import socket
import sys
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

from benchmark.errors import HwlmError
from benchmark.settings import DTYPES  # part of this module's API: the dtypes of a spec sheet

__all__ = [
    "Figure", "DeviceSpec", "REGISTRY", "DTYPES", "get_device", "with_threads", "list_devices", "hwgpt_device_ids",
    "match_registry", "cpu_model_name", "local_device_id", "host_provenance",
]

KINDS = ("cpu", "gpu")
BASES = ("datasheet", "derived", "estimate")


@dataclass(frozen=True)
class Figure:
    """One spec-sheet number with its unit and where it comes from.

    ``value=None`` means "not supported by the hardware" (only allowed for fp16/bf16 peaks);
    ``source`` then says why.
    """

    value: float | None
    unit: str
    source: str
    basis: str = "datasheet"

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise HwlmError(f"invalid basis: {self.basis!r}; allowed: {list(BASES)}")
        if not self.source:
            raise HwlmError("invalid source: ''; allowed: a non-empty description of where the figure comes from")
        if self.value is not None and not self.value > 0:
            raise HwlmError(f"invalid value: {self.value!r}; allowed: a positive number or None (unsupported)")


@dataclass(frozen=True)
class DeviceSpec:
    """Spec sheet of one device. Frozen and hashable.

    Units: ``fp32``/``fp16``/``bf16`` peaks in TFLOP/s, ``bandwidth`` in GB/s (1e9 bytes/s),
    ``memory`` in GB as the vendor states it, ``tdp`` in W. Use :meth:`peak_flops` and
    :attr:`bandwidth_bytes` for SI values.
    """

    id: str
    name: str
    kind: str  # "cpu" or "gpu": which processor the figures describe and latency runs on
    category: str  # "datacenter", "workstation", "consumer", "server", "edge"
    fp32: Figure
    fp16: Figure
    bf16: Figure
    bandwidth: Figure
    memory: Figure
    tdp: Figure
    hwgpt_name: str | None = None  # HW-GPT-Bench's device key, where it is one of its 13
    cores: int | None = None  # CPU cores the fp32 peak counts (CPUs only)
    aliases: tuple[str, ...] = ()  # regexes (case-insensitive) matched against runtime device names
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HwlmError(f"invalid kind: {self.kind!r}; allowed: {list(KINDS)}")

    @property
    def figures(self) -> dict[str, Figure]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Figure)}

    def peak_flops(self, dtype: str = "fp32") -> float:
        """Peak FLOP/s (SI) for ``dtype``; ValueError if the device has no native support."""
        if dtype not in DTYPES:
            raise HwlmError(f"invalid dtype: {dtype!r}; allowed: {list(DTYPES)}")
        fig: Figure = getattr(self, dtype)
        if fig.value is None:
            raise HwlmError(f"invalid dtype for {self.id}: {dtype!r}; allowed: "
                             f"{[d for d in DTYPES if getattr(self, d).value is not None]} ({fig.source})")
        return fig.value * 1e12

    def supports(self, dtype: str) -> bool:
        return dtype in DTYPES and getattr(self, dtype).value is not None

    @property
    def bandwidth_bytes(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.bandwidth.value * 1e9

    @property
    def tdp_w(self) -> float:
        return float(self.tdp.value)


# --------------------------------------------------------------------------- the catalogue
def _tf(v, src, basis="datasheet"):
    return Figure(v, "TFLOP/s", src, basis)


def _no(reason):
    return Figure(None, "TFLOP/s", reason, "datasheet")


def _bw(v, src, basis="datasheet"):
    return Figure(v, "GB/s", src, basis)


def _gb(v, src, basis="datasheet"):
    return Figure(v, "GB", src, basis)


def _w(v, src, basis="datasheet"):
    return Figure(v, "W", src, basis)


_NO_BF16_PRE_AMPERE = "no bf16 arithmetic before NVIDIA Ampere (HW-GPT-Bench ran these GPUs in fp16)"
_CPU_HALF = "not a compute dtype of this CPU (no native fp16/bf16 FMA); the benchmark runs CPUs in fp32"


def _gpu(id, name, category, fp32, fp16, bf16, bw, mem, tdp, src, *, hwgpt=None, aliases=(), notes=""):
    return DeviceSpec(id, name, "gpu", category,
                      _tf(fp32, src) if not isinstance(fp32, Figure) else fp32,
                      _tf(fp16, src) if not isinstance(fp16, Figure) else fp16,
                      _tf(bf16, src) if not isinstance(bf16, Figure) else bf16,
                      _bw(bw, src) if not isinstance(bw, Figure) else bw,
                      _gb(mem, src) if not isinstance(mem, Figure) else mem,
                      _w(tdp, src) if not isinstance(tdp, Figure) else tdp,
                      hwgpt, None, tuple(aliases), notes)


def _server_cpu(id, name, cores, ghz, flops_per_cycle, simd, channels, mts, max_mem_gb, tdp, src, *, hwgpt, aliases,
                notes=""):
    peak = cores * ghz * flops_per_cycle / 1e3
    bw = channels * mts * 8 / 1e3
    derived_peak = (f"derived: {cores} cores x {ghz} GHz base x {flops_per_cycle} FP32 FLOP/cycle ({simd}); "
                    f"cores and clock from {src}")
    derived_bw = f"derived: {channels} channels x DDR4-{mts} x 8 bytes; memory support from {src}"
    return DeviceSpec(id, name, "cpu", "server", _tf(round(peak, 4), derived_peak, "derived"), _no(_CPU_HALF),
                      _no(_CPU_HALF), _bw(round(bw, 2), derived_bw, "derived"),
                      _gb(max_mem_gb, f"maximum memory per socket, {src}"), _w(tdp, src), hwgpt, cores, tuple(aliases),
                      notes)


_A100 = "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf), SXM4 40GB column"
_A40 = "NVIDIA A40 datasheet (images.nvidia.com/content/Solutions/data-center/a40/nvidia-a40-datasheet.pdf)"
_H100 = "NVIDIA H100 Tensor Core GPU datasheet (resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet), H100 SXM column; dense = half the printed with-sparsity tensor figure"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200), H200 SXM column; dense = half the printed with-sparsity tensor figure"
_TURING = "NVIDIA Turing GPU Architecture whitepaper (WP-09183-001), GeForce RTX 2080 specifications at reference (non-Founders-Edition) clocks; fp16 tensor with FP32 accumulate"
_GA102 = "NVIDIA Ampere GA102 GPU Architecture whitepaper (v2.1), GeForce RTX 3080 column; tensor dense with FP32 accumulate"
_A6000 = "NVIDIA RTX A6000 datasheet (nvidia.com/content/dam/en-zz/Solutions/design-visualization/quadro-product-literature/proviz-print-nvidia-rtx-a6000-datasheet-us-nvidia-1454980-r9-web.pdf); dense = half the printed with-sparsity tensor figure"
_V100 = "NVIDIA V100 Tensor Core GPU datasheet (images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf), V100 SXM2 column"
_P100 = "NVIDIA Tesla P100 PCIe datasheet (images.nvidia.com/content/tesla/pdf/nvidia-tesla-p100-PCIe-datasheet.pdf), 16GB model"
_ORIN = "NVIDIA Jetson Orin Nano Series datasheet (DS-11105-001), Orin Nano 8GB (original, 15 W mode)"
_RPI5 = "Raspberry Pi 5 product brief (datasheets.raspberrypi.com/rpi5/raspberry-pi-5-product-brief.pdf), 8GB model"
_M2 = "Apple newsroom 'Apple unveils M2' (apple.com/newsroom/2022/06/apple-unveils-m2-with-breakthrough-performance-and-capabilities), 10-core GPU"
_ARK_4114 = "Intel ARK, Xeon Silver 4114 (ark.intel.com/content/www/us/en/ark/products/123550)"
_ARK_6242 = "Intel ARK, Xeon Gold 6242 (ark.intel.com/content/www/us/en/ark/products/192440)"
_AMD = "AMD EPYC {} product page (amd.com/en/products/processors/server/epyc)"

_ENTRIES = [
    # ---- HW-GPT-Bench's 8 GPUs (HW-GPT-Bench names the product only; the variant is our choice, stated)
    _gpu("gpu-a100-sxm4-40gb", "NVIDIA A100 SXM4 40GB", "datacenter", 19.5, 312, 312, 1555, 40, 400, _A100,
         hwgpt="a100", aliases=(r"a100[-\s]sxm4[-\s]40\s*gb",),
         notes="HW-GPT-Bench says only 'A100'; we register the SXM4 40GB variant (80GB SXM4: 2039 GB/s, 400 W)."),
    _gpu("gpu-a40", "NVIDIA A40", "datacenter", 37.4, 149.7, 149.7, 696, 48, 300, _A40, hwgpt="a40", aliases=(r"\ba40\b",)),
    _gpu("gpu-h100-sxm5-80gb", "NVIDIA H100 SXM5 80GB", "datacenter", 67, 989.5, 989.5, 3350, 80, 700, _H100,
         hwgpt="h100", aliases=(r"h100.*(sxm|hbm3)",),
         notes="HW-GPT-Bench says only 'H100'; we register the SXM5 variant (PCIe: 51 TFLOP/s fp32, 756 dense "
               "bf16, 2000 GB/s, 350 W); runtime names 'NVIDIA H100 80GB HBM3' (SXM) match it, 'NVIDIA H100 PCIe' does not."),
    _gpu("gpu-rtx2080", "NVIDIA GeForce RTX 2080", "consumer", 10.1, 40.3, _no(_NO_BF16_PRE_AMPERE), 448, 8, 215,
         _TURING, hwgpt="rtx2080", aliases=(r"rtx\s*2080(?!\s*(ti|super))",),
         notes="fp16 tensor rate with FP16 accumulate is 80.5 TFLOP/s; PyTorch accumulates in FP32."),
    _gpu("gpu-rtx3080", "NVIDIA GeForce RTX 3080 (10GB)", "consumer", 29.8, 59.5, 59.5, 760, 10, 320, _GA102,
         hwgpt="rtx3080", aliases=(r"rtx\s*3080(?!\s*ti)",),
         notes="fp16/bf16 tensor rate with FP16 accumulate is 119 TFLOP/s; PyTorch accumulates in FP32."),
    _gpu("gpu-rtx-a6000", "NVIDIA RTX A6000", "workstation", 38.7, 154.8, 154.8, 768, 48, 300, _A6000,
         hwgpt="a6000", aliases=(r"rtx\s*a6000",)),
    _gpu("gpu-v100-sxm2-32gb", "NVIDIA V100 SXM2 32GB", "datacenter", 15.7, 125, _no(_NO_BF16_PRE_AMPERE), 900, 32, 300,
         _V100, hwgpt="v100", aliases=(r"v100[-\s]sxm2[-\s]32\s*gb",),
         notes="HW-GPT-Bench says only 'V100'; we register SXM2 32GB (PCIe: 14 fp32, 112 fp16, 250 W)."),
    _gpu("gpu-p100-pcie-16gb", "NVIDIA Tesla P100 PCIe 16GB", "datacenter", 9.3,
         Figure(18.7, "TFLOP/s", _P100 + "; fp16 on CUDA cores at twice the fp32 rate (no tensor cores)"),
         _no(_NO_BF16_PRE_AMPERE), 732, 16, 250, _P100, hwgpt="P100", aliases=(r"p100[-\s]pcie[-\s]16\s*gb",),
         notes="HW-GPT-Bench says only 'P100'; we register the PCIe 16GB variant (SXM2: 10.6 fp32, 21.2 fp16, 300 W). "
               "P100 has no NVML total-energy counter (Volta and newer only)."),
    # ---- HW-GPT-Bench's 5 CPUs (fp32)
    _server_cpu("cpu-xeon-silver-4114", "Intel Xeon Silver 4114", 10, 2.2, 32, "AVX-512, one FMA unit", 6, 2400, 768,
                85, _ARK_4114, hwgpt="cpu_xeon_silver", aliases=(r"xeon.*silver\s*4114",),
                notes="HW-GPT-Bench says only 'Xeon Silver'; the model 4114 is our assumption."),
    _server_cpu("cpu-xeon-gold-6242", "Intel Xeon Gold 6242", 16, 2.8, 64, "AVX-512, two FMA units", 6, 2933, 1024,
                150, _ARK_6242, hwgpt="cpu_xeon_gold", aliases=(r"xeon.*gold\s*6242",),
                notes="HW-GPT-Bench says only 'Xeon Gold'; the model 6242 is our assumption."),
    _server_cpu("cpu-epyc-7502", "AMD EPYC 7502", 32, 2.5, 32, "Zen 2, two 256-bit FMA units", 8, 3200, 4096, 180,
                _AMD.format(7502), hwgpt="cpu_amd_7502", aliases=(r"epyc\s*7502\b",)),
    _server_cpu("cpu-epyc-7513", "AMD EPYC 7513", 32, 2.6, 32, "Zen 3, two 256-bit FMA units", 8, 3200, 4096, 200,
                _AMD.format(7513), hwgpt="cpu_amd_7513", aliases=(r"epyc\s*7513\b",)),
    _server_cpu("cpu-epyc-7452", "AMD EPYC 7452", 32, 2.35, 32, "Zen 2, two 256-bit FMA units", 8, 3200, 4096, 155,
                _AMD.format(7452), hwgpt="cpu_amd_7452", aliases=(r"epyc\s*7452\b",)),
    # ---- beyond HW-GPT-Bench
    _gpu("gpu-h200-sxm-141gb", "NVIDIA H200 SXM 141GB", "datacenter", 67, 989.5, 989.5, 4800, 141, 700, _H200,
         aliases=(r"h200",)),
    DeviceSpec(
        "gpu-jetson-orin-nano-8gb", "NVIDIA Jetson Orin Nano 8GB", "gpu", "edge",
        _tf(1.28, f"derived: 1024 CUDA cores x 2 FLOP x 625 MHz; {_ORIN}", "derived"),
        _tf(10.24, f"derived: the datasheet's 40 TOPS (sparse INT8) / 2 (dense) / 2 (fp16 tensor = half the INT8 "
                   f"rate on Ampere); {_ORIN}", "derived"),
        _tf(10.24, f"derived as fp16 (Ampere tensor cores run bf16 at the fp16 rate); {_ORIN}", "derived"),
        _bw(68, _ORIN), _gb(8, _ORIN + "; memory shared by CPU and GPU"),
        _w(15, _ORIN + "; the highest power mode (not a TDP in the datacenter sense)"),
        None, None, (r"orin.*nano",), "Jetson Orin Nano Super (JetPack 6.1+) raises clocks: 67 TOPS, 102 GB/s, 25 W."),
    DeviceSpec(
        "cpu-raspberry-pi-5", "Raspberry Pi 5 (BCM2712, 4x Cortex-A76, 8GB)", "cpu", "edge",
        _tf(0.1536, f"derived: 4 cores x 2.4 GHz x 16 FP32 FLOP/cycle (Cortex-A76: two 128-bit NEON FMA pipes, "
                    f"Arm Cortex-A76 Software Optimization Guide); clock from {_RPI5}", "derived"),
        _tf(0.3072, "derived: twice the fp32 rate (Armv8.2 FP16 NEON arithmetic, 8 lanes per 128-bit FMA); "
                    f"clock from {_RPI5}", "derived"),
        _no("Cortex-A76 has no BF16 instructions (an Armv8.6 feature)"),
        _bw(17.07, f"derived: LPDDR4X-4267 on a 32-bit bus (4267e6 x 4 bytes); {_RPI5}", "derived"),
        _gb(8, _RPI5),
        _w(27, f"estimate: the rating of the official 27 W (5.1 V, 5 A) USB-C supply, {_RPI5}; Raspberry Pi "
               f"publishes no TDP, so this is an upper bound of board power", "estimate"),
        None, 4, (r"raspberry\s*pi\s*5", r"cortex-a76"), "Modeled in fp32 like the other CPUs; measurable as a CPU device where one is available."),
    DeviceSpec(
        "gpu-apple-m2", "Apple M2 (10-core GPU)", "gpu", "edge",
        _tf(3.6, _M2),
        _tf(3.6, f"derived: Apple GPUs run fp16 at the fp32 rate (same ALUs); {_M2}", "derived"),
        _no("no published bf16 rate for the M2 GPU"),
        _bw(100, _M2), _gb(24, _M2 + "; maximum unified-memory configuration"),
        _w(20, "estimate: Apple publishes no TDP; approximate M2 package power under combined CPU+GPU load as "
               "reported by independent reviews (AnandTech, Notebookcheck), rounded", "estimate"),
        None, None, (r"apple\s*m2(?!\s*(pro|max|ultra))",), "Modeled only: the measurement layer runs on CPU and CUDA (not MPS); there is no NVML/RAPL counter."),
]

REGISTRY: Mapping[str, DeviceSpec] = MappingProxyType({d.id: d for d in _ENTRIES})
assert len(REGISTRY) == len(_ENTRIES), "duplicate device id"


def with_threads(spec: DeviceSpec, threads: int) -> DeviceSpec:
    """A CPU spec restricted to ``threads`` cores (one thread per core): the fp32/fp16 peaks scale
    by ``threads / cores``; bandwidth, memory and TDP stay (they are the socket's). Use it to
    describe a measurement that used fewer threads than the CPU has cores (e.g. a 2-vCPU VM on an
    EPYC), so that calibrated efficiencies stay relative to what the measurement could use."""
    if spec.kind != "cpu" or not spec.cores:
        raise HwlmError(f"invalid spec: {spec.id!r}; allowed: a CPU spec with a core count")
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= spec.cores:
        raise HwlmError(f"invalid threads: {threads!r}; allowed: 1..{spec.cores}")
    f = threads / spec.cores

    def scale(fig: Figure) -> Figure:
        if fig.value is None:
            return fig
        return Figure(fig.value * f, fig.unit, f"derived: x {threads}/{spec.cores} cores of ({fig.source})", "derived")

    from dataclasses import replace
    return replace(spec, id=f"{spec.id}-{threads}c", name=f"{spec.name} ({threads} of {spec.cores} cores)",
                   fp32=scale(spec.fp32), fp16=scale(spec.fp16), bf16=scale(spec.bf16), cores=threads,
                   hwgpt_name=None, aliases=())


def get_device(device_id: str | DeviceSpec) -> DeviceSpec:
    """The registry entry for ``device_id`` (also accepts HW-GPT-Bench's device names)."""
    if isinstance(device_id, DeviceSpec):
        return device_id
    if device_id in REGISTRY:
        return REGISTRY[device_id]
    for d in REGISTRY.values():
        if d.hwgpt_name is not None and d.hwgpt_name == device_id:
            return d
    raise HwlmError(f"invalid device: {device_id!r}; allowed: {sorted(REGISTRY)} "
                     f"or HW-GPT-Bench names {sorted(d.hwgpt_name for d in REGISTRY.values() if d.hwgpt_name)}")


def list_devices(kind: str | None = None, hwgpt_only: bool = False) -> list[DeviceSpec]:
    out = [d for d in REGISTRY.values() if kind is None or d.kind == kind]
    return [d for d in out if d.hwgpt_name] if hwgpt_only else out


def hwgpt_device_ids() -> dict[str, str]:
    """HW-GPT-Bench's device names -> this package's device ids (the registry's ``hwgpt_name``), in
    HW-GPT-Bench's ``device_list`` order."""
    return {d.hwgpt_name: d.id for d in list_devices(hwgpt_only=True)}


def match_registry(name: str) -> DeviceSpec | None:
    """The registry entry whose aliases match a runtime device name (CPU model string or GPU
    name), or None. E.g. ``"NVIDIA A100-SXM4-40GB"`` -> ``gpu-a100-sxm4-40gb``."""
    for d in REGISTRY.values():
        if any(re.search(a, name, re.IGNORECASE) for a in d.aliases):
            return d
    return None


# --------------------------------------------------------------------------- the measuring machine
def cpu_model_name() -> str:
    """CPU model string: ``model name`` from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            import subprocess
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown-cpu"


_CPU_NOISE = re.compile(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@\s*[\d.]+\s*ghz|\b\d+-core\b|\bintel\b|\bamd\b|"
                        r"\bwith radeon.*$|\bgraphics\b", re.IGNORECASE)
_GPU_NOISE = re.compile(r"\b(nvidia|geforce|tesla|amd|radeon)\b", re.IGNORECASE)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def _cpu_slug(model: str) -> str:
    return _slug(_CPU_NOISE.sub(" ", model)) or "unknown"


def _gpu_slug(name: str) -> str:
    return _slug(_GPU_NOISE.sub(" ", name)) or "unknown"


def _torch_device(device: Any):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def local_device_id(device: Any = "cpu", threads: int | None = None) -> str:
    """A stable id for the device a measurement runs on.

    * CPU: ``cpu-<model slug>-<threads>c``, e.g. ``"AMD EPYC"`` with 2 threads -> ``"cpu-epyc-2c"``,
      ``"Intel(R) Xeon(R) Gold 6242 CPU @ 2.80GHz"`` with 16 -> ``"cpu-xeon-gold-6242-16c"``.
      ``threads`` defaults to ``torch.get_num_threads()`` — latency depends on the threads used,
      so a different thread count is a different measured device.
    * CUDA: ``gpu-<name slug>``, e.g. ``"NVIDIA H100 80GB HBM3"`` -> ``"gpu-h100-80gb-hbm3"``,
      ``"NVIDIA A100-SXM4-40GB"`` -> ``"gpu-a100-sxm4-40gb"`` (memory size and form factor stay in
      the id: they change bandwidth and power).
    """
    import torch

    dev = _torch_device(device)
    if dev.type == "cpu":
        n = int(threads if threads is not None else torch.get_num_threads())
        return f"cpu-{_cpu_slug(cpu_model_name())}-{n}c"
    if dev.type == "cuda":
        return f"gpu-{_gpu_slug(torch.cuda.get_device_name(dev))}"
    if dev.type == "mps":
        return f"gpu-{_cpu_slug(cpu_model_name())}-mps"
    raise HwlmError(f"invalid device: {device!r}; allowed: 'cpu', 'cuda[:i]' or 'mps'")


def host_provenance(device: Any = "cpu") -> dict[str, Any]:
    """Provenance of the measuring machine, read now. JSON-serialisable (str/int/None values).

    Always: ``device_id``, ``device``, ``cpu_model``, ``logical_cores``, ``torch_threads``,
    ``torch_version``, ``numpy_version``, ``python_version``, ``platform``, ``hostname_sha256``
    (first 16 hex digits of the SHA-256 of the host name: distinguishes machines without
    publishing their names), ``date_utc`` (ISO 8601), ``load_avg_1m`` (1-minute load average when
    read: other work on the machine makes CPU timings unreliable, and the device lock cannot keep
    out programs that do not take it; None where the OS does not report it).
    On CUDA, also: ``gpu_name``, ``gpu_uuid``, ``gpu_memory_bytes``, ``gpu_capability``,
    ``driver_version`` (NVML; None if NVML is unavailable), ``cuda_version`` (the CUDA runtime
    torch was built with), ``cudnn_version``.
    """
    import numpy as np
    import torch

    dev = _torch_device(device)
    out: dict[str, Any] = {
        "device_id": local_device_id(dev),
        "device": str(dev),
        "cpu_model": cpu_model_name(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname_sha256": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16],
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": _load_avg(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        uuid = getattr(props, "uuid", None)
        out.update({
            "gpu_name": props.name,
            "gpu_uuid": str(uuid) if uuid is not None else None,
            "gpu_memory_bytes": int(props.total_memory),
            "gpu_capability": f"{props.major}.{props.minor}",
            "driver_version": _nvml_driver_version(),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
        })
    return out


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _nvml_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML missing or no driver: provenance says None
        return None
