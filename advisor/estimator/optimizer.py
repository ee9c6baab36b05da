"""Optimizer passes: torch.optim's foreach kernels move their bytes below the copy bandwidth.

The optimizer op's bytes (torch.optim's foreach implementations, counted from torch's own code by
``benchmarks/count_optimizer_bytes.py``: ``advisor.workload.costs``) run at ``FOREACH_BANDWIDTH_FRACTION`` of the
card's copy bandwidth, by the bytes of the optimizer's states (``multi_tensor_apply`` accesses four elements at a
time: 16 bytes at fp32, 8 at 16-bit).  The measurements: docs/estimates.md, "Optimizer passes".
"""

from __future__ import annotations

from advisor.precision import master_bytes

#: Share of the copy bandwidth by bytes per state element (H200 profile, ``Optimizer.step`` device time against the
#: op's bytes: fp32 0.29-0.85, median 0.76; 16-bit 0.60 / 0.71, median 0.65).
FOREACH_BANDWIDTH_FRACTION: dict[int, float] = {4: 0.76, 2: 0.65}


def foreach_bandwidth_fraction(precision: str) -> float:
    """The optimizer kernels' share of the copy bandwidth at ``precision``'s state bytes (1.0 where unmeasured)."""
    return FOREACH_BANDWIDTH_FRACTION.get(master_bytes(precision), 1.0)
