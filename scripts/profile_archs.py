#!/usr/bin/env python
"""Profile architectures on this machine into a shard table (same as ``hwlm profile``).

Example: ``python scripts/profile_archs.py --space t -n 500 --out shards/cpu-0.h5 --shard 0/2``
"""

import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main(["profile", *sys.argv[1:]]))
