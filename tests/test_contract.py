"""The error contract, property-based: every public entry point that takes user input either
answers correctly (checked against an oracle written here, independently of the package) or
raises the package's documented error, an HwlmError naming the field — never another exception.

Entry points: architecture ids, HW-GPT-Bench dicts, encodings, encoding matrices, seeds and
sample sizes, ``Benchmark.query`` / ``query_batch`` keyword arguments, and ``hwlm`` argument
vectors. Hypothesis runs derandomized (the same cases every run); the generated cases (per test)
and the calls checked (per entry point: a case may call several) are counted and printed at the
end of the test session (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from benchmark.errors import HwlmError
from benchmark.paths import data_dir
from benchmark.settings import resolve_setting
from benchmark.spaces import SPACES, Architecture, concatenated_id, get_space
from strategies import CONTRACT_CASES, CONTRACT_EXAMPLES, architectures

SPACE_NAMES = sorted(SPACES)
T = get_space("t")


def fuzz(n: int):
    """Deterministic hypothesis settings for ``n`` cases (no deadline: the machine is shared); each
    generated case is counted under the test's name (CONTRACT_EXAMPLES, printed at the end)."""
    config = settings(max_examples=n, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.function_scoped_fixture])

    def counted(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            CONTRACT_EXAMPLES[test.__name__] += 1
            return test(*args, **kwargs)

        return config(run)

    return counted


def outcome(entry: str, call, fields: tuple[str, ...]):
    """Run ``call``; return its value, or None when it raised an HwlmError whose message says
    ``invalid <field>`` for one of ``fields`` and what is allowed. Any other exception fails."""
    CONTRACT_CASES[entry] += 1
    try:
        return call(), None
    except HwlmError as e:
        msg = str(e)
        assert any(f"invalid {f}" in msg for f in fields), f"{entry}: message names none of {fields}: {msg}"
        assert "allowed" in msg and "\n" not in msg and len(msg) < 2000, msg
        return None, e


# ---------------------------------------------------------------------------- oracles (independent)
def closed_form_params(space: str, embed: int, n_head, mlp_ratio, bias: bool) -> int:
    """Parameters of the dense GPT: tied embedding, per layer two LayerNorms, qkv and output
    projections of width n_head * head_size, a 2-layer MLP; a final LayerNorm."""
    sp = SPACES[space]
    total = sp.vocab_size * embed + 2 * embed
    for h, m in zip(n_head, mlp_ratio):
        width, hidden = h * sp.head_size, m * embed
        total += 4 * embed                                    # two LayerNorms
        total += embed * 3 * width + width * embed            # qkv, proj
        total += embed * hidden + hidden * embed              # fc, fc-proj
        if bias:
            total += 3 * width + embed + hidden + embed
    return total


def is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def decode_oracle(space: str, values) -> tuple | None:
    """(embed, n_layer, n_head, mlp_ratio, bias) of a flat list of choice indices, or None."""
    sp = SPACES[space]
    lm = max(sp.n_layer_choices)
    if len(values) != 3 + 2 * lm or not all(is_int(v) for v in values):
        return None

    def pick(i, choices):
        return choices[i] if 0 <= i < len(choices) else None

    embed, n = pick(values[0], sp.embed_dim_choices), pick(values[1], sp.n_layer_choices)
    bias = pick(values[-1], sp.bias_choices)
    if embed is None or n is None or bias is None:
        return None
    mlps = [pick(v, sp.mlp_ratio_choices) for v in values[2:2 + n]]
    heads = [pick(v, sp.n_head_choices) for v in values[2 + lm:2 + lm + n]]
    pads = values[2 + n:2 + lm] + values[2 + lm + n:2 + 2 * lm]
    if None in mlps or None in heads or any(v != -1 for v in pads):
        return None
    return embed, n, tuple(heads), tuple(mlps), bias


def dict_oracle(space: str, d) -> tuple | None:
    """What from_hwgpt_dict must accept: HW-GPT-Bench's keys, ints (not bools) among the choices,
    per-layer lists/tuples at least n_layer long, bias True/False or "True"/"False"."""
    sp = SPACES[space]
    keys = ("sample_embed_dim", "sample_n_layer", "sample_mlp_ratio", "sample_n_head", "sample_bias")
    if not isinstance(d, dict) or any(k not in d for k in keys):
        return None
    n, embed = d["sample_n_layer"], d["sample_embed_dim"]
    if not is_int(n) or n not in sp.n_layer_choices or not is_int(embed) or embed not in sp.embed_dim_choices:
        return None
    per_layer = []
    for k, choices in (("sample_n_head", sp.n_head_choices), ("sample_mlp_ratio", sp.mlp_ratio_choices)):
        v = d[k]
        if not isinstance(v, (list, tuple)) or len(v) < n:
            return None
        if not all(is_int(x) and x in choices for x in v[:n]):
            return None
        per_layer.append(tuple(v[:n]))
    bias = {True: True, False: False, "True": True, "False": False}.get(d["sample_bias"]) \
        if isinstance(d["sample_bias"], (bool, str)) else None
    if bias is None:
        return None
    return embed, n, per_layer[0], per_layer[1], bias


def fields_of(a: Architecture) -> tuple:
    return a.embed_dim, a.n_layer, a.n_head, a.mlp_ratio, a.bias


# ---------------------------------------------------------------------------- strategies
huge_int = st.just(5000).map(lambda digits: 10 ** digits)  # beyond Python's int<->str limit (4300 digits)
junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                 st.text(max_size=12), st.binary(max_size=4), st.lists(st.integers(-2, 20), max_size=4),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), huge_int,
                 st.tuples(st.integers(0, 3)), st.just(np.int64(3)), st.just(np.array([1, 2])))


@st.composite
def id_strings(draw):
    """Ids of valid architectures, mutated ones, and arbitrary text (ids are derived from the space)."""
    a = draw(architectures())
    kind = draw(st.sampled_from(["valid", "char", "segment", "text", "huge", "case", "space"]))
    s = a.id
    if kind == "char":
        i = draw(st.integers(0, len(s) - 1))
        s = s[:i] + draw(st.sampled_from("0123456789-abTF ")) + s[i + 1:]
    elif kind == "segment":
        parts = s.split("-")
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = draw(st.one_of(st.text("0123456789", min_size=1, max_size=8), st.sampled_from(["", "True", "x"])))
        s = "-".join(parts)
    elif kind == "text":
        s = draw(st.text(max_size=40))
    elif kind == "huge":
        parts = s.split("-")
        parts[draw(st.integers(2, len(parts) - 2))] = "9" * draw(st.integers(4400, 6000))
        s = "-".join(parts)
    elif kind == "case":
        s = s.upper()
    elif kind == "space":
        s = s.replace(f"gpt-{a.space}-", f"gpt-{draw(st.sampled_from(SPACE_NAMES + ['x', '']))}-", 1)
    return a, s


@given(id_strings())
@fuzz(2600)
def test_ids_round_trip_or_refused(case):
    a, s = case
    fields = ("architecture id", "n_layer", "embed_dim", "n_head", "mlp_ratio", "space", "bias",
              "number of dash-separated fields")
    got, _ = outcome("Architecture.from_id", lambda: Architecture.from_id(s), fields)
    if s == a.id:
        assert got == a
    if got is not None:
        # one architecture, two spellings: the canonical id, or the older concatenated one
        assert s in (got.id, concatenated_id(got))
        assert got == SPACES[got.space].decode(got.encoding())
    got2, _ = outcome("SearchSpace.validate(id)", lambda: get_space(a.space).validate(s), fields)
    assert got2 == (got if got is not None and got.space == a.space else None)


@given(junk)
@fuzz(500)
def test_non_string_ids_refused(value):
    got, _ = outcome("Architecture.from_id", lambda: Architecture.from_id(value), ("architecture id",))
    assert got is None


@st.composite
def hwgpt_dicts(draw):
    a = draw(architectures())
    d = a.to_hwgpt_dict()
    sp = SPACES[a.space]
    if draw(st.booleans()):  # HW-GPT-Bench pads per-layer lists to the space's maximum
        extra = sp.max_layers - a.n_layer
        d["sample_n_head"] += [sp.n_head_choices[0]] * extra
        d["sample_mlp_ratio"] += [sp.mlp_ratio_choices[0]] * extra
    if draw(st.booleans()):
        d["sample_bias"] = a.bias
    kind = draw(st.sampled_from(["valid", "value", "element", "drop", "extra", "whole", "tuple"]))
    if kind == "value":
        d[draw(st.sampled_from(sorted(d)))] = draw(junk)
    elif kind == "element":
        k = draw(st.sampled_from(["sample_n_head", "sample_mlp_ratio"]))
        i = draw(st.integers(0, len(d[k]) - 1))
        d[k] = d[k][:i] + [draw(junk)] + d[k][i + 1:]
    elif kind == "drop":
        del d[draw(st.sampled_from(sorted(d)))]
    elif kind == "extra":  # keys of mixed types next to the real ones
        d[draw(st.one_of(st.integers(), st.none(), st.tuples(st.integers())))] = draw(junk)
        if draw(st.booleans()):
            del d[draw(st.sampled_from(["sample_n_layer", "sample_bias"]))]
    elif kind == "tuple":
        d["sample_n_head"] = tuple(d["sample_n_head"])
    elif kind == "whole":
        d = draw(st.one_of(junk, st.dictionaries(st.one_of(st.integers(), st.text(max_size=3)), junk, max_size=3)))
    return a, d


@given(hwgpt_dicts())
@fuzz(1800)
def test_hwgpt_dicts_match_the_oracle(case):
    a, d = case
    sp = SPACES[a.space]
    got, _ = outcome("SearchSpace.from_hwgpt_dict", lambda: sp.from_hwgpt_dict(d),
                     ("HW-GPT-Bench dict", "sample_n_layer", "sample_mlp_ratio", "sample_n_head", "sample_bias",
                      "embed_dim", "n_head", "mlp_ratio", "bias"))
    expected = dict_oracle(a.space, d)
    assert (None if got is None else fields_of(got)) == expected
    if got is not None:
        assert sp.from_hwgpt_dict(got.to_hwgpt_dict()) == got


@st.composite
def encodings(draw):
    a = draw(architectures())
    sp = SPACES[a.space]
    enc = a.encoding().tolist()
    kind = draw(st.sampled_from(["valid", "array", "index", "ints", "bool", "float", "nested", "length", "huge",
                                 "junk"]))
    if kind == "array":
        return a, a.encoding().astype(draw(st.sampled_from([np.int8, np.int64, np.uint8, np.float32, np.bool_])))
    if kind == "index":
        enc[draw(st.integers(0, len(enc) - 1))] = draw(st.integers(-3, 5))
    elif kind == "ints":
        enc = draw(st.lists(st.integers(-1, 3), min_size=sp.encoding_length, max_size=sp.encoding_length))
    elif kind == "bool":
        i = draw(st.integers(0, len(enc) - 1))
        enc[i] = bool(enc[i]) if enc[i] in (0, 1) else True
    elif kind == "float":
        enc[draw(st.integers(0, len(enc) - 1))] = draw(st.floats())
    elif kind == "nested":
        i = draw(st.integers(0, len(enc) - 1))
        enc[i] = [enc[i]] * draw(st.integers(0, 2))
    elif kind == "length":
        enc = enc[:draw(st.integers(0, len(enc) - 1))] if draw(st.booleans()) else enc + [0]
    elif kind == "huge":
        enc[draw(st.integers(0, len(enc) - 1))] = draw(st.one_of(st.sampled_from([2**63, -2**70]), huge_int))
    elif kind == "junk":
        enc = draw(junk)
    return a, enc


@given(encodings())
@fuzz(2200)
def test_encodings_decode_or_refused(case):
    a, enc = case
    sp = SPACES[a.space]
    got, _ = outcome("SearchSpace.decode", lambda: sp.decode(enc),
                     ("encoding", "embed_dim index", "n_layer index", "mlp_ratio[", "n_head[", "bias index"))
    if isinstance(enc, np.ndarray):
        expected = decode_oracle(a.space, enc.tolist()) if enc.dtype.kind in "iu" else None
    else:
        expected = decode_oracle(a.space, list(enc)) if isinstance(enc, list) else None
    assert (None if got is None else fields_of(got)) == expected
    if got is not None:
        assert got.encoding().tolist() == (enc.tolist() if isinstance(enc, np.ndarray) else enc)


@given(st.one_of(st.integers(0, 2**70), st.integers(-2**70, -1), junk,
                 st.just(np.random.default_rng(0))),
       st.one_of(st.none(), st.integers(-3, 6), junk.filter(lambda v: not (is_int(v) and v > 6))))
@fuzz(1000)
def test_sample_seed_and_n(seed, n):
    got, _ = outcome("SearchSpace.sample", lambda: T.sample(seed, n=n), ("seed", "n"))
    seed_ok = isinstance(seed, np.random.Generator) or is_int(seed) and seed >= 0
    n_ok = n is None or is_int(n) and n >= 0
    assert (got is not None) == (seed_ok and n_ok)
    if got is not None and not isinstance(seed, np.random.Generator):
        assert got == T.sample(seed, n=n)  # seeded: the same answer again
        for x in ([got] if n is None else got):
            assert T.decode(x.encoding()) == x


# ---------------------------------------------------------------------------- queries
needs_release = pytest.mark.skipif(not (data_dir() / "table_t.h5").exists(), reason="no embedded table")


@pytest.fixture(scope="module")
def bench():
    from benchmark import Benchmark

    return Benchmark("t")


@pytest.fixture(scope="module")
def table_columns(bench):
    """The embedded table read with h5py directly: id -> row, perplexity, a device's latency repeats."""
    dev = next(d for d, i in bench.devices().items() if i["source"] == "measured")
    setting = bench.settings(dev)[0]
    with h5py.File(bench.path / "table_t.h5", "r") as f:
        ids = [x.decode() if isinstance(x, bytes) else x for x in f["archs/id"][()]]
        return {"row": {a: i for i, a in enumerate(ids)}, "ids": ids, "encodings": f["archs/encoding"][()],
                "perplexity": f["metrics/perplexity"][()], "device": dev, "setting": setting,
                "latency": f[f"hardware/{dev}/{setting}/latency_ms"][()]}


METRIC_NAMES = ("energy_mj", "flops", "latency_ms", "memory_mb", "params", "params_no_embedding", "perplexity",
                "token_accuracy")
QUERY_FIELDS = {"metrics": "metric", "device": "device", "setting": "setting", "mode": "mode", "noise": "noise",
                "seed": "seed", "intervals": "intervals", "repeats": "repeats"}


@st.composite
def query_kwargs(draw, cols):
    """A valid query (table or sampled architecture; exact, table and device metrics), or the same
    with exactly one keyword argument replaced by junk (the error must name that argument)."""
    dev, setting = cols["device"], cols["setting"]
    kw = {"metrics": draw(st.sampled_from([["perplexity", "params"], ["params"], ["latency_ms", "params"],
                                           ["perplexity", "latency_ms", "params"]]))}
    if "latency_ms" in kw["metrics"]:
        kw["device"], kw["setting"] = dev, draw(st.sampled_from([setting, None]))
    kw["noise"] = draw(st.booleans())
    kw["seed"] = draw(st.one_of(st.none(), st.integers(0, 2**40)))
    kw["intervals"] = draw(st.booleans())
    kw["repeats"] = draw(st.booleans())
    bad = draw(st.sampled_from([None, None, None] + sorted(QUERY_FIELDS)))
    if bad is not None:
        kw[bad] = draw({
            "metrics": st.one_of(st.text(max_size=6), st.lists(st.one_of(st.text(max_size=4), st.integers()),
                                                                 min_size=1, max_size=2), st.integers()).filter(
                lambda v: not (v in METRIC_NAMES if isinstance(v, str) else isinstance(v, list) and any(
                    x in METRIC_NAMES for x in v))),
            "device": st.one_of(st.text(max_size=6), st.integers(), st.lists(st.integers(), max_size=1)),
            "setting": st.one_of(st.text(max_size=6), st.integers(), st.lists(st.integers(), max_size=1)),
            "mode": st.one_of(st.text(max_size=6).filter(lambda v: v not in ("auto", "table")), st.integers(),
                              st.none()),
            "noise": st.one_of(st.integers(), st.text(max_size=3), st.none()),
            "seed": st.one_of(st.integers(-2**40, -1), st.floats(), st.booleans(), st.text(max_size=3)),
            "intervals": st.one_of(st.integers(), st.text(max_size=3), st.none()),
            "repeats": st.one_of(st.integers(), st.text(max_size=3), st.none()),
        }[bad].filter(lambda v: not (bad == "setting" and v is None)))
        if bad == "setting" and "device" not in kw:
            kw["device"] = dev
    in_table = draw(st.booleans())
    arch = cols["ids"][draw(st.integers(0, len(cols["ids"]) - 1))] if in_table else draw(architectures("t"))
    form = draw(st.sampled_from(["id", "dict", "encoding", "arch"]))
    a = arch if isinstance(arch, Architecture) else Architecture.from_id(arch)
    value = {"id": a.id, "dict": a.to_hwgpt_dict(), "encoding": a.encoding(), "arch": a}[form]
    return a, value, kw, bad


def check_values(a: Architecture, values: dict, kw: dict, cols: dict) -> None:
    """Exact metrics against the closed form; table values against the h5py read."""
    if "params" in values:
        assert values["params"] == closed_form_params("t", a.embed_dim, a.n_head, a.mlp_ratio, a.bias)
    row = cols["row"].get(a.id)
    if row is None:
        return
    if "perplexity" in values:
        assert values["perplexity"] == cols["perplexity"][row]
    if "latency_ms" in values and not kw.get("noise"):
        assert values["latency_ms"] == pytest.approx(float(np.nanmedian(cols["latency"][row])), rel=1e-12)
    if "latency_ms" in values and kw.get("noise"):
        assert values["latency_ms"] in cols["latency"][row]


@needs_release
@given(st.data())
@fuzz(700)
def test_query_keyword_arguments(bench, table_columns, data):
    a, value, kw, bad = data.draw(query_kwargs(table_columns))
    fields = (QUERY_FIELDS[bad],) if bad else tuple(QUERY_FIELDS.values()) + ("metrics",)
    if bad == "metrics":
        fields = ("metric", "metrics")
    if bad == "setting":
        fields = ("setting",)
    r, err = outcome("Benchmark.query", lambda: bench.query(value, **kw), fields)
    if bad is not None:
        assert err is not None, (bad, kw)
        return
    assert r is not None and r.arch == a.id
    check_values(a, dict(r.value), kw, table_columns)


@st.composite
def encoding_matrices(draw):
    rows = draw(st.lists(architectures("t"), min_size=0, max_size=6))
    enc = np.array([r.encoding() for r in rows], np.int64).reshape(len(rows), T.encoding_length)
    kind = draw(st.sampled_from(["valid", "valid", "table", "cell", "random", "dtype", "width", "ndim", "ragged"]))
    if kind == "table":
        return rows, "table"
    if kind == "cell" and len(rows):
        enc[draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, T.encoding_length - 1))] = \
            draw(st.sampled_from([-2, 3, 4, 127, 200, 2**40, -2**40]))
    elif kind == "random":
        enc = np.array(draw(st.lists(st.lists(st.integers(-1, 2), min_size=T.encoding_length,
                                              max_size=T.encoding_length), min_size=1, max_size=4)), np.int64)
    elif kind == "dtype":
        enc = enc.astype(draw(st.sampled_from([np.float64, np.bool_, object, np.str_])))
    elif kind == "width":
        enc = enc[:, :draw(st.integers(0, T.encoding_length - 1))]
    elif kind == "ndim":
        enc = enc.reshape(-1) if draw(st.booleans()) else enc[None]
    elif kind == "ragged":
        return rows, [r.encoding().tolist() for r in rows] + [[0, 1]]
    return rows, enc


@needs_release
@given(encoding_matrices(), st.sampled_from([True, False]))
@fuzz(900)
def test_encoding_matrices(bench, table_columns, case, as_frame):
    rows, enc = case
    if isinstance(enc, str):  # rows of the table, by their stored encodings
        idx = np.arange(0, len(table_columns["ids"]), 97)
        enc = table_columns["encodings"][idx].astype(np.int64)
    metrics = ["params", "perplexity"]
    r, err = outcome("Benchmark.query_batch", lambda: bench.query_batch(enc, metrics=metrics, as_frame=as_frame),
                     ("encoding", "archs", "architecture", "embed_dim index", "n_layer index", "mlp_ratio[", "n_head[", "bias index",
                      "encoding row", "encoding width", "encoding dtype", "encoding layer"))
    if isinstance(enc, list):
        valid = [decode_oracle("t", e) for e in enc]
        ok = all(v is not None for v in valid)
    elif isinstance(enc, np.ndarray) and enc.size == 0 and enc.ndim == 1:
        ok, valid = True, []  # an empty sequence of architectures
    elif isinstance(enc, np.ndarray) and enc.ndim == 2 and enc.dtype.kind in "iu" and enc.shape[1] == T.encoding_length:
        valid = [decode_oracle("t", e) for e in enc.tolist()]
        ok = all(v is not None for v in valid)
    else:
        ok, valid = False, []
    assert (err is None) == ok, (enc, err)
    if r is None:
        return
    params, ppl = np.asarray(r["params"]), np.asarray(r["perplexity"])
    for i, v in enumerate(valid):
        embed, n, heads, mlps, bias = v
        assert params[i] == closed_form_params("t", embed, heads, mlps, bias)
        a = Architecture("t", embed, n, heads, mlps, bias)
        row = table_columns["row"].get(a.id)
        if row is not None:
            assert ppl[i] == table_columns["perplexity"][row]
        else:
            assert math.isfinite(ppl[i])  # the surrogate's prediction


# ---------------------------------------------------------------------------- command line
SAMPLE_ARGS = {
    "--space": st.one_of(st.sampled_from(SPACE_NAMES), st.text("abcstx", min_size=1, max_size=3)),
    "-n": st.one_of(st.integers(-2, 4).map(str), st.sampled_from(["x", "1.5", "", "0x3"])),
    "--seed": st.one_of(st.integers(-3, 2**40).map(str), st.sampled_from(["-0", "a", "1e3", ""])),
    "--batch": st.one_of(st.integers(-1, 8).map(str), st.sampled_from(["b", "2.0"])),
    "--seq-len": st.one_of(st.integers(-1, 1100).map(str), st.sampled_from(["z"])),
}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from benchmark.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own refusals
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def _int_or_none(s: str):
    try:
        return int(s, 10)
    except ValueError:
        return None


@given(st.fixed_dictionaries({}, optional=SAMPLE_ARGS))
@fuzz(500)
def test_cli_sample_argument_vectors(opts):
    argv = ["sample"] + [x for k, v in opts.items() for x in (k, v)]
    CONTRACT_CASES["hwlm sample"] += 1
    rc, out, err = run_cli(argv)
    space = opts.get("--space", "t")
    n, seed, batch = (_int_or_none(opts.get(k, d)) for k, d in (("-n", "5"), ("--seed", "0"), ("--batch", "1")))
    seq = _int_or_none(opts["--seq-len"]) if "--seq-len" in opts else None
    sp = SPACES.get(space)
    valid = (sp is not None and n is not None and n >= 1 and seed is not None and seed >= 0 and batch is not None
             and batch >= 1 and ("--seq-len" not in opts or seq is not None and 1 <= seq <= sp.block_size))
    assert "Traceback" not in err
    if not valid:
        assert rc == 2, (argv, rc, out, err)
        last = err.strip().splitlines()[-1]
        assert "invalid" in last and ("allowed" in last or "argument" in last), err
        named = {"--space": "space", "-n": "-n", "--seed": "seed", "--batch": "batch", "--seq-len": "seq"}
        assert any(name in last for name in named.values()), err
        return
    assert rc == 0, (argv, err)
    lines = out.strip().splitlines()[2:]
    archs = sp.sample(seed, n=n)
    assert len(lines) == n
    for line, a in zip(lines, archs):
        aid, params = line.split()[:2]
        assert aid == a.id and int(params.replace(",", "")) == closed_form_params(
            space, a.embed_dim, a.n_head, a.mlp_ratio, a.bias)


@given(st.one_of(st.text(max_size=8), st.sampled_from(["cuda", "cuda:0", "cuda:7", "tpu", "xla", "meta", "mps",
                                                        "cpu:x", "gpu", ""])))
@fuzz(200)
def test_cli_refuses_a_torch_device_this_machine_lacks(name):
    import torch

    CONTRACT_CASES["hwlm profile --torch-device"] += 1
    try:
        kind = torch.device(name).type
    except (RuntimeError, TypeError, ValueError):
        kind = None
    if kind == "cpu" or (kind == "cuda" and torch.cuda.is_available()):
        return  # a device this machine has: it would start profiling
    rc, out, err = run_cli(["profile", f"--torch-device={name}", "-n", "1", "--out", "/nonexistent/never.h5"])
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "invalid --torch-device" in err


# ---------------------------------------------------------------------------- examples the fuzz found
def test_closed_form_params_equal_the_built_model():
    import torch

    from benchmark.model import GPT

    for name in SPACE_NAMES:
        sp = SPACES[name]
        for a in [sp.smallest(), sp.largest(), sp.sample(3)]:
            with torch.device("meta"):
                m = GPT(a)
            assert closed_form_params(name, a.embed_dim, a.n_head, a.mlp_ratio, a.bias) == \
                sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("call, field", [
    (lambda: T.from_hwgpt_dict(None), "HW-GPT-Bench dict"),
    (lambda: T.from_hwgpt_dict(3), "HW-GPT-Bench dict"),
    (lambda: T.from_hwgpt_dict([1, 2]), "HW-GPT-Bench dict"),
    (lambda: T.from_hwgpt_dict({1: 2, "a": 3}), "HW-GPT-Bench dict keys"),
    (lambda: T.sample(seed=1.5), "seed"),
    (lambda: T.sample(seed=-1), "seed"),
    (lambda: T.sample(seed=0, n=-1), "n"),
    (lambda: T.sample(seed=0, n=1.5), "n"),
    (lambda: T.decode([[1, 2], [1]]), "encoding"),
    (lambda: T.decode([True] + T.smallest().encoding().tolist()[1:]), "encoding"),
    (lambda: Architecture.from_id(T.smallest().id.replace(f"-{T.smallest().n_layer}-", f"-{'9' * 5000}-", 1)),
     "architecture id"),
    (lambda: T.encode_many(None), "archs"),
    (lambda: T.mutate(T.smallest(), 0, p="x"), "p"),
    (lambda: T.mutate(T.smallest(), -3), "seed"),
    (lambda: resolve_setting("prefill-b" + "9" * 5000 + "-s1-fp32"), "setting name"),
])
def test_the_reported_leaks_are_refused(call, field):
    with pytest.raises(HwlmError, match=f"invalid {field}") as e:
        call()
    assert len(str(e.value)) < 2000 and "allowed" in str(e.value)


@needs_release
@pytest.mark.parametrize("kw, field", [
    (dict(metrics="perplexity", noise=True, seed=1.5), "seed"),
    (dict(metrics="perplexity", noise=True, seed=-1), "seed"),
    (dict(repeats="x"), "repeats"),
])
def test_query_leaks_are_refused(bench, kw, field):
    with pytest.raises(HwlmError, match=f"invalid {field}"):
        bench.query(T.smallest(), **kw)
    with pytest.raises(HwlmError, match="invalid as_frame"):
        bench.query_batch([T.smallest()], as_frame="x")
    with pytest.raises(HwlmError, match="invalid path"):
        type(bench)("t", path=3)
    with pytest.raises(HwlmError, match="invalid surrogate"):
        bench.surrogate(["perplexity"])
    device = next(iter(bench.devices()))
    with pytest.raises(HwlmError, match=f"invalid setting of device '{device}'"):
        bench.hardware_metrics(device, setting="prefill-b3-s3-fp32")
