"""Tests of the corpus pipeline on a small real slice (tests/data/corpus_sample.txt).

Nothing here downloads or reads the registry packages; the shipped data files are checked
against their manifest when present.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.supernet import corpus as C
from benchmark.supernet.corpus import CorpusError
from benchmark.files import sha256_file
from benchmark.supernet.corpus.rdata import RReader, r_lazyload_blob
from benchmark.supernet.corpus.sources import deb_members

SAMPLE = Path(__file__).parent / "data" / "corpus_sample.txt"
BLOCK_CHARS = 1000
VOCAB = 300


@pytest.fixture(scope="module")
def docs():
    return C.load_documents(SAMPLE)


@pytest.fixture(scope="module")
def blocks(docs):
    return C.make_blocks(docs, BLOCK_CHARS)


@pytest.fixture(scope="module")
def splits(blocks):
    return C.split_blocks(blocks, seed=0)


@pytest.fixture(scope="module")
def tok(splits):
    return C.train_tokenizer([b.text for b in splits["train"]], VOCAB, progress=False)


@pytest.fixture(scope="module")
def built(docs, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    manifest = C.build_corpus(docs, out, vocab_size=VOCAB, block_chars=BLOCK_CHARS, seed=0, progress=False)
    return out, manifest


# ---------------------------------------------------------------------------------- sample / text


def test_sample_is_small_real_text_of_every_source(docs):
    assert SAMPLE.stat().st_size <= 60_000
    assert {d.source for d in docs} == set(C.SOURCE_NAMES)
    assert all(len(d.text) > 5000 for d in docs)
    assert any("Who's there?" in d.text for d in docs)
    assert any("In the beginning, God created the heavens and the earth." in d.text for d in docs)
    assert any("It is a truth universally acknowledged" in d.text for d in docs)


def test_normalize_text():
    raw = "\u201cHi,\u201d she said\u2019s  \r\n\r\n\r\n\r\nnext line   \rlast\n\n"
    out = C.normalize_text(raw)
    assert out == "\"Hi,\" she said's\n\nnext line\nlast"
    assert C.normalize_text(out) == out
    assert C.normalize_text("e\u0301") == "\u00e9"  # NFC
    with pytest.raises(CorpusError, match="text"):
        C.normalize_text(b"bytes")


def test_osis_to_text_strips_markup_and_notes():
    # Genesis 1:1 and a poetry line as stored in the sword-text-web module
    markup = (
        '<chapter n="1" osisID="Gen.1" sID="Gen.1"/><w lemma="strong:H0430">In</w> <w lemma="strong:H0853">the</w> '
        '<w lemma="strong:H7225">beginning</w>, <w lemma="strong:H0430">God</w><note placement="foot">'
        '<reference type="annotateRef">1:1 </reference>The Hebrew word rendered \u201cGod\u201d is '
        '\u201c\u05d0\u05b1\u05dc\u05b9\u05d4\u05b4\u0591\u05d9\u05dd\u201d (Elohim).</note><w lemma="strong:H1254">'
        'created</w> <w lemma="strong:H0853">the</w> <w>heavens</w> &amp; <w>earth</w>. '
        '<div sID="gen26" type="x-p"/><l level="1" sID="gen49"/>Blessed is the man<l eID="gen49" level="1"/> '
        '<l level="2" sID="gen50"/>who doesn\u2019t walk.<l eID="gen50" level="2"/>'
    )
    text = C.osis_to_text(markup)
    assert text == "In the beginning, God created the heavens & earth.\n\nBlessed is the man\nwho doesn't walk."
    assert "Elohim" not in text and "<" not in text


def test_documents_round_trip(tmp_path, docs):
    path = tmp_path / "docs.txt"
    sha = C.save_documents(path, docs)
    assert len(sha) == 64
    assert C.load_documents(path) == docs
    bad = C.Document("x", "y", "=== document source=a name=b ===")
    with pytest.raises(CorpusError, match="document text"):
        C.save_documents(tmp_path / "bad.txt", [bad])
    with pytest.raises(CorpusError, match="documents path"):
        C.load_documents(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------- blocks / splits


def test_make_blocks_cover_documents_exactly(docs, blocks):
    for si, source in enumerate(dict.fromkeys(d.source for d in docs)):
        src_docs = [d for d in docs if d.source == source]
        src_blocks = [b for b in blocks if b.source == source]
        assert [b.index for b in src_blocks] == list(range(len(src_blocks)))
        for di, d in enumerate(src_docs):
            mine = [b for b in src_blocks if b.doc_index == di]
            assert all(b.doc_name == d.name for b in mine)
            assert "".join(b.text for b in mine) == d.text + "\n"
            assert all(len(b.text) >= BLOCK_CHARS for b in mine[:-1])
            assert len(mine[-1].text) >= BLOCK_CHARS // 2
            assert all(b.text.endswith("\n") for b in mine)
    assert C.make_blocks(docs, BLOCK_CHARS) == blocks  # pure


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100"])
def test_make_blocks_rejects_bad_block_chars(docs, bad):
    with pytest.raises(CorpusError, match="block_chars"):
        C.make_blocks(docs, bad)


def test_assign_splits_counts_and_determinism():
    a = C.assign_splits(100, (0.9, 0.05, 0.05), seed=3, key="src")
    assert a.dtype == np.int8 and a.shape == (100,)
    assert np.bincount(a, minlength=3).tolist() == [90, 5, 5]
    assert np.array_equal(a, C.assign_splits(100, (0.9, 0.05, 0.05), seed=3, key="src"))
    assert not np.array_equal(a, C.assign_splits(100, (0.9, 0.05, 0.05), seed=4, key="src"))
    assert not np.array_equal(a, C.assign_splits(100, (0.9, 0.05, 0.05), seed=3, key="other"))
    assert np.bincount(C.assign_splits(3, seed=0), minlength=3).tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_blocks": 2}, "n_blocks"),
        ({"n_blocks": -1}, "n_blocks"),
        ({"fractions": (0.9, 0.1)}, "fractions"),
        ({"fractions": (0.9, 0.1, 0.0)}, "fractions"),
        ({"fractions": (0.8, 0.1, 0.2)}, "fractions"),
        ({"fractions": "abc"}, "fractions"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.0}, "seed"),
    ],
)
def test_assign_splits_bad_input(kwargs, field):
    args = {"n_blocks": 50, "fractions": (0.9, 0.05, 0.05), "seed": 0} | kwargs
    with pytest.raises(CorpusError, match=field) as e:
        C.assign_splits(args.pop("n_blocks"), args.pop("fractions"), **args)
    assert "allowed" in str(e.value)


def test_splits_are_disjoint_complete_and_cover_every_source(blocks, splits):
    keys = {s: [(b.source, b.index) for b in splits[s]] for s in C.SPLITS}
    for s in C.SPLITS:
        assert len(keys[s]) == len(set(keys[s]))
    train, val, test = (set(keys[s]) for s in C.SPLITS)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {(b.source, b.index) for b in blocks}
    for s in C.SPLITS:
        assert {b.source for b in splits[s]} == set(C.SOURCE_NAMES), s
    assert len(splits["train"]) > 5 * (len(splits["val"]) + len(splits["test"])) / 2


def test_split_is_deterministic_and_seeded(blocks, splits):
    again = C.split_blocks(blocks, seed=0)
    assert again == splits
    other = C.split_blocks(blocks, seed=1)
    assert {(b.source, b.index) for b in other["test"]} != {(b.source, b.index) for b in splits["test"]}
    # a source's split does not depend on the other sources
    only = C.split_blocks([b for b in blocks if b.source == "austen"], seed=0)
    for s in C.SPLITS:
        assert only[s] == [b for b in splits[s] if b.source == "austen"]


def test_interleave_mixes_sources(splits):
    val = C.interleave_blocks(splits["val"])
    assert sorted(val, key=lambda b: (b.source, b.index)) == sorted(splits["val"], key=lambda b: (b.source, b.index))
    assert {b.source for b in val[:3]} == set(C.SOURCE_NAMES)
    train = C.interleave_blocks(splits["train"])
    for source in C.SOURCE_NAMES:  # within a source the reading order is kept
        idx = [b.index for b in train if b.source == source]
        assert idx == sorted(idx)


def test_split_blocks_bad_input():
    with pytest.raises(CorpusError, match="blocks"):
        C.split_blocks([])
    with pytest.raises(CorpusError, match="blocks item"):
        C.split_blocks(["text"])


# ---------------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_and_eot(tok, docs):
    assert tok.get_vocab_size() == VOCAB
    assert C.eot_id(tok) == 0
    for d in docs:  # includes val/test text the tokenizer never saw
        ids = tok.encode(d.text).ids
        assert max(ids) < VOCAB
        assert tok.decode(ids) == d.text
    odd = "Zebra-\u00e9\u00e8 \u00a3 5\u2014\u4e2d\u6587 \U0001f600\ttab"
    assert tok.decode(tok.encode(odd).ids) == odd  # byte level: nothing is unknown
    assert tok.encode(C.EOT_TOKEN).ids == [0]


def test_tokenizer_training_is_deterministic(splits, tok):
    again = C.train_tokenizer([b.text for b in splits["train"]], VOCAB, progress=False)
    assert again.to_str() == tok.to_str()


@pytest.mark.parametrize("bad", [100, 70000, 4096.0])
def test_train_tokenizer_bad_vocab(bad):
    with pytest.raises(CorpusError, match="vocab_size"):
        C.train_tokenizer(["some text"], bad, progress=False)


def test_load_tokenizer(tmp_path, tok):
    path = tmp_path / "tok.json"
    tok.save(str(path))
    assert C.load_tokenizer(path).to_str() == tok.to_str()
    with pytest.raises(CorpusError, match="tokenizer path"):
        C.load_tokenizer(tmp_path / "missing.json")


def test_encode_blocks_inserts_eot_at_discontinuities(splits, tok):
    train = splits["train"]
    stream, per_source = C.encode_blocks(train, tok)
    assert stream.dtype == np.uint16 and stream.ndim == 1
    assert sum(per_source.values()) == stream.size
    breaks = 1 + sum(
        not (p.source == b.source and p.doc_index == b.doc_index and b.index == p.index + 1)
        for p, b in zip(train, train[1:])
    )
    assert int((stream == 0).sum()) == breaks
    assert stream[0] == 0
    pieces = tok.decode(stream.tolist(), skip_special_tokens=False).split(C.EOT_TOKEN)
    assert pieces[0] == "" and len(pieces) == breaks + 1
    assert "".join(pieces) == "".join(b.text for b in train)


# ---------------------------------------------------------------------------------- files


def test_build_corpus_writes_verified_files(built, splits):
    out, manifest = built
    saved = json.loads((out / "corpus" / "manifest.json").read_text())
    assert saved == manifest
    assert manifest["tokenizer"]["vocab_size"] == VOCAB
    assert manifest["settings"]["eot_id"] == 0
    # the tokenizer is trained on train only
    train_only = C.train_tokenizer([b.text for b in splits["train"]], VOCAB, progress=False)
    assert C.load_tokenizer(out / "tokenizer.json").to_str() == train_only.to_str()
    for name in C.SPLITS:
        arr = C.load_split(name, out)
        info = manifest["splits"][name]
        assert isinstance(arr, np.memmap) and arr.dtype == np.uint16 and arr.shape == (info["n_tokens"],)
        assert set(info["tokens_per_source"]) == set(C.SOURCE_NAMES)
        assert all(v > 0 for v in info["tokens_per_source"].values())
        assert sum(info["tokens_per_source"].values()) == info["n_tokens"]
        assert np.array_equal(C.load_split(name, out, mmap=False, verify=False), arr)
    # val and test interleave the sources: all appear early
    val = C.load_split("val", out)
    tok = C.load_tokenizer(out / "tokenizer.json")
    assert tok.decode(val[:50].tolist(), skip_special_tokens=False).startswith(C.EOT_TOKEN)


def test_build_corpus_is_reproducible(built, docs, tmp_path):
    out, manifest = built
    again = C.build_corpus(docs, tmp_path, vocab_size=VOCAB, block_chars=BLOCK_CHARS, seed=0, progress=False)
    assert again == manifest


def test_load_split_detects_tampering_and_bad_names(built, tmp_path):
    out, _ = built
    copy = tmp_path / "copy"
    (copy / "corpus").mkdir(parents=True)
    for f in (out / "corpus").iterdir():
        (copy / "corpus" / f.name).write_bytes(f.read_bytes())
    arr = np.load(copy / "corpus" / "val.npy")
    arr[3] ^= 1
    np.save(copy / "corpus" / "val.npy", arr)
    with pytest.raises(CorpusError, match="sha256"):
        C.load_split("val", copy)
    assert C.load_split("val", copy, verify=False)[3] == arr[3]
    (copy / "corpus" / "test.npy").unlink()
    with pytest.raises(CorpusError, match="missing"):
        C.load_split("test", copy)
    with pytest.raises(CorpusError, match="split") as e:
        C.load_split("validation", out)
    assert "'train', 'val', 'test'" in str(e.value)
    with pytest.raises(CorpusError, match="data_dir"):
        C.load_split("val", tmp_path / "nowhere")


# ---------------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def stream():
    return np.arange(1000, dtype=np.uint16) % 300


def test_get_batch_is_seeded_and_shifted(stream):
    x1, y1 = C.get_batch(stream, 4, 16, np.random.default_rng(7))
    x2, y2 = C.get_batch(stream, 4, 16, np.random.default_rng(7))
    x3, _ = C.get_batch(stream, 4, 16, np.random.default_rng(8))
    assert x1.dtype == torch.int64 and x1.shape == (4, 16) and y1.shape == (4, 16)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    for row_x, row_y in zip(x1, y1):
        s = int(np.flatnonzero(stream == row_x[0].item())[0])  # stream values are unique up to 300
        assert row_y.tolist() == stream[s + 1 : s + 17].astype(int).tolist()
    # the last possible window can be drawn without running past the end
    x, y = C.get_batch(np.arange(17, dtype=np.uint16), 8, 16, np.random.default_rng(0))
    assert torch.equal(x, torch.arange(16).repeat(8, 1)) and torch.equal(y, torch.arange(1, 17).repeat(8, 1))


@pytest.mark.parametrize(
    "args, field",
    [
        ((0, 16, np.random.default_rng(0)), "batch_size"),
        ((4, 0, np.random.default_rng(0)), "block_size"),
        ((4, 1000, np.random.default_rng(0)), "tokens"),
        ((4, 16, 0), "rng"),
        ((4, 16, np.random.RandomState(0)), "rng"),
    ],
)
def test_get_batch_bad_input(stream, args, field):
    with pytest.raises(CorpusError, match=field):
        C.get_batch(stream, *args)


def test_get_batch_rejects_non_token_arrays():
    with pytest.raises(CorpusError, match="tokens"):
        C.get_batch(np.zeros((4, 100), dtype=np.uint16), 2, 8, np.random.default_rng(0))
    with pytest.raises(CorpusError, match="tokens"):
        C.get_batch(np.zeros(100, dtype=np.float32), 2, 8, np.random.default_rng(0))
    with pytest.raises(CorpusError, match="tokens"):
        C.get_batch(list(range(100)), 2, 8, np.random.default_rng(0))


def test_iter_eval_windows_are_non_overlapping(stream):
    B = 64
    windows = list(C.iter_eval_windows(stream, B))
    n = (stream.size - 1) // B
    assert len(windows) == n == C.num_eval_windows(stream.size, B)
    xs = torch.cat([x for x, _ in windows], dim=1).flatten()
    ys = torch.cat([y for _, y in windows], dim=1).flatten()
    assert xs.tolist() == stream[: n * B].astype(int).tolist()
    assert ys.tolist() == stream[1 : n * B + 1].astype(int).tolist()
    assert all(x.shape == (1, B) and x.dtype == torch.int64 for x, _ in windows)
    # batched, capped and repeatable
    batched = list(C.iter_eval_windows(stream, B, max_tokens=5 * B + 10, batch_size=2))
    assert [x.shape[0] for x, _ in batched] == [2, 2, 1]
    assert torch.equal(torch.cat([x for x, _ in batched]), torch.cat([x for x, _ in windows[:5]]))
    again = list(C.iter_eval_windows(stream, B, max_tokens=5 * B + 10, batch_size=2))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batched, again))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"block_size": 0}, "block_size"),
        ({"block_size": 1000}, "tokens"),
        ({"max_tokens": 10}, "max_tokens"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_iter_eval_windows_bad_input_fails_at_call(stream, kwargs, field):
    args = {"block_size": 64} | kwargs
    with pytest.raises(CorpusError, match=field):
        C.iter_eval_windows(stream, **args)  # raises before iteration starts


# ---------------------------------------------------------------------------------- archive readers


def _rxdr_character_vector(values):
    out = b"X\n" + struct.pack(">iii", 2, 0x040201, 0x020300)
    out += struct.pack(">ii", 16, len(values))
    for v in values:
        if v is None:
            out += struct.pack(">ii", 9, -1)
        else:
            raw = v.encode("utf-8")
            out += struct.pack(">ii", 9 | (8 << 12), len(raw)) + raw
    return out


def test_r_reader_and_lazyload_blob():
    data = _rxdr_character_vector(["It is a truth", "", None, "\u00a3 5"])
    obj = RReader(data, "test").read()
    assert obj.kind == 16 and obj.values == ["It is a truth", "", None, "\u00a3 5"]
    blob = struct.pack(">I", len(data)) + zlib.compress(data)
    assert r_lazyload_blob(blob, "test") == data
    with pytest.raises(CorpusError, match="not R XDR"):
        RReader(b"RDX3\n", "test").read()


def _make_deb(path: Path, files: dict[str, bytes]) -> Path:
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:xz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    deb = b"!<arch>\n"
    for name, body in ((b"debian-binary", b"2.0\n"), (b"data.tar.xz", tar_buf.getvalue())):
        deb += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        deb += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(deb)
    return path


def test_deb_reader(tmp_path):
    path = _make_deb(tmp_path / "x.deb", {"usr/share/x/file.txt": b"hello", "usr/other": b"no"})
    assert deb_members(path, "usr/share/x/") == {"usr/share/x/file.txt": b"hello"}
    (tmp_path / "bad.deb").write_bytes(gzip.compress(b"no"))
    with pytest.raises(CorpusError, match="deb archive"):
        deb_members(tmp_path / "bad.deb", "usr/")


def _ztext(blocks: list[bytes], verses: list[tuple[int, int, int]]) -> dict[str, bytes]:
    bzz, bzs = b"", b""
    for block in blocks:
        comp = zlib.compress(block)
        bzs += struct.pack("<III", len(bzz), len(comp), len(block))
        bzz += comp
    bzv = b"".join(struct.pack("<IIH", b, start, size & 0xFFFF) for b, start, size in verses)
    return {"bzs": bzs, "bzz": bzz, "bzv": bzv}


def test_world_english_bible_reader_on_a_synthetic_module(tmp_path):
    head = b'<milestone type="x-importer" subType="x-osis2mod" n="$Rev: 1 $"/>'
    book = b'<div canonical="true" osisID="Gen" sID="g1" type="book"/> <title type="main">Genesis</title> '
    v1 = b'<chapter n="1" osisID="Gen.1" sID="Gen.1"/><w lemma="strong:H1">In</w> the beginning.'
    long_verse = b"And it was so. " * 4700  # 70,500 bytes: more than the 16-bit size field holds
    v3 = b"There was evening."
    stale = b"STALE OLD TEXT. "
    gen = book + v1 + long_verse + v3 + stale
    o_book, o_v1, o_long, o_v3 = 0, len(book), len(book) + len(v1), len(book) + len(v1) + len(long_verse)
    ot = _ztext(
        [head, gen],
        [(0, 0, 0), (0, 0, len(head)), (1, o_book, len(book)), (1, o_v1, len(v1)), (1, o_v1, len(v1)),  # linked
         (1, o_long, len(long_verse)), (1, 0, 0), (1, o_v3, len(v3))],
    )  # fmt: skip
    matt = b'<div canonical="true" osisID="Matt" sID="g2" type="book"/>The book of the genealogy.'
    nt = _ztext([head, matt], [(0, 0, 0), (0, 0, len(head)), (1, 0, len(matt))])
    prefix = "usr/share/sword/modules/texts/ztext/engWEB2015eb/"
    files = {prefix + f"{t}.{ext}": data for t, z in (("ot", ot), ("nt", nt)) for ext, data in z.items()}
    docs = C.extract_world_english_bible(_make_deb(tmp_path / "web.deb", files))
    assert [d.name for d in docs] == ["Gen", "Matt"]
    gen_text = docs[0].text
    assert gen_text.startswith("Genesis\n\nIn the beginning. And it was so.")
    assert gen_text.count("In the beginning.") == 1  # linked verse read once
    assert gen_text.count("And it was so.") == 4700  # overflowed size restored
    assert gen_text.endswith("There was evening.") and "STALE" not in gen_text
    assert docs[1].text == "The book of the genealogy."


# ---------------------------------------------------------------------------------- shipped data

DATA = C.default_data_dir()


@pytest.mark.skipif(not (DATA / "corpus" / "manifest.json").is_file(), reason="no shipped corpus")
def test_shipped_corpus_matches_manifest():
    manifest = C.load_manifest(DATA)
    assert manifest["settings"]["vocab_size"] == 4096
    assert [s["name"] for s in manifest["sources"]] == list(C.SOURCE_NAMES)
    for s in manifest["sources"]:
        spec = C.get_source(s["name"])
        assert s["archive_sha256"] == spec.archive_sha256 and s["version"] == spec.version
    tok = C.load_tokenizer(DATA / "tokenizer.json")
    assert tok.get_vocab_size() == 4096 and C.eot_id(tok) == manifest["settings"]["eot_id"]
    assert sha256_file(DATA / "tokenizer.json") == manifest["tokenizer"]["sha256"]
    for name in C.SPLITS:
        info = manifest["splits"][name]
        if not (DATA / info["path"]).is_file():
            assert name == "train", f"{name} must be shipped"
            continue
        arr = C.load_split(name, DATA)
        assert arr.shape == (info["n_tokens"],) and int(arr.max()) < 4096
        assert all(v > 0 for v in info["tokens_per_source"].values())
        assert isinstance(tok.decode(arr[:200].tolist()), str)
