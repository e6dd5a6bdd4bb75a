"""Blocks of whole lines and the seeded train / val / test split of them."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from benchmark.supernet.corpus.documents import CorpusError, Document, check_int

SPLITS = ("train", "val", "test")
DEFAULT_BLOCK_CHARS = 8192
DEFAULT_FRACTIONS = (0.90, 0.05, 0.05)
DEFAULT_SEED = 0


@dataclass(frozen=True)
class TextBlock:
    """A contiguous run of whole lines of one document: the unit that is assigned to a split.

    ``index`` numbers the blocks of a source in reading order (0..n-1 over all its documents).
    """

    source: str
    doc_index: int
    doc_name: str
    index: int
    text: str


def make_blocks(documents: Sequence[Document], block_chars: int = DEFAULT_BLOCK_CHARS) -> list[TextBlock]:
    """Cut every document into blocks of whole lines, each at least ``block_chars`` characters.

    A block closes at the first line end at or after ``block_chars`` characters; a document's
    remainder shorter than ``block_chars // 2`` joins its last block (so only a whole short
    document is a short block). Concatenating a document's blocks gives its text plus ``"\\n"``.
    Pure: the same documents give the same blocks.
    """
    block_chars = check_int("block_chars", block_chars, 1, "an int >= 1")
    if isinstance(documents, (str, Document)):
        raise CorpusError.invalid("documents", type(documents).__name__, "a sequence of Document")
    blocks: list[TextBlock] = []
    counters: dict[str, int] = {}
    doc_indices: dict[str, int] = {}
    for doc in documents:
        if not isinstance(doc, Document):
            raise CorpusError.invalid("documents item", type(doc).__name__, "Document")
        doc_index = doc_indices.get(doc.source, 0)
        doc_indices[doc.source] = doc_index + 1
        pieces: list[str] = []
        current: list[str] = []
        size = 0
        for line in (doc.text + "\n").splitlines(keepends=True):
            current.append(line)
            size += len(line)
            if size >= block_chars:
                pieces.append("".join(current))
                current, size = [], 0
        if current:
            tail = "".join(current)
            if pieces and len(tail) < block_chars // 2:
                pieces[-1] += tail
            else:
                pieces.append(tail)
        for text in pieces:
            idx = counters.get(doc.source, 0)
            counters[doc.source] = idx + 1
            blocks.append(TextBlock(doc.source, doc_index, doc.name, idx, text))
    return blocks


def check_fractions(fractions: Any) -> tuple[float, float, float]:
    """The (train, val, test) fractions as floats, or a :class:`CorpusError` naming what is allowed."""
    allowed = "three numbers (train, val, test), each > 0, summing to 1"
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise CorpusError.invalid("fractions", fractions, allowed) from None
    if len(fr) != 3 or any(not np.isfinite(f) or f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise CorpusError.invalid("fractions", fractions, allowed)
    return fr  # type: ignore[return-value]


def check_seed(seed: Any) -> int:
    """A split seed: an int >= 0."""
    return check_int("seed", seed, 0, "an int >= 0")


def assign_splits(
    n_blocks: int, fractions: Sequence[float] = DEFAULT_FRACTIONS, *, seed: int = DEFAULT_SEED, key: str = ""
) -> np.ndarray:
    """Split code per block (0 train, 1 val, 2 test) from a seeded permutation. Pure.

    ``max(1, round(n * f))`` blocks go to val and to test each (so each split gets at least one
    block), the rest to train. The permutation's generator is seeded with ``seed`` and the
    CRC-32 of ``key`` (the source name), so sources are split independently of their order.
    """
    n = check_int("n_blocks", n_blocks, 0, "an int >= 0")
    fr = check_fractions(fractions)
    seed = check_seed(seed)
    n_val, n_test = (max(1, int(round(n * f))) for f in fr[1:])
    if n - n_val - n_test < 1:
        raise CorpusError.invalid("n_blocks", n, f">= {n_val + n_test + 1} so that train, val and test each get a block")
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    perm = rng.permutation(n)
    codes = np.zeros(n, dtype=np.int8)
    codes[perm[:n_val]] = 1
    codes[perm[n_val : n_val + n_test]] = 2
    return codes


def split_blocks(
    blocks: Sequence[TextBlock], fractions: Sequence[float] = DEFAULT_FRACTIONS, *, seed: int = DEFAULT_SEED
) -> dict[str, list[TextBlock]]:
    """Assign each source's blocks to train / val / test (:func:`assign_splits`, key = source). Pure.

    Returns ``{"train": [...], "val": [...], "test": [...]}`` with the blocks of each split in
    reading order (sources in order of first appearance, then block index). Every block is in
    exactly one split and, since each source gets at least one block per split, every source
    is in every split.
    """
    by_source: dict[str, list[TextBlock]] = {}
    for b in blocks:
        if not isinstance(b, TextBlock):
            raise CorpusError.invalid("blocks item", type(b).__name__, "TextBlock")
        by_source.setdefault(b.source, []).append(b)
    if not by_source:
        raise CorpusError.invalid("blocks", "[]", "at least one block")
    out: dict[str, list[TextBlock]] = {s: [] for s in SPLITS}
    for source, items in by_source.items():
        items = sorted(items, key=lambda b: b.index)
        if [b.index for b in items] != list(range(len(items))):
            raise CorpusError.invalid(f"block indices of source {source}", [b.index for b in items][:10], "0..n-1, each once")
        codes = assign_splits(len(items), fractions, seed=seed, key=source)
        for b, code in zip(items, codes):
            out[SPLITS[code]].append(b)
    return out


def interleave_blocks(blocks: Sequence[TextBlock]) -> list[TextBlock]:
    """Blocks ordered by relative position in their source, so that sources are interleaved.

    The key of a block is ``(rank + 0.5) / n`` where ``rank`` is its position among the ``n``
    given blocks of its source (ties: sources in order of first appearance). Any prefix of the
    result is then a proportional mix of all sources; used for val and test, which are read
    from the start (:func:`iter_eval_windows` with ``max_tokens``). Pure.
    """
    by_source: dict[str, list[TextBlock]] = {}
    for b in blocks:
        by_source.setdefault(b.source, []).append(b)
    keyed = []
    for src_order, items in enumerate(by_source.values()):
        for rank, b in enumerate(sorted(items, key=lambda b: b.index)):
            keyed.append(((rank + 0.5) / len(items), src_order, b.index, b))
    return [t[-1] for t in sorted(keyed, key=lambda t: t[:3])]
