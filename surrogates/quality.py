"""Held-out quality of a surrogate: accuracy, ranking, interval coverage and Pareto fidelity.

* ``r2`` (in the metric's units), ``kendall_tau`` and ``spearman_rho`` (``scipy.stats``),
  ``mape`` (percent) of the point prediction against the held-out per-architecture value
  (median of the stored repeats);
* ``coverage_90``: the share of held-out *repeats* inside the predicted 5–95 % interval
  (noisy metrics only; 0.9 is ideal);
* ``pareto``: for the held-out architectures, the 2-D hypervolume (``moocore``) of the
  true objective values of the architectures whose *predicted* values are non-dominated,
  divided by the hypervolume of the true front (``hv_ratio`` <= 1; 1 = the surrogate picks a
  front as good as the true one). Objectives, all minimised: perplexity and the metric;
  for ``perplexity`` itself perplexity and (exact) params; for ``token_accuracy`` minus the
  accuracy and params. Predictions are used for both axes where both are modelled (that is
  what a user querying surrogates sees). Objectives are normalised to [0, 1] by the true
  values' range, reference point (1.1, 1.1).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["quality", "pareto_fidelity", "hypervolume_ratio"]


def _f(x) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else x


def quality(y_true: np.ndarray, y_pred: np.ndarray, q: np.ndarray | None = None,
            repeats: np.ndarray | None = None) -> dict:
    from scipy import stats

    ok = np.isfinite(y_true)
    yt, yp = y_true[ok], y_pred[ok]
    out: dict = {"n_test": int(ok.sum())}
    if len(yt) >= 2:
        ss_tot = float(np.sum((yt - yt.mean()) ** 2))
        out["r2"] = _f(1.0 - np.sum((yt - yp) ** 2) / ss_tot) if ss_tot > 0 else None
        out["kendall_tau"] = _f(stats.kendalltau(yt, yp).statistic)
        out["spearman_rho"] = _f(stats.spearmanr(yt, yp).statistic)
        nz = yt != 0
        out["mape"] = _f(100.0 * np.mean(np.abs(yp[nz] - yt[nz]) / np.abs(yt[nz]))) if nz.any() else None
    else:
        out.update(r2=None, kendall_tau=None, spearman_rho=None, mape=None)
    out["coverage_90"] = None
    if q is not None and repeats is not None:
        rep = repeats[ok]
        finite = np.isfinite(rep)
        inside = (rep >= q[ok][:, [0]]) & (rep <= q[ok][:, [2]]) & finite
        out["coverage_90"] = _f(inside.sum() / finite.sum()) if finite.any() else None
        out["n_test_repeats"] = int(finite.sum())
    return out


def hypervolume_ratio(true_obj: np.ndarray, pred_obj: np.ndarray) -> float | None:
    """HV of the true values of the predicted front / HV of the true front (minimisation, 2-D)."""
    import moocore

    ok = np.isfinite(true_obj).all(1) & np.isfinite(pred_obj).all(1)
    t, p = true_obj[ok], pred_obj[ok]
    if len(t) < 2:
        return None
    lo, hi = t.min(0), t.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    tn = (t - lo) / span
    ref = np.full(t.shape[1], 1.1)
    hv_true = moocore.hypervolume(tn, ref=ref)
    if hv_true <= 0:
        return None
    sel = moocore.is_nondominated(p)
    return float(moocore.hypervolume(tn[sel], ref=ref) / hv_true)


def pareto_fidelity(metric: str, y_true: np.ndarray, y_pred: np.ndarray, ppl_true: np.ndarray | None,
                    ppl_pred: np.ndarray | None, params: np.ndarray) -> dict:
    sign = -1.0 if metric == "token_accuracy" else 1.0
    if metric in ("perplexity", "token_accuracy") or ppl_true is None:
        axes = [metric if sign > 0 else f"-{metric}", "params"]
        t = np.stack([sign * y_true, params], 1)
        p = np.stack([sign * y_pred, params], 1)
    else:
        axes = ["perplexity", metric]
        t = np.stack([ppl_true, y_true], 1)
        p = np.stack([ppl_pred, y_pred], 1)
    try:
        ratio = hypervolume_ratio(t, p)
    except ImportError:
        return {"objectives": axes, "hv_ratio": None, "note": "moocore is not installed (pip install moocore)"}
    return {"objectives": axes, "hv_ratio": ratio, "normalisation": "true range of the held-out set, ref 1.1"}
