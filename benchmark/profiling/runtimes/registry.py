"""Measured devices as hardware x inference runtime x dtype x threads, and the backend that runs each.

A runtime device id is ``<host>-<threads>c-<runtime>-<dtype>``: the host part and thread count as
:func:`benchmark.profiling.devices.local_device_id` names this machine's CPU (``cpu-epyc`` on the
project's VM), then the runtime (``torch`` eager, ``ort`` = ONNX Runtime, ``ov`` = OpenVINO) and
the dtype (``fp32``, ``bf16``, ``int8``). E.g. ``cpu-epyc-1c-ort-int8``, ``cpu-epyc-2c-torch-fp32``.

:data:`RUNTIMES` lists which dtypes each runtime offers; :data:`MEASURED_RUNTIME_DEVICES` the
settings the benchmark measures (host-independent: ``device_id`` adds the host).
The release's ``cpu-epyc-1c`` and ``cpu-epyc-2c`` are PyTorch eager fp32 on one and two threads,
i.e. ``cpu-epyc-1c-torch-fp32`` and ``cpu-epyc-2c-torch-fp32`` in this naming (the table keeps the
short ids; their provenance the full ones).

Nothing here imports onnxruntime or openvino until a backend of theirs is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from benchmark.profiling.runtimes.base import Backend, RuntimeConfigError

__all__ = ["RUNTIMES", "RuntimeDevice", "MEASURED_RUNTIME_DEVICES", "parse_device_id", "make_backend",
           "runtime_device_provenance"]

RUNTIMES: dict[str, tuple[str, ...]] = {"torch": ("fp32", "bf16"), "ort": ("fp32", "int8"), "ov": ("fp32",)}
RUNTIME_NAMES = {"torch": "PyTorch eager", "ort": "ONNX Runtime (CPU execution provider)",
                 "ov": "OpenVINO (CPU plugin)"}


@dataclass(frozen=True)
class RuntimeDevice:
    """One measured setting of this machine: runtime, dtype, threads (the host is added by :meth:`device_id`)."""

    runtime: str
    dtype: str
    threads: int
    notes: str = ""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise RuntimeConfigError(f"invalid runtime: {self.runtime!r}; allowed: {list(RUNTIMES)}")
        if self.dtype not in RUNTIMES[self.runtime]:
            raise RuntimeConfigError(f"invalid dtype for runtime {self.runtime!r}: {self.dtype!r}; allowed: "
                                     f"{list(RUNTIMES[self.runtime])}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise RuntimeConfigError(f"invalid threads: {self.threads!r}; allowed: an integer >= 1")

    @property
    def key(self) -> str:
        """Host-independent part of the id: ``<threads>c-<runtime>-<dtype>``."""
        return f"{self.threads}c-{self.runtime}-{self.dtype}"

    def device_id(self, host: str | None = None) -> str:
        """``<host>-<key>``; ``host`` defaults to this machine's CPU slug (``cpu-epyc`` on the VM)."""
        if host is None:
            from benchmark.profiling.devices import local_device_id

            host = local_device_id("cpu", threads=self.threads).rsplit("-", 1)[0]
        return f"{host}-{self.key}"

    def backend(self) -> Backend:
        return make_backend(self.runtime, self.dtype, self.threads)


MEASURED_RUNTIME_DEVICES: tuple[RuntimeDevice, ...] = (
    RuntimeDevice("torch", "fp32", 1, "the release's existing measured device (cpu-epyc-1c)"),
    RuntimeDevice("torch", "fp32", 2, "both vCPUs: time it alone on the machine"),
    RuntimeDevice("torch", "bf16", 1, "oneDNN bf16 matmuls; native only with AVX512-BF16 (recorded)"),
    RuntimeDevice("ort", "fp32", 1, "exported prefill/decode graphs, ORT_ENABLE_ALL"),
    RuntimeDevice("ort", "int8", 1, "dynamic int8 quantisation of the linear layers"),
    RuntimeDevice("ov", "fp32", 1, "the same ONNX graphs, CPU plugin, f32 inference precision"),
)

_ID_RE = re.compile(r"(?P<host>.+)-(?P<threads>\d+)c-(?P<runtime>[a-z]+)-(?P<dtype>[a-z0-9]+)")


def parse_device_id(device_id: str) -> tuple[str, RuntimeDevice]:
    """``"cpu-epyc-1c-ort-int8"`` -> ``("cpu-epyc", RuntimeDevice("ort", "int8", 1))``."""
    m = _ID_RE.fullmatch(device_id) if isinstance(device_id, str) else None
    if m is None:
        raise RuntimeConfigError(f"invalid runtime device id: {device_id!r}; allowed: "
                                 f"'<host>-<threads>c-<runtime>-<dtype>' like 'cpu-epyc-1c-ort-int8' with runtime "
                                 f"and dtype among {RUNTIMES}")
    return m["host"], RuntimeDevice(m["runtime"], m["dtype"], int(m["threads"]))


def make_backend(runtime: str, dtype: str = "fp32", threads: int = 1) -> Backend:
    """A fresh, unprepared backend. Raises :class:`RuntimeConfigError` for unknown names and for a
    runtime whose package is not installed (with the install command)."""
    RuntimeDevice(runtime, dtype, threads)  # validates
    if runtime == "torch":
        from benchmark.profiling.runtimes.torch_eager import TorchBackend
        return TorchBackend(dtype, threads)
    if runtime == "ort":
        from benchmark.profiling.runtimes.onnx_runtime import OrtBackend
        return OrtBackend(dtype, threads)
    from benchmark.profiling.runtimes.openvino_cpu import OpenVinoBackend
    return OpenVinoBackend(dtype, threads)


def runtime_device_provenance(backend: Backend, host: str | None = None) -> dict[str, Any]:
    """Provenance of a measurement with ``backend``: the machine's (:func:`host_provenance`, with
    ``device_id`` replaced by the runtime device id) and the runtime's (:meth:`Backend.provenance`)."""
    from benchmark.profiling.devices import host_provenance

    dev = RuntimeDevice(backend.runtime, backend.dtype, backend.threads)
    out = host_provenance("cpu")
    out["host_device_id"] = out["device_id"]
    out["device_id"] = dev.device_id(host)
    out["runtime_name"] = RUNTIME_NAMES[dev.runtime]
    out.update(backend.provenance())
    return out
