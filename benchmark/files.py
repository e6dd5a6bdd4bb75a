"""Writing files atomically, one writer per file, and hashing them: the package's one way to do
each (and the JSON encoding of numpy values that written JSON shares).

A write goes to a new hidden temporary next to the target (``.<name>.tmp-<16 hex digits>``,
created exclusively, so concurrent writers never share one), is fsynced and renamed into place
with ``os.replace``; a reader or a crash sees the old file or the new one, never half of one.
Hidden names are also what release manifests skip, so a temporary is never published.

A file that a process rewrites again and again (a table, a MOO results file) takes a
:class:`WriterLock` for as long as it writes: a second writer is refused at once, with the first
one's process id, instead of silently overwriting the first one's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["WriterLock", "atomic_path", "write_bytes", "write_text", "sha256_file", "sha256_bytes",
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


class WriterLock:
    """Exclusive advisory lock on ``.<name>.lock`` next to ``path``: one writer per file.

    A second writer gets ``busy(holder)`` raised, ``holder`` being the first one's process id.
    ``flock`` locks die with their process, so a killed writer never blocks the next one. Where
    locking is unsupported (no fcntl, or a filesystem without flock) the writer runs unlocked.
    """

    def __init__(self, path: str | os.PathLike, busy: Callable[[str], BaseException]):
        path = Path(path)
        self.path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                finally:
                    os.close(fd)
                raise busy(holder) from None
            except OSError:  # pragma: no cover - filesystem without flock
                os.close(fd)
                return
            try:  # a closing writer may have unlinked the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._fd = fd
                return
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still holding the lock (see the inode check above)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        with contextlib.suppress(Exception):  # also at interpreter shutdown
            self.release()


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
