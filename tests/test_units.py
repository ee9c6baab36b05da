from __future__ import annotations

import pytest

from advisor.catalog import pcie_bandwidth_gbs
from advisor.units import (
    GiB,
    MiB,
    format_bytes,
    format_count,
    format_energy,
    format_hours,
    format_rate,
    format_seconds,
    format_usd,
)


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (3 * GiB, "3.00 GiB"), (1.5 * MiB, "1.50 MiB"),
                                         (None, "n/a")])
def test_format_bytes(n: float | None, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(("s", "text"), [(5e-6, "5.0 us"), (0.0123, "12.30 ms"), (3.2, "3.20 s"), (600, "10.0 min"),
                                         (5 * 3600, "5.0 h"), (3 * 86400, "3.0 days")])
def test_format_seconds(s: float, text: str) -> None:
    assert format_seconds(s) == text


def test_format_rate_and_count() -> None:
    assert format_rate(1.5e14) == "150.0 TFLOP/s"
    assert format_rate(2.5e9, "B/s") == "2.5 GB/s"
    assert format_count(6.74e9) == "6.74 B"


@pytest.mark.parametrize(("gen", "lanes", "gbs"), [(3, 16, 15.75), (4, 16, 31.5), (5, 16, 63.0), (4, 8, 15.75)])
def test_pcie_bandwidth_from_generation_and_width(gen: int, lanes: int, gbs: float) -> None:
    assert pcie_bandwidth_gbs(gen, lanes) == pytest.approx(gbs, rel=1e-3)


def test_pcie_unknown_is_none() -> None:
    assert pcie_bandwidth_gbs(None, 16) is None
    assert pcie_bandwidth_gbs(9, 16) is None


@pytest.mark.parametrize(("usd", "text"), [(1234.5, "$1,234"), (12.345, "$12.35"), (0.345, "34.5¢"),
                                           (0.0042, "0.42¢"), (0, "$0.00"), (None, "n/a")])
def test_format_usd_keeps_small_sums_readable(usd: float | None, text: str) -> None:
    assert format_usd(usd) == text


@pytest.mark.parametrize(("kwh", "text"), [(2500, "2.50 MWh"), (12.34, "12.34 kWh"), (0.0712, "71.2 Wh"),
                                           (0.0000123, "12.3 mWh"), (None, "n/a")])
def test_format_energy_never_rounds_to_zero_kwh(kwh: float | None, text: str) -> None:
    assert format_energy(kwh) == text


@pytest.mark.parametrize(("hours", "text"), [(10_033.4, "10,033 h"), (5.25, "5.2 h"), (0.5, "30.0 min")])
def test_format_hours(hours: float, text: str) -> None:
    assert format_hours(hours) == text
