"""Golden files for the CLI's ``--json`` and text output.

A change that moves any number or word here must be deliberate. To regenerate after one:

    GPU_ADVISOR_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

then read ``git diff tests/golden`` before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from advisor.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("GPU_ADVISOR_REGEN_GOLDEN") == "1"

CASES = {
    "specs_show_h100.json": ["specs", "show", "NVIDIA H100 80GB HBM3", "--json"],
    "specs_compare.json": ["specs", "compare", "RTX 4090", "A100 SXM4 80GB", "H100 SXM5 80GB", "--json"],
    "estimate_gpt2_a100.json": ["estimate", "--model", "gpt2", "--gpu", "a100-sxm4-80gb", "--batch-size", "8",
                                "--seq-len", "1024", "--calibration", "none", "--json"],
    "estimate_llama2_70b_tp2.json": ["estimate", "--model", "llama-2-70b", "--gpu", "A100 SXM4 80GB", "--num-gpus",
                                     "2", "--parallelism", "tp", "--mode", "infer", "--precision", "fp16",
                                     "--seq-len", "2048", "--calibration", "none", "--json"],
    "estimate_gpt2_a100.txt": ["estimate", "--model", "gpt2", "--gpu", "a100-sxm4-80gb", "--batch-size", "8",
                               "--seq-len", "1024", "--calibration", "none"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_output_matches_golden(name: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    assert main(CASES[name]) == 0
    out = capsys.readouterr().out
    path = GOLDEN / name
    if REGEN:
        path.write_text(out)
    assert path.exists(), f"missing golden file {path.name}: run with GPU_ADVISOR_REGEN_GOLDEN=1"
    expected = path.read_text()
    if name.endswith(".json"):
        assert json.loads(out) == json.loads(expected)
    else:
        assert out == expected
