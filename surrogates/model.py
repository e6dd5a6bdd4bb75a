"""A surrogate as an estimator on feature matrices, and its files.

:class:`Surrogate` follows scikit-learn's convention: ``fit(X, y)``, ``predict(X)``,
``predict_quantiles(X)``, where ``X`` is an ``(N, F)`` feature matrix (:func:`surrogates.features.features`
builds it from architecture encodings; :func:`architecture_features` does so for one surrogate's
setting) and ``y`` the target in its own units. A mean model (``reg:squarederror``) predicts the
point, after the target transform (``log`` for latency, energy, memory and perplexity); for noisy
metrics a quantile model (``reg:quantileerror``, 5/50/95 %) fitted on the repeats gives the spread.

Files: ``<stem>.json`` (mean booster, XGBoost's own JSON or UBJ format), ``<stem>.quantile.json``
(noisy metrics only) and the sidecar ``<stem>.meta.json`` (feature names, transform, hashes of
the model files, hyperparameters, quality, ...); a directory's ``index.json`` lists them
(:func:`read_index`). Writes are atomic; loading checks the sidecar and the file hashes and raises
:class:`SurrogateError` (a ``ValueError``) naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.spaces import get_space
from benchmark.errors import HwlmError
from benchmark.files import json_default, sha256_bytes, sha256_file, write_bytes, write_text
from benchmark.settings import Setting
from surrogates.fastpredict import TreeEnsemble
from surrogates.features import DEFAULT_DECODE_TOKENS, feature_names, features

__all__ = ["SIDECAR_FORMAT", "INDEX_FORMAT", "FORMAT_VERSION", "QUANTILES", "LOG_METRICS", "TRANSFORMS",
           "MODEL_FORMATS", "SurrogateError", "Surrogate", "model_stem", "surrogate_dir", "read_index",
           "forward_transform", "inverse_transform", "nanmedian_rows", "xgb_params", "train_quantile_booster", "architecture_features",
           "write_json"]

SIDECAR_FORMAT = "hwlm-bench surrogate"
INDEX_FORMAT = "hwlm-bench surrogates index"
FORMAT_VERSION = 1
QUANTILES = (0.05, 0.5, 0.95)
LOG_METRICS = frozenset({"latency_ms", "energy_mj", "memory_mb", "perplexity"})
TRANSFORMS = ("log", "identity")
MODEL_FORMATS = ("json", "ubj")
# up to this many rows, predict with surrogates.fastpredict (bit-identical to the booster): measured in a MOO loop
# (caches cold between queries), the numpy walk beats inplace_predict's fixed cost up to ~150 rows
FAST_ROWS = 128
_REQUIRED = {  # sidecar field -> type
    "format": str, "format_version": int, "space": str, "metric": str, "unit": str, "target_source": str,
    "feature_names": list, "target_transform": str, "xgboost_version": str, "table_sha256": str,
    "split_seed": int, "hyperparameters": dict, "quality": dict, "files": dict, "decode_tokens": int,
}


class SurrogateError(HwlmError):
    """A missing, invalid or tampered surrogate file; names the file, the field, the value and what is allowed."""


def _fail(path: Path | str, field_: str, value: Any, allowed: Any) -> SurrogateError:
    return SurrogateError(f"surrogate {path}: invalid {field_}: {value!r}; allowed: {allowed}")


def model_stem(metric: str, device: str | None = None, setting: str | None = None) -> str:
    return metric if device is None else f"{metric}@{device}@{setting}"


def surrogate_dir(release: str | os.PathLike, space: str) -> Path:
    """``<release>/surrogates/<space>``."""
    return Path(release) / "surrogates" / space


def forward_transform(transform: str, y: np.ndarray) -> np.ndarray:
    """A target in its units -> the space the boosters model (``log`` or ``identity``)."""
    return np.log(y) if transform == "log" else y


def inverse_transform(transform: str, z: np.ndarray) -> np.ndarray:
    """The inverse of :func:`forward_transform`."""
    return np.exp(z) if transform == "log" else z


def nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row's finite values ((N, R) -> (N,)); NaN for a row without one."""
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x).any(1)
    if ok.any():
        out[ok] = np.nanmedian(x[ok], axis=1)
    return out


def xgb_params(hyperparameters: dict, seed: int, nthread: int, objective: str) -> tuple[dict, int]:
    """XGBoost training parameters and number of rounds of one hyperparameter candidate."""
    p = {k: v for k, v in hyperparameters.items() if k != "num_boost_round"}
    p.update({"objective": objective, "seed": int(seed), "nthread": int(nthread), "colsample_bytree": 0.9,
              "tree_method": "hist", "verbosity": 0})
    if objective == "reg:quantileerror":
        p["quantile_alpha"] = np.array(QUANTILES)
    return p, int(hyperparameters["num_boost_round"])


def train_quantile_booster(X: np.ndarray, zrep: np.ndarray, hyperparameters: dict, seed: int, nthread: int):
    """The 5/50/95 % booster on one row per finite repeat (``zrep``: transformed repeats, (N, R))."""
    import xgboost as xgb

    rows, cols = np.nonzero(np.isfinite(zrep))
    qp, qrounds = xgb_params(hyperparameters, seed, nthread, "reg:quantileerror")
    return xgb.train(qp, xgb.DMatrix(X[rows], label=zrep[rows, cols]), qrounds)


def architecture_features(s: "Surrogate", enc: np.ndarray) -> np.ndarray:
    """The feature matrix ``s`` predicts from, of an ``(N, encoding_length)`` encoding matrix."""
    return features(s.space, enc, s.setting, s.decode_tokens)


class Surrogate:
    """One metric's model: a mean booster, optionally a quantile booster, and the sidecar ``meta``
    (at least ``metric``, ``space`` and ``target_transform``; :func:`surrogates.fit.fit_target`
    and :meth:`load` fill the rest).

    ```python
    s = Surrogate({"metric": "latency_ms", "space": "t", "target_transform": "log"},
                  hyperparameters=CANDIDATES[0]).fit(X, y, repeats=R)   # R: (N, repeats), optional
    s.predict(X)                  # (N,) point predictions, in the metric's units
    s.predict_quantiles(X)        # (N, 3) 5/50/95 % (noisy metrics: fitted with repeats)
    ```
    """

    def __init__(self, meta: dict, mean=None, quantile=None, *, hyperparameters: dict | None = None,
                 seed: int = 0, nthread: int = 1):
        self.meta, self.mean_booster, self.quantile_booster = meta, mean, quantile
        self.metric, self.device, self.setting = meta["metric"], meta.get("device"), meta.get("setting")
        self.transform = meta["target_transform"]
        self.space = get_space(meta["space"])
        self.decode_tokens = int(meta.get("decode_tokens", DEFAULT_DECODE_TOKENS))
        self.hyperparameters = hyperparameters if hyperparameters is not None else \
            (meta.get("hyperparameters") or {}).get("chosen")
        self.seed, self.nthread = int(seed), int(nthread)
        self.heldout: dict | None = None  # split-conformal calibration on held-out architectures (no quantile model)
        self._fast: dict = {}

    @property
    def stem(self) -> str:
        return model_stem(self.metric, self.device, self.setting)

    @property
    def noisy(self) -> bool:
        return self.quantile_booster is not None

    def fit(self, X: np.ndarray, y: np.ndarray, repeats: np.ndarray | None = None) -> "Surrogate":
        """Fit the mean booster on the rows of ``X`` whose ``y`` is finite and, given ``repeats``
        ((N, R), NaN = none), the quantile booster on one row per finite repeat of those rows, with
        ``hyperparameters`` (a :data:`surrogates.fit.CANDIDATES` entry). Returns ``self``."""
        import xgboost as xgb

        if self.hyperparameters is None:
            raise SurrogateError(f"surrogate {self.stem}: no hyperparameters to fit with; allowed: "
                                 f"Surrogate(meta, hyperparameters=...)")
        ok = np.isfinite(np.asarray(y, np.float64))
        X, z = np.asarray(X)[ok], forward_transform(self.transform, np.asarray(y, np.float64)[ok])
        p, rounds = xgb_params(self.hyperparameters, self.seed, self.nthread, "reg:squarederror")
        self.mean_booster = xgb.train(p, xgb.DMatrix(X, label=z), rounds)
        self.quantile_booster = None
        if repeats is not None:
            zrep = forward_transform(self.transform, np.asarray(repeats, np.float64)[ok])
            self.quantile_booster = train_quantile_booster(X, zrep, self.hyperparameters, self.seed, self.nthread)
        self._fast = {}
        return self

    def tree_ensemble(self, role: str) -> TreeEnsemble | None:
        """The numpy walk of the ``"mean"`` or ``"quantile"`` booster (cached); None if unsupported."""
        fast = self._fast.get(role)
        if fast is None:
            booster = self.mean_booster if role == "mean" else self.quantile_booster
            try:
                fast = self._fast[role] = TreeEnsemble(booster)
            except ValueError:
                fast = self._fast[role] = False
        return fast or None

    def _raw(self, role: str, X: np.ndarray) -> np.ndarray:
        """The booster's output; a few rows go through the bit-identical numpy walk (much less overhead)."""
        if len(X) <= FAST_ROWS:
            fast = self.tree_ensemble(role)
            if fast is not None:
                return fast.predict(X)
        return (self.mean_booster if role == "mean" else self.quantile_booster).inplace_predict(X)

    def predict(self, X: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
        """Point predictions (original units) from a feature matrix (or from the mean booster's ``raw`` output)."""
        raw = self._raw("mean", X) if raw is None else raw
        return inverse_transform(self.transform, np.asarray(raw, np.float64).reshape(-1))

    def predict_interval(self, point: np.ndarray) -> np.ndarray | None:
        """(N, 2) 5-95 % interval around ``point`` (this model's predictions, original units) for a
        metric without a quantile model: ``point`` widened in the transformed space by the
        split-conformal half-width of :attr:`heldout` (set by :func:`surrogates.fit.heldout_calibration`);
        None when there is none."""
        w = (self.heldout or {}).get("widening")
        if w is None:
            return None
        z = forward_transform(self.transform, np.asarray(point, np.float64))
        return inverse_transform(self.transform, np.column_stack([z - w, z + w]))

    def predict_quantiles(self, X: np.ndarray, raw: np.ndarray | None = None,
                           point: np.ndarray | None = None) -> np.ndarray:
        """(N, 3) predicted 5/50/95 % quantiles (original units, sorted per row); noisy metrics only.

        ``point``: the mean model's predictions (original units). The quantiles are then shifted,
        in the transformed space, so that their median is the point: the location comes from the
        mean model (fitted on per-architecture medians, the better estimate), the spread from the
        quantile model (fitted on the repeats), widened by the conformal calibration of the
        sidecar (``interval_calibration``; :func:`_conformal_widening`). Two independently fitted
        models otherwise disagree now and then by more than the noise, and a point outside its
        own interval is nonsense."""
        if self.quantile_booster is None:
            raise SurrogateError(f"surrogate {self.stem}: no quantile model (the metric was stored with one repeat)")
        raw = self._raw("quantile", X) if raw is None else raw
        q = np.sort(np.asarray(raw, np.float64).reshape(len(X), len(QUANTILES)), axis=1)
        if point is not None:
            q = q - q[:, [1]] + forward_transform(self.transform, np.asarray(point, np.float64).reshape(-1, 1))
            w = (self.meta.get("interval_calibration") or {}).get("widening")
            if w:  # conformal calibration (fit time): covers the model's error too, not only the noise
                q[:, 0] = np.minimum(q[:, 0] - w, q[:, 1])
                q[:, 2] = np.maximum(q[:, 2] + w, q[:, 1])
        return inverse_transform(self.transform, q)

    # ------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike, model_format: str = "json") -> Path:
        """Write the boosters and the sidecar into ``directory`` atomically; returns the sidecar path."""
        if model_format not in MODEL_FORMATS:
            raise ValueError(f"invalid model_format: {model_format!r}; allowed: {list(MODEL_FORMATS)}")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files = {}
        for role, booster in (("mean", self.mean_booster), ("quantile", self.quantile_booster)):
            if booster is None:
                continue
            name = f"{self.stem}.{model_format}" if role == "mean" else f"{self.stem}.quantile.{model_format}"
            data = bytes(booster.save_raw(model_format))  # what save_model writes to a .json/.ubj file
            write_bytes(d / name, data)
            files[role] = {"path": name, "sha256": sha256_bytes(data)}
        self.meta["files"] = files
        sidecar = d / f"{self.stem}.meta.json"
        write_json(sidecar, self.meta)
        return sidecar

    @classmethod
    def load(cls, directory: str | os.PathLike, stem: str, nthread: int = 1) -> "Surrogate":
        """Load ``<stem>`` from ``directory``, checking the sidecar and the sha256 of every model file."""
        import xgboost as xgb

        d = Path(directory)
        sidecar = d / f"{stem}.meta.json"
        meta = _read_sidecar(sidecar)
        files = meta["files"]
        if set(files) not in ({"mean"}, {"mean", "quantile"}):
            raise _fail(sidecar, "files", sorted(files), "['mean'] or ['mean', 'quantile']")
        boosters = {}
        for role, entry in files.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                    or not isinstance(entry.get("sha256"), str):
                raise _fail(sidecar, f"files.{role}", entry, "{'path': str, 'sha256': str}")
            p = d / entry["path"]
            if Path(entry["path"]).name != entry["path"] or p.suffix[1:] not in MODEL_FORMATS:
                raise _fail(sidecar, f"files.{role}.path", entry["path"],
                            f"a file name in the same directory ending in {['.' + f for f in MODEL_FORMATS]}")
            if not p.is_file():
                raise _fail(sidecar, f"files.{role}.path", entry["path"], "an existing file (it is missing)")
            digest = sha256_file(p)
            if digest != entry["sha256"]:
                raise _fail(sidecar, f"files.{role}.sha256", entry["sha256"],
                            f"the sha256 of {p} ({digest}); the model file was modified or replaced")
            b = xgb.Booster()
            try:
                b.load_model(str(p))
            except xgb.core.XGBoostError as e:
                raise _fail(p, "model file", p.name, f"an XGBoost JSON/UBJ model ({e})") from None
            b.set_param({"nthread": int(nthread)})
            boosters[role] = b
        return cls(meta, boosters["mean"], boosters.get("quantile"))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically (:func:`benchmark.files.write_text`)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=json_default) + "\n")


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise _fail(path, what, str(path), "an existing file (it is missing)")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _fail(path, what, path.name, f"a JSON object ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise _fail(path, what, type(obj).__name__, "a JSON object")
    return obj


def _read_sidecar(path: Path) -> dict:
    meta = _read_json(path, "sidecar")
    for k, typ in _REQUIRED.items():
        v = meta.get(k)
        if k not in meta or not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise _fail(path, f"field {k!r}", v, f"a {typ.__name__}")
    if meta["format"] != SIDECAR_FORMAT:
        raise _fail(path, "field 'format'", meta["format"], repr(SIDECAR_FORMAT))
    if meta["format_version"] != FORMAT_VERSION:
        raise _fail(path, "field 'format_version'", meta["format_version"], [FORMAT_VERSION])
    if meta["target_transform"] not in TRANSFORMS:
        raise _fail(path, "field 'target_transform'", meta["target_transform"], list(TRANSFORMS))
    try:
        sp = get_space(meta["space"])
    except ValueError:
        raise _fail(path, "field 'space'", meta["space"], "a space name t, s, m or l") from None
    device, setting = meta.get("device"), meta.get("setting")
    if (device is None) != (setting is None):
        raise _fail(path, "fields 'device'/'setting'", (device, setting), "both set or both null")
    if setting is not None:
        try:
            Setting.parse(setting)
        except ValueError as e:
            raise _fail(path, "field 'setting'", setting, str(e)) from None
    expected = feature_names(sp, setting)
    if meta["feature_names"] != expected:
        raise _fail(path, "field 'feature_names'", meta["feature_names"], expected)
    stem = model_stem(meta["metric"], device, setting)
    if path.name != f"{stem}.meta.json":
        raise _fail(path, "file name", path.name, f"{stem}.meta.json (from its metric, device and setting)")
    return meta


def read_index(directory: str | os.PathLike) -> dict:
    """The ``index.json`` of a surrogate directory, validated."""
    path = Path(directory) / "index.json"
    idx = _read_json(path, "index")
    if idx.get("format") != INDEX_FORMAT:
        raise _fail(path, "field 'format'", idx.get("format"), repr(INDEX_FORMAT))
    if idx.get("format_version") != FORMAT_VERSION:
        raise _fail(path, "field 'format_version'", idx.get("format_version"), [FORMAT_VERSION])
    for k, typ in (("space", str), ("models", list), ("missing", list), ("devices", dict), ("metrics", dict)):
        if not isinstance(idx.get(k), typ):
            raise _fail(path, f"field {k!r}", idx.get(k), f"a {typ.__name__}")
    return idx


