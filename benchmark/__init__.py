"""hwlm-bench: a hardware-aware benchmark for language-model architectures."""

from benchmark.version import __version__  # noqa: E402
from benchmark.spaces import Architecture, ArchitectureError, SearchSpace, get_space, SPACES  # noqa: E402

__all__ = ["Architecture", "ArchitectureError", "SearchSpace", "get_space", "SPACES", "__version__", "Benchmark",
           "QueryError", "HWGPTBenchCompat"]


def __getattr__(name: str):
    # the query API (and its pandas/h5py/xgboost imports) loads only when asked for
    if name in ("Benchmark", "QueryError", "QueryResult"):
        from benchmark import api

        return getattr(api, name)
    if name == "HWGPTBenchCompat":
        from benchmark import hwgpt_compat

        return hwgpt_compat.HWGPTBenchCompat
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
