"""Expert parallelism (``--parallelism ep``): the experts split n ways, the rest replicated, all-to-alls priced."""

from __future__ import annotations

import pytest

from advisor.api import estimate
from advisor.catalog import get_gpu
from advisor.errors import EstimateError
from advisor.estimator.parallel import (
    COLLECTIVE_LATENCY_S,
    ParallelPlan,
    allreduce_s,
    alltoall_s,
    bus_bandwidth_bytes_s,
    expert_parallel_comm,
    peer_link,
    resolve_plan,
)
from advisor.workload.options import PARALLELISMS

H100 = get_gpu("h100-sxm5-80gb")
MIXTRAL = "mixtral-8x7b"
# Mixtral-8x7B: 32 layers x 8 experts x (gate, up, down: 3 x 4096 x 14336), no biases
EXPERT_PARAMS = 32 * 8 * 3 * 4096 * 14336


def _est(n: int, parallelism: str | None, **kw):
    opts = {"batch_size": n, "seq_len": 512, "precision": "bf16", "calibration": None, **kw}
    return estimate(MIXTRAL, H100, num_gpus=n, parallelism=parallelism, **opts)


def test_ep_is_a_strategy_and_the_workload_carries_its_expert_params() -> None:
    assert "ep" in PARALLELISMS
    e = _est(1, None)
    assert e.workload.arch["expert_params"] == EXPERT_PARAMS
    assert "expert_params" not in (estimate("gpt2", H100, calibration=None).workload.arch or {})


@pytest.mark.parametrize(("precision", "w_b", "g_b", "o_b", "cache_b"),
                         [("bf16", 2.0, 2.0, 4.0, 0.0), ("amp-bf16", 4.0, 4.0, 8.0, 2.0)])
@pytest.mark.parametrize("n", [2, 4, 8])
def test_each_gpu_holds_one_nth_of_the_experts_and_all_the_rest(n: int, precision: str, w_b: float, g_b: float,
                                                                  o_b: float, cache_b: float) -> None:
    one = _est(1, None, precision=precision)  # micro-batch 1 on one GPU
    ep = _est(n, "ep", precision=precision)  # micro-batch 1 on each of n
    assert ep.parallelism == "ep" and ep.micro_batch_per_gpu == 1
    elsewhere = EXPERT_PARAMS * (n - 1) / n
    a, b = one.memory.breakdown_bytes, ep.memory.breakdown_bytes
    assert a["weights"] - b["weights"] == pytest.approx(elsewhere * w_b, rel=1e-12)
    assert a["gradients"] - b["gradients"] == pytest.approx(elsewhere * g_b, rel=1e-12)
    assert a["optimizer"] - b["optimizer"] == pytest.approx(elsewhere * o_b, rel=1e-12)
    # activations are the micro-batch's (balanced routing); only autocast's 16-bit copies of the experts go
    assert a["activations"] - b["activations"] == pytest.approx(elsewhere * cache_b, rel=1e-12)
    held = one.workload.params - elsewhere
    assert b["weights"] == pytest.approx(held * w_b, rel=1e-12)


def test_mixtral_on_8_h100s_ep_holds_far_less_than_ddp() -> None:
    ddp, ep = _est(8, "ddp"), _est(8, "ep")
    assert ep.memory.total_bytes < 0.25 * ddp.memory.total_bytes
    assert not ddp.memory.fits and ep.memory.fits
    infer_ddp, infer_ep = _est(8, "ddp", mode="infer"), _est(8, "ep", mode="infer")
    assert infer_ep.memory.total_bytes < 0.25 * infer_ddp.memory.total_bytes
    assert any(s.startswith("ep: each GPU holds 1 of the 8 experts") for s in ep.assumptions)


def test_dense_model_is_refused_on_any_count() -> None:
    for n in (1, 2):
        with pytest.raises(EstimateError, match="needs a mixture-of-experts model") as err:
            estimate("gpt2", H100, num_gpus=n, parallelism="ep", calibration=None)
        assert "ep is accepted for MoE models" in err.value.hint and "ddp, zero1" in err.value.hint


@pytest.mark.parametrize("n", [3, 6, 16])
def test_a_count_that_does_not_divide_the_experts_is_refused(n: int) -> None:
    with pytest.raises(EstimateError, match=r"expert count \(8\) to divide evenly") as err:
        resolve_plan("ep", n, num_experts=8)
    assert err.value.hint == "accepted GPU counts for ep: 1, 2, 4, 8"


def test_lora_under_ep_is_refused() -> None:
    with pytest.raises(EstimateError, match="full training and inference only"):
        _est(8, "ep", lora_rank=8)


def test_ep_on_one_gpu_is_the_single_gpu_estimate() -> None:
    assert resolve_plan("ep", 1, num_experts=8) == ParallelPlan("single", 1, 1, 1)
    one, ep1 = _est(1, None), _est(1, "ep")
    assert ep1.parallelism == "single"
    assert ep1.memory.total_bytes == one.memory.total_bytes and ep1.time.step_s == one.time.step_s


def test_all_to_all_bytes_and_time() -> None:
    bw = 100e9
    plan = resolve_plan("ep", 8, num_experts=8)
    routed = 2 * 512 * 4096 * 2.0  # top-2 x tokens x hidden x bf16
    c = expert_parallel_comm(plan, moe_layers=32, routed_bytes=routed, passes=2, busbw_bytes_s=bw)
    one = 7 / 8 * routed / bw + COLLECTIVE_LATENCY_S
    assert alltoall_s(routed, 8, bw) == pytest.approx(one)
    assert c.total_s == pytest.approx(128 * one) and c.exposed_s == c.total_s
    assert "128 all-to-alls of 8.4 MB" in c.note
    assert expert_parallel_comm(resolve_plan("ddp", 8), moe_layers=32, routed_bytes=routed, passes=2,
                                busbw_bytes_s=bw).total_s == 0.0


@pytest.mark.parametrize("ckpt", [False, True])
def test_train_step_communication_is_the_all_to_alls_plus_the_non_expert_all_reduce(ckpt: bool) -> None:
    e = _est(8, "ep", gradient_checkpointing=ckpt)
    gbs, fabric, _ = peer_link(H100.interconnect, 8)
    bw = bus_bandwidth_bytes_s(gbs, fabric, 8)
    passes = 3 if ckpt else 2
    a2a = 2 * 32 * passes * alltoall_s(2 * 512 * 4096 * 2.0, 8, bw)
    non_expert = (e.workload.params - EXPERT_PARAMS) * 2.0  # bf16 gradients of the replicated parameters only
    assert e.time.comm_total_s == pytest.approx(a2a + allreduce_s(non_expert, 8, bw), rel=1e-9)
    assert e.time.comm_s >= a2a  # the all-to-alls are on the critical path


def test_inference_prefill_and_decode_all_to_alls() -> None:
    e = _est(8, "ep", mode="infer", gen_len=16)
    gbs, fabric, _ = peer_link(H100.interconnect, 8)
    bw = bus_bandwidth_bytes_s(gbs, fabric, 8)
    prefill = 2 * 32 * alltoall_s(2 * 512 * 4096 * 2.0, 8, bw)
    decode = 2 * 32 * alltoall_s(2 * 1 * 4096 * 2.0, 8, bw)
    assert e.time.comm_total_s == pytest.approx(prefill + 16 * decode, rel=1e-9)
