"""Multi-GPU estimates against the published formulas (ZeRO paper, DeepSpeed, Megatron, nccl-tests)."""

from __future__ import annotations

import pytest

from advisor.api import estimate
from advisor.catalog import get_gpu
from advisor.errors import EstimateError
from advisor.estimator import estimate_workload
from advisor.estimator.parallel import (
    COLLECTIVE_LATENCY_S,
    ParallelPlan,
    allgather_s,
    allreduce_s,
    bus_bandwidth_bytes_s,
    data_parallel_comm,
    megatron_activation_factor,
    resolve_plan,
)
from tests.test_estimate import make_workload

H100 = get_gpu("h100-sxm5-80gb")
A100 = get_gpu("a100-sxm4-80gb")
L40S = get_gpu("l40s")


def model_states(e) -> float:
    b = e.memory.breakdown_bytes
    return b["weights"] + b["gradients"] + b["optimizer"]


def test_13b_adamw_mixed_precision_16_bytes_on_one_gpu_and_an_eighth_under_zero3() -> None:
    p = 13_000_000_000
    w = make_workload(params=p, batch=8)
    one = estimate_workload(w, H100, calibration=None)
    assert model_states(one) / p == pytest.approx(16.0)
    for strategy in ("zero3", "fsdp"):
        eight = estimate_workload(w, H100, num_gpus=8, parallelism=strategy, calibration=None)
        assert model_states(eight) / p == pytest.approx(16.0 / 8)
        assert eight.micro_batch_per_gpu == 1


@pytest.mark.parametrize(("strategy", "gb"), [("zero1", 31.4), ("zero2", 16.6), ("zero3", 1.9)])
def test_zero_paper_figure_1_per_gpu_model_states(strategy: str, gb: float) -> None:
    # ZeRO paper, Figure 1: 7.5B params, Adam, mixed precision (K=12), 64 GPUs:
    # baseline 120 GB; P_os 4Ψ+12Ψ/N = 31.4 GB; P_os+g 2Ψ+14Ψ/N = 16.6 GB; P_os+g+p 16Ψ/N = 1.9 GB
    w = make_workload(params=7_500_000_000, batch=64)
    e = estimate_workload(w, H100, num_gpus=64, parallelism=strategy, calibration=None)
    assert model_states(e) / 1e9 == pytest.approx(gb, rel=0.02)


def test_deepspeed_zero2_estimator_formula() -> None:
    # deepspeed estimate_zero2_model_states_mem_needs (no offload): 4Ψ + 16Ψ/N  (upper bound with buffers)
    p, n = 3_000_000_000, 8
    e = estimate_workload(make_workload(params=p, batch=8), H100, num_gpus=n, parallelism="zero2", calibration=None)
    assert model_states(e) == pytest.approx(2 * p + 14 * p / n)
    assert model_states(e) <= 4 * p + 16 * p / n


def test_ddp_keeps_a_bucket_copy_of_the_gradients_and_nothing_is_sharded() -> None:
    w = make_workload(params=10**9, batch=8)
    one = estimate_workload(w, H100, calibration=None)
    ddp = estimate_workload(w, H100, num_gpus=4, calibration=None)  # None -> ddp for several GPUs
    assert ddp.parallelism == "ddp" and ddp.micro_batch_per_gpu == 2
    assert ddp.memory.breakdown_bytes["gradients"] == pytest.approx(2 * one.memory.breakdown_bytes["gradients"])
    assert ddp.memory.breakdown_bytes["weights"] == one.memory.breakdown_bytes["weights"]
    assert ddp.memory.breakdown_bytes["activations"] < one.memory.breakdown_bytes["activations"]
    assert ddp.memory.max_batch_size % 4 == 0  # global = per-GPU x 4
    assert any("global batch" in a and "2 per GPU" in a for a in ddp.assumptions)


def test_llama_2_70b_fp16_inference_fits_two_a100_80gb_with_tp_and_not_one() -> None:
    kw = {"mode": "infer", "precision": "fp16", "batch_size": 1, "seq_len": 2048, "calibration": None}
    one = estimate("llama-2-70b", "a100-sxm4-80gb", **kw)
    two = estimate("llama-2-70b", "a100-sxm4-80gb", num_gpus=2, parallelism="tp", **kw)
    assert not one.memory.fits and one.memory.breakdown_bytes["weights"] > 130e9
    assert two.memory.fits
    assert two.memory.breakdown_bytes["weights"] == pytest.approx(one.memory.breakdown_bytes["weights"] / 2)
    assert two.memory.breakdown_bytes["kv_cache"] == pytest.approx(one.memory.breakdown_bytes["kv_cache"] / 2)
    assert two.time.comm_s > 0 and two.parallelism == "tp"


def test_ring_allreduce_and_allgather_formulas() -> None:
    bw = 100e9
    assert allreduce_s(1e9, 8, bw) == pytest.approx(2 * 7 / 8 * 1e9 / bw + COLLECTIVE_LATENCY_S)
    assert allgather_s(1e9, 4, bw) == pytest.approx(3 / 4 * 1e9 / bw + COLLECTIVE_LATENCY_S)
    assert allreduce_s(1e9, 1, bw) == 0 == allgather_s(0, 8, bw)


def test_bus_bandwidth_nvlink_vs_pcie_and_across_nodes() -> None:
    nvlink = bus_bandwidth_bytes_s(H100.interconnect.peer_gbs, True, 8)
    pcie = bus_bandwidth_bytes_s(L40S.interconnect.peer_gbs, False, 8)
    assert nvlink == pytest.approx(450e9 * 0.8)
    assert pcie < nvlink / 5
    assert bus_bandwidth_bytes_s(450, True, 16) < nvlink  # InfiniBand between nodes caps it
    assert bus_bandwidth_bytes_s(None, False, 2) > 0


def test_zero3_moves_one_and_a_half_times_ddp_volume_and_overlap_hides_it() -> None:
    bw, grad = 100e9, 26e9
    ddp = data_parallel_comm(ParallelPlan("ddp", 8, 8, 1), grad_bytes=grad, param_bytes_16=grad, overlap_s=0,
                             busbw_bytes_s=bw)
    z3 = data_parallel_comm(ParallelPlan("zero3", 8, 8, 1), grad_bytes=grad, param_bytes_16=grad, overlap_s=0,
                            busbw_bytes_s=bw)
    assert z3.total_s == pytest.approx(1.5 * ddp.total_s, rel=1e-3)
    hidden = data_parallel_comm(ParallelPlan("ddp", 8, 8, 1), grad_bytes=grad, param_bytes_16=grad,
                                overlap_s=10.0, busbw_bytes_s=bw)
    assert 0 < hidden.exposed_s < 0.01 * hidden.total_s  # only the last 25 MiB bucket shows
    assert "last 25 MiB bucket" in hidden.note


def test_multi_gpu_time_nvlink_beats_pcie_and_ddp_scales() -> None:
    w = make_workload(params=7 * 10**9, batch=64, flops_per_sample=6 * 7e9 * 1024)  # 6 x params x tokens
    one = estimate_workload(w, H100, calibration=None)
    eight = estimate_workload(w, H100, num_gpus=8, parallelism="zero3", calibration=None)
    assert eight.time.samples_per_s > 4 * one.time.samples_per_s
    assert eight.time.comm_total_s > 0 and eight.time.comm_s <= eight.time.comm_total_s
    nv = estimate_workload(w, A100, num_gpus=8, parallelism="zero3", calibration=None)
    pcie = estimate_workload(w, get_gpu("a100-pcie-80gb"), num_gpus=8, parallelism="zero3", calibration=None)
    assert pcie.time.comm_total_s > 5 * nv.time.comm_total_s


def test_megatron_activation_formula() -> None:
    assert megatron_activation_factor(1, seq_len=2048, hidden=4096, heads=32) == 1.0
    s, h, a, t = 2048, 4096, 32, 8
    expected = (10 + 24 / t + 5 * a * s / (h * t)) / (34 + 5 * a * s / h)
    assert megatron_activation_factor(t, seq_len=s, hidden=h, heads=a) == pytest.approx(expected)
    assert megatron_activation_factor(8, seq_len=None, hidden=None, heads=None) == pytest.approx(13 / 34)


def test_tp_splits_activations_per_megatron_and_adds_per_layer_allreduces() -> None:
    w = make_workload(params=2 * 10**9, batch=4)
    one = estimate_workload(w, H100, calibration=None)
    tp = estimate_workload(w, H100, num_gpus=4, parallelism="tp", calibration=None)
    factor = megatron_activation_factor(4, seq_len=1024, hidden=2048, heads=16)
    cache = tp.memory.overhead_detail_bytes["autocast_weight_cache (in activations)"]
    assert tp.memory.breakdown_bytes["activations"] - cache == pytest.approx(4 * 1e8 * factor)
    assert model_states(tp) == pytest.approx(model_states(one) / 4)
    # 2 all-reduces per layer per pass, forward + backward = 4 x 24 layers of b*s*h 16-bit activations
    one_ar = allreduce_s(4 * 1024 * 2048 * 2, 4, bus_bandwidth_bytes_s(450, True, 4))
    assert tp.time.comm_s == pytest.approx(96 * one_ar)


def test_plan_validation() -> None:
    assert resolve_plan(None, 1).strategy == "single"
    assert resolve_plan(None, 4).strategy == "ddp"
    assert resolve_plan("tp", 4, num_heads=32).tp == 4
    with pytest.raises(EstimateError, match="divide"):
        resolve_plan("tp", 3, num_heads=32)
    with pytest.raises(EstimateError, match="spans nodes"):
        resolve_plan("tp", 16)
    with pytest.raises(EstimateError, match="unknown parallelism"):
        resolve_plan("pipeline", 4)
    with pytest.raises(EstimateError, match="num_gpus"):
        resolve_plan(None, 0)


@pytest.mark.parametrize(("mode", "strategy"), [("train", "zero3"), ("train", "tp"), ("infer", "tp")])
def test_phases_add_up_to_the_step(mode: str, strategy: str) -> None:
    w = make_workload(params=2 * 10**9, batch=8, mode=mode, optimizer="adamw" if mode == "train" else None)
    e = estimate_workload(w, H100, num_gpus=4, parallelism=strategy, calibration=None)
    assert sum(e.time.phases_s.values()) == pytest.approx(e.time.step_s)
    assert e.time.comm_total_s > 0


def test_zero3_inference_gathers_the_weights_every_pass() -> None:
    w = make_workload(params=2 * 10**9, batch=8, mode="infer", optimizer=None, precision="bf16")
    ddp = estimate_workload(w, H100, num_gpus=4, parallelism="ddp", calibration=None)
    z3 = estimate_workload(w, H100, num_gpus=4, parallelism="zero3", calibration=None)
    gather = allgather_s(2 * 10**9 * 2.0, 4, bus_bandwidth_bytes_s(450, True, 4))
    assert z3.time.comm_s == pytest.approx(gather) and ddp.time.comm_s == 0
    assert z3.time.step_s == pytest.approx(ddp.time.step_s + gather)
    assert z3.memory.breakdown_bytes["weights"] == pytest.approx(ddp.memory.breakdown_bytes["weights"] / 4)
