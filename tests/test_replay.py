"""The shared H100/H200 validate runs as a regression set: ``validate --replay`` with the current estimator.

The runs (tests/data/gpu-runs, 2026-11-28) are measured; only the predictions are made anew.  The bounds are a
ratchet at what the estimator reaches today (docs/accuracy.md has the per-row table), not the issue's targets
(median <= 10%): a change that makes any of them worse fails here.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import pytest

from advisor import validate as v

RUNS = Path(__file__).parent / "data" / "gpu-runs"
CARDS = ("h200-2026-11-28", "h100-2026-11-28")


@pytest.fixture(scope="module")
def replayed() -> dict[tuple[str, str], list[v.ValidationRow]]:
    out: dict[tuple[str, str], list[v.ValidationRow]] = {}
    for card in CARDS:
        for calibration in ("probe", "none"):
            rows: list[v.ValidationRow] = []
            for part in ("a", "b"):
                doc = json.loads((RUNS / card / f"validate-{part}.json").read_text())
                cal = str(RUNS / card / "probe-full.json") if calibration == "probe" else None
                rows += v.replay(doc, calibration=cal).rows
            out[(card, calibration)] = rows
    return out


def _abs(rows: list[v.ValidationRow], attr: str) -> list[float]:
    return sorted(abs(getattr(r, attr)) for r in rows if getattr(r, attr) is not None)


#: (card, calibration, median, p90, worst) |error| today (docs/accuracy-gpu.md), each with a little room; p90 is
#: validate's own (nearest rank, ``error_stats``); the issue's targets (median <= 10%, p90 <= 25%, worst <= 50% with
#: the own probe) hold on both cards.  The H100's worst rows are host-bound ones its probe cannot see (no
#: host_dispatch kernel in that run).  Without a probe the Hopper defaults over-predict these steps' GEMMs (0.62
#: of peak where both probes measured 0.77-0.79), so each true cost added moves the spec-sheet medians up
#: (docs/accuracy.md)
BOUNDS = [("h200-2026-11-28", "probe", 0.045, 0.15, 0.21), ("h100-2026-11-28", "probe", 0.08, 0.23, 0.28),
          ("h200-2026-11-28", "none", 0.10, 0.18, 0.24), ("h100-2026-11-28", "none", 0.12, 0.29, 0.36)]


@pytest.mark.parametrize(("card", "calibration", "median", "p90", "worst"), BOUNDS)
def test_step_time_error_holds(replayed, card, calibration, median, p90, worst) -> None:
    rows = replayed[(card, calibration)]
    stats = v.error_stats([r.time_error for r in rows if r.time_error is not None])  # validate's summary figures
    assert stats["n"] == 37  # every measured row has a prediction (vit-b16 with checkpointing included)
    assert stats["median_abs_error"] <= median
    assert stats["p90_abs_error"] <= p90  # nearest rank: the 34th of 37
    assert stats["max_abs_error"] <= worst


@pytest.mark.parametrize("card", CARDS)
def test_memory_error_holds(replayed, card) -> None:
    rows = replayed[(card, "probe")]
    errors = _abs(rows, "memory_error")
    assert statistics.median(errors) <= 0.01  # 0.7% today (see test_memory_model.py)
    # the worst under-prediction: lstm-lm b128 fp32, -31.6% (caching-allocator fragmentation around cuDNN's
    # recurrent buffers, which the CPU trace's per-time-step tensors do not reproduce); -43.6% before the traced
    # presets trained with their cross-entropy
    assert min(r.memory_error for r in rows if r.memory_error is not None) >= -0.33
    for r in rows:  # never under-promise: within 10% or 512 MiB below the measured reserved peak, or above
        m = r.measurement
        assert r.prediction.memory_bytes >= 0.9 * m.peak_bytes or m.peak_bytes - r.prediction.memory_bytes <= 2**29


def test_replay_keeps_the_measurements_and_the_json_contract(replayed) -> None:
    doc = json.loads((RUNS / CARDS[0] / "validate-a.json").read_text())
    report = v.replay(doc, calibration=None)
    out = report.to_dict()
    assert [r["time"]["measured_s"] for r in out["rows"]] == [r["time"]["measured_s"] for r in doc["rows"]]
    assert [r["config"] for r in out["rows"]] == [r["config"] for r in doc["rows"]]
    assert set(out) >= {"device", "rows", "summary"} and out["summary"]["time"]["p90_abs_error"] is not None


def test_predictions_grow_with_batch(replayed) -> None:
    """Rows that differ only in batch size: the bigger batch is predicted slower (no flat host floor)."""
    for rows in replayed.values():
        by_config: dict[tuple, list[tuple[int, float]]] = {}
        for r in rows:
            if r.prediction.step_s is None:
                continue
            c = r.case.config()
            key = (r.model, *(str(c[k]) for k in sorted(c) if k != "batch_size"))
            by_config.setdefault(key, []).append((r.case.batch_size, r.prediction.step_s))
        for key, points in by_config.items():
            points.sort()
            for (b1, t1), (b2, t2) in itertools.pairwise(points):
                if b2 > b1:
                    assert t2 > t1, (key, points)


def test_replay_rejects_what_is_not_a_run(tmp_path) -> None:
    from advisor.cli import main

    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["validate", "--replay", str(bad)]) != 0
    from advisor.errors import AdvisorError

    with pytest.raises(AdvisorError, match="not a validate run"):
        v.replay({"rows": 3})


def test_replay_with_a_broken_calibration_file_fails_up_front(tmp_path, capsys) -> None:
    from advisor.cli import main

    bad = tmp_path / "probe.json"
    bad.write_text("{")
    assert main(["validate", "--replay", str(RUNS / CARDS[1] / "validate-b.json"), "--calibration", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "hint:" in err


def test_replay_cli_prints_the_table(capsys) -> None:
    from advisor.cli import main

    run = RUNS / CARDS[1] / "validate-b.json"
    assert main(["validate", "--replay", str(run), "--calibration", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["time"]["n"] >= 14 and "replayed" in out["notes"][-1]


def test_measured_step_time_lies_inside_the_estimate_range_on_90_percent_of_rows(replayed) -> None:
    """The range every estimate carries (``advisor.estimator.uncertainty``) holds on the shared runs."""
    from advisor.catalog import get_gpu
    from advisor.estimator.profiles import profile_for
    from advisor.estimator.uncertainty import step_range

    ids = {"h200-2026-11-28": "h200-sxm-141gb", "h100-2026-11-28": "h100-sxm5-80gb"}
    inside = total = 0
    for (card, calibration), rows in replayed.items():
        level = "calibrated" if calibration == "probe" else profile_for(get_gpu(ids[card])).evidence
        for r in rows:
            if r.measurement is None or not r.prediction.step_s:
                continue
            low, high = step_range(r.prediction.step_s, level)
            inside += low <= r.measurement.step_s <= high
            total += 1
    assert total == 4 * 37 and inside >= 0.9 * total, f"{inside}/{total}"


def _host_bound(row: v.ValidationRow) -> bool:
    """The estimate says the host sets this row's pace (exposed host time over a fifth of the step)."""
    host = (row.prediction.by_class_s or {}).get("host (exposed)", 0.0)
    return host > 0.2 * row.prediction.step_s


def test_h200_over_h100_step_ratio_holds_per_row(replayed) -> None:
    """Same harness, same software, two cards: the predicted H100 / H200 step ratio of each measured case lies within
    +-25% of the measured one (spec sheet only; the H100 rows chose no figure).  Rows whose pace the host sets are
    left out: the two cards sat on different hosts (gpt2-tiny: 1.46x slower on the H100's), which a spec-sheet
    estimate cannot know and the H100's probe did not measure."""
    by_case = {}
    for card in CARDS:
        for r in replayed[(card, "none")]:
            if r.measurement is not None and r.prediction.step_s:
                by_case.setdefault((r.model, repr(r.case)), {})[card] = r
    pairs = [(c["h100-2026-11-28"], c["h200-2026-11-28"]) for c in by_case.values() if len(c) == 2]
    assert len(pairs) == 37
    pairs = [(a, b) for a, b in pairs if not (_host_bound(a) or _host_bound(b))]
    assert len(pairs) >= 20
    for h100, h200 in pairs:
        measured = h100.measurement.step_s / h200.measurement.step_s
        predicted = h100.prediction.step_s / h200.prediction.step_s
        assert abs(predicted / measured - 1.0) <= 0.25, (h100.model, measured, predicted)
