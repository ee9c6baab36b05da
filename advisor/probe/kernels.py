"""The probe's workloads: matmul, conv2d, memory bandwidth, host<->device transfers, launch overhead.

torch is imported inside the functions only.  Each kernel returns a ``KernelResult`` whose
``work`` is exactly what one iteration does (FLOP or bytes) so ``value = work / median time``:

- matmul: ``2 * M * N * K`` FLOP (one multiply + one add per MAC).
- conv2d: ``2 * N * K * C * R * S * P * Q`` FLOP (P, Q = output height, width).
- memory_copy: ``2 * buffer_bytes`` (each byte read once and written once); memory_read
  (a sum): ``buffer_bytes``; memory_write (a fill): ``buffer_bytes``.
- transfers (h2d / d2h, pinned / pageable): ``buffer_bytes`` one way across PCIe.
- launch: a tiny in-place add on one element; value is microseconds per launch.
- host_dispatch: a transformer-block-like sequence of ~20 small ops (layer norm, linears, views,
  attention matmuls, softmax, gelu, adds) on tiny tensors, timed on the host clock; value is
  microseconds of host time per dispatched op (``host_dispatch_s_per_op`` in the efficiencies).

Kernels run on an ``advisor.device.Device``: its generator makes the inputs where they land, its
region timer times them (CUDA events on a GPU), its ``empty_cache`` frees what they held.

GB/s means 10^9 bytes per second, as the specs do.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from advisor.device import Device, as_device, clock_region_timer
from advisor.errors import AdvisorError
from advisor.precision import element_bytes
from advisor.probe.results import KernelResult, Sample
from advisor.probe.timing import RegionTimer, Sampler, measure

__all__ = ["KERNEL_GROUPS", "KernelEnv", "PlannedKernel", "cuda_env", "plan", "run_plan"]

#: Kernel groups a user can ask for with ``--kernels`` (the one definition; ``advisor.probe`` re-exports it).
KERNEL_GROUPS = ("matmul", "conv", "bandwidth", "transfer", "launch")
MATMUL_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
CONV_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
MIB = 1024 * 1024

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


def bandwidth_bytes(mode: str, buffer_bytes: int) -> int:
    """Bytes moved per iteration: copy reads and writes each byte (2x); read or write once (1x)."""
    factor = {"copy": 2, "read": 1, "write": 1}.get(mode)
    if factor is None:
        raise AdvisorError(f"unknown bandwidth mode {mode!r}", hint="accepted: copy, read, write")
    return factor * buffer_bytes


@dataclass(frozen=True)
class KernelEnv:
    """Where and how kernels run.

    Args (fields):
        device: the ``Device`` kernels run on (a torch device string is turned into one).
        device_index: index reported in results (the inventory's).
        spec: the card's catalog spec (``GpuSpec``) or None (then fractions are None).
        compute_capability: (major, minor) for CUDA devices, else None.
        pcie_gbs: one-direction peak of the *current* PCIe link (GB/s), for transfers.
        max_memory_bytes: the most device memory one kernel may allocate.
        deadline: ``clock()`` value after which remaining kernels are skipped.
        read_sample: reads device state for sampling during each kernel (None = no sampling).
        clock: seconds (deadline, warm-up, host-side timing).
        region_timer: times regions instead of the device's own timer (tests).
        small_shapes: CPU-sized shapes (default: on the CPU); a fake CUDA device in CI sets it.
    """

    device: Device | str = "cpu"
    device_index: int = 0
    spec: Any = None
    quick: bool = True
    compute_capability: tuple[int, int] | None = None
    pcie_gbs: float | None = None
    max_memory_bytes: int | None = None
    deadline: float | None = None
    read_sample: Callable[[], Sample] | None = None
    read_link: Callable[[], tuple[int | None, int | None]] | None = None  # current PCIe (gen, width)
    sample_interval_s: float = 0.1
    min_region_s: float = 5e-3  # perf_counter on a busy CPU: longer regions keep the spread down
    repetitions: int = 5
    warmup_min_s: float = 0.0
    clock: Callable[[], float] = time.perf_counter
    region_timer: RegionTimer | None = None
    seed: int = 0
    small_shapes: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.device, str):
            object.__setattr__(self, "device", as_device(self.device))

    @property
    def dev(self) -> Device:
        """The device (typed: ``device`` is always a ``Device`` after construction)."""
        return cast(Device, self.device)

    @property
    def torch_device(self) -> str:
        """The torch device string tensors are created on."""
        return self.dev.torch_device

    @property
    def is_cuda(self) -> bool:
        """Whether kernels run on a CUDA/ROCm device."""
        return self.dev.kind == "cuda"

    @property
    def small(self) -> bool:
        """Whether the plan uses CPU-sized shapes."""
        return not self.is_cuda if self.small_shapes is None else self.small_shapes


def cuda_env(device: Device, **kw: Any) -> KernelEnv:
    """A ``KernelEnv`` for a CUDA ``device``: its CUDA-event timer, 5 ms regions, results under its NVML index.

    ``device_index`` (the index results are reported under) defaults to the device's NVML index, else
    torch's; ``compute_capability`` to the device's.
    """
    kw.setdefault("compute_capability", device.capability())
    kw.setdefault("device_index", device.nvml_index if device.nvml_index is not None else device.index or 0)
    kw.setdefault("min_region_s", 5e-3)
    kw.setdefault("warmup_min_s", 0.05)
    return KernelEnv(device=device, **kw)


def _torch() -> Any:
    import torch

    return torch


def _skip(env: KernelEnv, name: str, precision: str | None, shape: str | None, reason: str) -> KernelResult:
    return KernelResult(name=name, precision=precision, shape=shape, device_index=env.device_index,
                        device=env.torch_device, skipped=reason)


def _failed(env: KernelEnv, name: str, precision: str | None, shape: str, exc: BaseException) -> KernelResult:
    """A kernel that raised: out of memory is recorded as skipped, anything else as this kernel's error."""
    if is_out_of_memory(exc):
        return _skip(env, name, precision, shape, f"out of memory: {exc}")
    return KernelResult(name=name, precision=precision, shape=shape, device_index=env.device_index,
                        device=env.torch_device, error=f"{type(exc).__name__}: {exc}")


def _timed(env: KernelEnv, *, name: str, precision: str | None, shape: str, fn: Callable[[], None],
           work: float | None, work_unit: str | None, unit: str, scale: float, spec_peak: float | None,
           before_repetition: Callable[[], None] | None = None, notes: Sequence[str] = (),
           region_timer: RegionTimer | None = None) -> KernelResult:
    """Measure ``fn`` and turn the median time into ``value`` (work / time / scale)."""

    timer = region_timer or env.region_timer or env.dev.region_timer()

    def run() -> Any:
        return measure(fn, clock=env.clock, synchronize=env.dev.synchronize, region_timer=timer,
                       min_region_s=env.min_region_s, repetitions=env.repetitions,
                       warmup_min_s=env.warmup_min_s, before_repetition=before_repetition)

    samples: tuple[Sample, ...] = ()
    if env.read_sample is not None:
        with Sampler(env.read_sample, env.sample_interval_s) as sampler:
            m = run()
        samples = sampler.samples
    else:
        m = run()
    if work is None:  # launch overhead: microseconds per iteration
        value = m.median_s / scale
    else:
        value = work / m.median_s / scale
    fraction = value / spec_peak if spec_peak and work is not None else None
    extra = () if m.trustworthy else (f"spread {m.spread:.0%} (IQR/median) is above {m.spread_limit:.0%}: "
                                      "do not trust this figure",)
    if fraction is not None and fraction > 1.0:
        # Above the datasheet is not a fast card: the work counted is not the work done (TF32 instead of
        # fp32, a Winograd/FFT convolution doing fewer multiplies) or the spec figure is wrong.
        return KernelResult(name=name, precision=precision, shape=shape, device_index=env.device_index,
                            device=env.torch_device, unit=unit, work=work, work_unit=work_unit, spec_peak=spec_peak,
                            measurement=m, samples=samples, notes=(*notes, *extra),
                            error=f"{ABOVE_PEAK}: {value:,.1f} {unit} = {fraction:.0%} of the spec's {spec_peak:g}; "
                                  "the work counted is not the work done (a cheaper mode or algorithm ran) "
                                  "or the spec is wrong, so it is not reported as a rate")
    return KernelResult(name=name, precision=precision, shape=shape, device_index=env.device_index,
                        device=env.torch_device, value=value, unit=unit, work=work, work_unit=work_unit,
                        spec_peak=spec_peak, fraction_of_peak=fraction, measurement=m, samples=samples,
                        notes=(*notes, *extra))


#: The error of a kernel measured above its spec peak (verdicts look for it).
ABOVE_PEAK = "above the spec peak"


def _spec_tflops(env: KernelEnv, precision: str) -> float | None:
    if env.spec is None:
        return None
    peak = env.spec.peak_flops(precision)
    return None if peak is None else peak / 1e12


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means the device (or host) ran out of memory.

    Covers ``MemoryError``, ``torch.OutOfMemoryError`` (CUDA's allocator) and the plain ``RuntimeError``
    "... out of memory" that other allocators and libraries raise (ROCm/HIP, cuDNN workspaces, CPU).
    """
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")  # torch cannot have raised if it was never imported
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free(env: KernelEnv) -> None:
    env.dev.empty_cache()


def _fits(env: KernelEnv, nbytes: int) -> bool:
    return env.max_memory_bytes is None or nbytes <= env.max_memory_bytes


def matmul_support(env: KernelEnv, precision: str) -> str | None:
    """Why ``precision`` matmul cannot run on this device, or None if it can."""
    torch = _torch()
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


def _element_bytes(precision: str) -> int:
    return int(element_bytes(precision))  # the probe's precisions are whole bytes


def run_matmul(env: KernelEnv, precision: str, m: int, n: int, k: int, shrink_on_oom: int = 3) -> KernelResult:
    """TFLOP/s of an (M x K) @ (K x N) product at ``precision`` (seeded random inputs).

    fp32 runs with TF32 off; tf32 with it on; fp8 via ``torch._scaled_mm`` (e4m3 inputs, bf16 out);
    int8 via ``torch._int_mm`` (int32 out, spec in TOPS).  An out-of-memory halves the sizes
    (at most ``shrink_on_oom`` times) and is recorded in ``notes``.
    """
    shape = f"{m}x{n}x{k}"
    reason = matmul_support(env, precision)
    if reason:
        return _skip(env, "matmul", precision, shape, reason)
    out_bytes = {"fp8": 2, "int8": 4}.get(precision, _element_bytes(precision))
    need = (m * k + k * n) * _element_bytes(precision) + m * n * out_bytes
    notes: list[str] = []
    while not _fits(env, need) and shrink_on_oom > 0 and min(m, n, k) > 256:
        notes.append(f"{shape} needs {need / MIB:.0f} MiB, above --max-memory-fraction; halved")
        m, n, k, shrink_on_oom = m // 2, n // 2, k // 2, shrink_on_oom - 1
        shape = f"{m}x{n}x{k}"
        need = (m * k + k * n) * _element_bytes(precision) + m * n * out_bytes
    if not _fits(env, need):
        return _skip(env, "matmul", precision, shape, f"needs {need / MIB:.0f} MiB, above the memory limit")
    torch = _torch()
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

        result = _timed(env, name="matmul", precision=precision, shape=shape, fn=fn, work=matmul_flops(m, n, k),
                        work_unit="FLOP", unit="TOP/s" if precision == "int8" else "TFLOP/s", scale=1e12,
                        spec_peak=_spec_tflops(env, precision), notes=notes)
        return _int8_on_tensor_cores(env, result) if precision == "int8" else result
    except Exception as exc:
        if is_out_of_memory(exc) and shrink_on_oom > 0 and min(m, n, k) > 256:
            a = b = out = None
            _free(env)
            smaller = run_matmul(env, precision, m // 2, n // 2, k // 2, shrink_on_oom - 1)
            return replace(smaller, notes=(f"out of memory at {shape}; halved", *notes, *smaller.notes))
        return _failed(env, "matmul", precision, shape, exc)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
        a = b = out = None
        _free(env)


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
        return _skip(env, "conv2d", precision, shape, "TF32 is a GPU tensor-core mode (not on the CPU)")
    if precision not in CONV_PRECISIONS:
        raise AdvisorError(f"unknown conv precision {precision!r}", hint=f"one of: {', '.join(CONV_PRECISIONS)}")
    p, q = conv2d_output_hw(h, w, r, s, stride, padding)
    eb = _element_bytes(precision)
    need = (batch * c * h * w + k * c * r * s + batch * k * p * q) * eb
    if not _fits(env, need):
        return _skip(env, "conv2d", precision, shape, f"needs {need / MIB:.0f} MiB, above the memory limit")
    torch = _torch()
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
        return _timed(env, name="conv2d", precision=precision, shape=shape, fn=fn,
                      work=conv2d_flops(batch, c, h, w, k, r, s, stride, padding), work_unit="FLOP",
                      unit="TFLOP/s", scale=1e12, spec_peak=_spec_tflops(env, precision),
                      notes=(f"ran as {label}",) if label and env.is_cuda else ())
    except Exception as exc:
        return _failed(env, "conv2d", precision, shape, exc)
    finally:
        torch.backends.cudnn.benchmark = old_benchmark
        undo_tf32()
        x = wt = None
        _free(env)


def bandwidth_buffer_bytes(env: KernelEnv) -> int:
    """Buffer size for bandwidth kernels: >= 8x the L2 cache and >= 256 MiB on a GPU; 64 MiB on CPU.

    (16 MiB for small shapes on a CUDA device: a fake one in CI.)
    """
    if not env.is_cuda:
        return 64 * MIB
    if env.small:
        return 16 * MIB
    l2_mb = getattr(env.spec, "l2_cache_mb", None) if env.spec is not None else None
    size = max(256 * MIB, int(8 * (l2_mb or 50) * 1e6))
    return int(math.ceil(size / MIB) * MIB)


def run_bandwidth(env: KernelEnv, mode: str, buffer_bytes: int) -> KernelResult:
    """Device-memory GB/s: copy (dst.copy_(src)), read (src.sum()), write (dst.fill_()).

    On a GPU the L2 cache is flushed (a write to a buffer twice its size) before each repetition.
    """
    name = f"memory_{mode}"
    nbytes = buffer_bytes - buffer_bytes % 4
    shape = f"{nbytes / MIB:.0f} MiB"
    buffers = 2 if mode == "copy" else 1
    l2_bytes = int((getattr(env.spec, "l2_cache_mb", None) or 50) * 1e6) if env.is_cuda else 0
    flush_bytes = 2 * l2_bytes
    if not _fits(env, buffers * nbytes + flush_bytes):
        return _skip(env, name, None, shape, "buffers exceed the memory limit")
    torch = _torch()
    src = dst = flush = None
    try:
        g = env.dev.generator(env.seed)
        src = torch.randn(nbytes // 4, generator=g, device=env.torch_device)
        dst = torch.empty_like(src) if mode == "copy" else src
        if mode == "copy":
            def fn() -> None:
                dst.copy_(src)
        elif mode == "read":
            def fn() -> None:
                src.sum()
        else:
            def fn() -> None:
                src.fill_(1.0)
        before = None
        if flush_bytes:
            flush = torch.empty(flush_bytes, dtype=torch.uint8, device=env.torch_device)

            def before() -> None:
                flush.zero_()

        spec_peak = getattr(env.spec, "memory_bandwidth_gbs", None) if env.spec is not None else None
        return _timed(env, name=name, precision=None, shape=shape, fn=fn, work=bandwidth_bytes(mode, nbytes),
                      work_unit="bytes", unit="GB/s", scale=1e9, spec_peak=spec_peak, before_repetition=before)
    except Exception as exc:
        return _failed(env, name, None, shape, exc)
    finally:
        src = dst = flush = None
        _free(env)


def run_transfer(env: KernelEnv, direction: str, pinned: bool, buffer_bytes: int) -> KernelResult:
    """Host<->device GB/s one way, pinned or pageable host memory, against the current PCIe link's peak."""
    name = f"{direction}_{'pinned' if pinned else 'pageable'}"
    shape = f"{buffer_bytes / MIB:.0f} MiB"
    if not env.is_cuda:
        return _skip(env, name, None, shape, "no GPU: host<->device transfers need one")
    if not _fits(env, buffer_bytes):
        return _skip(env, name, None, shape, "buffer exceeds the memory limit")
    torch = _torch()
    host = dev = None
    try:
        host = torch.empty(buffer_bytes, dtype=torch.uint8, pin_memory=pinned)
        host.fill_(7)
        dev = torch.empty(buffer_bytes, dtype=torch.uint8, device=env.torch_device)
        if direction == "h2d":
            def fn() -> None:
                dev.copy_(host, non_blocking=pinned)
        else:
            def fn() -> None:
                host.copy_(dev, non_blocking=pinned)
        result = _timed(env, name=name, precision=None, shape=shape, fn=fn, work=buffer_bytes, work_unit="bytes",
                        unit="GB/s", scale=1e9, spec_peak=env.pcie_gbs)
        return _against_live_link(env, result, fn)
    except Exception as exc:
        return _failed(env, name, None, shape, exc)
    finally:
        host = dev = None
        _free(env)


def _against_live_link(env: KernelEnv, result: KernelResult, fn: Callable[[], None]) -> KernelResult:
    """Re-read the PCIe link while traffic flows (idle links train down) and set the result against it."""
    if env.read_link is None or not result.ok:
        return result
    from advisor.catalog import pcie_bandwidth_gbs

    try:
        fn()  # keep the link busy while it is read
        gen, width = env.read_link()
        env.dev.synchronize()
    except Exception:  # the inventory figure stays
        return result
    peak = pcie_bandwidth_gbs(gen, width)
    if peak is None:
        return result
    return replace(result, spec_peak=peak, fraction_of_peak=(result.value or 0.0) / peak,
                   notes=(*result.notes, f"against PCIe gen{gen} x{width} read during the transfer"))


def run_launch(env: KernelEnv) -> KernelResult:
    """Microseconds per launch of a tiny op (an in-place add on one element), back to back."""
    torch = _torch()
    x = torch.zeros(1, device=env.torch_device)
    try:
        def fn() -> None:
            x.add_(1.0)

        return _timed(env, name="launch", precision=None, shape="1 element add_", fn=fn, work=None,
                      work_unit=None, unit="us", scale=1e-6, spec_peak=None)
    finally:
        x = None
        _free(env)


#: Ops per iteration of the host-dispatch sequence (Python-level torch calls, views included).
HOST_DISPATCH_OPS = 23


def _block_sequence(torch: Any, env: KernelEnv, batch: int = 2, tokens: int = 8, width: int = 64,
                    heads: int = 4) -> Callable[[], None]:
    """One tiny transformer block (pre-norm attention + MLP) as ``HOST_DISPATCH_OPS`` eager ops."""
    F = torch.nn.functional
    g = env.dev.generator(env.seed)
    dev = env.torch_device

    def w(*shape: int) -> Any:
        return torch.randn(*shape, generator=g, device=dev) * 0.05

    x = torch.randn(batch, tokens, width, generator=g, device=dev)
    ln_w, ln_b = torch.ones(width, device=dev), torch.zeros(width, device=dev)
    wq, wk, wv, wo = w(width, width), w(width, width), w(width, width), w(width, width)
    w1, w2 = w(4 * width, width), w(width, 4 * width)
    d = width // heads
    scale = d ** -0.5

    def block() -> None:
        h = F.layer_norm(x, (width,), ln_w, ln_b)                                   # 1
        q = F.linear(h, wq).view(batch, tokens, heads, d).transpose(1, 2)           # 2-4
        k = F.linear(h, wk).view(batch, tokens, heads, d).transpose(1, 2)           # 5-7
        v = F.linear(h, wv).view(batch, tokens, heads, d).transpose(1, 2)           # 8-10
        s = torch.matmul(q, k.transpose(-2, -1)) * scale                            # 11-13
        o = torch.matmul(torch.softmax(s, dim=-1), v)                               # 14-15
        o = F.linear(o.transpose(1, 2).reshape(batch, tokens, width), wo)           # 16-18
        x1 = x + o                                                                   # 19
        m = F.linear(F.gelu(F.linear(F.layer_norm(x1, (width,), ln_w, ln_b), w1)), w2)  # 20-23
        _ = x1 + m

    return block


def run_host_dispatch(env: KernelEnv) -> KernelResult:
    """Host microseconds per dispatched op on a realistic small-op sequence (a tiny transformer block).

    The bare ``launch`` figure is one op in a tight loop; a model's eager step mixes views, linears,
    norms and activations with their argument parsing and autograd-free dispatch.  Timed on the host
    clock (synchronized at both ends), so with tensors this small it is the host's cost, not the device's.
    """
    torch = _torch()
    try:
        with torch.inference_mode():
            block = _block_sequence(torch, env)
            result = _timed(env, name="host_dispatch", precision=None,
                            shape=f"transformer block, {HOST_DISPATCH_OPS} ops, 2x8x64", fn=block, work=None,
                            work_unit=None, unit="us", scale=HOST_DISPATCH_OPS * 1e-6, spec_peak=None,
                            region_timer=clock_region_timer(env.clock, env.dev.synchronize),
                            notes=(f"microseconds of host time per op: {HOST_DISPATCH_OPS} eager ops per block "
                                   "(layer_norm, linear, view, transpose, matmul, mul, softmax, reshape, add, gelu)",))
        return result
    except Exception as exc:
        return _failed(env, "host_dispatch", None, "transformer block", exc)
    finally:
        _free(env)


def warm_device(env: KernelEnv, seconds: float = 1.0) -> float:
    """Run bf16/fp16 matmuls for ``seconds`` so clocks and power reach steady state before measuring.

    Returns the seconds spent (on ``env.clock``).
    """
    torch = _torch()
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
        _free(env)
    return env.clock() - t0


@dataclass(frozen=True)
class PlannedKernel:
    """One kernel the probe will run: its group, a label for progress, and how to run it."""

    group: str
    label: str
    run: Callable[[KernelEnv], KernelResult]


def plan(env: KernelEnv, groups: Iterable[str] = KERNEL_GROUPS) -> list[PlannedKernel]:
    """The kernels to run on ``env`` for the chosen groups, quick or full, GPU or CPU sizes."""
    groups = tuple(groups)
    unknown = [g for g in groups if g not in KERNEL_GROUPS]
    if unknown:
        raise AdvisorError(f"unknown kernel group {unknown[0]!r}", hint=f"choose from: {', '.join(KERNEL_GROUPS)}")
    out: list[PlannedKernel] = []
    cuda, quick, small = env.is_cuda, env.quick, env.small
    if "matmul" in groups:
        if cuda:
            precisions = MATMUL_PRECISIONS
        else:
            precisions = ("fp32", "bf16") if quick else ("fp32", "fp16", "bf16", "int8")
        if small:
            shapes = CPU_MATMUL_SHAPES_QUICK if quick else CPU_MATMUL_SHAPES
        else:
            shapes = GPU_MATMUL_SHAPES_QUICK if quick else GPU_MATMUL_SHAPES
        for prec in precisions:
            for m, n, k in shapes:
                if small and prec != "fp32" and m > 256:
                    continue  # CPUs without native bf16/fp16/int8 GEMM take seconds at larger sizes
                out.append(PlannedKernel("matmul", f"matmul {prec} {m}x{n}x{k}",
                                         lambda e, p=prec, m=m, n=n, k=k: run_matmul(e, p, m, n, k)))
    if "conv" in groups:
        if cuda:
            precisions = ("bf16", "fp16") if quick else CONV_PRECISIONS
        else:
            precisions = ("fp32",) if quick else ("fp32", "bf16")
        if small:
            layers, batch = CPU_CONV_LAYERS, 2
        else:
            layers = RESNET50_LAYERS[:2] if quick else RESNET50_LAYERS
            batch = 64
        for prec in precisions:
            for layer in layers:
                for cl in (False, True):
                    out.append(PlannedKernel("conv", f"conv2d {prec} {'nhwc' if cl else 'nchw'} c{layer[0]}",
                                             lambda e, p=prec, ly=layer, cl=cl: run_conv(e, p, ly, batch, cl)))
    if "bandwidth" in groups:
        size = bandwidth_buffer_bytes(env)
        sizes = (size,) if quick or small else (size, 4 * size)
        for mode in ("copy", "read", "write"):
            for sz in sizes:
                out.append(PlannedKernel("bandwidth", f"memory {mode} {sz // MIB} MiB",
                                         lambda e, md=mode, sz=sz: run_bandwidth(e, md, sz)))
    if "transfer" in groups:
        if small:
            sizes = (MIB,) if quick else (MIB, 4 * MIB)
        else:
            sizes = (256 * MIB,) if quick else (16 * MIB, 256 * MIB, 1024 * MIB)
        for direction in ("h2d", "d2h"):
            for pinned in (True, False):
                for sz in sizes:
                    out.append(PlannedKernel("transfer", f"{direction} {'pinned' if pinned else 'pageable'} "
                                             f"{sz // MIB} MiB",
                                             lambda e, d=direction, p=pinned, sz=sz: run_transfer(e, d, p, sz)))
    if "launch" in groups:
        out.append(PlannedKernel("launch", "launch overhead", run_launch))
        out.append(PlannedKernel("launch", "host dispatch per op", run_host_dispatch))
    return out


def run_plan(env: KernelEnv, planned: Sequence[PlannedKernel],
             progress: Callable[[str, float], None] | None = None) -> list[KernelResult]:
    """Run planned kernels in order, skipping the rest once ``env.deadline`` (on ``env.clock``) has passed."""
    results = []
    for i, pk in enumerate(planned):
        if progress is not None:
            progress(pk.label, i / max(1, len(planned)))
        if env.deadline is not None and env.clock() >= env.deadline:
            results.append(_skip(env, pk.group if pk.group != "conv" else "conv2d", None, pk.label,
                                 "time budget (--max-seconds) used up"))
            continue
        results.append(pk.run(env))
    return results
