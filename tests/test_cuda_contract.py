"""The CUDA branches of the probe and validate, driven through a fake CUDA device on the CPU.

Run alone with ``pytest -m cuda_contract``.  The fake (``tests/fake_cuda.py``) says "cuda", runs small
shapes on the CPU and refuses what real CUDA refuses (a CPU generator for tensors that land on the GPU,
mixed-device ops), so the two crashes of the 2026-11-28 first run (``cuda_env() got multiple values for
argument 'device_index'`` in ``probe()``; ``Expected a 'cuda' device type for generator but found 'cpu'`` in
``build_model``) fail here.  The tests marked ``gpu`` at the end run the same contract on a real card
(``--run-gpu``).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import torch

from advisor import validate as v
from advisor.catalog import get_gpu
from advisor.device import CpuDevice, CudaDevice, Device, as_device, nvml_index_for, torch_index_for
from advisor.probing import kernels as K
from advisor.probing import probe
from tests import fakes
from tests.fake_cuda import FakeCudaRuntime, ScriptedClock

contract = pytest.mark.cuda_contract
# torch itself says so when a CUDA autocast or GradScaler is asked for on a machine without CUDA (the fake's)
pytestmark = [pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning"),
              pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled:UserWarning")]
H100_UUID = fakes.h100(0).uuid.removeprefix("GPU-")  # torch reports UUIDs without NVML's prefix


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCudaRuntime]:
    """A fake H100 as torch's CUDA device 0 (the UUID of ``fakes.h100(0)``), installed as the CUDA runtime."""
    runtime = FakeCudaRuntime(uuids=(H100_UUID,))
    monkeypatch.setattr("advisor.device.cuda_runtime", lambda: runtime)
    with runtime.mode:
        yield runtime


def _env(runtime: FakeCudaRuntime, **kw: Any) -> K.KernelEnv:
    kw.setdefault("min_region_s", 2e-4)
    kw.setdefault("warmup_min_s", 0.0)
    return K.cuda_env(CudaDevice(0, nvml_index=0, runtime=runtime), small_shapes=True, **kw)


# ---------------------------------------------------------------- the device seam


@contract
def test_cuda_device_goes_through_its_runtime(fake_cuda: FakeCudaRuntime) -> None:
    dev = CudaDevice(0, nvml_index=3, runtime=fake_cuda)
    assert isinstance(dev, Device) and dev.kind == "cuda" and dev.torch_device == "cuda:0" and dev.nvml_index == 3
    assert dev.capability() == (9, 0) and dev.mem_get_info() == (79 << 30, 80 << 30) and dev.name().startswith("NVIDIA")
    fake_cuda.memory.update(allocated=1000, peak_allocated=2000, peak_reserved=4096)
    fake_cuda.workspace_bytes = 512
    assert dev.allocated_bytes() == 1512 and dev.peak_allocated_bytes() == 2000 and dev.peak_reserved_bytes() == 4096
    dev.reset_peak()
    dev.empty_cache()
    assert dev.allocated_bytes() == 1512  # a plain empty_cache keeps cuBLAS workspaces
    dev.empty_cache(workspaces=True)
    assert dev.allocated_bytes() == 1000
    assert fake_cuda.calls[-3:] == ["synchronize", "clear_workspaces", "empty_cache"]
    t = torch.randn(4, generator=dev.generator(1), device=dev.torch_device)
    assert fake_cuda.mode.is_cuda(t)
    assert repr(dev) == "CudaDevice(0, nvml_index=3)"


@contract
def test_fake_refuses_what_real_cuda_refuses(fake_cuda: FakeCudaRuntime) -> None:
    # The validate crash of 2026-11-28, reproduced: a CPU generator for tensors that land on the GPU.
    with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator but found 'cpu'"), \
            torch.device("cuda:0"):
        torch.randn(3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="Expected a 'cpu' device type for generator but found 'cuda'"):
        torch.randn(3, generator=fake_cuda.generator("cuda:0", 0), device="cpu")
    lin = torch.nn.Linear(4, 4).to("cuda:0")
    with pytest.raises(RuntimeError, match="same device"):
        lin(torch.randn(2, 4))
    moved = torch.randn(2, 4).to("cuda:0")
    assert fake_cuda.mode.is_cuda(lin(moved)) and not fake_cuda.mode.is_cuda(lin(moved).cpu())


@contract
def test_region_timer_reads_cuda_events(fake_cuda: FakeCudaRuntime) -> None:
    clock = ScriptedClock()
    fake_cuda.event_clock = clock
    timer = CudaDevice(0, runtime=fake_cuda).region_timer()
    assert timer(lambda: clock.advance(1e-3), 5) == pytest.approx(5e-3)
    assert "device(0)" in fake_cuda.calls and "event.synchronize" in fake_cuda.calls


@contract
def test_region_sizing_meets_its_minimum_when_calls_run_faster_back_to_back(fake_cuda: FakeCudaRuntime) -> None:
    """The H200 case: one call alone takes ~37 us (launch latency), back to back 24 us; 136 x 24 us = 3.3 ms < 5 ms."""
    clock = ScriptedClock()
    fake_cuda.event_clock = clock
    calls = {"n": 0, "in_region": 0}
    timer = CudaDevice(0, runtime=fake_cuda).region_timer()

    def counting_timer(fn: Any, n: int) -> float:
        calls["in_region"] = n
        return timer(fn, n)

    def work() -> None:
        clock.advance(37e-6 if calls["in_region"] == 1 else 24e-6)

    from advisor.probing.timing import measure

    m = measure(work, region_timer=counting_timer, min_region_s=5e-3, repetitions=5)
    assert m.median_s == pytest.approx(24e-6)
    assert m.iterations * m.median_s >= 5e-3
    assert m.iterations == 219  # ceil(1.05 * 5 ms / 24 us), re-sized from the measured region


@contract
def test_index_mapping_both_ways(fake_cuda: FakeCudaRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    two = fakes.FakeNvml([fakes.h100(0), fakes.h100(1)])
    # CUDA_VISIBLE_DEVICES=1: torch's device 0 is NVML's device 1.
    runtime = FakeCudaRuntime(uuids=(fakes.h100(1).uuid.removeprefix("GPU-"),))
    assert nvml_index_for(0, runtime, two) == 1
    assert torch_index_for(1, fakes.h100(1).uuid, runtime) == (0, None)
    assert torch_index_for(0, fakes.h100(0).uuid, runtime)[0] is None  # torch cannot see NVML's device 0
    blind = FakeCudaRuntime(uuids=("",))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvml_index_for(0, blind, two) == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert nvml_index_for(0, blind, two) is None  # renumbered and no UUID: no guess
    assert nvml_index_for(0, runtime, fakes.FakeNvml([fakes.h100(0), fakes.DeviceError("GPU is lost")])) is None


# ---------------------------------------------------------------- probe kernels


@contract
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16", "fp8"])
def test_matmul_on_cuda_counts_real_flops(fake_cuda: FakeCudaRuntime, precision: str) -> None:
    r = K.run_matmul(_env(fake_cuda), precision, 64, 48, 32)
    assert r.ok, r.error or r.skipped
    assert r.device == "cuda:0" and r.device_index == 0 and r.work == 2 * 64 * 48 * 32
    assert r.value == pytest.approx(r.work / r.measurement.median_s / 1e12)
    assert "empty_cache" in fake_cuda.calls  # freed after the kernel


@contract
def test_int8_below_half_its_spec_is_not_measured(fake_cuda: FakeCudaRuntime) -> None:
    calls: list[tuple[bool, bool]] = []
    real = torch._int_mm

    def spy(a: Any, b: Any) -> Any:
        calls.append((a.is_contiguous(), b.t().is_contiguous()))
        return real(a, b)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "_int_mm", spy)
        no_spec = K.run_matmul(_env(fake_cuda), "int8", 64, 64, 64)
        h100 = K.run_matmul(_env(fake_cuda, spec=get_gpu("h100-sxm5-80gb")), "int8", 64, 64, 64)
    assert calls and all(calls)  # A row-major, B column-major: the layout cuBLASLt's int8 path takes
    assert no_spec.ok and no_spec.unit == "TOP/s"
    assert h100.value is None and h100.fraction_of_peak is None
    assert h100.skipped.startswith("int8 not measured") and "tensor cores" in h100.skipped


@contract
@pytest.mark.parametrize(("precision", "flag"), [("fp32", "ieee"), ("tf32", "tf32")])
def test_conv_runs_as_what_it_is_labelled(fake_cuda: FakeCudaRuntime, precision: str, flag: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = torch.nn.functional.conv2d

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(torch.backends.cudnn.conv.fp32_precision)
        return real(*a, **kw)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    before = torch.backends.cudnn.conv.fp32_precision
    r = K.run_conv(_env(fake_cuda), precision, (8, 10, 10, 4, 3, 3, 1, 1), 2, channels_last=False)
    assert r.ok and set(seen) == {flag}
    assert r.notes[0] == ("ran as IEEE fp32 (TF32 off)" if precision == "fp32" else "ran as TF32 tensor cores "
                                                                                     "(fp32 inputs)")
    assert torch.backends.cudnn.conv.fp32_precision == before  # restored


@contract
def test_a_result_above_the_spec_peak_is_an_error_and_a_verdict(fake_cuda: FakeCudaRuntime) -> None:
    from advisor.catalog import spec_from_mapping
    from advisor.probing.verdicts import device_verdicts

    base = get_gpu("h100-sxm5-80gb")
    slow = spec_from_mapping({"id": "slow", "name": "slow", "vendor": "nvidia", "segment": "edge",
                              "architecture": "test", "release_year": 2020, "memory_gb": 1, "memory_type": "x",
                              "memory_bandwidth_gbs": 1, "fp32_tflops": 1e-6, "tdp_w": 1, "source": "test"})
    r = K.run_matmul(_env(fake_cuda, spec=slow), "fp32", 64, 64, 64)
    assert r.value is None and r.error.startswith(K.ABOVE_PEAK) and r.measurement is not None
    codes = {x.code: x for x in device_verdicts(fakes.h100(0), [r])}
    assert codes["above_spec_peak"].severity == "problem"
    assert base.fp32_tflops > 1  # the real card's spec is untouched


@contract
def test_bandwidth_transfer_launch_and_dispatch_on_cuda(fake_cuda: FakeCudaRuntime) -> None:
    env = _env(fake_cuda, spec=get_gpu("h100-sxm5-80gb"), pcie_gbs=63.0, read_link=lambda: (5, 16))
    copy = K.run_bandwidth(env, "copy", 4 * K.MIB)
    assert copy.ok and copy.work == 8 * K.MIB and copy.spec_peak == 3350
    h2d = K.run_transfer(env, "h2d", True, K.MIB)
    assert h2d.ok and h2d.work == K.MIB and fake_cuda.mode.pinned_requests >= 1
    assert "gen5 x16" in h2d.notes[-1]
    launch = K.run_launch(env)
    dispatch, backward = K.run_host_dispatch(env), K.run_host_backward(env)
    assert launch.ok and dispatch.ok and dispatch.shape.startswith(K.HOST_MODEL) and backward.ok
    assert dispatch.device == "cuda:0" and backward.value > 0  # validate's gpt2-tiny trained on the device
    # its backward's two embedding backwards (tokens, positions) cost the host more than a generic op: the time is
    # per op-equivalent, those counted as the estimate adds them (else a probe-calibrated estimate counts them twice)
    from advisor.estimator.host import LIBRARY_CALL_HOST_OPS

    ops = int(backward.shape.split(", ")[1].split()[0])
    extra = 2 * LIBRARY_CALL_HOST_OPS["embedding", "backward"]
    assert backward.value == pytest.approx(backward.measurement.median_s / (ops + extra) * 1e6)
    assert "library calls" in backward.notes[0] and "library calls" not in dispatch.notes[0]
    assert K.warm_device(replace(env, clock=ScriptedClock(1.0)), 0.0) == 0.0


@contract
def test_deadline_and_warm_up_read_the_injected_clock(fake_cuda: FakeCudaRuntime) -> None:
    clock = ScriptedClock(10.0)
    env = _env(fake_cuda, clock=clock, deadline=5.0)
    results = K.run_plan(env, K.plan(env, ["launch"]))
    assert [r.skipped for r in results] == ["time budget (--max-seconds) used up"] * 3
    assert K.bandwidth_buffer_bytes(env) == 16 * K.MIB


def _fast_clock() -> float:
    """Real time x 100: regions and warm-ups reach their minimum 100x sooner (values are 100x low; unchecked)."""
    return time.perf_counter() * 100


@contract
def test_probe_end_to_end_on_a_cuda_device(fake_cuda: FakeCudaRuntime) -> None:
    nvml = fakes.FakeNvml([fakes.h100(0)])
    fake_cuda.event_clock = _fast_clock
    r = probe(backend=nvml, device=0, quick=True, clock=_fast_clock)
    assert r.devices[0].catalog_id == "h100-sxm5-80gb"
    assert {k.device for k in r.kernels} == {"cuda:0"} and {k.device_index for k in r.kernels} == {0}
    errors = [(k.name, k.precision, k.error) for k in r.kernels if k.error]
    assert not errors
    ok = {(k.name, k.precision) for k in r.kernels if k.ok}
    assert {("matmul", "bf16"), ("conv2d", "bf16"), ("memory_copy", None), ("h2d_pinned", None),
            ("launch", None), ("host_dispatch", None), ("host_backward", None)} <= ok
    assert nvml.sample_calls > 0  # sampled during kernels
    assert {"host_dispatch_s_per_op", "host_backward_s_per_op"} <= set(r.efficiencies(0))
    assert json.loads(json.dumps(r.to_dict()))["kernels"]


@contract
def test_probe_reports_a_card_torch_cannot_see(fake_cuda: FakeCudaRuntime) -> None:
    runtime = FakeCudaRuntime(uuids=(fakes.h100(1).uuid.removeprefix("GPU-"),), mode=fake_cuda.mode)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("advisor.device.cuda_runtime", lambda: runtime)
        r = probe(backend=fakes.two_h100s(), kernels="launch", clock=_fast_clock)
    first = [k for k in r.kernels if k.device_index == 0]
    second = [k for k in r.kernels if k.device_index == 1]
    assert first and all("is not one of them" in (k.skipped or "") for k in first)
    assert second and all(k.ok and k.device == "cuda:0" for k in second)
    unavailable = replace(runtime, available=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("advisor.device.cuda_runtime", lambda: unavailable)
        r = probe(backend=fakes.FakeNvml([fakes.h100(0)]), kernels="launch")
    assert all("is_available() is False" in k.skipped for k in r.kernels)


# ---------------------------------------------------------------- validate


@contract
def test_local_device_maps_torch_to_the_right_nvml_card(fake_cuda: FakeCudaRuntime,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA_VISIBLE_DEVICES=1: NVML's device 0 is not torch's device 0.
    nvml = fakes.FakeNvml([fakes.h100(0, name="NVIDIA A100-SXM4-80GB", catalog_id="a100-sxm4-80gb"), fakes.h100(1)])
    monkeypatch.setattr(importlib.import_module("advisor.probing"), "default_backend", lambda: nvml)
    runtime = FakeCudaRuntime(uuids=(fakes.h100(1).uuid.removeprefix("GPU-"),), mode=fake_cuda.mode)
    monkeypatch.setattr("advisor.device.cuda_runtime", lambda: runtime)
    device = v.local_device()
    assert device.kind == "cuda" and device.catalog_id == "h100-sxm5-80gb" and device.device.nvml_index == 1
    assert device.torch_device == "cuda:0" and "driver 550.54.15" in device.driver and nvml.closed == 1


@contract
def test_time_steps_times_each_step_with_events(fake_cuda: FakeCudaRuntime) -> None:
    clock = ScriptedClock()
    fake_cuda.event_clock = clock
    costs = iter([1.0, 1.0, 0.003, 0.004, 0.005])
    times = v.time_steps(lambda: clock.advance(next(costs)), device=CudaDevice(0, runtime=fake_cuda), warmup=2,
                         iters=3)
    assert times == pytest.approx([0.003, 0.004, 0.005])
    assert v.time_steps(lambda: None, device="cpu", warmup=0, iters=2, clock=ScriptedClock()) == [0.0, 0.0]


@contract
@pytest.mark.parametrize("model", ["mnist-cnn", "gpt2-tiny"])
def test_build_model_puts_the_batch_on_the_device(fake_cuda: FakeCudaRuntime, model: str) -> None:
    case = v.Case(model, "train", 2, "bf16", "adamw", seq_len=16)
    built = v.build_model(case, CudaDevice(0, runtime=fake_cuda))
    inputs = built.make_inputs()
    assert all(fake_cuda.mode.is_cuda(t) for t in inputs)
    # The same batch as on the CPU: drawn from the CPU generator, then moved.
    cpu = v.build_model(case, "cpu").make_inputs()
    assert all(torch.equal(a.cpu(), b) for a, b in zip(inputs, cpu, strict=True))


@contract
def test_run_validation_measures_through_the_device(fake_cuda: FakeCudaRuntime) -> None:
    fake_cuda.memory.update(peak_allocated=700 << 20, peak_reserved=768 << 20)
    dev = CudaDevice(0, nvml_index=0, runtime=fake_cuda)
    ctx = v.DeviceContext("cuda", "fake H100", "h100-sxm5-80gb", memory_method="fake", device=dev)
    cases = [v.Case("gpt2-tiny", "train", 1, "amp-bf16", "adamw", seq_len=8),
             v.Case("gpt2-tiny", "infer", 1, "bf16", seq_len=4, gen_len=2),
             v.Case("mnist-cnn", "train", 2, "amp-fp16", "sgd")]
    used = []
    report = v.run_validation(cases, ctx, warmup=1, iters=2, nvml_used=lambda: used.append(1) or 2e9)
    for row in report.rows:
        assert row.error_message is None, row.error_message
        m = row.measurement
        assert m.peak_bytes == m.reserved_bytes == 768 << 20 and m.allocated_bytes == 700 << 20
        assert m.nvml_used_bytes == 2e9 and m.step_s > 0 and len(m.step_times_s) == 2
    assert fake_cuda.calls.count("reset_peak") == 3 and len(used) == 3
    assert ctx.to_dict()["kind"] == "cuda" and "device" not in ctx.to_dict()


@contract
def test_validate_cli_on_cuda(fake_cuda: FakeCudaRuntime, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.cli import main

    nvml = fakes.FakeNvml([fakes.h100(0)])
    monkeypatch.setattr(importlib.import_module("advisor.probing"), "default_backend", lambda: nvml)
    code = main(["validate", "--device", "cuda", "--models", "mnist-cnn", "--warmup", "0", "--iters", "1",
                 "--no-save", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["device"]["kind"] == "cuda" and doc["device"]["catalog_id"] == "h100-sxm5-80gb"
    measured = [r["memory"] for r in doc["rows"] if r["memory"]["measured_bytes"]]
    assert measured and all(m["nvml_used_bytes"] == fakes.h100(0).memory_used_bytes for m in measured)
    fake_cuda.available = False
    assert main(["validate", "--device", "cuda", "--models", "mnist-cnn", "--no-save"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err


# ---------------------------------------------------------------- the same contract on a real GPU


@pytest.mark.gpu
def test_real_device_matches_the_protocol() -> None:
    dev = as_device("cuda")
    assert isinstance(dev, Device) and isinstance(CpuDevice(), Device)
    assert dev.capability() is not None and dev.mem_get_info()[1] > 0
    t = torch.randn(8, generator=dev.generator(0), device=dev.torch_device)
    assert t.is_cuda


@contract
def test_local_device_without_nvml_names_the_card_from_torch(fake_cuda: FakeCudaRuntime,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.probing.cpu import CpuBackend

    probe_pkg = importlib.import_module("advisor.probing")
    monkeypatch.setattr(probe_pkg, "default_backend", CpuBackend)  # no NVML: the CPU inventory is all there is
    device = v.local_device()
    assert device.kind == "cuda" and device.name == "NVIDIA H100 80GB HBM3" and device.device.nvml_index is None
    assert device.catalog_id == "h100-sxm5-80gb" and device.driver.startswith("CUDA")
    # An inventory that fails on the matched card leaves the NVML figure out, not the run.
    monkeypatch.setattr(probe_pkg, "default_backend",
                        lambda: fakes.FakeNvml([fakes.DeviceError("GPU is lost")]))
    assert v.local_device().device.nvml_index is None


@contract
def test_failed_cases_are_rows_on_cuda(fake_cuda: FakeCudaRuntime) -> None:
    ctx = v.DeviceContext("cuda", "fake H100", None, memory_method="fake",
                          device=CudaDevice(0, runtime=fake_cuda))
    cases = [v.Case("gpt2-tiny", "train", 1, "bf16", "sgd", seq_len=8, gradient_checkpointing=True),
             v.Case("mnist-cnn", "train", 2, "fp32", None)]
    rows = v.run_validation(cases, ctx, warmup=0, iters=1).rows
    assert rows[0].error_message is None and rows[0].measurement.step_s > 0  # checkpointed blocks ran
    assert "has no optimizer" in rows[1].error_message and rows[1].measurement is None
    assert fake_cuda.calls.count("empty_cache") >= 4  # before each case and after it


def test_cpu_rates_come_from_the_store_or_are_measured() -> None:
    from advisor.probing.results import DeviceInfo, KernelResult, ProbeResult
    from advisor.store import HistoryStore
    from advisor.validate.local import _stored_cpu_rates

    rates = v.measure_cpu_rates(n=64)
    assert set(rates) == {"matmul_fp32_flops", "matmul_bf16_flops", "memory_copy_bytes_s", "op_overhead_s"}
    assert all(x > 0 for x in rates.values())
    assert _stored_cpu_rates() is None  # an empty store
    cpu = DeviceInfo(index=0, kind="cpu", backend="cpu", name="test cpu")
    kernels = (KernelResult(name="matmul", precision="fp32", value=0.5, unit="TFLOP/s"),
               KernelResult(name="matmul", precision="bf16", value=0.25, unit="TFLOP/s"),
               KernelResult(name="memory_copy", value=20.0, unit="GB/s"),
               KernelResult(name="launch", value=4.0, unit="us"),
               KernelResult(name="matmul", precision="fp16", skipped="not on this CPU"))
    run_id = HistoryStore().save_probe(ProbeResult(timestamp="2026-11-28T00:00:00+00:00", host="h", versions={},
                                                   devices=(cpu,), kernels=kernels))
    device = v.local_device(prefer_cuda=False, use_store=True)
    assert device.kind == "cpu" and f"history store id {run_id}" in device.rates_source
    assert device.rates["matmul_fp32_flops"] == 0.5e12 and device.rates["op_overhead_s"] == pytest.approx(4e-6)


@contract
def test_torch_inventory_backend_reads_the_cuda_runtime(fake_cuda: FakeCudaRuntime) -> None:
    from advisor.errors import ProbeUnavailable
    from advisor.probing.cpu import TorchCudaBackend

    backend = TorchCudaBackend()
    info = backend.device_info(0)
    assert backend.device_count() == 1 and info.backend == "torch" and info.uuid == H100_UUID
    assert info.catalog_id == "h100-sxm5-80gb" and info.compute_capability == "9.0"
    assert info.memory_total_bytes == 80 << 30 and info.memory_used_bytes == 1 << 30
    assert info.cuda_driver_version == "13.0" and "power_draw_w" in info.missing
    with pytest.raises(ProbeUnavailable, match="no CUDA device 1"):
        backend.device_info(1)
    fake_cuda.available = False
    with pytest.raises(ProbeUnavailable, match="sees no CUDA"):
        TorchCudaBackend()
