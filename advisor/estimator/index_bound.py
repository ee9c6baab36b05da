"""Index-bound elementwise kernels: priced by elements per SM cycle, not bytes.

Elementwise kernels off TensorIterator's vectorized path (a broadcast, non-contiguous or cast operand; ``cat``
along an inner dimension), reductions across rows (bias gradients) and NCHW max pooling compute an offset per
element and load one element at a time.  The tracer counts such elements per op (``OpCost.strided_elements``); a
group is priced at the slower of its bytes and its elements.  Rates at the boost clock (these kernels draw far
from the power cap), fitted on the H200 profile only (``benchmarks/strided_rates.py``; the H100 rows check them):
docs/estimates.md, "Index-bound elementwise kernels".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.estimator.pricing import register
from advisor.workload.aten_ops import label_op
from advisor.workload.base import OpCost

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

#: Non-vectorized elementwise kernels, whatever the dtype (12 ops of four models: 0.91-1.49, median).
STRIDED_ELEMENTS_PER_SM_CYCLE = 1.15
#: Reductions across rows, keeping the innermost dimension (6 ops: 1.51-2.91, median 2.54).
COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE = 2.5
COLUMN_REDUCE_RATIO = STRIDED_ELEMENTS_PER_SM_CYCLE / COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE  # in elementwise units
#: NCHW max pooling (``advisor.workload.aten_ops.MAX_POOLS``): output elements per SM per cycle forward, input
#: elements backward (with its zero fill), whatever the window.  Channels-last tensors take the NHWC kernels
#: (unmeasured: priced by bytes).
MAX_POOL_ELEMENTS_PER_SM_CYCLE: dict[str, float] = {"max_pool2d_with_indices": 0.24,
                                                    "max_pool2d_with_indices_backward": 0.33}
STRIDED_SOURCE = (f"elementwise ops with a broadcast, non-contiguous or cast operand run TensorIterator's "
                  f"index-computing kernels at ~{STRIDED_ELEMENTS_PER_SM_CYCLE:g} elements per SM per cycle, "
                  f"reductions across rows at ~{COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE:g} (H200 profile: "
                  "benchmarks/strided_rates.py), not at the memory bandwidth")
POOL_SOURCE = ("NCHW max pooling runs a thread per output element forward and per input element backward at "
               f"~{MAX_POOL_ELEMENTS_PER_SM_CYCLE['max_pool2d_with_indices']:g} and "
               f"~{MAX_POOL_ELEMENTS_PER_SM_CYCLE['max_pool2d_with_indices_backward']:g} per SM per cycle (H200 "
               "profile: benchmarks/strided_rates.py), not at the memory bandwidth; channels_last avoids it")


def max_pool_rate(op: OpCost) -> float | None:
    """Threads per SM per cycle of an NCHW max-pooling op (``MAX_POOL_ELEMENTS_PER_SM_CYCLE``); None for others."""
    if not op.strided_elements:
        return None
    return MAX_POOL_ELEMENTS_PER_SM_CYCLE.get(label_op(op.name))


def index_bound_elements(op: OpCost, channels_last: bool) -> float:
    """An op's index-bound elements in ``STRIDED_ELEMENTS_PER_SM_CYCLE`` units (0 where it is priced by bytes)."""
    if not op.strided_elements:
        return 0.0
    pool = max_pool_rate(op)
    if pool is not None:  # a traced NCHW pool run channels_last takes the NHWC kernels
        return 0.0 if channels_last else op.strided_elements * STRIDED_ELEMENTS_PER_SM_CYCLE / pool
    return op.strided_elements * (COLUMN_REDUCE_RATIO if op.kind == "reduction" else 1.0)


def bytes_seconds(op: PreparedOp, rates: CardRates, bytes_s: float) -> float:
    """An op's memory side: its bytes at ``bytes_s``, or its index-bound elements where that is slower."""
    tm = op.bytes / bytes_s
    if op.strided and rates.strided_elements_s:
        tm = max(tm, op.strided / rates.strided_elements_s)
    return tm


@register("elementwise", "reduction", "embedding", "communication", "other")
def price_vector(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """A vector op (its class is ``VECTOR``): its FLOPs at the vector rate against ``bytes_seconds``."""
    tc = op.flops / rates.vector_flops
    tm = bytes_seconds(op, rates, rates.memory_bytes_s)
    return tc, tm, max(tc, tm)
