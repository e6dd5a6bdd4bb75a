"""XGBoost surrogates per (metric, device, setting), fitted from a table; saved without pickle.

What is fitted (:func:`fit_table`):

* one target per device-independent metric that is not exact (``perplexity``,
  ``token_accuracy``; ``params*``/``flops_*`` are computed exactly and never modelled) and per
  ``(device, setting, metric)`` of ``/hardware``; a target whose values are all NaN (e.g. energy
  on a CPU without counters) is not fitted but recorded as missing with its ``missing_reason``;
* **not** the ``latency_ms`` / ``energy_mj`` of a *modeled* device whose provenance holds the
  roofline model's parameters and spec sheet (every device ``hwlm table add-modeled`` writes):
  the query API evaluates that model directly, exactly, for any architecture
  (:class:`benchmark.profiling.roofline.EncodedRoofline`), so a surrogate of it would only add
  error. ``index.json`` lists such devices under ``roofline`` (with the provenance the model needs,
  so a release without its table still answers them) and the report says so;
* a **mean model** (``reg:squarederror``) on one row per architecture, the target being the
  median of the stored repeats, after a target transform (``log`` for latency, energy, memory
  and perplexity; identity otherwise);
* for noisy metrics (stored with more than one repeat, e.g. ``latency_ms``, ``energy_mj``) a
  **quantile model** (``reg:quantileerror``, one multi-quantile booster for 5/50/95 %) on one
  row per stored repeat, with the hyperparameters chosen for the mean model. A query's 90 %
  interval is its 5–95 % spread centred on the mean model's point, widened by a split-conformal
  offset computed out-of-fold on the training split (``interval_calibration`` in the sidecar),
  so that it covers new repeats of unseen architectures, not only the measurement noise.

Architectures are split once (seeded) into a training and a held-out set shared by all targets.
Hyperparameters are chosen among a few candidates by 3-fold cross-validation on the training
split only; the released model is fitted on the training split, so the quality recorded in its
sidecar (:mod:`surrogates.quality`) is measured on architectures it never saw.

Files (:class:`Surrogate`): ``<stem>.json`` (mean booster, XGBoost's own JSON or UBJ format),
``<stem>.quantile.json`` (quantile booster, noisy metrics only) and ``<stem>.meta.json``, the
sidecar: feature names, target transform, quantiles, xgboost version, sha256 of the training
table and of every model file, split seed, hyperparameters, quality. ``stem`` is
``<metric>@<device>@<setting>`` or ``<metric>`` for device-independent metrics. A directory
``index.json`` lists the models, the missing targets, the devices and the modeled devices
answered by the roofline model; for a table of HW-GPT-Bench's spaces without perplexity (hardware
only, e.g. the ``s`` release) its ``metrics`` list ``perplexity`` as ``imported``, which the query
API answers with HW-GPT-Bench's predictor. Everything is written to
a temporary name and renamed into place. Loading checks the sidecar and the file hashes and
raises :class:`SurrogateError` (a ``ValueError``) naming the file, the field, the value and what
is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from benchmark.files import sha256_bytes, write_text
from benchmark.hwgpt_perplexity import PROVENANCE as HWGPT_PROVENANCE, SPACES as HWGPT_SPACES
from benchmark.table import Table
from surrogates.features import DEFAULT_DECODE_TOKENS, feature_names, features
from surrogates.model import (FORMAT_VERSION, INDEX_FORMAT, LOG_METRICS, MODEL_FORMATS, QUANTILES,  # noqa: F401
                              SIDECAR_FORMAT, Surrogate, SurrogateError, architecture_features,
                              forward_transform, model_stem, nanmedian_rows, read_index, surrogate_dir,
                              train_quantile_booster, write_json, xgb_params)

__all__ = ["CANDIDATES", "Target", "targets", "split_rows", "fit_target", "fit_table", "roofline_devices",
           "heldout_calibration", "add_fit_parser",
           # the estimator and its files (surrogates.model), importable from here too
           "SIDECAR_FORMAT", "INDEX_FORMAT", "FORMAT_VERSION", "QUANTILES", "LOG_METRICS", "SurrogateError",
           "Surrogate", "model_stem", "read_index", "surrogate_dir"]

# a few cheap candidates (at most 300 trees: fitting and single-query prediction stay fast); chosen
# per target by 3-fold CV on the training split
CANDIDATES: tuple[dict, ...] = (
    {"max_depth": 3, "eta": 0.1, "num_boost_round": 300, "min_child_weight": 1.0, "subsample": 0.9},
    {"max_depth": 5, "eta": 0.1, "num_boost_round": 200, "min_child_weight": 1.0, "subsample": 0.8},
    {"max_depth": 6, "eta": 0.1, "num_boost_round": 200, "min_child_weight": 3.0, "subsample": 0.8},
)
CV_FOLDS = 3
# a table of HW-GPT-Bench's spaces without perplexity (hardware only): the release serves their
# predictor's values, labelled imported (benchmark.hwgpt_perplexity), and fits no surrogate of it
IMPORTED_PERPLEXITY = {"unit": "1", "source": "imported", "provenance": dict(HWGPT_PROVENANCE),
                       "no_interval": "no interval: HW-GPT-Bench publishes no error estimate for its perplexity "
                                      "predictor, and this release measured no perplexity to estimate one"}


# ---------------------------------------------------------------------------- targets
@dataclass
class Target:
    """What one surrogate learns: per-architecture medians (N,) and, for noisy metrics, the repeats (N, R)."""

    metric: str
    device: str | None
    setting: str | None
    unit: str
    target_source: str  # what the values are: measured or modeled
    y: np.ndarray  # (N,) median of repeats, NaN = not measured
    repeats: np.ndarray | None = None  # (N, R) when R > 1
    device_source: str | None = None
    device_kind: str | None = None
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    missing_reason: str | None = None

    @property
    def stem(self) -> str:
        return model_stem(self.metric, self.device, self.setting)

    @property
    def transform(self) -> str:
        return "log" if self.metric in LOG_METRICS else "identity"

    @property
    def noisy(self) -> bool:
        return self.repeats is not None


def targets(table: Table) -> list[Target]:
    """Every modelled quantity of a table (fitted or, when all NaN, missing with the reason)."""
    out = []
    for name, meta in table.metrics().items():
        if meta.get("source") == "exact" or name.startswith("flops_"):
            continue
        out.append(Target(name, None, None, meta.get("unit", "1"), meta.get("source", "measured"),
                          np.asarray(table.metric(name), np.float64), missing_reason=meta.get("missing_reason")))
    for dev, dmeta in table.devices().items():
        kind = dmeta.get("kind") or dmeta.get("provenance", {}).get("kind")
        for st in table.settings(dev):
            dt = int(table.setting_attrs(dev, st).get("decode_tokens", DEFAULT_DECODE_TOKENS))
            for m, hmeta in sorted(table.hardware_metrics(dev, st).items()):
                rep = np.asarray(table.hardware(dev, st, m), np.float64)
                noisy = rep.shape[1] > 1
                out.append(Target(m, dev, st, hmeta.get("unit", ""), dmeta["source"], nanmedian_rows(rep),
                                  rep if noisy else None, dmeta["source"], kind, dt, hmeta.get("missing_reason")))
    return out


def roofline_devices(table: Table) -> dict[str, dict]:
    """The modeled devices of ``table`` whose ``latency_ms`` / ``energy_mj`` the query API evaluates
    with the roofline model directly: ``{device: {"provenance": ..., "metrics": {setting: {metric:
    unit}}, "decode_tokens": {setting: k}}}`` (the ``roofline`` entry of ``index.json``)."""
    from benchmark.profiling.modeled import ROOFLINE_METRICS, roofline_from_provenance

    out = {}
    for dev, dmeta in table.devices().items():
        kind = dmeta.get("kind") or dmeta.get("provenance", {}).get("kind")
        if dmeta["source"] != "modeled" or roofline_from_provenance(dev, kind, dmeta["provenance"]) is None:
            continue
        metrics, dtok = {}, {}
        for st in table.settings(dev):
            metrics[st] = {m: hm.get("unit", "") for m, hm in sorted(table.hardware_metrics(dev, st).items())
                           if m in ROOFLINE_METRICS}
            attrs = table.setting_attrs(dev, st)
            if "decode_tokens" in attrs:
                dtok[st] = int(attrs["decode_tokens"])
        out[dev] = {"provenance": dict(dmeta["provenance"]), "metrics": metrics, "decode_tokens": dtok}
    return out


def split_rows(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row indices into (train, test); both sorted."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"invalid test_fraction: {test_fraction!r}; allowed: a number in (0, 1)")
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * test_fraction)))
    return np.sort(perm[k:]), np.sort(perm[:k])


# ---------------------------------------------------------------------------- fitting
def _choose(X: np.ndarray, z: np.ndarray, seed: int, nthread: int, candidates) -> tuple[dict, list[dict]]:
    """3-fold CV (seeded folds over the training rows); returns the best candidate and all scores (RMSE of z)."""
    import xgboost as xgb

    folds = np.array_split(np.random.default_rng(seed + 1).permutation(len(z)), min(CV_FOLDS, len(z)))
    scores = []
    for cand in candidates:
        p, rounds = xgb_params(cand, seed, nthread, "reg:squarederror")
        errs = []
        for k in range(len(folds)):
            val = folds[k]
            tr = np.concatenate([folds[j] for j in range(len(folds)) if j != k])
            b = xgb.train(p, xgb.DMatrix(X[tr], label=z[tr]), rounds)
            errs.append(float(np.sqrt(np.mean((b.inplace_predict(X[val]) - z[val]) ** 2))))
        scores.append({**cand, "cv_rmse": float(np.mean(errs))})
    best = min(range(len(candidates)), key=lambda i: scores[i]["cv_rmse"])
    return dict(candidates[best]), scores


def fit_target(table_space: str, enc: np.ndarray, target: Target, train: np.ndarray, *, table_sha256: str,
               split_seed: int, seed: int = 0, nthread: int = 1, candidates: Iterable[dict] = CANDIDATES,
               base_meta: dict | None = None) -> Surrogate:
    """Fit the mean (and quantile) model of ``target`` on the rows ``train`` (NaN targets are skipped).

    ``table_sha256`` (``Table.sha256()``) and ``split_seed`` identify the data it was fitted on."""
    import xgboost as xgb

    candidates = tuple(candidates)
    tr = train[np.isfinite(target.y[train])]
    if len(tr) < 2 * CV_FOLDS:
        raise ValueError(f"target {target.stem}: {len(tr)} training architectures with a value; "
                         f"allowed: at least {2 * CV_FOLDS}")
    X_all = features(table_space, enc, target.setting, target.decode_tokens)
    z = forward_transform(target.transform, target.y[tr])
    chosen, scores = _choose(X_all[tr], z, seed, nthread, candidates)
    calibration = None
    if target.noisy:
        rep = target.repeats[tr]
        calibration = _conformal_widening(X_all[tr], z, forward_transform(target.transform, rep), chosen, seed, nthread)
    meta = dict(base_meta or {})
    meta.update({"table_sha256": str(table_sha256), "split_seed": int(split_seed),
        "format": SIDECAR_FORMAT, "format_version": FORMAT_VERSION, "space": table_space,
        "metric": target.metric, "device": target.device, "setting": target.setting, "unit": target.unit,
        "target_source": target.target_source, "device_source": target.device_source,
        "device_kind": target.device_kind, "decode_tokens": int(target.decode_tokens),
        "feature_names": feature_names(table_space, target.setting), "target_transform": target.transform,
        "target": "median of the stored repeats" if target.noisy else "the stored value",
        "quantiles": list(QUANTILES) if target.noisy else None,
        "xgboost_version": xgb.__version__, "n_train": int(len(tr)),
        "n_train_repeats": int(np.isfinite(target.repeats[tr]).sum()) if target.noisy else None,
        "hyperparameters": {"chosen": chosen, "candidates": scores, "cv_folds": CV_FOLDS,
                            "selection": "lowest mean CV RMSE of the transformed target, training split only",
                            "quantile_model": "same hyperparameters as the mean model" if target.noisy else None},
        "interval_calibration": calibration,
        "quality": {}, "files": {},
    })
    s = Surrogate(meta, hyperparameters=chosen, seed=seed, nthread=nthread)
    return s.fit(X_all[tr], target.y[tr], target.repeats[tr] if target.noisy else None)


def _conformal_widening(X: np.ndarray, z: np.ndarray, zrep: np.ndarray, chosen: dict, seed: int,
                        nthread: int) -> dict:
    """Split-conformal calibration of the 5-95 % interval (conformalised quantile regression,
    Romano et al. 2019), out-of-fold on the training split only.

    The interval a query reports is the quantile model's spread centred on the mean model's
    point; it knows the measurement noise but not the model's own error on an unseen
    architecture, so alone it covers too few new repeats. For each of ``CV_FOLDS`` folds both
    models are refitted on the other folds and the fold's repeats are scored with
    ``max(lo - z, z - hi)`` (transformed space); the ``ceil((n + 1) * 0.9) / n`` empirical quantile
    of the scores is the ``widening`` subtracted from ``lo`` and added to ``hi`` (negative: the
    interval narrows)."""
    import xgboost as xgb

    folds = np.array_split(np.random.default_rng(seed + 2).permutation(len(z)), min(CV_FOLDS, len(z)))
    scores = []
    p, rounds = xgb_params(chosen, seed, nthread, "reg:squarederror")
    for k in range(len(folds)):
        val = folds[k]
        trn = np.concatenate([folds[j] for j in range(len(folds)) if j != k])
        point = xgb.train(p, xgb.DMatrix(X[trn], label=z[trn]), rounds).inplace_predict(X[val])
        q = np.sort(np.asarray(train_quantile_booster(X[trn], zrep[trn], chosen, seed, nthread).inplace_predict(X[val]),
                               np.float64).reshape(len(val), len(QUANTILES)), axis=1)
        lo = (q[:, 0] - q[:, 1] + point)[:, None]
        hi = (q[:, 2] - q[:, 1] + point)[:, None]
        r = zrep[val]
        ok = np.isfinite(r)
        scores.append(np.maximum(lo - r, r - hi)[ok])
    e = np.sort(np.concatenate(scores))
    n = len(e)
    level = min(1.0, np.ceil((n + 1) * (QUANTILES[2] - QUANTILES[0])) / n)
    return {"method": "split-conformal (CQR) on out-of-fold training repeats, transformed space",
            "widening": float(np.quantile(e, level, method="higher")), "n_scores": int(n),
            "folds": len(folds), "coverage_target": QUANTILES[2] - QUANTILES[0]}


@dataclass
class FitResult:
    directory: Path
    index: dict
    sidecars: list[Path] = field(default_factory=list)
    report: Path | None = None


def fit_table(table: str | os.PathLike | Table, out: str | os.PathLike, *, seed: int = 0,
              test_fraction: float = 0.2, nthread: int = 1, model_format: str = "json",
              candidates: Iterable[dict] = CANDIDATES, progress: bool = True,
              report: str | os.PathLike | None = None) -> FitResult:
    """Fit every target of ``table`` into ``<out>/surrogates/<space>/`` and write ``index.json``
    (and the markdown quality report ``REPORT.md`` there, plus at ``report`` if given)."""
    from tqdm import tqdm

    from surrogates.quality import quality, pareto_fidelity
    from surrogates.report import render_report

    t = table if isinstance(table, Table) else Table(table)
    space = t.space.name
    d = surrogate_dir(out, space)
    d.mkdir(parents=True, exist_ok=True)
    enc = np.asarray(t.encodings)
    ids = np.asarray(t.ids)
    train, test = split_rows(len(t), seed, test_fraction)
    sha = t.sha256()
    base = {"table_sha256": sha, "table_path": str(Path(t.path).name), "table_rows": len(t), "split_seed": int(seed),
            "test_fraction": float(test_fraction), "n_test_architectures": int(len(test)),
            "test_ids_sha256": sha256_bytes("\n".join(sorted(ids[test].tolist())).encode())}
    roofline = roofline_devices(t)
    all_targets = [tg for tg in targets(t) if tg.metric not in roofline.get(tg.device, {}).get("metrics", {}).get(
        tg.setting, {})]  # a modeled device's own model answers exactly: no surrogate of it
    # perplexity first: its held-out predictions are the other axis of every Pareto-fidelity check
    all_targets.sort(key=lambda tg: (tg.metric != "perplexity", tg.device is not None))
    index = {"format": INDEX_FORMAT, "format_version": FORMAT_VERSION, "space": space, "table_sha256": sha,
             "split_seed": int(seed), "test_fraction": float(test_fraction), "models": [], "missing": [],
             "devices": {}, "metrics": {}, "roofline": roofline}
    for dev, dmeta in t.devices().items():
        index["devices"][dev] = {"source": dmeta["source"],
                                 "kind": dmeta.get("kind") or dmeta.get("provenance", {}).get("kind"),
                                 "settings": t.settings(dev)}
    for name, meta in t.metrics().items():
        index["metrics"][name] = {"unit": meta.get("unit"), "source": meta.get("source")}
    if space in HWGPT_SPACES and "perplexity" not in index["metrics"]:  # served by HW-GPT-Bench's predictor
        index["metrics"]["perplexity"] = IMPORTED_PERPLEXITY
    params = np.asarray(features(space, enc)[:, feature_names(space).index("params")])
    ppl_true = ppl_pred = None
    sidecars = []
    bar = tqdm(all_targets, desc=f"fit surrogates {space}", unit="model", disable=not progress, dynamic_ncols=True)
    for tg in bar:
        bar.set_postfix_str(tg.stem)
        n_train_values = int(np.isfinite(tg.y[train]).sum())
        if n_train_values < 2 * CV_FOLDS:
            reason = (tg.missing_reason or "no value in the table (all NaN)") if not np.isfinite(tg.y).any() else \
                f"too few values to fit ({n_train_values} training architectures; at least {2 * CV_FOLDS} needed)"
            index["missing"].append({"metric": tg.metric, "device": tg.device, "setting": tg.setting, "unit": tg.unit,
                                     "reason": reason})
            continue
        s = fit_target(space, enc, tg, train, table_sha256=sha, split_seed=seed, seed=seed, nthread=nthread,
                       candidates=candidates, base_meta=base)
        X_test = architecture_features(s, enc[test])
        pred = s.predict(X_test)
        q = s.predict_quantiles(X_test, point=pred) if s.noisy else None
        s.meta["quality"] = quality(tg.y[test], pred, q, tg.repeats[test] if tg.noisy else None)
        if tg.metric == "perplexity" and tg.device is None:
            ppl_true, ppl_pred = tg.y[test], pred
        s.meta["quality"]["pareto"] = pareto_fidelity(tg.metric, tg.y[test], pred, ppl_true, ppl_pred,
                                                      params[test])
        sidecars.append(s.save(d, model_format))
        index["models"].append({"metric": tg.metric, "device": tg.device, "setting": tg.setting, "stem": s.stem,
                                "unit": tg.unit, "target_source": tg.target_source, "noisy": s.noisy,
                                "device_source": tg.device_source, "device_kind": tg.device_kind,
                                "decode_tokens": int(tg.decode_tokens), "transform": s.transform,
                                "n_train": s.meta["n_train"], "quality": s.meta["quality"],
                                "hyperparameters": "{max_depth} / {eta} / {num_boost_round}".format(
                                    **s.meta["hyperparameters"]["chosen"])})
    bar.close()
    write_json(d / "index.json", index)
    text = render_report(index)
    write_text(d / "REPORT.md", text)
    written = None
    if report is not None:
        written = Path(report)
        written.parent.mkdir(parents=True, exist_ok=True)
        write_text(written, text)
    return FitResult(d, index, sidecars, written)


def heldout_calibration(s: Surrogate, table: Table, coverage: float = 0.9) -> dict | None:
    """Split-conformal interval half-width of ``s`` from its real held-out residuals: the table
    rows its sidecar says were held out (the seeded split is redone and checked against the
    sidecar's ``test_ids_sha256``; the table must be the one it was fitted on), predicted and
    compared with their stored values in the transformed space; the ``ceil((n + 1) * coverage) / n``
    empirical quantile of ``|z - z_hat|`` is the half-width. None when the sidecar or the table
    cannot reproduce the held-out set (then no interval is claimed)."""
    meta = s.meta
    if not {"split_seed", "test_fraction", "test_ids_sha256"} <= set(meta) or meta.get("table_sha256") != table.sha256():
        return None
    _, test = split_rows(len(table), int(meta["split_seed"]), float(meta["test_fraction"]))
    ids = np.asarray(table.ids)
    if sha256_bytes("\n".join(sorted(ids[test].tolist())).encode()) != meta["test_ids_sha256"]:
        return None
    if s.device is None:
        y = np.asarray(table.metric(s.metric), np.float64)[test]
    else:
        y = nanmedian_rows(np.asarray(table.hardware(s.device, s.setting, s.metric), np.float64))[test]
    ok = np.isfinite(y)
    if ok.sum() < 10:
        return None
    X = architecture_features(s, np.asarray(table.encodings)[test[ok]])
    e = np.sort(np.abs(forward_transform(s.transform, y[ok]) - forward_transform(s.transform, s.predict(X))))
    n = len(e)
    level = min(1.0, np.ceil((n + 1) * coverage) / n)
    return {"method": "split-conformal on the held-out architectures' residuals, transformed space",
            "widening": float(np.quantile(e, level, method="higher")), "n_scores": int(n),
            "coverage_target": coverage}


# ---------------------------------------------------------------------------- CLI
def _fit_cmd(args) -> int:
    from benchmark.paths import data_dir
    from benchmark.release import release_write

    out = Path(args.out) if args.out else data_dir()
    with release_write(out, force=args.force, what="hwlm fit"):
        r = fit_table(args.table, out, seed=args.seed, test_fraction=args.test_fraction, nthread=args.threads,
                      model_format=args.format, progress=not args.quiet, report=args.report)
    print(f"{len(r.index['models'])} surrogates written to {r.directory} (index.json, quality report "
          f"{r.directory / 'REPORT.md'}{', ' + str(r.report) if r.report else ''}); "
          f"{len(r.index['missing'])} targets not fitted (no or too few values; reasons in the report); "
          f"{len(r.index['roofline'])} modeled devices evaluated by the roofline model directly (no surrogate)")
    return 0


def add_fit_parser(sub) -> None:
    s = sub.add_parser("fit", help="fit XGBoost surrogates on a table",
                       description="Fit mean and quantile XGBoost surrogates for every metric/device/setting of a "
                                   "table into OUT/surrogates/<space>/ with JSON sidecars and a quality report. "
                                   "Modeled devices' latency and energy get none: the query API evaluates their "
                                   "roofline model directly (listed under 'roofline' in index.json).")
    s.add_argument("--table", required=True, help="the table file, e.g. data/table_t.h5")
    s.add_argument("--out", default=None, help="release directory (default: the embedded release, data/)")
    s.add_argument("--seed", type=int, default=0, help="seed of the held-out split, CV folds and XGBoost (default 0)")
    s.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of architectures (default 0.2)")
    s.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="XGBoost threads (default: half the cores)")
    s.add_argument("--format", choices=MODEL_FORMATS, default="json", help="XGBoost model format (default json)")
    s.add_argument("--report", default=None, help="also write the markdown quality report here (e.g. docs/surrogates.md)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--force", action="store_true", help="write even into a release directory (one with MANIFEST.json) and rewrite its manifest (refused otherwise)")
    s.set_defaults(func=_fit_cmd)

