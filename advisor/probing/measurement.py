"""One timed kernel's repetitions (``Measurement``) and the device state sampled while it ran (``Sample``).

Frozen dataclasses with ``to_dict()`` / ``from_dict()``, the parts of a probe's ``KernelResult``
(``advisor.probing.results``, which exports them too).  Pure Python: no torch, no pynvml.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of pre-sorted values: linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Measurement:
    """Per-iteration times of the repetitions of one timed kernel, with their spread.

    Args (fields):
        times_s: seconds per iteration, one entry per repetition.
        iterations: iterations per timed region (chosen so each region lasts >= ``min_region_s``).
        warmup_iterations: untimed-for-the-result calls made before measuring.
        spread_limit: IQR / median above which the result is flagged not trustworthy.
    """

    times_s: tuple[float, ...]
    iterations: int
    warmup_iterations: int = 0
    min_region_s: float = 1e-3
    spread_limit: float = 0.10

    @property
    def median_s(self) -> float:
        """Median seconds per iteration."""
        return statistics.median(self.times_s)

    @property
    def p10_s(self) -> float:
        """10th percentile (fast end)."""
        return quantile(sorted(self.times_s), 0.10)

    @property
    def p90_s(self) -> float:
        """90th percentile (slow end)."""
        return quantile(sorted(self.times_s), 0.90)

    @property
    def iqr_s(self) -> float:
        """Inter-quartile range of the per-iteration times."""
        s = sorted(self.times_s)
        return quantile(s, 0.75) - quantile(s, 0.25)

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        m = self.median_s
        return self.iqr_s / m if m > 0 else math.inf

    @property
    def too_spread(self) -> bool:
        """The spread is above ``spread_limit``."""
        return self.spread > self.spread_limit

    @property
    def trustworthy(self) -> bool:
        """Enough repetitions (>= 5) and a spread within ``spread_limit``."""
        return len(self.times_s) >= 5 and not self.too_spread

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, derived statistics included."""
        return {"times_s": list(self.times_s), "iterations": self.iterations,
                "warmup_iterations": self.warmup_iterations, "min_region_s": self.min_region_s,
                "spread_limit": self.spread_limit, "median_s": self.median_s, "p10_s": self.p10_s,
                "p90_s": self.p90_s, "iqr_s": self.iqr_s, "spread": self.spread, "trustworthy": self.trustworthy}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        """Inverse of ``to_dict``."""
        return cls(times_s=tuple(data["times_s"]), iterations=int(data["iterations"]),
                   warmup_iterations=int(data.get("warmup_iterations", 0)),
                   min_region_s=float(data.get("min_region_s", 1e-3)),
                   spread_limit=float(data.get("spread_limit", 0.10)))


@dataclass(frozen=True, slots=True)
class Sample:
    """Device state sampled while a kernel ran (``None`` where not reported)."""

    t_s: float
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    power_draw_w: float | None = None
    temperature_c: int | None = None
    throttle_reasons: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        d = dataclasses.asdict(self)
        if d["throttle_reasons"] is not None:
            d["throttle_reasons"] = list(d["throttle_reasons"])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        """Inverse of ``to_dict``."""
        kw = dict(data)
        if kw.get("throttle_reasons") is not None:
            kw["throttle_reasons"] = tuple(kw["throttle_reasons"])
        return cls(**kw)
