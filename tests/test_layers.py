"""The package's imports go one way, from layer to layer (docs/design.md).

Every module of ``benchmark/`` and ``surrogates/`` is parsed with ``ast``; every import counts,
also those inside functions (a lazy import is still a dependency). A module may import modules
of its own layer or of lower layers, and the module graph has no cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "surrogates")

# Lowest first. A module belongs to the first entry that is its name or a package above it.
LAYERS = (
    ("helpers", ("benchmark.errors", "benchmark.files", "benchmark.paths", "benchmark.plotting", "benchmark.seeds",
                 "benchmark.version")),
    ("spaces, settings, costs, model", ("benchmark.spaces", "benchmark.settings", "benchmark.costs", "benchmark.model")),
    ("table, release", ("benchmark.table", "benchmark.release", "benchmark.hub", "benchmark.hub_commands",
                        "benchmark.datacard", "benchmark.crossdevice")),
    ("supernet", ("benchmark.supernet",)),
    ("profiling, export", ("benchmark.profiling", "benchmark.export", "benchmark.hf")),
    ("surrogates", ("surrogates", "benchmark.hwgpt_perplexity")),
    ("api", ("benchmark.query", "benchmark.api")),
    # the package root re-exports the query API and the HW-GPT-Bench adapter (lazily), so it sits with them
    ("compat", ("benchmark.hwgpt_compat", "benchmark")),
    ("byod", ("benchmark.byod",)),
    ("moo", ("benchmark.moo",)),
    ("cli", ("benchmark.cli",)),
)

# Known violations, each inside files another change reshapes; (importer, imported, why).
ALLOWED: dict[tuple[str, str], str] = {}  # (importer, imported) -> why; empty: no exceptions


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that importing ``name`` loads (the longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST, module: str, path: Path) -> set[str]:
    """The modules of ours that one import statement loads."""
    if isinstance(node, ast.Import):
        return set(filter(None, (_owner(a.name) for a in node.names)))
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:
        anchor = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
        base = f"{anchor}.{base}" if base else anchor
    found = set()
    for a in node.names:  # `from pkg import submodule` imports the submodule
        sub = f"{base}.{a.name}"
        owner = sub if sub in MODULES else _owner(base)
        if owner:
            found.add(owner)
    return found


def _imports(module: str, path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        found |= _targets(node, module, path)
    found.discard(module)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(module: str) -> int:
    best = None  # the most specific entry wins ("benchmark.api" over "benchmark")
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer; add it to LAYERS (and docs/design.md)"
    return best[0]


def test_every_module_has_a_layer():
    assert len(MODULES) > 40  # the walk found the package
    for m in MODULES:
        _layer(m)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in sorted(GRAPH.items()) for d in sorted(deps)
              if _layer(d) > _layer(m) and (m, d) not in ALLOWED]
    assert not upward, "\n".join(upward)


def test_the_module_graph_has_no_cycles():
    graph = {m: {d for d in deps if (m, d) not in ALLOWED} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_walk_sees_imports_inside_functions():
    # the package imports heavy modules lazily, inside functions: those edges must be in the graph
    lazy = set()
    for m, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy |= {(m, d) for n in ast.walk(fn) for d in _targets(n, m, path) if d != m}
    assert len(lazy) > 20
    assert all(d in GRAPH[m] for m, d in lazy)
