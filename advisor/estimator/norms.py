"""Normalization kernels: cuDNN's NCHW training batch norm by its elements, the others by their bandwidth.

cuDNN's NCHW training batch norm (``bn_fw_tr_1C11`` / ``bn_bw_1C11``: one block row per channel, several passes)
is bound by its per-element work: priced at ``BN_NCHW_ELEMENTS_PER_SM_CYCLE`` on every card with a known SM count
and clock, or by its bytes where that is slower.  Every other norm kernel (inference batch norm, layer norm,
RMSNorm) moves its bytes at the profile's ``norm_memory`` share of the bandwidth (``advisor.estimator.profiles``).
The measurements: docs/estimates.md, "cuDNN layouts".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.estimator.index_bound import bytes_seconds
from advisor.estimator.pricing import register
from advisor.workload.base import OpCost

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

#: Elements per SM per cycle of NCHW training batch norm (H200 profile of ResNet-50: 0.373 G elements/ms fp16, 0.342
#: fp32, at 132 SMs x 1.98 GHz).
BN_NCHW_ELEMENTS_PER_SM_CYCLE = 1.37
_BATCH_NORMS = ("native_batch_norm", "cudnn_batch_norm", "_native_batch_norm_legit", "batch_norm")


def is_training_batch_norm(op: OpCost) -> bool:
    """A batch norm that computes batch statistics (inference's ``no_training`` is one fused elementwise pass)."""
    return (op.kind == "norm" and op.name.removeprefix("aten.").startswith(_BATCH_NORMS)
            and "no_training" not in op.name)


@register("norm")
def price_norm(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """A norm: NCHW training batch norm by the slower of its elements and bytes, the others by their bytes.

    Those bytes at the norm kernels' bandwidth (``norm_bytes_s``).
    """
    tc = op.flops / rates.vector_flops
    bn = op.bn_elements
    tm = bytes_seconds(op, rates, rates.norm_bytes_s if rates.norm_bytes_s and not bn else rates.memory_bytes_s)
    if bn and rates.bn_elements_s:
        tm = max(tm, bn / rates.bn_elements_s)
    return tc, tm, max(tc, tm)
