"""Where the probe's kernels run and how one is measured: ``KernelEnv`` and the helpers every kernel shares.

A kernel (``compute_kernels``, ``memory_kernels``, ``launch_kernels``) builds its inputs on ``env.dev``, hands a
closure to :func:`timed_result` and returns a ``KernelResult``; one that cannot run returns
:func:`skip_result`, one that raises :func:`failed_result`.  torch is imported inside the functions only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from advisor.device import Device, as_device
from advisor.precision import element_bytes
from advisor.probing.results import KernelResult, Sample
from advisor.probing.timing import RegionTimer, Sampler, measure

if TYPE_CHECKING:  # pragma: no cover
    from advisor.catalog import GpuSpec

__all__ = ["ABOVE_PEAK", "KERNEL_ERRORS", "MIB", "KernelEnv", "cuda_env", "failed_result", "fits", "free_memory",
           "import_torch", "is_out_of_memory", "skip_result", "spec_tflops", "timed_result", "whole_bytes"]

MIB = 1024 * 1024

#: What a kernel may raise that is that kernel's failure, recorded in its result, not the probe's: torch reports
#: CUDA, cuBLAS, cuDNN and allocator failures as RuntimeError (``torch.OutOfMemoryError`` and
#: ``torch.AcceleratorError`` are subclasses), a host allocation as MemoryError, an op or dtype this build or
#: device lacks as NotImplementedError, and a private op whose signature changed between torch releases
#: (``torch._scaled_mm``, ``torch._int_mm``) as TypeError or ValueError.  Anything else is a bug in the probe.
KERNEL_ERRORS: tuple[type[Exception], ...] = (RuntimeError, MemoryError, NotImplementedError, TypeError, ValueError)


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
    spec: GpuSpec | None = None
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


def import_torch() -> Any:
    """torch, imported on first use (importing the probe stays free of it)."""
    import torch

    return torch


def dispatch_counter() -> Any:
    """A ``TorchDispatchMode`` counting the aten ops dispatched while it is active (``.n``), as the tracer does.

    ``.names`` counts each op by its name without the overload (``embedding_dense_backward``).
    """
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    class DispatchCount(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            self.n = 0
            self.names: Counter[str] = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.n += 1
            self.names[func.__name__.split(".")[0]] += 1
            return func(*args, **(kwargs or {}))

    return DispatchCount()


def skip_result(env: KernelEnv, name: str, precision: str | None, shape: str | None, reason: str) -> KernelResult:
    """A kernel that did not run, and why."""
    return KernelResult(name=name, precision=precision, shape=shape, device_index=env.device_index,
                        device=env.torch_device, skipped=reason)


def failed_result(env: KernelEnv, name: str, precision: str | None, shape: str, exc: BaseException) -> KernelResult:
    """A kernel that raised: out of memory is recorded as skipped, anything else as this kernel's error."""
    if is_out_of_memory(exc):
        return skip_result(env, name, precision, shape, f"out of memory: {exc}")
    return KernelResult(name=name, precision=precision, shape=shape, device_index=env.device_index,
                        device=env.torch_device, error=f"{type(exc).__name__}: {exc}")


def timed_result(env: KernelEnv, *, name: str, precision: str | None, shape: str, fn: Callable[[], None],
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


def spec_tflops(env: KernelEnv, precision: str) -> float | None:
    """The card's peak at ``precision`` in TFLOP/s (TOP/s for int8), None without a spec or a figure."""
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


def free_memory(env: KernelEnv) -> None:
    """Release what the kernel held (the device's cache)."""
    env.dev.empty_cache()


def fits(env: KernelEnv, nbytes: int) -> bool:
    """Whether ``nbytes`` of buffers stay within the kernel memory limit."""
    return env.max_memory_bytes is None or nbytes <= env.max_memory_bytes


def whole_bytes(precision: str) -> int:
    """Bytes per element at ``precision`` (``advisor.precision``'s table; the probe's precisions are whole bytes)."""
    return int(element_bytes(precision))
