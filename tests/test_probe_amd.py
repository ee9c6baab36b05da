"""AmdsmiBackend against a stub ``amdsmi`` module (field names from the amdsmi Python API docs)."""

from __future__ import annotations

import enum
import sys
import types

import pytest

from advisor.errors import ProbeUnavailable
from advisor.probing.amd import AmdsmiBackend


class AmdSmiException(Exception):  # amdsmi's base error (amdsmi_exception.py, exported by `amdsmi`)
    pass


class AmdSmiLibraryException(AmdSmiException):
    pass


def stub(handles=("h0",), init_error: bool = False, asic_error: str | None = None) -> types.ModuleType:
    mod = types.ModuleType("amdsmi")
    mod.shut_down = 0
    mod.AmdSmiException, mod.AmdSmiLibraryException = AmdSmiException, AmdSmiLibraryException

    def init() -> None:
        if init_error:
            raise AmdSmiLibraryException("Error code: 34 | AMDSMI_STATUS_DRIVER_NOT_LOADED")

    def shut_down() -> None:
        mod.shut_down += 1

    def asic(h):
        if asic_error:
            raise AmdSmiLibraryException(asic_error)
        return {"market_name": "AMD Instinct MI300X", "asic_serial": "0x1234"}

    mod.amdsmi_init = init
    mod.amdsmi_shut_down = shut_down
    mod.amdsmi_get_processor_handles = lambda: list(handles)
    mod.amdsmi_get_gpu_asic_info = asic
    mod.amdsmi_get_gpu_vram_usage = lambda h: {"vram_total": 196_592, "vram_used": 283}
    mod.amdsmi_get_power_info = lambda h: {"current_socket_power": 140, "average_socket_power": "N/A",
                                           "power_limit": 750}
    mod.AmdSmiTemperatureType = enum.Enum("T", "EDGE HOTSPOT")
    mod.AmdSmiTemperatureMetric = enum.Enum("M", "CURRENT")
    mod.amdsmi_get_temp_metric = lambda h, t, m: 41
    mod.amdsmi_get_pcie_info = lambda h: {"pcie_metric": {"pcie_speed": 16000, "pcie_width": 16},
                                          "pcie_static": {"max_pcie_speed": 32000, "max_pcie_width": 16}}
    mod.amdsmi_get_gpu_driver_info = lambda h: {"driver_name": "amdgpu", "driver_version": "6.7.0"}
    mod.amdsmi_get_gpu_device_bdf = lambda h: "0000:0c:00.0"

    def uuid(h):
        raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")

    mod.amdsmi_get_gpu_device_uuid = uuid
    return mod


def test_mi300x_in_the_common_schema(monkeypatch) -> None:
    mod = stub()
    monkeypatch.setitem(sys.modules, "amdsmi", mod)
    backend = AmdsmiBackend()
    assert backend.device_count() == 1
    d = backend.device_info(0)
    assert d.backend == "amdsmi" and d.name == "AMD Instinct MI300X" and d.catalog_id == "mi300x"
    assert d.memory_total_bytes == 196_592 * 2**20 and d.memory_used_bytes == 283 * 2**20
    assert d.power_draw_w == 140 and d.power_limit_w == 750 and d.temperature_c == 41
    assert (d.pcie_gen, d.pcie_gen_max, d.pcie_width, d.pcie_width_max) == (4, 5, 16, 16)
    assert d.driver_version == "6.7.0" and d.pci_bus_id == "0000:0c:00.0"
    assert d.uuid is None and "NOT_SUPPORTED" in d.missing["uuid"]
    s = backend.sample(0)
    assert s.power_draw_w == 140 and s.temperature_c == 41
    with pytest.raises(ProbeUnavailable, match="no AMD device 3"):
        backend.device_info(3)
    backend.close()
    backend.close()
    assert mod.shut_down == 1


def test_amdsmi_init_failure_and_absence(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", stub(init_error=True))
    with pytest.raises(ProbeUnavailable, match=r"amdsmi unavailable: .*DRIVER_NOT_LOADED") as exc:
        AmdsmiBackend()
    assert "ROCm" in exc.value.hint
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    with pytest.raises(ProbeUnavailable, match="amdsmi unavailable: not installed"):
        AmdsmiBackend()


def test_default_backend_uses_amdsmi_when_nvml_is_absent(monkeypatch) -> None:
    from advisor.probing import default_backend, probe
    from tests.fakes import DRIVER_NOT_LOADED, make_stub_pynvml

    monkeypatch.setitem(sys.modules, "pynvml", make_stub_pynvml(init_error=DRIVER_NOT_LOADED))
    monkeypatch.setitem(sys.modules, "amdsmi", stub())
    backend = default_backend()
    assert backend.name == "amdsmi"
    assert backend.notes == ("NVML unavailable: the NVIDIA driver is not loaded "
                             "(is the NVIDIA driver installed and loaded? `nvidia-smi` should list the GPUs)",)
    r = probe(backend=backend, kernels=[])
    assert {v.code for v in r.verdicts} >= {"backend_unavailable", "pcie_gen_low"}
