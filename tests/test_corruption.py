"""The corruption matrix: every file kind of the embedded release, damaged in every way that
applies (truncation, a flipped bit, an attribute edit, deletion, duplicated or swapped rows), is
detected when the release is opened or when the file is first used, with the file named. Each
case works on its own copy of the release in a temporary directory (data/ is never modified).

A case that opened without an error would be a silent wrong answer: the matrix has none.
"""

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark import Benchmark
from benchmark.errors import HwlmError
from benchmark.paths import REPO_ROOT
from benchmark.release import MANIFEST_NAME, verify_release

DATA = REPO_ROOT / "data"
SURR = "surrogates/t"
MODEL = f"{SURR}/latency_ms@cpu-epyc-1c@decode-b1-s128-fp32.json"
SIDECAR = f"{SURR}/latency_ms@cpu-epyc-1c@decode-b1-s128-fp32.meta.json"
INDEX = f"{SURR}/index.json"
TABLE = "table_t.h5"
TOKENIZER = "tokenizer.json"
CHECKPOINT = "supernet_t.safetensors"
TOKENS = "corpus/test.npy"

pytestmark = pytest.mark.skipif(not (DATA / MANIFEST_NAME).exists(), reason="no embedded release")


# ---------------------------------------------------------------------------- damage
def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def flip_bit(p: Path, at: float = 0.5) -> None:
    data = bytearray(p.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    p.write_bytes(bytes(data))


def delete(p: Path) -> None:
    p.unlink()


def edit_json(fn):
    def edit(p: Path) -> None:
        obj = json.loads(p.read_text())
        fn(obj)
        p.write_text(json.dumps(obj, indent=2))
    return edit


def edit_h5(fn):
    def edit(p: Path) -> None:
        with h5py.File(p, "r+") as f:
            fn(f)
    return edit


def _modeled_device(f) -> str:
    return next(d for d, g in f["hardware"].items() if g.attrs["source"] == "modeled")


def unit_mj_to_kj(f) -> None:
    dev = _modeled_device(f)
    setting = next(iter(f["hardware"][dev]))
    f["hardware"][dev][setting]["energy_mj"].attrs["unit"] = "kJ"


def provenance_byte(f) -> None:
    g = f["hardware"][_modeled_device(f)]
    text = g.attrs["provenance"]
    i = next(i for i, c in enumerate(text) if c in "123456789")  # one digit of a parameter
    g.attrs["provenance"] = text[:i] + str(int(text[i]) - 1) + text[i + 1:]


def duplicate_id(f) -> None:
    ids = f["archs/id"]
    ids[1] = ids[0]


def swap_encodings(f) -> None:
    enc = f["archs/encoding"][()]
    enc[[0, 1]] = enc[[1, 0]]
    f["archs/encoding"][...] = enc


def swap_tokens(p: Path) -> None:
    arr = np.load(p, allow_pickle=False)
    i = int(np.flatnonzero(arr != arr[0])[0])
    arr[[0, i]] = arr[[i, 0]]
    with open(p, "wb") as fh:
        np.save(fh, arr)


def edit_safetensors_metadata(p: Path) -> None:
    data = p.read_bytes()
    i = data.index(b'"space":"t"') + len(b'"space":"')
    p.write_bytes(data[:i] + b"s" + data[i + 1:])


CASES = {  # kind -> {damage: (file, how)}
    "table": {"truncation": (TABLE, truncate), "bit flip": (TABLE, flip_bit), "deletion": (TABLE, delete),
              "unit mJ->kJ": (TABLE, edit_h5(unit_mj_to_kj)),
              "modeled provenance byte": (TABLE, edit_h5(provenance_byte)),
              "duplicated row": (TABLE, edit_h5(duplicate_id)), "swapped rows": (TABLE, edit_h5(swap_encodings))},
    "surrogates": {"truncation": (MODEL, truncate), "bit flip": (MODEL, flip_bit), "deletion": (MODEL, delete),
                   "attribute edit": (MODEL, edit_json(lambda m: m["learner"]["learner_model_param"].update(
                       base_score="[1E0]")))},
    "sidecars": {"truncation": (SIDECAR, truncate), "bit flip": (SIDECAR, flip_bit), "deletion": (SIDECAR, delete),
                 "widening": (SIDECAR, edit_json(lambda m: m["interval_calibration"].update(widening=0.0))),
                 "target_source": (SIDECAR, edit_json(lambda m: m.update(target_source="modeled")))},
    "index": {"truncation": (INDEX, truncate), "bit flip": (INDEX, flip_bit), "deletion": (INDEX, delete),
              "unit": (INDEX, edit_json(lambda m: m["models"][0].update(unit="kJ"))),
              "swapped models": (INDEX, edit_json(lambda m: m["models"].__setitem__(slice(0, 2), m["models"][1::-1])))},
    "manifest": {"truncation": (MANIFEST_NAME, truncate), "bit flip": (MANIFEST_NAME, flip_bit),
                 "size edit": (MANIFEST_NAME, edit_json(lambda m: m["files"][0].update(size=m["files"][0]["size"] + 1))),
                 "created edit": (MANIFEST_NAME, edit_json(lambda m: m.update(created="2020-01-01T00:00:00Z")))},
    "tokenizer": {"truncation": (TOKENIZER, truncate), "bit flip": (TOKENIZER, flip_bit),
                  "deletion": (TOKENIZER, delete),
                  "vocabulary edit": (TOKENIZER, edit_json(lambda m: m["model"]["vocab"].update({"hwlm": 7})))},
    "checkpoint": {"truncation": (CHECKPOINT, truncate), "bit flip": (CHECKPOINT, flip_bit),
                   "deletion": (CHECKPOINT, delete), "metadata edit": (CHECKPOINT, edit_safetensors_metadata)},
    "corpus tokens": {"truncation": (TOKENS, truncate), "bit flip": (TOKENS, flip_bit), "deletion": (TOKENS, delete),
                      "swapped tokens": (TOKENS, swap_tokens)},
}
MATRIX = [(kind, damage, *case) for kind, cases in CASES.items() for damage, case in cases.items()]


# ---------------------------------------------------------------------------- copies
@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One real copy of the embedded release; cases hard-link to it and copy only what they damage."""
    base = tmp_path_factory.mktemp("pristine") / "release"
    shutil.copytree(DATA, base)
    return base


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HWLM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hash-cache"))


def clone(base: Path, dst: Path, own: str | None) -> Path:
    """``dst``: hard links to ``base``'s files, except ``own``, a real copy (safe to damage)."""
    for src in base.rglob("*"):
        rel = src.relative_to(base)
        if src.is_dir():
            (dst / rel).mkdir(parents=True, exist_ok=True)
        elif rel.as_posix() == own:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
        else:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst / rel)
    return dst


def named(err: BaseException, rel: str) -> bool:
    return rel in str(err) or Path(rel).name in str(err)


# ---------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("kind, damage, rel, how", MATRIX, ids=[f"{k}: {d}" for k, d, *_ in MATRIX])
def test_damage_is_detected_on_open_with_the_file_named(pristine, tmp_path, kind, damage, rel, how):
    rel_copy = clone(pristine, tmp_path / "release", rel)
    how(rel_copy / rel)
    with pytest.raises(HwlmError) as e:
        Benchmark("t", rel_copy)
    assert named(e.value, rel), str(e.value)


@pytest.mark.parametrize("damage, how", [("bit flip", flip_bit), ("truncation", truncate),
                                         ("metadata edit", edit_safetensors_metadata)])
def test_a_damaged_checkpoint_is_refused_where_it_is_loaded(pristine, tmp_path, damage, how):
    from benchmark.supernet.elastic import CheckpointError, load_supernet

    rel_copy = clone(pristine, tmp_path / "release", CHECKPOINT)
    how(rel_copy / CHECKPOINT)
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT}.*sha256.*differs from its sha256 in .*{MANIFEST_NAME}"):
        load_supernet(rel_copy / CHECKPOINT, "t")
    with pytest.raises(CheckpointError, match="expected sha256"):  # outside a release: the table's pin
        pinned = tmp_path / "loose.safetensors"
        shutil.copy(DATA / CHECKPOINT, pinned)
        how(pinned)
        load_supernet(pinned, "t", sha256=verify_release(pristine)["files"][
            [f["path"] for f in verify_release(pristine)["files"]].index(CHECKPOINT)]["sha256"])


@pytest.mark.parametrize("damage, how", [("bit flip", flip_bit), ("swapped tokens", swap_tokens)])
def test_damaged_corpus_tokens_are_refused_where_they_are_loaded(pristine, tmp_path, damage, how):
    from benchmark.supernet.corpus import CorpusError, load_split

    rel_copy = clone(pristine, tmp_path / "release", TOKENS)
    how(rel_copy / TOKENS)
    with pytest.raises(CorpusError, match="test.npy"):
        load_split("test", rel_copy)


@pytest.mark.parametrize("damage, edit", [("duplicated row", duplicate_id), ("swapped rows", swap_encodings)])
def test_damaged_rows_of_a_working_copy_without_manifest_are_refused(pristine, tmp_path, damage, edit):
    """No manifest (a working copy): the rows' own check still refuses the table."""
    rel_copy = clone(pristine, tmp_path / "release", TABLE)
    (rel_copy / MANIFEST_NAME).unlink()
    edit_h5(edit)(rel_copy / TABLE)
    with pytest.raises(HwlmError, match=f"{TABLE}.*(appears 2 times|but its encoding is)"):
        Benchmark("t", rel_copy)


def test_the_embedded_release_needs_its_manifest(pristine, tmp_path, monkeypatch):
    rel_copy = clone(pristine, tmp_path / "release", None)
    (rel_copy / MANIFEST_NAME).unlink()
    monkeypatch.setenv("HWLM_DATA_DIR", str(rel_copy))
    with pytest.raises(HwlmError, match=f"no {MANIFEST_NAME}"):
        Benchmark("t")
    with pytest.raises(HwlmError, match=f"no {MANIFEST_NAME}"):  # m (no release of its own) borrows t's modeled devices
        Benchmark("m")


def test_a_file_added_to_the_release_but_not_listed_is_refused(pristine, tmp_path):
    rel_copy = clone(pristine, tmp_path / "release", None)
    extra = f"{SURR}/energy_mj@cpu-epyc-1c@decode-b1-s128-fp32.json"
    (rel_copy / extra).write_text("{}")
    with pytest.raises(HwlmError, match=f"{extra} is not listed in its {MANIFEST_NAME}"):
        Benchmark("t", rel_copy)


def test_the_undamaged_copy_opens_and_answers_like_the_embedded_release(pristine, tmp_path):
    """The control: the copies themselves are fine, and the matrix never touched the pristine one."""
    rel_copy = clone(pristine, tmp_path / "release", None)
    b, ref = Benchmark("t", rel_copy), Benchmark("t")
    assert b.manifest == verify_release(pristine) == verify_release(DATA)
    arch = b.table.ids[0]
    dev = "cpu-epyc-1c"
    np.testing.assert_equal(dict(b.query(arch, device=dev)), dict(ref.query(arch, device=dev)))
    assert Benchmark("t", rel_copy, verify=False).manifest is None


def test_without_verification_the_unit_edit_is_a_silent_wrong_answer(pristine, tmp_path):
    """Why the matrix matters: the same damaged copy opened with verify=False answers in kJ."""
    rel_copy = clone(pristine, tmp_path / "release", TABLE)
    edit_h5(unit_mj_to_kj)(rel_copy / TABLE)
    with pytest.raises(HwlmError, match=TABLE):
        Benchmark("t", rel_copy)
    with h5py.File(rel_copy / TABLE, "r") as f:
        dev = _modeled_device(f)
        setting = next(iter(f["hardware"][dev]))
    b = Benchmark("t", rel_copy, verify=False)
    r = b.query(b.table.ids[0], metrics=["energy_mj"], device=dev, setting=setting)
    assert r.units["energy_mj"] == "kJ" and r.sources["energy_mj"] == "modeled"
