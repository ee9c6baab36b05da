"""AMD inventory and health through ``amdsmi`` (ROCm), in the same schema as NVML.

The only module that imports ``amdsmi``, and only inside ``AmdsmiBackend``.  Written against
the amdsmi Python API (amdsmi_init, amdsmi_get_processor_handles, amdsmi_get_gpu_asic_info, ...);
not exercised on real AMD hardware in this project's CI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from advisor.errors import DeviceError, ProbeUnavailable
from advisor.probing.results import DeviceInfo, Sample

T = TypeVar("T")


# amdsmi reports PCIe link speed in MT/s per lane.
_PCIE_GEN_BY_MTS = {2500: 1, 5000: 2, 8000: 3, 16000: 4, 32000: 5, 64000: 6}


def _pcie_gen(speed_mts: Any) -> int | None:
    try:
        return _PCIE_GEN_BY_MTS.get(int(speed_mts))
    except (TypeError, ValueError):
        return None


def _library_errors(amdsmi: Any) -> tuple[type[Exception], ...]:
    """What an amdsmi call raises for a device or library problem, not a bug here.

    ``AmdSmiException`` is the base of amdsmi's own errors (``AmdSmiLibraryException`` with the library's
    status code, retry, timeout, parameter, key); its Python wrapper raises KeyError for a field this
    release does not report, and AttributeError or TypeError for a function or argument that another
    release spells differently.
    """
    base = getattr(amdsmi, "AmdSmiException", None)
    own = (base,) if isinstance(base, type) and issubclass(base, Exception) else ()
    return (*own, KeyError, AttributeError, TypeError)


class AmdsmiBackend:
    """AMD GPUs through amdsmi.

    Raises:
        ProbeUnavailable: amdsmi is not installed or ROCm's library / the amdgpu driver is not loaded.
    """

    name = "amdsmi"

    def __init__(self) -> None:
        try:
            import amdsmi
        except ImportError as exc:
            raise ProbeUnavailable("amdsmi unavailable: not installed",
                                   hint="pip install 'gpu-advisor[amd]' (needs ROCm)") from exc
        self._smi = amdsmi
        self._errors = _library_errors(amdsmi)
        try:
            amdsmi.amdsmi_init()
            self._handles = list(amdsmi.amdsmi_get_processor_handles())
        except self._errors as exc:
            raise ProbeUnavailable(f"amdsmi unavailable: {exc}",
                                   hint="is ROCm installed and the amdgpu driver loaded?") from exc
        self._open = True
        self.notes: tuple[str, ...] = ()

    def close(self) -> None:
        """Shut amdsmi down (idempotent)."""
        if getattr(self, "_open", False):
            self._open = False
            with contextlib.suppress(*self._errors):
                self._smi.amdsmi_shut_down()

    def device_count(self) -> int:
        """Number of AMD GPUs."""
        return len(self._handles)

    def _field(self, missing: dict[str, str], key: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except self._errors as exc:
            missing[key] = str(exc) or type(exc).__name__
            return None

    def device_info(self, index: int) -> DeviceInfo:
        """Inventory of AMD GPU ``index``."""
        from advisor.probing.backend import catalog_id as _catalog_id

        if not 0 <= index < len(self._handles):
            raise ProbeUnavailable(f"no AMD device {index}", hint=f"devices are 0..{len(self._handles) - 1}")
        smi, h = self._smi, self._handles[index]
        m: dict[str, str] = {}
        f = self._field
        asic = f(m, "name", lambda: smi.amdsmi_get_gpu_asic_info(h))
        if asic is None and "name" in m and "lost" in m["name"].lower():
            raise DeviceError(m["name"])
        name = None if asic is None else asic.get("market_name")
        vram = f(m, "memory_total_bytes", lambda: smi.amdsmi_get_gpu_vram_usage(h))  # MiB
        power = f(m, "power_draw_w", lambda: smi.amdsmi_get_power_info(h))
        temp = f(m, "temperature_c", lambda: smi.amdsmi_get_temp_metric(
            h, smi.AmdSmiTemperatureType.EDGE, smi.AmdSmiTemperatureMetric.CURRENT))
        pcie = f(m, "pcie_gen", lambda: smi.amdsmi_get_pcie_info(h))
        drv = f(m, "driver_version", lambda: smi.amdsmi_get_gpu_driver_info(h))
        bdf = f(m, "pci_bus_id", lambda: smi.amdsmi_get_gpu_device_bdf(h))
        uuid = f(m, "uuid", lambda: smi.amdsmi_get_gpu_device_uuid(h))
        mib = 1024 * 1024
        cid = None if name is None else _catalog_id(name)
        if cid is None and name is not None:
            cid = _gcd_catalog_id(name, asic)
        if cid is None:
            m["catalog_id"] = f"{name!r} is not in the catalog"

        def g(d: Any, *keys: str) -> Any:
            for k in keys:
                if not isinstance(d, dict):
                    return None
                d = d.get(k)
            return None if d in (None, "N/A") else d

        total = g(vram, "vram_total")
        used = g(vram, "vram_used")
        return DeviceInfo(
            index=index, kind="gpu", backend=self.name, name=name, uuid=uuid, pci_bus_id=bdf, catalog_id=cid,
            memory_total_bytes=None if total is None else int(total) * mib,
            memory_used_bytes=None if used is None else int(used) * mib,
            memory_free_bytes=None if total is None or used is None else (int(total) - int(used)) * mib,
            driver_version=g(drv, "driver_version"),
            power_draw_w=g(power, "current_socket_power") or g(power, "average_socket_power"),
            power_limit_w=g(power, "power_limit"),
            temperature_c=temp,
            pcie_gen=_pcie_gen(g(pcie, "pcie_metric", "pcie_speed")),
            pcie_width=g(pcie, "pcie_metric", "pcie_width"),
            pcie_gen_max=_pcie_gen(g(pcie, "pcie_static", "max_pcie_speed")),
            pcie_width_max=g(pcie, "pcie_static", "max_pcie_width"),
            missing=m)

    def sample(self, index: int) -> Sample:
        """Power and temperature now."""
        info = self.device_info(index)
        return Sample(t_s=0.0, power_draw_w=info.power_draw_w, temperature_c=info.temperature_c)


#: Compute units of ONE graphics compute die (GCD) of a two-die package -> catalog id.  amdsmi enumerates each
#: GCD of an MI250/MI250X as its own GPU (64 GB, half the package's CUs), and some ROCm releases report both
#: as market name "AMD Instinct MI250X / MI250"; the GCD's CU count tells them apart (AMD CDNA 2 whitepaper:
#: MI250X 220 CUs, MI250 208 CUs per package).  The catalog files hold package figures with
#: ``devices_per_package = 2``; estimates and the probe's fractions use ``GpuSpec.per_device()``.
GCD_COMPUTE_UNITS = {110: "mi250x", 104: "mi250"}


def _gcd_catalog_id(name: str, asic: Any) -> str | None:
    """The catalog id of a two-die package's GCD whose market name is ambiguous, from its compute units."""
    if "mi250" not in name.lower().replace(" ", ""):
        return None
    cus = asic.get("num_compute_units") if isinstance(asic, dict) else None
    return GCD_COMPUTE_UNITS.get(cus) if isinstance(cus, int) else None

