"""Convolutions: cuDNN's NCHW<->NHWC layout transposes and Winograd on the CUDA cores.

cuDNN's tensor-core convolutions take NHWC: on NCHW tensors (PyTorch's default layout) every call (forward, data and
weight gradient) transposes its tensors, taken as one more read and write of the call's own tensors at the slower
of the bandwidth and ``LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE``; channels_last models do not pay it.  3x3 stride-1
convolutions on the CUDA cores (fp32 without TF32 tensor cores) run Winograd: fewer multiplies than the direct
FLOPs counted.  The convolutions' own rate is the profile's ``conv`` efficiency; which math an fp32 convolution
runs is the family's convolution library's (profile figure ``conv_fp32_math``, ``fp32_conv_rate``).  The
measurements: docs/estimates.md, "PyTorch's defaults decide the math" and "cuDNN layouts".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

#: How a family's convolution library runs an fp32 convolution under PyTorch's defaults (profile figure
#: ``conv_fp32_math``): ``tf32``: cuDNN takes ``torch.backends.cudnn.allow_tf32`` (True by default) and runs it on
#: the TF32 tensor cores where the card has them, else on the FP32 units; ``matrix``: PyTorch's MIOpen convolution
#: descriptor carries no math mode (aten/src/ATen/miopen/Descriptors.h: data type, mode, padding, strides,
#: dilation, groups), so MIOpen runs fp32 math, its xdlops implicit-GEMM solvers on the matrix cores at the FP32
#: matrix rate (the vector peak x ``fp32_matrix``), never AMD's xf32; ``vector``: the FP32 units at the GEMM figure.
#: Off the tensor-core (16-bit / TF32) path a convolution's implicit GEMMs tile as the fp32 GEMMs on the same units
#: do (``gemm.SIMT_TILES``, any alignment): a rate a quarter of the 16-bit one is fed fully by small tiles.  CDNA 2's
#: fp32 matrix path measures so: MI210 square fp32 matmuls at 1024^3 run at 0.92 of their 4096^3 rate where fp16's
#: run at 0.53 (PyTorch 2.13 + ROCm 7.2, one script: zzc0721/torch-performance-test-data#195); rocBLAS SGEMM 30.1
#: vs 32.3 TFLOP/s, 0.93 (ROCm/rocm-libraries#9453, at 1,635-1,700 MHz).
CONV_FP32_MATHS: tuple[str, ...] = ("tf32", "matrix", "vector")
CONV_FP32_SOURCE = ("fp32 convolutions on ROCm run fp32 math (PyTorch's MIOpen descriptor sets no TF32 / xf32 mode): "
                    "MIOpen's xdlops solvers on the matrix cores at the FP32 matrix rate, tiled as its fp32 GEMMs")


def fp32_conv_rate(spec: Any, eff: Any, vector_held: float) -> tuple[float, float, bool]:
    """(peak FLOP/s, efficiency, on tensor-core tiles) of an fp32 convolution on ``spec`` (``eff``: its profile).

    ``vector_held``: the FP32 vector peak at the sustained clock.  ``eff.conv_fp32_math`` is one of
    ``CONV_FP32_MATHS``; only TF32 runs the tensor-core tiles (CDNA's fp32 matrix path tiles as its fp32 GEMMs do).
    """
    math = eff.conv_fp32_math
    if math == "tf32" and spec.tf32_tflops:
        return spec.tf32_tflops * 1e12 * eff.clock, eff.conv, True
    if math == "matrix":
        return vector_held * eff.fp32_matrix, eff.conv, False
    return vector_held, eff.matmul, False


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
