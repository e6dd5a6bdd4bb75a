"""Quality indicators (moocore) in the suite's normalised objective space, all minimised.

* :func:`hypervolume` — of the points that dominate the reference point (others add nothing);
* :func:`hypervolume_curve` / :func:`igd_plus_curve` — the indicator of everything evaluated up to
  each evaluation (the anytime performance of a run);
* :func:`igd_plus` — against a best-known front (the table's Pareto front in table mode);
* :func:`attainment` — empirical attainment function over several runs (``moocore.eaf``);
* :func:`at_times` — a per-evaluation curve as a step function of the simulated clock;
* :func:`normalise_objectives` / :func:`suite_hypervolume` — a suite's normalisation and
  hypervolume for values from any loop (optuna, pymoo, your own), comparable to the suite's results.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import HwlmError

__all__ = ["hypervolume", "hypervolume_curve", "igd_plus", "igd_plus_curve", "nondominated", "attainment",
           "at_times", "normalise_objectives", "suite_hypervolume"]


def _pts(points) -> np.ndarray:
    P = np.asarray(points, dtype=float)
    if P.ndim == 1:
        P = P[None, :]
    return P


def nondominated(points) -> np.ndarray:
    """The non-dominated points (duplicates kept once)."""
    import moocore

    P = _pts(points)
    if len(P) == 0:
        return P
    P = np.unique(P, axis=0)
    return P[np.asarray(moocore.is_nondominated(P), dtype=bool)]


def hypervolume(points, ref) -> float:
    """Hypervolume dominated by ``points`` and bounded by ``ref`` (minimisation)."""
    import moocore

    P, ref = _pts(points), np.asarray(ref, dtype=float)
    if P.shape[1] != len(ref):
        raise HwlmError(f"invalid reference point: {ref.tolist()}; allowed: {P.shape[1]} numbers (one per objective)")
    P = P[np.all(P < ref, axis=1)]
    if len(P) == 0:
        return 0.0
    return float(moocore.hypervolume(P, ref=ref))


def _curve(points, f) -> np.ndarray:
    """``f(archive)`` after each point, recomputed only when the non-dominated archive changes."""
    P = _pts(points)
    out = np.zeros(len(P))
    archive = np.empty((0, P.shape[1]))
    value = None
    for i, p in enumerate(P):
        dominated = len(archive) and np.any(np.all(archive <= p, axis=1))
        if not dominated or value is None:
            archive = archive[~np.all(p <= archive, axis=1)] if len(archive) else archive
            archive = np.vstack([archive, p])
            value = f(archive)
        out[i] = value
    return out


def hypervolume_curve(points, ref) -> np.ndarray:
    """Hypervolume of the first ``k`` points, for every ``k`` (non-decreasing)."""
    ref = np.asarray(ref, dtype=float)
    return _curve(points, lambda A: hypervolume(A, ref))


def igd_plus(points, front) -> float:
    """IGD+ of ``points`` with respect to the reference ``front`` (0 = the front is attained)."""
    import moocore

    return float(moocore.igd_plus(_pts(points), ref=_pts(front)))


def igd_plus_curve(points, front) -> np.ndarray:
    """IGD+ of the first ``k`` points, for every ``k`` (non-increasing)."""
    front = _pts(front)
    return _curve(points, lambda A: igd_plus(A, front))


def attainment(fronts, percentiles=(0, 25, 50, 75, 100)) -> dict[float, np.ndarray]:
    """Empirical attainment surfaces over runs: ``{percentile: points}`` (moocore.eaf).

    ``fronts`` is a list of point sets, one per run. The ``p``-% surface is attained by at least
    ``p`` % of the runs (0 %: by some run, i.e. the best; 100 %: by all runs, i.e. the worst).
    """
    import moocore

    sets = [_pts(f) for f in fronts if len(f)]
    if not sets:
        return {float(p): np.empty((0, 0)) for p in percentiles}
    data = np.vstack(sets)
    idx = np.concatenate([np.full(len(s), i + 1) for i, s in enumerate(sets)])
    res = np.asarray(moocore.eaf(data, sets=idx, percentiles=list(percentiles)))
    out = {}
    for p in percentiles:
        rows = res[np.isclose(res[:, -1], p)]
        out[float(p)] = rows[:, :-1]
    return out


def at_times(curve, times, grid) -> np.ndarray:
    """A per-evaluation ``curve`` as a step function of time: the value after the last evaluation
    finished by each ``grid`` time (NaN before the first evaluation)."""
    curve, times, grid = np.asarray(curve, float), np.asarray(times, float), np.asarray(grid, float)
    k = np.searchsorted(times, grid, side="right") - 1
    out = np.full(len(grid), np.nan)
    ok = k >= 0
    out[ok] = curve[k[ok]]
    return out


def _suite_objectives(suite) -> list:
    """A suite's objectives (a :class:`~benchmark.moo.suites.Suite` or a suite name) with their bounds;
    normalisation needs only metric, bounds and scale, so unresolved device roles are fine."""
    from benchmark.moo.problems import Objective
    from benchmark.moo.suites import get_suite

    if isinstance(suite, str):
        suite = get_suite(suite)
    out = []
    for o in suite.objectives:
        setting = o.get("setting")
        setting = setting if setting is None or isinstance(setting, str) else setting[0]
        lo, hi = o["bounds"]
        out.append(Objective(o["metric"], o.get("device"), setting, float(lo), float(hi), bool(o.get("log", False))))
    return out


def normalise_objectives(suite, values) -> np.ndarray:
    """Objective values ``(n, m)`` in the suite's objective order and units (minimised: token
    accuracy as the error ``1 - accuracy``, as :meth:`Problem.evaluate` returns them) -> the suite's
    normalised space (``lower`` -> 0, ``upper`` -> 1, log scale where the suite says so)."""
    objs = _suite_objectives(suite)
    V = _pts(values)
    if V.shape[1] != len(objs):
        raise ValueError(f"invalid values: {V.shape[1]} columns; allowed: {len(objs)} (one per objective: "
                         f"{[o.metric for o in objs]})")
    return np.column_stack([o.normalise(V[:, j]) for j, o in enumerate(objs)])


def suite_hypervolume(suite, values, normalised: bool = False) -> float:
    """Hypervolume of ``values`` (raw objective values, or already normalised with
    ``normalised=True``) in the suite's normalised space against its reference point — the number
    the suite's results files and reports give for the same points."""
    from benchmark.moo.suites import get_suite

    suite = get_suite(suite) if isinstance(suite, str) else suite
    P = _pts(values) if normalised else normalise_objectives(suite, values)
    return hypervolume(P, suite.reference_point)
