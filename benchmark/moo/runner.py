"""Run algorithms × seeds on a suite: resumable, parallel over local processes, one results file.

``run_problem`` is the loop of one run: ``ask`` → truncate to the remaining budget →
``Problem.evaluate`` → ``tell``, until ``budget`` evaluations. It records every evaluated
architecture (id), its objective values (raw and normalised), the simulated clock after it, the
hypervolume so far, and the wall time of the loop and of the benchmark's queries inside it.

``run_suite`` runs every (algorithm, seed) not yet in the results file — finished runs are skipped,
so an interrupted command resumes — in a ``ProcessPoolExecutor`` (``workers``; 1 = in process),
and rewrites the results file atomically (temporary file + ``os.replace``) after each finished
run. One process writes a results file at a time: ``run_suite`` holds its :class:`WriterLock`
from reading it to its last write, and a second ``run_suite`` on the same file is refused at once
(a :class:`ProblemError` naming the first one's process), so no finished run is ever lost.
Seeds are ``0 .. seeds-1``; run ``(algorithm, s)`` seeds the algorithm with ``s`` (and the noise
of noisy suites with ``s``), so algorithms share their random initial designs' seeds.

Results file (HDF5, ``format = "hwlm-bench moo results"``, ``version = 1``)::

    /<suite>                       attrs: suite (resolved suite JSON), labels (JSON), release, space
    /<suite>/reference_front       (K, m) normalised best-known front (table mode; optional)
    /<suite>/<algorithm>/<seed>/   attrs: wall_s, query_s, n_queries, finished (ISO time), algorithm
        ids (n,) str · objectives (n, m) · normalised (n, m) · clock_s (n,) · hypervolume (n,)

Ray (``ray_address`` / ``--ray ADDRESS``, optional extra ``moo-ray``): the same jobs become Ray
tasks (one CPU each) on the cluster at ADDRESS (``"local"`` starts a local Ray instance); results
come back to this process, which alone writes the results file. Every node must see the release
directory at the same path. ``MODULE:ATTR`` plug-ins from the user's own files travel to the workers
with the job (Ray's ``py_modules``) when this process starts Ray; when Ray is already initialised,
pass them yourself (``ray.init(runtime_env={"py_modules": [path]})``). Installed packages (entry
points) must be installed on every node.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.files import WriterLock, atomic_path, remove_stale_temporaries
from benchmark.moo.algorithms import get_algorithm, resolve_algorithm
from benchmark.moo.indicators import hypervolume_curve
from benchmark.moo.problems import Problem, ProblemError
from benchmark.moo.suites import Suite
from benchmark.spaces import canonical_id
from benchmark.seeds import check_seed

__all__ = ["RunResult", "run_problem", "run_suite", "load_results", "save_results", "RESULTS_FORMAT"]

RESULTS_FORMAT = "hwlm-bench moo results"
RESULTS_VERSION = 1


@dataclass
class RunResult:
    algorithm: str
    seed: int
    ids: list[str]
    objectives: np.ndarray
    normalised: np.ndarray
    clock_s: np.ndarray
    hypervolume: np.ndarray
    wall_s: float
    query_s: float
    n_queries: int
    finished: str = ""
    cpu_s: float = 0.0  # the loop's thread CPU time (not in results files: for loop benchmarks on shared cores)
    query_cpu_s: float = 0.0  # of which inside the benchmark's queries

    def to_arrays(self) -> dict:
        return {"ids": np.array(self.ids, dtype=object), "objectives": self.objectives, "normalised": self.normalised,
                "clock_s": self.clock_s, "hypervolume": self.hypervolume}


def run_problem(problem: Problem, algorithm: str | Any, seed: int, budget: int, reference_point: Sequence[float],
                progress: bool = False) -> RunResult:
    """One seeded run of ``algorithm`` (a registry name or an Algorithm instance) for ``budget`` evaluations."""
    seed = check_seed(seed, "seed", ProblemError)
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ProblemError.invalid("budget", budget, "an integer >= 1")
    budget = int(budget)
    alg = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    problem.reset(noise_seed=int(seed))
    problem.warmup()
    cpu0 = time.thread_time()  # before the wall clock: a syscall, where a preempted process is switched out
    t0 = time.perf_counter()
    alg.setup(problem, int(seed), budget)
    ids: list[str] = []
    F_all, clock = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=budget, desc=f"{alg.name} seed {seed}", leave=False)
    stalls = 0
    while len(ids) < budget:
        archs = list(alg.ask())
        if not archs:
            stalls += 1
            if stalls > 100:
                raise RuntimeError(f"algorithm {alg.name!r} proposed nothing 100 times in a row")
            continue
        archs = archs[:budget - len(ids)]
        F = problem.evaluate(archs)
        n = len(archs)
        clock += problem.last_clock.tolist()  # the simulated clock after each evaluation, in order
        ids += problem.last_ids
        F_all.append(F)
        alg.tell(archs, problem.normalise(F))
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    F = np.vstack(F_all)
    Fn = problem.normalise(F)
    hv = hypervolume_curve(Fn, reference_point)
    return RunResult(alg.name, int(seed), ids, F, Fn, np.asarray(clock), hv, wall, problem.query_s,
                     problem._n_queries, datetime.now(timezone.utc).isoformat(timespec="seconds"), cpu,
                     problem.query_cpu_s)


# ---------------------------------------------------------------------------- results file
def save_results(path: str | Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` (as returned by :func:`load_results`) atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = RESULTS_FORMAT
        f.attrs["version"] = RESULTS_VERSION
        for sname, s in content.items():
            g = f.create_group(sname)
            g.attrs["suite"] = json.dumps(s["suite"], sort_keys=True)
            g.attrs["labels"] = json.dumps(s["labels"])
            g.attrs["release"] = str(s.get("release", ""))
            if s.get("reference_front") is not None:
                g.create_dataset("reference_front", data=np.asarray(s["reference_front"], dtype=float))
            for alg, runs in s["runs"].items():
                ga = g.create_group(alg)
                for seed, r in runs.items():
                    gr = ga.create_group(str(seed))
                    for k in ("wall_s", "query_s", "n_queries", "finished"):
                        gr.attrs[k] = r[k]
                    gr.create_dataset("ids", data=np.array(r["ids"], dtype=h5py.string_dtype()))
                    for k in ("objectives", "normalised", "clock_s", "hypervolume"):
                        gr.create_dataset(k, data=np.asarray(r[k], dtype=float))


def load_results(path: str | Path) -> dict[str, Any]:
    """``{suite: {"suite", "labels", "release", "reference_front", "runs": {alg: {seed: {...}}}}}``."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise ProblemError(f"invalid results file: {str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ProblemError(f"invalid results file: {str(path)!r} is not HDF5 ({e})") from None
    with f:
        if f.attrs.get("format") != RESULTS_FORMAT:
            raise ProblemError(f"invalid results file: {str(path)!r} has format {f.attrs.get('format')!r}; "
                               f"allowed: {RESULTS_FORMAT!r}")
        out, canonical = {}, {}  # ids in the older form (files written before) read as canonical ids
        for sname, g in f.items():
            s = {"suite": json.loads(g.attrs["suite"]), "labels": json.loads(g.attrs["labels"]),
                 "release": g.attrs.get("release", ""), "reference_front": None, "runs": {}}
            if "reference_front" in g:
                s["reference_front"] = g["reference_front"][()]
            for alg, ga in g.items():
                if alg == "reference_front":
                    continue
                s["runs"][alg] = {}
                for seed, gr in ga.items():
                    r = {k: gr.attrs[k] for k in ("wall_s", "query_s", "n_queries", "finished")}
                    r["ids"] = [canonical.get(x) or canonical.setdefault(x, canonical_id(x, s["suite"]["space"]))
                                for x in gr["ids"].asstr()[()]]
                    for k in ("objectives", "normalised", "clock_s", "hypervolume"):
                        r[k] = gr[k][()]
                    s["runs"][alg][int(seed)] = r
            out[sname] = s
    return out


# ---------------------------------------------------------------------------- suites
_EVALUATORS: dict[tuple, Any] = {}


def _evaluator(release: str | None, space: str):
    key = (release, space)
    if key not in _EVALUATORS:
        from benchmark import Benchmark

        _EVALUATORS[key] = Benchmark(space=space, path=release)
    return _EVALUATORS[key]


def _run_job(suite_dict: dict, release: str | None, algorithm: str, seed: int) -> dict:
    suite = Suite.from_dict(suite_dict["name"], {k: v for k, v in suite_dict.items() if k not in ("name", "version")})
    problem = suite.problem(_evaluator(release, suite.space))
    r = run_problem(problem, algorithm, seed, suite.budget, suite.reference_point)
    d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.to_arrays().items()}
    d.update(wall_s=r.wall_s, query_s=r.query_s, n_queries=r.n_queries, finished=r.finished)
    return d


def run_suite(suite: Suite, algorithms: Sequence[str], out: str | Path, *, release: str | None = None,
              seeds: int | None = None, devices: Mapping[str, str] | None = None, workers: int | None = None,
              progress: bool = True, evaluator: Any = None, ray_address: str | None = None) -> dict[str, Any]:
    """Run ``algorithms`` × seeds ``0..seeds-1`` of ``suite`` into the results file ``out`` (resuming it)."""
    out = Path(out)
    lock = WriterLock(out, lambda holder: ProblemError(
        f"invalid results file (--out): {str(out)!r} is being written by another run (process {holder}); allowed: "
        f"one writer per results file — wait for it to finish (then rerun to resume), or write to another file"))
    with lock:
        if lock.held:
            remove_stale_temporaries(out)
        return _run_suite_locked(suite, algorithms, out, release=release, seeds=seeds, devices=devices,
                                 workers=workers, progress=progress, evaluator=evaluator, ray_address=ray_address)


def _run_suite_locked(suite: Suite, algorithms: Sequence[str], out: Path, *, release, seeds, devices, workers,
                      progress, evaluator, ray_address) -> dict[str, Any]:
    if not algorithms:
        raise ProblemError("invalid algorithms: []; allowed: one or more names or MODULE:ATTR specs")
    for a in algorithms:  # fail before any run; workers resolve the same specs (module:attr, entry points)
        try:
            resolve_algorithm(a)
        except ValueError as e:
            raise ProblemError(str(e)) from None
    seeds = suite.seeds if seeds is None else seeds
    if isinstance(seeds, (bool, np.bool_)) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ProblemError.invalid("seeds", seeds, "an integer >= 1")
    seeds = int(seeds)
    release = None if release is None else str(Path(release).resolve())
    ev = evaluator if evaluator is not None else _evaluator(release, suite.space)
    resolved = suite.resolve(ev, devices)
    sd = resolved.to_dict()
    sd_key = {k: v for k, v in sd.items() if k != "seeds"}
    content = load_results(out) if out.exists() else {}
    if suite.name in content:
        old = {k: v for k, v in content[suite.name]["suite"].items() if k != "seeds"}
        if old != sd_key:
            raise ProblemError(f"invalid results file for suite {suite.name!r}: {out} holds runs of a different "
                               f"configuration ({json.dumps(old, sort_keys=True)}); write to another --out")
    else:
        problem = resolved.problem(ev)
        front = None
        if resolved.mode == "table" or resolved.candidates == "table":
            F = problem.reference_front()
            front = None if F is None else problem.normalise(F)
        content[suite.name] = {"suite": sd, "labels": problem.labels, "release": release or "", "runs": {},
                               "reference_front": front}
        save_results(out, content)
    runs = content[suite.name]["runs"]
    jobs = [(a, s) for a in algorithms for s in range(seeds) if s not in runs.get(a, {})]
    skipped = len(algorithms) * seeds - len(jobs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"{suite.name}: runs", unit="run")
        if skipped:
            bar.write(f"resuming {out}: {skipped} finished run(s) skipped")

    def done(a: str, s: int, d: dict) -> None:
        runs.setdefault(a, {})[s] = d
        save_results(out, content)
        if bar is not None:
            bar.update(1)

    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if ray_address is not None and jobs:
        if evaluator is not None:
            raise ProblemError("invalid ray_address with an in-process evaluator; allowed: one or the other")
        _run_ray(ray_address, jobs, sd, release, done, workers)
    elif workers <= 1 or len(jobs) <= 1 or evaluator is not None:
        for a, s in jobs:
            if evaluator is not None:
                problem = resolved.problem(evaluator)
                r = run_problem(problem, a, s, resolved.budget, resolved.reference_point)
                d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.to_arrays().items()}
                d.update(wall_s=r.wall_s, query_s=r.query_s, n_queries=r.n_queries, finished=r.finished)
            else:
                d = _run_job(sd, release, a, s)
            done(a, s, d)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(_run_job, sd, release, a, s): (a, s) for a, s in jobs}
            for fut in as_completed(futs):
                a, s = futs[fut]
                done(a, s, fut.result())
    if bar is not None:
        bar.close()
    return content


def _plugin_modules(algorithms: Sequence[str]) -> list[str]:
    """The top-level modules of ``MODULE:ATTR`` plug-ins that are not installed packages (a file or
    folder of the user's, found through this process's ``sys.path`` or working directory): Ray ships
    them to every worker (``runtime_env["py_modules"]``). Installed packages, entry points included,
    must be installed on every node."""
    import sys
    import sysconfig

    installed = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")}
    out = {}
    for spec in algorithms:
        if ":" not in spec:
            continue
        resolve_algorithm(spec)  # imports the module here
        top = spec.partition(":")[0].split(".")[0]
        module = sys.modules[top]
        paths = list(getattr(module, "__path__", []))  # a package: its folder; a module: its file
        where = paths[0] if len(paths) == 1 else getattr(module, "__file__", None)
        if where is None or top == "benchmark":
            continue
        where = Path(where).resolve()
        if not any(where.is_relative_to(p) for p in installed):
            out[top] = str(where)
    return list(out.values())


def _run_ray(address: str, jobs, sd: dict, release: str | None, done, workers: int) -> None:
    """Run ``jobs`` as Ray tasks; ``done(a, s, result)`` is called here as each finishes."""
    try:
        import ray
    except ImportError:
        raise ProblemError("invalid --ray: the 'ray' package is not installed (pip install -e .[moo-ray])") from None
    local = address == "local"
    started = not ray.is_initialized()
    if started:
        # local plug-in files can only be shipped with the job (ray.init), not per task
        modules = _plugin_modules([a for a, _ in jobs])
        ray.init(address=None if local else address, num_cpus=workers if local else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False,
                 **({"runtime_env": {"py_modules": modules}} if modules else {}))
    try:
        task = ray.remote(num_cpus=1)(_run_job)
        pending = {task.remote(sd, release, a, s): (a, s) for a, s in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                a, s = pending.pop(ref)
                done(a, s, ray.get(ref))
    finally:
        if started:
            ray.shutdown()
