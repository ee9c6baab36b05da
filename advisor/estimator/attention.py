"""Fused attention: 16-bit FlashAttention / cuDNN kernels priced by the tiles they compute, then their exponentials.

A traced or analytic attention call carries its tile work (``OpCost.tile_flops``: the (query block x key block)
tiles computed, padding and causal diagonals included) and its query blocks (``OpCost.block_flops``).  Each tile
runs its two GEMMs and then exponentiates its scores on the special-function units, one after the other, so a
tile FLOP costs 1 / GEMM rate + 1 / (4 x head dim x exponential rate) (``price_attention``).
Where 16-bit attention runs such kernels is the card's profile's ``fused_attention`` (sm80+); elsewhere attention
is priced at its FLOPs.  The measurements behind the figures: docs/estimates.md, "Fused attention".

Some families' backward kernels also have a per-call floor (the profile's ``attention_backward_call_us`` and
``attention_backward_block_us``): AOTriton's backward on CDNA runs few thread blocks at small batch x heads, each
walking every query block of the sequence, so a call takes at least a fixed time plus a time per 128-token query
block however little it computes (``backward_calls``; the estimator takes the max with the tile / FLOP time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from advisor.estimator.gemm import matmul_seconds
from advisor.estimator.index_bound import bytes_seconds
from advisor.estimator.pricing import BACKWARD, register
from advisor.workload.aten_ops import FUSED_ATTENTION_BACKWARD_WORK, FUSED_ATTENTION_BLOCK
from advisor.workload.base import OpCost

if TYPE_CHECKING:
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

#: The backward's rate per FLOP over the forward's (five tile GEMMs to two, scores exponentiated again; H200
#: profile, five 16-bit cases: 0.74-0.85, median).  Not applied to fp32's memory-efficient kernel.
ATTENTION_BACKWARD_RATE = 0.76
#: Each query block's fixed cost (loading its queries, rescaling and writing its output), in tiles.
FUSED_ATTENTION_BLOCK_TILES = 1.25
#: Exponentials per SM per clock on NVIDIA's special-function units (MUFU.EX2), taken at the boost clock
#: (FlashAttention-3, Shah et al. 2024, section 3.1; the CUDA C++ Programming Guide's throughput table, cc 7.x-9.0).
SFU_EXPONENTIALS_PER_SM_CYCLE = 16
ATTENTION_SOURCE = ("16-bit fused attention priced by the tiles its kernels compute (128 x 128 blocks: padded "
                    "sequences, causal diagonals and each query block's fixed cost counted), each tile's GEMMs then "
                    f"its exponentials on the special-function units ({SFU_EXPONENTIALS_PER_SM_CYCLE} per SM per "
                    "clock), one after the other")


def attention_tiles(op: OpCost) -> float:
    """The op's fused-attention work in tile FLOPs: its tiles plus each query block's fixed cost (0: not fused)."""
    return op.tile_flops + FUSED_ATTENTION_BLOCK_TILES * op.block_flops


def backward_calls(ops: Sequence[OpCost], seq_len: int | None) -> dict[int, tuple[float, float]]:
    """Per fused-attention backward op (by index in ``ops``): (its calls, query blocks each call walks).

    The calls come from the forward's block work per call (forward ops count one launch per call however the
    backward's launches are counted), the query blocks from the sequence (``seq_len``), else from the tiles per
    query block (exact without a causal mask, a lower bound with one).  Empty when the step has no forward
    fused attention (inference, or ops of another origin).
    """
    fwd = [op for op in ops if op.kind == "attention" and op.phase == "forward" and op.block_flops and op.count]
    if not fwd:
        return {}
    per_call = sum(op.block_flops for op in fwd) / sum(op.count for op in fwd)
    out = {}
    for i, op in enumerate(ops):
        if op.kind == "attention" and op.phase == "backward" and op.block_flops:
            blocks = (math.ceil(seq_len / FUSED_ATTENTION_BLOCK) if seq_len
                      else op.tile_flops / op.block_flops)
            out[i] = (op.block_flops / (FUSED_ATTENTION_BACKWARD_WORK * per_call), float(blocks))
    return out


@register("attention")
def price_attention(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """Attention: fused kernels' tiles, else FLOPs (``matmul_seconds``), against its bytes, over the call floor.

    Where the card runs fused kernels, each tile's GEMMs and then its exponentials, the backward at
    ``ATTENTION_BACKWARD_RATE``; no faster than the family's per-call floor (``backward_calls``).
    """
    base = rates.peaks[op.cls]
    bwd_rate = rates.attention_backward_rate if op.phase == BACKWARD else 1.0
    flops, peak, dim = op.flops, base * bwd_rate, op.min_dim
    if op.tiles and rates.exponentials_s and dim:
        rate = 1.0 / (1.0 / base + 1.0 / (4.0 * dim * rates.exponentials_s))
        flops, peak, dim = op.tiles, rate * bwd_rate, 0
    tc = matmul_seconds(op, rates, flops, peak, dim)
    tm = bytes_seconds(op, rates, rates.memory_bytes_s)
    t = max(tc, tm)
    floor_call, floor_block = rates.attention_backward_floor
    if op.attention_calls and floor_call:
        floor = op.attention_calls * (floor_call + floor_block * op.attention_blocks)
        if floor > t:
            tc, t = floor, floor
    return tc, tm, t
