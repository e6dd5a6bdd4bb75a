"""A multi-objective NAS problem: objectives over a search space, evaluated through the query API.

An :class:`Objective` is one ``(metric, device, setting)`` triple with fixed normalisation bounds;
every objective is **minimised** (``token_accuracy`` enters as the error ``1 - token_accuracy``).
A :class:`Problem` evaluates architectures through an *evaluator* — by default a
:class:`benchmark.Benchmark`, or any object with the same ``query_batch`` (tests use a small
analytic one) — grouping objectives by ``(device, setting)`` so that a batch of evaluations costs
one query per group (a Benchmark's :meth:`~benchmark.Benchmark.values_function`, made once per
group, or ``query_batch`` with noise or another evaluator).

Search domain (``candidates``)
    ``"space"``: any architecture of the space (needs the benchmark's surrogates for architectures
    that were not profiled, i.e. ``mode="auto"`` or ``"surrogate"``). ``"table"``: only the
    architectures of the table — the classic tabular-benchmark setting; every proposal is
    projected onto the nearest profiled architecture (Hamming distance of the encodings, ties to
    the lower table row), so any algorithm works unchanged.

Repair
    Algorithms that work on integer vectors (pymoo, botorch) propose one gene per encoding
    position. :meth:`Problem.repair_genes` turns any such vector into a valid architecture
    deterministically: genes are rounded and clipped to their choice range, and per-layer genes
    beyond ``n_layer`` are ignored (set to padding) — they stay in the algorithm's genome as
    dormant genes, only the decoded architecture drops them.

Evaluation cost (the simulated clock)
    Each evaluation advances a simulated clock by what profiling the architecture for real would
    have cost, in seconds:

    * ``overhead_s`` (default 2 s): extracting the sub-network from the supernet and building it;
    * perplexity (when perplexity or token accuracy is an objective):
      ``eval_tokens × FLOPs-per-token / cpu_flops`` — the held-out split
      (``eval_tokens`` default 65,536) through the model at ``cpu_flops`` (default 2e10 FLOP/s,
      a stated effective fp32 throughput of two CPU cores), with FLOPs per token the exact
      prefill FLOPs at the space's context (:func:`benchmark.costs.flops_prefill`) / context;
    * hardware, for each device of a hardware objective and each setting of that device used by the
      problem's objectives: ``(warmup + repeats) × latency`` (defaults 3 + 10, the profiler's), where
      latency is the queried ``latency_ms`` (decode settings: ms per token ×
      ``decode_tokens`` = 16 tokens per timed call).

    Re-evaluating an architecture already evaluated in the run counts as an evaluation but costs
    no simulated time (its values are looked up), and returns the same values.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark import costs
from benchmark.errors import HwlmError
from benchmark.query.execute import QUERY_MODES
from benchmark.query.fastpath import load_compiled
from benchmark.settings import DEFAULT_DECODE_TOKENS
from benchmark.spaces import PAD, Architecture, SearchSpace, get_space
from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS

__all__ = ["Objective", "Problem", "ProblemError", "CostModel", "METRICS", "resolve_device"]


class ProblemError(HwlmError):
    """Invalid objective, problem option, suite, device role, results file or run."""


def _fail(field_: str, value: Any, allowed: Any) -> ProblemError:
    return ProblemError.invalid(field_, value, allowed)


# metric -> (needs device, needs setting)
METRICS: dict[str, tuple[bool, bool]] = {
    "perplexity": (False, False),
    "token_accuracy": (False, False),
    "params": (False, False),
    "flops": (False, True),
    "latency_ms": (True, True),
    "energy_mj": (True, True),
    "memory_mb": (True, True),
}
CANDIDATES = ("space", "table")


@dataclass(frozen=True)
class Objective:
    """One minimised objective with fixed normalisation ``[lower, upper]`` (log-scaled if ``log``)."""

    metric: str
    device: str | None = None
    setting: str | None = None
    lower: float = 0.0
    upper: float = 1.0
    log: bool = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise _fail("objective metric", self.metric, sorted(METRICS))
        need_dev, need_set = METRICS[self.metric]
        if need_dev and not self.device:
            raise _fail(f"device of objective {self.metric!r}", self.device, "a device id (the metric is per device)")
        if need_set and not self.setting:
            raise _fail(f"setting of objective {self.metric!r}", self.setting, "a setting name, e.g. 'prefill-b1-s256-fp32'")
        if not need_dev and self.device is not None:
            raise _fail(f"device of objective {self.metric!r}", self.device, "None (the metric is device-independent)")
        if not need_set and self.setting is not None:
            raise _fail(f"setting of objective {self.metric!r}", self.setting, "None (the metric has no setting)")
        lo, hi = float(self.lower), float(self.upper)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or (self.log and lo <= 0):
            raise _fail(f"bounds of objective {self.label}", [self.lower, self.upper],
                        "finite lower < upper (and lower > 0 when log-scaled)")

    @property
    def label(self) -> str:
        name = "token_error" if self.metric == "token_accuracy" else self.metric
        parts = [name] + [p for p in (self.device, self.setting) if p]
        return "@".join(parts)

    @property
    def group(self) -> tuple[str | None, str | None]:
        return (self.device, self.setting)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Raw metric values -> minimised objective values (accuracy becomes error)."""
        v = np.asarray(values, dtype=float)
        return 1.0 - v if self.metric == "token_accuracy" else v

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Objective values -> normalised space: ``lower`` -> 0, ``upper`` -> 1 (log scale if ``log``)."""
        v = np.asarray(values, dtype=float)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                return (np.log(v) - math.log(self.lower)) / (math.log(self.upper) - math.log(self.lower))
        return (v - self.lower) / (self.upper - self.lower)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "device": self.device, "setting": self.setting,
                "lower": self.lower, "upper": self.upper, "log": self.log}


@dataclass(frozen=True)
class CostModel:
    """Parameters of the simulated clock (see the module docstring)."""

    overhead_s: float = 2.0
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    cpu_flops: float = 2e10
    warmup: int = 3
    repeats: int = 10
    decode_tokens: int = DEFAULT_DECODE_TOKENS

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _device_kind(device_id: str, meta: Mapping[str, Any]) -> str | None:
    kind = meta.get("kind")
    if kind:
        return str(kind)
    for k in ("cpu", "gpu"):
        if device_id.startswith(k + "-"):
            return k
    return None


def resolve_device(role: str, devices: Mapping[str, Mapping[str, Any]]) -> str:
    """A device id, or a role ``kind:source[:substring]`` (e.g. ``cpu:measured``,
    ``gpu:modeled:h100``) resolved against ``devices`` (``Benchmark.devices()``): the first id in
    sorted order of that kind and source containing the substring."""
    if not isinstance(role, str) or not role:
        raise _fail("device", role, "a device id or a role 'kind:source[:substring]'")
    listing = ", ".join(f"{d} ({m.get('kind') or '?'}, {m.get('source')})" for d, m in sorted(devices.items())) or "none"
    if ":" not in role:
        if role not in devices:
            raise ProblemError(f"invalid device: {role!r} is not in the table; devices there: {listing}")
        return role
    parts = role.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("cpu", "gpu") or parts[1] not in ("measured", "modeled", "any"):
        raise _fail("device role", role, "'cpu|gpu:measured|modeled|any[:substring]' or a device id")
    kind, source = parts[0], parts[1]
    sub = parts[2] if len(parts) == 3 else ""
    hits = sorted(d for d, m in devices.items()
                  if _device_kind(d, m) == kind and (source == "any" or m.get("source") == source) and sub in d)
    if not hits:
        raise ProblemError(f"invalid device role {role!r}: no {source} {kind} device"
                           f"{f' containing {sub!r}' if sub else ''} in the table; devices there: {listing} "
                           f"(name one explicitly, e.g. --device {role}=ID)")
    return hits[0]


class Problem:
    """Objectives over a search space, evaluated through the evaluator's queries (module docstring).

    ``evaluate(archs)`` returns the (n, m) objective values (raw units, minimised) and advances
    ``clock_s`` (simulated seconds) and ``n_evals``; ``last_clock`` holds the clock after each of
    its evaluations (one after another, so it does not depend on how evaluations are batched) and
    ``last_ids`` their architecture ids;
    ``normalise(F)`` maps them to the suite's normalised space. ``query_s`` accumulates wall time
    spent inside the evaluator (and encoding its input), ``query_cpu_s`` the same in thread CPU time.
    """

    def __init__(self, objectives: Sequence[Objective], evaluator: Any = None, *, space: str | SearchSpace | None = None,
                 mode: str = "auto", noise: bool = False, candidates: str = "space",
                 cost_model: CostModel | None = None, noise_seed: int = 0, release: str | None = None):
        if not objectives:
            raise _fail("objectives", objectives, "at least one Objective")
        self.objectives = tuple(objectives)
        for o in self.objectives:
            if not isinstance(o, Objective):
                raise _fail("objective", o, "an Objective")
        labels = [o.label for o in self.objectives]
        if len(set(labels)) != len(labels):
            raise _fail("objectives", labels, "distinct (metric, device, setting) triples")
        if mode not in QUERY_MODES:
            raise _fail("mode", mode, list(QUERY_MODES))
        if candidates not in CANDIDATES:
            raise _fail("candidates", candidates, list(CANDIDATES))
        from benchmark import Benchmark  # the query API

        if evaluator is None:
            evaluator = Benchmark(space=space or "t", path=release)
        self.evaluator = evaluator
        # a NAS loop uses values only: ask the query API not to compute 5-95 % intervals (the
        # surrogates' quantile models) where it offers that switch (Benchmark does; plain evaluators
        # with the bare query_batch signature need not)
        try:
            takes = "intervals" in inspect.signature(evaluator.query_batch).parameters
        except (TypeError, ValueError):
            takes = False
        self._batch_options = {"intervals": False} if takes else {}
        # the query API takes the validated encodings as they are (other evaluators get the array),
        # and without noise answers from a function with each group's plan made once
        self._trusted_input = isinstance(evaluator, Benchmark)
        self._values: dict[tuple, Any] = {}  # group -> Benchmark.values_function, made on first use
        if self._trusted_input and not noise:  # many small queries: the values-only path's compiled kernels
            load_compiled()  # (where numba is installed)
        self.space: SearchSpace = get_space(space if space is not None else evaluator.space)
        if space is not None and get_space(evaluator.space).name != self.space.name:
            raise _fail("space", self.space.name, f"{get_space(evaluator.space).name!r} (the evaluator's space)")
        self.mode, self.noise, self.candidates = mode, bool(noise), candidates
        self.cost_model = cost_model or CostModel()
        self.noise_seed = int(noise_seed)
        self.choices = np.asarray(self.space.encoding_choices, dtype=np.int64)
        # query groups: (device, setting) -> metrics fetched in one query: each hardware
        # objective's metric plus latency_ms (for the clock); device-independent metrics ride along
        # with the first hardware group (flops: one with the same setting), else get their own group.
        groups: dict[tuple, list[str]] = {}
        for o in self.objectives:
            if o.device is not None:
                groups.setdefault(o.group, [])
                for m in (o.metric, "latency_ms"):
                    if m not in groups[o.group]:
                        groups[o.group].append(m)
        hw_keys = sorted(groups)
        self._where: list[tuple] = []
        for o in self.objectives:
            target = o.group
            if o.device is None:
                fit = [k for k in hw_keys if o.setting is None or k[1] == o.setting]
                target = fit[0] if fit else o.group
                groups.setdefault(target, [])
                if o.metric not in groups[target]:
                    groups[target].append(o.metric)
            self._where.append(target)
        self._groups = groups
        self._perplexity_pass = any(o.metric in ("perplexity", "token_accuracy") for o in self.objectives)
        self._flops_per_token_cache: dict[str, float] = {}
        self._cache: dict[str, np.ndarray] = {}
        self._table_archs: list[Architecture] | None = None
        self._table_enc: np.ndarray | None = None
        self.n_evals = 0
        self.clock_s = 0.0
        self.last_clock = np.empty(0)
        self.last_ids: list[str] = []
        self.query_s = self.query_cpu_s = 0.0
        self._n_queries = 0
        if candidates == "table":
            self._load_table_candidates()

    # ------------------------------------------------------------------ properties
    @property
    def n_obj(self) -> int:
        return len(self.objectives)

    @property
    def labels(self) -> list[str]:
        return [o.label for o in self.objectives]

    def reset(self, noise_seed: int | None = None) -> None:
        """Forget evaluations and the clock (one problem object can serve several runs)."""
        self._cache.clear()
        self.n_evals, self.clock_s, self.query_s, self.query_cpu_s, self._n_queries = 0, 0.0, 0.0, 0.0, 0
        self.last_clock = np.empty(0)
        self.last_ids = []
        if noise_seed is not None:
            self.noise_seed = int(noise_seed)

    # ------------------------------------------------------------------ domain
    def _load_table_candidates(self) -> None:
        ids = None
        for attr in ("table_ids", "ids"):
            f = getattr(self.evaluator, attr, None)
            if f is not None:
                ids = f() if callable(f) else f
                break
        if ids is None:
            table = getattr(self.evaluator, "table", None)
            if table is not None and hasattr(table, "ids"):
                ids = table.ids
        if ids is None:
            raise ProblemError("candidates='table' needs an evaluator that lists its table architectures "
                               "(attribute 'table' with 'ids', or 'table_ids()'); this one does not")
        archs = [self.space.from_id(str(i)) for i in ids]
        if not archs:
            raise ProblemError("candidates='table': the table has no architectures")
        self._table_archs = archs
        self._table_enc = self.space.encode_many(archs).astype(np.int16)
        self._table_index = {a.id: i for i, a in enumerate(archs)}

    @property
    def table_architectures(self) -> list[Architecture] | None:
        return None if self._table_archs is None else list(self._table_archs)

    def project(self, arch: Architecture) -> Architecture:
        """The architecture itself (``candidates="space"``) or the nearest table architecture."""
        if self._table_archs is None:
            return arch
        i = self._table_index.get(arch.id)
        if i is not None:
            return arch
        d = (self._table_enc != arch.encoding().astype(np.int16)[None, :]).sum(axis=1)
        return self._table_archs[int(np.argmin(d))]

    def repair_genes(self, genes: Sequence[float] | np.ndarray) -> Architecture:
        """Any vector of ``encoding_length`` numbers -> a valid architecture (deterministic)."""
        x = np.asarray(genes, dtype=float).reshape(-1)
        if x.shape[0] != self.space.encoding_length:
            raise _fail("genes", x.shape[0], f"{self.space.encoding_length} values (the encoding length)")
        x = np.where(np.isfinite(x), x, 0.0)
        g = np.clip(np.rint(x), 0, self.choices - 1).astype(np.int64)
        lm = self.space.max_layers
        n_layer = self.space.n_layer_choices[int(g[1])]
        g[2 + n_layer:2 + lm] = PAD
        g[2 + lm + n_layer:2 + 2 * lm] = PAD
        return self.project(self.space.decode(g))

    def genes(self, arch: Architecture) -> np.ndarray:
        """Encoding with padding replaced by 0 (a full integer genome for vector algorithms)."""
        e = arch.encoding().astype(np.int64)
        return np.where(e == PAD, 0, e)

    def sample(self, rng: np.random.Generator, n: int) -> list[Architecture]:
        """``n`` architectures: uniform over the space, or over the table rows (with replacement)."""
        if self._table_archs is None:
            return self.space.sample(rng, n=n)
        idx = rng.integers(len(self._table_archs), size=n)
        return [self._table_archs[int(i)] for i in idx]

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """One-choice neighbours (projected and de-duplicated in table mode, never ``arch`` itself)."""
        out, seen = [], {arch.id}
        for nb in self.space.neighbours(arch):
            p = self.project(nb)
            if p.id not in seen:
                seen.add(p.id)
                out.append(p)
        return out

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A mutation (:meth:`SearchSpace.mutate`), projected in table mode; differs from ``arch`` when possible."""
        for _ in range(20):
            m = self.project(self.space.mutate(arch, rng))
            if m != arch:
                return m
        return m

    # ------------------------------------------------------------------ evaluation
    def _count_query_time(self, since: tuple[float, float]) -> None:
        """Add the wall and thread-CPU time since ``since = (perf_counter(), thread_time())`` (the wall
        clock read last there and first here, so that neither window holds the other clock's syscall)."""
        self.query_s += time.perf_counter() - since[0]
        self.query_cpu_s += time.thread_time() - since[1]

    def _ask(self, enc: costs.EncodedBatch, group: tuple, metrics: list[str], seed: int | None) -> Mapping:
        """The group's values for ``enc``: from the Benchmark's values function (no noise), else one
        ``query_batch`` call (``as_frame=False``: a dict of arrays, cheaper than a DataFrame)."""
        device, setting = group
        if self._trusted_input and not self.noise:
            f = self._values.get(group)
            if f is None:
                f = self._values[group] = self.evaluator.values_function(metrics, device, setting, self.mode)
            return f(enc)
        return self.evaluator.query_batch(enc if self._trusted_input else enc.encodings, metrics=metrics,
                                          device=device, setting=setting, mode=self.mode, noise=self.noise,
                                          seed=seed if self.noise else None, as_frame=False, **self._batch_options)

    def warmup(self) -> None:
        """Query a fixed sample once per group (not counted, not cached), so that the benchmark's lazy
        loading (table columns, surrogate models, their libraries) happens before a timed run."""
        # a seed unlikely to be a release's sampling seed reaches both the table and the surrogate
        # path; one large and one single-row call (the query API may treat them differently)
        sample = [self.project(x) for x in self.space.sample(0x6D6F6F, n=64)]
        for group, metrics in self._groups.items():
            for a in (sample, sample[-1:]):
                try:
                    self._ask(costs.EncodedBatch(self.space, self.space.encode_many(a), False), group, metrics, 0)
                except ValueError:  # table mode and an architecture that was not profiled
                    pass

    def evaluate(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Objective values (n, m), minimised, raw units. Advances ``n_evals`` and ``clock_s``."""
        archs = [self.space.validate(a) for a in archs]
        ids = [a.id for a in archs]
        F = np.empty((len(archs), self.n_obj))
        fresh: dict[str, Architecture] = {}  # id -> architecture, first occurrence, in order
        for a, i in zip(archs, ids):
            if i not in self._cache and i not in fresh:
                fresh[i] = a
        new = list(fresh.values())
        if new:
            # noise: one seed per batch, derived from the run's noise seed and the evaluation count
            seed = None
            if self.noise:
                seed = int(np.random.SeedSequence([self.noise_seed, self.n_evals]).generate_state(1)[0])
            cols: dict[tuple, np.ndarray] = {}
            latency: dict[tuple, np.ndarray] = {}
            # the queries, timed as one: encoding the batch once into the query API's fastest input
            # form (validated encodings it does not check again; the simulated clock reuses them),
            # then one query per group
            # the thread's clock first: reading it is a syscall, where the kernel switches out a process
            # due to be preempted; read inside the wall-clock window, it charged that wait to the queries
            cpu0 = time.thread_time()
            t0 = (time.perf_counter(), cpu0)
            enc = costs.EncodedBatch(self.space, self.space.encode_many(new), False)
            answers = [self._ask(enc, group, metrics, seed) for group, metrics in self._groups.items()]
            self._count_query_time(t0)
            self._n_queries += len(answers)
            for (group, metrics), df in zip(self._groups.items(), answers):
                for m in metrics:
                    cols[(m, group)] = np.asarray(df[m], dtype=float)
                if "latency_ms" in metrics and group[0] is not None:
                    latency[group] = np.asarray(df["latency_ms"], dtype=float)
            values = np.empty((len(new), self.n_obj))
            for j, o in enumerate(self.objectives):
                v = o.transform(cols[(o.metric, self._where[j])])
                bad = ~np.isfinite(v)
                if bad.any():
                    i = int(np.argmax(bad))
                    raise ProblemError(f"objective {o.label} is missing (NaN) for architecture {new[i].id}; "
                                       f"choose another metric/device/setting or mode (mode={self.mode!r})")
                values[:, j] = v
            cost = dict(zip(fresh, self._simulated_cost(enc, latency).tolist()))
            for i, v in zip(fresh, values):
                self._cache[i] = v
        # the clock after each evaluation, in order: a first evaluation adds its cost, a repeated one nothing
        clock = self.clock_s
        self.last_clock = np.empty(len(archs))
        for k, i in enumerate(ids):
            F[k] = self._cache[i]
            if new:
                clock += cost.pop(i, 0.0)
            self.last_clock[k] = clock
        self.clock_s = clock
        self.last_ids = ids
        self.n_evals += len(archs)
        return F

    def simulated_cost(self, archs: Sequence[Architecture] | np.ndarray,
                       latency_ms: Mapping[tuple, np.ndarray]) -> np.ndarray:
        """Simulated seconds to profile each architecture (module docstring), given queried latencies;
        ``archs``: Architectures or their ``(N, encoding_length)`` encoding matrix."""
        a = archs if isinstance(archs, np.ndarray) else list(archs)
        return self._simulated_cost(costs.encoded_batch(a, self.space), latency_ms)

    def _simulated_cost(self, batch, latency_ms: Mapping[tuple, np.ndarray]) -> np.ndarray:
        """:meth:`simulated_cost` of a validated :class:`benchmark.costs.EncodedBatch`."""
        cm = self.cost_model
        ctx = self.space.block_size
        total = np.full(len(batch.embed), cm.overhead_s)
        if self._perplexity_pass:
            fl = np.asarray(costs.flops_prefill(batch, batch=1, seq_len=ctx), dtype=float) / ctx
            total = total + cm.eval_tokens * fl / cm.cpu_flops
        for (device, setting), lat in latency_ms.items():
            per_call = np.nan_to_num(lat, nan=0.0)
            if str(setting).startswith("decode"):
                per_call = per_call * cm.decode_tokens
            total = total + (cm.warmup + cm.repeats) * per_call / 1e3
        return np.asarray(total, dtype=float)

    def normalise(self, F: np.ndarray) -> np.ndarray:
        F = np.atleast_2d(np.asarray(F, dtype=float))
        return np.column_stack([o.normalise(F[:, j]) for j, o in enumerate(self.objectives)])

    def reference_front(self) -> np.ndarray | None:
        """The best-known front (objective values) from ``evaluator.pareto_front``, or None if unavailable."""
        f = getattr(self.evaluator, "pareto_front", None)
        if f is None:
            return None
        front = f([(o.metric, o.device, o.setting) for o in self.objectives])
        cols = []
        for o in self.objectives:
            col = None
            if hasattr(front, "columns"):
                names = (f"{o.metric}@{o.device}@{o.setting}", f"flops@{o.setting}") if o.setting else (o.metric,)
                for c in names:
                    if c in front.columns:
                        col = np.asarray(front[c], dtype=float)
                        break
            if col is None:
                return None
            cols.append(o.transform(col))
        F = np.column_stack(cols)
        return F[np.all(np.isfinite(F), axis=1)]

    def describe(self) -> dict:
        return {"space": self.space.name, "objectives": [o.to_dict() for o in self.objectives], "mode": self.mode,
                "noise": self.noise, "candidates": self.candidates, "cost_model": self.cost_model.to_dict()}
