"""A timing protocol that drift cannot bias: rounds over shuffled architectures, with anchors.

A host's speed drifts over minutes (frequency, neighbours on a shared VM, thermal state). When
every architecture is timed once, in one block, its latency carries the host's state at that
minute, and rows timed close together share an error that no function of the architecture can
predict. This protocol turns that drift into noise that averages out:

* **Rounds.** Each architecture's repeats are split into ``rounds`` visits of
  ``repeats_per_round`` timed runs (after ``warmup`` untimed ones). Every round visits all
  architectures in a freshly shuffled order (seeded), so an architecture is timed at ``rounds``
  unrelated moments of the pass, and its median is over all of them.
* **Anchors.** A fixed anchor architecture is visited every ``anchor_every`` visits. Each timing
  is stored with the anchor's local value (linear interpolation in time between the surrounding
  anchor visits), so the host's state at every moment is known and a drift-normalised value can be
  computed: ``t * global_anchor / local_anchor``.
* **Raw data.** Every timing is kept with its timestamp; the analyses below read them.

This module is pure logic (no torch): the visit schedule, anchor interpolation, aggregation and
the evidence the data card reports (lag-1 autocorrelation of residuals in time order, split-half
agreement across rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import HwlmError

ANCHOR = -1  # the arch index of an anchor visit in a schedule


@dataclass(frozen=True)
class RoundsProtocol:
    rounds: int = 3
    repeats_per_round: int = 4
    warmup: int = 2
    anchor_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        for field, lo in (("rounds", 1), ("repeats_per_round", 1), ("warmup", 0), ("anchor_every", 1), ("seed", 0)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise HwlmError.invalid(field, v, f"an integer >= {lo}")

    @property
    def repeats(self) -> int:
        return self.rounds * self.repeats_per_round

    def schedule(self, n: int) -> np.ndarray:
        """The visit order: an (visits, 2) int array of (round, arch index), ``ANCHOR`` for anchors.

        Every round is a seeded permutation of ``range(n)`` with an anchor visit before the first
        architecture and after every ``anchor_every`` architectures; the pass ends with an anchor,
        so every architecture visit lies between two anchor visits.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise HwlmError(f"invalid n: {n!r}; allowed: an integer >= 1")
        visits = []
        for r in range(self.rounds):
            order = np.random.default_rng([self.seed, r]).permutation(n)
            for k, i in enumerate(order):
                if k % self.anchor_every == 0:
                    visits.append((r, ANCHOR))
                visits.append((r, int(i)))
        visits.append((self.rounds - 1, ANCHOR))
        return np.array(visits, dtype=np.int64)


def local_anchor(times: np.ndarray, anchor_times: np.ndarray, anchor_values: np.ndarray) -> np.ndarray:
    """The anchor's value at each of ``times``: linear interpolation between anchor visits."""
    order = np.argsort(anchor_times)
    return np.interp(times, np.asarray(anchor_times, float)[order], np.asarray(anchor_values, float)[order])


def normalise(values: np.ndarray, local: np.ndarray, reference: float) -> np.ndarray:
    """Drift-normalised timings: each value rescaled by how fast the host was at that moment."""
    return np.asarray(values, float) * (reference / np.asarray(local, float))


def lag1_autocorrelation(residuals_in_time_order: np.ndarray) -> float:
    """Pearson correlation of consecutive residuals (0: no shared error between neighbours in time)."""
    r = np.asarray(residuals_in_time_order, float)
    r = r[np.isfinite(r)]
    if len(r) < 3:
        raise HwlmError(f"invalid residuals: {len(r)} finite values; allowed: at least 3")
    return float(np.corrcoef(r[:-1], r[1:])[0, 1])


def split_half_r2(per_round: np.ndarray) -> float:
    """Agreement of the per-architecture medians of the even and the odd rounds.

    ``per_round``: (architectures, rounds) values (e.g. each round's median). R² of the log of one
    half predicting the log of the other (1 - SS_res / SS_tot): how much of the measured
    between-architecture variation a second, independent half of the pass reproduces.
    """
    x = np.log(np.asarray(per_round, float))
    if x.ndim != 2 or x.shape[1] < 2:
        raise HwlmError(f"invalid per_round shape: {x.shape}; allowed: (architectures, rounds >= 2)")
    a, b = np.nanmedian(x[:, ::2], 1), np.nanmedian(x[:, 1::2], 1)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    return float(1 - np.sum((a - b) ** 2) / np.sum((b - b.mean()) ** 2))
