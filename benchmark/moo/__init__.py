"""The MOO benchmark suite: problems, suites, algorithms, runner, indicators, report (docs/moo.md)."""

from benchmark.moo.algorithms import ALGORITHMS, Algorithm, get_algorithm, register_algorithm
from benchmark.moo.problems import CostModel, Objective, Problem, ProblemError
from benchmark.moo.suites import Suite, get_suite, load_suites

__all__ = ["ALGORITHMS", "Algorithm", "get_algorithm", "register_algorithm", "CostModel", "Objective", "Problem",
           "ProblemError", "Suite", "get_suite", "load_suites"]
