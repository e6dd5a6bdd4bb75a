"""Seeds: the package's one check of a seed a caller passes (every random choice takes one)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.errors import HwlmError

__all__ = ["check_seed", "seeded_rng"]

SEED_ALLOWED = "an integer >= 0"


def check_seed(seed: Any, field: str = "seed", error: type[HwlmError] = HwlmError) -> int:
    """``seed`` as a Python int; ``error`` naming ``field`` unless it is an integer >= 0 (a bool,
    a float or a negative number is refused rather than rounded or wrapped)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise error.invalid(field, seed, SEED_ALLOWED)
    return int(seed)


def seeded_rng(seed: Any, field: str = "seed", error: type[HwlmError] = HwlmError) -> np.random.Generator:
    """A ``numpy.random.Generator``: ``seed`` itself when it is one, else seeded with
    :func:`check_seed`'s integer (``None`` is refused: an unseeded draw cannot be reproduced)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise error.invalid(field, seed, f"{SEED_ALLOWED} or a numpy.random.Generator (draws are always seeded)")
    return np.random.default_rng(check_seed(seed, field, error))
