#!/usr/bin/env python
"""Rebuild the supernet corpus: fetch the three sources, extract, split, train the tokenizer, encode.

Writes ``<out>/tokenizer.json`` and ``<out>/corpus/{train,val,test}.npy`` + ``manifest.json``.
Needs ``pip`` and ``apt-get`` (Debian/Ubuntu package lists; run ``apt-get update`` once) unless
the three archives are already in ``--work-dir``. Same arguments give byte-identical outputs.
The same command is ``hwlm prepare-corpus``; the work is done by
:func:`benchmark.supernet.corpus.prepare_corpus`.

    python scripts/prepare_corpus.py --out data/ --work-dir /tmp/hwlm-corpus
    python scripts/prepare_corpus.py --out data/ --work-dir /tmp/hwlm-corpus \\
        --write-sample tests/data/corpus_sample.txt
"""

from __future__ import annotations

import argparse
import sys

from benchmark.supernet.corpus import add_prepare_corpus_arguments, run_prepare_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prepare_corpus_arguments(parser)
    return run_prepare_corpus(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
