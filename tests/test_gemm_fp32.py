"""fp32 GEMMs with TF32 off: cuBLAS SGEMM on the FP32 units, at the profile's measured rate (advisor.estimator.gemm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.catalog import get_gpu
from advisor.estimator._peaks import peaks
from advisor.estimator.gemm import REFERENCE, gemm_seconds
from advisor.estimator.power import sustained_clock
from advisor.estimator.profiles import efficiency_for
from advisor.estimator.time import card_rates

RUNS = Path(__file__).parent / "data" / "gpu-runs"


def _fp32_rates(gpu: str):  # type: ignore[no-untyped-def]
    spec = get_gpu(gpu)
    tensor, vector, _ = peaks(spec, "fp32")
    eff = efficiency_for(spec).replace(clock=sustained_clock(spec).fraction)  # as the estimator prepares it
    return spec, card_rates(spec, "fp32", eff, tensor, vector)


def _sgemm_tflops(gpu: str, n: int) -> float:
    spec, rates = _fp32_rates(gpu)
    return 2.0 * n**3 / gemm_seconds(n, n, n, rate_flops=rates.matmul_vector_flops, sms=spec.sm_count, simt=True) / 1e12


def _probe_fp32(folder: str, shape: str) -> float:
    doc = json.loads((RUNS / folder / "probe-full.json").read_text())
    return next(k["value"] for k in doc["kernels"]
                if k["name"] == "matmul" and k["precision"] == "fp32" and k["shape"] == shape)


@pytest.mark.parametrize(("gpu", "folder"), [("h100-sxm5-80gb", "h100-2026-11-28"),
                                             ("h200-sxm-141gb", "h200-2026-11-28")])
def test_hopper_sgemm_from_the_spec_sheet_matches_the_shared_probes(gpu: str, folder: str) -> None:
    # the profile's matmul_vector is the probes' square SGEMM at the reference shape (not the tensor-core figure)
    n = REFERENCE[0]
    measured = _probe_fp32(folder, f"{n}x{n}x{n}")
    assert _sgemm_tflops(gpu, n) == pytest.approx(measured, rel=0.03)


def test_v100_sxm2_sgemm_matches_a_public_square_matmul() -> None:
    # zzc0721/torch-performance-test-data issue #140 (Tesla V100-SXM2-16GB, torch 2.7.0+cu128): fp32 torch.matmul
    # 13.85 TFLOP/s at 4096^3, 14.38 at 8192^3 (cited in advisor/profiles/volta.toml; the figure is NeuSight's V100)
    assert _sgemm_tflops("v100-sxm2-16gb", 4096) == pytest.approx(13.85, rel=0.03)
    assert _sgemm_tflops("v100-sxm2-16gb", 8192) == pytest.approx(14.38, rel=0.05)


def test_fp32_convolutions_with_tf32_stay_on_the_tensor_cores() -> None:
    spec, rates = _fp32_rates("a100-sxm4-80gb")
    assert spec.tf32_tflops and rates.conv_flops > 2 * rates.matmul_vector_flops


def _priced(gpu: str, precision: str, op):  # type: ignore[no-untyped-def]
    from advisor.estimator.ops import prepare_ops
    from advisor.estimator.time import ops_time_detail

    spec = get_gpu(gpu)
    tensor, vector, _ = peaks(spec, precision)
    eff = efficiency_for(spec).replace(clock=sustained_clock(spec).fraction)
    rates = card_rates(spec, precision, eff, tensor, vector)
    return ops_time_detail(prepare_ops([op], align_elems=16 // (4 if precision == "fp32" else 2)), rates).per_op[0]


def _head(vocab: int, tensor_core: bool):  # type: ignore[no-untyped-def]
    from advisor.workload.base import OpCost

    m, k = 4 * 1024, 768  # GPT-2's vocabulary projection at b4 s1024
    return OpCost("lm_head", "matmul", "forward", 2.0 * m * vocab * k, 4.0 * (m * k + k * vocab + m * vocab), 1,
                  tensor_core, min(m, vocab, k), gemms=((m, vocab, k),))


@pytest.mark.parametrize("gpu", ["h100-sxm5-80gb", "a100-sxm4-80gb", "v100-sxm2-16gb", "rtx-4090", "mi250x",
                                 "mi300x"])
def test_one_rule_for_fp32_gemms_whichever_door_files_them(gpu: str) -> None:
    # the analytic builders flag every matmul tensor_core, the tracer leaves fp32 ones unflagged: one price
    for vocab in (50257, 50304):
        assert _priced(gpu, "fp32", _head(vocab, True)) == pytest.approx(_priced(gpu, "fp32", _head(vocab, False)))


def test_an_fp32_gemm_off_the_16_byte_grid_costs_no_more_than_its_aligned_neighbour() -> None:
    # SGEMM has no alignment requirement (neusight_fit.py --alignment); tensor-core kernels fall back off the grid
    odd, padded = _priced("h100-sxm5-80gb", "fp32", _head(50257, True)), _priced("h100-sxm5-80gb", "fp32",
                                                                                 _head(50304, True))
    assert odd <= padded * 1.001
    assert _priced("h100-sxm5-80gb", "bf16", _head(50257, True)) > 2 * _priced("h100-sxm5-80gb", "bf16",
                                                                               _head(50304, True))
