"""A range on every step time: low / expected / high from the evidence behind the card's figures.

The widths are measured error spreads, not chosen: for each evidence level, the 5th and 95th percentiles of
``measured / predicted`` step time over the rows of that level (``benchmarks/range_widths.py`` prints them and
says which rows; docs/accuracy.md has the table):

* ``calibrated`` (a probe of the card replaced its GEMM figures): the shared H200 / H100 validate runs replayed
  with each card's own probe (tests/data/gpu-runs, 74 rows).
* ``measured`` (the card's profile rests on measurements of its family): the same runs replayed with the spec
  sheet only, and the published-measurements table's throughput rows on measured profiles (Hopper, GA100, Volta).
* ``literature`` and ``inherited``: the published table's rows on the other profiles (GA10x, Ada, Turing).  Too
  few rows to split them: both take this spread, the widest measured.

Measured on 2026-12-07 (2-core CPU VM, the landed estimator of that day): these are in-sample percentiles, so a
regression row lies inside its range about 90% of the time by construction; tests/test_replay.py holds >= 90% on
the shared runs.  New families' errors may be wider than their pool's: an inherited profile's range is a floor.
Pure arithmetic.
"""

from __future__ import annotations

#: Evidence level -> (5th, 95th) percentile of measured / predicted step time (benchmarks/range_widths.py).
RANGE_QUANTILES: dict[str, tuple[float, float]] = {
    "calibrated": (0.89, 1.28),   # 74 rows
    "measured": (0.85, 1.41),     # 128 rows: 74 shared-run rows + 54 published rows on Hopper / GA100 / Volta
    "literature": (0.23, 1.34),   # 14 published rows (GA10x, Ada, Turing; the low end is the T4 rows')
    "inherited": (0.23, 1.34),    # no end-to-end row exists for these families: the literature spread, a floor
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
