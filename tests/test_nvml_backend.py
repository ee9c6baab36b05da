"""PynvmlBackend against a stub ``pynvml`` module placed in sys.modules."""

from __future__ import annotations

import sys

import pytest

from advisor.errors import DeviceError, ProbeUnavailable
from advisor.probing.backend import InventoryBackend, LinkReader
from advisor.probing.nvml import PynvmlBackend, decode_throttle_reasons
from tests.fakes import (
    DRIVER_NOT_LOADED,
    GPU_IS_LOST,
    LIBRARY_NOT_FOUND,
    MISMATCH,
    NO_PERMISSION,
    NOT_SUPPORTED,
    StubNVMLError,
    make_stub_pynvml,
    stub_device,
)


def install(monkeypatch: pytest.MonkeyPatch, *devices, **kw):
    mod = make_stub_pynvml(list(devices), **kw)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    return mod


@pytest.mark.parametrize(("code", "words"), [
    (LIBRARY_NOT_FOUND, "library (libnvidia-ml.so) was not found"),
    (DRIVER_NOT_LOADED, "driver is not loaded"),
    (MISMATCH, "versions differ"),
    (NO_PERMISSION, "no permission"),
])
def test_init_failures_become_probe_unavailable_with_a_hint(monkeypatch, code, words) -> None:
    install(monkeypatch, init_error=code)
    with pytest.raises(ProbeUnavailable) as exc:
        PynvmlBackend()
    assert exc.value.message.startswith("NVML unavailable: ")
    assert words in exc.value.message
    assert "driver installed and loaded" in exc.value.hint


def test_missing_package_is_probe_unavailable(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(ProbeUnavailable, match="nvidia-ml-py is not installed"):
        PynvmlBackend()


def test_full_device_is_decoded(monkeypatch) -> None:
    mod = install(monkeypatch, stub_device())
    backend = PynvmlBackend()
    assert isinstance(backend, InventoryBackend) and isinstance(backend, LinkReader)
    assert backend.device_count() == 1
    d = backend.device_info(0)
    assert d.error is None and d.backend == "nvml"
    assert d.name == "NVIDIA H100 80GB HBM3" and d.catalog_id == "h100-sxm5-80gb"
    assert d.pci_bus_id == "00000000:18:00.0"
    assert d.memory_total_bytes == 80 * 2**30 and d.memory_used_bytes == 2**30  # the v2 API was used
    assert d.driver_version == "550.54.15" and d.cuda_driver_version == "12.4"
    assert d.compute_capability == "9.0" and d.architecture == "Hopper"
    assert (d.sm_clock_mhz, d.sm_clock_max_mhz, d.mem_clock_mhz) == (1755, 1980, 2619)
    assert d.power_draw_w == pytest.approx(312.345) and d.power_limit_w == 700 and d.default_power_limit_w == 700
    assert d.temperature_c == 54
    assert d.fan_pct is None and d.missing["fan_pct"] == "not supported by this device"
    assert (d.pcie_gen, d.pcie_gen_max, d.pcie_width, d.pcie_width_max) == (5, 5, 16, 16)
    assert d.ecc_enabled is True and d.ecc_uncorrected_errors == 0 and d.retired_pages == 0
    assert d.remapped_rows_uncorrectable == 0 and d.remapped_rows_failure is False
    assert d.mig_enabled is False
    assert d.throttle_reasons == ("sw_power_cap", "sw_thermal_slowdown")
    assert (d.utilization_gpu_pct, d.utilization_mem_pct) == (97, 41)
    assert d.processes is not None and d.processes[0].pid == 4242 and d.processes[0].name == "proc-4242"
    assert d.processes[0].used_memory_bytes == 3 * 2**30
    assert d.nvlinks is not None and len(d.nvlinks) == 18
    assert [n.index for n in d.nvlinks if not n.active] == [0, 9]
    s = backend.sample(0)
    assert s.sm_clock_mhz == 1755 and s.power_draw_w == pytest.approx(312.345) and s.temperature_c == 54
    backend.close()
    backend.close()
    assert mod.calls.count("nvmlInit") == 1 and mod.calls.count("nvmlShutdown") == 1


def test_not_supported_fields_are_none_with_reasons(monkeypatch) -> None:
    ns = StubNVMLError(NOT_SUPPORTED)
    install(monkeypatch, stub_device(
        nvmlDeviceGetName="NVIDIA GeForce RTX 4090", nvmlDeviceGetEccMode=ns, nvmlDeviceGetRemappedRows=ns,
        nvmlDeviceGetRetiredPages=ns, nvmlDeviceGetMigMode=ns, nvmlDeviceGetPowerManagementDefaultLimit=ns,
        nvmlDeviceGetComputeRunningProcesses=StubNVMLError(NO_PERMISSION), nvlinks=ns,
        nvmlDeviceGetMaxPcieLinkWidth=ns, nvmlDeviceGetCurrentClocksEventReasons=ns))
    d = PynvmlBackend().device_info(0)
    assert d.catalog_id == "rtx-4090"
    for key in ("ecc_enabled", "ecc_uncorrected_errors", "retired_pages", "remapped_rows_uncorrectable",
                "remapped_rows_pending", "mig_enabled", "default_power_limit_w", "nvlinks", "pcie_width_max",
                "throttle_reasons"):
        assert getattr(d, key) is None, key
        assert d.missing[key], key
    assert d.missing["nvlinks"] == "no NVLink on this device"
    assert d.processes is None and d.missing["processes"].startswith("no permission")
    assert d.temperature_c == 54  # the rest is still there


def test_memory_falls_back_to_v1_and_throttle_to_the_old_name(monkeypatch) -> None:
    mod = install(monkeypatch, stub_device(nvmlDeviceGetMemoryInfo_v2=StubNVMLError(NOT_SUPPORTED),
                                           nvmlDeviceGetCurrentClocksEventReasons=0x40))
    del mod.nvmlDeviceGetCurrentClocksEventReasons  # an older nvidia-ml-py
    d = PynvmlBackend().device_info(0)
    assert d.memory_used_bytes == 2**29  # v1 numbers
    assert d.throttle_reasons == ("hw_thermal_slowdown",)
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in mod.calls


def test_lost_gpu_is_a_device_error_not_a_crash(monkeypatch) -> None:
    install(monkeypatch, stub_device(), StubNVMLError(GPU_IS_LOST),
            stub_device(nvmlDeviceGetTemperature=StubNVMLError(GPU_IS_LOST)))
    backend = PynvmlBackend()
    assert backend.device_count() == 3
    assert backend.device_info(0).name
    with pytest.raises(DeviceError, match="GPU is lost"):
        backend.device_info(1)
    with pytest.raises(DeviceError, match="GPU is lost"):  # lost in the middle of a query
        backend.device_info(2)
    with pytest.raises(ProbeUnavailable, match="no NVIDIA device 7"):
        backend.device_info(7)
    # sampling during kernels and the live link read map the same failures (the sampler stops on DeviceError)
    with pytest.raises(DeviceError, match="GPU is lost"):
        backend.sample(1)
    with pytest.raises(DeviceError, match="GPU is lost"):
        backend.pcie_link(1)


def test_unknown_card_has_no_catalog_id_and_says_why(monkeypatch) -> None:
    install(monkeypatch, stub_device(nvmlDeviceGetName=b"NVIDIA Imaginary X9000"))
    d = PynvmlBackend().device_info(0)
    assert d.name == "NVIDIA Imaginary X9000" and d.catalog_id is None
    assert "not in the catalog" in d.missing["catalog_id"]


@pytest.mark.parametrize(("mask", "words"), [
    (0, ()),
    (0x1, ("gpu_idle",)),
    (0x4 | 0x40, ("sw_power_cap", "hw_thermal_slowdown")),
    (0x80 | 0x8, ("hw_slowdown", "hw_power_brake_slowdown")),
    (0x800, ("reason_0x800",)),
])
def test_decode_throttle_reasons(mask, words) -> None:
    assert decode_throttle_reasons(mask) == words


def test_default_backend_prefers_nvml(monkeypatch) -> None:
    from advisor.probing import default_backend

    install(monkeypatch, stub_device())
    backend = default_backend()
    try:
        assert backend.name == "nvml" and backend.notes == ()
    finally:
        backend.close()


def test_pcie_link_read(monkeypatch) -> None:
    install(monkeypatch, stub_device(nvmlDeviceGetCurrPcieLinkGeneration=4, nvmlDeviceGetCurrPcieLinkWidth=8))
    assert PynvmlBackend().pcie_link(0) == (4, 8)
