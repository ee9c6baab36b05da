"""A history store that cannot be read or written loses no result (issue 16, item 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.calibration import clear_calibration_cache
from advisor.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def corrupt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "history.sqlite3").write_text("this is not an SQLite database, and it is long enough to tell\n")
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    clear_calibration_cache()
    yield tmp_path
    clear_calibration_cache()


def test_estimate_with_a_corrupt_store_says_it_could_not_be_read(corrupt_home: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "gpt2", "--gpu", "a100-sxm4-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert any("history store could not be read" in a for a in doc["assumptions"])
    assert not any(a.startswith("no probe of this card found") for a in doc["assumptions"])
    assert "warning: the history store could not be read" in captured.err and "corrupt" in captured.err


def test_estimate_without_a_store_still_says_no_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.api import estimate

    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    clear_calibration_cache()
    e = estimate("gpt2", "a100-sxm4-80gb")
    assert "no probe of this card found: default efficiencies" in e.assumptions


@pytest.mark.slow  # ~10 s: real (tiny) training steps on the CPU in a subprocess, as a user runs validate
def test_validate_with_a_corrupt_store_prints_results_warns_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").write_text("this is not an SQLite database, and it is long enough to tell\n")
    env = {**os.environ, "GPU_ADVISOR_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    argv = [sys.executable, "-m", "advisor", "validate", "--quick", "--models", "mnist-cnn", "--warmup", "0",
            "--iters", "1", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # the results, whole
    assert len(doc["rows"]) == 2 and doc["saved_id"] is None
    err = " ".join(proc.stderr.split())
    assert "warning: results not saved" in err and "corrupt" in err
    assert "error:" not in err
