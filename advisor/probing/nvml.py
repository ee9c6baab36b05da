"""NVIDIA inventory and health through NVML (``nvidia-ml-py``, imported as ``pynvml``).

The only module that imports ``pynvml``, and only inside ``PynvmlBackend``.  NVML failures never
leave this module as pynvml exceptions: initialisation problems become ``ProbeUnavailable``, a
device that fails as a whole becomes ``DeviceError``, and a field the device does not report is
``None`` with its reason in ``DeviceInfo.missing``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from advisor.errors import DeviceError, ProbeUnavailable
from advisor.probing.backend import catalog_id as lookup_catalog_id
from advisor.probing.results import DeviceInfo, NvLinkInfo, ProcessInfo, Sample

T = TypeVar("T")


# NVML clocks-event (throttle) reason bits -> words.  The values are NVML's public constants
# (nvmlClocksEventReason* / nvmlClocksThrottleReason*), identical in both namings.
THROTTLE_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
#: Reasons that mean the card is running slower than it could because of power or heat.
POWER_REASONS = frozenset({"sw_power_cap", "hw_power_brake_slowdown"})
THERMAL_REASONS = frozenset({"sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown"})

ARCHITECTURES = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere", 8: "Ada",
                 9: "Hopper", 10: "Blackwell"}

# NVML return codes (nvml.h), matched on ``exc.value`` so every pynvml version works.
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
_DEVICE_FATAL = {NVML_ERROR_GPU_IS_LOST: "GPU is lost", 17: "GPU requires reset"}

INIT_HINT = "is the NVIDIA driver installed and loaded? `nvidia-smi` should list the GPUs"


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """NVML's clocks-event bitmask as words, e.g. ``0x24 -> ("sw_power_cap", "sw_thermal_slowdown")``.

    Unknown bits are kept as ``"reason_0x..."`` rather than dropped.
    """
    words = [word for bit, word in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    bit = 1
    while unknown:
        if unknown & bit:
            words.append(f"reason_{bit:#x}")
            unknown &= ~bit
        bit <<= 1
    return tuple(words)


def _code(exc: BaseException) -> Any:
    """An NVMLError's code (``None`` on other exceptions); pynvml is untyped, so the code is too."""
    return getattr(exc, "value", None)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version(v: int) -> str:
    # nvmlSystemGetCudaDriverVersion returns 12040 for CUDA 12.4.
    return f"{v // 1000}.{(v % 1000) // 10}"


class PynvmlBackend:
    """Inventory through NVML. ``nvmlInit`` runs once, here; call ``close()`` to shut it down.

    Raises:
        ProbeUnavailable: nvidia-ml-py is not installed, the NVIDIA driver is not installed or not
            loaded, or the driver and the NVML library versions do not match.
    """

    name = "nvml"

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise ProbeUnavailable("NVML unavailable: nvidia-ml-py is not installed",
                                   hint="pip install nvidia-ml-py") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            code = _code(exc)
            reason = {NVML_ERROR_LIBRARY_NOT_FOUND: "the NVML library (libnvidia-ml.so) was not found",
                      NVML_ERROR_DRIVER_NOT_LOADED: "the NVIDIA driver is not loaded",
                      NVML_ERROR_LIB_RM_VERSION_MISMATCH: "the NVIDIA driver and NVML library versions differ "
                                                          "(reboot after a driver update)",
                      NVML_ERROR_NO_PERMISSION: "no permission to open the NVIDIA device files",
                      }.get(code, _text(exc))
            raise ProbeUnavailable(f"NVML unavailable: {reason}", hint=INIT_HINT) from exc
        except OSError as exc:  # some platforms raise a plain OSError when the library cannot load
            raise ProbeUnavailable(f"NVML unavailable: {exc}", hint=INIT_HINT) from exc
        self._open = True
        self.notes: tuple[str, ...] = ()
        self.driver_version = self._system(pynvml.nvmlSystemGetDriverVersion, _text)
        self.cuda_driver_version = self._system(pynvml.nvmlSystemGetCudaDriverVersion, _cuda_version)

    def _system(self, fn: Callable[[], Any], convert: Callable[[Any], str]) -> str | None:
        try:
            return convert(fn())
        except self._nvml.NVMLError:
            return None

    def close(self) -> None:
        """Shut NVML down (idempotent)."""
        if getattr(self, "_open", False):
            self._open = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def __enter__(self) -> PynvmlBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def device_count(self) -> int:
        """Number of NVIDIA devices NVML sees."""
        try:
            return int(self._nvml.nvmlDeviceGetCount())
        except self._nvml.NVMLError as exc:
            raise ProbeUnavailable(f"NVML could not count devices: {_text(exc)}", hint=INIT_HINT) from exc

    def _handle(self, index: int) -> Any:
        count = self.device_count()
        if not 0 <= index < count:
            raise ProbeUnavailable(f"no NVIDIA device {index}", hint=f"devices are 0..{count - 1}" if count
                                   else "NVML sees no NVIDIA device")
        try:
            return self._nvml.nvmlDeviceGetHandleByIndex(index)
        except self._nvml.NVMLError as exc:
            raise DeviceError(_DEVICE_FATAL.get(_code(exc), _text(exc))) from exc

    def _field(self, missing: dict[str, str], key: str, fn: Callable[[], T]) -> T | None:
        """Call one NVML getter; NotSupported / NoPermission -> None with the reason; lost GPU -> DeviceError."""
        try:
            return fn()
        except self._nvml.NVMLError as exc:
            code = _code(exc)
            if code in _DEVICE_FATAL:
                raise DeviceError(_DEVICE_FATAL[code]) from exc
            missing[key] = {NVML_ERROR_NOT_SUPPORTED: "not supported by this device",
                            NVML_ERROR_NO_PERMISSION: "no permission (try as root)",
                            NVML_ERROR_FUNCTION_NOT_FOUND: "not in this driver's NVML"}.get(code, _text(exc))
            return None
        except (AttributeError, TypeError) as exc:  # an older nvidia-ml-py without this function
            missing[key] = f"not available in this nvidia-ml-py: {exc}"
            return None

    def _throttle_mask(self, h: Any) -> int:
        nv = self._nvml
        getter = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(getter(h))

    def _memory(self, h: Any) -> Any:
        nv = self._nvml
        version = getattr(nv, "nvmlMemory_v2", None)
        if version is not None:
            try:
                return nv.nvmlDeviceGetMemoryInfo(h, version=version)
            except nv.NVMLError as exc:
                if _code(exc) in _DEVICE_FATAL:
                    raise
                # v2 (which also counts memory reserved by the driver) needs a newer driver; use v1.
        return nv.nvmlDeviceGetMemoryInfo(h)

    def device_info(self, index: int) -> DeviceInfo:
        """Inventory and health of NVIDIA device ``index``.

        Raises:
            ProbeUnavailable: no such device index.
            DeviceError: the GPU is lost or needs a reset.
        """
        nv = self._nvml
        h = self._handle(index)
        m: dict[str, str] = {}
        f = self._field
        name = f(m, "name", lambda: _text(nv.nvmlDeviceGetName(h)))
        mem = f(m, "memory_total_bytes", lambda: self._memory(h))
        for key in ("memory_used_bytes", "memory_free_bytes"):
            if mem is None:
                m[key] = m["memory_total_bytes"]
        cc = f(m, "compute_capability", lambda: nv.nvmlDeviceGetCudaComputeCapability(h))
        arch = f(m, "architecture", lambda: ARCHITECTURES.get(int(nv.nvmlDeviceGetArchitecture(h)), "unknown"))
        power = self._power(h, m)
        health = self._health(h, m)
        mig = f(m, "mig_enabled", lambda: nv.nvmlDeviceGetMigMode(h))
        mask = f(m, "throttle_reasons", lambda: self._throttle_mask(h))
        util = f(m, "utilization_gpu_pct", lambda: nv.nvmlDeviceGetUtilizationRates(h))
        if util is None:
            m["utilization_mem_pct"] = m["utilization_gpu_pct"]
        procs = f(m, "processes", lambda: self._processes(h))
        nvlinks = self._nvlinks(h, m)
        pci = f(m, "pci_bus_id", lambda: nv.nvmlDeviceGetPciInfo(h))
        catalog_id = None
        if name is not None:
            catalog_id = lookup_catalog_id(name)
            if catalog_id is None:
                m["catalog_id"] = f"{name!r} is not in the catalog"
        else:
            m["catalog_id"] = "no device name"
        uuid = f(m, "uuid", lambda: _text(nv.nvmlDeviceGetUUID(h)))
        return DeviceInfo(
            index=index, kind="gpu", backend=self.name, name=name, uuid=uuid,
            pci_bus_id=None if pci is None else _text(pci.busId),
            catalog_id=catalog_id,
            memory_total_bytes=None if mem is None else int(mem.total),
            memory_used_bytes=None if mem is None else int(mem.used),
            memory_free_bytes=None if mem is None else int(mem.free),
            driver_version=self.driver_version, cuda_driver_version=self.cuda_driver_version,
            compute_capability=None if cc is None else f"{cc[0]}.{cc[1]}",
            architecture=arch, **self._clocks_and_links(h, m), **power, **health,
            mig_enabled=None if mig is None else bool(mig[0]),
            throttle_reasons=None if mask is None else decode_throttle_reasons(mask),
            utilization_gpu_pct=None if util is None else int(util.gpu),
            utilization_mem_pct=None if util is None else int(util.memory),
            processes=procs, nvlinks=nvlinks, missing=m)

    def _power(self, h: Any, m: dict[str, str]) -> dict[str, Any]:
        """Power draw and limits (W) as ``DeviceInfo`` fields; what NVML did not report goes to ``m``."""
        nv, f = self._nvml, self._field
        power_mw = f(m, "power_draw_w", lambda: nv.nvmlDeviceGetPowerUsage(h))
        limit_mw = f(m, "power_limit_w", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h))
        default_mw = f(m, "default_power_limit_w", lambda: nv.nvmlDeviceGetPowerManagementDefaultLimit(h))
        return {"power_draw_w": None if power_mw is None else power_mw / 1000,
                "power_limit_w": None if limit_mw is None else limit_mw / 1000,
                "default_power_limit_w": None if default_mw is None else default_mw / 1000}

    def _health(self, h: Any, m: dict[str, str]) -> dict[str, Any]:
        """ECC, retired pages and remapped rows as ``DeviceInfo`` fields; what NVML did not report goes to ``m``."""
        nv, f = self._nvml, self._field
        ecc = f(m, "ecc_enabled", lambda: nv.nvmlDeviceGetEccMode(h))
        ecc_enabled = None if ecc is None else bool(ecc[0])
        ecc_errors = None
        if ecc_enabled:
            ecc_errors = f(m, "ecc_uncorrected_errors", lambda: int(nv.nvmlDeviceGetTotalEccErrors(
                h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_AGGREGATE_ECC)))
        elif ecc is not None:
            m["ecc_uncorrected_errors"] = "ECC is disabled"
        else:
            m["ecc_uncorrected_errors"] = m["ecc_enabled"]
        retired = f(m, "retired_pages", lambda: len(nv.nvmlDeviceGetRetiredPages(
            h, nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)))
        remap = f(m, "remapped_rows_uncorrectable", lambda: nv.nvmlDeviceGetRemappedRows(h))
        if remap is None:
            m["remapped_rows_pending"] = m["remapped_rows_failure"] = m["remapped_rows_uncorrectable"]
        return {"ecc_enabled": ecc_enabled, "ecc_uncorrected_errors": ecc_errors, "retired_pages": retired,
                "remapped_rows_uncorrectable": None if remap is None else int(remap[1]),
                "remapped_rows_pending": None if remap is None else bool(remap[2]),
                "remapped_rows_failure": None if remap is None else bool(remap[3])}

    def _clocks_and_links(self, h: Any, m: dict[str, str]) -> dict[str, Any]:
        """Clocks, temperature, fan and PCIe link as ``DeviceInfo`` fields; what NVML did not report goes to ``m``."""
        nv, f = self._nvml, self._field
        return {
            "sm_clock_mhz": f(m, "sm_clock_mhz", lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))),
            "sm_clock_max_mhz": f(m, "sm_clock_max_mhz",
                                  lambda: int(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM))),
            "mem_clock_mhz": f(m, "mem_clock_mhz", lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))),
            "mem_clock_max_mhz": f(m, "mem_clock_max_mhz",
                                   lambda: int(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM))),
            "temperature_c": f(m, "temperature_c",
                               lambda: int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))),
            "fan_pct": f(m, "fan_pct", lambda: int(nv.nvmlDeviceGetFanSpeed(h))),
            "pcie_gen": f(m, "pcie_gen", lambda: int(nv.nvmlDeviceGetCurrPcieLinkGeneration(h))),
            "pcie_gen_max": f(m, "pcie_gen_max", lambda: int(nv.nvmlDeviceGetMaxPcieLinkGeneration(h))),
            "pcie_width": f(m, "pcie_width", lambda: int(nv.nvmlDeviceGetCurrPcieLinkWidth(h))),
            "pcie_width_max": f(m, "pcie_width_max", lambda: int(nv.nvmlDeviceGetMaxPcieLinkWidth(h))),
        }

    def _processes(self, h: Any) -> tuple[ProcessInfo, ...]:
        nv = self._nvml
        out = []
        for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
            try:
                pname: str | None = _text(nv.nvmlSystemGetProcessName(p.pid))
            except nv.NVMLError:
                pname = None
            used = getattr(p, "usedGpuMemory", None)
            # NVML reports "not available" (e.g. inside containers / under MIG) as None or 2**64-1.
            if used is not None and used >= 2**63:
                used = None
            out.append(ProcessInfo(pid=int(p.pid), name=pname, used_memory_bytes=used))
        return tuple(out)

    def _nvlinks(self, h: Any, missing: dict[str, str]) -> tuple[NvLinkInfo, ...] | None:
        nv = self._nvml
        links = []
        for link in range(int(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18))):
            try:
                links.append(NvLinkInfo(index=link, active=bool(nv.nvmlDeviceGetNvLinkState(h, link))))
            except nv.NVMLError as exc:
                code = _code(exc)
                if code in _DEVICE_FATAL:
                    raise DeviceError(_DEVICE_FATAL[code]) from exc
                if not links:
                    missing["nvlinks"] = "no NVLink on this device" if code == NVML_ERROR_NOT_SUPPORTED \
                        else _text(exc)
                    return None
                break  # past the last link this device has
        return tuple(links)

    def pcie_link(self, index: int) -> tuple[int | None, int | None]:
        """Current PCIe (generation, width). Read it under load: idle GPUs train the link down to save power.

        Raises:
            DeviceError: the GPU is lost; ProbeUnavailable: no such device.
        """
        nv = self._nvml
        h = self._handle(index)
        m: dict[str, str] = {}
        return (self._field(m, "gen", lambda: int(nv.nvmlDeviceGetCurrPcieLinkGeneration(h))),
                self._field(m, "width", lambda: int(nv.nvmlDeviceGetCurrPcieLinkWidth(h))))

    def sample(self, index: int) -> Sample:
        """Clocks, power, temperature and throttle reasons right now (fields None if unsupported).

        Raises:
            DeviceError: the GPU is lost; ProbeUnavailable: no such device.
        """
        nv = self._nvml
        h = self._handle(index)
        m: dict[str, str] = {}
        f = self._field
        power = f(m, "power", lambda: nv.nvmlDeviceGetPowerUsage(h))
        mask = f(m, "throttle", lambda: self._throttle_mask(h))
        return Sample(t_s=0.0,
                      sm_clock_mhz=f(m, "sm", lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))),
                      mem_clock_mhz=f(m, "mem", lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))),
                      power_draw_w=None if power is None else power / 1000,
                      temperature_c=f(m, "temp", lambda: int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))),
                      throttle_reasons=None if mask is None else decode_throttle_reasons(mask))
