"""A new device's latency from K measured architectures: four predictors, their cross-validation
and the choice between them.

Every predictor works in log milliseconds, on what :class:`Inputs` holds of N architectures at
one setting:

* ``flops`` — FLOPs-proportional scaling: ``ms = c * FLOPs``, ``c`` the median ratio of the K rows.
* ``roofline`` — the per-operator roofline model of a spec sheet
  (:mod:`benchmark.profiling.roofline`), its efficiencies and overhead calibrated on the K rows.
* ``xgboost`` — XGBoost on the architecture features (:mod:`surrogates.features`) of the K rows.
* ``transfer`` — ridge regression of the log latency on what the release already knows of every
  architecture: the log latencies of its devices (a modeled device's roofline model, a measured
  device's surrogate) and the log FLOPs. Devices that react alike to an architecture's shape
  carry over. The penalty (the strongest within one standard error of the least exact
  leave-one-out error) shrinks towards FLOPs scaling or towards a constant, whichever has the
  smaller leave-one-out error; that keeps K = 5 usable.

:func:`fit_setting` fits all four, scores them by K-fold cross-validation on the K rows (5 folds,
leave-one-out below 10 rows) and keeps the simplest (``SIMPLEST_FIRST``) whose cross-validated
squared log error is within one standard error of the least; its out-of-fold log residuals give
the 5-95 % interval of its predictions. Fitted models are plain
JSON (coefficients, roofline parameters, XGBoost's own JSON): no pickle.

The reference columns are described by :func:`roofline_reference` (a stored roofline model) or by
a surrogate reference that the caller evaluates (``surrogate_values``); :func:`reference_matrix`
evaluates them for any encodings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.spaces import get_space

__all__ = ["METHODS", "MIN_ROWS", "Inputs", "TransferError", "fit_setting", "load_setting", "predict_log", "predictor",
           "roofline_reference", "reference_matrix", "scores", "cpu_spec_provenance"]

METHODS = ("flops", "roofline", "xgboost", "transfer")
SIMPLEST_FIRST = ("flops", "roofline", "transfer", "xgboost")  # the order ties are broken in
MIN_ROWS = 5  # the least K that 5-fold cross-validation and the ridge's leave-one-out error need
_ALPHAS = np.logspace(-3, 4, 15)
_XGB = {"max_depth": 2, "eta": 0.1, "subsample": 1.0, "min_child_weight": 1.0, "lambda": 1.0}
_XGB_ROUNDS = 150


class TransferError(HwlmError):
    """Invalid input to fitting or evaluating a new device's latency model."""


@dataclass
class Inputs:
    """What the predictors see of N architectures at one setting."""

    space: str
    setting: str
    decode_tokens: int
    enc: np.ndarray  # (N, L) integer encodings
    log_flops: np.ndarray  # (N,)
    arch: np.ndarray  # (N, F) surrogates.features at the setting
    refs: np.ndarray  # (N, J) log ms of the reference columns

    def take(self, idx: np.ndarray) -> "Inputs":
        return dataclasses.replace(self, enc=self.enc[idx], log_flops=self.log_flops[idx], arch=self.arch[idx],
                                   refs=self.refs[idx])

    @classmethod
    def build(cls, space: str, setting: str, decode_tokens: int, enc: np.ndarray, refs: np.ndarray) -> "Inputs":
        from surrogates.features import exact_flops, features

        enc = np.asarray(enc)
        return cls(space, setting, int(decode_tokens), enc, np.log(exact_flops(space, enc, setting, decode_tokens)),
                   features(space, enc, setting, decode_tokens), np.asarray(refs, np.float64).reshape(len(enc), -1))


# ---------------------------------------------------------------------------- reference columns
def roofline_reference(name: str, kind: str, provenance: dict, setting: str, decode_tokens: int) -> dict:
    """A reference column evaluated by a roofline model stored like a modeled device's provenance
    (:func:`benchmark.profiling.modeled.modeled_provenance`), at ``setting``."""
    return {"name": name, "kind": kind, "setting": _in_dtype(setting, provenance), "decode_tokens": int(decode_tokens),
            "model": "roofline", "provenance": provenance}


def _in_dtype(setting: str, provenance: dict) -> str:
    """``setting``'s shape in the dtype the roofline model was stored for (GPUs fp16, CPUs fp32)."""
    return f"{setting.rsplit('-', 1)[0]}-{provenance.get('dtype', 'fp32')}"


def _roofline(space: str, ref: dict):
    from benchmark.profiling.modeled import roofline_from_provenance
    from benchmark.profiling.roofline import EncodedRoofline

    built = roofline_from_provenance(ref["name"], ref["kind"], ref["provenance"])
    if built is None:
        raise TransferError(f"invalid reference {ref['name']!r}: its provenance holds no roofline model")
    spec, params, _ = built
    return EncodedRoofline(space, ref["setting"], spec, params, ref["decode_tokens"])


def reference_matrix(space: str, refs: Sequence[dict], enc: np.ndarray,
                     surrogate_values: Callable[[dict, np.ndarray], np.ndarray] | None = None,
                     cache: dict | None = None) -> np.ndarray:
    """(N, J) log ms of the reference columns ``refs`` for encodings ``enc``; ``surrogate_values(ref,
    enc)`` answers the columns whose ``model`` is ``"surrogate"`` (a release's measured devices).
    ``cache``: a dict kept between calls with the same ``refs`` (the roofline models, built once)."""
    enc = np.asarray(enc)
    out = np.empty((len(enc), len(refs)))
    cache = {} if cache is None else cache
    for j, ref in enumerate(refs):
        if ref["model"] == "roofline":
            if j not in cache:
                cache[j] = _roofline(space, ref)
            ms = cache[j].evaluate(enc)[0]
        elif surrogate_values is not None:
            ms = surrogate_values(ref, enc)
        else:
            raise TransferError(f"invalid reference {ref['name']!r}: a surrogate column and no release to evaluate it")
        out[:, j] = np.log(np.asarray(ms, np.float64))
    return out


def cpu_spec_provenance(cpu_model: str, threads: int, fallback: str = "cpu-epyc-7513") -> dict:
    """The roofline provenance (spec sheet, uncalibrated CPU parameters) of a CPU: the registry entry
    its model string matches, else ``fallback`` (recorded as ``spec_assumed``), restricted to ``threads``."""
    from benchmark.profiling.devices import get_device, match_registry, with_threads
    from benchmark.profiling.modeled import modeled_provenance
    from benchmark.profiling.roofline import DEFAULT_PARAMS

    spec = match_registry(cpu_model or "")
    assumed = spec is None
    spec = spec or get_device(fallback)
    prov = modeled_provenance(with_threads(spec, max(1, min(int(threads), spec.cores))), DEFAULT_PARAMS["cpu"],
                              "uncalibrated defaults", "fp32")
    prov["spec_assumed"] = assumed
    return prov


# ---------------------------------------------------------------------------- the predictors
def _fit_flops(inp: Inputs, y: np.ndarray) -> dict:
    return {"log_c": float(np.median(y - inp.log_flops))}


def _fit_roofline(inp: Inputs, y: np.ndarray, spec_prov: dict) -> dict:
    from benchmark.profiling.modeled import roofline_from_provenance
    from benchmark.profiling.roofline import calibrate_many

    spec, start, _ = roofline_from_provenance("target", "cpu", spec_prov)
    sp = get_space(inp.space)
    archs = [sp.decode(e) for e in inp.enc]
    p = calibrate_many([(_in_dtype(inp.setting, spec_prov), {a.id: float(np.exp(v)) for a, v in zip(archs, y)})],
                       archs, spec,
                       start=start, decode_tokens=inp.decode_tokens, label=f"{len(y)} measured latencies")
    return {"provenance": {**spec_prov, "roofline_params": dataclasses.asdict(p)}}


def _fit_xgboost(inp: Inputs, y: np.ndarray, seed: int) -> dict:
    import xgboost as xgb

    p = {**_XGB, "objective": "reg:squarederror", "seed": int(seed), "nthread": 1, "verbosity": 0,
         "base_score": float(np.mean(y))}
    booster = xgb.train(p, xgb.DMatrix(inp.arch, label=y), _XGB_ROUNDS)
    return {"booster": json.loads(bytes(booster.save_raw("json")))}


def _standardise(Z: np.ndarray, mu=None, sd=None):
    if mu is None:
        mu, sd = Z.mean(0), Z.std(0)
        sd = np.where(sd > 1e-12, sd, np.inf)  # a constant column carries nothing: weight 0
    return (Z - mu) / sd, mu, sd


def _transfer_design(inp: Inputs) -> np.ndarray:
    return np.column_stack([inp.refs, inp.log_flops])


def _ridge_weights(Z: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """(alphas, J) ridge weights on ``Z`` (centred by the caller) for each penalty, from one SVD."""
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    uty = U.T @ y
    return np.array([Vt.T @ ((s / (s ** 2 + a)) * uty) for a in alphas])


def _ridge(Z: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(least CV error, alpha, weights)`` of ridge on standardised ``Z`` with an intercept; alpha
    is the strongest within one standard error of the least 5-fold (below 10 rows: leave-one-out)
    cross-validated squared error. Explicit refits, not the hat-matrix shortcut: with fewer rows
    than columns a weak penalty interpolates and the shortcut divides zero by zero."""
    err = np.empty((len(_ALPHAS), len(y)))
    for test in _folds(len(y), 0):
        train = np.setdiff1d(np.arange(len(y)), test)
        zm, ym = Z[train].mean(0), y[train].mean()
        W = _ridge_weights(Z[train] - zm, y[train] - ym, _ALPHAS)
        err[:, test] = ((y[test] - ym)[:, None] - (Z[test] - zm) @ W.T).T ** 2
    mean = err.mean(1)
    i = int(np.argmin(mean))
    j = max(j for j in range(len(_ALPHAS)) if mean[j] <= mean[i] + err[i].std() / np.sqrt(len(y)))
    zm = Z.mean(0)
    return float(mean[i]), float(_ALPHAS[j]), _ridge_weights(Z - zm, y - y.mean(), _ALPHAS[j:j + 1])[0]


def _fit_transfer(inp: Inputs, y: np.ndarray) -> dict:
    # two baselines the penalty shrinks towards: FLOPs scaling (the log latency per FLOP is fitted)
    # or a constant; the one with the smaller leave-one-out error is kept
    Z, mu, sd = _standardise(_transfer_design(inp))
    best = None
    for offset in ("flops", "none"):
        target = y - inp.log_flops if offset == "flops" else y
        loo, a, w = _ridge(Z, target)
        if best is None or loo < best[0]:
            best = (loo, {"offset": offset, "alpha": a, "intercept": float(target.mean()), "mean": mu.tolist(),
                          "scale": [float(v) if np.isfinite(v) else None for v in sd], "weights": w.tolist()})
    return best[1]


def _fit(method: str, inp: Inputs, y: np.ndarray, spec_prov: dict, seed: int) -> dict:
    if method == "flops":
        return _fit_flops(inp, y)
    if method == "roofline":
        return _fit_roofline(inp, y, spec_prov)
    if method == "xgboost":
        return _fit_xgboost(inp, y, seed)
    if method == "transfer":
        return _fit_transfer(inp, y)
    raise TransferError.invalid("method", method, list(METHODS))


def predictor(method: str, model: dict, space: str, setting: str, decode_tokens: int) -> Callable[[Inputs], np.ndarray]:
    """The log-ms function of a fitted ``model`` of ``method`` (built once: roofline tables, booster)."""
    if method == "flops":
        return lambda inp: inp.log_flops + model["log_c"]
    if method == "roofline":
        roof = _roofline(space, roofline_reference("target", "cpu", model["provenance"], setting, decode_tokens))
        return lambda inp: np.log(roof.evaluate(inp.enc)[0])
    if method == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(json.dumps(model["booster"]).encode()))
        return lambda inp: booster.inplace_predict(np.ascontiguousarray(inp.arch)).astype(np.float64)
    if method == "transfer":
        sd = np.array([np.inf if v is None else v for v in model["scale"]])
        mu, w = np.array(model["mean"]), np.array(model["weights"])

        def transfer(inp: Inputs) -> np.ndarray:
            base = inp.log_flops if model["offset"] == "flops" else 0.0
            return base + model["intercept"] + _standardise(_transfer_design(inp), mu, sd)[0] @ w

        return transfer
    raise TransferError.invalid("method", method, list(METHODS))


def predict_log(method: str, model: dict, inp: Inputs) -> np.ndarray:
    """Log ms of ``inp``'s architectures from a fitted ``model`` of ``method``."""
    return predictor(method, model, inp.space, inp.setting, inp.decode_tokens)(inp)


# ---------------------------------------------------------------------------- scores and selection
def scores(pred_ms: np.ndarray, true_ms: np.ndarray) -> dict[str, float]:
    """Kendall tau, Spearman rho, MAPE and RMS log error of predictions against measurements."""
    from scipy import stats

    p, t = np.asarray(pred_ms, np.float64), np.asarray(true_ms, np.float64)
    return {"kendall_tau": float(stats.kendalltau(p, t).statistic),
            "spearman_rho": float(stats.spearmanr(p, t).statistic),
            "mape": float(np.mean(np.abs(p - t) / t)),
            "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(t)) ** 2)))}


def _folds(n: int, seed: int) -> list[np.ndarray]:
    k = n if n < 10 else 5
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def fit_setting(inp: Inputs, ms: np.ndarray, spec_prov: dict, seed: int = 0,
                methods: Sequence[str] = METHODS) -> dict:
    """Fit every method on the K rows of ``inp`` (measured ``ms``), cross-validate each, and return
    ``{"setting", "method" (the one kept, see the module docstring), "model", "cv": {method: scores},
    "residual_q": [q5, q95],
    "models": {method: model}}`` (log residuals: measured over predicted, out of fold)."""
    ms = np.asarray(ms, np.float64)
    if ms.ndim != 1 or len(ms) != len(inp.enc) or not np.all(np.isfinite(ms) & (ms > 0)):
        raise TransferError(f"invalid ms: {len(ms)} values for {len(inp.enc)} architectures; allowed: one "
                            f"positive finite latency per architecture")
    if len(ms) < MIN_ROWS:
        raise TransferError.invalid("number of measured architectures", len(ms), f"at least {MIN_ROWS}")
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise TransferError.invalid("methods", list(methods), f"a non-empty subset of {list(METHODS)}")
    y = np.log(ms)
    cv, resid, models = {}, {}, {}
    for m in methods:
        oof = np.empty(len(y))
        for test in _folds(len(y), seed):
            train = np.setdiff1d(np.arange(len(y)), test)
            oof[test] = predict_log(m, _fit(m, inp.take(train), y[train], spec_prov, seed), inp.take(test))
        cv[m] = scores(np.exp(oof), ms)
        resid[m] = y - oof
        models[m] = _fit(m, inp, y, spec_prov, seed)
    # the simplest method whose cross-validated squared log error is within one standard error of
    # the least: with a few rows, the CV error of a flexible model is itself noisy
    mse = {m: float(np.mean(resid[m] ** 2)) for m in methods}
    low = min(methods, key=lambda m: mse[m])
    bar = mse[low] + float(np.std(resid[low] ** 2)) / np.sqrt(len(y))
    best = next(m for m in SIMPLEST_FIRST if m in methods and mse[m] <= bar)
    q = np.quantile(resid[best], [0.05, 0.95])
    return {"setting": inp.setting, "method": best, "model": models[best], "cv": cv,
            "residual_q": [float(q[0]), float(q[1])], "residuals": resid[best].tolist(), "models": models}


def load_setting(entry: dict) -> tuple[str, dict, np.ndarray]:
    """``(method, model, (q5, q95))`` of a stored :func:`fit_setting` result (checked)."""
    try:
        method, model, q = entry["method"], entry["model"], np.asarray(entry["residual_q"], np.float64)
    except (KeyError, TypeError, ValueError):
        raise TransferError("invalid device model: it lacks method, model or residual_q") from None
    if method not in METHODS or not isinstance(model, dict) or q.shape != (2,):
        raise TransferError.invalid("device model method", method, list(METHODS))
    return method, model, q
