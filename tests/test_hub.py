"""Download, verify, cache and publish releases with the real huggingface_hub client.

Every test talks to :class:`tests.hubserver.HubServer`, a Hub-compatible HTTP server on
127.0.0.1 started by the test; nothing touches the internet.
"""

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
import huggingface_hub  # noqa: E402
from huggingface_hub.utils import close_session  # noqa: E402

from benchmark import hub  # noqa: E402
from benchmark.cli import main as hwlm  # noqa: E402
from benchmark.release import (  # noqa: E402
    MANIFEST_NAME,
    SUPPORTED_SCHEMA_VERSION,
    ReleaseError,
    SchemaVersionError,
    VerificationError,
    read_manifest,
    verify_release,
    write_manifest,
)

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import HubServer  # noqa: E402

REPO = "hwlm-test/releases"
CREATED = "2026-01-01T00:00:00Z"


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch):
    """No configuration leaks in from the environment, and 127.0.0.1 never goes through a proxy."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HWLM_HUB_REPO", "HWLM_HUB_ENDPOINT", "HF_ENDPOINT",
                "HWLM_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    bars_were_disabled = huggingface_hub.utils.are_progress_bars_disabled()
    huggingface_hub.utils.disable_progress_bars()
    close_session()  # a fresh httpx client picks up NO_PROXY
    yield
    close_session()
    if not bars_were_disabled:
        huggingface_hub.utils.enable_progress_bars()


@pytest.fixture
def server():
    with HubServer() as srv:
        yield srv


def make_release(root: Path, space: str = "s", *, table: bytes | None = None, schema: int | None = None) -> Path:
    (root / "surrogates").mkdir(parents=True)
    (root / f"table_{space}.h5").write_bytes(table if table is not None else os.urandom(20_000))
    (root / "tokenizer.json").write_text('{"model": "bpe", "vocab": 300}\n')
    (root / "surrogates" / "latency_ms@cpu.json").write_text('{"r2": 0.93}\n')
    write_manifest(root, space, created=CREATED)
    if schema is not None:  # a release written by a newer package
        m = json.loads((root / MANIFEST_NAME).read_text())
        m["schema_version"] = schema
        (root / MANIFEST_NAME).write_text(json.dumps(m, indent=2))
    return root


def seed(server: HubServer, release: Path, tag: str, *, extra: dict | None = None) -> str:
    """Put a release on the server directly (independent of publish) and tag it."""
    space = json.loads((release / MANIFEST_NAME).read_text())["space"]
    files = {f"{space}/{p.relative_to(release).as_posix()}": p.read_bytes()
             for p in release.rglob("*") if p.is_file()}
    files.update(extra or {})
    server.commit_files(REPO, files, message=f"release {tag}")
    return server.create_tag(REPO, tag)


def dead_endpoint() -> str:
    with HubServer() as srv:
        url = srv.url
    return url  # nothing listens there any more


def cached_file_hashes(cache: Path) -> set[str]:
    out = set()
    for dirpath, _, names in os.walk(cache):
        for name in names:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                out.add(hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def go_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the client now refuses any request


# --------------------------------------------------------------------------------------------
# download


def test_download_fetches_verifies_and_caches(server, tmp_path):
    rel = make_release(tmp_path / "rel")
    commit = seed(server, rel, "v1", extra={"s/not-in-manifest.bin": b"x" * 100, "t/MANIFEST.json": b"{}"})
    cache = tmp_path / "cache"
    path = hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)

    assert path.is_relative_to(cache.resolve()) and path.name == "s" and path.parent.name == commit
    assert verify_release(path, space="s") == read_manifest(rel)
    for f in read_manifest(rel)["files"]:
        assert (path / f["path"]).read_bytes() == (rel / f["path"]).read_bytes()
    # allow_patterns: only the manifest and the files it lists came
    got = {p for _, p in server.requests}
    assert not any("not-in-manifest" in p or "/t/" in p for p in got)
    assert not (path / "not-in-manifest.bin").exists()

    # second call: re-verified from the cache without a single request
    n = len(server.requests)
    assert hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache) == path
    assert len(server.requests) == n


def test_second_call_is_offline_even_with_the_server_stopped(tmp_path, monkeypatch):
    rel = make_release(tmp_path / "rel")
    cache = tmp_path / "cache"
    with HubServer() as srv:
        seed(srv, rel, "v1")
        path = hub.download("s", "v1", repo_id=REPO, endpoint=srv.url, cache_dir=cache)
        endpoint = srv.url
    go_offline(monkeypatch)
    assert hub.is_offline()
    assert hub.download("s", "v1", repo_id=REPO, endpoint=endpoint, cache_dir=cache) == path
    assert hub.download("s", repo_id=REPO, endpoint=endpoint, cache_dir=cache) == path  # pinned default is v1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert hub.download("s", "v1", repo_id=REPO, endpoint=endpoint, cache_dir=cache, refresh=False) == path


def test_offline_cli_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE=1 set before huggingface_hub is imported, as a user would: `hwlm download` works."""
    rel = make_release(tmp_path / "rel")
    cache = tmp_path / "cache"
    with HubServer() as srv:
        seed(srv, rel, "v1")
        path = hub.download("s", "v1", repo_id=REPO, endpoint=srv.url, cache_dir=cache)
        endpoint = srv.url
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HWLM_HUB_REPO": REPO, "HWLM_HUB_ENDPOINT": endpoint,
           "HWLM_CACHE_DIR": str(cache), "NO_PROXY": "127.0.0.1"}
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "download", "--space", "s", "--revision", "v1"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(path)
    assert "every sha256 matches" in out.stdout


def test_corrupted_file_on_the_server_is_rejected_and_not_cached(server, tmp_path):
    table = os.urandom(20_000)
    rel = make_release(tmp_path / "rel", table=table)
    seed(server, rel, "v1")
    bad = bytearray(table)
    bad[1234] ^= 0x01
    bad = bytes(bad)
    server.serve_instead(REPO, "s/table_s.h5", bad)
    cache = tmp_path / "cache"
    with pytest.raises(VerificationError) as info:
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    msg = str(info.value)
    good_sha, bad_sha = hashlib.sha256(table).hexdigest(), hashlib.sha256(bad).hexdigest()
    assert "table_s.h5" in msg and good_sha in msg and bad_sha in msg and "deleted from the cache" in msg
    assert [m.path for m in info.value.mismatches] == ["table_s.h5"]
    assert bad_sha not in cached_file_hashes(cache)  # no copy of the bad bytes anywhere in the cache
    assert not (info.value.directory / "table_s.h5").exists()

    # the next call does not take the rest of the cache for a complete release: it fetches again
    server.serve_instead(REPO, "s/table_s.h5", None)
    path = hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    assert (path / "table_s.h5").read_bytes() == table


def test_truncated_file_on_the_server_is_rejected(server, tmp_path):
    table = os.urandom(20_000)
    rel = make_release(tmp_path / "rel", table=table)
    seed(server, rel, "v1")
    server.serve_instead(REPO, "s/table_s.h5", table[:15_000])
    cache = tmp_path / "cache"
    with pytest.raises(VerificationError, match=r"table_s\.h5: sha256 expected .*size: expected 20000 bytes, "
                                                r"actual 15000") as info:
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    assert hashlib.sha256(table[:15_000]).hexdigest() in str(info.value)
    assert hashlib.sha256(table[:15_000]).hexdigest() not in cached_file_hashes(cache)


def test_tampered_cache_is_detected_on_the_next_load(tmp_path, monkeypatch):
    table = os.urandom(20_000)
    rel = make_release(tmp_path / "rel", table=table)
    cache = tmp_path / "cache"
    with HubServer() as srv:
        seed(srv, rel, "v1")
        path = hub.download("s", "v1", repo_id=REPO, endpoint=srv.url, cache_dir=cache)
        endpoint = srv.url
    with open(path / "table_s.h5", "r+b") as f:  # edit through the snapshot symlink, same size
        f.seek(77)
        f.write(b"\x00\x01\x02")
    tampered = hashlib.sha256((path / "table_s.h5").read_bytes()).hexdigest()

    go_offline(monkeypatch)
    with pytest.raises(VerificationError) as info:
        hub.download("s", "v1", repo_id=REPO, endpoint=endpoint, cache_dir=cache)
    msg = str(info.value)
    assert "table_s.h5" in msg and hashlib.sha256(table).hexdigest() in msg and tampered in msg
    assert "hwlm download --space s --revision v1" in msg and "network" in msg
    assert tampered not in cached_file_hashes(cache) and not (path / "table_s.h5").exists()
    with pytest.raises(VerificationError, match="missing: table_s.h5"):  # still never passes as good
        hub.download("s", "v1", repo_id=REPO, endpoint=endpoint, cache_dir=cache)


def test_tampered_cache_is_repaired_when_online(server, tmp_path, caplog):
    table = os.urandom(20_000)
    rel = make_release(tmp_path / "rel", table=table)
    seed(server, rel, "v1")
    cache = tmp_path / "cache"
    path = hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    (path / "tokenizer.json").unlink()  # a missing file is fetched again too
    with open(path / "table_s.h5", "r+b") as f:
        f.write(b"tampered")
    with caplog.at_level(logging.WARNING, logger="benchmark.hub"):
        again = hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    assert again == path and "failed verification" in caplog.text and "table_s.h5" in caplog.text
    assert (path / "table_s.h5").read_bytes() == table
    verify_release(path)


def test_tampered_manifest_in_the_cache_is_detected(tmp_path, monkeypatch):
    rel = make_release(tmp_path / "rel")
    cache = tmp_path / "cache"
    with HubServer() as srv:
        seed(srv, rel, "v1")
        path = hub.download("s", "v1", repo_id=REPO, endpoint=srv.url, cache_dir=cache)
        endpoint = srv.url
    # swap the table and make the manifest agree with it: the manifest no longer matches its blob id
    (path / "table_s.h5").write_bytes(b"evil")
    m = json.loads((path / MANIFEST_NAME).read_text())
    m["files"] = [dict(f, sha256=hashlib.sha256(b"evil").hexdigest(), size=4) if f["path"] == "table_s.h5" else f
                  for f in m["files"]]
    (path / MANIFEST_NAME).write_text(json.dumps(m))
    go_offline(monkeypatch)
    with pytest.raises(VerificationError, match=r"MANIFEST\.json: git-sha1 expected [0-9a-f]{40}, actual"):
        hub.download("s", "v1", repo_id=REPO, endpoint=endpoint, cache_dir=cache)


def test_unreadable_cached_manifest_is_replaced(server, tmp_path, monkeypatch):
    rel = make_release(tmp_path / "rel")
    seed(server, rel, "v1")
    kw = dict(repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    path = hub.download("s", "v1", **kw)
    (path / MANIFEST_NAME).unlink()  # a plain file instead of the symlink (as on platforms without symlinks)
    (path / MANIFEST_NAME).write_text("{garbage")
    assert hub.download("s", "v1", **kw) == path and read_manifest(path) == read_manifest(rel)  # online: fetched
    (path / MANIFEST_NAME).unlink()
    (path / MANIFEST_NAME).write_text("{garbage")
    go_offline(monkeypatch)
    with pytest.raises(VerificationError, match=r"(?s)not valid JSON.*Removed from the cache: MANIFEST.json"):
        hub.download("s", "v1", **kw)
    assert not (path / MANIFEST_NAME).exists()


def test_manifest_can_be_pinned_by_sha256(server, tmp_path):
    rel = make_release(tmp_path / "rel")
    seed(server, rel, "v1")
    good = hashlib.sha256((rel / MANIFEST_NAME).read_bytes()).hexdigest()
    with pytest.raises(VerificationError, match=f"MANIFEST.json: sha256 expected {'0' * 64}, actual {good}"):
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "c1",
                     manifest_sha256="0" * 64)
    assert hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "c2",
                        manifest_sha256=good).is_dir()


def test_missing_revision_space_or_repo_are_clear_errors(server, tmp_path):
    seed(server, make_release(tmp_path / "rel"), "v1")
    kw = dict(repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    with pytest.raises(hub.HubError, match=r"revision 'v9' does not exist .*\(its tags: v1\).*--revision") as info:
        hub.download("s", "v9", **kw)
    assert "pinned default of space 's' (v1)" in str(info.value)
    with pytest.raises(hub.HubError, match=r"no release for space 'm' \(m/MANIFEST.json not found\)"):
        hub.download("m", "v1", **kw)
    with pytest.raises(hub.HubError, match=r"dataset repository nobody/nothing was not found .*HWLM_HUB_REPO"):
        hub.download("s", "v1", **{**kw, "repo_id": "nobody/nothing"})
    with pytest.raises(hub.HubError, match="no pinned default revision for space 'x'"):
        hub.download("x", **kw)
    with pytest.raises(ReleaseError, match="invalid space"):
        hub.download("../s", "v1", **kw)


def test_no_network_and_nothing_cached_says_what_to_do(tmp_path):
    endpoint = dead_endpoint()
    t0 = time.perf_counter()
    with pytest.raises(hub.HubUnreachableError) as info:
        hub.download("s", "v1", repo_id=REPO, endpoint=endpoint, cache_dir=tmp_path / "cache")
    assert time.perf_counter() - t0 < 5  # fails fast: no retry loop with backoff
    msg = str(info.value)
    assert f"cannot reach the Hub at {endpoint}" in msg and "network" in msg and "HWLM_CACHE_DIR" in msg
    assert "hwlm download --space s --revision v1 --repo hwlm-test/releases" in msg
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, ReleaseError)


def test_offline_and_nothing_cached_makes_no_request(server, tmp_path, monkeypatch):
    seed(server, make_release(tmp_path / "rel"), "v1")
    go_offline(monkeypatch)
    with pytest.raises(hub.HubUnreachableError, match=r"not in the cache .*HF_HUB_OFFLINE.*hwlm download"):
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(hub.HubUnreachableError):
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache",
                     local_files_only=True)
    assert server.requests == []  # (the seeding above does not go through HTTP)


def test_file_listed_but_not_published_is_a_clear_error(server, tmp_path):
    rel = make_release(tmp_path / "rel")
    (rel / "tokenizer.json").unlink()  # listed in the manifest, never uploaded
    seed(server, rel, "v1")
    with pytest.raises(VerificationError, match=r"(?s)missing: tokenizer.json.*incomplete: republish") as info:
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    assert info.value.missing == ["tokenizer.json"]


def files_outside(root: Path, inside: Path) -> set[Path]:
    """Files (and links) under ``root`` that are not under ``inside``."""
    out = set()
    for dirpath, dirnames, names in os.walk(root):
        for name in names + dirnames:
            p = Path(dirpath) / name
            if inside not in (p, *p.parents) and (p.is_file() or p.is_symlink()):
                out.add(p)
    return out


@pytest.mark.parametrize("header", ["ETag", "X-Repo-Commit"])
@pytest.mark.parametrize("value", ["absolute", "../../../../../x", "..", "a/b"])
def test_a_path_in_a_hub_header_is_refused_before_anything_is_written(server, tmp_path, header, value, capsys):
    """A malicious or broken server's ETag / X-Repo-Commit naming a path outside the cache: our error
    (naming the header and the value), no file anywhere outside the cache, nothing partial in it."""
    rel = make_release(tmp_path / "rel")
    seed(server, rel, "v1")
    target = tmp_path / "escaped"
    value = str(target) if value == "absolute" else value
    server.headers_instead({header: f'"{value}"' if header == "ETag" else value})
    cache = tmp_path / "work" / "cache"
    before = files_outside(tmp_path, cache)
    with pytest.raises(hub.HubError, match=f"{header}.*{value.replace('.', '[.]')}") as e:
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    assert "traversal" in str(e.value) or "path" in str(e.value)
    assert files_outside(tmp_path, cache) == before and not target.exists()
    assert not [p for p in cache.rglob("*") if p.is_file() and "blobs" in p.parts]  # nothing was downloaded
    code = hwlm(["download", "--space", "s", "--revision", "v1", "--repo", REPO, "--endpoint", server.url,
                 "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert code == 2 and header in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    server.headers_instead(None)  # an honest server again: the same cache works
    assert verify_release(hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache))


def test_refresh_resolves_a_branch_again(server, tmp_path):
    rel = make_release(tmp_path / "rel")
    seed(server, rel, "v1")
    kw = dict(repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    old = hub.download("s", "main", **kw)
    (rel / "tokenizer.json").write_text('{"model": "bpe", "vocab": 302}\n')
    write_manifest(rel, "s", created=CREATED)
    seed(server, rel, "v2")
    assert hub.download("s", "main", **kw) == old  # cached: no request, the old commit
    new = hub.download("s", "main", refresh=True, **kw)
    assert new != old and (new / "tokenizer.json").read_text().endswith("302}\n")
    assert hub.download("s", "main", **kw) == new


def test_newer_schema_fails_before_the_large_files_come(server, tmp_path):
    rel = make_release(tmp_path / "rel", schema=SUPPORTED_SCHEMA_VERSION + 1)
    seed(server, rel, "v1")
    cache = tmp_path / "cache"
    with pytest.raises(SchemaVersionError, match=rf"schema_version {SUPPORTED_SCHEMA_VERSION + 1} is newer .*[Uu]pgrade.*--revision"):
        hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=cache)
    assert not any("table_s.h5" in p for _, p in server.requests)


def test_configuration_from_the_environment(server, tmp_path, monkeypatch):
    seed(server, make_release(tmp_path / "rel"), "v1")
    monkeypatch.setenv("HWLM_HUB_REPO", REPO)
    monkeypatch.setenv("HF_ENDPOINT", server.url + "/")
    monkeypatch.setenv("HWLM_CACHE_DIR", str(tmp_path / "envcache"))
    assert hub.resolve_repo_id() == REPO and hub.resolve_endpoint() == server.url
    path = hub.download("s", "v1")
    assert path.is_relative_to((tmp_path / "envcache").resolve())
    monkeypatch.setenv("HWLM_HUB_ENDPOINT", "http://example.invalid")
    assert hub.resolve_endpoint() == "http://example.invalid"  # HWLM_HUB_ENDPOINT wins over HF_ENDPOINT
    assert hub.resolve_endpoint("http://x/") == "http://x"  # and the argument over both
    monkeypatch.delenv("HWLM_HUB_REPO")
    assert hub.resolve_repo_id() == hub.DEFAULT_REPO_ID
    assert set(hub.DEFAULT_REVISIONS) == {"t", "s", "m", "l"}


# --------------------------------------------------------------------------------------------
# publish


def test_publish_then_download(server, tmp_path):
    rel = make_release(tmp_path / "rel")
    result = hub.publish(rel, "v1", repo_id=REPO, endpoint=server.url)
    assert result.spaces == ("s",) and result.revision == "v1" and result.deleted == ()
    assert server.refs(REPO)["tags"] == {"v1": result.commit}
    files = server.files(REPO, "v1")
    assert set(result.files) == {f"s/{f['path']}" for f in read_manifest(rel)["files"]} | {"s/MANIFEST.json"}
    assert all(files[p] == (rel / p[2:]).read_bytes() for p in result.files)

    path = hub.download("s", "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    assert verify_release(path) == read_manifest(rel)

    # a tag is never moved
    with pytest.raises(hub.HubError, match="'v1' already exists .*new tag"):
        hub.publish(rel, "v1", repo_id=REPO, endpoint=server.url)

    # v2 drops a file: it disappears from the space folder at v2, v1 is untouched
    (rel / "surrogates" / "latency_ms@cpu.json").unlink()
    (rel / "tokenizer.json").write_text('{"model": "bpe", "vocab": 301}\n')
    write_manifest(rel, "s", created=CREATED)
    v2 = hub.publish(rel, "v2", repo_id=REPO, endpoint=server.url)
    assert v2.deleted == ("s/surrogates/latency_ms@cpu.json",)
    assert "s/surrogates/latency_ms@cpu.json" not in server.files(REPO, "v2")
    assert "s/surrogates/latency_ms@cpu.json" in server.files(REPO, "v1")
    p2 = hub.download("s", "v2", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "cache")
    assert (p2 / "tokenizer.json").read_text().endswith('301}\n') and not (p2 / "surrogates").exists()
    assert verify_release(hub.download("s", "v1", repo_id=REPO, endpoint=server.url,
                                       cache_dir=tmp_path / "cache"))["files"][0]["path"].startswith("surrogates")


def test_publish_several_spaces_in_one_commit(server, tmp_path):
    r_s = make_release(tmp_path / "s")
    r_t = make_release(tmp_path / "t", space="t")
    result = hub.publish([r_s, r_t], "v1", repo_id=REPO, endpoint=server.url)
    assert result.spaces == ("s", "t")
    for space in ("s", "t"):
        verify_release(hub.download(space, "v1", repo_id=REPO, endpoint=server.url, cache_dir=tmp_path / "c"))
    with pytest.raises(ReleaseError, match="same space"):
        hub.publish([r_s, r_s], "v2", repo_id=REPO, endpoint=server.url)


def test_publish_refuses_an_unverified_release(server, tmp_path):
    rel = make_release(tmp_path / "rel")
    (rel / "tokenizer.json").write_text("changed after the manifest was written")
    with pytest.raises(VerificationError, match="tokenizer.json: sha256 expected"):
        hub.publish(rel, "v1", repo_id=REPO, endpoint=server.url)
    with pytest.raises(ReleaseError, match="not a release directory"):
        hub.publish(tmp_path, "v1", repo_id=REPO, endpoint=server.url)
    with pytest.raises(ReleaseError, match="invalid release tag"):
        hub.publish(make_release(tmp_path / "ok"), "main", repo_id=REPO, endpoint=server.url)
    linked = make_release(tmp_path / "linked")  # same bytes, but through a symlink out of the release
    secret = tmp_path / "secret.json"
    secret.write_bytes((linked / "tokenizer.json").read_bytes())
    (linked / "tokenizer.json").unlink()
    (linked / "tokenizer.json").symlink_to(secret)
    with pytest.raises(ReleaseError, match="tokenizer.json is a symlink to .*secret.json, outside the release"):
        hub.publish(linked, "v1", repo_id=REPO, endpoint=server.url)
    assert server.requests == []  # nothing was sent


def test_publish_to_an_unreachable_hub(tmp_path):
    with pytest.raises(hub.HubUnreachableError, match="cannot reach the Hub"):
        hub.publish(make_release(tmp_path / "rel"), "v1", repo_id=REPO, endpoint=dead_endpoint())


# --------------------------------------------------------------------------------------------
# command line


def test_cli_publish_and_download(server, tmp_path, capsys):
    rel = make_release(tmp_path / "rel")
    assert hwlm(["publish", str(rel), "--repo", REPO, "--revision", "v1", "--endpoint", server.url]) == 0
    out = capsys.readouterr().out
    assert f"as {REPO}@v1" in out and "4 files uploaded" in out
    cache = tmp_path / "cache"
    args = ["download", "--space", "s", "--revision", "v1", "--repo", REPO, "--endpoint", server.url,
            "--cache-dir", str(cache)]
    assert hwlm(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "3 files" in out[0] and "every sha256 matches MANIFEST.json" in out[0]
    assert verify_release(Path(out[-1]))
    assert hwlm(args[:4] + ["v7"] + args[5:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwlm download: revision 'v7' does not exist") and len(err.strip().splitlines()) == 1
    assert hwlm(["publish", str(rel), "--repo", REPO, "--revision", "v1", "--endpoint", server.url]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("command, words", [("download", ["--space", "--revision", "HWLM_HUB_REPO", "sha256"]),
                                            ("publish", ["DIR", "--repo", "--revision", "tag"])])
def test_cli_help(command, words, capsys):
    with pytest.raises(SystemExit) as info:
        hwlm([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(w in out for w in words)


def test_benchmark_opens_a_hub_release_by_revision(server, tmp_path, monkeypatch):
    """``Benchmark(space, revision=...)`` downloads, verifies and queries a Hub release."""
    from benchmark import Benchmark
    from benchmark.api import QueryError
    from benchmark.spaces import get_space
    from benchmark.table import TableWriter

    rel = tmp_path / "rel"
    rel.mkdir()
    archs = get_space("t").sample(0, 5)
    with TableWriter(rel / "table_t.h5", "t") as w:
        w.declare_metric("perplexity", unit="1", source="measured")
        for i, a in enumerate(archs):
            w.append(a, metrics={"perplexity": 50.0 + i})
    write_manifest(rel, "t", created=CREATED)
    seed(server, rel, "v1")
    monkeypatch.setenv("HWLM_HUB_ENDPOINT", server.url)
    monkeypatch.setenv("HWLM_CACHE_DIR", str(tmp_path / "cache"))
    b = Benchmark("t", revision="v1", repo_id=REPO)
    assert b.path.is_relative_to((tmp_path / "cache").resolve())
    r = b.query(archs[2], metrics=["perplexity"], mode="table")
    assert r["perplexity"] == 52.0 and r.sources["perplexity"] == "measured"
    with pytest.raises(QueryError, match="revision"):
        Benchmark("t", path=rel, revision="v1")
