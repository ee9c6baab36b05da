from __future__ import annotations

import pytest

from advisor.catalog import pcie_bandwidth_gbs
from advisor.units import GiB, MiB, format_bytes, format_count, format_rate, format_seconds


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
