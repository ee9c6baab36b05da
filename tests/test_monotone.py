"""No cliffs: more work never makes a step cheaper, unaligned GEMMs never beat aligned ones, no tensor cores where a
card has none, and fused-attention tile counts in closed form (issue 29).

The full grid is benchmarks/monotone_grid.py (issue 29's: 3 LLM presets x every card x train / infer / generation x
every precision x batch 1-64, and sequence sweeps); these tests run its ``sweep`` on a sample that covers every card
in well under a minute.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor import estimate
from advisor.catalog import get_gpu, load_specs
from advisor.errors import EstimateError
from advisor.estimator import build_workload, estimate_workload
from advisor.estimator._peaks import peaks
from advisor.estimator.gemm import NO_TENSOR_CORE_ARCHS, gemm_seconds, has_tensor_cores, unaligned_seconds
from advisor.estimator.ops import prepare_ops
from advisor.estimator.profiles import efficiency_for
from advisor.estimator.time import card_rates, ops_time_detail
from advisor.workload.aten_ops import FUSED_ATTENTION_BLOCK, fused_attention_work
from advisor.workload.base import OpCost, Workload
from advisor.workload.options import WorkloadOptions
from tests.benchmark_scripts import load

grid = load("monotone_grid")
CARDS = load_specs()


def _failures(found: list) -> str:
    return "\n".join(f"{v.drop:.1%} {v.preset} {v.card} {v.mode}/{v.gen_len} {v.precision} {v.axis} "
                     f"{v.before}->{v.after} (other {v.fixed}): {v.before_s:.4g} -> {v.after_s:.4g} s"
                     for v in found[:20])


@pytest.mark.parametrize("preset", grid.PRESETS)
def test_batch_sweep_is_monotone_on_every_card(preset) -> None:
    # every card, one precision of each kind (fp32, 16-bit with and without amp, a quantized one) per scenario, batch
    # 1-17 (both sides of every 16-byte alignment at 16 and 32 bits) at one token and at an odd 100
    count, found = grid.sweep([preset], CARDS, precisions=("fp32", "amp-fp16", "bf16", "int8"),
                              batches=range(1, 18), batch_seq_lens=(1, 100), seq_lens=(), seq_batches=())
    assert count > 5000
    assert not found, _failures(found)


@pytest.mark.parametrize("preset", grid.PRESETS)
def test_sequence_sweep_is_monotone(preset) -> None:
    cards = [get_gpu(c) for c in ("h100-sxm5-80gb", "a100-sxm4-80gb", "gtx-1080", "p100-pcie-16gb", "rtx-4090",
                                  "mi300x", "rx-7900-xtx", "t4")]
    seq_lens = (1, 2, 3, 7, 8, 9, 127, 128, 129, 197, 255, 256, 257, 1023, 1024, 1025)
    count, found = grid.sweep([preset], cards, precisions=("fp32", "amp-bf16", "fp16"), batches=(), seq_lens=seq_lens,
                              seq_batches=(1, 3))
    assert count > 1000
    assert not found, _failures(found)


def test_the_issue_reproduction_is_gone() -> None:
    # gpt-j-6b fp32 one token on an A100 was 0.0975 s at batch 4 and 0.0146 s at batch 5 (an unaligned GEMM priced
    # at a flat fraction of peak, below the tile model of the aligned batch)
    w = build_workload("gpt-j-6b", WorkloadOptions(batch_size=1, seq_len=1, precision="fp32", mode="infer",
                                                   optimizer=None, gen_len=0))
    card = get_gpu("a100-sxm4-80gb")
    t = [estimate_workload(w, card, batch_size=b, calibration=None).time.step_s for b in range(1, 33)]
    assert all(b >= a * 0.97 for a, b in itertools.pairwise(t))


def test_violations_are_found_where_they_are() -> None:
    # the checker itself: a step that gets 10% faster is one violation, 2% is within the tolerance
    assert grid.violations_of([(1, 1.0), (2, 0.9), (3, 0.89), (4, 1.2)]) == [(1, 2, 1.0, 0.9)]


_SHAPES = st.tuples(st.integers(1, 4096), st.integers(1, 8192), st.integers(1, 8192))


@settings(max_examples=300, deadline=None)
@given(shape=_SHAPES, arch=st.sampled_from(["hopper", "ampere"]), alignment=st.sampled_from([1, 2, 4]))
def test_an_unaligned_gemm_is_never_faster_than_its_aligned_neighbour(shape, arch, alignment) -> None:
    card = get_gpu("h100-sxm5-80gb" if arch == "hopper" else "a100-sxm4-80gb")
    rate, sms = 0.7 * card.peak_flops("bf16"), card.sm_count
    fallback = 0.12 * card.peak_flops("bf16") * alignment
    m, n, k = shape
    t = unaligned_seconds([shape], 1.0, rate_flops=rate, fallback_flops=fallback, sms=sms)
    assert t >= gemm_seconds(m, n, k, rate_flops=rate, sms=sms)  # the same shape on the grid
    down = tuple(max(8, d - d % 8) for d in shape)  # the aligned neighbour below: less or equal work
    if all(d <= s for d, s in zip(down, shape, strict=True)):
        assert t >= gemm_seconds(*down, rate_flops=rate, sms=sms) * 0.999


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 600), n=st.sampled_from([768, 4096, 50257, 30522, 11008]),
       k=st.sampled_from([768, 4096, 1000]))
def test_pricing_through_the_estimator_never_rewards_misalignment(rows, n, k) -> None:
    # the same check end to end: prepared ops on an H100 at bf16, one more row never cheaper (the rows of a step's
    # activations are not a leading dimension; a feature dimension off the grid is priced at the fallback)
    spec = get_gpu("h100-sxm5-80gb")
    tensor, vector, _ = peaks(spec, "bf16")
    rates = card_rates(spec, "bf16", efficiency_for(spec), tensor, vector)

    def seconds(m: int) -> float:
        op = OpCost("linear", "matmul", "forward", 2.0 * m * n * k, 2.0 * (m * k + k * n + m * n), 1,
                    tensor_core=True, gemms=((m, n, k),))
        return ops_time_detail(prepare_ops([op], align_elems=8, rows=(m,)), rates).per_op[0]

    assert seconds(rows + 1) >= seconds(rows) * 0.97


def test_tensor_cores_only_where_the_card_has_them() -> None:
    # the spec's own count where it gives one; the architecture rule agrees with it on every catalog card
    for spec in CARDS:
        by_name = not spec.architecture.strip().lower().startswith(NO_TENSOR_CORE_ARCHS)
        assert has_tensor_cores(spec) == by_name, spec.id
    names = {s.id for s in CARDS if not has_tensor_cores(s)}
    assert {"gtx-1080", "gtx-1080-ti", "p100-pcie-16gb", "p4", "mi50", "rx-6900-xt"} <= names
    assert not names & {"v100-sxm2-32gb", "t4", "a100-sxm4-80gb", "rx-7900-xtx", "mi300x"}
    for spec in CARDS:
        eff = efficiency_for(spec)
        for precision in (*spec.supported_precisions, "fp16", "amp-fp16"):
            try:
                tensor, vector, _ = peaks(spec, precision)
            except EstimateError:  # a precision the card refuses
                continue
            rates = card_rates(spec, precision, eff, tensor, vector)
            if not has_tensor_cores(spec):
                assert not rates.tensor_cores, (spec.id, precision)
                assert rates.unaligned_flops == rates.unaligned_conv_flops == 0.0, (spec.id, precision)
            elif precision == "fp32":  # TF32 off: SGEMM on the FP32 units (gemm.tensor_core_gemms), any alignment
                assert not rates.tensor_cores and rates.unaligned_flops == 0.0, (spec.id, precision)
            elif precision not in ("fp16", "amp-fp16") or spec.peak_flops("fp16"):
                assert rates.tensor_cores and rates.unaligned_flops > 0, (spec.id, precision)


@pytest.mark.parametrize(("card", "precision"), [("gtx-1080", "amp-fp16"), ("gtx-1080", "fp32"),
                                                 ("p100-pcie-16gb", "fp16"), ("mi50", "fp16"), ("rx-6900-xt", "fp16")])
def test_a_tensor_core_op_on_cuda_cores_is_priced_as_a_cuda_core_op(card, precision) -> None:
    # the analytic builder flags its matmuls tensor_core (gpt2's 50257-wide head is off the grid): on a card without
    # tensor cores they run cuBLAS's CUDA-core kernels, priced as the tracer's unflagged ops are, and no padding
    # advice is given
    e = estimate("gpt2", gpu=card, batch_size=3, seq_len=100, precision=precision, mode="infer", gen_len=0,
                 calibration=None)
    w = e.workload
    plain = dataclasses.replace(w, ops=tuple(dataclasses.replace(op, tensor_core=False) for op in w.ops))
    assert isinstance(plain, Workload)
    e2 = estimate_workload(plain, get_gpu(card), calibration=None)
    assert e2.time.step_s == pytest.approx(e.time.step_s, rel=1e-9)
    assert not any("alignment-1/2" in a or a.startswith("advice: pad") for a in e.assumptions)
    assert "padded" not in e.time.class_advice["gemm"]


def test_padding_is_still_advised_where_the_fallback_is_real() -> None:
    e = estimate("gpt2", gpu="h100-sxm5-80gb", batch_size=8, seq_len=1024, precision="amp-bf16", calibration=None)
    assert any(a.startswith("advice: pad") for a in e.assumptions)
    assert "padded" in e.time.class_advice["gemm"]


def test_fused_attention_tiles_are_closed_form() -> None:
    t = FUSED_ATTENTION_BLOCK
    for q in (2, 127, 128, 129, 300, 1000, 4097):
        for k in (1, 128, 129, 513, 5000):
            nq, nk = -(-q // t), -(-k // t)
            per_tile = 4.0 * 64 * t * t
            assert fused_attention_work(1, q, k, 64, True) == (
                per_tile * sum(min(nk, i + 1) for i in range(nq)), per_tile * nq)
            assert fused_attention_work(1, q, k, 64, False) == (per_tile * nq * nk, per_tile * nq)
    start = time.perf_counter()
    tiles, _ = fused_attention_work(32, 10**20, 10**20, 128, True)
    assert time.perf_counter() - start < 0.01
    nq = -(-10**20 // t)
    assert tiles == pytest.approx(4.0 * 128 * t * t * 32 * nq * (nq + 1) / 2)


def test_a_huge_sequence_is_answered_at_once() -> None:
    # the tile count looped per 128 tokens: 1e9 took 25 s, 1e20 never finished
    # (the longest sequence accepted is COUNT_LIMITS' 2**24 tokens; 1e20 is a clean error)
    from advisor.workload.options import COUNT_LIMITS, OptionError

    start = time.perf_counter()
    e = estimate("llama-3-8b", gpu="h100-sxm5-80gb", seq_len=COUNT_LIMITS["seq_len"][1], mode="infer", gen_len=0,
                 calibration=None)
    assert time.perf_counter() - start < 5
    assert e.time.step_s > 1e5
    with pytest.raises(OptionError, match="seq_len"):
        estimate("llama-3-8b", gpu="h100-sxm5-80gb", seq_len=10**20, mode="infer", gen_len=0, calibration=None)
