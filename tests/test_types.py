"""mypy --strict holds the whole package: pyproject.toml's ``[tool.mypy] files`` is ``["advisor"]``.

It was a ratchet, module by module, until it reached the package itself; it stays there.
mypy keeps its cache in ``.mypy_cache`` (git-ignored): the first run in a fresh clone analyses torch's
annotations too (about a minute on 2 cores), later runs only what changed (seconds).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    return config


def test_the_ratchet_names_existing_modules_once_under_strict() -> None:
    config = _config()
    files = config["files"]
    assert config["strict"] is True
    assert files == sorted(set(files)), "keep the list sorted, each path once"
    missing = [f for f in files if not (ROOT / f).exists()]
    assert not missing, f"listed but not in the tree: {missing}"
    assert files == ["advisor"], "the whole package is checked: no module left out"
    # no module of the package is exempted from the errors behind the list's back
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        assert not any(m.startswith("advisor") for m in modules), override


@pytest.mark.slow
def test_listed_modules_pass_mypy_strict() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"mypy --strict (pyproject.toml's [tool.mypy] files):\n{proc.stdout}{proc.stderr}"
    assert "Success" in proc.stdout
