"""No function over 80 lines and no module over 450 in advisor/ (read with ``ast``, nothing imported).

The allow-lists name today's offenders. They are a ratchet, like mypy's file list: they only shrink. An entry
that is back under its limit fails the test until it is removed, so a split stays split.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "advisor"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 450

#: Functions over ``MAX_FUNCTION_LINES`` today, as ``path::qualified name`` (each being split: issue 27).
LONG_FUNCTIONS: set[str] = set()
#: Modules over ``MAX_MODULE_LINES`` today (each being split: issue 27).
LONG_MODULES: set[str] = set()


def _functions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function, nested ones and methods included."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node.body, f"{name}.")
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list):
                    yield from _functions([s for s in block if isinstance(s, ast.stmt)], prefix)


def _measure() -> tuple[dict[str, int], dict[str, int]]:
    functions: dict[str, int] = {}
    modules: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        modules[rel] = len(text.splitlines())
        for name, lines in _functions(ast.parse(text, rel).body):
            functions[f"{rel}::{name}"] = max(lines, functions.get(f"{rel}::{name}", 0))
    return functions, modules


def test_no_function_over_the_limit_beyond_the_allowed() -> None:
    functions, _ = _measure()
    long = {name: n for name, n in functions.items() if n > MAX_FUNCTION_LINES}
    new = {name: n for name, n in long.items() if name not in LONG_FUNCTIONS}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them): {new}"
    stale = sorted(LONG_FUNCTIONS - set(long))
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines (or gone): remove {stale} from LONG_FUNCTIONS"


def test_no_module_over_the_limit_beyond_the_allowed() -> None:
    _, modules = _measure()
    long = {name: n for name, n in modules.items() if n > MAX_MODULE_LINES}
    new = {name: n for name, n in long.items() if name not in LONG_MODULES}
    assert not new, f"modules over {MAX_MODULE_LINES} lines (split them): {new}"
    stale = sorted(LONG_MODULES - set(long))
    assert not stale, f"no longer over {MAX_MODULE_LINES} lines (or gone): remove {stale} from LONG_MODULES"


def test_the_measure_reads_nested_functions_and_methods() -> None:
    tree = ast.parse("class A:\n    def m(self):\n        def inner():\n            pass\n        return 1\n"
                     "def f():\n    if x:\n        def g():\n            pass\n")
    assert dict(_functions(tree.body)) == {"A.m": 4, "A.m.inner": 2, "f": 4, "f.g": 2}
