#!/usr/bin/env python
"""Count the corruption matrix of ``tests/test_corruption.py`` with verification on and off.

    taskset -c 1 python scripts/corruption_matrix.py

Each case damages its own copy of the embedded release (in a temporary directory) and opens it
with ``Benchmark("t", path=copy)``, once with ``verify=True`` and once with ``verify=False``.
Printed: per case, whether opening raised the package's error naming the damaged file; the counts;
the cases that opened without an error when verification was off.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmark.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests"))
import test_corruption as matrix  # noqa: E402  (the matrix's cases and copy helper)


def main() -> int:
    from benchmark import Benchmark
    from benchmark.errors import HwlmError

    tmp = Path(tempfile.mkdtemp(prefix="hwlm-corruption-"))
    try:
        os.environ["HWLM_CACHE_DIR"] = str(tmp / "cache")
        base = tmp / "pristine"
        shutil.copytree(matrix.DATA, base)
        detected, opened_unverified = 0, []
        for i, (kind, damage, rel, how) in enumerate(matrix.MATRIX):
            outcome = {}
            for verify in (True, False):
                copy = matrix.clone(base, tmp / f"case-{i}-{verify}", rel)
                how(copy / rel)
                try:
                    Benchmark("t", copy, verify=verify)
                    outcome[verify] = "opened"
                except HwlmError as e:
                    outcome[verify] = "named" if matrix.named(e, rel) else "error without the file's name"
                shutil.rmtree(copy)
            detected += outcome[True] == "named"
            if outcome[False] == "opened":
                opened_unverified.append(f"{kind}: {damage}")
            print(f"{kind:14s} {damage:24s} verify=True: {outcome[True]:8s} verify=False: {outcome[False]}")
        n = len(matrix.MATRIX)
        print(f"\n{n} cases; verify=True: {detected} detected with the file named, {n - detected} not; "
              f"verify=False: {len(opened_unverified)} opened without an error")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
