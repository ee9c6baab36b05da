"""probe() end to end through FakeNvml scenarios (kernels off, or tiny ones on the CPU)."""

from __future__ import annotations

import json
import sys

import pytest

from advisor.errors import AdvisorError
from advisor.probing import default_backend, parse_kernels, probe
from advisor.probing import kernels as K
from advisor.probing.cpu import CpuBackend
from advisor.probing.results import KernelResult, Measurement, ProbeResult, Sample
from advisor.probing.verdicts import device_verdicts
from tests import fakes
from tests.fakes import LIBRARY_NOT_FOUND, make_stub_pynvml


@pytest.fixture
def two_h100s() -> fakes.FakeNvml:
    return fakes.two_h100s()


@pytest.fixture
def one_gpu_lost() -> fakes.FakeNvml:
    return fakes.one_gpu_lost()


@pytest.fixture
def no_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML's library is missing, amdsmi is not installed, torch sees no GPU."""
    monkeypatch.setitem(sys.modules, "pynvml", make_stub_pynvml(init_error=LIBRARY_NOT_FOUND))
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def codes(result: ProbeResult) -> set[str]:
    return {v.code for v in result.verdicts}


def test_two_h100s_inventory_round_trips_through_json(two_h100s) -> None:
    r = probe(backend=two_h100s, kernels=[])
    assert [d.index for d in r.devices] == [0, 1]
    assert {d.catalog_id for d in r.devices} == {"h100-sxm5-80gb"}
    assert r.kernels == () and r.backend == "fake-nvml"
    assert codes(r) == {"healthy"}
    assert r.versions["driver"] == "550.54.15" and r.versions["cuda_driver"] == "12.4"
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["schema_version"] == 1 and len(doc["devices"]) == 2
    assert ProbeResult.from_dict(doc) == r
    assert two_h100s.closed == 0  # a backend passed in belongs to the caller


def test_one_device_only(two_h100s) -> None:
    r = probe(backend=two_h100s, device=1, kernels=[])
    assert [d.index for d in r.devices] == [1]
    r = probe(backend=two_h100s, device="0", kernels=[])
    assert [d.index for d in r.devices] == [0]


def test_one_gpu_lost_degrades_only_that_device(one_gpu_lost) -> None:
    r = probe(backend=one_gpu_lost, kernels=[])
    good, lost = r.devices
    assert good.error is None and good.name
    assert lost.index == 1 and lost.error == "GPU is lost" and lost.name is None
    failed = [v for v in r.verdicts if v.code == "device_failed"]
    assert failed and failed[0].device_index == 1 and failed[0].severity == "problem"


def test_lost_gpu_gets_no_kernels(one_gpu_lost, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = probe(backend=one_gpu_lost, kernels="launch")
    assert {k.device_index for k in r.kernels} == {0}
    assert all(k.skipped and "is_available() is False" in k.skipped for k in r.kernels)


def test_no_driver_falls_back_to_the_cpu_and_says_why(no_driver) -> None:
    backend = default_backend()
    assert isinstance(backend, CpuBackend)
    assert any(n.startswith("NVML unavailable: the NVML library") for n in backend.notes)
    assert any(n.startswith("amdsmi unavailable") for n in backend.notes)
    r = probe(kernels=[])
    assert r.backend == "cpu" and r.devices[0].kind == "cpu"
    assert r.devices[0].cpu_cores and r.devices[0].memory_total_bytes
    nvml = [v for v in r.verdicts if v.code == "backend_unavailable" and "NVML" in v.message]
    assert nvml and nvml[0].severity == "info"


def test_not_supported_fields_still_probe() -> None:
    r = probe(backend=fakes.not_supported(), kernels=[])
    d = r.devices[0]
    assert d.temperature_c is None and d.missing["temperature_c"]
    assert codes(r) == {"healthy"}
    assert ProbeResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_throttling_seen_in_inventory_and_in_samples() -> None:
    r = probe(backend=fakes.throttling(), kernels=[])
    thermal = [v for v in r.verdicts if v.code == "thermal_throttling"]
    assert thermal and "hw_thermal_slowdown" in thermal[0].evidence and "89 C" in thermal[0].evidence
    # Reasons seen only while a kernel ran (samples) count too.
    dev = fakes.h100(0)
    k = KernelResult(name="matmul", precision="bf16", value=700.0, unit="TFLOP/s", work=1.0, spec_peak=989.4,
                     fraction_of_peak=0.707, measurement=Measurement((1.0,) * 5, 1),
                     samples=(Sample(0.1, temperature_c=91, throttle_reasons=("sw_power_cap", "hw_slowdown")),))
    found = {v.code: v for v in device_verdicts(dev, [k])}
    assert "up to 91 C" in found["thermal_throttling"].evidence
    assert "sw_power_cap" in found["power_capped_under_load"].evidence
    assert found["power_capped_under_load"].severity == "info"


def _capped(clock_mhz: int) -> KernelResult:
    return KernelResult(name="matmul", precision="bf16", value=700.0, unit="TFLOP/s", work=1.0, spec_peak=989.4,
                        fraction_of_peak=0.707, measurement=Measurement((1.0,) * 5, 1),
                        samples=tuple(Sample(0.1 * i, sm_clock_mhz=clock_mhz, power_draw_w=699.0,
                                             throttle_reasons=("sw_power_cap",)) for i in range(3)))


def test_power_capping_under_load_is_info_unless_clocks_sag() -> None:
    dev = fakes.h100(0)  # max SM clock 1980 MHz
    normal = {v.code: v for v in device_verdicts(dev, [_capped(1755)])}
    assert normal["power_capped_under_load"].severity == "info" and "power_throttling" not in normal
    assert "1755 MHz of 1980" in normal["power_capped_under_load"].evidence
    sagging = {v.code: v for v in device_verdicts(dev, [_capped(1200)])}
    warn = sagging["power_throttling"]
    assert warn.severity == "warning" and "61% of 1980 MHz" in warn.message
    at_rest = {v.code: v for v in device_verdicts(fakes.h100(0, throttle_reasons=("sw_power_cap",)))}
    assert at_rest["power_capped_at_rest"].severity == "warning"


def test_the_real_h200_and_h100_runs_get_no_power_warning() -> None:
    from pathlib import Path

    for card in ("h200", "h100"):
        path = Path(__file__).parent / "data" / "gpu-runs" / f"{card}-2026-11-28" / "probe-full.json"
        run = ProbeResult.from_dict(json.loads(path.read_text()))
        found = {v.code: v for v in device_verdicts(run.devices[0], run.kernels)}
        assert "power_throttling" not in found and found["power_capped_under_load"].severity == "info"


def test_pcie_downtrained() -> None:
    r = probe(backend=fakes.pcie_downtrained(), kernels=[])
    found = {v.code: v for v in r.verdicts}
    assert found["pcie_gen_low"].evidence == "gen 3 of max 5"
    assert found["pcie_gen_low"].severity == "info"  # idle links train down: not a fault on its own
    assert found["pcie_width_low"].evidence == "x8 of max x16" and found["pcie_width_low"].severity == "problem"
    assert "healthy" not in found


def test_power_cap_ecc_and_other_processes() -> None:
    r = probe(backend=fakes.busy_and_capped(), kernels=[])
    found = {v.code: v for v in r.verdicts}
    assert "500 W enforced, default 700 W" in found["power_limit_low"].evidence
    assert found["ecc_errors"].evidence.startswith("3 uncorrected")
    assert found["retired_pages"].evidence == "2 retired pages"
    assert "pid 999999" in found["other_processes"].evidence


def test_kernel_verdicts_name_the_evidence() -> None:
    dev = fakes.h100(0)
    ks = [KernelResult(name="matmul", precision="bf16", shape="4096x4096x4096", value=300.0, unit="TFLOP/s",
                       work=1.0, spec_peak=989.4, fraction_of_peak=300 / 989.4, measurement=Measurement((1.0,) * 5, 1)),
          KernelResult(name="memory_copy", shape="1024 MiB", value=2000.0, unit="GB/s", work=1.0, spec_peak=3350,
                       fraction_of_peak=2000 / 3350, measurement=Measurement((1.0, 2.0, 3.0, 4.0, 5.0), 1))]
    found = {v.code: v for v in device_verdicts(dev, ks)}
    assert "30% of 989.4" in found["matmul_bf16_low"].evidence
    assert "60% of 3350 GB/s" in found["bandwidth_low"].evidence
    assert "memory_copy" in found["noisy_measurements"].evidence


def test_efficiencies_pick_the_best_size_per_kernel() -> None:
    m = Measurement((1.0,) * 5, 1)

    def k(name, prec, frac, value=1.0, **kw):
        return KernelResult(name=name, precision=prec, value=value, unit="x", work=1.0, spec_peak=1.0,
                            fraction_of_peak=frac, measurement=m, **kw)

    r = ProbeResult(timestamp="t", host="h", versions={}, devices=(fakes.h100(0), fakes.h100(1)), kernels=(
        k("matmul", "bf16", 0.61), k("matmul", "bf16", 0.78), k("matmul", "fp32", 0.9),
        KernelResult(name="matmul", precision="fp8", skipped="no"),
        k("conv2d", "fp16", 0.5), k("memory_copy", None, 0.88), k("h2d_pinned", None, 0.81),
        k("d2h_pinned", None, 0.79), k("launch", None, None, value=5.0), k("launch", None, None, value=4.0),
        k("matmul", "bf16", 0.99, device_index=1)))
    eff = r.efficiencies(0)
    assert eff == {"matmul_bf16": 0.78, "matmul_fp32": 0.9, "conv_fp16": 0.5, "memory_bandwidth": 0.88,
                   "h2d_pinned": 0.81, "d2h_pinned": 0.79, "launch_overhead_s": pytest.approx(4e-6)}
    assert r.efficiencies(1) == {"matmul_bf16": 0.99}
    assert r.to_dict()["efficiencies"]["1"] == {"matmul_bf16": 0.99}
    frame = r.to_frame()
    assert len(frame) == 11 and set(frame["kernel"]) >= {"matmul", "launch"}


def test_cpu_probe_runs_real_kernels() -> None:
    calls = []
    r = probe(backend=CpuBackend(), kernels="launch,transfer", progress=lambda s, f: calls.append((s, f)))
    launch = next(k for k in r.kernels if k.name == "launch")
    assert launch.ok and launch.unit == "us" and 0 < launch.value < 10_000
    assert r.efficiencies(0)["launch_overhead_s"] == pytest.approx(launch.value * 1e-6)
    assert all(k.skipped == "no GPU: host<->device transfers need one" for k in r.kernels
               if k.name not in ("launch", "host_dispatch", "host_backward"))
    dispatch = next(k for k in r.kernels if k.name == "host_dispatch")
    backward = next(k for k in r.kernels if k.name == "host_backward")
    # Host microseconds per aten op of validate's gpt2-tiny training forward / backward, counted as the tracer
    # counts them (not bounded: a loaded 2-core CI box stalls tiny multi-threaded ops by whole scheduler quanta).
    ops = int(dispatch.shape.split(", ")[1].split()[0])
    assert dispatch.shape.startswith(K.HOST_MODEL) and 50 <= ops <= 200  # gpt2-tiny's forward: ~80 aten ops
    assert dispatch.ok and dispatch.unit == "us" and dispatch.work is None
    assert dispatch.value == pytest.approx(dispatch.measurement.median_s / ops * 1e6)
    assert backward.ok and backward.value > 0 and "backward" in backward.shape
    eff = r.efficiencies(0)
    assert eff["host_dispatch_s_per_op"] == pytest.approx(dispatch.value * 1e-6)
    assert eff["host_backward_s_per_op"] == pytest.approx(backward.value * 1e-6)
    assert calls[-1] == ("done", 1.0) and all(0 <= f <= 1 for _, f in calls)


def test_host_kernels_fail_clearly_when_no_op_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from advisor.probing import launch_kernels

    class Blind(contextlib.nullcontext):  # a dispatch counter that sees nothing
        n = 0

    monkeypatch.setattr(launch_kernels, "dispatch_counter", Blind)
    r = probe(backend=CpuBackend(), kernels="launch")
    for name in ("host_dispatch", "host_backward"):
        k = next(k for k in r.kernels if k.name == name)
        assert not k.ok and "no aten ops counted" in k.error
    assert "host_dispatch_s_per_op" not in r.efficiencies(0)


def test_deadline_skips_what_is_left() -> None:
    r = probe(backend=CpuBackend(), kernels="launch", max_seconds=1e-9)
    assert r.kernels[0].skipped == "time budget (--max-seconds) used up"


def test_the_budget_is_read_on_the_injected_clock_without_sleeping() -> None:
    reads = iter((0.0, *(100.0 + i for i in range(10_000))))  # the start, then 100 s later: past a 60 s budget

    r = probe(backend=CpuBackend(), kernels="launch", max_seconds=60, clock=lambda: next(reads))
    assert [k.skipped for k in r.kernels] == ["time budget (--max-seconds) used up"] * 3
    assert r.elapsed_s >= 100.0  # elapsed on the same clock


def test_run_plan_skips_the_kernels_planned_past_the_deadline() -> None:
    now = [0.0]

    def kernel(env: K.KernelEnv) -> KernelResult:
        now[0] += 10.0  # each kernel takes 10 s on the injected clock
        return KernelResult(name="launch", value=1.0, unit="us")

    planned = [K.PlannedKernel("launch", f"kernel {i}", kernel) for i in range(3)]
    results = K.run_plan(K.KernelEnv(clock=lambda: now[0], deadline=15.0), planned)
    assert [r.skipped for r in results] == [None, None, "time budget (--max-seconds) used up"]
    assert results[2].shape == "kernel 2" and now[0] == 20.0


@pytest.mark.parametrize(("kw", "match"), [
    ({"device": 99}, "no device 99"), ({"device": "gpu0"}, "bad device"), ({"kernels": "matmul,foo"}, "unknown kernel"),
    ({"max_memory_fraction": 0}, "max_memory_fraction"), ({"max_seconds": -1}, "max_seconds"),
])
def test_bad_input(two_h100s, kw, match) -> None:
    with pytest.raises(AdvisorError, match=match):
        probe(backend=two_h100s, **{"kernels": [], **kw})


def test_parse_kernels() -> None:
    assert parse_kernels(None) == ("matmul", "conv", "bandwidth", "transfer", "launch")
    assert parse_kernels(" Matmul, launch,matmul ") == ("matmul", "launch")
    assert parse_kernels([]) == ()


def test_nvml_devices_are_matched_to_torch_by_uuid() -> None:
    from advisor.device import torch_index_for
    from tests.fake_cuda import FakeCudaRuntime

    runtime = FakeCudaRuntime(uuids=("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000000"))
    # NVML's device 0 is torch's device 1 (CUDA orders fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID).
    assert torch_index_for(0, fakes.h100(0).uuid, runtime) == (1, None)
    assert torch_index_for(1, fakes.h100(1).uuid, runtime) == (0, None)
    index, why = torch_index_for(5, fakes.h100(5).uuid, runtime)
    assert index is None and "CUDA_VISIBLE_DEVICES" in why
    blind = FakeCudaRuntime(uuids=("", ""))  # a torch that reports no UUIDs
    assert torch_index_for(1, fakes.h100(1).uuid, blind) == (1, "matched to torch by index (UUID not comparable)")


def test_pcie_generation_judged_under_load() -> None:
    dev = fakes.h100(0, pcie_gen=1)  # idle reading

    def transfer(gen: int) -> KernelResult:
        return KernelResult(name="h2d_pinned", value=50.0, unit="GB/s", work=1.0, spec_peak=63.0,
                            fraction_of_peak=0.79, measurement=Measurement((1.0,) * 5, 1),
                            notes=(f"against PCIe gen{gen} x16 read during the transfer",))

    assert "pcie_gen_low" not in {v.code for v in device_verdicts(dev, [transfer(5)])}
    low = {v.code: v for v in device_verdicts(dev, [transfer(3)])}["pcie_gen_low"]
    assert low.severity == "warning" and low.evidence == "gen 3 during transfers, max 5"


def test_every_inventory_backend_class_has_the_protocols_methods() -> None:
    import inspect

    from advisor.probing.amd import AmdsmiBackend
    from advisor.probing.backend import InventoryBackend, LinkReader
    from advisor.probing.cpu import TorchCudaBackend
    from advisor.probing.nvml import PynvmlBackend

    methods = [n for n, v in vars(InventoryBackend).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert sorted(methods) == ["close", "device_count", "device_info", "sample"]
    for cls in (PynvmlBackend, AmdsmiBackend, TorchCudaBackend, CpuBackend):
        assert isinstance(cls.name, str) and all(callable(getattr(cls, m, None)) for m in methods), cls
    assert isinstance(CpuBackend(), InventoryBackend) and not isinstance(CpuBackend(), LinkReader)
    assert callable(PynvmlBackend.pcie_link)  # NVML re-reads the link during transfers


def test_the_cpu_backend_reports_the_one_host_ram_reading() -> None:
    from advisor.probing.cpu import host_memory_bytes

    total, available = host_memory_bytes()
    info = CpuBackend().device_info(0)
    assert info.memory_total_bytes == total and total is not None and total > 0
    assert available is None or 0 < available <= total
