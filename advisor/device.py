"""The device seam: one small interface for everything the probe and validate do to a torch device.

``CpuDevice`` and ``CudaDevice`` implement :class:`Device`.  Only ``CudaDevice`` touches CUDA, and it does
so through a :class:`CudaRuntime` (``torch.cuda`` by default, from :func:`cuda_runtime`), so a scripted
runtime can stand in for a GPU in CI (``tests/fake_cuda.py``).  Importing this module is cheap: torch is
imported inside the functions that need it.

Index mapping: NVML numbers devices by PCI bus order, CUDA by speed unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
and ``CUDA_VISIBLE_DEVICES`` renumbers what CUDA sees.  :func:`torch_index_for` (NVML -> torch) and
:func:`nvml_index_for` (torch -> NVML) match devices by UUID, the one name both sides share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from advisor.errors import AdvisorError, ProbeUnavailable

if TYPE_CHECKING:  # advisor.probing imports this module: a runtime import would be circular
    from advisor.probing.backend import InventoryBackend

#: Times ``n`` back-to-back calls of ``fn`` and returns the seconds taken (see :meth:`Device.region_timer`).
RegionTimer = Callable[[Callable[[], None], int], float]


@runtime_checkable
class Device(Protocol):
    """Where torch work runs, and the few device services the probe and validate need.

    Attributes:
        kind: ``"cuda"`` or ``"cpu"`` (``"meta"`` for tracing); also the autocast device type.
        torch_device: the torch device string tensors are created on (``"cpu"``, ``"cuda:1"``).
        index: torch's index of the device (``None`` on the CPU).
        nvml_index: the inventory (NVML) index of the same device, ``None`` when unknown or a CPU.
    """

    kind: str
    torch_device: str
    index: int | None
    nvml_index: int | None

    def generator(self, seed: int) -> Any:
        """A ``torch.Generator`` on this device seeded with ``seed`` (tensors it fills land here)."""
        ...

    def synchronize(self) -> None:
        """Wait for the work queued on this device."""
        ...

    def region_timer(self) -> RegionTimer:
        """A timer of device-side seconds for ``n`` calls of ``fn`` (CUDA events, or a clock)."""
        ...

    def empty_cache(self, workspaces: bool = False) -> None:
        """Hand cached allocator blocks back (and, with ``workspaces``, library workspaces first)."""
        ...

    def reset_peak(self) -> None:
        """Start the peak-memory statistics afresh."""
        ...

    def allocated_bytes(self) -> int | None:
        """Bytes held by live tensors now (``None``: the device keeps no statistics)."""
        ...

    def peak_allocated_bytes(self) -> int | None:
        """Peak bytes held by tensors since :meth:`reset_peak`."""
        ...

    def peak_reserved_bytes(self) -> int | None:
        """Peak bytes the allocator reserved from the driver since :meth:`reset_peak`."""
        ...

    def mem_get_info(self) -> tuple[int, int] | None:
        """(free, total) device memory in bytes, as the driver sees it."""
        ...

    def capability(self) -> tuple[int, int] | None:
        """Compute capability (major, minor) of a CUDA device."""
        ...


def clock_region_timer(clock: Callable[[], float], synchronize: Callable[[], None]) -> RegionTimer:
    """A region timer from a clock: seconds taken by ``n`` back-to-back calls of ``fn``.

    Synchronize before reading the clock on both ends: kernel launches are asynchronous.
    """

    def timer(fn: Callable[[], None], n: int) -> float:
        synchronize()
        t0 = clock()
        for _ in range(n):
            fn()
        synchronize()
        return clock() - t0

    return timer


class CpuDevice:
    """The host CPU: timed with ``clock`` (``perf_counter``); no allocator statistics.

    Args:
        clock: seconds, monotonic; a parameter so tests can script it.
        torch_device: ``"cpu"``, or ``"meta"`` for shape-only tracing.
    """

    index: int | None = None
    nvml_index: int | None = None

    def __init__(self, clock: Callable[[], float] = time.perf_counter, torch_device: str = "cpu") -> None:
        self.clock = clock
        self.torch_device = torch_device
        self.kind = "meta" if torch_device == "meta" else "cpu"

    def __repr__(self) -> str:
        return f"CpuDevice({self.torch_device!r})"

    def generator(self, seed: int) -> Any:
        import torch

        return torch.Generator(device="cpu").manual_seed(seed)

    def synchronize(self) -> None:
        """Nothing to wait for: CPU ops run synchronously."""

    def region_timer(self) -> RegionTimer:
        return clock_region_timer(self.clock, self.synchronize)

    def empty_cache(self, workspaces: bool = False) -> None:
        """The CPU allocator caches nothing torch can hand back."""

    def reset_peak(self) -> None:
        """No statistics to reset (validate samples the C heap instead)."""

    def allocated_bytes(self) -> int | None:
        return None

    def peak_allocated_bytes(self) -> int | None:
        return None

    def peak_reserved_bytes(self) -> int | None:
        return None

    def mem_get_info(self) -> tuple[int, int] | None:
        return None

    def capability(self) -> tuple[int, int] | None:
        return None


class CudaRuntime(Protocol):
    """The part of ``torch.cuda`` (and ``torch._C``) that :class:`CudaDevice` uses; faked in CI.

    ``small_shapes``: the probe should plan CPU-sized kernels (a fake runtime whose tensors live on the CPU);
    ``None`` on a real GPU.
    """

    small_shapes: bool | None

    def is_available(self) -> bool: ...

    def device_count(self) -> int: ...

    def uuid(self, index: int) -> str | None: ...

    def name(self, index: int) -> str: ...

    def capability(self, index: int) -> tuple[int, int]: ...

    def versions(self) -> tuple[str | None, str | None]: ...

    def arch_name(self, index: int) -> str | None: ...

    def generator(self, device: str, seed: int) -> Any: ...

    def synchronize(self, index: int) -> None: ...

    def event(self) -> Any: ...

    def stream_context(self, index: int) -> Any: ...

    def empty_cache(self) -> None: ...

    def clear_workspaces(self) -> None: ...

    def reset_peak(self, index: int) -> None: ...

    def memory_stat(self, what: str, index: int) -> int: ...

    def mem_get_info(self, index: int) -> tuple[int, int]: ...


class TorchCudaRuntime:
    """:class:`CudaRuntime` over the real ``torch.cuda``: thin pass-throughs, nothing decided here."""

    small_shapes: bool | None = None

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._cuda = torch.cuda

    def is_available(self) -> bool:
        return bool(self._cuda.is_available())

    def device_count(self) -> int:
        return int(self._cuda.device_count())

    def uuid(self, index: int) -> str | None:
        return str(getattr(self._cuda.get_device_properties(index), "uuid", "")) or None

    def name(self, index: int) -> str:
        return str(self._cuda.get_device_name(index))

    def capability(self, index: int) -> tuple[int, int]:
        major, minor = self._cuda.get_device_capability(index)
        return int(major), int(minor)

    def versions(self) -> tuple[str | None, str | None]:
        """(CUDA version, HIP version) torch was built with; one of them is ``None``."""
        return self._torch.version.cuda, getattr(self._torch.version, "hip", None)

    def arch_name(self, index: int) -> str | None:
        """ROCm's GPU architecture name (``gfx942``), ``None`` on CUDA."""
        return getattr(self._cuda.get_device_properties(index), "gcnArchName", None)

    def generator(self, device: str, seed: int) -> Any:
        return self._torch.Generator(device=device).manual_seed(seed)

    def synchronize(self, index: int) -> None:
        self._cuda.synchronize(index)

    def event(self) -> Any:
        return self._cuda.Event(enable_timing=True)

    def stream_context(self, index: int) -> Any:
        return self._cuda.device(index)

    def empty_cache(self) -> None:
        self._cuda.empty_cache()

    def clear_workspaces(self) -> None:
        # cuBLAS/cuBLASLt workspaces are allocated through the caching allocator, one per handle and stream;
        # they stay after the tensors are gone.  Private API, so only where this torch has it.
        clear = getattr(self._torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear is not None:
            clear()

    def reset_peak(self, index: int) -> None:
        self._cuda.reset_peak_memory_stats(index)

    def memory_stat(self, what: str, index: int) -> int:
        fn = {"allocated": self._cuda.memory_allocated, "peak_allocated": self._cuda.max_memory_allocated,
              "peak_reserved": self._cuda.max_memory_reserved}[what]
        return int(fn(index))

    def mem_get_info(self, index: int) -> tuple[int, int]:
        free, total = self._cuda.mem_get_info(index)
        return int(free), int(total)


def cuda_runtime() -> CudaRuntime:
    """The CUDA runtime the advisor uses: the real ``torch.cuda`` (tests swap this one function)."""
    return TorchCudaRuntime()


class CudaDevice:
    """CUDA device ``index`` (torch's numbering), timed with CUDA events.

    Args:
        index: torch's CUDA index.
        nvml_index: the inventory index of the same card (see :func:`nvml_index_for`), if known.
        runtime: the CUDA runtime (default :func:`cuda_runtime`).
    """

    kind = "cuda"

    def __init__(self, index: int = 0, nvml_index: int | None = None, runtime: CudaRuntime | None = None) -> None:
        self.index: int | None = index
        self.nvml_index = nvml_index
        self.torch_device = f"cuda:{index}"
        self.runtime = runtime if runtime is not None else cuda_runtime()

    def __repr__(self) -> str:
        return f"CudaDevice({self.index}, nvml_index={self.nvml_index})"

    @property
    def _i(self) -> int:
        return int(self.index or 0)

    def generator(self, seed: int) -> Any:
        # A CUDA generator: real CUDA refuses a CPU generator for tensors created on the GPU.
        return self.runtime.generator(self.torch_device, seed)

    def synchronize(self) -> None:
        self.runtime.synchronize(self._i)

    def region_timer(self) -> RegionTimer:
        """CUDA events around the region: GPU-side time, no host jitter."""
        rt = self.runtime

        def timer(fn: Callable[[], None], n: int) -> float:
            # Events record on the current stream of the *current* device: make it this one.
            with rt.stream_context(self._i):
                start, end = rt.event(), rt.event()
                rt.synchronize(self._i)
                start.record()
                for _ in range(n):
                    fn()
                end.record()
                end.synchronize()
                return float(start.elapsed_time(end)) / 1e3  # elapsed_time is in milliseconds

        return timer

    def empty_cache(self, workspaces: bool = False) -> None:
        self.runtime.synchronize(self._i)
        if workspaces:
            self.runtime.clear_workspaces()
        self.runtime.empty_cache()

    def reset_peak(self) -> None:
        self.runtime.reset_peak(self._i)

    def allocated_bytes(self) -> int | None:
        return self.runtime.memory_stat("allocated", self._i)

    def peak_allocated_bytes(self) -> int | None:
        return self.runtime.memory_stat("peak_allocated", self._i)

    def peak_reserved_bytes(self) -> int | None:
        return self.runtime.memory_stat("peak_reserved", self._i)

    def mem_get_info(self) -> tuple[int, int] | None:
        return self.runtime.mem_get_info(self._i)

    def capability(self) -> tuple[int, int] | None:
        return self.runtime.capability(self._i)

    def name(self) -> str:
        """What the driver calls this card."""
        return self.runtime.name(self._i)


def as_device(device: Device | str) -> Device:
    """A :class:`Device` from a device or a torch device string (``"cpu"``, ``"meta"``, ``"cuda"``, ``"cuda:1"``)."""
    if not isinstance(device, str):
        return device
    if device in ("cpu", "meta"):
        return CpuDevice(torch_device=device)
    if device == "cuda" or device.startswith("cuda:"):
        return CudaDevice(int(device.partition(":")[2] or 0))
    raise ProbeUnavailable(f"unknown device {device!r}", hint="accepted: cpu, meta, cuda, cuda:N")


def _uuid_key(uuid: str | None) -> str:
    return (uuid or "").strip().lower().removeprefix("gpu-")


def torch_index_for(nvml_index: int, nvml_uuid: str | None, runtime: CudaRuntime) -> tuple[int | None, str | None]:
    """Which torch CUDA index is inventory device ``nvml_index`` (UUID ``nvml_uuid``)?

    Returns ``(index, note)``: the index (``None`` when torch cannot see the device) and what to tell the user
    about the match (``None`` when it was exact).
    """
    n = runtime.device_count()
    want = _uuid_key(nvml_uuid)
    have = [_uuid_key(runtime.uuid(i)) for i in range(n)]
    if want and want in have:
        return have.index(want), None
    comparable = bool(want) and all(have)
    if nvml_index < n and not comparable:
        return nvml_index, None if not want else "matched to torch by index (UUID not comparable)"
    return None, f"torch sees {n} CUDA device(s) (CUDA_VISIBLE_DEVICES?); device {nvml_index} is not one of them"


def nvml_index_for(torch_index: int, runtime: CudaRuntime, backend: InventoryBackend) -> int | None:
    """The inventory (NVML) index of torch CUDA device ``torch_index``, matched by UUID.

    Without comparable UUIDs the indices are taken as equal only when ``CUDA_VISIBLE_DEVICES`` does not
    renumber the devices; otherwise ``None`` (no NVML figure beats one read from the wrong card).
    """
    want = _uuid_key(runtime.uuid(torch_index))
    count = backend.device_count()
    if want:
        for j in range(count):
            try:
                uuid = backend.device_info(j).uuid
            except AdvisorError:  # a failing device is just not this one
                continue
            if _uuid_key(uuid) == want:
                return j
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None and torch_index < count:
        return torch_index
    return None
