"""The command line of releases and the Hub: ``hwlm manifest`` (:mod:`benchmark.release`), ``hwlm download``
and ``hwlm publish`` (:mod:`benchmark.hub`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.hub import (DEFAULT_BRANCH, DEFAULT_ENDPOINT, DEFAULT_REPO_ID, DEFAULT_REVISIONS, ENV_CACHE, ENV_ENDPOINT,
                           ENV_REPO, download, publish)
from benchmark.release import MANIFEST_NAME, ReleaseError, read_manifest, rewrite_manifest, verify_release

__all__ = ["add_download_parser", "add_publish_parser", "add_manifest_parser"]


def _format_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _cmd_download(args: argparse.Namespace) -> int:
    # errors (HubError, ReleaseError) reach hwlm's one-line handler: exit 2, --debug for the traceback
    path = download(args.space, args.revision, repo_id=args.repo, endpoint=args.endpoint,
                    cache_dir=args.cache_dir, token=args.token, local_files_only=args.offline,
                    refresh=args.refresh)
    manifest = read_manifest(path)
    total = sum(f["size"] for f in manifest["files"])
    print(f"verified release of space {manifest['space']} (schema {manifest['schema_version']}, written by "
          f"hwlm-bench {manifest['package_version']} on {manifest['created']}): {len(manifest['files'])} files, "
          f"{_format_size(total)}, every sha256 matches {MANIFEST_NAME}")
    print(path)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    result = publish(args.dirs, args.revision, repo_id=args.repo, endpoint=args.endpoint, token=args.token,
                     private=args.private, branch=args.branch, commit_message=args.message)
    print(f"published space {', '.join(result.spaces)} as {result.repo_id}@{result.revision} "
          f"(commit {result.commit}): {len(result.files)} files uploaded, {len(result.deleted)} stale files removed")
    print(result.url)
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    if args.check:
        m = verify_release(args.dir, space=args.space)
        print(f"{args.dir}: {len(m['files'])} files, every size and sha256 matches {MANIFEST_NAME}")
        return 0
    m = rewrite_manifest(args.dir, args.space)
    print(f"{Path(args.dir) / MANIFEST_NAME}: {len(m['files'])} files of space {m['space']}")
    return 0


_ENV_EPILOG = (f"environment: {ENV_REPO} (repository id), {ENV_ENDPOINT} or HF_ENDPOINT (Hub endpoint), "
               f"{ENV_CACHE} (cache directory), HF_HUB_OFFLINE=1 (never use the network), HF_TOKEN (token)")


def _add_hub_arguments(p: argparse.ArgumentParser) -> None:
    """Where the releases live: --repo and --endpoint (download and publish alike)."""
    p.add_argument("--repo", default=None, help=f"dataset repository id (default ${ENV_REPO} or {DEFAULT_REPO_ID})")
    p.add_argument("--endpoint", default=None,
                   help=f"Hub endpoint URL (default ${ENV_ENDPOINT}, $HF_ENDPOINT or {DEFAULT_ENDPOINT})")


def add_download_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hwlm download`` on an argparse subparsers object."""
    pinned = ", ".join(f"{k}={v}" for k, v in DEFAULT_REVISIONS.items())
    p = subparsers.add_parser(
        "download", help="download a released table from the Hugging Face Hub (pinned, verified, cached)",
        description="Fetch the release of a search space (table, surrogates, tokenizer, checkpoint) from the "
                    "dataset repository on the Hugging Face Hub, verify every file's sha256 against its "
                    "MANIFEST.json and cache it. A release already in the cache is re-verified and used "
                    "without network access. Prints the release directory.",
        epilog=_ENV_EPILOG)
    p.add_argument("--space", required=True, help="search space (t, s, m, l)")
    p.add_argument("--revision", default=None, help=f"release tag or commit (default: pinned per space: {pinned})")
    _add_hub_arguments(p)
    p.add_argument("--cache-dir", default=None, help=f"cache directory (default ${ENV_CACHE} or ~/.cache/hwlm-bench)")
    p.add_argument("--token", default=None, help="Hugging Face token for a private repository (default: HF_TOKEN "
                                                 "or the token saved by `hf auth login`)")
    p.add_argument("--offline", action="store_true", help="never use the network (like HF_HUB_OFFLINE=1)")
    p.add_argument("--refresh", action="store_true",
                   help="resolve the revision on the Hub again even if it is cached (for branches such as main)")
    p.set_defaults(func=_cmd_download)
    return p


def add_publish_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hwlm publish`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "publish", help="upload release directories to the Hugging Face Hub and tag them",
        description="Verify each release directory against its MANIFEST.json, then create the dataset "
                    "repository if needed, commit the files under <space>/ in one commit and tag it. An existing "
                    "tag is never moved. Needs a token with write access (HF_TOKEN or `hf auth login`).",
        epilog=_ENV_EPILOG)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="release directory (with MANIFEST.json); one per space")
    p.add_argument("--revision", required=True, help="the new release tag, e.g. v2")
    _add_hub_arguments(p)
    p.add_argument("--token", default=None, help="Hugging Face token with write access (default: HF_TOKEN or the "
                                                 "token saved by `hf auth login`)")
    p.add_argument("--private", action="store_true", default=None, help="create the repository as private")
    p.add_argument("--branch", default=DEFAULT_BRANCH, help=f"branch to commit to (default {DEFAULT_BRANCH})")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=_cmd_publish)
    return p


def add_manifest_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hwlm manifest`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "manifest", help="write (or check) the MANIFEST.json of a release directory",
        description="Hash every file of a release directory (hidden and temporary files skipped; symlinks "
                    "pointing outside the directory refused) and write its MANIFEST.json atomically, keeping the "
                    "space of an existing manifest. With --check, verify every file against it instead.")
    p.add_argument("dir", metavar="DIR", help="release directory")
    p.add_argument("--space", default=None, help="search space (default: the existing manifest's)")
    p.add_argument("--check", action="store_true", help="verify instead of writing (full sha256 of every file)")
    p.set_defaults(func=_cmd_manifest)
    return p
