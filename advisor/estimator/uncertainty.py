"""A range on every step time: low / expected / high from the evidence behind the card's figures.

The widths are measured error spreads, not chosen: for each evidence level, the 5th and 95th percentiles of
``measured / predicted`` step time over the rows of that level (``benchmarks/range_widths.py`` prints them and
says which rows; docs/accuracy.md has the table):

* ``calibrated`` (a probe of the card replaced its GEMM figures): the shared H200 / H100 validate runs replayed
  with each card's own probe (tests/data/gpu-runs, 74 rows).
* ``measured`` (the card's profile rests on measurements of its family): the same runs replayed with the spec
  sheet only, and the published-measurements table's throughput rows on measured profiles (Hopper, GA100, Volta).
* ``literature``: the published table's rows on the other profiles with rows (GA10x, Ada, Turing).
* ``inherited``: no end-to-end row exists for these families, so nothing measures their spread and nothing narrows
  it: it is held at least as wide as every measured level at both ends (low: the literature pool's 0.23x from
  before its 2019 T4 rows were replaced; high: the ``measured`` level's 1.41x), a floor for errors no row has
  checked, not a measurement.

Measured on 2026-12-07 (2-core CPU VM, the landed estimator of that day): these are in-sample percentiles, so a
regression row lies inside its range about 90% of the time by construction; tests/test_replay.py holds >= 90% on
the shared runs.  Pure arithmetic.
"""

from __future__ import annotations

#: Evidence level -> (5th, 95th) percentile of measured / predicted step time (benchmarks/range_widths.py).
RANGE_QUANTILES: dict[str, tuple[float, float]] = {
    "calibrated": (0.89, 1.28),   # 74 rows
    "measured": (0.85, 1.41),     # 128 rows: 74 shared-run rows + 54 published rows on Hopper / GA100 / Volta
    "literature": (0.69, 1.21),   # 16 published rows (GA10x 4, Ada 8, Turing 4): min 0.691, max 1.200
    "inherited": (0.23, 1.41),    # no end-to-end row: not measured; at least as wide as every measured level
}
RANGE_SOURCE = ("5th-95th percentile of measured / predicted step time over the rows of the same evidence level: "
                "the shared H200/H100 runs replayed with their own probe (calibrated) or the spec sheet, and the "
                "published-measurements table (benchmarks/range_widths.py)")


def evidence_level(profile_evidence: str, calibrated: bool) -> str:
    """The estimate's evidence level: ``calibrated`` where a probe set its figures, else its profile's."""
    return "calibrated" if calibrated else profile_evidence


def step_range(step_s: float, evidence: str) -> tuple[float, float]:
    """(low, high) step seconds around the expected ``step_s`` for an estimate of ``evidence``."""
    lo, hi = RANGE_QUANTILES.get(evidence, RANGE_QUANTILES["inherited"])
    return step_s * lo, step_s * hi


def overlapping(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (low, high) ranges overlap."""
    return a[0] <= b[1] and b[0] <= a[1]
