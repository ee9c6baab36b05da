"""The pricing registry: one small function per op kind says what one op of that kind costs on a card.

As ``torch.utils.flop_counter`` registers one FLOP formula per aten op (``register_flop_formula``), each mechanism
module registers, beside its figures and its words, how an op of its kind spends time: ``@register("matmul")`` in
``gemm``, ``"conv"`` in ``conv``, ``"attention"`` in ``attention``, ``"recurrent"`` in ``recurrent``, ``"norm"`` in
``norms``, ``"optimizer"`` in ``optimizer`` and the vector kinds (elementwise, reductions, embeddings, ...) in
``index_bound``.  ``ops.prepare_ops`` files each op under its pricing kind once per workload (``pricing_kind``);
``time.ops_time_detail`` looks the function up per op and card and adds up what it returns: the op's compute-side
seconds, its memory-side seconds and its seconds (launch gaps are the loop's).

Also the small vocabulary the pricing functions read: the op classes (which peak an op runs at), the phases and
the breakdown groups.  No figure lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

# Op classes (ints keep the per-card loop cheap): the index of the op's peak in ``CardRates.peaks``.
TENSOR, CONV, MATMUL_VECTOR, VECTOR, CONV_3X3 = 0, 1, 2, 3, 4
CONV_CLASSES = (CONV, CONV_3X3)
#: What ``estimate --breakdown`` reports time by (an op's ``kind`` decides its group).
GROUPS: tuple[str, ...] = ("gemm", "attention", "conv", "norm", "elementwise", "optimizer", "communication",
                           "other")
PHASES: tuple[str, ...] = ("forward", "backward", "optimizer", "prefill", "decode")
BACKWARD = PHASES.index("backward")

#: An op's (compute-side seconds, memory-side seconds, seconds) on a card: the loop books the op to the side that
#: is larger and adds its launch gaps.
PriceFn = Callable[["PreparedOp", "CardRates"], tuple[float, float, float]]
#: The pricing function of each pricing kind (``register``).
PRICING: dict[str, PriceFn] = {}


def register(*kinds: str) -> Callable[[PriceFn], PriceFn]:
    """Register the decorated function as the pricing of ``kinds`` (each kind has exactly one).

    Raises:
        ValueError: a kind another function already prices.
    """
    def add(fn: PriceFn) -> PriceFn:
        for kind in kinds:
            old = PRICING.get(kind)
            if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"op kind {kind!r} is priced twice: {old.__module__}.{old.__qualname__} and "
                                 f"{fn.__module__}.{fn.__qualname__}")
            PRICING[kind] = fn
        return fn

    return add
