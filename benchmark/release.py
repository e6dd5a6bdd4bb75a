"""A *release*: a directory of artefacts for one search space, described by ``MANIFEST.json``.

A release holds the table(s), surrogates, tokenizer and supernet checkpoint of one space. Its
``MANIFEST.json`` lists every file with its size and sha256, together with the space, the table
schema version, the version of hwlm-bench that wrote it and when. The embedded ``data/``
release and the releases on the Hugging Face Hub (see :mod:`benchmark.hub`) use the same format,
so one function, :func:`verify_release`, checks both.

```
release/
  MANIFEST.json
  table_s.h5
  tokenizer.json
  supernet.safetensors
  surrogates/s/latency_ms@cpu.json
```

``MANIFEST.json``::

    {
      "format": "hwlm-bench-release",
      "format_version": 1,
      "space": "s",
      "schema_version": 1,
      "package_version": "0.1.0",
      "created": "2026-01-01T00:00:00Z",
      "files": [{"path": "table_s.h5", "size": 123, "sha256": "..."}, ...],
      "checksum": "..."
    }

``checksum`` is the sha256 of the manifest's other keys as canonical JSON (sorted keys, no
whitespace): an edit or a flipped byte in the manifest itself is caught, not only in the files it
lists (it is no signature: whoever rewrites the manifest can recompute it). Manifests without one
(written by older versions) are read as before.

Paths are relative, ``/``-separated and may not leave the directory. Extra top-level keys
(a description, provenance) are allowed and kept. A manifest lists every file of the release,
the surrogate sidecars (``*.meta.json``) and ``index.json`` included; :func:`write_manifest`
refuses a symlink that points outside the release (its bytes would not be the release's).

Verification has two costs. :func:`verify_release` hashes every file (downloads, publishing).
``verify_release(..., cached=True)`` (what opening a release with :class:`benchmark.api.Benchmark`
does) always compares sizes, and takes a file's sha256 from a small user cache
(``<cache>/verified-sha256.json``, see :func:`benchmark.paths.cache_dir`) when the file's path,
size, mtime, ctime and inode are those recorded when it was last hashed; otherwise it hashes the
file and records it. An edit that keeps all five (a same-size rewrite within one timestamp tick of
the previous hash) is not seen by the cached check; the full check sees everything.

Maintainer commands that write into a directory holding a ``MANIFEST.json`` go through
:func:`release_write`: refused unless forced, and then the manifest is rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Mapping

from benchmark.errors import HwlmError
from benchmark.files import sha256_bytes, sha256_file, write_text  # sha256_file: part of this module's API

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMAT_VERSION",
    "SUPPORTED_SCHEMA_VERSION",
    "ReleaseError",
    "SchemaVersionError",
    "VerificationError",
    "FileMismatch",
    "sha256_file",
    "list_release_files",
    "write_manifest",
    "read_manifest",
    "verify_release",
    "cached_sha256",
    "check_inside",
    "check_covered",
    "find_release",
    "release_write",
    "verify_on_open",
    "rewrite_manifest",
    "embedded_release",
]

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = "hwlm-bench-release"
#: Version of the MANIFEST.json layout itself (this module reads versions up to this one).
MANIFEST_FORMAT_VERSION = 1
#: Newest table schema version this package reads. Kept equal to ``benchmark.table.SCHEMA_VERSION``.
from benchmark.table import SCHEMA_VERSION as SUPPORTED_SCHEMA_VERSION  # noqa: E402  one schema version for tables and releases

_CORE_KEYS = ("format", "format_version", "space", "schema_version", "package_version", "created", "files", "checksum")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Names never listed when a manifest is built from a directory listing.
_SKIP_SUFFIXES = (".tmp", ".incomplete", ".lock", ".pyc")
_SKIP_NAMES = {"__pycache__", MANIFEST_NAME}


class ReleaseError(HwlmError):
    """A release directory or its manifest is missing, malformed, or does not match its files."""


class SchemaVersionError(ReleaseError):
    """The release was written for a newer table schema (or manifest format) than this package reads."""


@dataclass(frozen=True)
class FileMismatch:
    """One file whose bytes differ from what the manifest says.

    ``algorithm`` is ``"sha256"`` for files checked against a manifest; :mod:`benchmark.hub` also
    reports a cached manifest whose bytes no longer match its git blob id (``"git-sha1"``)."""

    path: str
    expected_sha256: str
    actual_sha256: str
    expected_size: int
    actual_size: int
    algorithm: str = "sha256"

    def describe(self) -> str:
        size = (f"; size: expected {self.expected_size} bytes, actual {self.actual_size}"
                if self.expected_size != self.actual_size else "")
        return f"{self.path}: {self.algorithm} expected {self.expected_sha256}, actual {self.actual_sha256}{size}"


class VerificationError(ReleaseError):
    """Files of a release are missing or their sha256 differs from the manifest.

    ``mismatches`` lists every corrupted/truncated/tampered file with both hashes, ``missing`` the
    manifest paths that do not exist, ``directory`` the release directory that was checked.
    """

    def __init__(self, message: str, *, directory: Path | str | None = None,
                 mismatches: Iterable[FileMismatch] = (), missing: Iterable[str] = ()):
        super().__init__(message)
        self.directory = Path(directory) if directory is not None else None
        self.mismatches: list[FileMismatch] = list(mismatches)
        self.missing: list[str] = list(missing)


# --------------------------------------------------------------------------------------------
# helpers


def _manifest_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.name == MANIFEST_NAME and not p.is_dir() else p / MANIFEST_NAME


def _check_rel_path(rel: Any, where: str) -> str:
    """A manifest path must be a relative, normalised, '/'-separated path inside the release."""
    if not isinstance(rel, str) or not rel:
        raise ReleaseError(f"{where}: file path must be a non-empty string, got {rel!r}")
    pp = PurePosixPath(rel)
    if ("\\" in rel or rel.startswith("/") or pp.is_absolute() or str(pp) != rel
            or any(part in ("", ".", "..") for part in rel.split("/")) or ":" in pp.parts[0]):
        raise ReleaseError(f"{where}: file path {rel!r} is not a normalised relative path inside the release "
                           "(no leading '/', no '..', no '\\', no drive letters)")
    if rel == MANIFEST_NAME:
        raise ReleaseError(f"{where}: the manifest cannot list itself")
    return rel


def _check_space(space: Any, where: str) -> str:
    if not isinstance(space, str) or not _SPACE_RE.fullmatch(space):
        raise ReleaseError(f"{where}: invalid space {space!r}; allowed: a name of letters, digits, '_', '.', '-' "
                           "(the search spaces are t, s, m, l)")
    return space


def _check_version(value: Any, name: str, supported: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReleaseError(f"{where}: invalid {name} {value!r}; allowed: an integer >= 1")
    if value > supported:
        from benchmark.version import __version__

        raise SchemaVersionError(
            f"{where}: {name} {value} is newer than this hwlm-bench {__version__} supports (up to {supported}). "
            f"Upgrade the package (pip install -U hwlm-bench, or git pull in your clone), "
            f"or use an older release (an earlier --revision).")
    return value


def list_release_files(directory: str | os.PathLike) -> list[str]:
    """Relative '/'-paths of the files a manifest of ``directory`` would list, sorted.

    Skips ``MANIFEST.json``, hidden files and folders (``.git``, ``.cache``), ``__pycache__``,
    temporary files (``*.tmp``, ``*.incomplete``, ``*.lock``) and folders holding their own
    ``MANIFEST.json`` (another space's release nested in this one, e.g. ``data/s/``).
    """
    root = Path(directory)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_NAMES
                             and not (Path(dirpath) / d / MANIFEST_NAME).is_file())
        for name in filenames:
            if name.startswith(".") or name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES):
                continue
            full = Path(dirpath) / name
            if not full.is_file():  # dangling symlink, socket, ...
                continue
            out.append(full.relative_to(root).as_posix())
    return sorted(out)


# --------------------------------------------------------------------------------------------
# manifest


def write_manifest(directory: str | os.PathLike, space: str, schema_version: int = SUPPORTED_SCHEMA_VERSION, *,
                   files: Iterable[str] | None = None, created: str | datetime | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict:
    """Hash the files of ``directory`` and write its ``MANIFEST.json`` (atomically); return the manifest.

    ``files`` (relative '/'-paths) defaults to every file found (see :func:`list_release_files`).
    ``created`` defaults to now (UTC); pass a fixed value for byte-identical manifests.
    ``extra`` adds top-level keys (e.g. ``{"description": ...}``); they may not replace core keys.
    """
    from benchmark.version import __version__

    root = Path(directory)
    if not root.is_dir():
        raise ReleaseError(f"{root}: not a directory")
    where = str(root / MANIFEST_NAME)
    _check_space(space, where)
    _check_version(schema_version, "schema_version", SUPPORTED_SCHEMA_VERSION, where)
    rel_paths = list_release_files(root) if files is None else sorted(set(files))
    entries = []
    for rel in rel_paths:
        _check_rel_path(rel, where)
        full = root / rel
        if not full.is_file():
            raise ReleaseError(f"{where}: listed file {rel!r} does not exist in {root}")
        entries.append({"path": rel, "size": full.stat().st_size, "sha256": sha256_file(full)})
    check_inside(root, rel_paths)
    if created is None:
        created = datetime.now(timezone.utc)
    if isinstance(created, datetime):
        created = created.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        "space": space,
        "schema_version": schema_version,
        "package_version": __version__,
        "created": str(created),
    }
    for key, value in (extra or {}).items():
        if key in _CORE_KEYS:
            raise ReleaseError(f"extra key {key!r} would replace a core manifest field")
        manifest[key] = value
    manifest["files"] = entries
    manifest["checksum"] = _checksum(manifest)
    write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def _checksum(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and validate ``MANIFEST.json`` of a release directory (or the file itself).

    Raises :class:`SchemaVersionError` when the release needs a newer hwlm-bench, and
    :class:`ReleaseError` for a missing or malformed manifest. Does not hash any file.
    """
    mpath = _manifest_path(path)
    where = str(mpath)
    try:
        text = mpath.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReleaseError(f"{mpath.parent}: no {MANIFEST_NAME}, so this is not a release directory; create one "
                           "with benchmark.release.write_manifest(directory, space)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{where}: cannot read the manifest ({e})") from e
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReleaseError(f"{where}: not valid JSON ({e}); the manifest is corrupted") from e
    if not isinstance(m, dict):
        raise ReleaseError(f"{where}: expected a JSON object, got {type(m).__name__}")
    if m.get("format") != MANIFEST_FORMAT:
        raise ReleaseError(f"{where}: invalid format {m.get('format')!r}; allowed: {MANIFEST_FORMAT!r}")
    _check_version(m.get("format_version"), "format_version", MANIFEST_FORMAT_VERSION, where)
    _check_version(m.get("schema_version"), "schema_version", SUPPORTED_SCHEMA_VERSION, where)
    _check_space(m.get("space"), where)
    for key in ("package_version", "created"):
        if not isinstance(m.get(key), str):
            raise ReleaseError(f"{where}: invalid {key} {m.get(key)!r}; allowed: a string")
    files = m.get("files")
    if not isinstance(files, list):
        raise ReleaseError(f"{where}: invalid files {files!r}; allowed: a list of {{path, size, sha256}}")
    seen = set()
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise ReleaseError(f"{where}: files[{i}] must be an object with path, size, sha256")
        rel = _check_rel_path(entry.get("path"), where)
        if rel in seen:
            raise ReleaseError(f"{where}: file {rel!r} is listed twice")
        seen.add(rel)
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ReleaseError(f"{where}: {rel}: invalid size {size!r}; allowed: an integer >= 0")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise ReleaseError(f"{where}: {rel}: invalid sha256 {digest!r}; allowed: 64 lowercase hex digits")
    if "checksum" in m and m["checksum"] != _checksum(m):
        raise ReleaseError(f"{where}: checksum {m['checksum']!r} does not match the manifest's content (sha256 "
                           f"{_checksum(m)}); the manifest was edited or corrupted")
    return m


def verify_release(directory: str | os.PathLike, *, space: str | None = None, cached: bool = False) -> dict:
    """Check every file of a release against its manifest; return the manifest.

    Every listed file must exist with the listed size and sha256 (the whole file is hashed, even
    when the size already differs, so that both hashes can be reported). All problems are
    collected and raised together as one :class:`VerificationError` naming each file with its
    expected and actual sha256. ``space``, if given, must match the manifest's space. Files not
    listed in the manifest are ignored. ``cached=True`` takes the sha256 of a file unchanged since
    it was last hashed from the user's hash cache (:func:`cached_sha256`).
    """
    with _HashCache.session(enabled=cached) as cache:
        return _verify_files(Path(directory), space, cache)


def _verify_files(root: Path, space: str | None, cache: "_HashCache") -> dict:
    manifest = read_manifest(root)
    if space is not None and manifest["space"] != space:
        raise ReleaseError(f"{root / MANIFEST_NAME}: release is for space {manifest['space']!r}, "
                           f"expected {space!r}")
    mismatches: list[FileMismatch] = []
    missing: list[str] = []
    for entry in manifest["files"]:
        full = root / entry["path"]
        if not full.is_file():
            missing.append(entry["path"])
            continue
        actual_size = full.stat().st_size
        actual = cache.sha256(full)
        if actual != entry["sha256"] or actual_size != entry["size"]:
            mismatches.append(FileMismatch(entry["path"], entry["sha256"], actual, entry["size"], actual_size))
    if mismatches or missing:
        lines = [f"release {root} does not match its {MANIFEST_NAME}:"]
        lines += [f"  corrupted: {m.describe()}" for m in mismatches]
        lines += [f"  missing: {p}" for p in missing]
        raise VerificationError("\n".join(lines), directory=root, mismatches=mismatches, missing=missing)
    return manifest


def check_covered(directory: str | os.PathLike, manifest: Mapping[str, Any], rel_paths: Iterable[str]) -> None:
    """Refuse files of ``directory`` that are read but not listed in its manifest (unverified bytes)."""
    listed = {f["path"] for f in manifest["files"]}
    extra = sorted(set(rel_paths) - listed)
    if extra:
        raise VerificationError(
            f"release {directory}: {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not listed in its "
            f"{MANIFEST_NAME}, so {'it' if len(extra) == 1 else 'they'} cannot be verified; rewrite the manifest "
            f"(benchmark.release.write_manifest) if the files belong to the release", directory=directory)


def check_inside(directory: str | os.PathLike, rel_paths: Iterable[str]) -> None:
    """Refuse release files that are symlinks (or under symlinked folders) resolving outside ``directory``:
    a manifest or an upload would take bytes that are not the release's."""
    root = os.path.realpath(directory)
    for rel in rel_paths:
        target = os.path.realpath(os.path.join(directory, rel))
        if os.path.commonpath([root, target]) != root:
            raise ReleaseError(f"release {directory}: {rel} is a symlink to {target}, outside the release; "
                               "allowed: files inside the release directory (copy the file in instead)")


# --------------------------------------------------------------------------------------------
# the verified-hash cache

_CACHE_NAME = "verified-sha256.json"
_CACHE_FORMAT = "hwlm-bench-sha256-cache"
_CACHE_MAX = 4096  # entries kept (the newest); a dropped entry only costs one more hash


class _HashCache:
    """sha256 of files keyed by (real path, size, mtime, ctime, inode), in one small JSON file of the
    user cache, read once per :meth:`session` and written back atomically when it learned something.
    A cache that cannot be read or written is ignored (every file is then hashed)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.path: Path | None = None
        self.entries: dict[str, list] = {}
        self.dirty = False
        if enabled:
            from benchmark.paths import cache_dir

            self.path = cache_dir() / _CACHE_NAME
            with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("format") == _CACHE_FORMAT and isinstance(data.get("files"), dict):
                    self.entries = data["files"]

    @classmethod
    @contextlib.contextmanager
    def session(cls, enabled: bool = True) -> Iterator["_HashCache"]:
        cache = cls(enabled)
        yield cache
        cache.save()

    def sha256(self, path: Path) -> str:
        if not self.enabled:
            return sha256_file(path)
        real = os.path.realpath(path)
        key = _identity(real)
        hit = self.entries.get(real)
        if isinstance(hit, list) and len(hit) == 5 and hit[:4] == key and isinstance(hit[4], str):
            return hit[4]
        digest = sha256_file(real)
        if _identity(real) == key:  # not rewritten while it was hashed
            self.entries.pop(real, None)  # re-inserted last: the newest entries survive the size cap
            self.entries[real] = [*key, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        if not (self.enabled and self.dirty):
            return
        from benchmark.files import write_text

        entries = dict(list(self.entries.items())[-_CACHE_MAX:])
        with contextlib.suppress(OSError):
            write_text(self.path, json.dumps({"format": _CACHE_FORMAT, "version": 1, "files": entries}))


def _identity(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, from the user's hash cache when the file is unchanged since it was last hashed."""
    with _HashCache.session() as cache:
        return cache.sha256(Path(path))


# --------------------------------------------------------------------------------------------
# opening a release


def embedded_release(space: str) -> Path:
    """The embedded release of ``space``: ``data/<space>/`` when that folder is a release (it has its
    own ``MANIFEST.json``: a space released beside the default one, e.g. ``s``), else ``data/`` itself
    (the default space's release, which a space without one borrows its modeled devices from)."""
    from benchmark.paths import data_dir

    d = data_dir()
    return d / space if (d / space / MANIFEST_NAME).is_file() else d


_TABLE_CHECK = "table-structure-and-rows:1"  # bump when Table's checks on opening change
_TABLES_KEPT = 16  # saved table states (the newest); a dropped one only costs one full open


def verify_on_open(directory: str | os.PathLike, space: str, *, required: bool):
    """What opening a release for queries checks (cheaply, with the user's hash cache): every file
    against ``MANIFEST.json`` (:func:`verify_release` with ``cached=True``), that the files a query
    reads (``table_<space>.h5``, ``surrogates/<space>/``) are listed in it, and that the table's ids
    are unique and agree with its encodings (:meth:`benchmark.table.Table.check_rows`).

    Returns ``(manifest, table)``: the manifest, or None for a directory without one when not
    ``required`` (a working copy: only the rows are checked) and for another space's release
    (verified all the same: a space without a release of its own borrows its modeled devices from
    it, but the manifest describes that release, not this space's); the opened
    :class:`~benchmark.table.Table`, or None when the release has no table of ``space``. A table
    whose bytes (sha256) passed these checks before is opened from its saved structure
    (:meth:`~benchmark.table.Table.from_state`, ``<cache>/tables/``) instead of walking the HDF5 file."""
    root = Path(directory)
    manifest = None
    table_path = root / f"table_{space}.h5"
    with _HashCache.session() as cache:
        if required or (root / MANIFEST_NAME).exists():
            own = table_path.exists() or (root / "surrogates" / space).exists()  # else another space's release
            manifest = _verify_files(root, space if own else None, cache)
            used = [p for p in list_release_files(root)
                    if p == table_path.name or p.startswith(f"surrogates/{space}/")]
            check_covered(root, manifest, used)
            manifest = manifest if own else None
        table = _open_checked_table(table_path, cache) if table_path.is_file() else None
    return manifest, table


def _open_checked_table(path: Path, cache: "_HashCache"):
    from benchmark.table import Table
    from benchmark.version import __version__

    real = os.path.realpath(path)
    st = os.stat(real)
    digest = cache.sha256(Path(real))
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    now = os.stat(real)
    if identity != (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns):  # rewritten meanwhile: no cache
        table = Table(path)
        table.check_rows()
        return table
    saved = cache.path.parent / "tables" / f"{digest}.json"
    key = f"{_TABLE_CHECK}:{__version__}"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        data = json.loads(saved.read_text(encoding="utf-8"))
        if data.get("check") == key:
            return Table.from_state(path, data["state"], identity)
    table = Table(path)
    table.check_rows()
    state = table.state()
    if state is not None:
        from benchmark.files import write_text

        with contextlib.suppress(OSError):
            write_text(saved, json.dumps({"check": key, "state": state}))
            kept = sorted(saved.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[_TABLES_KEPT:]:
                old.unlink()
    return table


# --------------------------------------------------------------------------------------------
# writing into a release


def find_release(path: str | os.PathLike) -> Path | None:
    """The release directory (one holding ``MANIFEST.json``) that ``path`` is or lies in, or None."""
    p = Path(path).resolve()
    for d in (p, *p.parents):
        if (d / MANIFEST_NAME).is_file():
            return d
    return None


@contextlib.contextmanager
def release_write(path: str | os.PathLike, *, force: bool, what: str) -> Iterator[Path | None]:
    """Guard a command that writes ``path`` (a file or a folder): inside a release directory it is
    refused (its manifest would no longer verify) unless ``force``; forced, the manifest is
    rewritten afterwards over the files then present, keeping the space and extra keys.
    ``what`` names the command in the message. Yields the release directory (or None)."""
    release = find_release(path)
    if release is None:
        yield None
        return
    read_manifest(release)  # a damaged manifest is reported, never silently replaced
    if not force:
        raise ReleaseError(
            f"{what}: {path} is inside the release {release} (it has a {MANIFEST_NAME}); writing it would break "
            "the manifest's hashes. Work on a copy of the release (cp -r), or pass --force to write here and "
            "rewrite the manifest")
    yield release
    rewrite_manifest(release)


def rewrite_manifest(directory: str | os.PathLike, space: str | None = None) -> dict:
    """Write ``MANIFEST.json`` of ``directory`` over the files now present, keeping the space, the
    schema version and the extra keys of the manifest already there (``space`` is needed without one)."""
    root = Path(directory)
    old = read_manifest(root) if (root / MANIFEST_NAME).exists() else {}
    space = space or old.get("space")
    if space is None:
        raise ReleaseError(f"{root}: no {MANIFEST_NAME} to take the space from; allowed: a space name (--space)")
    return write_manifest(root, space, old.get("schema_version", SUPPORTED_SCHEMA_VERSION),
                          extra={k: v for k, v in old.items() if k not in _CORE_KEYS})
