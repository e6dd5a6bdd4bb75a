"""Modeled devices: a per-operator roofline latency model and a utilisation power model.

Everything this module returns is **modeled** (``source="modeled"``) — computed from spec sheets
(:mod:`benchmark.profiling.devices`) and calibration parameters, never measured. The table writer
stores it under source ``modeled``; nothing here may be presented as measured.

Operators (:func:`operator_table`)
    For ``B`` sequences, ``T`` new tokens each, ``S`` keys attended (prefill: ``S = T``; decode:
    ``T = 1`` and ``S`` = the mean key length over the decoded tokens, ``c + 1 + (k - 1) / 2``,
    because measured decode latency is the mean over ``k`` tokens at contexts ``c .. c+k-1``),
    embed ``E``, attention width ``W_i``, MLP hidden ``r_i E``, vocab ``V``, ``b`` bytes per
    element of the dtype:

    ============== ========================== ===========================================================
    operator       FLOPs                      bytes moved (read + written)
    ============== ========================== ===========================================================
    embedding      0                          ``8BT`` ids + ``2BTE b`` (rows read, written)
    ln_1, ln_2     ``8BTE``                   ``(2BTE + 2E) b``
    qkv            ``2BT E 3W``               ``(3EW [+3W] + BTE + 3BTW) b``
    rope           ``3BTW``                   ``4BTW b`` (q, k read and written)
    kv_write       0 (decode only)            ``4BTW b`` (k, v read; cache written)
    attn_score     ``2BTSW``                  ``(BTW + BSW) b`` (q, K; fused SDPA keeps scores on chip)
    attn_value     ``2BTSW``                  ``(BSW + BTW) b`` (V read, output written)
    attn_proj      ``2BTWE``                  ``(WE [+E] + 3BTW + BTE) b`` (incl. the head-merge copy)
    fc             ``2BT E rE``               ``(rE^2 [+rE] + BTE + BTrE) b``
    gelu           ``8BTrE``                  ``2BTrE b``
    mlp_proj       ``2BT rE E``               ``(rE^2 [+E] + BTrE + BTE) b``
    residual       ``2BTE``                   ``6BTE b`` (two adds)
    ln_f           ``8BTE``                   ``(2BTE + 2E) b``
    lm_head        ``2BTEV``                  ``(VE + BTE + BTV) b``
    ============== ========================== ===========================================================

    The matrix-product FLOPs add up to ``benchmark.costs.flops(..., attention="full")`` exactly;
    the element-wise FLOP counts are conventional (they never bind on real devices).

Latency (:func:`predict`)
    ``t_op = max(F / (P_dtype * eff_compute), M / (BW * eff_memory)) + overhead`` and the
    latency is the sum over operators. ``P_dtype`` and ``BW`` are the spec sheet's peak FLOP/s and
    bandwidth; ``eff_compute``, ``eff_memory`` (achieved fractions of peak; ``eff_memory`` may
    exceed 1 on CPUs whose working set stays in cache) and ``overhead`` (seconds per operator:
    kernel launch / eager dispatch) are the calibration parameters, one set per device class.

Energy (:func:`predict`)
    ``E = (P_idle + (TDP - P_idle) * u) * t`` with ``P_idle = idle_fraction * TDP`` and ``u`` the
    time-weighted utilisation of the binding roof: per operator ``max(F / P, M / BW) / t_op``
    (zero during overhead), averaged with weights ``t_op``. Reported in mJ, ``source="modeled"``.

Calibration (:func:`calibrate`, :func:`calibrate_many`)
    Least squares in log space — ``sum (log t_model - log t_measured)^2`` — over ``log`` of the
    three latency parameters (``scipy.optimize.least_squares``, bounded, several starts), on
    measured latencies of one measured device with the spec that describes it. The fitted
    parameters transfer to other devices of the same class by swapping the spec.
    :func:`calibrate_energy` fits ``idle_fraction`` (closed form) where measured energies exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from benchmark import costs
from benchmark.costs import DTYPE_BYTES
from benchmark.profiling.devices import DeviceSpec, get_device
from benchmark.settings import DEFAULT_DECODE_TOKENS, Setting, resolve_setting
from benchmark.spaces import Architecture, SearchSpace, get_space

__all__ = ["LAYER_OPS", "GLOBAL_OPS", "RooflineParams", "DEFAULT_PARAMS", "OperatorTable", "RooflineResult",
           "EncodedRoofline", "operator_table", "operator_table_encodings", "predict", "calibrate", "calibrate_many",
           "calibrate_energy"]

GLOBAL_OPS = ("embedding", "ln_f", "lm_head")
LAYER_OPS = ("ln_1", "qkv", "rope", "kv_write", "attn_score", "attn_value", "attn_proj", "ln_2", "fc", "gelu",
             "mlp_proj", "residual")
MATMUL_OPS = ("qkv", "attn_score", "attn_value", "attn_proj", "fc", "mlp_proj", "lm_head")
INDEX_BYTES = 8  # int64 token ids

_BOUNDS = {"eff_compute": (1e-4, 2.0), "eff_memory": (1e-4, 100.0), "overhead_s": (1e-9, 1e-2)}


@dataclass(frozen=True)
class RooflineParams:
    """Calibration parameters of one device class. ``source`` is always ``"modeled"``.

    ``fitted_on`` names the measured device and data the values were fitted on (``None`` for
    the uncalibrated defaults); ``rmse_log`` / ``rmse_log_start`` are the fit's root mean squared
    log errors after / before calibration and ``n_obs`` the number of measurements used.
    """

    eff_compute: float = 0.5
    eff_memory: float = 0.7
    overhead_s: float = 5e-6
    idle_fraction: float = 0.25
    fitted_on: str | None = None
    rmse_log: float | None = None
    rmse_log_start: float | None = None
    n_obs: int = 0
    source: str = "modeled"

    def __post_init__(self) -> None:
        for name, (lo, hi) in _BOUNDS.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"invalid {name}: {v!r}; allowed: {lo}..{hi}")
        if not 0.0 <= self.idle_fraction <= 1.0:
            raise ValueError(f"invalid idle_fraction: {self.idle_fraction!r}; allowed: 0..1")


#: Uncalibrated starting points (rough, typical of eager PyTorch): use calibrated parameters for numbers
#: that matter. GPU: ~5 µs launch, ~60 % of tensor peak, ~75 % of HBM bandwidth, idle ~20 % of TDP.
#: CPU: ~10 µs eager dispatch, ~40 % of FMA peak, ~60 % of DRAM bandwidth, idle ~30 % of TDP.
DEFAULT_PARAMS: Mapping[str, RooflineParams] = {
    "gpu": RooflineParams(eff_compute=0.6, eff_memory=0.75, overhead_s=5e-6, idle_fraction=0.2),
    "cpu": RooflineParams(eff_compute=0.4, eff_memory=0.6, overhead_s=1e-5, idle_fraction=0.3),
}


@dataclass(frozen=True)
class OperatorTable:
    """FLOPs and bytes of every operator of N architectures at one setting.

    ``flops``, ``bytes`` have shape ``(N, n_ops)``; ``live`` marks real operators (layers beyond an
    architecture's depth and ops absent in the mode are padding: zero work, no overhead).
    ``names[j]`` is the operator of column j, e.g. ``"L3.qkv"`` or ``"lm_head"``.
    """

    names: tuple[str, ...]
    flops: np.ndarray = field(compare=False)
    bytes: np.ndarray = field(compare=False)
    live: np.ndarray = field(compare=False)
    arch_ids: tuple[str, ...]
    setting: str
    dtype: str

    def matmul_flops(self) -> np.ndarray:
        cols = [j for j, n in enumerate(self.names) if n.split(".")[-1] in MATMUL_OPS]
        return self.flops[:, cols].sum(1)


@dataclass(frozen=True)
class RooflineResult:
    """Modeled latency (ms; per token for decode), energy (mJ per forward / per token), mean
    power (W) and utilisation of N architectures on one device at one setting."""

    latency_ms: np.ndarray = field(compare=False)
    energy_mj: np.ndarray = field(compare=False)
    power_w: np.ndarray = field(compare=False)
    utilisation: np.ndarray = field(compare=False)
    arch_ids: tuple[str, ...]
    device: str
    setting: str
    params: RooflineParams
    source: str = "modeled"


# --------------------------------------------------------------------------- operators
def _archs(archs: Architecture | Sequence[Architecture]) -> list[Architecture]:
    if isinstance(archs, Architecture):
        return [archs]
    archs = list(archs)
    if not archs or not all(isinstance(a, Architecture) for a in archs):
        raise ValueError(f"invalid archs: {archs!r}; allowed: an Architecture or a non-empty list of them")
    if len({a.space for a in archs}) != 1:
        raise ValueError(f"invalid archs: spaces {sorted({a.space for a in archs})}; allowed: one space per call")
    return archs


def operator_table(archs: Architecture | Sequence[Architecture], setting: Any,
                   decode_tokens: int = DEFAULT_DECODE_TOKENS) -> OperatorTable:
    """Per-operator FLOPs and bytes moved (see the module docstring), vectorised over ``archs``."""
    archs = _archs(archs)
    sp = archs[0].search_space
    return operator_table_encodings(sp, sp.encode_many(archs), setting, decode_tokens,
                                    arch_ids=tuple(a.id for a in archs))


def operator_table_encodings(space: str | SearchSpace, enc: np.ndarray, setting: Any,
                             decode_tokens: int = DEFAULT_DECODE_TOKENS,
                             arch_ids: Sequence[str] | None = None) -> OperatorTable:
    """:func:`operator_table` of an ``(N, encoding_length)`` integer encoding matrix of ``space``
    (``SearchSpace.encode_many``; validated here), without building an Architecture per row.
    ``arch_ids`` (optional) is carried into the result; otherwise ``arch_ids`` is empty."""
    sp = get_space(space)
    batch = costs.encoded_batch(np.asarray(enc), sp)  # validates every row (ArchitectureError names the bad one)
    enc = batch._enc
    lm = sp.max_layers
    t = costs.layer_tables(sp)  # per-layer tables: PAD (-1) reads the trailing 0
    E = batch.embed.astype(float)[:, None]
    H = t.heads[enc[:, 2 + lm:2 + 2 * lm]].astype(float)
    R = t.mlp[enc[:, 2:2 + lm]].astype(float)
    bias = batch.bias.astype(float)[:, None]
    st = resolve_setting(setting)
    names, flops, nbytes, live = _operator_arrays(sp, st, decode_tokens, E, H, R, bias)
    return OperatorTable(names, flops, nbytes, live, tuple(arch_ids) if arch_ids is not None else (), st.name,
                         st.dtype)


def _operator_arrays(sp: SearchSpace, st: Setting, decode_tokens: int, E: np.ndarray, H: np.ndarray,
                     R: np.ndarray, bias: np.ndarray) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """The operator formulas (module docstring): ``E`` and ``bias`` (N, 1), per-layer heads ``H`` and
    MLP ratios ``R`` (N, max_layers, 0 beyond an architecture's depth) -> names, flops, bytes, live."""
    L, hs, V = sp.max_layers, sp.head_size, sp.vocab_size
    b = float(DTYPE_BYTES[st.dtype])
    n = len(E)
    live_layer = H > 0
    W = H * hs
    F = R * E  # MLP hidden width
    B = float(st.batch)
    decode = st.mode == "decode"
    if decode:
        k = int(decode_tokens)
        if k < 1 or st.seq_len + k > sp.block_size:
            raise ValueError(f"invalid decode setting: context {st.seq_len} + {k} tokens; allowed: "
                             f"context + decode_tokens <= block_size={sp.block_size}")
        T, S = 1.0, st.seq_len + 1 + (k - 1) / 2.0
    else:
        if st.seq_len > sp.block_size:
            raise ValueError(f"invalid seq_len: {st.seq_len}; allowed: at most block_size={sp.block_size}")
        T, S = float(st.seq_len), float(st.seq_len)
    BT = B * T

    layer = {  # (flops, bytes), each (N, L)
        "ln_1": (8 * BT * E + 0 * W, (2 * BT * E + 2 * E) * b + 0 * W),
        "qkv": (2 * BT * E * 3 * W, (3 * E * W + bias * 3 * W + BT * E + 3 * BT * W) * b),
        "rope": (3 * BT * W, 4 * BT * W * b),
        "kv_write": (0 * W, (4 * BT * W * b) if decode else 0 * W),
        "attn_score": (2 * BT * S * W, (BT * W + B * S * W) * b),
        "attn_value": (2 * BT * S * W, (B * S * W + BT * W) * b),
        "attn_proj": (2 * BT * W * E, (W * E + bias * E + 3 * BT * W + BT * E) * b),
        "ln_2": (8 * BT * E + 0 * W, (2 * BT * E + 2 * E) * b + 0 * W),
        "fc": (2 * BT * E * F, (E * F + bias * F + BT * E + BT * F) * b),
        "gelu": (8 * BT * F, 2 * BT * F * b),
        "mlp_proj": (2 * BT * F * E, (F * E + bias * E + BT * F + BT * E) * b),
        "residual": (2 * BT * E + 0 * W, 6 * BT * E * b + 0 * W),
    }
    names, flops, nbytes, live = [], [], [], []

    def add(name, f, m, lv):
        names.append(name)
        flops.append(np.broadcast_to(f, (n,)).astype(float))
        nbytes.append(np.broadcast_to(m, (n,)).astype(float))
        live.append(np.broadcast_to(lv, (n,)))

    E1 = E[:, 0]
    add("embedding", 0.0, INDEX_BYTES * BT + 2 * BT * E1 * b, True)
    for i in range(L):
        for op in LAYER_OPS:
            f, m = layer[op]
            lv = live_layer[:, i] & (decode or op != "kv_write")
            add(f"L{i}.{op}", np.where(lv, f[:, i], 0.0), np.where(lv, m[:, i], 0.0), lv)
    add("ln_f", 8 * BT * E1, (2 * BT * E1 + 2 * E1) * b, True)
    add("lm_head", 2 * BT * E1 * V, (V * E1 + BT * E1 + BT * V) * b, True)
    return tuple(names), np.stack(flops, 1), np.stack(nbytes, 1), np.stack(live, 1)


# --------------------------------------------------------------------------- prediction
def _spec(device: str | DeviceSpec) -> DeviceSpec:
    return get_device(device)


def _params(device: DeviceSpec, params: RooflineParams | None) -> RooflineParams:
    return params if params is not None else DEFAULT_PARAMS[device.kind]


def _op_times(flops: np.ndarray, nbytes: np.ndarray, live: np.ndarray, peak: float, bw: float, eff_c, eff_m,
              overhead):
    """Per-op seconds (N, n_ops) of an operator table's arrays; eff_c, eff_m, overhead may be scalars
    or (N, 1) arrays."""
    t_roof = np.maximum(flops / (peak * eff_c), nbytes / (bw * eff_m))
    return np.where(live, t_roof + overhead, 0.0)


def _busy_times(flops: np.ndarray, nbytes: np.ndarray, live: np.ndarray, peak: float, bw: float) -> np.ndarray:
    """Per-op seconds (N, n_ops) at 100 % of the binding roof (the utilisation's numerator)."""
    return np.where(live, np.maximum(flops / peak, nbytes / bw), 0.0)


def _latency_energy(t: np.ndarray, busy: np.ndarray, tdp: float, idle_fraction: float):
    """(latency ms, energy mJ, power W, utilisation) from summed op seconds ``t`` and busy seconds."""
    util = np.clip(busy / t, 0.0, 1.0)
    idle = idle_fraction * tdp
    power = idle + (tdp - idle) * util
    return t * 1e3, power * t * 1e3, power, util


def predict(archs: Architecture | Sequence[Architecture], setting: Any, device: str | DeviceSpec,
            params: RooflineParams | None = None, decode_tokens: int = DEFAULT_DECODE_TOKENS,
            table: OperatorTable | None = None) -> RooflineResult:
    """Modeled latency and energy of ``archs`` at ``setting`` on a registry ``device`` (or a
    :class:`DeviceSpec`). ``params`` default to :data:`DEFAULT_PARAMS` for the device's kind
    (uncalibrated). Decode values are per token. Everything is labelled ``source="modeled"``."""
    spec = _spec(device)
    st = resolve_setting(setting)
    p = _params(spec, params)
    table = operator_table(archs, st, decode_tokens) if table is None else table
    peak, bw = spec.peak_flops(st.dtype), spec.bandwidth_bytes
    t = _op_times(table.flops, table.bytes, table.live, peak, bw, p.eff_compute, p.eff_memory, p.overhead_s).sum(1)
    busy = _busy_times(table.flops, table.bytes, table.live, peak, bw).sum(1)
    lat, energy, power, util = _latency_energy(t, busy, spec.tdp_w, p.idle_fraction)
    return RooflineResult(lat, energy, power, util, table.arch_ids, spec.id, st.name, p)


class EncodedRoofline:
    """:func:`predict`'s latency and energy for one (space, setting, device, parameters), evaluated
    straight from integer encodings (``SearchSpace.encode_many``) — for the query API, where a
    modeled device is answered by the model itself.

    Every operator of a layer depends only on that layer's (embed_dim, n_head, mlp_ratio, bias)
    and the global operators only on embed_dim, so the per-operator times of
    :func:`operator_table` / :func:`predict` are computed once, with the same formulas, for every
    such combination of the space's choices (a few dozen), and an architecture's sum is a table
    lookup per layer slot. The result equals :func:`predict` up to the order of the floating-point
    sum (relative differences ~1e-15). Encodings are not validated here (the caller does).
    """

    def __init__(self, space: str | SearchSpace, setting: Any, device: str | DeviceSpec,
                 params: RooflineParams | None = None, decode_tokens: int = DEFAULT_DECODE_TOKENS):
        sp = self.space = get_space(space)
        spec = self.spec = _spec(device)
        st = self.setting = resolve_setting(setting)
        p = self.params = _params(spec, params)
        lm = sp.max_layers
        ne, nh, nm, nb = (len(sp.embed_dim_choices), len(sp.n_head_choices), len(sp.mlp_ratio_choices),
                          len(sp.bias_choices))
        # one row per (embed, heads, mlp, bias) index, heads/mlp index nh/nm = PAD (a dead layer);
        # only layer slot 0 is used, the other slots are empty (no work, no overhead)
        e, h, r, bi = (x.ravel() for x in np.meshgrid(np.arange(ne), np.arange(nh + 1), np.arange(nm + 1),
                                                        np.arange(nb), indexing="ij"))
        t = costs.layer_tables(sp)
        E = t.embed[e].astype(float)[:, None]
        H = np.zeros((len(e), lm))
        R = np.zeros((len(e), lm))
        H[:, 0] = t.heads[np.where(h == nh, -1, h)]
        R[:, 0] = t.mlp[np.where(r == nm, -1, r)]
        H[:, 0] = np.where(r == nm, 0.0, H[:, 0])  # a layer is live only with both choices set
        R[:, 0] = np.where(h == nh, 0.0, R[:, 0])
        bias = t.bias[bi].astype(float)[:, None]
        names, flops, nbytes, live = _operator_arrays(sp, st, decode_tokens, E, H, R, bias)
        peak, bw = spec.peak_flops(st.dtype), spec.bandwidth_bytes
        t_ops = _op_times(flops, nbytes, live, peak, bw, p.eff_compute, p.eff_memory, p.overhead_s)
        b_ops = _busy_times(flops, nbytes, live, peak, bw)
        layer = [j for j, n in enumerate(names) if n.startswith("L0.")]
        glob = [names.index(n) for n in GLOBAL_OPS]
        self._layer_t, self._layer_busy = t_ops[:, layer].sum(1), b_ops[:, layer].sum(1)  # by combination
        first = (h == 0) & (r == 0) & (bi == 0)  # one row per embed index, in order
        self._global_t, self._global_busy = t_ops[first][:, glob].sum(1), b_ops[first][:, glob].sum(1)
        self._shape = (nh + 1, nm + 1, nb)
        self._tdp, self._idle_fraction = spec.tdp_w, p.idle_fraction
        self.dtype = st.dtype

    def evaluate(self, enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(latency_ms, energy_mj)``, float64 arrays (N,), of a valid ``(N, encoding_length)`` integer
        encoding matrix (decode: per token), as :func:`predict` computes them."""
        lm = self.space.max_layers
        nh1, nm1, nb = self._shape
        enc = np.asarray(enc)
        e = enc[:, 0].astype(np.intp)
        h = enc[:, 2 + lm:2 + 2 * lm].astype(np.intp) % nh1  # PAD (-1) -> nh, the dead-layer row
        r = enc[:, 2:2 + lm].astype(np.intp) % nm1
        idx = ((e[:, None] * nh1 + h) * nm1 + r) * nb + enc[:, -1:].astype(np.intp)
        t, busy = self._global_t[e], self._global_busy[e]
        for j in range(lm):  # layer by layer: the same sum whatever the batch (bit for bit)
            t = t + self._layer_t[idx[:, j]]
            busy = busy + self._layer_busy[idx[:, j]]
        lat, energy, _, _ = _latency_energy(t, busy, self._tdp, self._idle_fraction)
        return lat, energy


# --------------------------------------------------------------------------- calibration
def _measured_value(v: Any) -> float:
    arr = np.asarray(v, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0 or np.any(arr <= 0):
        raise ValueError(f"invalid measurement: {v!r}; allowed: positive finite ms (a value or repeats)")
    return float(np.median(arr))


def calibrate_many(observations: Iterable[tuple[Any, Mapping[str, Any]]], archs: Sequence[Architecture],
                   device: str | DeviceSpec, *, start: RooflineParams | None = None,
                   decode_tokens: int = DEFAULT_DECODE_TOKENS, label: str | None = None,
                   prior_weight: float = 1e-4) -> RooflineParams:
    """Fit ``eff_compute``, ``eff_memory`` and ``overhead_s`` to measured latencies of one device.

    ``observations``: ``(setting, {arch_id: ms})`` pairs — ms a value or the repeats (median is
    used; decode values per token, as :func:`measure_latency` returns them). ``archs``: the
    architectures the ids refer to (others are ignored). ``device``: the spec describing the
    measured device (e.g. ``devices.with_threads(get_device("cpu-epyc-7513"), 2)``). Mixing
    settings (prefill and decode, several batches) makes all three parameters identifiable:
    prefill at large batch pins ``eff_compute``, small-batch decode ``eff_memory`` and
    ``overhead_s``. Returns parameters with ``fitted_on``, ``rmse_log`` (after) and
    ``rmse_log_start`` (with ``start``, default :data:`DEFAULT_PARAMS`) filled in;
    ``idle_fraction`` is carried over from ``start``.

    A weak prior ``prior_weight * |log theta - log theta_start|^2`` is added to the loss: it does
    not move parameters the data determine, but keeps one the data cannot see (e.g. ``eff_memory``
    when no measured operator is memory-bound) at its start value instead of letting it drift
    to a bound. ``prior_weight=0`` disables it.
    """
    from scipy.optimize import least_squares

    spec = _spec(device)
    p0 = _params(spec, start)
    by_id = {a.id: a for a in archs}
    groups = []  # (table, peak, bw, y)
    for setting, measured in observations:
        st = resolve_setting(setting)
        ids = [i for i in measured if i in by_id]
        if not ids:
            continue
        table = operator_table([by_id[i] for i in ids], st, decode_tokens)
        y = np.array([_measured_value(measured[i]) for i in ids]) / 1e3
        groups.append((table, spec.peak_flops(st.dtype), spec.bandwidth_bytes, y))
    n_obs = sum(len(g[3]) for g in groups)
    if n_obs < 3:
        raise ValueError(f"invalid observations: {n_obs} usable measurements; allowed: at least 3 whose ids are in archs")

    names = ("eff_compute", "eff_memory", "overhead_s")
    lo = np.log([_BOUNDS[k][0] for k in names])
    hi = np.log([_BOUNDS[k][1] for k in names])

    theta_start = np.log([p0.eff_compute, p0.eff_memory, p0.overhead_s])
    prior = np.sqrt(max(0.0, float(prior_weight)))

    def data_residuals(theta):
        ec, em, oh = np.exp(theta)
        out = [np.log(_op_times(tb.flops, tb.bytes, tb.live, pk, bw, ec, em, oh).sum(1)) - np.log(y)
               for tb, pk, bw, y in groups]
        return np.concatenate(out)

    def residuals(theta):
        return np.concatenate([data_residuals(theta), prior * (theta - theta_start)])

    rmse0 = float(np.sqrt(np.mean(data_residuals(theta_start) ** 2)))
    best = None
    starts = [theta_start] + [np.clip(theta_start + d, lo, hi) for d in
                              (np.log([0.25, 0.25, 4.0]), np.log([4.0, 4.0, 0.25]), np.log([1.0, 1.0, 0.1]),
                               np.log([0.5, 2.0, 10.0]))]
    for s in starts:
        r = least_squares(residuals, np.clip(s, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), method="trf",
                          x_scale=1.0, diff_step=1e-4, xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
        if best is None or r.cost < best.cost:
            best = r
    ec, em, oh = (float(v) for v in np.exp(best.x))
    rmse = float(np.sqrt(np.mean(data_residuals(best.x) ** 2)))
    return replace(p0, eff_compute=ec, eff_memory=em, overhead_s=oh, rmse_log=rmse, rmse_log_start=rmse0,
                   n_obs=n_obs, fitted_on=label or f"{spec.id}: {n_obs} measured latencies")


def calibrate(measured: Mapping[str, Any], archs: Sequence[Architecture], setting: Any, device: str | DeviceSpec,
              **kwargs) -> RooflineParams:
    """:func:`calibrate_many` for one setting: ``measured`` maps arch id -> ms (value or repeats)."""
    return calibrate_many([(setting, measured)], archs, device, **kwargs)


def calibrate_energy(measured_mj: Mapping[str, Any], archs: Sequence[Architecture], setting: Any,
                     device: str | DeviceSpec, params: RooflineParams,
                     decode_tokens: int = DEFAULT_DECODE_TOKENS) -> RooflineParams:
    """Fit ``idle_fraction`` to measured energies (mJ per forward) given calibrated latency
    ``params``: ``E = TDP u t + P_idle (1 - u) t`` is linear in ``P_idle`` — closed-form least
    squares, clipped to [0, TDP]."""
    spec = _spec(device)
    by_id = {a.id: a for a in archs}
    ids = [i for i in measured_mj if i in by_id]
    if not ids:
        raise ValueError("invalid measured_mj: no id is in archs")
    res = predict([by_id[i] for i in ids], setting, spec, params, decode_tokens)
    e = np.array([_measured_value(measured_mj[i]) for i in ids]) / 1e3  # J
    t = res.latency_ms / 1e3
    u = res.utilisation
    x = (1 - u) * t
    idle = float(np.dot(e - spec.tdp_w * u * t, x) / max(np.dot(x, x), 1e-300))
    return replace(params, idle_fraction=float(np.clip(idle / spec.tdp_w, 0.0, 1.0)))
