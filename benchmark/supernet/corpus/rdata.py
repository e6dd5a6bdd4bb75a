"""Just enough of R's serialisation format to read the Austen novels from R lazy-load data (no R needed)."""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from benchmark.supernet.corpus.documents import CorpusError


class RReader:
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


def r_lazyload_blob(blob: bytes, what: str) -> bytes:
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
