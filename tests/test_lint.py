"""ruff (pyproject.toml's lint rules, C901's complexity limit among them) is clean on the whole tree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "advisor", "tests", "benchmarks",
                           "dashboard.py"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"ruff check:\n{proc.stdout}{proc.stderr}"


def test_the_complexity_limit_is_on() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C901" in lint["select"]
    assert lint["mccabe"]["max-complexity"] <= 20
    assert "C901" not in lint.get("ignore", [])
