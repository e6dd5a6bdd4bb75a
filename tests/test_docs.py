"""Every ```python and ```bash block of README.md and docs/*.md runs against the embedded release.

Blocks are collected from the markdown at test time, so a renamed device, metric or command fails
here. The blocks of one file run in order, in one temporary directory per file (``data`` there is
a copy of the embedded release, so ``data/table_t.h5`` works as from a clone); Python blocks run in
a fresh interpreter each, shell blocks with ``bash -euo pipefail``, ``>>>`` blocks as doctests.

Markers, an HTML comment on the line right before the fence (invisible when rendered, visible in
the source):

* ``<!-- docs-test: skip: REASON -->`` — the block does not run here (hours of work, a network or
  a GPU); fewer than half of the blocks, the reason says why;
* ``<!-- docs-test: file NAME -->`` — the block is written to ``NAME`` in the directory instead of
  run (a module that later blocks import or pass to ``hwlm``).
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|file)\s*:?\s*(.*?)\s*-->\s*$")
LANGS = ("python", "bash")


def collect(path: Path) -> list[dict]:
    """The python and bash blocks of ``path`` with their line, language, code and marker."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        lang = m.group(1)
        if lang not in LANGS:
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mk = MARKER.search(before)
        out.append({"file": path, "line": text[:m.start()].count("\n") + 1, "lang": lang, "code": m.group(2),
                    "marker": mk.group(1) if mk else None, "arg": mk.group(2) if mk else ""})
    return out


BLOCKS = [b for p in DOCS for b in collect(p)]


def test_blocks_collected_and_markers_have_reasons():
    assert len(BLOCKS) >= 20, "the collector no longer finds the docs' examples"
    for b in BLOCKS:
        if b["marker"] == "skip":
            assert len(b["arg"]) >= 10, f"{b['file'].name}:{b['line']}: a skip marker needs a reason"
        if b["marker"] == "file":
            assert re.fullmatch(r"[\w.-]+", b["arg"]), f"{b['file'].name}:{b['line']}: invalid file name {b['arg']!r}"
    skipped = [b for b in BLOCKS if b["marker"] == "skip"]
    assert 2 * len(skipped) < len(BLOCKS), "most examples must run: too many skip markers"


def test_every_fence_names_its_language():
    """A block without a language would be neither run nor marked skipped: commands there could go
    stale unseen. Blocks that are not code say so (```text: a synopsis, a tool's parameters, output)."""
    unlabelled = []
    for path in DOCS:
        inside = False
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                if not inside and line.strip() == "```":
                    unlabelled.append(f"{path.relative_to(ROOT)}:{i}")
                inside = not inside
    assert not unlabelled, f"fences without a language: {unlabelled}"


@pytest.fixture(scope="session")
def doc_dirs(tmp_path_factory):
    dirs: dict[Path, Path] = {}

    def get(path: Path) -> Path:
        if path not in dirs:
            d = tmp_path_factory.mktemp(path.stem.replace(".", "-"))
            # a copy: an example that writes into data/ must not touch the embedded release
            shutil.copytree(ROOT / "data", d / "data")
            dirs[path] = d
        return dirs[path]

    return get


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("MPLBACKEND", "Agg")
    env["HF_HUB_OFFLINE"] = "1"  # nothing may reach the network
    return env


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b['file'].name}:{b['line']}" for b in BLOCKS])
def test_doc_block(block, doc_dirs):
    where = f"{block['file'].relative_to(ROOT)}:{block['line']}"
    if block["marker"] == "skip":
        pytest.skip(f"{where}: {block['arg']}")
    cwd = doc_dirs(block["file"])
    if block["marker"] == "file":
        (cwd / block["arg"]).write_text(block["code"])
        return
    code = block["code"]
    if block["lang"] == "python" and code.lstrip().startswith(">>>"):
        old = os.getcwd()
        os.chdir(cwd)
        try:
            test = doctest.DocTestParser().get_doctest(code, {}, where, str(block["file"]), block["line"])
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            runner.run(test)
        finally:
            os.chdir(old)
        assert runner.failures == 0, f"{where}: doctest failed"
        return
    cmd = [sys.executable, "-c", code] if block["lang"] == "python" else ["bash", "-euo", "pipefail", "-c", code]
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{where} failed (exit {r.returncode}):\n{code}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
