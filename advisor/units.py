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
