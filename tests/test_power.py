"""Sustained clocks under the power cap, two-die packages (MI250/MI250X) and AMP fp16 on cards without fp16 tensor
cores (issue 13)."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from advisor.api import estimate
from advisor.catalog import get_gpu, spec_from_mapping
from advisor.errors import EstimateError, SpecError
from advisor.estimator import matmul_rate
from advisor.estimator.calibrate import apply_efficiencies
from advisor.estimator.power import sustained_clock
from advisor.estimator.profiles import defaults_for
from advisor.probing.results import DeviceInfo, KernelResult, ProbeResult, Sample

# --- sustained clock ---------------------------------------------------------------------------------------


def test_slot_powered_cards_hold_less_than_boost_but_at_least_base() -> None:
    for gpu in ("t4", "l4"):
        spec = get_gpu(gpu)
        clock = sustained_clock(spec)
        assert spec.base_clock_mhz is not None
        assert spec.base_clock_mhz / spec.boost_clock_mhz <= clock.fraction < 0.9
        assert f"of {spec.boost_clock_mhz:.0f} boost under the {spec.tdp_w:.0f} W cap" in clock.note
    # T4: ~900 MHz reported under an MLPerf BERT run; the model must land between that and the boost clock
    assert 900 <= sustained_clock(get_gpu("t4")).mhz <= 1300


def test_full_tdp_edge_and_unclocked_cards_keep_boost() -> None:
    for gpu in ("a100-sxm4-80gb", "a100-pcie-40gb", "rtx-4000-ada", "jetson-orin-nano-8gb"):
        assert sustained_clock(get_gpu(gpu)).fraction == 1.0


def test_a_family_measured_at_its_cap_scales_its_clock_by_watts_per_sm_ghz() -> None:
    """Hopper: the shared H100 SXM probe's GEMMs ran at ~0.79 of boost at its 700 W cap; the 350 W H100 PCIe's square
    GEMM measured 0.63 of the SXM's rate (tests/data/published_ratios.csv); the GH200's 1000 W feeds its Grace CPU
    too: not scaled above the SXM.  Ada: the RTX 4090 at 1.08x boost at 450 W; the 350 W L40S below its boost."""
    c = {g: sustained_clock(get_gpu(g)).fraction for g in ("h100-sxm5-80gb", "h200-sxm-141gb", "h100-pcie-80gb",
                                                           "gh200-96gb", "rtx-4090", "l40s", "rtx-4000-ada")}
    assert c["h100-sxm5-80gb"] == c["h200-sxm-141gb"] == c["gh200-96gb"] == pytest.approx(0.79)
    assert c["h100-pcie-80gb"] == pytest.approx(0.64, abs=0.02)
    assert c["rtx-4090"] == pytest.approx(1.08) and 0.85 < c["l40s"] < 0.95 and c["rtx-4000-ada"] == 1.0


def test_geforce_cards_run_above_boost_and_cdna3_below_it_under_a_gemm() -> None:
    from advisor.estimator.profiles import profile_for

    for gpu in ("rtx-4090", "rtx-3090", "rtx-5090"):  # GPU Boost above the rated figure at the power cap
        spec = get_gpu(gpu)
        assert sustained_clock(spec).fraction == profile_for(spec).value("clock_geforce") > 1.0
    # AMD's MAF measurement: MI300X 1,207 of 2,100 MHz under a dense bf16 GEMM; the MI325X (1000 W) by the power
    # rule lands near its own measured 1,447 MHz
    assert sustained_clock(get_gpu("mi300x")).mhz == pytest.approx(1207, rel=0.01)
    assert sustained_clock(get_gpu("mi325x")).mhz == pytest.approx(1447, rel=0.05)
    quadro = get_gpu("quadro-gv100")  # no boost clock in the catalog
    assert quadro.boost_clock_mhz is None and sustained_clock(quadro).fraction == 1.0


def test_the_cap_is_the_mechanism_not_the_card_name() -> None:
    t4 = get_gpu("t4")
    assert sustained_clock(dataclasses.replace(t4, tdp_w=300.0)).fraction == 1.0
    assert sustained_clock(dataclasses.replace(t4, tdp_w=40.0)).fraction < sustained_clock(t4).fraction


def _compute_bound_ms(spec, **kw) -> float:
    # every GEMM of Mistral-7B is on the 16-byte grid: GPT-2's 50257-wide vocabulary head would run on align-1
    # kernels, far below the power cap and so taken at the boost clock (advisor.estimator.time.card_rates)
    e = estimate("mistral-7b", spec, precision="amp-fp16", batch_size=4, seq_len=2048, calibration="none",
                 runtime="graph", **kw)
    return e.time.step_s


def test_estimate_runs_a_capped_card_at_its_sustained_clock_and_says_so() -> None:
    t4 = get_gpu("t4")
    capped = estimate("gpt2", t4, precision="amp-fp16", batch_size=8, seq_len=1024, calibration="none")
    assert any("sustained clock" in a and "70 W cap" in a for a in capped.assumptions)
    uncapped = dataclasses.replace(t4, tdp_w=300.0)
    assert _compute_bound_ms(t4) > 1.2 * _compute_bound_ms(uncapped)
    full = estimate("gpt2", "a100-sxm4-80gb", precision="amp-bf16", batch_size=8, seq_len=1024, calibration="none")
    assert any("taken as held at the full 400 W TDP" in a for a in full.assumptions)


def test_memory_bandwidth_does_not_slow_with_the_clock() -> None:
    t4 = get_gpu("t4")
    a = estimate("gpt2", t4, precision="amp-fp16", batch_size=1, seq_len=1, gen_len=64, mode="infer",
                 calibration="none", runtime="graph")
    b = estimate("gpt2", dataclasses.replace(t4, tdp_w=300.0), precision="amp-fp16", batch_size=1, seq_len=1,
                 gen_len=64, mode="infer", calibration="none", runtime="graph")
    assert a.time.decode_step_s == pytest.approx(b.time.decode_step_s, rel=0.05)  # decode is bandwidth-bound


def test_the_shared_probes_show_low_draw_kernels_at_the_maximum_clock_and_gemms_below_it() -> None:
    """The evidence behind power.low_draw_clock: the shared H100/H200 probes' NVML samples."""
    import json
    from pathlib import Path

    for card in ("h100", "h200"):
        data = json.loads((Path(__file__).parent / "data" / "gpu-runs" / f"{card}-2026-11-28" /
                           "probe-full.json").read_text())
        top = data["devices"][0]["sm_clock_max_mhz"]
        gemm = [s for k in data["kernels"] if k["name"] == "matmul" for s in k["samples"]]
        memory = [s for k in data["kernels"] if k["name"].startswith("memory_") for s in k["samples"]]
        assert memory and all(s["sm_clock_mhz"] == top and not s["throttle_reasons"] for s in memory)
        assert max(s["power_draw_w"] for s in memory) < 0.4 * data["devices"][0]["power_limit_w"]
        assert sum(s["sm_clock_mhz"] for s in gemm) / len(gemm) < 0.92 * top
        assert any("sw_power_cap" in s["throttle_reasons"] for s in gemm)


@pytest.mark.parametrize("gpu", ["h100-sxm5-80gb", "t4", "rtx-4090"])
def test_only_gemms_and_convolutions_take_the_clock_held_at_the_cap(gpu: str) -> None:
    from advisor.estimator.power import low_draw_clock
    from advisor.estimator.profiles import efficiency_for
    from advisor.estimator.time import card_rates

    spec = get_gpu(gpu)
    held = sustained_clock(spec).fraction
    eff = efficiency_for(spec).replace(clock=held)
    rates = card_rates(spec, "fp32", eff, 1e14, 1e13)
    at_boost = card_rates(spec, "fp32", eff.replace(clock=1.0), 1e14, 1e13)
    low = low_draw_clock(held)
    assert low == max(held, 1.0)
    assert rates.tensor_flops == pytest.approx(at_boost.tensor_flops * held)
    assert rates.matmul_vector_flops == pytest.approx(at_boost.matmul_vector_flops * held)
    for field in ("vector_flops", "strided_elements_s", "bn_elements_s"):
        assert getattr(rates, field) == pytest.approx(getattr(at_boost, field) * low), field


# --- the probe's NVML clock samples replace the model --------------------------------------------------------


def _probe(clocks_mhz: list[int], max_mhz: int = 1980) -> ProbeResult:
    dev = DeviceInfo(index=0, backend="nvml", name="NVIDIA H100 80GB HBM3", catalog_id="h100-sxm5-80gb",
                     sm_clock_max_mhz=max_mhz)
    small = KernelResult(name="matmul", precision="bf16", shape="1024", device="cuda:0", value=100.0,
                         unit="TFLOP/s", work=2 * 1024**3, work_unit="FLOP", spec_peak=989.0, fraction_of_peak=0.1,
                         samples=(Sample(t_s=0.0, sm_clock_mhz=max_mhz),))
    big = dataclasses.replace(small, shape="8192", value=700.0, work=2 * 8192**3, fraction_of_peak=0.7,
                              samples=tuple(Sample(t_s=i, sm_clock_mhz=c) for i, c in enumerate(clocks_mhz)))
    return ProbeResult(timestamp="2026-11-28T00:00:00Z", host="h", versions={}, devices=(dev,), kernels=(small, big))


def test_probe_clock_samples_give_a_sustained_clock_fraction() -> None:
    eff = _probe([1560, 1584, 1600]).efficiencies(0)
    assert eff["sustained_clock_fraction_bf16"] == pytest.approx(1584 / 1980)  # the LARGEST GEMM's median
    assert eff["sustained_clock_fraction"] == pytest.approx(1584 / 1980)
    no_max = dataclasses.replace(_probe([1584]), devices=(DeviceInfo(index=0),))
    assert "sustained_clock_fraction" not in no_max.efficiencies(0)


def test_calibrated_clock_keeps_the_measured_gemm_rate() -> None:
    eff0 = defaults_for("Hopper")
    eff, changed = apply_efficiencies(eff0, {"sustained_clock_fraction_bf16": 0.8, "matmul_bf16": 0.72}, "amp-bf16")
    assert eff.clock == 0.8
    assert eff.clock * eff.matmul == pytest.approx(0.72)  # the probe's fraction is of the boost-clock peak
    assert any(c.startswith("clock=") for c in changed)


def test_estimate_uses_the_probe_clock_and_says_so() -> None:
    e = estimate("mistral-7b", "h100-sxm5-80gb", precision="amp-bf16", batch_size=1, seq_len=1024,
                 calibration={"sustained_clock_fraction": 0.5})
    assert any("from the probe's NVML clock samples" in a for a in e.assumptions)
    base = estimate("mistral-7b", "h100-sxm5-80gb", precision="amp-bf16", batch_size=1, seq_len=1024,
                    calibration="none")
    assert e.time.compute_bound_s > 1.5 * base.time.compute_bound_s  # aligned GEMMs run at the held clock


# --- MI250 / MI250X: one GPU is one GCD ------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", ["mi250", "mi250x"])
def test_two_die_packages_estimate_one_gcd(gpu: str) -> None:
    spec = get_gpu(gpu)
    assert spec.devices_per_package == 2 and spec.memory_gb == 128  # the file holds package figures
    gcd = spec.per_device()
    assert gcd.memory_gb == 64 and gcd.bf16_tflops == pytest.approx(spec.bf16_tflops / 2)
    assert gcd.memory_bandwidth_gbs == pytest.approx(spec.memory_bandwidth_gbs / 2)
    e = estimate("gpt2", gpu, precision="amp-bf16", batch_size=8, seq_len=1024, calibration="none")
    assert e.memory.capacity_bytes == pytest.approx(64e9)
    assert any("one GPU is one of the 2 devices" in a for a in e.assumptions)
    whole = estimate("gpt2", dataclasses.replace(spec, devices_per_package=1), precision="amp-bf16", batch_size=8,
                     seq_len=1024, calibration="none", runtime="graph")
    half = estimate("gpt2", spec, precision="amp-bf16", batch_size=8, seq_len=1024, calibration="none",
                    runtime="graph")
    assert half.time.step_s > 1.6 * whole.time.step_s


def test_devices_per_package_is_validated() -> None:
    base = {"id": "x", "name": "X", "vendor": "amd", "segment": "instinct", "architecture": "CDNA 2",
            "release_year": 2021, "memory_gb": 128, "memory_type": "HBM2e", "memory_bandwidth_gbs": 3200,
            "fp32_tflops": 45.0, "tdp_w": 560, "source": "test"}
    assert spec_from_mapping(base).devices_per_package == 1
    with pytest.raises(SpecError, match="devices_per_package must be > 0"):
        spec_from_mapping({**base, "devices_per_package": 0})
    with pytest.raises(SpecError, match="needs notes"):
        spec_from_mapping({**base, "devices_per_package": 2})
    assert spec_from_mapping({**base, "devices_per_package": 2, "notes": "two GCDs"}).per_device().memory_gb == 64


def test_amdsmi_maps_an_ambiguous_gcd_name_by_compute_units(monkeypatch) -> None:
    from advisor.probing.amd import AmdsmiBackend
    from tests.test_probe_amd import stub

    for cus, expected in ((110, "mi250x"), (104, "mi250"), (96, None)):
        mod = stub()
        mod.amdsmi_get_gpu_asic_info = lambda h, cus=cus: {"market_name": "AMD Instinct MI250X / MI250",
                                                           "num_compute_units": cus}
        mod.amdsmi_get_gpu_vram_usage = lambda h: {"vram_total": 65_520, "vram_used": 10}
        monkeypatch.setitem(sys.modules, "amdsmi", mod)
        backend = AmdsmiBackend()
        try:
            assert backend.device_info(0).catalog_id == expected
        finally:
            backend.close()


# --- AMP fp16 on cards without fp16 tensor cores ---------------------------------------------------------------


@pytest.mark.parametrize("precision", ["amp-fp16", "fp16"])
def test_half_precision_on_pascal_geforce_runs_at_the_fp32_rate(precision: str) -> None:
    spec = get_gpu("gtx-1080-ti")
    assert spec.fp16_tflops is None
    assert matmul_rate(spec, precision) == (spec.fp32_tflops * 1e12, "fp32")
    e = estimate("gpt2", "GTX 1080 Ti", precision=precision, batch_size=4, seq_len=512, calibration="none")
    assert any("16-bit storage and fp32 math" in a for a in e.assumptions)
    fp32 = estimate("gpt2", "GTX 1080 Ti", precision="fp32", batch_size=4, seq_len=512, calibration="none")
    assert e.time.by_class_s["gemm"] == pytest.approx(fp32.time.by_class_s["gemm"], rel=1e-9)  # same math rate
    if precision == "fp16":
        assert e.time.step_s <= fp32.time.step_s  # half the bytes everywhere else
    else:  # autocast's weight casts and fp32 upcasts (logits, residual adds) buy nothing without 16-bit math
        assert fp32.time.step_s <= e.time.step_s <= 1.10 * fp32.time.step_s


def test_bf16_on_pre_ampere_nvidia_is_still_refused_with_the_reason() -> None:
    with pytest.raises(EstimateError) as info:
        estimate("gpt2", "GTX 1080 Ti", precision="amp-bf16", batch_size=4, seq_len=512, calibration="none")
    assert "emulation" in (info.value.hint or "") and "amp-fp16" in (info.value.hint or "")



@pytest.mark.cuda_contract
@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_probe_compares_a_gcd_with_the_per_gcd_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from advisor.probing import probe
    from tests import fakes
    from tests.fake_cuda import FakeCudaRuntime

    def fast() -> float:
        return time.perf_counter() * 100

    gcd = fakes.h100(0, name="AMD Instinct MI250X", catalog_id="mi250x")
    runtime = FakeCudaRuntime(uuids=(gcd.uuid.removeprefix("GPU-"),))
    runtime.event_clock = fast
    monkeypatch.setattr("advisor.device.cuda_runtime", lambda: runtime)
    with runtime.mode:
        r = probe(backend=fakes.FakeNvml([gcd]), device=0, kernels="bandwidth", quick=True, clock=fast)
    copy = next(k for k in r.kernels if k.name == "memory_copy")
    assert copy.spec_peak == pytest.approx(get_gpu("mi250x").memory_bandwidth_gbs / 2)
