"""The release directory: MANIFEST.json writing, reading, validation and verification."""

import hashlib
import json
from pathlib import Path

import pytest

import benchmark
from benchmark.release import (
    MANIFEST_NAME,
    SUPPORTED_SCHEMA_VERSION,
    ReleaseError,
    SchemaVersionError,
    VerificationError,
    list_release_files,
    read_manifest,
    sha256_file,
    verify_release,
    write_manifest,
)

CREATED = "2026-01-01T00:00:00Z"


def make_release(root: Path, space: str = "s") -> Path:
    (root / "surrogates" / space).mkdir(parents=True)
    (root / f"table_{space}.h5").write_bytes(bytes(range(256)) * 40)
    (root / "tokenizer.json").write_text('{"model": "bpe"}\n')
    (root / "surrogates" / space / "latency_ms@cpu.json").write_text('{"r2": 0.9}\n')
    (root / ".cache").mkdir()
    (root / ".cache" / "junk").write_text("x")
    (root / "partial.tmp").write_text("x")
    write_manifest(root, space, created=CREATED)
    return root


def edit_manifest(root: Path, **changes) -> None:
    m = json.loads((root / MANIFEST_NAME).read_text())
    m.update(changes)
    (root / MANIFEST_NAME).write_text(json.dumps(m))


def test_write_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    rel = make_release(tmp_path / "rel")
    m = read_manifest(rel)
    assert m["format"] == "hwlm-bench-release" and m["format_version"] == 1
    assert m["space"] == "s" and m["schema_version"] == SUPPORTED_SCHEMA_VERSION
    assert m["package_version"] == benchmark.__version__ and m["created"] == CREATED
    paths = [f["path"] for f in m["files"]]
    assert paths == ["surrogates/s/latency_ms@cpu.json", "table_s.h5", "tokenizer.json"]  # sorted, no junk
    for f in m["files"]:
        data = (rel / f["path"]).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert list_release_files(rel) == paths
    assert sha256_file(rel / "table_s.h5") == m["files"][1]["sha256"]


def test_write_manifest_is_deterministic_and_keeps_extra_keys(tmp_path):
    rel = make_release(tmp_path / "rel")
    first = (rel / MANIFEST_NAME).read_bytes()
    write_manifest(rel, "s", created=CREATED)
    assert (rel / MANIFEST_NAME).read_bytes() == first
    m = write_manifest(rel, "s", created=CREATED, files=["table_s.h5"], extra={"description": "test"})
    assert [f["path"] for f in m["files"]] == ["table_s.h5"] and read_manifest(rel)["description"] == "test"
    with pytest.raises(ReleaseError, match="core manifest field"):
        write_manifest(rel, "s", extra={"files": []})
    with pytest.raises(ReleaseError, match="does not exist"):
        write_manifest(rel, "s", files=["nope.h5"])
    with pytest.raises(ReleaseError, match="invalid space"):
        write_manifest(rel, "../s")


def test_verify_release_returns_the_manifest(tmp_path):
    rel = make_release(tmp_path / "rel")
    assert verify_release(rel) == read_manifest(rel)
    assert verify_release(rel, space="s")["space"] == "s"
    with pytest.raises(ReleaseError, match="space 's', expected 't'"):
        verify_release(rel, space="t")


def test_corrupted_file_is_named_with_both_hashes(tmp_path):
    rel = make_release(tmp_path / "rel")
    expected = read_manifest(rel)["files"][1]["sha256"]
    data = bytearray((rel / "table_s.h5").read_bytes())
    data[100] ^= 0xFF  # same size, one byte flipped
    (rel / "table_s.h5").write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(VerificationError) as info:
        verify_release(rel)
    msg = str(info.value)
    assert "table_s.h5" in msg and expected in msg and actual in msg
    assert [(m.path, m.expected_sha256, m.actual_sha256) for m in info.value.mismatches] == \
        [("table_s.h5", expected, actual)]
    assert info.value.missing == [] and info.value.directory == rel
    assert isinstance(info.value, ValueError)


def test_truncated_and_missing_files_are_reported_together(tmp_path):
    rel = make_release(tmp_path / "rel")
    (rel / "table_s.h5").write_bytes((rel / "table_s.h5").read_bytes()[:-10])
    (rel / "tokenizer.json").unlink()
    with pytest.raises(VerificationError) as info:
        verify_release(rel)
    msg = str(info.value)
    assert "size: expected 10240 bytes, actual 10230" in msg and "missing: tokenizer.json" in msg
    assert info.value.missing == ["tokenizer.json"] and info.value.mismatches[0].actual_size == 10230


def test_newer_schema_or_format_says_to_upgrade(tmp_path):
    rel = make_release(tmp_path / "rel")
    edit_manifest(rel, schema_version=SUPPORTED_SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match=rf"schema_version {SUPPORTED_SCHEMA_VERSION + 1} is newer .* supports \(up to {SUPPORTED_SCHEMA_VERSION}\).*[Uu]pgrade"):
        read_manifest(rel)
    with pytest.raises(SchemaVersionError):
        verify_release(rel)
    edit_manifest(rel, schema_version=1, format_version=99)
    with pytest.raises(SchemaVersionError, match="format_version 99"):
        read_manifest(rel)
    with pytest.raises(SchemaVersionError):
        write_manifest(rel, "s", schema_version=SUPPORTED_SCHEMA_VERSION + 1)


@pytest.mark.parametrize("bad_path", ["../outside.h5", "/etc/passwd", "a/../b", "a\\b", "a//b", "./a", "MANIFEST.json"])
def test_manifest_paths_must_stay_inside_the_release(tmp_path, bad_path):
    rel = make_release(tmp_path / "rel")
    m = json.loads((rel / MANIFEST_NAME).read_text())
    m["files"][0]["path"] = bad_path
    (rel / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ReleaseError, match="path"):
        read_manifest(rel)


@pytest.mark.parametrize("mutate, match", [
    (lambda m: m["files"][0].update(sha256="ABC"), "invalid sha256"),
    (lambda m: m["files"][0].update(size=-1), "invalid size"),
    (lambda m: m["files"].append(dict(m["files"][0])), "listed twice"),
    (lambda m: m.update(format="other"), "invalid format"),
    (lambda m: m.update(schema_version="1"), "invalid schema_version"),
    (lambda m: m.update(files={}), "invalid files"),
    (lambda m: m.pop("created"), "invalid created"),
])
def test_malformed_manifest_is_a_clear_error(tmp_path, mutate, match):
    rel = make_release(tmp_path / "rel")
    m = json.loads((rel / MANIFEST_NAME).read_text())
    mutate(m)
    (rel / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ReleaseError, match=match):
        read_manifest(rel)


def test_missing_or_unparsable_manifest(tmp_path):
    with pytest.raises(ReleaseError, match="not a release directory"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ReleaseError, match="not valid JSON"):
        read_manifest(tmp_path / MANIFEST_NAME)


def test_embedded_release_verifies():
    """The shipped data/ is a release: every file in its MANIFEST is present with its sha256."""
    from benchmark.paths import data_dir
    from benchmark.release import MANIFEST_NAME, verify_release

    root = data_dir()
    if not (root / MANIFEST_NAME).exists():
        pytest.skip("no embedded release manifest in this checkout")
    manifest = verify_release(root, space="t")
    paths = {f["path"] for f in manifest["files"]}
    assert {"tokenizer.json", "corpus/test.npy", "supernet_t.safetensors"} <= paths


def test_embedded_release_lists_every_file_it_holds():
    """Surrogate sidecars, the surrogate index and everything else of data/ are hashed in its manifest."""
    from benchmark.paths import data_dir

    root = data_dir()
    if not (root / MANIFEST_NAME).exists():
        pytest.skip("no embedded release manifest in this checkout")
    listed = {f["path"] for f in read_manifest(root)["files"]}
    assert set(list_release_files(root)) == listed
    assert "surrogates/t/index.json" in listed and any(p.endswith(".meta.json") for p in listed)


def test_symlinks_out_of_the_release_are_refused(tmp_path):
    rel = make_release(tmp_path / "rel")
    outside = tmp_path / "outside.json"
    outside.write_text('{"model": "bpe"}\n')
    (rel / "tokenizer.json").unlink()
    (rel / "tokenizer.json").symlink_to(outside)
    with pytest.raises(ReleaseError, match="tokenizer.json is a symlink to .*outside.json, outside the release"):
        write_manifest(rel, "s", created=CREATED)
    (rel / "tokenizer.json").unlink()
    (rel / "tokenizer.json").symlink_to(rel / "table_s.h5")  # inside: fine
    assert "tokenizer.json" in {f["path"] for f in write_manifest(rel, "s")["files"]}


def test_cached_verification_hashes_a_file_once_per_version(tmp_path, monkeypatch):
    import benchmark.release as R

    monkeypatch.setenv("HWLM_CACHE_DIR", str(tmp_path / "cache"))
    rel = make_release(tmp_path / "rel")
    hashed = []
    real = R.sha256_file
    monkeypatch.setattr(R, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    verify_release(rel, cached=True)
    assert sorted(hashed) == ["latency_ms@cpu.json", "table_s.h5", "tokenizer.json"]
    hashed.clear()
    assert verify_release(rel, cached=True) == read_manifest(rel) and hashed == []  # warm: sizes and stat only
    data = bytearray((rel / "table_s.h5").read_bytes())
    data[7] ^= 1  # same size, rewritten: a new mtime/ctime, so hashed again
    (rel / "table_s.h5").write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="corrupted: table_s.h5"):
        verify_release(rel, cached=True)
    assert hashed == ["table_s.h5"]
    (tmp_path / "cache" / "verified-sha256.json").write_text("{damaged")  # a broken cache is only a miss
    with pytest.raises(VerificationError, match="corrupted: table_s.h5"):
        verify_release(rel, cached=True)


def test_manifest_checksum_catches_edits_of_the_manifest_itself(tmp_path):
    rel = make_release(tmp_path / "rel")
    m = json.loads((rel / MANIFEST_NAME).read_text())
    m["created"] = "2020-01-01T00:00:00Z"
    (rel / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ReleaseError, match="checksum .* does not match the manifest's content"):
        read_manifest(rel)
    del m["checksum"]  # a manifest of an older version: read as before
    (rel / MANIFEST_NAME).write_text(json.dumps(m))
    assert verify_release(rel)["created"] == "2020-01-01T00:00:00Z"


def _table_release(root: Path) -> tuple[Path, Path]:
    """A release holding a small synthetic table, and a shard of other rows to merge into it."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from hwtable import build_table

    root.mkdir(parents=True)
    build_table(root / "table_t.h5", n_table=12, n_extra=0, seed=3)
    build_table(root.parent / "shard.h5", n_table=12, n_extra=0, seed=4)
    write_manifest(root, "t", created=CREATED, extra={"description": "kept"})
    return root, root.parent / "shard.h5"


def test_maintainer_commands_refuse_to_break_a_release_unless_forced(tmp_path, capsys):
    from benchmark.cli import main as hwlm

    rel, shard = _table_release(tmp_path / "rel")
    before = (rel / MANIFEST_NAME).read_bytes()
    for argv in (["table", "add-modeled", str(rel / "table_t.h5")],
                 ["table", "merge", str(rel / "table_t.h5"), str(shard)],
                 ["fit", "--table", str(rel / "table_t.h5"), "--out", str(rel)]):
        assert hwlm(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"is inside the release {rel}" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert hwlm(["prepare-corpus", "--out", str(rel)]) == 2  # refused before anything is downloaded
    assert "--force" in capsys.readouterr().err
    assert (rel / MANIFEST_NAME).read_bytes() == before and verify_release(rel)
    # forced: written, and the manifest rewritten so that the release verifies again
    assert hwlm(["table", "merge", str(rel / "table_t.h5"), str(shard), "--force"]) == 0
    m = verify_release(rel)
    assert m["description"] == "kept" and m["created"] != CREATED
    from benchmark.table import Table

    assert Table(rel / "table_t.h5").ids.tolist() == Table(shard).ids.tolist()  # OUT is rewritten from the shard
    # hwlm manifest rewrites and checks a release by hand
    assert hwlm(["manifest", str(rel), "--check"]) == 0
    (rel / "notes.txt").write_text("x")
    assert hwlm(["manifest", str(rel)]) == 0 and "notes.txt" in {f["path"] for f in verify_release(rel)["files"]}
