"""The probe: which devices are here, how healthy they are, and how fast they really are.

``probe()`` wires the parts together: an inventory backend (NVML, amdsmi, torch, CPU),
the kernels, and the verdicts.  Importing this package is cheap: no torch, no pynvml.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from advisor.errors import AdvisorError, DeviceError, ProbeUnavailable
from advisor.probing.backend import InventoryBackend, LinkReader
from advisor.probing.kernels import KERNEL_GROUPS
from advisor.probing.results import DeviceInfo, KernelResult, Measurement, ProbeResult, Sample, Verdict

__all__ = ["KERNEL_GROUPS", "DeviceInfo", "KernelResult", "Measurement", "ProbeResult", "Sample", "Verdict",
           "default_backend", "parse_kernels", "probe"]

_GPU_NODE_PATTERNS = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg")


def _gpu_device_nodes() -> list[str]:
    """Device files a CUDA or ROCm GPU would expose (NVIDIA, AMD KFD, WSL's GPU bridge)."""
    import glob

    return [path for pattern in _GPU_NODE_PATTERNS for path in glob.glob(pattern)]


def default_backend() -> InventoryBackend:
    """The best inventory backend that works here: NVML, else amdsmi, else torch (CUDA/ROCm), else the CPU.

    The reasons the better ones could not be used are kept in the returned backend's ``notes``
    (e.g. ``"NVML unavailable: the NVIDIA driver is not loaded"``).  Call ``close()`` when done.
    """
    from advisor.probing.amd import AmdsmiBackend
    from advisor.probing.cpu import CpuBackend, TorchCudaBackend
    from advisor.probing.nvml import PynvmlBackend

    notes: list[str] = []
    classes: tuple[type[InventoryBackend], ...] = (PynvmlBackend, AmdsmiBackend, TorchCudaBackend)
    for cls in classes:
        if cls is TorchCudaBackend and not _gpu_device_nodes():
            # Importing torch costs seconds; without a GPU device node it cannot find a GPU anyway.
            notes.append(f"{cls.name}: skipped, no GPU device node ({', '.join(_GPU_NODE_PATTERNS)}) on this machine")
            continue
        try:
            backend = cls()
        except ProbeUnavailable as exc:
            note = exc.message if exc.message.lower().startswith(("nvml", "amdsmi")) else f"{cls.name}: {exc.message}"
            notes.append(note + (f" ({exc.hint})" if exc.hint else ""))
            continue
        try:
            count = backend.device_count()
        except ProbeUnavailable as exc:
            count, reason = 0, exc.message
        else:
            reason = "it sees no device"
        if count > 0:
            backend.notes = tuple(notes)
            return backend
        backend.close()
        notes.append(f"{cls.name}: {reason}")
    cpu = CpuBackend()
    cpu.notes = (*notes, "no GPU found: probing the CPU instead")
    return cpu


def parse_kernels(kernels: str | Iterable[str] | None) -> tuple[str, ...]:
    """Kernel groups from ``"matmul,conv"`` or a list; ``None`` means all.

    Raises:
        AdvisorError: a name that is not one of ``KERNEL_GROUPS``.
    """
    if kernels is None:
        return KERNEL_GROUPS
    items = kernels.split(",") if isinstance(kernels, str) else list(kernels)
    names = tuple(dict.fromkeys(k.strip().lower() for k in items if k.strip()))
    for name in names:
        if name not in KERNEL_GROUPS:
            raise AdvisorError(f"unknown kernel {name!r}", hint=f"choose from: {', '.join(KERNEL_GROUPS)}")
    return names


def _device_indices(device: int | str, count: int) -> list[int]:
    if isinstance(device, str) and device.strip().lower() == "all":
        return list(range(count))
    try:
        index = int(device)
    except (TypeError, ValueError):
        raise AdvisorError(f"bad device {device!r}", hint="a device index (0, 1, ...) or 'all'") from None
    if not 0 <= index < count:
        raise AdvisorError(f"no device {index}: this machine has {count} device(s)",
                           hint=f"use --device 0..{count - 1} or --device all" if count else "no device found")
    return [index]


def _versions(devices: Iterable[DeviceInfo]) -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    devs = [d for d in devices if d.error is None]
    torch = sys.modules.get("torch")  # only report what is already loaded; never import torch for this
    return {"python": platform.python_version(), "torch": version("torch"), "nvidia-ml-py": version("nvidia-ml-py"),
            "driver": next((d.driver_version for d in devs if d.driver_version), None),
            "cuda_driver": next((d.cuda_driver_version for d in devs if d.cuda_driver_version), None),
            "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None) if torch else None}


def probe(backend: InventoryBackend | None = None, device: int | str = "all", quick: bool = False,
          kernels: str | Iterable[str] | None = None, max_seconds: float | None = None,
          max_memory_fraction: float = 0.9, progress: Callable[[str, float], None] | None = None,
          clock: Callable[[], float] = time.perf_counter) -> ProbeResult:
    """Inventory, health and measured speed of this machine's devices.

    Args:
        backend: an inventory backend (``default_backend()`` when None; closed afterwards only then).
        device: a device index or ``"all"``.
        quick: fewer sizes and precisions (about 15 s per GPU).
        kernels: groups to run (``"matmul,conv,bandwidth,transfer,launch"``; ``[]`` runs none).
        max_seconds: wall-clock budget; kernels past it are skipped and say so.
        max_memory_fraction: the most of a device's free memory one kernel may allocate (0..1].
        progress: called with (what is running, fraction done).
        clock: seconds, monotonic: the budget's deadline and the kernels' host timing read it.

    Raises:
        AdvisorError: a bad device index, kernel name or bound.
    """
    t0 = clock()
    groups = parse_kernels(kernels)
    if not 0 < max_memory_fraction <= 1:  # NaN fails this too
        raise AdvisorError(f"max_memory_fraction must be in (0, 1], got {max_memory_fraction}",
                           hint="the most of a device's free memory one kernel may use, e.g. 0.9")
    if max_seconds is not None and not max_seconds > 0:  # `not > 0`: a NaN budget would never end
        raise AdvisorError(f"max_seconds must be > 0, got {max_seconds}", hint="a wall-clock budget in seconds")
    own = backend is None
    if backend is None:
        backend = default_backend()
    try:
        notes = list(getattr(backend, "notes", ()))
        indices = _device_indices(device, backend.device_count())
        devices: list[DeviceInfo] = []
        for i in indices:
            try:
                devices.append(backend.device_info(i))
            except DeviceError as exc:
                devices.append(DeviceInfo(index=i, backend=getattr(backend, "name", None), error=exc.message))
        results: list[KernelResult] = []
        if groups:
            deadline = None if max_seconds is None else t0 + max_seconds
            results = _run_kernels(backend, devices, groups, quick, deadline, max_memory_fraction, progress, notes,
                                   clock)
        if progress is not None:
            progress("done", 1.0)
        from advisor.probing.verdicts import probe_verdicts

        unavailable = [n for n in notes if "unavailable" in n.lower()]
        verdicts = probe_verdicts(devices, results, unavailable)
        return ProbeResult(timestamp=datetime.now(UTC).isoformat(timespec="seconds"), host=socket.gethostname(),
                           versions=_versions(devices), devices=tuple(devices), kernels=tuple(results),
                           verdicts=tuple(verdicts), notes=tuple(notes), backend=getattr(backend, "name", None),
                           quick=quick, elapsed_s=round(clock() - t0, 3))
    finally:
        if own:
            backend.close()


def _run_kernels(backend: InventoryBackend, devices: list[DeviceInfo], groups: tuple[str, ...], quick: bool,
                 deadline: float | None, max_memory_fraction: float,
                 progress: Callable[[str, float], None] | None, notes: list[str],
                 clock: Callable[[], float] = time.perf_counter) -> list[KernelResult]:
    from advisor.catalog import get_gpu, pcie_bandwidth_gbs
    from advisor.device import CudaDevice, cuda_runtime, torch_index_for
    from advisor.probing import kernels as K

    live = [d for d in devices if d.error is None]
    out: list[KernelResult] = []
    runtime = None
    for n, dev in enumerate(live):
        def step(label: str, frac: float, n: int = n, dev: DeviceInfo = dev) -> None:
            if progress is not None:
                progress(f"device {dev.index}: {label}", (n + frac) / len(live))

        spec = get_gpu(dev.catalog_id).per_device() if dev.catalog_id else None  # one GCD of an MI250
        common: dict[str, Any] = {"device_index": dev.index, "spec": spec, "quick": quick, "deadline": deadline,
                                  "clock": clock}
        if dev.kind == "cpu":
            total = dev.memory_free_bytes or dev.memory_total_bytes
            env = K.KernelEnv(device="cpu", max_memory_bytes=None if total is None else
                              int(max_memory_fraction * total), **common)
        else:
            runtime = runtime or cuda_runtime()
            reason = None
            if not runtime.is_available():
                reason = "torch cannot use a GPU here (torch.cuda.is_available() is False)"
                cuda_index = None
            else:
                cuda_index, reason = torch_index_for(dev.index, dev.uuid, runtime)
            if cuda_index is None:
                planned = K.plan(K.KernelEnv(device="cuda:0", device_index=dev.index, quick=quick), groups)
                out.extend(K.KernelResult(name=p.group, shape=p.label, device_index=dev.index,
                                          device="cuda", skipped=reason) for p in planned)
                continue
            if reason:
                notes.append(f"device {dev.index}: {reason}")
            cuda = CudaDevice(cuda_index, nvml_index=dev.index, runtime=runtime)
            free, _total = cuda.mem_get_info() or (0, 0)
            env = K.cuda_env(cuda, max_memory_bytes=int(max_memory_fraction * free),
                             pcie_gbs=pcie_bandwidth_gbs(dev.pcie_gen, dev.pcie_width),
                             read_sample=_sampler(backend, dev.index), read_link=_link_reader(backend, dev.index),
                             small_shapes=runtime.small_shapes, **common)
            if {"matmul", "conv"} & set(groups):
                step("warming up (clocks to steady state)", 0.0)
                K.warm_device(env, 0.5 if quick else 1.5)
        out.extend(K.run_plan(env, K.plan(env, groups), step))
    return out


def _link_reader(backend: InventoryBackend, index: int) -> Callable[[], tuple[int | None, int | None]] | None:
    if not isinstance(backend, LinkReader):
        return None
    return lambda: backend.pcie_link(index)


def _sampler(backend: InventoryBackend, index: int) -> Callable[[], Sample] | None:
    sample = getattr(backend, "sample", None)
    if sample is None:
        return None
    return lambda: sample(index)
