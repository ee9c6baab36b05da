"""Compute kernels of the probe: dense matmul at every precision and ResNet-style conv2d; the clock warm-up.

``work`` is exactly what one iteration does, so ``value = work / median time``:

- matmul: ``2 * M * N * K`` FLOP (one multiply + one add per MAC).
- conv2d: ``2 * N * K * C * R * S * P * Q`` FLOP (P, Q = output height, width).

torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from advisor.errors import AdvisorError
from advisor.probing.kernel_env import (
    KERNEL_ERRORS,
    MIB,
    KernelEnv,
    failed_result,
    fits,
    free_memory,
    import_torch,
    is_out_of_memory,
    skip_result,
    spec_tflops,
    timed_result,
    whole_bytes,
)
from advisor.probing.results import KernelResult

__all__ = ["CONV_PRECISIONS", "MATMUL_PRECISIONS", "conv2d_flops", "conv2d_output_hw", "matmul_flops",
           "matmul_support", "run_conv", "run_matmul", "warm_device"]

MATMUL_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
CONV_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")

# (M, N, K). Square sizes find where the card saturates; the transformer shapes are a Llama-style
# MLP up-projection (4096 x 11008) and a wide, shallow-K product (8192 x 8192 x 1024).
GPU_MATMUL_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
                     (4096, 11008, 4096), (8192, 8192, 1024))
# Quick: 2048^3 then 4096^3, the order the full probe runs them in.  The full runs of 2026-11-28 reached
# the bf16 peak at 4096^3 (778 TFLOP/s on an H200) while 8192^3 hit the 700 W cap (670-686), so a quick
# probe at 8192^3 read 12% low (docs/probe.md).
GPU_MATMUL_SHAPES_QUICK = ((2048, 2048, 2048), (4096, 4096, 4096))
CPU_MATMUL_SHAPES = ((256, 256, 256), (512, 512, 512), (1024, 1024, 1024))
CPU_MATMUL_SHAPES_QUICK = ((256, 256, 256), (512, 512, 512))

# ResNet-50-like layers (C, H, W, K, R, S, stride, padding); batch set separately.
RESNET50_LAYERS = ((64, 56, 56, 64, 3, 3, 1, 1), (128, 28, 28, 128, 3, 3, 1, 1),
                   (1024, 14, 14, 256, 1, 1, 1, 0), (512, 7, 7, 512, 3, 3, 1, 1))
CPU_CONV_LAYERS = ((64, 28, 28, 64, 3, 3, 1, 1),)
#: int8 below this fraction of its spec did not run on the int8 tensor cores: it is not reported as the rate.
INT8_MIN_FRACTION = 0.50


def matmul_flops(m: int, n: int, k: int) -> int:
    """FLOP of an (M x K) @ (K x N) product: 2MNK."""
    return 2 * m * n * k


def conv2d_output_hw(h: int, w: int, r: int, s: int, stride: int, padding: int) -> tuple[int, int]:
    """Output height and width (P, Q) of a convolution without dilation."""
    return (h + 2 * padding - r) // stride + 1, (w + 2 * padding - s) // stride + 1


def conv2d_flops(n: int, c: int, h: int, w: int, k: int, r: int, s: int, stride: int = 1, padding: int = 0) -> int:
    """FLOP of a forward conv2d: 2 * N * K * C * R * S * P * Q."""
    p, q = conv2d_output_hw(h, w, r, s, stride, padding)
    return 2 * n * k * c * r * s * p * q


def matmul_support(env: KernelEnv, precision: str) -> str | None:
    """Why ``precision`` matmul cannot run on this device, or None if it can."""
    torch = import_torch()
    cc = env.compute_capability
    if precision not in MATMUL_PRECISIONS:
        raise AdvisorError(f"unknown matmul precision {precision!r}", hint=f"one of: {', '.join(MATMUL_PRECISIONS)}")
    if precision == "tf32":
        if not env.is_cuda:
            return "TF32 is a GPU tensor-core mode (not on the CPU)"
        if cc is not None and cc < (8, 0):
            return f"TF32 needs compute capability >= 8.0 (this device has {cc[0]}.{cc[1]})"
    if precision == "fp8":
        if not env.is_cuda:
            return "FP8 matmul needs a GPU (compute capability >= 8.9)"
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return f"this torch ({torch.__version__}) has no torch._scaled_mm / float8 dtypes"
        if torch.version.hip is None and cc is not None and cc < (8, 9):
            return f"FP8 needs compute capability >= 8.9 (this device has {cc[0]}.{cc[1]})"
    if precision == "int8":
        if not hasattr(torch, "_int_mm"):
            return f"this torch ({torch.__version__}) has no torch._int_mm"
        if env.is_cuda and cc is not None and cc < (7, 5):
            return f"int8 tensor-core matmul needs compute capability >= 7.5 (this device has {cc[0]}.{cc[1]})"
    if precision == "bf16" and env.is_cuda and cc is not None and cc < (8, 0) and torch.version.hip is None:
        return f"bf16 needs compute capability >= 8.0 (this device has {cc[0]}.{cc[1]})"
    return None


def run_matmul(env: KernelEnv, precision: str, m: int, n: int, k: int, shrink_on_oom: int = 3) -> KernelResult:
    """TFLOP/s of an (M x K) @ (K x N) product at ``precision`` (seeded random inputs).

    fp32 runs with TF32 off; tf32 with it on; fp8 via ``torch._scaled_mm`` (e4m3 inputs, bf16 out);
    int8 via ``torch._int_mm`` (int32 out, spec in TOPS).  An out-of-memory halves the sizes
    (at most ``shrink_on_oom`` times) and is recorded in ``notes``.
    """
    shape = f"{m}x{n}x{k}"
    reason = matmul_support(env, precision)
    if reason:
        return skip_result(env, "matmul", precision, shape, reason)
    out_bytes = {"fp8": 2, "int8": 4}.get(precision, whole_bytes(precision))
    need = (m * k + k * n) * whole_bytes(precision) + m * n * out_bytes
    notes: list[str] = []
    while not fits(env, need) and shrink_on_oom > 0 and min(m, n, k) > 256:
        notes.append(f"{shape} needs {need / MIB:.0f} MiB, above --max-memory-fraction; halved")
        m, n, k, shrink_on_oom = m // 2, n // 2, k // 2, shrink_on_oom - 1
        shape = f"{m}x{n}x{k}"
        need = (m * k + k * n) * whole_bytes(precision) + m * n * out_bytes
    if not fits(env, need):
        return skip_result(env, "matmul", precision, shape, f"needs {need / MIB:.0f} MiB, above the memory limit")
    torch = import_torch()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        g = env.dev.generator(env.seed)
        if precision in ("fp32", "tf32", "fp16", "bf16"):
            dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
            a = torch.randn(m, k, generator=g, device=env.torch_device, dtype=dtype[precision])
            b = torch.randn(k, n, generator=g, device=env.torch_device, dtype=dtype[precision])
            out = torch.empty(m, n, device=env.torch_device, dtype=dtype[precision])

            def fn() -> None:
                torch.matmul(a, b, out=out)
        elif precision == "int8":
            # B column-major (the .t() view of a contiguous (N, K) tensor): with a row-major B, PyTorch
            # dispatches _int_mm to slow non-tensor-core kernels (pytorch/pytorch#165230): 6% of spec on H100/H200.
            a = torch.randint(-64, 64, (m, k), generator=g, device=env.torch_device, dtype=torch.int8)
            b = torch.randint(-64, 64, (n, k), generator=g, device=env.torch_device, dtype=torch.int8).t()

            def fn() -> None:
                torch._int_mm(a, b)
        else:  # fp8: row-major A, column-major B (cuBLASLt's requirement), per-tensor scales
            a = torch.randn(m, k, generator=g, device=env.torch_device).to(torch.float8_e4m3fn)
            b = torch.randn(n, k, generator=g, device=env.torch_device).to(torch.float8_e4m3fn).t()
            one = torch.ones((), device=env.torch_device, dtype=torch.float32)

            def fn() -> None:
                # Fast accumulation is what the datasheet's FP8 rate assumes (and what inference uses).
                torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True)

        result = timed_result(env, name="matmul", precision=precision, shape=shape, fn=fn, work=matmul_flops(m, n, k),
                              work_unit="FLOP", unit="TOP/s" if precision == "int8" else "TFLOP/s", scale=1e12,
                              spec_peak=spec_tflops(env, precision), notes=notes)
        return _int8_on_tensor_cores(env, result) if precision == "int8" else result
    except KERNEL_ERRORS as exc:
        if is_out_of_memory(exc) and shrink_on_oom > 0 and min(m, n, k) > 256:
            a = b = out = None
            free_memory(env)
            smaller = run_matmul(env, precision, m // 2, n // 2, k // 2, shrink_on_oom - 1)
            return replace(smaller, notes=(f"out of memory at {shape}; halved", *notes, *smaller.notes))
        return failed_result(env, "matmul", precision, shape, exc)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
        a = b = out = None
        free_memory(env)


def _int8_on_tensor_cores(env: KernelEnv, result: KernelResult) -> KernelResult:
    """An int8 GPU figure far below its spec did not use the int8 tensor cores: not measured, with the reason.

    Publishing it as the card's int8 rate would price every int8 estimate at a fraction of what the card does.
    """
    frac = result.fraction_of_peak
    if not env.is_cuda or not result.ok or frac is None or frac >= INT8_MIN_FRACTION:
        return result
    return replace(result, value=None, fraction_of_peak=None, skipped=(
        f"int8 not measured: torch._int_mm reached {result.value:,.1f} TOP/s = {frac:.0%} of the spec's "
        f"{result.spec_peak:g} TOP/s, below {INT8_MIN_FRACTION:.0%}, so it did not run on the int8 tensor cores "
        f"(this torch's kernel choice, not the card); the card's int8 rate is unknown here"))


def _conv_fp32_mode(torch: Any, tf32: bool) -> Callable[[], None]:
    """Set whether cuDNN may run fp32 convolutions as TF32; returns the undo.

    cuDNN's default is TF32 on (unlike matmul's).  torch >= 2.9 has ``cudnn.conv.fp32_precision``; there the
    legacy ``allow_tf32`` only marks the setting "none" (inherit), so the new flag is set explicitly
    (the fp32 conv of the 2026-11-28 runs measured 113% of the FP32 peak with the legacy flag off).
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = conv.fp32_precision
        conv.fp32_precision = "tf32" if tf32 else "ieee"

        def undo() -> None:
            conv.fp32_precision = old
        return undo
    old_flag = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32

    def undo_legacy() -> None:
        torch.backends.cudnn.allow_tf32 = old_flag
    return undo_legacy


def run_conv(env: KernelEnv, precision: str, layer: tuple[int, ...], batch: int,
             channels_last: bool) -> KernelResult:
    """TFLOP/s of a forward conv2d (cuDNN benchmark mode on GPU), NCHW or channels_last.

    fp32 runs with TF32 off (IEEE fp32), tf32 with it on; each is labelled as what it ran.
    """
    c, h, w, k, r, s, stride, padding = layer
    layout = "channels_last" if channels_last else "nchw"
    shape = f"n{batch}c{c}h{h}w{w}k{k}r{r}s{s}/{stride} {layout}"
    if precision == "tf32" and not env.is_cuda:
        return skip_result(env, "conv2d", precision, shape, "TF32 is a GPU tensor-core mode (not on the CPU)")
    if precision not in CONV_PRECISIONS:
        raise AdvisorError(f"unknown conv precision {precision!r}", hint=f"one of: {', '.join(CONV_PRECISIONS)}")
    p, q = conv2d_output_hw(h, w, r, s, stride, padding)
    eb = whole_bytes(precision)
    need = (batch * c * h * w + k * c * r * s + batch * k * p * q) * eb
    if not fits(env, need):
        return skip_result(env, "conv2d", precision, shape, f"needs {need / MIB:.0f} MiB, above the memory limit")
    torch = import_torch()
    old_benchmark = torch.backends.cudnn.benchmark
    undo_tf32 = _conv_fp32_mode(torch, precision == "tf32")
    x = wt = None
    try:
        torch.backends.cudnn.benchmark = True
        dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        g = env.dev.generator(env.seed)
        x = torch.randn(batch, c, h, w, generator=g, device=env.torch_device, dtype=dtype)
        wt = torch.randn(k, c, r, s, generator=g, device=env.torch_device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            wt = wt.contiguous(memory_format=torch.channels_last)
        conv = torch.nn.functional.conv2d

        def fn() -> None:
            conv(x, wt, stride=stride, padding=padding)

        label = "IEEE fp32 (TF32 off)" if precision == "fp32" else "TF32 tensor cores (fp32 inputs)" \
            if precision == "tf32" else None
        return timed_result(env, name="conv2d", precision=precision, shape=shape, fn=fn,
                            work=conv2d_flops(batch, c, h, w, k, r, s, stride, padding), work_unit="FLOP",
                            unit="TFLOP/s", scale=1e12, spec_peak=spec_tflops(env, precision),
                            notes=(f"ran as {label}",) if label and env.is_cuda else ())
    except KERNEL_ERRORS as exc:
        return failed_result(env, "conv2d", precision, shape, exc)
    finally:
        torch.backends.cudnn.benchmark = old_benchmark
        undo_tf32()
        x = wt = None
        free_memory(env)

def warm_device(env: KernelEnv, seconds: float = 1.0) -> float:
    """Run bf16/fp16 matmuls for ``seconds`` so clocks and power reach steady state before measuring.

    Returns the seconds spent (on ``env.clock``).
    """
    torch = import_torch()
    dtype = torch.bfloat16 if matmul_support(env, "bf16") is None else torch.float16
    g = env.dev.generator(env.seed)
    side = 256 if env.small else 4096
    a = torch.randn(side, side, generator=g, device=env.torch_device, dtype=dtype)
    t0 = env.clock()
    try:
        while env.clock() - t0 < seconds:
            for _ in range(10):
                torch.matmul(a, a)
            env.dev.synchronize()
    finally:
        a = None
        free_memory(env)
    return env.clock() - t0
