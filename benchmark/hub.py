"""Released tables on the Hugging Face Hub: download (pinned, verified, cached, offline) and publish.

Releases live in one *dataset* repository (default :data:`DEFAULT_REPO_ID`), one folder per
search space, each folder a release directory with its ``MANIFEST.json`` (see
:mod:`benchmark.release`)::

    t/MANIFEST.json  t/table_t.h5  t/tokenizer.json  t/surrogates/...
    s/MANIFEST.json  s/table_s.h5  ...

A git tag (``v1``, ``v2``, ...) names a published, never-changing state of the repository; each
space has a pinned default tag in :data:`DEFAULT_REVISIONS`.

:func:`download` fetches ``<space>/MANIFEST.json`` at the revision, checks that this package can
read its schema version, then fetches exactly the files the manifest lists
(``snapshot_download(allow_patterns=...)``), and hashes every one against the manifest. Files
that do not match are deleted from the cache and reported with both hashes; nothing unverified
is returned. A release already in the cache is re-verified and returned without any network
request, so a second call works offline (``HF_HUB_OFFLINE=1``).

:func:`publish` verifies release directories locally, then creates the repository if needed,
commits the listed files (and removes files of the same space folder that the new manifest no
longer lists) in one commit, and tags that commit.

Configuration (argument > environment variable > default):

==============  ====================================  ==========================================
what            environment                           default
==============  ====================================  ==========================================
repository id   ``HWLM_HUB_REPO``                     ``hwlm-bench/hwlm-bench-releases``
endpoint        ``HWLM_HUB_ENDPOINT``, ``HF_ENDPOINT``  ``https://huggingface.co``
cache           ``HWLM_CACHE_DIR``                    ``$XDG_CACHE_HOME/hwlm-bench`` or ``~/.cache/hwlm-bench``
offline         ``HF_HUB_OFFLINE=1``                  online
token           ``HF_TOKEN`` / ``hf auth login``       none (public repository)
==============  ====================================  ==========================================

The cache is a Hugging Face cache (``<cache>/hub/datasets--<org>--<name>/...``) of its own.
``huggingface_hub`` is imported lazily, so importing this module (``hwlm --help``) stays fast.

Threat model: the server (or a mirror, proxy or compromised endpoint) is not trusted. Bytes it
serves are hashed against the manifest before use (and the manifest can be pinned by its sha256).
Metadata the client turns into cache paths is checked before the client sees it: while
:func:`download` runs, every HTTP response's ``ETag``, ``X-Linked-Etag`` and ``X-Repo-Commit`` and
the ids in a tree listing must be single path components (an ETag) and 40 hex digits (a commit),
else the download stops with :class:`HubError` naming the header and its value, before anything
is written (``huggingface_hub`` would otherwise create ``blobs/<etag>`` or ``snapshots/<commit>``
wherever the value points).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from benchmark.version import __version__
from benchmark.release import (
    MANIFEST_NAME,
    FileMismatch,
    ReleaseError,
    SchemaVersionError,
    VerificationError,
    check_inside,
    read_manifest,
    sha256_file,
    verify_release,
)

__all__ = [
    "DEFAULT_REPO_ID",
    "DEFAULT_ENDPOINT",
    "DEFAULT_REVISIONS",
    "REPO_TYPE",
    "HubError",
    "HubUnreachableError",
    "PublishResult",
    "resolve_repo_id",
    "resolve_endpoint",
    "resolve_cache_dir",
    "default_revision",
    "is_offline",
    "download",
    "publish",
]

logger = logging.getLogger(__name__)

DEFAULT_REPO_ID = "hwlm-bench/hwlm-bench-releases"
DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_TYPE = "dataset"
DEFAULT_BRANCH = "main"
#: Pinned release tag per space: what ``download(space)`` / ``Benchmark(space)`` fetch by default.
DEFAULT_REVISIONS: dict[str, str] = {"t": "v1", "s": "v1", "m": "v1", "l": "v1"}

ENV_REPO = "HWLM_HUB_REPO"
ENV_ENDPOINT = "HWLM_HUB_ENDPOINT"
ENV_CACHE = "HWLM_CACHE_DIR"
_LIBRARY = "hwlm-bench"
_TRUE = {"1", "ON", "YES", "TRUE"}
_SPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


class HubError(ReleaseError):
    """The Hub could not deliver the release: unknown repository, revision or space, or an HTTP error."""


class HubUnreachableError(HubError, ConnectionError):
    """No network (or offline mode) and the release is not in the cache."""


# --------------------------------------------------------------------------------------------
# configuration


def resolve_repo_id(repo_id: str | None = None) -> str:
    """``repo_id``, else ``$HWLM_HUB_REPO``, else :data:`DEFAULT_REPO_ID`."""
    return repo_id or os.environ.get(ENV_REPO) or DEFAULT_REPO_ID


def resolve_endpoint(endpoint: str | None = None) -> str:
    """``endpoint``, else ``$HWLM_HUB_ENDPOINT``, else ``$HF_ENDPOINT``, else :data:`DEFAULT_ENDPOINT`."""
    value = endpoint or os.environ.get(ENV_ENDPOINT) or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return value.rstrip("/")


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$HWLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/hwlm-bench`` (``~/.cache/hwlm-bench``)."""
    from benchmark.paths import cache_dir as user_cache_dir

    return user_cache_dir(cache_dir)


def default_revision(space: str) -> str:
    """The pinned release tag of ``space``."""
    try:
        return DEFAULT_REVISIONS[space]
    except KeyError:
        raise HubError(f"no pinned default revision for space {space!r} (pinned: "
                       f"{', '.join(f'{k}={v}' for k, v in DEFAULT_REVISIONS.items())}); "
                       "pass one with --revision / revision=...") from None


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now or was set at import."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if (os.environ.get(var) or "").strip().upper() in _TRUE:
            return True
    from huggingface_hub import constants

    fn = getattr(constants, "is_offline_mode", None)
    return bool(fn() if fn is not None else getattr(constants, "HF_HUB_OFFLINE", False))


@dataclass(frozen=True)
class _Ctx:
    space: str
    revision: str
    repo_id: str
    endpoint: str
    cache_dir: Path
    token: str | bool | None

    @property
    def hf_cache(self) -> Path:
        return self.cache_dir / "hub"

    @property
    def label(self) -> str:
        return f"release of space {self.space!r} at revision {self.revision!r} of {self.repo_id}"

    @property
    def command(self) -> str:
        cmd = f"hwlm download --space {self.space} --revision {self.revision}"
        if self.repo_id != DEFAULT_REPO_ID:
            cmd += f" --repo {self.repo_id}"
        return cmd

    def hf_kwargs(self) -> dict:
        return dict(repo_type=REPO_TYPE, cache_dir=str(self.hf_cache), endpoint=self.endpoint, token=self.token,
                    library_name=_LIBRARY, library_version=__version__)


# --------------------------------------------------------------------------------------------
# error translation


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level exception types of whatever HTTP library huggingface_hub uses."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                       ("requests", ("ConnectionError", "Timeout"))):
        m = sys.modules.get(mod)
        for name in names:
            t = getattr(getattr(m, "exceptions", m), name, None) if m is not None else None
            if isinstance(t, type) and issubclass(t, BaseException):
                types.append(t)
    return tuple(types)


def _hf_error(name: str) -> type[BaseException]:
    from huggingface_hub import errors

    fallback = {"RemoteEntryNotFoundError": "EntryNotFoundError"}
    t = getattr(errors, name, None) or getattr(errors, fallback.get(name, ""), None)
    if t is None:
        from huggingface_hub import utils
        t = getattr(utils, name)
    return t


def _list_tags(ctx: _Ctx) -> list[str]:
    try:
        from huggingface_hub import HfApi

        refs = HfApi(endpoint=ctx.endpoint, token=ctx.token).list_repo_refs(ctx.repo_id, repo_type=REPO_TYPE)
        return sorted(t.name for t in refs.tags)
    except Exception:  # best effort, only used to enrich a message
        return []


def _unreachable_message(ctx: _Ctx, err: BaseException) -> str:
    return (f"cannot reach the Hub at {ctx.endpoint} to fetch the {ctx.label} ({type(err).__name__}: {err}), "
            f"and it is not in the cache {ctx.hf_cache}. Check your network connection and proxy settings, or "
            f"point --endpoint / {ENV_ENDPOINT} / HF_ENDPOINT at a reachable mirror. To work without network, "
            f"run `{ctx.command}` once on a machine with network access and copy its cache directory "
            f"({ENV_CACHE}) here.")


def _offline_message(ctx: _Ctx) -> str:
    return (f"the {ctx.label} is not in the cache {ctx.hf_cache} and offline mode is on (HF_HUB_OFFLINE=1 or "
            f"local_files_only/--offline). Run `{ctx.command}` once with network access (HF_HUB_OFFLINE unset) to "
            "download and cache it; later calls then work offline.")


@contextlib.contextmanager
def _hub_errors(ctx: _Ctx) -> Iterator[None]:
    """Turn huggingface_hub / HTTP exceptions into :class:`HubError` with a message that says what to do."""
    try:
        yield
    except ReleaseError:
        raise
    except _hf_error("OfflineModeIsEnabled") as e:
        raise HubUnreachableError(_offline_message(ctx)) from e
    except _hf_error("RevisionNotFoundError") as e:
        tags = _list_tags(ctx)
        known = f" (its tags: {', '.join(tags)})" if tags else ""
        pinned = DEFAULT_REVISIONS.get(ctx.space)
        hint = f", or leave it out for the pinned default of space {ctx.space!r} ({pinned})" if pinned else ""
        raise HubError(f"revision {ctx.revision!r} does not exist in the dataset repository {ctx.repo_id} on "
                       f"{ctx.endpoint}{known}. Pass an existing tag with --revision / revision=...{hint}.") from e
    except _hf_error("LocalEntryNotFoundError") as e:
        raise HubUnreachableError(_unreachable_message(ctx, e)) from e
    except _hf_error("RemoteEntryNotFoundError") as e:
        raise HubError(f"revision {ctx.revision!r} of {ctx.repo_id} on {ctx.endpoint} has no release for space "
                       f"{ctx.space!r} ({ctx.space}/{MANIFEST_NAME} not found). Pick a revision that has one "
                       "(--revision), or publish one with `hwlm publish`.") from e
    except _hf_error("RepositoryNotFoundError") as e:
        raise HubError(f"dataset repository {ctx.repo_id} was not found on {ctx.endpoint} (or it is private or "
                       f"gated and no valid token was sent). Check --repo / {ENV_REPO} (default {DEFAULT_REPO_ID}) "
                       f"and --endpoint / {ENV_ENDPOINT} / HF_ENDPOINT; for a private repository run "
                       "`hf auth login` or set HF_TOKEN.") from e
    except _hf_error("HfHubHTTPError") as e:
        raise HubError(f"the Hub at {ctx.endpoint} answered with an error for the {ctx.label}: {e}. Retry later; "
                       "if it persists, check --endpoint and your token.") from e
    except _hf_error("FileMetadataError") as e:
        raise HubError(f"{ctx.endpoint} does not answer like a Hugging Face Hub ({e}). Check --endpoint / "
                       f"{ENV_ENDPOINT} / HF_ENDPOINT and your proxy settings.") from e
    except _transport_errors() as e:
        raise HubUnreachableError(_unreachable_message(ctx, e)) from e


# --------------------------------------------------------------------------------------------
# metadata the client turns into paths

# huggingface_hub's own normalisation (file_download._normalize_etag) comes first: W/ and quotes.
_SAFE_ETAG_RE = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z._-]{0,254}")  # one path component, not '.' or '..'
_PATH_HEADERS = {"ETag": _SAFE_ETAG_RE, "X-Linked-Etag": _SAFE_ETAG_RE, "X-Repo-Commit": _COMMIT_RE}
_guard_lock = threading.Lock()
_guards = 0  # downloads running; the response hook checks only while one is


def _unsafe(what: str, value: object, url: object, allowed: str) -> HubError:
    return HubError(f"the Hub at {url} sent {what} {value!r}, which would become a path (traversal outside "
                    f"the cache); allowed: {allowed}. Nothing was written. The endpoint is not a well-behaved "
                    f"Hub: check --endpoint / {ENV_ENDPOINT} / HF_ENDPOINT")


def _check_response(response) -> None:
    """httpx response hook: refuse header values and tree-listing ids that are not plain names."""
    if not _guards:
        return
    for name, pattern in _PATH_HEADERS.items():
        raw = response.headers.get(name)
        if raw is None:
            continue
        value = raw.lstrip("W/").strip('"') if pattern is _SAFE_ETAG_RE else raw
        if not pattern.fullmatch(value):
            allowed = "a single file name (a hex digest)" if pattern is _SAFE_ETAG_RE else "a 40-hex-digit commit id"
            raise _unsafe(f"the header {name}", raw, response.request.url, allowed)
    if "/tree/" in response.request.url.path and response.status_code == 200:
        response.read()
        try:
            entries = response.json()
        except ValueError:
            return  # the client reports a listing that is not JSON
        for e in entries if isinstance(entries, list) else ():
            lfs = e.get("lfs") if isinstance(e, dict) else None
            for what, value in (("oid", e.get("oid") if isinstance(e, dict) else None),
                                ("lfs.sha256", lfs.get("sha256") if isinstance(lfs, dict) else None)):
                if value is not None and not (isinstance(value, str) and _SAFE_ETAG_RE.fullmatch(value)):
                    raise _unsafe(f"a tree entry's {what}", value, response.request.url, "a hex digest")


@contextlib.contextmanager
def _path_guard() -> Iterator[None]:
    """Check every response of huggingface_hub's shared HTTP client while the block runs."""
    global _guards
    from huggingface_hub.utils import get_session

    hooks = get_session().event_hooks["response"]
    if _check_response not in hooks:
        hooks.append(_check_response)
    with _guard_lock:
        _guards += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guards -= 1


# --------------------------------------------------------------------------------------------
# cache helpers


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _manifest_blob_mismatch(release_dir: Path) -> FileMismatch | None:
    """Check the cached ``MANIFEST.json`` against its content address in the Hugging Face cache.

    The cache stores each file as ``blobs/<ETag>`` where the ETag is the git blob id (regular
    files) or the sha256 (LFS files) of the bytes the Hub served; the snapshot entry is a symlink
    to it. A manifest whose bytes no longer match its blob name was corrupted or edited in the
    cache. Returns ``None`` when it matches or cannot be checked (no symlinks on this platform).
    """
    mpath = release_dir / MANIFEST_NAME
    if not mpath.is_symlink():
        return None
    blob = Path(os.path.realpath(mpath))
    if not blob.is_file():
        return None
    data = blob.read_bytes()
    if _COMMIT_RE.fullmatch(blob.name):
        actual, algorithm = _git_blob_sha1(data), "git-sha1"
    elif re.fullmatch(r"[0-9a-f]{64}", blob.name):
        actual, algorithm = hashlib.sha256(data).hexdigest(), "sha256"
    else:
        return None
    if actual == blob.name:
        return None
    return FileMismatch(MANIFEST_NAME, blob.name, actual, len(data), len(data), algorithm=algorithm)


def _pin_mismatch(release_dir: Path, manifest_sha256: str | None) -> FileMismatch | None:
    if not manifest_sha256:
        return None
    mpath = release_dir / MANIFEST_NAME
    actual = sha256_file(mpath)
    if actual == manifest_sha256.lower():
        return None
    size = mpath.stat().st_size
    return FileMismatch(MANIFEST_NAME, manifest_sha256.lower(), actual, size, size)


def _evict(release_dir: Path, rel_paths: Iterable[str], cache_root: Path) -> list[str]:
    """Delete cached files (the snapshot entry and the blob it points to); return the paths removed."""
    removed = []
    root = os.path.realpath(cache_root)
    for rel in rel_paths:
        p = release_dir / rel
        try:
            if p.is_symlink():
                target = os.path.realpath(p)
                p.unlink()
                if os.path.isfile(target) and os.path.commonpath([root, target]) == root:
                    os.unlink(target)
                removed.append(rel)
            elif p.exists():
                p.unlink()
                removed.append(rel)
        except OSError as e:  # the next load re-verifies and fails again, so nothing bad is used
            logger.warning("could not remove %s from the cache: %s", p, e)
    return removed


def _cached_release_dir(ctx: _Ctx) -> Path | None:
    """The cached release directory of (repo, revision, space), without any network request."""
    from huggingface_hub import try_to_load_from_cache

    p = try_to_load_from_cache(ctx.repo_id, f"{ctx.space}/{MANIFEST_NAME}", cache_dir=str(ctx.hf_cache),
                               revision=ctx.revision, repo_type=REPO_TYPE)
    return Path(p).parent if isinstance(p, str) else None


def _verify(release_dir: Path, space: str, manifest_sha256: str | None) -> dict:
    bad = _manifest_blob_mismatch(release_dir) or _pin_mismatch(release_dir, manifest_sha256)
    if bad is not None:
        raise VerificationError(f"release {release_dir} has a bad {MANIFEST_NAME}:\n  corrupted: {bad.describe()}",
                                directory=release_dir, mismatches=[bad])
    return verify_release(release_dir, space=space)


def _details(err: VerificationError) -> str:
    lines = [f"  corrupted: {m.describe()}" for m in err.mismatches]
    lines += [f"  missing: {p}" for p in err.missing]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# download


def download(space: str, revision: str | None = None, *, repo_id: str | None = None,
             endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
             token: str | bool | None = None, local_files_only: bool = False, refresh: bool = False,
             manifest_sha256: str | None = None) -> Path:
    """Fetch (or reuse from the cache) the verified release of ``space`` at ``revision``; return its directory.

    ``revision`` defaults to the pinned tag of the space (:data:`DEFAULT_REVISIONS`). A release
    already in the cache is re-hashed and returned without any network request; otherwise the
    manifest is fetched first (a schema version newer than this package raises
    :class:`~benchmark.release.SchemaVersionError` before any large file is downloaded), then
    exactly the files it lists, and every sha256 is checked. ``refresh=True`` resolves the
    revision on the Hub again (useful for a branch such as ``main``). ``local_files_only=True``
    (or ``HF_HUB_OFFLINE=1``) never touches the network. ``manifest_sha256`` pins the manifest
    itself.

    Raises :class:`~benchmark.release.VerificationError` (file name, expected and actual sha256;
    the bad files are deleted from the cache), :class:`HubUnreachableError` (no network or
    offline, and not cached), :class:`HubError` (unknown repository/revision/space, HTTP error),
    :class:`~benchmark.release.SchemaVersionError`. All are :class:`~benchmark.release.ReleaseError`.
    """
    if not isinstance(space, str) or not _SPACE_RE.fullmatch(space):
        raise ReleaseError(f"invalid space {space!r}; allowed: t, s, m, l (or another published space name)")
    ctx = _Ctx(space, revision or default_revision(space), resolve_repo_id(repo_id), resolve_endpoint(endpoint),
               resolve_cache_dir(cache_dir), token)
    offline = local_files_only or is_offline()

    if offline or not refresh:
        cached = _cached_release_dir(ctx)
        if cached is not None:
            try:
                _verify(cached, space, manifest_sha256)
                return cached
            except VerificationError as err:
                problem, bad = _details(err), [m.path for m in err.mismatches]
                mismatches, missing = err.mismatches, err.missing
            except SchemaVersionError:
                raise
            except ReleaseError as err:  # an unreadable cached manifest counts as a corrupted file
                problem, bad, mismatches, missing = f"  {err}", [MANIFEST_NAME], [], []
            removed = _evict(cached, bad, ctx.cache_dir)
            if offline:
                note = f"\nRemoved from the cache: {', '.join(removed)}." if removed else ""
                raise VerificationError(
                    f"the cached {ctx.label} failed verification and offline mode is on, so it cannot be "
                    f"downloaded again:\n{problem}{note}\nRun `{ctx.command}` with network access "
                    "(HF_HUB_OFFLINE unset) to fetch the files again.",
                    directory=cached, mismatches=mismatches, missing=missing) from None
            if bad:
                logger.warning("the cached %s failed verification; removed the bad files and downloading "
                               "them again:\n%s", ctx.label, problem)
    if offline:
        raise HubUnreachableError(_offline_message(ctx))
    return _fetch(ctx, manifest_sha256)


def _probe(ctx: _Ctx, path_in_repo: str) -> str:
    """One HEAD request without retries: fails fast when the Hub is unreachable; returns the commit."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(ctx.repo_id, path_in_repo, repo_type=REPO_TYPE, revision=ctx.revision, endpoint=ctx.endpoint)
    kwargs = dict(token=ctx.token, library_name=_LIBRARY, library_version=__version__)
    params = inspect.signature(get_hf_file_metadata).parameters
    if "endpoint" in params:
        kwargs["endpoint"] = ctx.endpoint
    if "retry_on_errors" in params:
        kwargs["retry_on_errors"] = False
    meta = get_hf_file_metadata(url, **kwargs)
    if not meta.commit_hash:
        raise HubError(f"{ctx.endpoint} does not answer like a Hugging Face Hub (no X-Repo-Commit header). Check "
                       f"--endpoint / {ENV_ENDPOINT} / HF_ENDPOINT and your proxy settings.")
    return meta.commit_hash


def _fetch(ctx: _Ctx, manifest_sha256: str | None) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    manifest_in_repo = f"{ctx.space}/{MANIFEST_NAME}"
    with _hub_errors(ctx), _path_guard():
        probed = _probe(ctx, manifest_in_repo)
        release_dir = Path(hf_hub_download(ctx.repo_id, manifest_in_repo, revision=ctx.revision,
                                           **ctx.hf_kwargs())).parent
    commit = release_dir.parent.name if _COMMIT_RE.fullmatch(release_dir.parent.name) else probed
    where = f"the {ctx.label} downloaded from {ctx.endpoint} (commit {commit})"

    bad = _manifest_blob_mismatch(release_dir) or _pin_mismatch(release_dir, manifest_sha256)
    if bad is not None:
        _evict(release_dir, [MANIFEST_NAME], ctx.cache_dir)
        raise VerificationError(
            f"{where} has an unexpected {MANIFEST_NAME}:\n  corrupted: {bad.describe()}\nIt was removed from the "
            "cache. Retry the download; if this persists, the published manifest differs from the expected one "
            "(report it, or pass another --revision).", directory=release_dir, mismatches=[bad])
    manifest = read_manifest(release_dir)  # SchemaVersionError here, before the large files come
    if manifest["space"] != ctx.space:
        raise HubError(f"{where}: {manifest_in_repo} describes space {manifest['space']!r}; the release is "
                       "misfiled, report it or pass another --revision.")

    patterns = [glob.escape(manifest_in_repo)] + [glob.escape(f"{ctx.space}/{f['path']}") for f in manifest["files"]]
    with _hub_errors(ctx), _path_guard():
        snapshot = Path(snapshot_download(ctx.repo_id, revision=commit, allow_patterns=patterns, **ctx.hf_kwargs()))
    release_dir = snapshot / ctx.space
    try:
        verify_release(release_dir, space=ctx.space)
    except VerificationError as err:
        removed = _evict(release_dir, [m.path for m in err.mismatches], ctx.cache_dir)
        msg = f"{where} failed verification against its {MANIFEST_NAME}:\n{_details(err)}"
        if err.mismatches:
            msg += (f"\nThe bad files were deleted from the cache ({', '.join(removed) or 'nothing left to delete'}) "
                    "and are not used. Retry the download; if it fails again, the files on the Hub are damaged: "
                    "report it, or pass another --revision.")
        if err.missing:
            msg += ("\nFiles listed in the manifest are not in the repository at this revision, so the release is "
                    "incomplete: republish it (`hwlm publish`) or pass another --revision.")
        raise VerificationError(msg, directory=release_dir, mismatches=err.mismatches,
                                missing=err.missing) from None
    return release_dir


# --------------------------------------------------------------------------------------------
# publish


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` did: the tag it created, the commit it points to, the files it holds."""

    repo_id: str
    endpoint: str
    revision: str
    commit: str
    spaces: tuple[str, ...]
    files: tuple[str, ...]
    deleted: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{self.endpoint}/datasets/{self.repo_id}/tree/{self.revision}"


def publish(release_dirs: str | os.PathLike | Iterable[str | os.PathLike], revision: str, *,
            repo_id: str | None = None, endpoint: str | None = None, token: str | bool | None = None,
            private: bool | None = None, branch: str = DEFAULT_BRANCH,
            commit_message: str | None = None) -> PublishResult:
    """Upload verified release directories to the Hub and tag the commit ``revision``.

    Each directory is verified against its manifest first (nothing is uploaded if one fails).
    Then: create the dataset repository if needed (``private`` applies only then), refuse a tag
    that already exists (a published release never changes), commit every listed file plus the
    manifest under ``<space>/`` on ``branch`` in one commit (deleting files of those space folders
    that the new manifests do not list), and create the tag on that commit.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    dirs = ([Path(release_dirs)] if isinstance(release_dirs, (str, os.PathLike))
            else [Path(d) for d in release_dirs])
    if not dirs:
        raise ReleaseError("nothing to publish: pass at least one release directory")
    if not isinstance(revision, str) or not _TAG_RE.fullmatch(revision) or _COMMIT_RE.fullmatch(revision) \
            or revision == branch:
        raise ReleaseError(f"invalid release tag {revision!r}; allowed: letters, digits, '.', '_', '-' (e.g. v1), "
                           f"not a commit hash and not the branch name {branch!r}")
    releases = []
    for d in dirs:
        manifest = verify_release(d)
        check_inside(d, [f["path"] for f in manifest["files"]])  # upload only the release's own bytes
        releases.append((d, manifest))
    spaces = [m["space"] for _, m in releases]
    if len(set(spaces)) != len(spaces):
        raise ReleaseError(f"two release directories are for the same space: {spaces}")

    repo_id = resolve_repo_id(repo_id)
    endpoint = resolve_endpoint(endpoint)
    ctx = _Ctx(",".join(spaces), revision, repo_id, endpoint, resolve_cache_dir(None), token)
    api = HfApi(endpoint=endpoint, token=token, library_name=_LIBRARY, library_version=__version__)
    with _hub_errors(ctx):
        api.create_repo(repo_id, repo_type=REPO_TYPE, exist_ok=True, private=private)
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
        for ref in list(refs.tags) + list(refs.branches):
            if ref.name == revision:
                raise HubError(f"{revision!r} already exists in {repo_id} on {endpoint} (commit {ref.target_commit}); "
                               "a published release never changes, so publish under a new tag (e.g. the next "
                               "version).")

        operations, uploaded, deleted = [], [], []
        for d, manifest in releases:
            space = manifest["space"]
            wanted = {f"{space}/{MANIFEST_NAME}"} | {f"{space}/{f['path']}" for f in manifest["files"]}
            for path in sorted(_remote_files(api, repo_id, space, branch) - wanted):
                operations.append(CommitOperationDelete(path_in_repo=path))
                deleted.append(path)
            for f in manifest["files"]:
                op = CommitOperationAdd(path_in_repo=f"{space}/{f['path']}", path_or_fileobj=str(d / f["path"]))
                if op.upload_info.sha256.hex() != f["sha256"]:  # changed between verification and upload
                    raise VerificationError(
                        f"{d / f['path']} changed while publishing: sha256 expected {f['sha256']}, actual "
                        f"{op.upload_info.sha256.hex()}", directory=d,
                        mismatches=[FileMismatch(f["path"], f["sha256"], op.upload_info.sha256.hex(), f["size"],
                                                 op.upload_info.size)])
                operations.append(op)
                uploaded.append(op.path_in_repo)
            operations.append(CommitOperationAdd(path_in_repo=f"{space}/{MANIFEST_NAME}",
                                                 path_or_fileobj=str(d / MANIFEST_NAME)))
            uploaded.append(f"{space}/{MANIFEST_NAME}")
        message = commit_message or f"hwlm-bench release {revision}: space {', '.join(spaces)}"
        info = api.create_commit(repo_id, operations, commit_message=message, repo_type=REPO_TYPE, revision=branch)
        api.create_tag(repo_id, tag=revision, revision=info.oid, repo_type=REPO_TYPE, tag_message=message)
    return PublishResult(repo_id, endpoint, revision, info.oid, tuple(spaces), tuple(uploaded), tuple(deleted))


def _remote_files(api, repo_id: str, folder: str, branch: str) -> set[str]:
    from huggingface_hub import RepoFile

    try:
        return {e.path for e in api.list_repo_tree(repo_id, path_in_repo=folder, recursive=True, revision=branch,
                                                   repo_type=REPO_TYPE) if isinstance(e, RepoFile)}
    except _hf_error("RemoteEntryNotFoundError"):
        return set()
