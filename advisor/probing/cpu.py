"""Fallback inventory backends: torch's view of CUDA/ROCm devices, and the CPU itself.

Used when NVML (and amdsmi) cannot run.  torch is imported only inside ``TorchCudaBackend``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from advisor.errors import DeviceError, ProbeUnavailable
from advisor.probing.results import DeviceInfo, Sample


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def host_memory_bytes() -> tuple[int | None, int | None]:
    """The host's (total, available) RAM in bytes: /proc/meminfo, else ``os.sysconf`` for the total.

    The one reader of host RAM (the CPU backend, validate's CPU card and the dashboard through the backend);
    None where not reported.
    """
    total = avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                value = int(rest.split()[0]) * 1024  # kB in the file means KiB
                if key == "MemTotal":
                    total = value
                else:
                    avail = value
    except (OSError, ValueError, IndexError):
        pass
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = None
    return total, avail


class CpuBackend:
    """The CPU as the one device (index 0), so a probe always has something to report."""

    name = "cpu"

    def __init__(self) -> None:
        self.notes: tuple[str, ...] = ()

    def device_count(self) -> int:
        """Always 1: the host CPU."""
        return 1

    def device_info(self, index: int) -> DeviceInfo:
        """The CPU's model, cores and memory."""
        if index != 0:
            raise ProbeUnavailable(f"no device {index} on the CPU backend", hint="the CPU is device 0")
        total, avail = host_memory_bytes()
        missing = {k: "not reported for a CPU" for k in (
            "uuid", "pci_bus_id", "driver_version", "cuda_driver_version", "compute_capability",
            "power_draw_w", "temperature_c", "pcie_gen", "ecc_enabled", "throttle_reasons")}
        missing["catalog_id"] = "the catalog lists GPUs only"
        if avail is None:
            missing["memory_free_bytes"] = "MemAvailable not in /proc/meminfo"
        return DeviceInfo(index=0, kind="cpu", backend=self.name, name=_cpu_model(),
                          memory_total_bytes=total,
                          memory_used_bytes=None if total is None or avail is None else total - avail,
                          memory_free_bytes=avail, cpu_cores=os.cpu_count(), architecture=platform.machine() or None,
                          missing=missing)

    def sample(self, index: int) -> Sample:
        """Nothing to sample on a CPU: an empty reading."""
        return Sample(t_s=0.0)

    def close(self) -> None:
        """Nothing to release."""


class TorchCudaBackend:
    """What torch alone can tell about CUDA (or ROCm) devices when NVML is not usable.

    Raises:
        ProbeUnavailable: torch is not installed or sees no CUDA/ROCm device.
    """

    name = "torch"

    def __init__(self) -> None:
        from advisor.device import cuda_runtime

        try:
            runtime = cuda_runtime()
        except ImportError as exc:
            raise ProbeUnavailable("torch is not installed", hint="pip install torch") from exc
        except OSError as exc:  # torch's CUDA libraries failed to load (a broken or mismatched install)
            raise ProbeUnavailable(f"torch cannot load its CUDA libraries: {exc}",
                                   hint="reinstall torch for this machine's CUDA/ROCm") from exc
        if not runtime.is_available():
            raise ProbeUnavailable("torch sees no CUDA/ROCm device", hint="torch.cuda.is_available() is False")
        self._runtime = runtime
        self.notes: tuple[str, ...] = ()

    def device_count(self) -> int:
        """torch.cuda.device_count()."""
        return self._runtime.device_count()

    def device_info(self, index: int) -> DeviceInfo:
        """Name, UUID, memory and compute capability as torch reports them."""
        from advisor.probing.backend import catalog_id as _catalog_id

        rt = self._runtime
        if not 0 <= index < self.device_count():
            raise ProbeUnavailable(f"no CUDA device {index}", hint=f"devices are 0..{self.device_count() - 1}")
        try:
            name = rt.name(index)
            free, total = rt.mem_get_info(index)
            cuda, hip = rt.versions()
            major, minor = rt.capability(index)
        except RuntimeError as exc:  # torch reports a CUDA/HIP error on the device as RuntimeError
            raise DeviceError(f"torch cannot read CUDA device {index}: {exc}") from exc
        missing = {k: "not reported by torch (NVML unavailable)" for k in (
            "pci_bus_id", "power_draw_w", "temperature_c", "pcie_gen", "ecc_enabled", "throttle_reasons",
            "processes", "sm_clock_mhz")}
        cid = _catalog_id(name)
        if cid is None:
            missing["catalog_id"] = f"{name!r} is not in the catalog"
        return DeviceInfo(index=index, kind="gpu", backend=self.name, name=name, uuid=rt.uuid(index), catalog_id=cid,
                          memory_total_bytes=int(total), memory_free_bytes=int(free),
                          memory_used_bytes=int(total - free),
                          cuda_driver_version=None if hip else cuda,
                          compute_capability=None if hip else f"{major}.{minor}",
                          architecture=rt.arch_name(index) if hip else None, missing=missing)

    def sample(self, index: int) -> Sample:
        """An empty reading: torch cannot read clocks or power."""
        return Sample(t_s=0.0)

    def close(self) -> None:
        """Nothing to release."""
