#!/usr/bin/env python
"""Time opening a release with verification against opening it without, in one run.

    taskset -c 1 python scripts/bench_open.py                  # the embedded release (data/)
    taskset -c 1 python scripts/bench_open.py --path REL --repeats 30

Printed: the cold open (an empty hash cache in a temporary directory: every file is hashed and the
table's rows are checked), then ``--repeats`` warm opens of ``Benchmark(space)`` and of
``Benchmark(space, verify=False)``, interleaved so that both see the same machine load, with their
medians and the ratio verified / unverified. A warm verified open takes the table's structure from
the state saved when its bytes were first checked, so it can be faster than an unverified one, which
walks the HDF5 file. The user's own hash cache is not touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def _open_seconds(space: str, path: str | None, verify: bool) -> float:
    from benchmark import Benchmark

    t0 = time.perf_counter()
    Benchmark(space, path, verify=verify)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="t")
    ap.add_argument("--path", default=None, help="release directory (default: the embedded release)")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HWLM_CACHE_DIR"] = cache
        _open_seconds(a.space, a.path, False)  # imports and the page cache, outside every figure
        cold = _open_seconds(a.space, a.path, True)
        on, off = [], []
        for _ in range(a.repeats):
            on.append(_open_seconds(a.space, a.path, True))
            off.append(_open_seconds(a.space, a.path, False))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"release: {a.path or 'embedded (data/)'}, space {a.space}, {a.repeats} warm opens each")
    print(f"cold open, verify=True (empty hash cache): {cold * 1e3:.1f} ms")
    print(f"warm open, verify=True:  median {m_on * 1e3:.1f} ms (min {min(on) * 1e3:.1f}, max {max(on) * 1e3:.1f})")
    print(f"warm open, verify=False: median {m_off * 1e3:.1f} ms (min {min(off) * 1e3:.1f}, max {max(off) * 1e3:.1f})")
    print(f"ratio verify=True / verify=False: {m_on / m_off:.2f} (difference {(m_on - m_off) * 1e3:+.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
