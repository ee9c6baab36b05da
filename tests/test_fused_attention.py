"""Fused attention priced by the tiles its kernels compute (``advisor.workload.aten_ops.fused_attention_work``).

FlashAttention-style kernels compute whole (query block x key block) tiles: a sequence that ends inside a block pays
for the block, a causal kernel skips the tiles above the diagonal but not the diagonal ones, and each query block's
thread block has a fixed cost.  The tracer and the analytic builders record that work (``OpCost.tile_flops``,
``block_flops``); on cards that run the fused 16-bit kernels the estimator prices each tile's GEMMs at the GEMM rate
and then its exponentials on the special-function units, and by FLOPs elsewhere.  The fitted figures (tiles per
block, the backward's rate) are reproduced from the H200 profile in tests/test_index_bound.py.
"""

from __future__ import annotations

import pytest

from advisor import estimate
from advisor.catalog import get_gpu
from advisor.estimator import profiles
from advisor.estimator.attention import (
    ATTENTION_BACKWARD_RATE,
    ATTENTION_SOURCE,
    FUSED_ATTENTION_BLOCK_TILES,
    SFU_EXPONENTIALS_PER_SM_CYCLE,
)
from advisor.estimator.ops import prepare_ops
from advisor.estimator.time import card_rates, ops_time_detail
from advisor.workload import OpCost, load_workload
from advisor.workload.aten_ops import FUSED_ATTENTION_BLOCK, fused_attention_work

TILE = 4.0 * 64 * FUSED_ATTENTION_BLOCK**2  # FLOPs of one 128 x 128 tile at head dim 64


def test_tiles_count_padding_causal_diagonals_and_blocks() -> None:
    # ViT-B/16: 197 tokens fill two 128-row blocks: 2 x 2 tiles, 2 query blocks, per (batch, head)
    assert fused_attention_work(1, 197, 197, 64, False) == (4 * TILE, 2 * TILE)
    # GPT-2 at 1024, causal: 8 blocks, 1 + 2 + ... + 8 = 36 of the 64 tiles (not 32), 8 query blocks
    assert fused_attention_work(1, 1024, 1024, 64, True) == (36 * TILE, 8 * TILE)
    assert fused_attention_work(12, 512, 512, 64, False) == (12 * 16 * TILE, 12 * 4 * TILE)  # linear in heads
    assert fused_attention_work(1, 256, 1024, 64, True)[0] == (1 + 2) * TILE  # top-left causal: keys 0..i
    assert fused_attention_work(1, 1, 4096, 64, True) == (0.0, 0.0)  # one query (decoding): priced by its bytes


def _traced_attention(causal: bool, mask: bool = False) -> dict[str, OpCost]:
    import torch
    import torch.nn.functional as F

    from advisor.workload.trace import trace_module

    class Attend(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(256, 768)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).view(2, 300, 3, 4, 64).permute(2, 0, 3, 1, 4)
            m = torch.ones(300, 300, dtype=torch.bool).tril() if mask else None
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, attn_mask=m).sum()

    w = trace_module(Attend(), (torch.randn(2, 300, 256),), precision="bf16", optimizer="sgd", mode="train",
                     loss_fn=lambda out: out)
    return {o.phase: o for o in w.ops if o.kind == "attention"}


@pytest.mark.parametrize("causal", [False, True])
def test_the_tracer_records_each_calls_tiles_and_head_dim(causal: bool) -> None:
    ops = _traced_attention(causal)
    tiles, blocks = fused_attention_work(2 * 4, 300, 300, 64, causal)  # 300 tokens: 3 blocks of 128
    assert ops["forward"].tile_flops == pytest.approx(tiles) and ops["forward"].block_flops == pytest.approx(blocks)
    assert ops["backward"].tile_flops == pytest.approx(2.5 * tiles)  # five tile GEMMs to the forward's two
    assert ops["forward"].min_dim == 64  # the head dim: FLOPs per exponential


def test_leading_dimensions_all_count_as_score_matrices() -> None:
    import torch
    import torch.nn.functional as F

    from advisor.workload.trace import trace_module

    class Folded(torch.nn.Module):  # (batch x heads, seq, head dim): SDPA takes any leading dims
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(64, 192)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).view(8, 200, 3, 64).permute(2, 0, 1, 3)
            return F.scaled_dot_product_attention(q, k, v).sum()

    w = trace_module(Folded(), (torch.randn(8, 200, 64),), precision="bf16", optimizer="sgd", mode="train",
                     loss_fn=lambda out: out)
    fwd = next(o for o in w.ops if o.kind == "attention" and o.phase == "forward")
    assert (fwd.tile_flops, fwd.block_flops) == fused_attention_work(8, 200, 200, 64, False)


def test_a_traced_preset_scales_its_tiles_with_the_batch() -> None:
    # presets are traced at two small batches and scaled linearly: the tile work of ViT-B/16 at batch 48 is 12 layers
    # of 48 x 12 score matrices of 197 tokens, exactly
    w = load_workload("vit-b16", batch_size=48, image_size=224, precision="bf16", mode="train", optimizer="adamw")
    fwd = next(o for o in w.ops if o.kind == "attention" and o.phase == "forward")
    tiles, blocks = fused_attention_work(48 * 12, 197, 197, 64, False)
    assert (fwd.tile_flops, fwd.block_flops, fwd.min_dim) == (pytest.approx(12 * tiles), pytest.approx(12 * blocks), 64)


def test_an_explicit_mask_skips_no_tiles() -> None:
    ops = _traced_attention(causal=False, mask=True)
    assert ops["forward"].tile_flops == pytest.approx(fused_attention_work(8, 300, 300, 64, False)[0])


def test_fused_attention_is_priced_by_its_tiles_where_the_card_runs_the_fused_kernels() -> None:
    tiles, blocks = 3e12, 1e12
    fwd = OpCost("aten.sdpa", "attention", "forward", 1e12, 1e6, tensor_core=True, min_dim=64, tile_flops=tiles,
                 block_flops=blocks)
    bwd = OpCost("aten.sdpa_backward", "attention", "backward", 2.5e12, 2.5e6, tensor_core=True, min_dim=64,
                 tile_flops=2.5 * tiles, block_flops=2.5 * blocks)
    h200 = get_gpu("h200-sxm-141gb")
    rates = card_rates(h200, "bf16", profiles.defaults_for("Hopper"), 989e12, 67e12)
    t = ops_time_detail(prepare_ops([fwd, bwd]), rates).per_op
    work = tiles + FUSED_ATTENTION_BLOCK_TILES * blocks
    exponentials_s = h200.sm_count * h200.boost_clock_mhz * 1e6 * SFU_EXPONENTIALS_PER_SM_CYCLE
    # the tiles' GEMMs, then one exponential per score (4 x head dim FLOPs), one after the other
    assert t[0] == pytest.approx(work / rates.tensor_flops + work / (4 * 64) / exponentials_s, rel=1e-6)
    assert t[1] == pytest.approx(2.5 * t[0] / ATTENTION_BACKWARD_RATE, rel=1e-6)
    # a wider head runs more FLOPs per exponential: less time per tile FLOP, the GEMM time alone the limit
    wide = OpCost("aten.sdpa", "attention", "forward", 2e12, 1e6, tensor_core=True, min_dim=128,
                  tile_flops=2 * tiles, block_flops=2 * blocks)
    assert 2 * work / rates.tensor_flops < ops_time_detail(prepare_ops([wide]), rates).per_op[0] < 2 * t[0]
    # a card with fewer tensor FLOPs per exponential loses less to the softmax: Ampere's A100 against the H200
    a100 = card_rates(get_gpu("a100-sxm4-80gb"), "bf16", profiles.defaults_for("Ampere"), 312e12, 19.5e12)
    share = [1 - work / r.tensor_flops / ops_time_detail(prepare_ops([fwd]), r).per_op[0] for r in (rates, a100)]
    assert share[1] < share[0]
    # fp32 (the memory-efficient kernel) and cards without the fused kernels: the counted FLOPs, as before
    for gpu, arch, precision in (("h200-sxm-141gb", "Hopper", "fp32"), ("v100-sxm2-16gb", "Volta", "fp16")):
        other = card_rates(get_gpu(gpu), precision, profiles.defaults_for(arch), 100e12, 10e12)
        assert other.exponentials_s == 0.0
        plain = ops_time_detail(prepare_ops([fwd]), other).per_op[0]
        assert plain == pytest.approx(1e12 / (other.tensor_flops * 64 / (64 + other.half_dim)), rel=1e-6)


def test_the_analytic_builders_attention_carries_its_tiles_and_the_estimate_says_so() -> None:
    w = load_workload("gpt2", batch_size=4, seq_len=1024, precision="bf16", attention="sdpa")
    core = {o.phase: o for o in w.ops if o.name.startswith("layers.*.attn.core")}
    tiles, blocks = fused_attention_work(4 * 12, 1024, 1024, 64, True)
    assert core["forward"].tile_flops == pytest.approx(12 * tiles)  # 12 layers
    assert core["backward"].block_flops == pytest.approx(12 * 2.5 * blocks)
    eager = load_workload("gpt2", batch_size=4, seq_len=1024, precision="bf16", attention="eager")
    assert not any(o.tile_flops for o in eager.ops)  # matmul + softmax + matmul: priced as those
    on_h100 = estimate("gpt2", "h100-sxm5-80gb", batch_size=4, seq_len=1024, precision="bf16", calibration="none")
    on_v100 = estimate("gpt2", "v100-sxm2-16gb", batch_size=4, seq_len=1024, precision="fp16", calibration="none")
    assert ATTENTION_SOURCE in on_h100.assumptions and ATTENTION_SOURCE not in on_v100.assumptions


def test_sdpa_with_dropout_is_traced_as_the_fused_kernel_a_gpu_runs() -> None:
    """Hugging Face's BERT/GPT-2 train SDPA with dropout 0.1: one fused kernel on a GPU, the math path on the CPU."""
    import torch
    import torch.nn.functional as F

    from advisor.workload.trace import trace_module

    class Attend(torch.nn.Module):
        def __init__(self, dropout: float) -> None:
            super().__init__()
            self.qkv, self.dropout = torch.nn.Linear(256, 768), dropout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).view(2, 300, 3, 4, 64).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0).sum()

    def trace(dropout: float) -> object:
        return trace_module(Attend(dropout), (torch.randn(2, 300, 256),), precision="bf16", optimizer="sgd",
                            mode="train", loss_fn=lambda out: out)

    plain, dropped = trace(0.0), trace(0.1)
    fused = {o.name for o in plain.ops if o.kind == "attention"}
    assert fused and {o.name for o in dropped.ops if o.kind == "attention"} == fused
    assert not any("bmm" in o.name or "softmax" in o.name for o in dropped.ops)  # no math path
    assert dropped.activation_bytes == plain.activation_bytes  # no (batch, heads, s, s) probabilities saved
