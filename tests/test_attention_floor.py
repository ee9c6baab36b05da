"""AOTriton's fused-attention backward floor on CDNA (profile figures ``attention_backward_call_us`` / ``_block_us``).

PyTorch's SDPA benchmark (pytorch/pytorch#138947, AOTRITON table, MI300X, b1 h16 d128 bf16) timed the backward at
450 / 586 / 839 us per call at sequence 128 / 256 / 512 causal (417 / 537 / 800 non-causal): compute that the tile
model prices in tens of microseconds.  The profile's floor must reproduce those rows, leave the rows whose work
exceeds it alone, and touch no NVIDIA card.
"""

from __future__ import annotations

import pytest

from advisor.catalog import get_gpu
from advisor.estimator import profiles
from advisor.estimator._peaks import peaks
from advisor.estimator.ops import prepare_ops
from advisor.estimator.time import card_rates, ops_time_detail
from advisor.workload.aten_ops import FUSED_ATTENTION_BACKWARD_WORK, fused_attention_work
from advisor.workload.base import OpCost

#: (sequence, causal, backward us per call): pytorch#138947's AOTRITON rows (MI300X, b1 h16 d128 bf16).
MI300X_AOTRITON_BACKWARD = ((128, True, 450.48), (256, True, 585.76), (512, True, 839.17),
                            (128, False, 417.15), (256, False, 536.67), (512, False, 800.20))


def _sdpa(batch: int, heads: int, seq: int, d: int, causal: bool, layers: int = 1) -> list[OpCost]:
    """One SDPA forward and backward per layer, as the transformer builder records them (2 backward launches)."""
    tiles, blocks = fused_attention_work(batch * heads, seq, seq, d, causal)
    fl = 4.0 * batch * heads * seq * seq * d * (0.5 if causal else 1.0)
    w = FUSED_ATTENTION_BACKWARD_WORK
    return [OpCost("attn", "attention", "forward", fl * layers, 1e6, layers, True, d, tile_flops=tiles * layers,
                   block_flops=blocks * layers),
            OpCost("attn.grad", "attention", "backward", w * fl * layers, 2.5e6, 2 * layers, True, d,
                   tile_flops=w * tiles * layers, block_flops=w * blocks * layers)]


def _backward_s(gpu: str, batch: int, heads: int, seq: int, d: int, causal: bool, layers: int = 1,
                seq_known: bool = True) -> float:
    spec = get_gpu(gpu)
    tensor, vector, _ = peaks(spec, "amp-bf16")
    rates = card_rates(spec, "amp-bf16", profiles.efficiency_for(spec), tensor, vector)
    ops = prepare_ops(_sdpa(batch, heads, seq, d, causal, layers), seq_len=seq if seq_known else None)
    return ops_time_detail(ops, rates).per_op[1]


@pytest.mark.parametrize(("seq", "causal", "measured_us"), MI300X_AOTRITON_BACKWARD)
def test_mi300x_backward_per_call_matches_pytorch_sdpa_benchmark(seq: int, causal: bool, measured_us: float) -> None:
    predicted_us = _backward_s("mi300x", 1, 16, seq, 128, causal) * 1e6
    assert predicted_us == pytest.approx(measured_us, rel=0.20), (seq, causal, predicted_us)


def test_floor_is_per_call_and_yields_to_large_work() -> None:
    one = _backward_s("mi300x", 1, 16, 512, 128, True)
    assert _backward_s("mi300x", 1, 16, 512, 128, True, layers=12) == pytest.approx(12 * one, rel=1e-9)
    # a batch whose tiles take longer than the floor is priced by its work (the floor no longer binds)
    big = _backward_s("mi300x", 512, 32, 4096, 128, True)
    spec = get_gpu("mi300x")
    floor_call, floor_block = profiles.efficiency_for(spec).attention_backward_floor
    assert big > 1.5 * (floor_call + floor_block * 4096 / 128)


def test_without_a_sequence_the_query_blocks_are_a_lower_bound() -> None:
    # non-causal: tiles per query block = the query blocks (exact); causal: fewer (a floor below the measured)
    exact = _backward_s("mi300x", 1, 16, 512, 128, False, seq_known=False)
    assert exact == pytest.approx(_backward_s("mi300x", 1, 16, 512, 128, False), rel=1e-9)
    assert _backward_s("mi300x", 1, 16, 512, 128, True, seq_known=False) < _backward_s("mi300x", 1, 16, 512, 128, True)


def test_cdna2_inherits_the_floor_and_nvidia_has_none() -> None:
    cdna2 = profiles.profile_by_id("cdna2")
    assert cdna2.figures["attention_backward_call_us"].inherited_from == "cdna3"
    assert profiles.efficiency_for(get_gpu("mi250")).attention_backward_floor == \
        profiles.efficiency_for(get_gpu("mi300x")).attention_backward_floor
    h100 = _backward_s("h100-sxm5-80gb", 1, 16, 128, 128, True)
    assert h100 < 100e-6  # cuDNN's backward: 69 us per call at this shape on an H100 (pytorch#130482)
    assert profiles.efficiency_for(get_gpu("h100-sxm5-80gb")).attention_backward_floor == (0.0, 0.0)
