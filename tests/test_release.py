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
