"""Multi-objective NAS algorithms behind one ask/tell interface.

An algorithm is a class with

* ``setup(problem, seed, budget)`` — called once per run; ``problem`` is a
  :class:`benchmark.moo.problems.Problem` (its ``space``, ``sample``, ``neighbours``, ``mutate``,
  ``repair_genes``, ``genes``, ``n_obj``);
* ``ask() -> list[Architecture]`` — the next batch to evaluate (any length ≥ 1);
* ``tell(archs, F)`` — the same architectures (possibly fewer: the runner truncates the last
  batch to the budget) with their objective values ``F`` (n, m) in the suite's **normalised**
  space (all objectives minimised, 0..1 between the suite's bounds).

Every random choice comes from the seed given to ``setup``; the same seed gives the same
proposals. :func:`register_algorithm` adds a user-defined algorithm to the registry by name (this
process only); :func:`get_algorithm` also accepts ``"module:attr"`` and the names of installed
``hwlm.algorithms`` entry points, which worker processes resolve the same way.

Own (small) algorithms: ``random`` (uniform sampling), ``local`` (Pareto local search over
one-choice neighbourhoods with random restarts), ``morea`` (regularised evolution — aging
population, tournament by non-dominated rank, then crowding — with multi-objective selection).
Library algorithms, through adapters only: ``nsga2``, ``smsemoa``, ``moead`` (pymoo, integer
genome with pymoo's SBX/PM + rounding repair), ``motpe``, ``nsga3`` (optuna samplers,
define-by-run categorical parameters: per-layer parameters exist only for live layers) and the
optional, slow ``qnehvi`` (botorch qLogNEHVI on GP models, optimised over a seeded pool of
candidates; needs the ``moo-bayes`` extra).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from benchmark.spaces import Architecture

__all__ = ["Algorithm", "ALGORITHMS", "SLOW_ALGORITHMS", "ENTRY_POINT_GROUP", "get_algorithm", "register_algorithm",
           "resolve_algorithm", "available_algorithms", "nondominated_rank", "crowding"]


class Algorithm:
    """Base class: subclasses implement ``ask`` and ``tell``; ``setup`` stores problem, seed and budget."""

    name = "algorithm"

    def setup(self, problem, seed: int, budget: int) -> None:
        self.problem = problem
        self.seed = int(seed)
        self.budget = int(budget)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x6d6f6f]))

    def ask(self) -> list[Architecture]:
        raise NotImplementedError

    def tell(self, archs: Sequence[Architecture], F: np.ndarray) -> None:
        pass


# ---------------------------------------------------------------------------- helpers
def nondominated_rank(F: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank (0 = non-dominated), minimisation."""
    import moocore

    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(moocore.pareto_rank(F), dtype=int)


def crowding(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one set (boundary points get +inf)."""
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        o = np.argsort(F[:, j], kind="stable")
        span = F[o[-1], j] - F[o[0], j]
        d[o[0]] = d[o[-1]] = np.inf
        if span > 0:
            d[o[1:-1]] += (F[o[2:], j] - F[o[:-2], j]) / span
    return d


def _nondominated_mask(F: np.ndarray) -> np.ndarray:
    import moocore

    return np.asarray(moocore.is_nondominated(np.asarray(F, dtype=float), keep_weakly=False), dtype=bool)


# ---------------------------------------------------------------------------- own algorithms
class RandomSearch(Algorithm):
    """Uniform random sampling over the problem's domain, ``batch`` at a time; ``batch=None``
    (default): the whole remaining budget in one ask, so that all evaluations share one query per
    objective group. Samples are drawn one after another from the run's generator, so the batch
    size does not change what is sampled (nor, with the runner's per-evaluation clock, any recorded
    value of a noise-free suite); it only changes how many evaluations share a query."""

    name = "random"

    def __init__(self, batch: int | None = None):
        self.batch = None if batch is None else int(batch)
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"invalid batch: {batch!r}; allowed: an integer >= 1 or None (the remaining budget)")

    def setup(self, problem, seed, budget):
        super().setup(problem, seed, budget)
        self.asked = 0

    def ask(self):
        n = max(1, self.budget - self.asked)
        n = n if self.batch is None else min(n, self.batch)
        self.asked += n
        return self.problem.sample(self.rng, n)


class LocalSearch(Algorithm):
    """Pareto local search: evaluate the one-choice neighbours of a not-yet-explored member of the
    non-dominated archive (chosen at random); when every archive member is explored, restart from
    ``n_init`` random architectures."""

    name = "local"

    def __init__(self, n_init: int = 10, batch: int = 64):
        self.n_init, self.batch = int(n_init), int(batch)

    def setup(self, problem, seed, budget):
        super().setup(problem, seed, budget)
        self.archive: dict[str, tuple[Architecture, np.ndarray]] = {}
        self.explored: set[str] = set()
        self.seen: set[str] = set()
        self.pending: list[Architecture] = []

    def ask(self):
        while not self.pending:
            todo = sorted(i for i in self.archive if i not in self.explored)
            if not todo:
                self.pending = self.problem.sample(self.rng, self.n_init)
                break
            centre = todo[int(self.rng.integers(len(todo)))]
            self.explored.add(centre)
            nbs = [a for a in self.problem.neighbours(self.archive[centre][0]) if a.id not in self.seen]
            self.pending = [nbs[i] for i in self.rng.permutation(len(nbs))]
        out, self.pending = self.pending[:self.batch], self.pending[self.batch:]
        return out

    def tell(self, archs, F):
        for a, f in zip(archs, np.asarray(F, dtype=float)):
            self.seen.add(a.id)
            if a.id not in self.archive:
                self.archive[a.id] = (a, f)
        ids = list(self.archive)
        keep = _nondominated_mask(np.array([self.archive[i][1] for i in ids]))
        self.archive = {i: self.archive[i] for i, k in zip(ids, keep) if k}


class MOREA(Algorithm):
    """Regularised (aging) evolution with multi-objective tournament selection.

    A population of ``population`` architectures (initially random) ages: every child replaces
    the oldest member. A parent is the winner of a tournament among ``sample`` random members:
    lowest non-dominated rank within the population, then largest crowding distance, then the
    youngest. The child is a mutation of the parent (:meth:`SearchSpace.mutate`).
    """

    name = "morea"

    def __init__(self, population: int = 20, sample: int = 5, batch: int = 4):
        self.population, self.sample, self.batch = int(population), int(sample), int(batch)

    def setup(self, problem, seed, budget):
        super().setup(problem, seed, budget)
        self.pop: list[tuple[Architecture, np.ndarray]] = []

    def ask(self):
        if len(self.pop) < self.population:
            return self.problem.sample(self.rng, min(self.batch * 2, self.population - len(self.pop)))
        F = np.array([f for _, f in self.pop])
        rank = nondominated_rank(F)
        crowd = crowding(F)
        children = []
        for _ in range(self.batch):
            idx = self.rng.choice(len(self.pop), size=min(self.sample, len(self.pop)), replace=False)
            best = min(idx, key=lambda i: (rank[i], -crowd[i], -i))
            children.append(self.problem.mutate(self.pop[best][0], self.rng))
        return children

    def tell(self, archs, F):
        for a, f in zip(archs, np.asarray(F, dtype=float)):
            self.pop.append((a, f))
        if len(self.pop) > self.population:
            self.pop = self.pop[len(self.pop) - self.population:]


# ---------------------------------------------------------------------------- pymoo adapters
class PymooAlgorithm(Algorithm):
    """Adapter for a pymoo algorithm on the integer genome (one gene per encoding position;
    dormant per-layer genes are kept in the genome and ignored when decoding)."""

    def __init__(self, pop_size: int = 20):
        self.pop_size = int(pop_size)

    def build(self, n_obj: int):
        raise NotImplementedError

    def setup(self, problem, seed, budget):
        super().setup(problem, seed, budget)
        from pymoo.core.problem import Problem as PymooProblem

        xu = problem.choices - 1
        self._pproblem = PymooProblem(n_var=len(xu), n_obj=problem.n_obj, xl=np.zeros(len(xu)), xu=xu.astype(float),
                                      vtype=int)
        self._alg = self.build(problem.n_obj)
        from pymoo.termination import get_termination

        self._alg.setup(self._pproblem, termination=get_termination("n_eval", 10**12), seed=self.seed, verbose=False)
        self._pop = None

    def ask(self):
        self._pop = self._alg.ask()  # a Population, or one Individual (MOEA/D asks one at a time)
        X = np.atleast_2d(self._pop.get("X"))
        return [self.problem.repair_genes(x) for x in X]

    def tell(self, archs, F):
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        from pymoo.core.individual import Individual

        pop = self._pop if isinstance(self._pop, Individual) else self._pop[:len(archs)]
        Evaluator().eval(StaticProblem(self._pproblem, F=np.asarray(F, dtype=float)), pop)
        self._alg.tell(infills=pop)

    @staticmethod
    def _operators():
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair
        from pymoo.operators.sampling.rnd import IntegerRandomSampling

        return dict(sampling=IntegerRandomSampling(),
                    crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                    mutation=PM(eta=20, vtype=float, repair=RoundingRepair()))


class NSGA2(PymooAlgorithm):
    name = "nsga2"

    def build(self, n_obj):
        from pymoo.algorithms.moo.nsga2 import NSGA2 as _NSGA2

        return _NSGA2(pop_size=self.pop_size, eliminate_duplicates=True, **self._operators())


class SMSEMOA(PymooAlgorithm):
    name = "smsemoa"

    def build(self, n_obj):
        from pymoo.algorithms.moo.sms import SMSEMOA as _SMS

        return _SMS(pop_size=self.pop_size, eliminate_duplicates=True, **self._operators())


def reference_directions(n_obj: int, target: int = 20) -> np.ndarray:
    """Das-Dennis directions: the largest number of partitions giving at most ``target`` directions."""
    from math import comb

    from pymoo.util.ref_dirs import get_reference_directions

    p = 1
    while comb(p + 1 + n_obj - 1, n_obj - 1) <= target:
        p += 1
    return get_reference_directions("das-dennis", n_obj, n_partitions=p)


class MOEAD(PymooAlgorithm):
    name = "moead"

    def __init__(self, pop_size: int = 20, n_neighbors: int = 5):
        super().__init__(pop_size)
        self.n_neighbors = int(n_neighbors)

    def build(self, n_obj):
        from pymoo.algorithms.moo.moead import MOEAD as _MOEAD

        dirs = reference_directions(n_obj, self.pop_size)
        return _MOEAD(ref_dirs=dirs, n_neighbors=min(self.n_neighbors, len(dirs)), **self._operators())


# ---------------------------------------------------------------------------- optuna adapters
class OptunaAlgorithm(Algorithm):
    """Adapter for an optuna sampler; categorical parameters ``embed_dim``, ``n_layer``, then
    ``mlp_ratio_i``/``n_head_i`` only for the live layers ``i < n_layer``, then ``bias``."""

    def __init__(self, batch: int = 4):
        self.batch = int(batch)

    def sampler(self, n_obj: int):
        raise NotImplementedError

    def setup(self, problem, seed, budget):
        super().setup(problem, seed, budget)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(directions=["minimize"] * problem.n_obj, sampler=self.sampler(problem.n_obj))
        self._trials: list = []

    def _arch(self, trial) -> Architecture:
        sp = self.problem.space
        e = trial.suggest_categorical("embed_dim", list(sp.embed_dim_choices))
        n = trial.suggest_categorical("n_layer", list(sp.n_layer_choices))
        mlps = [trial.suggest_categorical(f"mlp_ratio_{i}", list(sp.mlp_ratio_choices)) for i in range(n)]
        heads = [trial.suggest_categorical(f"n_head_{i}", list(sp.n_head_choices)) for i in range(n)]
        bias = trial.suggest_categorical("bias", list(sp.bias_choices))
        return self.problem.project(sp.arch(e, n, heads, mlps, bias))

    def ask(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._trials = [self.study.ask() for _ in range(self.batch)]
            return [self._arch(t) for t in self._trials]

    def tell(self, archs, F):
        import optuna

        F = np.asarray(F, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t, f in zip(self._trials, F):
                self.study.tell(t, values=[float(v) for v in f])
            for t in self._trials[len(F):]:  # truncated by the budget
                self.study.tell(t, state=optuna.trial.TrialState.FAIL)
        self._trials = []


class MOTPE(OptunaAlgorithm):
    name = "motpe"

    def sampler(self, n_obj):
        import optuna

        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=10)


class NSGA3(OptunaAlgorithm):
    """NSGA-III; by default one ask is one generation (``batch=None``: ``population`` trials): the
    sampler draws a generation's trials from the previous generation only, so asking them together
    proposes what asking them one by one would (as does any batch that divides ``population``), with
    one query per generation."""

    name = "nsga3"

    def __init__(self, batch: int | None = None, population: int = 20):
        self.population = int(population)
        super().__init__(self.population if batch is None else batch)

    def sampler(self, n_obj):
        import optuna

        return optuna.samplers.NSGAIIISampler(population_size=self.population, seed=self.seed,
                                              reference_points=reference_directions(n_obj, self.population))


# ---------------------------------------------------------------------------- botorch (optional, slow)
class QNEHVI(Algorithm):
    """Bayesian optimisation with botorch's qLogNEHVI (slow; optional ``moo-bayes`` extra).

    Features: the encoding as ordinal values in [0, 1] (padding 0). One independent GP per
    objective (``SingleTaskGP`` in a ``ModelListGP``). The acquisition is maximised over a pool of
    ``pool`` candidates — random architectures plus mutations of the current non-dominated
    set, drawn from the run's seed — rather than by continuous relaxation, so every candidate is a
    valid architecture.
    """

    name = "qnehvi"

    def __init__(self, n_init: int = 10, pool: int = 256, mc_samples: int = 32):
        self.n_init, self.pool, self.mc = int(n_init), int(pool), int(mc_samples)

    def setup(self, problem, seed, budget):
        super().setup(problem, seed, budget)
        import botorch  # noqa: F401 — fail early with ImportError when the extra is missing

        self.X: list[Architecture] = []
        self.Y: list[np.ndarray] = []

    def _features(self, archs):
        enc = self.problem.space.encode_many(archs).astype(float)
        return np.where(enc < 0, 0.0, (enc + 1.0) / self.problem.choices[None, :])

    def ask(self):
        if len(self.X) < self.n_init:
            return self.problem.sample(self.rng, self.n_init - len(self.X))
        import torch
        from botorch.acquisition.multi_objective import logei
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import ModelListGP, SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.sampling import SobolQMCNormalSampler
        from gpytorch.mlls import SumMarginalLogLikelihood

        # botorch would JIT-compile a C++ kernel (-march=native) here on first use: minutes, a compiler,
        # and a lock under ~/.cache that a killed run leaves for every later run to wait on forever.
        # Its pure-Python path computes the same acquisition, on any host; marking the load as done
        # selects it.
        logei._load_attempted = True
        torch.manual_seed(self.seed * 100003 + len(self.X))
        X = torch.tensor(self._features(self.X), dtype=torch.double)
        Y = -torch.tensor(np.clip(np.array(self.Y), -10, 10), dtype=torch.double)  # botorch maximises
        models = [SingleTaskGP(X, Y[:, j:j + 1], outcome_transform=Standardize(m=1)) for j in range(Y.shape[1])]
        model = ModelListGP(*models)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
            seen = {a.id for a in self.X}
            nd = [a for a, k in zip(self.X, _nondominated_mask(np.array(self.Y))) if k]
            cands = self.problem.sample(self.rng, self.pool // 2)
            cands += [self.problem.mutate(nd[int(self.rng.integers(len(nd)))], self.rng) for _ in range(self.pool // 2)]
            uniq = {}
            for a in cands:
                if a.id not in seen:
                    uniq.setdefault(a.id, a)
            cands = list(uniq.values()) or self.problem.sample(self.rng, 1)
            acq = qLogNoisyExpectedHypervolumeImprovement(
                model=model, ref_point=[-1.1] * Y.shape[1], X_baseline=X, prune_baseline=True,
                sampler=SobolQMCNormalSampler(sample_shape=torch.Size([self.mc]), seed=self.seed))
            C = torch.tensor(self._features(cands), dtype=torch.double).unsqueeze(1)
            with torch.no_grad():
                vals = acq(C).numpy()
        return [cands[int(np.argmax(vals))]]

    def tell(self, archs, F):
        for a, f in zip(archs, np.asarray(F, dtype=float)):
            self.X.append(a)
            self.Y.append(f)


ALGORITHMS: dict[str, Callable[..., Algorithm]] = {
    "random": RandomSearch, "local": LocalSearch, "morea": MOREA,
    "nsga2": NSGA2, "smsemoa": SMSEMOA, "moead": MOEAD,
    "motpe": MOTPE, "nsga3": NSGA3, "qnehvi": QNEHVI,
}
SLOW_ALGORITHMS = ("qnehvi",)


def register_algorithm(name: str, factory: Callable[..., Algorithm]) -> None:
    """Make ``factory`` (a class or function returning an :class:`Algorithm`) available by ``name``."""
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"invalid algorithm name: {name!r}; allowed: letters, digits, '-' and '_'")
    ALGORITHMS[name] = factory


ENTRY_POINT_GROUP = "hwlm.algorithms"
_PLUGINS: dict[str, Callable[..., Algorithm]] = {}  # resolved 'module:attr' specs and entry points


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_algorithms() -> list[str]:
    """Registry names plus the names of installed ``hwlm.algorithms`` entry points."""
    return sorted(set(ALGORITHMS) | set(_entry_points()))


def _import_attr(spec: str) -> Any:
    import importlib
    import os
    import sys

    module, _, attr = spec.partition(":")
    # a module file in the current directory, as `python -m` would find it (the `hwlm` script does not)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"invalid algorithm: {spec!r}; module {module!r} cannot be imported ({e}); allowed: "
                         "MODULE:ATTR with MODULE on the Python path or in the current directory") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"invalid algorithm: {spec!r}; module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def resolve_algorithm(spec: str) -> Callable[..., Algorithm]:
    """The factory behind ``spec``: a registry name, an ``hwlm.algorithms`` entry-point name, or
    ``"module:attr"`` (a class or function returning an :class:`Algorithm`)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"invalid algorithm: {spec!r}; allowed: a name of {available_algorithms()} or MODULE:ATTR")
    if spec in ALGORITHMS:
        return ALGORITHMS[spec]
    if spec not in _PLUGINS:
        if ":" in spec:
            factory = _import_attr(spec)
        else:
            eps = _entry_points()
            if spec not in eps:
                raise ValueError(f"invalid algorithm: {spec!r}; allowed: {available_algorithms()} or MODULE:ATTR")
            factory = eps[spec].load()
        if not callable(factory):
            raise ValueError(f"invalid algorithm: {spec!r} is a {type(factory).__name__}; allowed: a class or "
                             "function returning an Algorithm (setup, ask, tell)")
        _PLUGINS[spec] = factory
    return _PLUGINS[spec]


def get_algorithm(name: str, **params: Any) -> Algorithm:
    """A fresh algorithm instance by registry name, entry-point name or ``"module:attr"`` (``params``
    go to its constructor)."""
    alg = resolve_algorithm(name)(**params)
    missing = [m for m in ("setup", "ask", "tell") if not callable(getattr(alg, m, None))]
    if missing:
        raise ValueError(f"invalid algorithm: {name!r} builds a {type(alg).__name__} without {missing}; "
                         "allowed: an Algorithm (setup, ask, tell)")
    if not getattr(alg, "name", None) or alg.name == "algorithm":
        alg.name = name
    return alg
