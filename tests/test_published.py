"""The advisor against published, sourced measurements (tests/data/published_measurements.csv).

The per-row comparison lives in benchmarks/published_table.py (which also writes
docs/accuracy-published.md); here the table's integrity is checked and the median errors
are held to issue 5's targets: throughput <= 25%, peak memory <= 10%.
"""

from __future__ import annotations

import csv
import functools
import re
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from advisor.workload.options import MODES, PRECISIONS
from tests import benchmark_scripts

ROOT = Path(__file__).resolve().parent.parent
CSV_PATH = ROOT / "tests" / "data" / "published_measurements.csv"
COLUMNS = ["id", "model", "gpu", "num_gpus", "mode", "precision", "optimizer", "batch_size", "seq_len",
           "image_size", "options", "metric", "value", "source", "notes"]
METRICS = {"samples_per_s", "tokens_per_s", "tokens_per_s_per_gpu", "decode_tokens_per_s", "prefill_s",
           "peak_memory_gib", "peak_memory_gb", "peak_memory_mib"}


def _table_module() -> ModuleType:
    return benchmark_scripts.load("published_table")


def _rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def _estimator_ready() -> bool:
    try:
        from advisor.api import estimate  # noqa: F401
    except ImportError:
        return False
    return True


def test_table_has_enough_sourced_rows() -> None:
    rows = _rows()
    assert len(rows) >= 20
    assert len({r["id"] for r in rows}) == len(rows), "ids must be unique"
    families = {r["model"].split("-")[0] for r in rows}
    assert {"resnet50", "bert", "llama"} <= families
    assert len({r["gpu"] for r in rows}) >= 4
    assert sum(r["metric"].startswith("peak_memory") for r in rows) >= 4


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["id"])
def test_row_is_well_formed(row: dict[str, str]) -> None:
    assert row["metric"] in METRICS
    assert row["mode"] in MODES
    assert row["precision"] in PRECISIONS
    assert float(row["value"]) > 0
    assert int(row["num_gpus"]) >= 1 and int(row["batch_size"]) >= 1
    assert re.match(r"https://\S+", row["source"]), "every row names its source URL"
    assert " — " in row["source"] or "row" in row["source"], "and where in the source the figure is"
    assert row["notes"].strip()
    if row["mode"] == "train":
        assert row["optimizer"]


@functools.cache
def _evaluated() -> tuple[ModuleType, list]:  # type: ignore[type-arg]
    table = _table_module()
    results = table.evaluate(CSV_PATH)
    print()
    for r in results:
        err = "n/a" if r.error is None else f"{r.error:+.1%}"
        print(f"  {r.id:44s} {r.metric:20s} measured {r.measured:>10.4g} "
              f"predicted {'-' if r.predicted is None else f'{r.predicted:.4g}':>10s} {err:>8s} {r.note}")
    return table, results


needs_estimator = pytest.mark.skipif(not _estimator_ready(), reason="advisor.estimator not built yet")


@pytest.mark.slow  # ~20 s once (shared): the first ResNet-50 trace imports torch and traces on fake tensors
@needs_estimator
def test_most_rows_are_estimable() -> None:
    _, results = _evaluated()
    missing = [f"{r.id}: {r.note}" for r in results if r.error is None]
    assert len(missing) <= len(results) // 4, missing


@pytest.mark.slow
@needs_estimator
def test_median_throughput_error_meets_target() -> None:
    table, results = _evaluated()
    med = table.medians(results)["throughput"]
    assert med is not None
    assert med <= table.THROUGHPUT_TARGET, f"median |throughput error| {med:.1%} > {table.THROUGHPUT_TARGET:.0%}"
    assert med <= table.THROUGHPUT_RATCHET, f"median |throughput error| {med:.1%} > {table.THROUGHPUT_RATCHET:.1%}"


@pytest.mark.slow
@needs_estimator
def test_median_memory_error_meets_target() -> None:
    table, results = _evaluated()
    med = table.medians(results)["memory"]
    assert med is not None
    assert med <= table.MEMORY_TARGET, f"median |memory error| {med:.1%} > {table.MEMORY_TARGET:.0%}"
    assert med <= table.MEMORY_RATCHET, f"median |memory error| {med:.1%} > {table.MEMORY_RATCHET:.0%}"


@needs_estimator
def test_a_source_measured_cuda_context_replaces_the_estimates() -> None:
    table = _table_module()
    rows = {r["id"]: r for r in table.load_rows()}
    row = dict(rows["bert-large-v100-hf-vanilla-mem"])
    assert "source_context_mib=1343" in row["options"]
    with_source, note = table.predict(row)
    row["options"] = row["options"].replace(";source_context_mib=1343", "")
    without, _ = table.predict(row)
    assert with_source is not None and without is not None
    assert "1343 MiB" in note
    assert 0 < with_source - without < 1343  # MiB: the source's 1343 less the estimate's own context


#: Issue 24: no micro-architecture's signed median throughput error beyond +-15%, over the profiles with at least
#: MIN_ARCH_ROWS rows.  Turing is held on four (the T4's DeepLearningExamples 2021 inference rows, which replaced the
#: 2019 revision's physically implausible ones, and Lambda's Quadro RTX 8000 ResNet-50 training rows).
ARCH_SIGNED_LIMIT = 0.15
MIN_ARCH_ROWS = 3


@pytest.mark.slow
@needs_estimator
def test_no_architecture_is_biased_beyond_15_percent() -> None:
    table, results = _evaluated()
    groups = table.by_architecture(results)
    held = {arch: errs for arch, errs in groups.items() if len(errs) >= MIN_ARCH_ROWS}
    assert {"ampere", "volta", "ada", "ampere-ga10x", "hopper", "turing"} <= set(held)
    for arch, errs in held.items():
        signed = statistics.median(errs)
        assert abs(signed) <= ARCH_SIGNED_LIMIT, f"{arch}: signed median {signed:+.1%} over {len(errs)} rows"
