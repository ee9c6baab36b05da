"""The card's peak rates at a precision: the tensor rate matmuls run at, the vector rate, and fallbacks."""

from __future__ import annotations

from advisor.catalog import GpuSpec
from advisor.errors import EstimateError

#: Precisions that run on a card without an fp16 tensor rate, as 16-bit storage with fp32 math.
HALF_ON_FP32_UNITS = ("fp16", "amp-fp16")


def matmul_rate(spec: GpuSpec, precision: str) -> tuple[float, str] | None:
    """The dense tensor rate (FLOP/s) matmuls at ``precision`` run at on the card, and whose rate it is.

    ``None`` when the card cannot run them.

    int4 is weight-only in practice (GPTQ, AWQ, bitsandbytes nf4, llama.cpp Q4): weights are dequantized
    and the matmuls run at the 16-bit rate; int8 keeps the card's int8 rate (W8A8: TensorRT, SmoothQuant)
    and falls back to weight-only on a card without one.
    """
    own = None if precision == "int4" else spec.peak_flops(precision)
    if own is not None:
        return own, precision
    if precision in HALF_ON_FP32_UNITS:
        # No fp16 tensor rate (Pascal GeForce, ...): PyTorch still runs fp16 / autocast fp16 there, cuBLAS
        # computing the half GEMMs in fp32 (16-bit storage, fp32 math): the FP32 rate, or the card's fp16
        # vector rate where that is faster (GP100: 2x FP32).
        vector16 = (spec.fp16_vector_tflops or 0.0) * 1e12
        return (vector16, "fp16-vector") if vector16 > spec.fp32_tflops * 1e12 else (spec.fp32_tflops * 1e12, "fp32")
    if precision in ("int8", "int4"):
        for alt in ("fp16", "bf16"):
            alt_peak = spec.peak_flops(alt)
            if alt_peak is not None:
                return alt_peak, alt
    return None


def peaks(spec: GpuSpec, precision: str) -> tuple[float, float, str | None]:
    """(tensor peak, vector peak) in FLOP/s for ``precision``, and a fallback note if one was taken."""
    rate = matmul_rate(spec, precision)
    if rate is None:
        runs = [*spec.supported_precisions, *(p for p in HALF_ON_FP32_UNITS if p not in spec.supported_precisions)]
        hint = f"{spec.name} supports: {', '.join(runs)}"
        if "bf16" in precision and spec.vendor == "nvidia":
            hint += (" (PyTorch lets autocast bf16 start on pre-Ampere NVIDIA cards only by emulation: "
                     "torch.cuda.is_bf16_supported(including_emulation=True) creates a bf16 tensor, but the card "
                     "has no bf16 math units and the catalog no bf16 rate to estimate; use amp-fp16 or fp32)")
        raise EstimateError(f"{spec.name} does not support precision {precision!r}", hint=hint)
    peak, used = rate
    note = None
    if precision in HALF_ON_FP32_UNITS and used != precision:
        note = (f"{spec.name} has no fp16 tensor rate: {precision} runs with 16-bit storage and fp32 math "
                f"(cuBLAS computes half GEMMs in fp32; PyTorch autocast/half run as usual), matmuls at the "
                f"{'fp16 vector' if used == 'fp16-vector' else 'FP32'} rate ({peak / 1e12:.1f} TFLOP/s)")
    elif used != precision:
        why = (f"{spec.name} has no {precision} tensor rate" if spec.peak_flops(precision) is None
               else f"{precision} kernels dequantize to 16 bits")
        note = (f"{why}: modelled as weight-only {precision} quantization (weights dequantized, matmuls at "
                f"the {used} rate)")
    vector = spec.fp32_tflops * 1e12
    if precision in ("fp16", "bf16", "amp-fp16", "amp-bf16") and spec.fp16_vector_tflops:
        vector = max(vector, spec.fp16_vector_tflops * 1e12)
    return peak, vector, note
