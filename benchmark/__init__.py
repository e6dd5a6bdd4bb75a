"""hwlm-bench: a hardware-aware benchmark for language-model architectures."""

__version__ = "0.1.0"

from benchmark.spaces import Architecture, ArchitectureError, SearchSpace, get_space, SPACES  # noqa: E402

__all__ = ["Architecture", "ArchitectureError", "SearchSpace", "get_space", "SPACES", "__version__"]
