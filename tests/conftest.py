"""Shared fixtures: a tiny real corpus built from the shipped text slice; a private user cache."""

from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent / "data" / "corpus_sample.txt"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A data directory (tokenizer.json + corpus/{train,val,test}.npy + manifest) built from
    tests/data/corpus_sample.txt with a 300-token BPE."""
    from benchmark.supernet import corpus as C

    out = tmp_path_factory.mktemp("tiny_corpus")
    C.build_corpus(C.load_documents(SAMPLE), out, vocab_size=300, block_chars=1000, seed=0, progress=False)
    return out


@pytest.fixture(autouse=True, scope="session")
def private_user_cache(tmp_path_factory):
    """Tests never write the user's cache (``~/.cache/hwlm-bench``): opening a release records
    hashes and table states in a temporary one (subprocesses inherit it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HWLM_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))
    yield
    mp.undo()


def pytest_terminal_summary(terminalreporter):
    """How many cases the error-contract suite generated (docs/reliability.md quotes them)."""
    from strategies import CONTRACT_CASES, CONTRACT_EXAMPLES

    if CONTRACT_EXAMPLES:
        terminalreporter.write_line(f"error contract: {sum(CONTRACT_EXAMPLES.values()):,} generated cases in "
                                    f"{len(CONTRACT_EXAMPLES)} property tests ("
                                    + ", ".join(f"{k} {v:,}" for k, v in sorted(CONTRACT_EXAMPLES.items())) + ")")
    if CONTRACT_CASES:
        terminalreporter.write_line(f"error contract: {sum(CONTRACT_CASES.values()):,} calls checked "
                                    + ", ".join(f"{k} {v:,}" for k, v in sorted(CONTRACT_CASES.items())))
