"""No import cycle between advisor's modules or packages (read from the source with ``ast``, nothing imported).

Two graphs: the imports that run when a module loads (module level, class bodies and ``try``/``if`` blocks
included, ``if TYPE_CHECKING:`` left out), where a cycle is never allowed; and those plus the imports inside
functions, where the package-level cycles of ``ALLOWED_CYCLES`` remain until they are broken.  That list only
shrinks: an entry that no longer is a cycle fails the test until it is removed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "advisor"

#: Package-level cycles that exist through imports inside functions, each a sorted tuple of packages (a module
#: directly under advisor/ counts as its own package).
#: (The last, ``probing`` <-> ``estimator``, was broken by reading calibration files at the edge, in
#: ``advisor.calibration``: the probe's kernels still read the estimator's host model, one way.)
ALLOWED_CYCLES: set[tuple[str, ...]] = set()

Edge = tuple[str, str]
ImportNode = ast.Import | ast.ImportFrom


@cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(module: str, node: ImportNode) -> Iterator[str]:
    """The advisor modules an import statement loads (a name imported from a package may be a submodule)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "advisor")
        return
    if node.level:
        base = module.split(".") if modules[module].name == "__init__.py" else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    if source.split(".")[0] != "advisor":
        return
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        yield sub if sub in modules else source


def _import_nodes(body: list[ast.stmt], in_function: bool = False) -> Iterator[tuple[ImportNode, bool]]:
    """Each import statement with whether it sits inside a function (``TYPE_CHECKING`` blocks skipped)."""
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            yield stmt, in_function
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _import_nodes(stmt.body, True)
        elif isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            yield from _import_nodes(stmt.orelse, in_function)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                block = getattr(stmt, field, None)
                if isinstance(block, list):
                    yield from _import_nodes([s for s in block if isinstance(s, ast.stmt)], in_function)
                    for handler in block:
                        if isinstance(handler, ast.ExceptHandler | ast.match_case):
                            yield from _import_nodes(handler.body, in_function)


@cache
def _edges() -> dict[str, frozenset[Edge]]:
    """``{"load": edges run when a module loads, "function": edges inside functions}``.

    Importing ``advisor.a.b`` also runs ``advisor/a/__init__.py``: that package is an edge too.
    """
    modules = _modules()
    out: dict[str, set[Edge]] = {"load": set(), "function": set()}
    for module, path in modules.items():
        for node, in_function in _import_nodes(ast.parse(path.read_text(), str(path)).body):
            for target in _targets(module, node):
                while target not in modules:  # `import advisor.x.y` where y is a name
                    target = target.rpartition(".")[0]
                parts = target.split(".")
                for n in range(2, len(parts) + 1):
                    loaded = ".".join(parts[:n])
                    if loaded != module and not module.startswith(loaded + "."):
                        out["function" if in_function else "load"].add((module, loaded))
    return {kind: frozenset(edges) for kind, edges in out.items()}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(edges: frozenset[Edge] | set[Edge]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one node, each a sorted tuple (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[tuple[str, ...]] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.add(tuple(sorted(component)))
    return out


def _packages(edges: frozenset[Edge] | set[Edge]) -> set[Edge]:
    return {(_package(a), _package(b)) for a, b in edges if _package(a) != _package(b)}


def _explain(cycle: tuple[str, ...], edges: frozenset[Edge] | set[Edge]) -> str:
    members = set(cycle)
    return "\n".join(f"  {a} -> {b}" for a, b in sorted(edges)
                     if (_package(a) in members and _package(b) in members and _package(a) != _package(b))
                     or (a in members and b in members))


def test_the_graph_is_read() -> None:
    load, function = _edges()["load"], _edges()["function"]
    assert ("advisor.__main__", "advisor.cli") in load
    assert ("advisor.estimator.time", "advisor.estimator.gemm") in load
    assert ("advisor.recommender", "advisor.estimator") in function  # the estimator loads lazily
    assert not any(b.split(".")[0] != "advisor" for _, b in load | function)


def test_no_cycle_when_modules_load() -> None:
    load = _edges()["load"]
    for edges in (load, _packages(load)):
        cycles = _cycles(edges)
        assert not cycles, "import cycles:\n" + "\n".join(_explain(c, edges) for c in sorted(cycles))


def test_no_cycle_through_function_imports_beyond_the_allowed() -> None:
    edges = _edges()["load"] | _edges()["function"]
    package_cycles = _cycles(_packages(edges))
    new = package_cycles - ALLOWED_CYCLES
    assert not new, "package cycles:\n" + "\n".join(_explain(c, edges) for c in sorted(new))
    stale = ALLOWED_CYCLES - package_cycles
    assert not stale, f"no longer a cycle: remove {sorted(stale)} from ALLOWED_CYCLES"
    # a cycle between modules is one between packages, or one inside a package: none of those either
    inside = {c for c in _cycles(edges) if not any(set(map(_package, c)) <= set(a) for a in ALLOWED_CYCLES)}
    assert not inside, "module cycles:\n" + "\n".join(_explain(c, edges) for c in sorted(inside))


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == {("a", "b", "c")}
    assert _cycles({("a", "b"), ("b", "c")}) == set()
    assert _packages({("advisor.x.m", "advisor.y.n"), ("advisor.x.m", "advisor.x.k")}) == {("advisor.x", "advisor.y")}
