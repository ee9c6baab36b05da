"""Convolutions: cuDNN's NCHW<->NHWC layout transposes and Winograd on the CUDA cores.

cuDNN's tensor-core convolutions take NHWC: on NCHW tensors (PyTorch's default layout) every call (forward, data and
weight gradient) transposes its tensors, taken as one more read and write of the call's own tensors at the slower
of the bandwidth and ``LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE``; channels_last models do not pay it.  3x3 stride-1
convolutions on the CUDA cores (fp32 without TF32 tensor cores) run Winograd: fewer multiplies than the direct
FLOPs counted.  The convolutions' own rate is the profile's ``conv`` efficiency (TF32 for fp32 under cuDNN's
default).  The measurements: docs/estimates.md, "PyTorch's defaults decide the math" and "cuDNN layouts".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.estimator.gemm import matmul_seconds
from advisor.estimator.index_bound import bytes_seconds
from advisor.estimator.pricing import register

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

#: Layout transposes, elements per SM per boost cycle (H200 profile of ResNet-50: 4.28 fp16, 3.67 fp32, median of
#: the kernels 3.98; benchmarks/strided_rates.py).
LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE = 4.0
LAYOUT_SOURCE = ("cuDNN transposes NCHW tensors to NHWC for every tensor-core convolution call (one more read + "
                 "write of the call's tensors, at the slower of the bandwidth and "
                 f"~{LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE:g} elements per SM per cycle) and runs NCHW training "
                 "batch norm at ~1.4 elements per SM per cycle (H200 profile of ResNet-50); channels_last "
                 "(estimate(..., channels_last=True)) avoids both")
#: F(2x2, 3x3): 16 multiplies per 2x2 output tile instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional
#: Neural Networks", CVPR 2016), at the same achieved rate; tensor-core convolutions run implicit GEMMs at the FLOPs
#: counted.
WINOGRAD_MULTIPLY_REDUCTION = 2.25
WINOGRAD_SOURCE = (f"3x3 stride-1 fp32 convolutions on CUDA cores run cuDNN's Winograd algorithms: "
                   f"{WINOGRAD_MULTIPLY_REDUCTION:g}x fewer multiplies (F(2x2,3x3), Lavin & Gray 2016)")


@register("conv")
def price_conv(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """A convolution: its implicit GEMMs against its bytes, plus cuDNN's NCHW<->NHWC transposes.

    The GEMMs at the conv rate (Winograd's for 3x3 on CUDA cores); the transposes where the card makes them.
    """
    tc = matmul_seconds(op, rates, op.flops, rates.peaks[op.cls], op.min_dim)
    tm = bytes_seconds(op, rates, rates.memory_bytes_s)
    t = max(tc, tm)
    if rates.layout_transposes:
        t += op.transpose_bytes / rates.transpose_bytes_s
    return tc, tm, t
