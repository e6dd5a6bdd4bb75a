"""Documents of the corpus sources, their text normalisation and the extracted-text file format."""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.files import sha256_bytes, write_bytes

NORMALIZATION = (
    "Unicode NFC; CRLF/CR -> LF; typographic quotes (U+2018/2019/201C/201D) -> ASCII ' and \"; "
    "trailing whitespace of each line removed; runs of blank lines collapsed to one; "
    "leading/trailing blank lines removed"
)



class CorpusError(HwlmError):
    """Invalid input to a corpus function, or corpus files that do not match their manifest."""


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
    write_bytes(path, data)
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


def check_int(field: str, value: Any, low: int, allowed: str) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``low``, else a :class:`CorpusError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise CorpusError.invalid(field, value, allowed)
    return int(value)
