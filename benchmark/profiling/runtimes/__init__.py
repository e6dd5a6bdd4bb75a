"""Inference runtimes as measured devices: PyTorch eager (fp32, bf16), ONNX Runtime (fp32, int8), OpenVINO (fp32).

* :mod:`.base` — the :class:`~.base.Backend` interface every runtime implements (prepare once,
  prefill, KV-cache decode, provenance), :func:`~.base.relative_error`.
* :mod:`.export` — ONNX export of a dense GPT: a prefill graph and a decode graph with past keys/values.
* :mod:`.torch_eager`, :mod:`.onnx_runtime`, :mod:`.openvino_cpu` — the backends.
* :mod:`.registry` — runtime device ids (``cpu-epyc-1c-ort-int8``), the measured settings, :func:`~.registry.make_backend`.
* :mod:`.workload` — a setting's measured unit on a backend, shaped like :func:`benchmark.profiling.latency.prepare`.
* :mod:`.rss` — peak resident memory of one inference, in a fresh child process.

ONNX Runtime, ONNX and OpenVINO are the optional extra ``runtimes`` (``pip install -e '.[runtimes]'``);
they are imported only when a backend of theirs is built. See ``docs/devices.md``.
"""
