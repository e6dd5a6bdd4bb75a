"""Where the embedded release lives.

The embedded default release is the repository's ``data/`` directory (the package is
installed in editable mode from a clone, see README). ``HWLM_DATA_DIR`` points elsewhere.
The user cache (Hub downloads, the verified-hash cache of releases) is ``HWLM_CACHE_DIR``, else
``$XDG_CACHE_HOME/hwlm-bench``, else ``~/.cache/hwlm-bench``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("HWLM_DATA_DIR", REPO_ROOT / "data"))


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """``override``, else ``$HWLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/hwlm-bench`` (``~/.cache/hwlm-bench``)."""
    if override is None:
        override = os.environ.get("HWLM_CACHE_DIR")
    if override is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        override = os.path.join(base, "hwlm-bench")
    return Path(override).expanduser().resolve()
