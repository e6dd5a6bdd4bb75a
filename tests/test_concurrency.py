"""Concurrent processes on one file, with real processes: a second writer of a MOO results file
or a table is refused with one line naming the first one's process (no finished run is lost),
and readers running at the same time get identical answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.moo.runner import load_results

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
HWLM = [sys.executable, "-c", "import sys; from benchmark.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from benchmark.moo.synthetic import write_synthetic_release

    return write_synthetic_release(tmp_path_factory.mktemp("release"), n=200, seed=0, surrogates=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300.0) -> str:
    """The content of ``path`` once it exists and is not empty (``proc`` must still be running)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


# an algorithm that holds its run until the test creates the file `go` (so the second writer
# certainly starts while the first one is writing)
GATE = """
import time
from pathlib import Path

from benchmark.moo.algorithms import Algorithm


class Gate(Algorithm):
    name = "gate"

    def ask(self):
        while not Path("go").exists():
            time.sleep(0.05)
        return self.problem.sample(self.rng, 3)
"""


@pytest.mark.slow
def test_second_moo_writer_is_refused_and_no_run_is_lost(release, tmp_path):
    (tmp_path / "gate_algo.py").write_text(GATE)
    common = ["moo", "run", "--suite", "ppl-params", "--seeds", "2", "--budget", "6", "--workers", "1", "--quiet",
              "--release", str(release), "--out", "results.h5"]
    first = subprocess.Popen(HWLM + common + ["--algorithms", "gate_algo:Gate", "random"], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = wait_for(tmp_path / ".results.h5.lock", first)
    assert holder == str(first.pid)
    second = subprocess.run(HWLM + common + ["--algorithms", "random", "local"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True)
    assert first.poll() is None  # the first writer was still running when the second was refused
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert f"being written by another run (process {first.pid})" in second.stderr
    (tmp_path / "go").touch()
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    runs = load_results(tmp_path / "results.h5")["ppl-params"]["runs"]
    assert {a: sorted(r) for a, r in runs.items()} == {"gate_algo:Gate": [0, 1], "random": [0, 1]}
    # once the first is done, the second writer resumes the same file: every run of both is kept
    again = subprocess.run(HWLM + common + ["--algorithms", "random", "local"], cwd=tmp_path, env=ENV,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    runs2 = load_results(tmp_path / "results.h5")["ppl-params"]["runs"]
    assert {a: sorted(r) for a, r in runs2.items()} == {"gate_algo:Gate": [0, 1], "random": [0, 1], "local": [0, 1]}
    assert runs2["random"][0]["ids"] == runs["random"][0]["ids"]  # skipped, not rerun
    assert sorted(os.listdir(tmp_path)) == ["gate_algo.py", "go", "results.h5"]  # no lock or temporary left


HOLD_TABLE = """
import sys
from benchmark.table import TableWriter
w = TableWriter(sys.argv[1], "t")
print("holding", flush=True)
sys.stdin.readline()
w.close()
"""


@pytest.mark.slow
def test_second_table_writer_is_refused_in_one_line(release, tmp_path):
    import shutil

    table = tmp_path / "table_t.h5"
    shutil.copy(release / "table_t.h5", table)
    before = table.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_TABLE, str(table)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        r = subprocess.run(HWLM + ["table", "merge", str(table), str(release / "table_t.h5")], env=ENV,
                           capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert f"another writer (process {holder.pid})" in r.stderr
        assert table.read_bytes() == before
    finally:
        holder.communicate("\n", timeout=120)
    assert holder.returncode == 0


READER = """
import sys, time
from pathlib import Path
import numpy as np
from benchmark import Benchmark
release, out, go = sys.argv[1:4]
b = Benchmark("t", path=release)
enc = np.load(Path(out).with_name("archs.npy"))
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.01)
r = b.query_batch(enc, metrics=["perplexity", "latency_ms", "params"], device="cpu-test", as_frame=False)
np.savez(out, **{m: r[m] for m in ("perplexity", "latency_ms", "params")})
"""


@pytest.mark.slow
def test_eight_concurrent_readers_give_identical_answers(release, tmp_path):
    from benchmark import Benchmark
    from benchmark.spaces import get_space

    b = Benchmark("t", path=release)
    table_rows = b.table.encodings[:100].astype(np.int64)
    enc = np.vstack([table_rows, get_space("t").encode_many(get_space("t").sample(5, n=100))])  # table + surrogate
    np.save(tmp_path / "archs.npy", enc)
    go = tmp_path / "go"
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(release), str(tmp_path / f"r{i}.npz"), str(go)],
                                env=ENV, stdout=subprocess.PIPE, text=True) for i in range(8)]
    for p in readers:  # all eight have opened the release before any queries
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    for p in readers:
        p.communicate(timeout=600)
        assert p.returncode == 0
    want = b.query_batch(enc, metrics=["perplexity", "latency_ms", "params"], device="cpu-test", as_frame=False)
    for i in range(8):
        got = np.load(tmp_path / f"r{i}.npz")
        for m in ("perplexity", "latency_ms", "params"):
            assert np.array_equal(got[m], want[m]), (i, m)
    assert np.isfinite(want["perplexity"]).all() and (b.inputs.rows_of_encodings(enc.astype(np.int8)) >= 0).sum() == 100
