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
