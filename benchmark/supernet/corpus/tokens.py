"""The token files: manifest, verified loading of a split, random training batches and the
deterministic evaluation windows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from benchmark.files import sha256_file
from benchmark.supernet.corpus.documents import CorpusError, check_int
from benchmark.supernet.corpus.splits import SPLITS
from benchmark.supernet.corpus.tokenizer import TOKEN_DTYPE

MANIFEST_SCHEMA_VERSION = 1
DEFAULT_EVAL_TOKENS = 65536  # predicted test tokens a perplexity is measured on (the table records its own)


def default_data_dir() -> Path:
    """The embedded release folder: ``$HWLM_DATA_DIR`` if set, else the repository's ``data/``."""
    from benchmark.paths import data_dir

    return data_dir()



def load_manifest(data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The corpus manifest ``<data_dir>/corpus/manifest.json``."""
    path = (Path(data_dir) if data_dir is not None else default_data_dir()) / "corpus" / "manifest.json"
    if not path.is_file():
        raise CorpusError.invalid(
            "data_dir", str(path.parent.parent), "a folder with corpus/manifest.json (rebuild: hwlm prepare-corpus)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


_VERIFIED: dict[tuple[str, int, int], str] = {}


def _check_split_name(name: Any) -> str:
    if name not in SPLITS:
        raise CorpusError.invalid("split", name, f"one of {list(SPLITS)}")
    return name


def verify_split(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Check a split's file against the manifest's sha256; returns its path.

    Results are cached per (path, size, mtime), so repeated calls cost nothing.
    """
    name = _check_split_name(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    entry = load_manifest(root)["splits"][name]
    path = root / entry["path"]
    if not path.is_file():
        raise CorpusError(
            f"split {name!r}: {path} is missing; rebuild it with `python scripts/prepare_corpus.py --out {root}` "
            "(or `hwlm prepare-corpus`)"
        )
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(key) != entry["sha256"]:
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise CorpusError(f"split {name!r}: {path} has sha256 {digest}, the manifest says {entry['sha256']}")
        _VERIFIED[key] = digest
    return path


def load_split(
    name: str, data_dir: str | os.PathLike | None = None, *, mmap: bool = True, verify: bool = True
) -> np.ndarray:
    """Token stream of split ``name`` ("train", "val" or "test") as a 1-D uint16 array.

    Memory-mapped read-only by default (``np.load(..., mmap_mode="r", allow_pickle=False)``).
    With ``verify`` (default) the file is checked once against the manifest's sha256.
    """
    name = _check_split_name(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if verify:
        path = verify_split(name, root)
    else:
        path = root / "corpus" / f"{name}.npy"
        if not path.is_file():
            raise CorpusError(f"split {name!r}: {path} is missing; rebuild it with scripts/prepare_corpus.py")
    arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    if arr.dtype != TOKEN_DTYPE or arr.ndim != 1:
        raise CorpusError(f"split {name!r}: {path} holds {arr.dtype} of shape {arr.shape}; expected 1-D uint16")
    return arr


def _check_tokens(tokens: Any, min_len: int, why: str) -> np.ndarray:
    if not isinstance(tokens, np.ndarray) or tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        desc = type(tokens).__name__
        if isinstance(tokens, np.ndarray):
            desc += f" {tokens.dtype} ndim={tokens.ndim}"
        raise CorpusError.invalid("tokens", desc, "a 1-D numpy integer array (e.g. from load_split)")
    if tokens.size < min_len:
        raise CorpusError.invalid("tokens", f"length {tokens.size}", f"length >= {min_len} ({why})")
    return tokens


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator, device=None):
    """A random training batch ``(x, y)`` of int64 tensors of shape ``(batch_size, block_size)``.

    Start positions are drawn uniformly with ``rng`` from ``[0, len(tokens) - block_size - 1]``;
    ``y`` is ``x`` shifted by one token. The same generator state gives the same batch.
    """
    import torch

    batch_size = check_int("batch_size", batch_size, 1, "an int >= 1")
    block_size = check_int("block_size", block_size, 1, "an int >= 1")
    if not isinstance(rng, np.random.Generator):
        raise CorpusError.invalid("rng", rng, "a numpy.random.Generator (np.random.default_rng(seed))")
    tokens = _check_tokens(tokens, block_size + 1, "block_size + 1 tokens for one input/target pair")
    starts = rng.integers(0, tokens.size - block_size, size=batch_size)
    idx = starts[:, None] + np.arange(block_size + 1)[None, :]
    buf = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))
    x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


def num_eval_windows(n_tokens: int, block_size: int, max_tokens: int | None = None) -> int:
    """How many windows :func:`iter_eval_windows` yields for a stream of ``n_tokens``."""
    n = (int(n_tokens) - 1) // block_size
    if max_tokens is not None:
        n = min(n, int(max_tokens) // block_size)
    return max(n, 0)


def iter_eval_windows(
    tokens: np.ndarray, block_size: int, max_tokens: int | None = None, *, batch_size: int = 1, device=None
) -> Iterator[tuple[Any, Any]]:
    """Deterministic, non-overlapping evaluation windows from the start of ``tokens``.

    Window ``i`` has inputs ``tokens[i*B : (i+1)*B]`` and targets ``tokens[i*B+1 : (i+1)*B+1]``
    (``B = block_size``), so every target token is predicted exactly once, each window with a
    fresh context. Only whole windows are used (the tail is dropped); ``max_tokens`` caps the
    number of predicted tokens (``max_tokens // B`` windows). Yields int64 tensors
    ``(x, y)`` of shape ``(b, B)``, ``b <= batch_size`` (only the last batch may be smaller).
    Because splits interleave their sources, a capped prefix still mixes all sources.
    """
    import torch

    block_size = check_int("block_size", block_size, 1, "an int >= 1")
    batch_size = check_int("batch_size", batch_size, 1, "an int >= 1")
    if max_tokens is not None:
        max_tokens = check_int("max_tokens", max_tokens, block_size, f"None or an int >= block_size ({block_size})")
    tokens = _check_tokens(tokens, block_size + 1, "block_size + 1 tokens for one window")
    n = num_eval_windows(tokens.size, block_size, max_tokens)
    offsets = np.arange(block_size + 1)[None, :]

    def windows() -> Iterator[tuple[Any, Any]]:  # arguments are checked above, not at first next()
        for first in range(0, n, batch_size):
            starts = np.arange(first, min(first + batch_size, n)) * block_size
            buf = torch.from_numpy(np.asarray(tokens[starts[:, None] + offsets], dtype=np.int64))
            x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()
            if device is not None:
                x, y = x.to(device), y.to(device)
            yield x, y

    return windows()
