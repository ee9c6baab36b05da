"""Fused attention: 16-bit FlashAttention / cuDNN kernels priced by the tiles they compute, then their exponentials.

A traced or analytic attention call carries its tile work (``OpCost.tile_flops``: the (query block x key block)
tiles computed, padding and causal diagonals included) and its query blocks (``OpCost.block_flops``).  Each tile
runs its two GEMMs and then exponentiates its scores on the special-function units, one after the other, so a
tile FLOP costs 1 / GEMM rate + 1 / (4 x head dim x exponential rate) (``advisor.estimator.time.ops_time_detail``).
Where 16-bit attention runs such kernels is the card's profile's ``fused_attention`` (sm80+); elsewhere attention
is priced at its FLOPs.  The measurements behind the figures: docs/estimates.md, "Fused attention".
"""

from __future__ import annotations

from advisor.workload.base import OpCost

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
