"""Kernels run for real on the CPU with tiny shapes: exact FLOP and byte accounting."""

from __future__ import annotations

import time
from typing import Any

import pytest

from advisor.catalog import get_gpu
from advisor.errors import AdvisorError
from advisor.probing import kernels as K
from advisor.probing.kernels import KernelEnv


@pytest.fixture
def env() -> KernelEnv:
    # Short regions keep the tests fast; accounting does not depend on them.
    return KernelEnv(device="cpu", min_region_s=2e-4, repetitions=5)


def test_flop_and_byte_formulas() -> None:
    assert K.matmul_flops(64, 32, 16) == 65_536
    assert K.conv2d_output_hw(56, 56, 3, 3, 1, 1) == (56, 56)
    assert K.conv2d_output_hw(224, 224, 7, 7, 2, 3) == (112, 112)
    # ResNet-50 conv1: 2 * 1 * 64 * 3 * 7 * 7 * 112 * 112 = 236,027,904 FLOP (118 MMAC)
    assert K.conv2d_flops(1, 3, 224, 224, 64, 7, 7, 2, 3) == 236_027_904
    assert K.bandwidth_bytes("copy", 1000) == 2000
    assert K.bandwidth_bytes("read", 1000) == 1000 and K.bandwidth_bytes("write", 1000) == 1000
    with pytest.raises(AdvisorError, match="copy, read, write"):
        K.bandwidth_bytes("swap", 1)


def test_matmul_on_cpu_accounts_2mnk(env) -> None:
    r = K.run_matmul(env, "fp32", 64, 32, 16)
    assert r.ok and r.name == "matmul" and r.shape == "64x32x16" and r.device == "cpu"
    assert r.work == 2 * 64 * 32 * 16 and r.work_unit == "FLOP" and r.unit == "TFLOP/s"
    assert r.value == pytest.approx(r.work / r.measurement.median_s / 1e12)
    assert r.spec_peak is None and r.fraction_of_peak is None  # a CPU has no catalog spec
    assert len(r.measurement.times_s) == 5


def test_fraction_of_peak_uses_the_spec(env) -> None:
    spec = get_gpu("h100-sxm5-80gb")
    r = K.run_matmul(KernelEnv(device="cpu", min_region_s=2e-4, spec=spec), "bf16", 32, 32, 32)
    assert r.spec_peak == pytest.approx(989.4)
    assert r.fraction_of_peak == pytest.approx(r.value / 989.4)


def test_int8_matmul_on_cpu_reports_tops(env) -> None:
    r = K.run_matmul(env, "int8", 32, 32, 32)
    assert r.ok and r.unit == "TOP/s" and r.work == 65_536


@pytest.mark.parametrize(("prec", "reason"), [("tf32", "GPU tensor-core mode"), ("fp8", "needs a GPU")])
def test_gpu_only_precisions_are_skipped_with_a_reason(env, prec, reason) -> None:
    r = K.run_matmul(env, prec, 64, 64, 64)
    assert r.value is None and reason in r.skipped


def test_gpu_capability_gates() -> None:
    old = KernelEnv(device="cuda:0", compute_capability=(7, 0))
    assert "8.9" in K.matmul_support(old, "fp8")
    assert "7.5" in K.matmul_support(old, "int8")
    assert "8.0" in K.matmul_support(old, "bf16")
    assert K.matmul_support(KernelEnv(device="cuda:0", compute_capability=(9, 0)), "fp8") is None
    with pytest.raises(AdvisorError, match="unknown matmul precision"):
        K.matmul_support(old, "fp4")


def test_memory_limit_halves_the_shape_and_says_so() -> None:
    env = KernelEnv(device="cpu", min_region_s=2e-4, max_memory_bytes=3 * 512 * 512 * 4)
    r = K.run_matmul(env, "fp32", 1024, 1024, 1024)
    assert r.ok and r.shape == "512x512x512" and r.work == 2 * 512**3
    assert "halved" in r.notes[0]
    tiny = KernelEnv(device="cpu", max_memory_bytes=10)
    assert "memory limit" in K.run_matmul(tiny, "fp32", 256, 256, 256).skipped


def test_conv_on_cpu_both_layouts(env) -> None:
    layer = (8, 10, 10, 4, 3, 3, 1, 1)
    nchw = K.run_conv(env, "fp32", layer, 2, channels_last=False)
    nhwc = K.run_conv(env, "fp32", layer, 2, channels_last=True)
    for r in (nchw, nhwc):
        assert r.ok and r.work == 2 * 2 * 4 * 8 * 3 * 3 * 10 * 10
        assert r.value == pytest.approx(r.work / r.measurement.median_s / 1e12)
    assert nhwc.shape.endswith("channels_last") and nchw.shape.endswith("nchw")
    assert "GPU" in K.run_conv(env, "tf32", layer, 2, channels_last=False).skipped


@pytest.mark.parametrize(("mode", "factor"), [("copy", 2), ("read", 1), ("write", 1)])
def test_bandwidth_counts_bytes(env, mode, factor) -> None:
    r = K.run_bandwidth(env, mode, 1 << 20)
    assert r.ok and r.name == f"memory_{mode}" and r.unit == "GB/s"
    assert r.work == factor * (1 << 20) and r.work_unit == "bytes"
    assert r.value == pytest.approx(r.work / r.measurement.median_s / 1e9)


def test_bandwidth_buffer_is_far_larger_than_l2() -> None:
    spec = get_gpu("h100-sxm5-80gb")
    assert K.bandwidth_buffer_bytes(KernelEnv(device="cuda:0", spec=spec)) >= 8 * 50e6
    assert K.bandwidth_buffer_bytes(KernelEnv(device="cuda:0")) >= 256 * K.MIB
    assert K.bandwidth_buffer_bytes(KernelEnv(device="cpu")) == 64 * K.MIB


def test_transfers_need_a_gpu(env) -> None:
    r = K.run_transfer(env, "h2d", True, 1 << 20)
    assert r.name == "h2d_pinned" and r.skipped == "no GPU: host<->device transfers need one"


def test_launch_overhead_in_microseconds(env) -> None:
    r = K.run_launch(env)
    assert r.ok and r.unit == "us" and r.work is None
    assert r.value == pytest.approx(r.measurement.median_s * 1e6)
    # A launch costs microseconds, so calibration must batch many of them into one timed region.
    # (Region length itself is not asserted: on a loaded 2-core CI box the per-call time moves between
    # calibration and measurement; the region rule is tested exactly with a scripted clock in test_timing.)
    assert r.measurement.iterations >= 10


def test_plan_sizes_and_groups() -> None:
    cpu_quick = K.plan(KernelEnv(device="cpu", quick=True))
    assert {p.group for p in cpu_quick} == set(K.KERNEL_GROUPS)
    assert any(p.label == "matmul fp32 512x512x512" for p in cpu_quick)
    gpu_full = K.plan(KernelEnv(device="cuda:0", quick=False), ["matmul"])
    labels = {p.label for p in gpu_full}
    assert {"matmul bf16 4096x11008x4096", "matmul bf16 8192x8192x1024", "matmul fp8 8192x8192x8192"} <= labels
    with pytest.raises(AdvisorError, match="unknown kernel group"):
        K.plan(KernelEnv(), ["gemm"])


def test_run_plan_honours_the_deadline(env) -> None:
    from dataclasses import replace

    planned = K.plan(env, ["launch", "bandwidth"])
    results = K.run_plan(replace(env, deadline=time.perf_counter() - 1), planned)
    assert len(results) == len(planned) and all("time budget" in r.skipped for r in results)


def _released(dev: Any) -> int | None:
    """Allocated bytes once cuBLAS workspaces (allocator blocks, not tensors) are handed back too."""
    dev.empty_cache(workspaces=True)
    return dev.allocated_bytes()


@pytest.mark.gpu
def test_cuda_kernels_run_and_free_memory() -> None:
    from advisor.device import CudaDevice

    dev = CudaDevice(0)
    before = _released(dev)
    env = K.cuda_env(dev, quick=True, spec=None)
    r = K.run_matmul(env, "bf16", 2048, 2048, 2048)
    # Every timed region meets the minimum it promises (re-sized from the measured region if it fell short).
    assert r.ok and r.value > 0 and r.measurement.iterations * r.measurement.median_s >= env.min_region_s * (1 - 1e-6)
    b = K.run_bandwidth(env, "copy", 256 * K.MIB)
    assert b.ok and b.value > 0
    t = K.run_transfer(env, "h2d", True, 64 * K.MIB)
    assert t.ok and t.value > 0
    assert _released(dev) == before


@pytest.mark.gpu
def test_quick_probe_on_a_real_gpu_measures_against_the_spec() -> None:
    from advisor.device import CudaDevice
    from advisor.probing import probe

    r = probe(device=0, quick=True, kernels="matmul,bandwidth,transfer,launch", max_seconds=120)
    dev = r.devices[0]
    assert dev.error is None and dev.name
    ok = [k for k in r.kernels if k.ok]
    assert any(k.name == "matmul" and k.precision == "bf16" for k in ok)
    assert all(k.value > 0 for k in ok)
    if dev.catalog_id:
        eff = r.efficiencies(0)
        assert 0 < eff["matmul_bf16"] < 1.2 and 0 < eff["memory_bandwidth"] < 1.2
    assert any(k.samples for k in ok) or r.backend != "nvml"
    assert _released(CudaDevice(0)) == 0


def test_transfers_are_set_against_the_link_read_under_load(env) -> None:
    from dataclasses import replace

    from advisor.probing.memory_kernels import _against_live_link
    from advisor.probing.results import KernelResult, Measurement

    measured = KernelResult(name="h2d_pinned", shape="256 MiB", value=50.0, unit="GB/s", work=1.0,
                            spec_peak=4.0,
                            fraction_of_peak=12.5, measurement=Measurement((1.0,) * 5, 1))
    calls = []
    live = replace(env, read_link=lambda: (5, 16))
    r = _against_live_link(live, measured, lambda: calls.append(1))
    assert calls == [1]  # the link is kept busy while read
    assert r.spec_peak == pytest.approx(63.015, rel=1e-3) and r.fraction_of_peak == pytest.approx(50 / 63.015, rel=1e-3)
    assert "gen5 x16" in r.notes[-1]
    assert _against_live_link(replace(env, read_link=lambda: (None, 16)), measured, lambda: None) == measured
    assert _against_live_link(env, measured, lambda: None) == measured


def test_out_of_memory_is_recognised_in_each_form_the_allocators_raise() -> None:
    import torch

    assert K.is_out_of_memory(MemoryError())
    assert K.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert K.is_out_of_memory(RuntimeError("HIP out of memory. Tried to allocate 1.00 GiB"))
    assert not K.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not K.is_out_of_memory(ValueError("out of memory"))
