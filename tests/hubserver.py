"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only, one thread, 127.0.0.1).

It serves exactly the endpoints that ``huggingface_hub`` (2.x, httpx-based) calls for
``hf_hub_download``, ``snapshot_download``, ``get_hf_file_metadata``, ``HfApi.create_repo``,
``create_commit``/``upload_folder``, ``create_tag``, ``list_repo_refs`` and ``list_repo_tree``,
with the headers the client checks:

========  ==================================================  ==========================================
method    path                                                what
========  ==================================================  ==========================================
HEAD/GET  /{datasets/}{ns}/{name}/resolve/{rev}/{path}        file bytes; ``X-Repo-Commit``, ``ETag``
                                                              (git blob sha1), ``Content-Length``,
                                                              ``Accept-Ranges``; ``Range: bytes=N-``
GET       /api/{type}s/{ns}/{name}[/revision/{rev}]           repo info (``id``, ``sha``, ``siblings``)
GET       /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]        file/directory listing (``recursive``)
GET       /api/{type}s/{ns}/{name}/refs                       branches and tags
POST      /api/repos/create                                   new repo (initial commit: .gitattributes)
POST      /api/{type}s/{ns}/{name}/preupload/{rev}            upload mode: always ``regular``
POST      /api/{type}s/{ns}/{name}/commit/{rev}               NDJSON commit (file, deletedFile/Folder)
POST      /api/{type}s/{ns}/{name}/tag/{rev}                  create a tag (409 if it exists)
========  ==================================================  ==========================================

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and
``X-Error-Message`` like the Hub, so the client raises its usual exception types.

Not implemented (not needed by the tests): LFS/Xet uploads (preupload answers ``regular`` for
every file, so the client sends the bytes inline in the commit), pagination, authentication
(tokens are accepted and ignored), pull requests. The server never sends ``X-Xet-Hash``, so the
client downloads over plain HTTP even with ``hf_xet`` installed; ``HF_HUB_DISABLE_XET`` is not
needed. Every response closes its connection, so once :meth:`HubServer.stop` returns nothing
answers any more (no pooled keep-alive connection can still be served).

Test hooks: :meth:`HubServer.serve_instead` makes the server deliver other bytes for a file
(corruption on the server side, with headers consistent with the bad bytes),
:meth:`HubServer.headers_instead` replaces the values of response headers wherever the server sends
them (a malicious server's ``ETag`` or ``X-Repo-Commit``),
:attr:`HubServer.requests` logs every request ``(method, path)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer", "git_blob_sha1"]

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_GITATTRIBUTES = b"*.h5 filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub sends as ETag for a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        return None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class HubServer:
    """In-memory hub on ``http://127.0.0.1:<free port>``; use as a context manager or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._host, self._port = host, port
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._override: dict[tuple[str, str, str], bytes] = {}
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0
        self.requests: list[tuple[str, str]] = []
        self._header_override: dict[str, str] = {}

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "HubServer":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- state (also used by the handler)

    def create_repo(self, repo_id: str, repo_type: str = "dataset", *, exist_ok: bool = False) -> bool:
        """Create a repo with an initial commit on ``main``; return False if it already existed."""
        with self._lock:
            key = (repo_type, repo_id)
            if key in self._repos:
                if exist_ok:
                    return False
                raise _HubError(409, "You already created this repo")
            self._repos[key] = _Repo(repo_type, repo_id)
            self._commit(key, "main", {".gitattributes": _GITATTRIBUTES}, (), "initial commit")
            return True

    def commit_files(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "dataset",
                     branch: str = "main", delete: tuple[str, ...] = (), message: str = "commit") -> str:
        """Add/replace ``files`` (and delete paths) in one commit on ``branch``; return its sha.

        Creates the repo if needed."""
        with self._lock:
            self.create_repo(repo_id, repo_type, exist_ok=True)
            return self._commit((repo_type, repo_id), branch, files, delete, message)

    def create_tag(self, repo_id: str, tag: str, revision: str = "main", *, repo_type: str = "dataset") -> str:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            sha = repo.resolve(revision)
            if sha is None:
                raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            if tag in repo.tags or tag in repo.branches:
                raise _HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = sha
            return sha

    def files(self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset") -> dict[str, bytes]:
        """The files of a revision, as committed (ignores :meth:`serve_instead`)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(revision)
            return dict(repo.commits[sha].files)

    def refs(self, repo_id: str, *, repo_type: str = "dataset") -> dict[str, dict[str, str]]:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return {"branches": dict(repo.branches), "tags": dict(repo.tags)}

    def serve_instead(self, repo_id: str, path: str, data: bytes | None, *, repo_type: str = "dataset") -> None:
        """Serve ``data`` for ``path`` at every revision (``None`` restores the committed bytes).

        The headers (ETag, sizes) describe the served bytes, as when a bad file was uploaded."""
        with self._lock:
            if data is None:
                self._override.pop((repo_type, repo_id, path), None)
            else:
                self._override[(repo_type, repo_id, path)] = bytes(data)

    def headers_instead(self, headers: dict[str, str] | None) -> None:
        """Send these values for these headers in every response that has them (``None`` restores)."""
        with self._lock:
            self._header_override = dict(headers or {})

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, key, branch, files, delete, message, parent_commit: str | None = None) -> str:
        repo = self._repos[key]
        parent = repo.branches.get(branch)
        if parent is None and repo.commits:
            raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        if parent_commit is not None and parent_commit != parent:
            raise _HubError(412, f"A commit has happened since. Please refresh and try again ({parent})")
        tree = dict(repo.commits[parent].files) if parent else {}
        for path in delete:
            if path.endswith("/"):
                for p in [p for p in tree if p.startswith(path)]:
                    del tree[p]
            elif path in tree:
                del tree[path]
            else:
                raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        for path, data in files.items():
            tree[path] = bytes(data)
        self._counter += 1
        h = hashlib.sha1(f"{parent}\n{message}\n{self._counter}\n".encode())
        for path in sorted(tree):
            h.update(f"{path}\0{git_blob_sha1(tree[path])}\n".encode())
        sha = h.hexdigest()
        repo.commits[sha] = _Commit(sha, parent, message, tree)
        repo.branches[branch] = sha
        return sha

    def _served_bytes(self, repo: _Repo, path: str, data: bytes) -> bytes:
        return self._override.get((repo.repo_type, repo.repo_id, path), data)


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # ---------------------------------------------------------------- plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        override = self.server_hub._header_override
        for k, v in (headers or {}).items():
            self.send_header(k, override.get(k, v))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self.close_connection = True

    def _json(self, status: int, obj, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head=head)

    def _error(self, err: _HubError, head: bool = False) -> None:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        self._json(err.status, {"error": err.message}, headers, head=head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        split = urlsplit(self.path)
        with hub._lock:
            hub.requests.append((method, split.path))
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        head = method == "HEAD"
        try:
            body = self._body() if method in ("POST", "PUT") else b""
            if segs[:3] == ["api", "repos", "create"] and method == "POST":
                return self._create_repo(json.loads(body or b"{}"))
            if len(segs) >= 4 and segs[0] == "api" and segs[1] in _TYPES:
                repo_type, repo_id, rest = _TYPES[segs[1]], f"{segs[2]}/{segs[3]}", segs[4:]
                return self._api(method, repo_type, repo_id, rest, query, body)
            # /{datasets|spaces/}{ns}/{name}/resolve/{rev}/{path...}
            repo_type = "model"
            if segs and segs[0] in ("datasets", "spaces"):
                repo_type, segs = _TYPES[segs[0]], segs[1:]
            if len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(repo_type, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]), head)
            raise _HubError(404, f"no route for {method} {split.path}")
        except _HubError as e:
            self._error(e, head=head)
        except (ValueError, KeyError) as e:
            self._error(_HubError(400, f"bad request: {e}"), head=head)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    # ---------------------------------------------------------------- endpoints

    def _create_repo(self, payload: dict) -> None:
        hub = self.server_hub
        name, org = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        repo_id = f"{org}/{name}" if org else name
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
        url = f"{hub.url}/{prefix}{repo_id}"
        try:
            hub.create_repo(repo_id, repo_type)
        except _HubError as e:
            return self._json(e.status, {"error": e.message, "url": url}, {"X-Error-Message": e.message})
        self._json(200, {"url": url, "name": repo_id})

    def _api(self, method, repo_type, repo_id, rest, query, body) -> None:
        hub = self.server_hub
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id)
            if method == "GET" and (not rest or rest[0] == "revision"):
                revision = rest[1] if len(rest) > 1 else "main"
                return self._info(repo, revision)
            if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query)
            if method == "GET" and rest == ["refs"]:
                def ref(kind, name, sha):
                    return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}
                return self._json(200, {
                    "branches": [ref("heads", n, s) for n, s in sorted(repo.branches.items())],
                    "tags": [ref("tags", n, s) for n, s in sorted(repo.tags.items())],
                    "converts": [], "pullRequests": []})
            if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                return self._preupload(repo, rest[1], json.loads(body))
            if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                return self._commit(repo, rest[1], body)
            if method == "POST" and len(rest) == 2 and rest[0] == "tag":
                payload = json.loads(body)
                hub.create_tag(repo_id, payload["tag"], rest[1], repo_type=repo_type)
                return self._json(200, {})
        raise _HubError(404, f"no route for {method} /api/.../{'/'.join(rest)}")

    def _sha(self, repo: _Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _info(self, repo: _Repo, revision: str) -> None:
        sha = self._sha(repo, revision)
        files = repo.commits[sha].files
        self._json(200, {
            "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": sha, "private": False,
            "disabled": False, "gated": False, "tags": [], "lastModified": "2026-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in sorted(files)]})

    def _tree(self, repo: _Repo, revision: str, path: str, query: dict) -> None:
        sha = self._sha(repo, revision)
        recursive = query.get("recursive", "false").lower() in ("1", "true")
        files = repo.commits[sha].files
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        below = sorted(p for p in files if p.startswith(prefix))
        if prefix and not below:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", commit=sha)
        entries, dirs = [], set()
        for p in below:
            rel = p[len(prefix):].split("/")
            for depth in range(1, len(rel)):  # folders on the way
                d = prefix + "/".join(rel[:depth])
                if (recursive or depth == 1) and d not in dirs:
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d})
            if recursive or len(rel) == 1:
                data = files[p]
                entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": p})
        self._json(200, entries)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> None:
        hub = self.server_hub
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id)
            sha = self._sha(repo, revision)
            files = repo.commits[sha].files
            if path not in files:
                raise _HubError(404, "Entry not found", "EntryNotFound", commit=sha)
            data = hub._served_bytes(repo, path, files[path])
        start = 0
        rng = self.headers.get("Range")
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
        if rng and rng.startswith("bytes=") and not head:
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first or 0)
            end = int(last) + 1 if last else len(data)
            if start >= len(data) and len(data) > 0:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return self._send(206, data[start:end], headers, content_type="application/octet-stream")
        self._send(200, data, headers, content_type="application/octet-stream", head=head, length=len(data))

    def _preupload(self, repo: _Repo, revision: str, payload: dict) -> None:
        sha = repo.resolve(revision)
        current = repo.commits[sha].files if sha else {}
        out = []
        for f in payload.get("files", []):
            p = f["path"]
            out.append({"path": p, "uploadMode": "regular", "shouldIgnore": False,
                        "oid": git_blob_sha1(current[p]) if p in current else None})
        self._json(200, {"files": out, "commitOid": sha})

    def _commit(self, repo: _Repo, branch: str, body: bytes) -> None:
        hub = self.server_hub
        header, files, delete = {}, {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise _HubError(400, "only base64 file content is supported")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                delete.append(value["path"])
            elif key == "deletedFolder":
                delete.append(value["path"].rstrip("/") + "/")
            else:
                raise _HubError(400, f"unsupported commit operation {key!r} (this test hub has no LFS)")
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        sha = hub._commit((repo.repo_type, repo.repo_id), branch, files, tuple(delete),
                          header.get("summary", ""), parent_commit=header.get("parentCommit"))
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo.repo_type]
        self._json(200, {"commitUrl": f"{hub.url}/{prefix}{repo.repo_id}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": None, "success": True})
