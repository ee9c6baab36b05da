"""Fake hardware for tests: an inventory backend, named scenarios, a stub pynvml, a scripted clock."""

from __future__ import annotations

import random
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from advisor.errors import DeviceError
from advisor.probing.results import DeviceInfo, NvLinkInfo, ProcessInfo, Sample


@dataclass
class FakeNvml:
    """An inventory backend whose devices are given: a ``DeviceInfo`` or the exception to raise."""

    devices: list[DeviceInfo | Exception]
    driver_version: str | None = "550.54.15"
    samples: Sequence[Sample] = ()
    name: str = "fake-nvml"
    notes: tuple[str, ...] = ()
    closed: int = 0
    sample_calls: int = 0

    def device_count(self) -> int:
        return len(self.devices)

    def device_info(self, index: int) -> DeviceInfo:
        item = self.devices[index]
        if isinstance(item, Exception):
            raise item
        return item

    def sample(self, index: int) -> Sample:
        self.sample_calls += 1
        if self.samples:
            return self.samples[min(self.sample_calls - 1, len(self.samples) - 1)]
        return Sample(t_s=0.0)

    def close(self) -> None:
        self.closed += 1


def h100(index: int = 0, **changes: Any) -> DeviceInfo:
    """A healthy H100 SXM as NVML reports it (values from a real nvidia-smi -q, rounded)."""
    dev = DeviceInfo(
        index=index, kind="gpu", backend="fake-nvml", name="NVIDIA H100 80GB HBM3",
        uuid=f"GPU-00000000-0000-0000-0000-00000000000{index}", pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
        catalog_id="h100-sxm5-80gb", memory_total_bytes=85_520_809_984, memory_used_bytes=570_425_344,
        memory_free_bytes=84_950_384_640, driver_version="550.54.15", cuda_driver_version="12.4",
        compute_capability="9.0", architecture="Hopper", sm_clock_mhz=1980, sm_clock_max_mhz=1980,
        mem_clock_mhz=2619, mem_clock_max_mhz=2619, power_draw_w=72.5, power_limit_w=700.0,
        default_power_limit_w=700.0, temperature_c=31, fan_pct=None, pcie_gen=5, pcie_gen_max=5, pcie_width=16,
        pcie_width_max=16, ecc_enabled=True, ecc_uncorrected_errors=0, retired_pages=0,
        remapped_rows_uncorrectable=0, remapped_rows_pending=False, remapped_rows_failure=False, mig_enabled=False,
        throttle_reasons=(), utilization_gpu_pct=0, utilization_mem_pct=0, processes=(),
        nvlinks=tuple(NvLinkInfo(i, True) for i in range(18)), missing={"fan_pct": "not supported by this device"})
    return replace(dev, **changes)


def two_h100s() -> FakeNvml:
    return FakeNvml([h100(0), h100(1)])


def one_gpu_lost() -> FakeNvml:
    return FakeNvml([h100(0), DeviceError("GPU is lost")])


def not_supported() -> FakeNvml:
    """A consumer card that reports almost nothing (every optional field None, with reasons)."""
    keep = {"index", "kind", "backend", "name", "catalog_id", "missing", "error"}
    fields = {f: None for f in DeviceInfo.__dataclass_fields__ if f not in keep}
    dev = DeviceInfo(index=0, kind="gpu", backend="fake-nvml", name="NVIDIA GeForce RTX 4090", catalog_id="rtx-4090",
                     missing={f: "not supported by this device" for f in fields}, **fields)
    return FakeNvml([dev])


def throttling() -> FakeNvml:
    hot = Sample(t_s=0.0, sm_clock_mhz=1400, power_draw_w=698.0, temperature_c=88,
                 throttle_reasons=("sw_power_cap", "sw_thermal_slowdown"))
    return FakeNvml([h100(0, throttle_reasons=("hw_thermal_slowdown",), temperature_c=89)], samples=[hot])


def pcie_downtrained() -> FakeNvml:
    return FakeNvml([h100(0, pcie_gen=3, pcie_width=8)])


def busy_and_capped() -> FakeNvml:
    return FakeNvml([h100(0, power_limit_w=500.0, ecc_uncorrected_errors=3, retired_pages=2,
                          processes=(ProcessInfo(pid=999_999, name="python", used_memory_bytes=2**30),))])


# ---------------------------------------------------------------- stub pynvml


class StubNVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 4: "Insufficient Permissions", 9: "Driver Not Loaded",
                12: "NVML Shared Library Not Found", 15: "GPU is lost",
                18: "RM has detected an NVML/RM version mismatch."}.get(self.value, f"NVML error {self.value}")


NOT_SUPPORTED, NO_PERMISSION, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, GPU_IS_LOST, MISMATCH = 3, 4, 9, 12, 15, 18


def stub_device(**overrides: Any) -> dict[str, Any]:
    """What each pynvml getter returns for one H100 (override a key with a value or an ``int`` error code
    wrapped as ``StubNVMLError(code)``)."""
    ns = types.SimpleNamespace
    base: dict[str, Any] = {
        "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": "GPU-11111111-2222-3333-4444-555555555555",
        "nvmlDeviceGetPciInfo": ns(busId=b"00000000:18:00.0"),
        "nvmlDeviceGetMemoryInfo_v2": ns(total=80 * 2**30, used=2**30, free=79 * 2**30, reserved=0),
        "nvmlDeviceGetMemoryInfo": ns(total=80 * 2**30, used=2**29, free=79 * 2**30 + 2**29),
        "nvmlDeviceGetCudaComputeCapability": (9, 0),
        "nvmlDeviceGetArchitecture": 9,
        "nvmlDeviceGetClockInfo": {1: 1755, 2: 2619},
        "nvmlDeviceGetMaxClockInfo": {1: 1980, 2: 2619},
        "nvmlDeviceGetPowerUsage": 312_345,
        "nvmlDeviceGetEnforcedPowerLimit": 700_000,
        "nvmlDeviceGetPowerManagementDefaultLimit": 700_000,
        "nvmlDeviceGetTemperature": 54,
        "nvmlDeviceGetFanSpeed": StubNVMLError(NOT_SUPPORTED),
        "nvmlDeviceGetCurrPcieLinkGeneration": 5,
        "nvmlDeviceGetMaxPcieLinkGeneration": 5,
        "nvmlDeviceGetCurrPcieLinkWidth": 16,
        "nvmlDeviceGetMaxPcieLinkWidth": 16,
        "nvmlDeviceGetEccMode": [1, 1],
        "nvmlDeviceGetTotalEccErrors": 0,
        "nvmlDeviceGetRetiredPages": [],
        "nvmlDeviceGetRemappedRows": (0, 0, 0, 0),
        "nvmlDeviceGetMigMode": [0, 0],
        "nvmlDeviceGetCurrentClocksEventReasons": 0x4 | 0x20,
        "nvmlDeviceGetUtilizationRates": ns(gpu=97, memory=41),
        "nvmlDeviceGetComputeRunningProcesses": [ns(pid=4242, usedGpuMemory=3 * 2**30)],
        "nvlinks": 18,
    }
    base.update(overrides)
    return base


def make_stub_pynvml(devices: Sequence[dict[str, Any] | Exception] = (), init_error: int | None = None,
                     driver: str = "550.54.15", cuda: int = 12040) -> types.ModuleType:
    """A module that quacks like pynvml for ``PynvmlBackend``; records calls in ``calls``."""
    mod = types.ModuleType("pynvml")
    mod.NVMLError = StubNVMLError  # type: ignore[attr-defined]
    mod.calls = []  # type: ignore[attr-defined]
    mod.nvmlMemory_v2 = 0x02000028  # type: ignore[attr-defined]
    mod.NVML_CLOCK_SM, mod.NVML_CLOCK_MEM, mod.NVML_TEMPERATURE_GPU = 1, 2, 0  # type: ignore[attr-defined]
    mod.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, mod.NVML_AGGREGATE_ECC = 1, 1  # type: ignore[attr-defined]
    mod.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1  # type: ignore[attr-defined]
    mod.NVML_NVLINK_MAX_LINKS = 18  # type: ignore[attr-defined]

    def give(value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        return value

    def record(name: str, fn: Callable[..., Any]) -> None:
        def wrapper(*args: Any, **kw: Any) -> Any:
            mod.calls.append(name)  # type: ignore[attr-defined]
            return fn(*args, **kw)
        setattr(mod, name, wrapper)

    def nvml_init() -> None:
        if init_error is not None:
            raise StubNVMLError(init_error)

    record("nvmlInit", nvml_init)
    record("nvmlShutdown", lambda: None)
    record("nvmlSystemGetDriverVersion", lambda: driver)
    record("nvmlSystemGetCudaDriverVersion", lambda: cuda)
    record("nvmlSystemGetProcessName", lambda pid: f"proc-{pid}")
    record("nvmlDeviceGetCount", lambda: len(devices))

    def handle(i: int) -> Any:
        item = devices[i]
        if isinstance(item, Exception):
            raise item
        return item

    record("nvmlDeviceGetHandleByIndex", handle)

    def getter(name: str) -> Callable[..., Any]:
        def fn(h: dict[str, Any], *args: Any) -> Any:
            value = h[name]
            if isinstance(value, dict):
                return give(value[args[0]])
            return give(value)
        return fn

    for name in stub_device():
        if name.startswith("nvmlDevice") and name not in ("nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2"):
            if name == "nvmlDeviceGetCurrentClocksEventReasons":
                continue
            record(name, getter(name))

    def memory(h: dict[str, Any], version: int | None = None) -> Any:
        return give(h["nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo"])

    record("nvmlDeviceGetMemoryInfo", memory)

    def reasons(h: dict[str, Any]) -> Any:
        return give(h["nvmlDeviceGetCurrentClocksEventReasons"])

    record("nvmlDeviceGetCurrentClocksEventReasons", reasons)
    record("nvmlDeviceGetCurrentClocksThrottleReasons", reasons)

    def nvlink(h: dict[str, Any], link: int) -> Any:
        n = h["nvlinks"]
        if isinstance(n, Exception):
            raise n
        if link >= n:
            raise StubNVMLError(2)  # invalid argument: past the last link
        return 1 if link % 9 else 0  # links 0 and 9 down

    record("nvmlDeviceGetNvLinkState", nvlink)
    return mod


# ---------------------------------------------------------------- scripted clock


@dataclass
class FakeClock:
    """A clock that only moves when work is "done": ``work()`` advances it by the next scripted cost.

    ``costs`` are seconds per call, cycled; after they run out the last one repeats.  ``noise`` adds
    a seeded relative jitter (``random.Random(seed)``), so results are reproducible.
    """

    costs: Sequence[float] = (1e-4,)
    noise: float = 0.0
    seed: int = 0
    now_ns: int = 0
    calls: int = 0
    syncs: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self) -> float:
        return self.now_ns / 1e9

    def work(self) -> None:
        cost = self.costs[min(self.calls, len(self.costs) - 1)]
        if self.noise:
            cost *= 1 + self._rng.uniform(-self.noise, self.noise)
        self.calls += 1
        self.now_ns += round(cost * 1e9)

    def synchronize(self) -> None:
        self.syncs += 1
