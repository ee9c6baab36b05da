"""Optimizer passes: torch.optim's foreach and fused kernels below the copy bandwidth; a per-parameter loop's kernels.

The optimizer op's bytes (torch.optim's foreach and fused implementations, counted from torch's own code by
``benchmarks/count_optimizer_bytes.py``: ``advisor.workload.costs``) run at ``FOREACH_BANDWIDTH_FRACTION`` of the
card's copy bandwidth, by the bytes of the optimizer's states (``multi_tensor_apply`` accesses four elements at a
time: 16 bytes at fp32, 8 at 16-bit).  The measurements: docs/estimates.md, "Optimizer passes".  A per-parameter
loop (``optimizer_loop``: torch's ``foreach=False``, Hugging Face's ``AdamW``, DeepLearningExamples' ``BertAdam``)
launches ordinary TensorIterator kernels, one per update line per parameter: priced as every elementwise kernel
(its bytes at the bandwidth; its launch gaps, one per kernel, are the pricing loop's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.estimator.index_bound import bytes_seconds
from advisor.estimator.pricing import register
from advisor.precision import master_bytes

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

#: Share of the copy bandwidth by bytes per state element (H200 profile, ``Optimizer.step`` device time against the
#: op's bytes: fp32 0.29-0.85, median 0.76; 16-bit 0.60 / 0.71, median 0.65).
FOREACH_BANDWIDTH_FRACTION: dict[int, float] = {4: 0.76, 2: 0.65}


def foreach_bandwidth_fraction(precision: str) -> float:
    """The optimizer kernels' share of the copy bandwidth at ``precision``'s state bytes (1.0 where unmeasured)."""
    return FOREACH_BANDWIDTH_FRACTION.get(master_bytes(precision), 1.0)


@register("optimizer")
def price_optimizer(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """An optimizer pass: its bytes at the foreach kernels' bandwidth (the copy bandwidth where unmeasured)."""
    tc = op.flops / rates.vector_flops
    tm = bytes_seconds(op, rates, rates.optimizer_bytes_s or rates.memory_bytes_s)
    return tc, tm, max(tc, tm)


@register("optimizer_loop")
def price_optimizer_loop(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """A per-parameter loop's kernels: their bytes at the bandwidth every elementwise kernel is priced at."""
    tc = op.flops / rates.vector_flops
    tm = bytes_seconds(op, rates, rates.memory_bytes_s)
    return tc, tm, max(tc, tm)
