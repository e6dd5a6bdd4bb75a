"""The timing-protocol evidence (surrogates.drift) on a table whose drift is known.

THE LATENCIES ARE SYNTHETIC: a deterministic function of each architecture's exact FLOPs times a
smooth host slowdown over time plus seeded noise, laid out exactly as a timing pass writes them
(rounds of shuffled visits, an anchor timed every few visits, the raw log ``timings``).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.datacard import write_data_card
from benchmark.profiling.timing_pass import TIMINGS_LOG
from benchmark.spaces import get_space
from benchmark.table import Table, TableWriter
from surrogates.drift import device_evidence
from surrogates.features import exact_flops

DEV, S = "cpu-synthetic", "prefill-b1-s64-fp32"
ROUNDS, RPR = 3, 2


def _drifting_table(path, n=80, seed=0, passes=1, visits_per_pass=True):
    """``passes`` passes, one after another, over consecutive parts of the architectures, as passes over
    other rows of one device are merged; each numbers its visits from 0 (``visits_per_pass``) or
    they are numbered through."""
    sp = get_space("t")
    archs = list({a.id: a for a in sp.sample(seed, n)}.values())
    base = exact_flops(sp, sp.encode_many(archs), S, 1) / 1e7
    rng = np.random.default_rng(seed)
    slow = lambda t: 1 + 0.5 * np.sin(t / 40)  # noqa: E731  the host's state, smooth in time
    anchor_ms = float(np.median(base))
    lat = np.full((len(archs), ROUNDS * RPR), np.nan)
    rows, visit, t = [], 0, 0.0
    for part in np.array_split(np.arange(len(archs)), passes):
        visit = 0 if visits_per_pass else visit
        for r in range(ROUNDS):
            for i in rng.permutation(part):
                t += 1
                ms = base[i] * slow(t) * rng.lognormal(0, 0.02, RPR)
                lat[i, r * RPR:(r + 1) * RPR] = ms
                rows += [dict(arch=archs[i].id, round=r, visit=visit, repeat=j, unix_time=t, ms=float(m),
                              anchor_ms=anchor_ms * slow(t)) for j, m in enumerate(ms)]
                visit += 1
    with TableWriter(path, "t", flush_every=None) as w:
        w.declare_device(DEV, source="measured", provenance={"cpu_model": "synthetic"})
        w.declare_setting(DEV, S, rounds=ROUNDS, repeats_per_round=RPR, repeats=ROUNDS * RPR)
        w.declare_hardware_metric(DEV, S, "latency_ms", unit="ms", repeats=ROUNDS * RPR)
        for i, a in enumerate(archs):
            w.append(a, hardware={(DEV, S, "latency_ms"): lat[i]}, measured_at={(DEV, S): float(i)})
        for rec in rows:
            w.log(TIMINGS_LOG, {"device": DEV, "setting": S, **rec})
    return path


def test_evidence_sees_drift_in_visits_but_not_in_architectures_and_the_card_prints_it(tmp_path):
    path = _drifting_table(tmp_path / "t.h5")
    (e,) = device_evidence(Table(path), DEV)
    assert e["device"] == DEV and e["setting"] == S and e["rows"] == 80 and e["rounds"] == ROUNDS
    assert e["visit_lag1_raw"] > 0.5  # single visits carry the host's slowdown of their moment ...
    assert abs(e["visit_lag1_normalised"]) < 0.3  # ... which the anchor's latency at that moment removes
    assert abs(e["lag1"]) < 0.3  # medians over shuffled rounds: drift does not land on architectures
    # drift lowers the agreement between rounds and the surrogate's R²; anchor normalisation restores both
    assert e["split_half_r2_normalised"] > 0.99 > e["split_half_r2"] and e["r2_oof_normalised"] > 0.95 > e["r2_oof"]
    md = write_data_card(path, tmp_path / "card.md", protocol_evidence=[e]).read_text()
    assert "## Timing protocol evidence" in md
    row = next(line for line in md.splitlines() if line.startswith(f"| `{DEV}` | `{S}` | 80 | 3 |"))
    assert f"{e['r2_oof']:.3f}" in row and f"{e['visit_lag1_raw']:.3f}" in row
    assert "## Timing protocol evidence" not in write_data_card(path, tmp_path / "bare.md").read_text()


def test_passes_over_other_rows_of_a_device_keep_their_visits_apart(tmp_path):
    # two passes both number their visits from 0: the evidence must be what numbering them through gives
    (apart,) = device_evidence(Table(_drifting_table(tmp_path / "a.h5", passes=2)), DEV)
    (through,) = device_evidence(Table(_drifting_table(tmp_path / "b.h5", passes=2, visits_per_pass=False)), DEV)
    assert apart == through and apart["rows"] == 80


def test_the_card_prints_each_runtimes_agreement_and_perplexity_deltas(tmp_path):
    import json
    from pathlib import Path

    check = json.loads((Path(__file__).resolve().parents[1] / "docs" / "runtimes_check.json").read_text())
    path = _drifting_table(tmp_path / "t.h5", n=20)
    md = write_data_card(path, tmp_path / "card.md", runtime_check=check).read_text()
    section = md.split("## Runtime correctness", 1)[1].split("\n## ", 1)[0]
    for name, r in check["summary"].items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        assert f"{r['max_prefill_rel_error']:.2g}" in row
        assert ("pass" in row) == bool(r.get("fp32_pass"))  # only fp32 runtimes are held to the tolerance
    sp = get_space("t")
    for a in check["architectures"]:  # ids of any form printed canonically, with the int8 delta
        row = next(line for line in section.splitlines() if line.startswith(f"| `{sp.from_id(a['arch']).id}` |"))
        assert f"{a['backends']['ort-int8']['perplexity_delta']:+.3f}" in row
