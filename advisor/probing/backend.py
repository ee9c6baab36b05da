"""What every inventory backend (NVML, amdsmi, torch, CPU) provides, and the catalog lookup they share.

Pure Python: no vendor library is imported here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from advisor.probing.results import DeviceInfo, Sample

__all__ = ["InventoryBackend", "LinkReader", "catalog_id"]


@runtime_checkable
class InventoryBackend(Protocol):
    """What ``probe()`` and the dashboard need from an inventory backend (NVML, amdsmi, torch, CPU)."""

    name: str
    notes: tuple[str, ...]

    def device_count(self) -> int:
        """Number of devices (cheap, no side effects)."""
        ...

    def device_info(self, index: int) -> DeviceInfo:
        """Inventory + health of one device. Raises ``DeviceError`` when the device fails as a whole."""
        ...

    def sample(self, index: int) -> Sample:
        """A cheap reading of clocks, power, temperature, throttle reasons (for sampling during kernels)."""
        ...

    def close(self) -> None:
        """Release the library (idempotent)."""
        ...


@runtime_checkable
class LinkReader(Protocol):
    """A backend that can re-read a GPU's current PCIe link (NVML): the probe reads it while a transfer runs."""

    def pcie_link(self, index: int) -> tuple[int | None, int | None]:
        """(generation, width) of the device's PCIe link now; None where not reported."""
        ...


def catalog_id(name: str) -> str | None:
    """The catalog id of an NVML / amdsmi / torch device name, or None when it is not in the catalog."""
    from advisor.catalog import get_gpu
    from advisor.errors import AdvisorError

    try:
        return get_gpu(name).id
    except AdvisorError:
        return None
