"""Recurrent layers: cuDNN's persistent kernels run their time steps one after another.

A recurrent op (``OpCost.serial_steps``: sequence length x layers x directions) takes at least its steps x
``RECURRENT_STEP_S``; on a GPU it takes that plus the GEMMs cuDNN runs beside the persistent kernel (the op's
``gemms``, priced by tiles at cuDNN's rate: ``advisor.estimator.ops`` plans them, ``price_recurrent`` prices
them).  Off cuDNN (the host's CPU) a recurrent op's FLOPs all run at its class's rate.  The measurements:
docs/estimates.md, "Recurrent layers".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.estimator.gemm import matmul_seconds, shape_seconds
from advisor.estimator.index_bound import bytes_seconds
from advisor.estimator.pricing import register

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

#: One dependent time step of cuDNN's ``RNN_blockPersist_*`` kernels, whatever the batch (H200 profile of lstm-lm:
#: 2.3-2.5 us per step forward and backward).
RECURRENT_STEP_S = 2.4e-6


@register("recurrent")
def price_recurrent(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """An op with dependent steps: cuDNN's persistent kernel on a GPU, else no faster than its steps.

    cuDNN's: its steps, then its plan's GEMMs at cuDNN's rate (TF32 for fp32, as for convolutions; the traced
    per-step ops' bytes are not cuDNN's).
    """
    tm = bytes_seconds(op, rates, rates.memory_bytes_s)
    plan, sms = op.plan, rates.sm_count
    if op.steps and plan is not None and rates.step_latency_s and sms:
        tc = plan[0] * sum(shape_seconds(g, rate_flops=rates.conv_flops, sms=sms) for g in plan[1])
        return tc, tm, op.steps * rates.step_latency_s + tc
    tc = matmul_seconds(op, rates, op.flops, rates.peaks[op.cls], op.min_dim)
    return tc, tm, max(tc, tm, op.steps * rates.step_latency_s)
