"""benchmarks/attention_sweep.py on a CPU (its dry run): every configuration timed and predicted, the file written."""

from __future__ import annotations

import json
from pathlib import Path

import benchmark_scripts


def test_the_sweep_times_and_predicts_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    sweep = benchmark_scripts.load("attention_sweep")
    assert sweep.main(["--out", str(out), "--calibration", str(tmp_path / "missing.json")]) == 0
    doc = json.loads(out.read_text())
    assert doc["calibration"] == "none"  # a probe that is not there: the spec sheet, said so
    rows = doc["rows"]
    assert len(rows) == 4 and {r["causal"] for r in rows} == {False, True}
    for r in rows:
        assert r["measured_fwd_s"] > 0 and r["measured_fwd_bwd_s"] > 0
        assert 0 < r["predicted_fwd_s"] < r["predicted_fwd_bwd_s"]  # the backward adds 2.5x the forward's work
