"""The rounds-and-anchors timing protocol: its schedule, and that it removes drift a simulation plants."""

import numpy as np
import pytest

from benchmark.profiling.protocol import (ANCHOR, RoundsProtocol, lag1_autocorrelation, local_anchor, normalise,
                                          split_half_r2)


def test_schedule_visits_every_arch_once_per_round_between_anchors():
    p = RoundsProtocol(rounds=3, anchor_every=4, seed=1)
    s = p.schedule(10)
    for r in range(3):
        arch = s[(s[:, 0] == r) & (s[:, 1] != ANCHOR), 1]
        assert sorted(arch) == list(range(10))
    assert s[0, 1] == ANCHOR and s[-1, 1] == ANCHOR
    gaps = np.diff(np.flatnonzero(s[:, 1] == ANCHOR))
    assert gaps.max() <= 5  # at most anchor_every architectures between two anchors
    orders = [tuple(s[(s[:, 0] == r) & (s[:, 1] != ANCHOR), 1]) for r in range(3)]
    assert len(set(orders)) == 3  # a fresh order per round
    assert np.array_equal(RoundsProtocol(rounds=3, anchor_every=4, seed=1).schedule(10), s)  # seeded
    assert not np.array_equal(RoundsProtocol(rounds=3, anchor_every=4, seed=2).schedule(10), s)


@pytest.mark.parametrize("field,value", [("rounds", 0), ("repeats_per_round", 1.5), ("warmup", -1),
                                         ("anchor_every", True), ("seed", -3)])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"invalid {field}"):
        RoundsProtocol(**{field: value})


def test_rounds_and_anchors_remove_planted_drift():
    """A simulated host whose speed wanders slowly: timed the old way (one block per architecture)
    residuals share the drift (high lag-1 autocorrelation); with rounds they do not, and the anchor
    normalisation recovers the true latencies closely."""
    rng = np.random.default_rng(0)
    n = 300
    true = np.exp(rng.uniform(0, 2, n))
    p = RoundsProtocol(rounds=3, repeats_per_round=4, anchor_every=20, seed=0)
    sched = p.schedule(n)
    t = np.arange(len(sched), dtype=float)
    drift = np.exp(0.3 * np.sin(t / 90.0) + 0.1 * np.sin(t / 17.0))  # slow host-speed factor
    anchor_true = 2.0
    noise = lambda size: np.exp(rng.normal(0, 0.02, size))  # noqa: E731
    vals = np.where(sched[:, 1] == ANCHOR, anchor_true, true[np.maximum(sched[:, 1], 0)]) * drift * noise(len(sched))
    is_anchor = sched[:, 1] == ANCHOR
    local = local_anchor(t[~is_anchor], t[is_anchor], vals[is_anchor])
    arch_idx, rnd = sched[~is_anchor, 1], sched[~is_anchor, 0]
    per_round = np.empty((n, p.rounds))
    per_round_norm = np.empty((n, p.rounds))
    per_round[arch_idx, rnd] = vals[~is_anchor]
    per_round_norm[arch_idx, rnd] = normalise(vals[~is_anchor], local, np.median(vals[is_anchor]))
    med = np.median(per_round, 1)
    med_norm = np.median(per_round_norm, 1)

    # the old protocol: each architecture timed once, in index order, at the first n moments
    old = true * drift[:n] * noise(n)
    resid_old = np.log(old / true)
    first_visit = arch_idx[rnd == 0]  # architectures in the order of their first visit
    resid_new = np.log(med / true)[first_visit]
    resid_norm = np.log(med_norm / true)[first_visit]
    assert lag1_autocorrelation(resid_old) > 0.8
    assert abs(lag1_autocorrelation(resid_new)) < 0.5 * lag1_autocorrelation(resid_old)
    # what remains is the anchor visits' own noise, shared by the architectures between two anchors
    assert abs(lag1_autocorrelation(resid_norm)) < 0.25 * lag1_autocorrelation(resid_old)
    err = lambda v: np.median(np.abs(v / true - 1))  # noqa: E731
    assert err(med_norm * (np.median(true) / np.median(med_norm))) < 0.5 * err(old * (np.median(true) / np.median(old)))
    assert split_half_r2(per_round_norm) > split_half_r2(per_round) > 0.5


def test_analysis_input_errors():
    with pytest.raises(ValueError, match="residuals"):
        lag1_autocorrelation([1.0, np.nan])
    with pytest.raises(ValueError, match="per_round shape"):
        split_half_r2(np.ones((5, 1)))
