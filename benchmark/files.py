"""Writing files atomically and hashing them: the package's one way to do both (and the JSON
encoding of numpy values that written JSON shares).

A write goes to a new hidden temporary next to the target (``.<name>.tmp-<16 hex digits>``,
created exclusively, so concurrent writers never share one), is fsynced and renamed into place
with ``os.replace``; a reader or a crash sees the old file or the new one, never half of one.
Hidden names are also what release manifests skip, so a temporary is never published.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["atomic_path", "write_bytes", "write_text", "sha256_file", "sha256_bytes",
           "remove_stale_temporaries", "json_default"]

_CHUNK = 1 << 20


def _temporary_re(path: Path) -> re.Pattern:
    return re.compile(re.escape(f".{path.name}.tmp-") + r"[0-9a-f]{16}")


def _new_temporary(path: Path) -> Path:
    """A new empty file ``.<name>.tmp-<random>`` next to ``path``, created with the umask's mode."""
    while True:
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write; on a clean exit it is fsynced and renamed
    onto ``path`` (keeping the permissions of a file it replaces), on an exception removed.
    Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove temporaries of ``path`` left by a writer killed mid-write. Call it only while no
    other writer of ``path`` can be running (e.g. holding its lock)."""
    path = Path(path)
    pat = _temporary_re(path)
    with contextlib.suppress(OSError):
        for p in path.parent.iterdir():
            if pat.fullmatch(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks; symlinks are followed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_default(o: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")
