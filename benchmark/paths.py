"""Where the embedded release lives.

The embedded default release is the repository's ``data/`` directory (the package is
installed in editable mode from a clone, see README). ``HWLM_DATA_DIR`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("HWLM_DATA_DIR", REPO_ROOT / "data"))
