"""The step-time ranges (advisor.estimator.uncertainty) against the regression rows they were measured on.

``benchmarks/range_widths.py`` computes measured / predicted step time per evidence level; these tests hold that each
level's range covers >= 90% of its own rows, that no measured level's range is left much wider than its rows' spread
(a stale figure, as the literature range's 0.23x low end was after the 2019 T4 rows it came from were replaced), and
that the inherited level, which no row measures, is at least as wide as every measured one at both ends.
"""

from __future__ import annotations

import functools

import pytest

from advisor.estimator.uncertainty import RANGE_QUANTILES, overlapping, step_range
from tests import benchmark_scripts

#: How much wider than its rows' 5th-95th spread a level's range may be at either end before it counts as stale
#: (the rows move a little with every estimator change; a 0.23x end over rows whose lowest is 0.69x does not).
STALE = 0.15


@functools.cache
def _pools() -> dict[str, list[float]]:
    widths = benchmark_scripts.load("range_widths")
    pools: dict[str, list[float]] = {}
    for part in (widths.replay_ratios(), widths.published_ratios()):
        for level, ratios in part.items():
            pools.setdefault(level, []).extend(ratios)
    return pools


@pytest.mark.slow
@pytest.mark.parametrize("level", ["calibrated", "measured", "literature"])
def test_each_measured_level_covers_90_percent_of_its_rows_and_is_not_stale(level: str) -> None:
    ratios = _pools()[level]
    lo, hi = RANGE_QUANTILES[level]
    inside = sum(lo <= x <= hi for x in ratios)
    assert len(ratios) >= 10 and inside >= 0.9 * len(ratios), (level, inside, len(ratios))
    q_lo, q_hi = benchmark_scripts.load("range_widths").quantiles(ratios)
    assert q_lo - lo <= STALE and hi - q_hi <= STALE, (level, (lo, hi), (q_lo, q_hi))


@pytest.mark.slow
def test_no_row_measures_the_inherited_level_and_its_range_is_the_widest() -> None:
    assert not _pools().get("inherited")
    lo, hi = RANGE_QUANTILES["inherited"]
    for level in ("calibrated", "measured", "literature"):
        assert lo <= RANGE_QUANTILES[level][0] and hi >= RANGE_QUANTILES[level][1], level


def test_a_range_brackets_the_expected_time_and_overlap_is_symmetric() -> None:
    for level in RANGE_QUANTILES:
        low, high = step_range(0.1, level)
        assert low < 0.1 < high
    assert step_range(0.1, "no-such-level") == step_range(0.1, "inherited")
    a, b = step_range(0.1, "literature"), step_range(0.125, "literature")
    assert overlapping(a, b) and overlapping(b, a)
    assert not overlapping(step_range(0.1, "calibrated"), step_range(0.2, "calibrated"))
