"""The byte-level BPE tokenizer of the corpus (HF ``tokenizers``), trained on the train split only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from benchmark.paths import data_dir
from benchmark.supernet.corpus.documents import CorpusError, check_int
from benchmark.supernet.corpus.splits import TextBlock

TOKEN_DTYPE = np.uint16  # token files store ids as uint16: vocabularies up to 65536
EOT_TOKEN = "<|endoftext|>"
DEFAULT_VOCAB_SIZE = 4096


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, *, min_frequency: int = 2, progress: bool = True
):
    """Train a byte-level BPE (Hugging Face ``tokenizers``) with the special token :data:`EOT_TOKEN`.

    The byte alphabet (256) and ``EOT_TOKEN`` (id 0) are always in the vocabulary, so any text
    round-trips exactly through encode / decode. Deterministic for the same texts.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    vocab_size = check_int("vocab_size", vocab_size, 257, f"an int in [257, {np.iinfo(TOKEN_DTYPE).max + 1}]")
    if vocab_size > np.iinfo(TOKEN_DTYPE).max + 1:
        raise CorpusError.invalid("vocab_size", vocab_size, f"an int in [257, {np.iinfo(TOKEN_DTYPE).max + 1}] (uint16 token files)")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise CorpusError.invalid("texts", f"{len(texts)} items", "a non-empty iterable of str")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def load_tokenizer(path: str | os.PathLike | None = None):
    """Load a ``tokenizers.Tokenizer`` (default ``<data dir>/tokenizer.json``) that has :data:`EOT_TOKEN`."""
    from tokenizers import Tokenizer

    path = Path(path) if path is not None else data_dir() / "tokenizer.json"
    if not path.is_file():
        raise CorpusError.invalid("tokenizer path", str(path), "an existing tokenizer.json (rebuild: scripts/prepare_corpus.py)")
    tok = Tokenizer.from_file(str(path))
    if tok.token_to_id(EOT_TOKEN) is None:
        raise CorpusError.invalid("tokenizer", str(path), f"a tokenizer with the special token {EOT_TOKEN!r}")
    return tok


def eot_id(tokenizer) -> int:
    """Id of :data:`EOT_TOKEN` in ``tokenizer``."""
    i = tokenizer.token_to_id(EOT_TOKEN)
    if i is None:
        raise CorpusError.invalid("tokenizer", "without EOT", f"a tokenizer with the special token {EOT_TOKEN!r}")
    return int(i)


def encode_blocks(
    blocks: Sequence[TextBlock], tokenizer, *, progress: bool = False, desc: str = "encode"
) -> tuple[np.ndarray, dict[str, int]]:
    """Token stream of a split's blocks, in order, with EOT before every discontinuity.

    A block directly continues the previous one when it is the next block of the same
    document; otherwise (and before the first block) :data:`EOT_TOKEN` is inserted.
    Returns the uint16 stream and tokens per source (an EOT counts for the block after it).
    """
    from tqdm.auto import tqdm

    eot = eot_id(tokenizer)
    vocab = tokenizer.get_vocab_size()
    if vocab > np.iinfo(TOKEN_DTYPE).max + 1:
        raise CorpusError.invalid("tokenizer vocabulary size", vocab, "<= 65536 (uint16 token files)")
    pieces: list[np.ndarray] = []
    per_source: dict[str, int] = {}
    prev: TextBlock | None = None
    step = 256
    for start in tqdm(range(0, len(blocks), step), desc=desc, disable=not progress, unit_scale=step):
        chunk = list(blocks[start : start + step])
        encodings = tokenizer.encode_batch([b.text for b in chunk], add_special_tokens=False)
        for b, enc in zip(chunk, encodings):
            ids = enc.ids
            continues = (
                prev is not None and prev.source == b.source and prev.doc_index == b.doc_index
                and b.index == prev.index + 1
            )  # fmt: skip
            if not continues:
                ids = [eot] + ids
            pieces.append(np.asarray(ids, dtype=TOKEN_DTYPE))
            per_source[b.source] = per_source.get(b.source, 0) + len(ids)
            prev = b
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=TOKEN_DTYPE)
    return stream, per_source
