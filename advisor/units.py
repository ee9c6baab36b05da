"""Unit constants and human formatting.

Compute in base units (bytes, seconds, FLOP/s); convert here, at the edges, when printing.
"""

from __future__ import annotations

import math

KiB = 1024
MiB = 1024**2
GiB = 1024**3
KB = 1000
MB = 1000**2
GB = 1000**3
TB = 1000**4
TFLOPS = 1e12
GFLOPS = 1e9


def format_bytes(n: float | None, binary: bool = True) -> str:
    """Format a byte count: ``format_bytes(3 * GiB) == '3.00 GiB'``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] if binary else ["B", "kB", "MB", "GB", "TB", "PB"]
    base = 1024.0 if binary else 1000.0
    value = float(n)
    for unit in units:
        if abs(value) < base or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= base
    raise AssertionError("unreachable")


def format_seconds(s: float | None) -> str:
    """Format a duration in the unit that reads best (us, ms, s, min, h, days)."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    if s < 120:
        return f"{s:.2f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def format_rate(flops_per_s: float | None, unit: str = "FLOP/s") -> str:
    """Format a rate with an SI prefix: ``format_rate(1.5e14) == '150.0 TFLOP/s'``."""
    if flops_per_s is None:
        return "n/a"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(flops_per_s) >= scale:
            return f"{flops_per_s / scale:.1f} {prefix}{unit}"
    return f"{flops_per_s:.1f} {unit}"


def format_count(n: float | None) -> str:
    """Format a large count: ``format_count(6.7e9) == '6.70 B'``."""
    if n is None:
        return "n/a"
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n:.0f}"


def format_usd(usd: float | None) -> str:
    """Format dollars so small sums stay readable: ``$1,234``, ``$12.34``, ``34.5¢``, ``0.42¢``; never ``$0``."""
    if usd is None or (isinstance(usd, float) and math.isnan(usd)):
        return "n/a"
    if usd == 0:
        return "$0.00"
    if abs(usd) >= 100:
        return f"${usd:,.0f}"
    if abs(usd) >= 1:
        return f"${usd:,.2f}"
    cents = usd * 100
    return f"{cents:.1f}¢" if abs(cents) >= 1 else f"{cents:.2g}¢"


def format_energy(kwh: float | None) -> str:
    """Format energy from kWh in the unit that reads best (MWh, kWh, Wh, mWh); never ``0.0 kWh``."""
    if kwh is None or (isinstance(kwh, float) and math.isnan(kwh)):
        return "n/a"
    if kwh == 0:
        return "0 Wh"
    if abs(kwh) >= 1000:
        return f"{kwh / 1000:,.2f} MWh"
    if abs(kwh) >= 1:
        return f"{kwh:,.2f} kWh" if abs(kwh) < 100 else f"{kwh:,.0f} kWh"
    wh = kwh * 1000
    if abs(wh) >= 1:
        return f"{wh:.3g} Wh"
    return f"{wh * 1000:.3g} mWh"


def format_hours(hours: float | None) -> str:
    """Format a number of hours (break-even times): ``format_hours(1500) == '1,500 h'``."""
    if hours is None or (isinstance(hours, float) and math.isnan(hours)):
        return "n/a"
    if hours < 2:
        return format_seconds(hours * 3600)
    return f"{hours:,.0f} h" if hours >= 10 else f"{hours:.1f} h"
