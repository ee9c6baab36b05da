"""QLoRA's dequantization kernels: what a bitsandbytes NF4 base costs each time a linear layer runs.

bitsandbytes' ``Linear4bit`` (0.41-0.44, what QLoRA recipes of PEFT and LitGPT ran) calls ``MatMul4Bit``: its forward
is ``F.linear(A, dequantize_4bit(B, quant_state).to(A.dtype).t())`` and its backward dequantizes again for the input
gradient (``grad_output @ dequantize_4bit(B).t()``); a checkpointed block's recompute runs the forward again.  Each
``dequantize_4bit`` of a double-quantized weight launches three kernels: the 8-bit absmax back to fp32 (one per 64
weights), the offset added to it, and ``kDequantizeBlockwise``, which reads the packed 4-bit weight and writes a full
16-bit copy for the 16-bit GEMM that follows.

That last kernel is bound by its per-element work, not by bytes: each NF4 nibble is decoded through a tree of
branches (``dDequantizeNF4``) before bitsandbytes 0.48 replaced it with a warp-shuffled lookup table, 1.4-2.1x faster
on A100 / H100 (bitsandbytes-foundation/bitsandbytes#1747).  It is priced as the other index-computing kernels are
(``advisor.estimator.index_bound.STRIDED_ELEMENTS_PER_SM_CYCLE``: the slower of its bytes and ~1.15 elements per SM per
cycle), which on an A100-SXM4-40GB is 1.75e11 weights/s; LitGPT's resource tables (A100-SXM4-40GB, bitsandbytes
0.41.1, tests/data/qlora/step_times.csv) put the NF4 step's extra time at 1.64e11 (Llama 2 7B) and 1.33e11 (13B)
weights per second over the forward and backward passes.  Far below the copy bandwidth: on a GEMM-heavy step (many
tokens per micro-batch) the dequantization is a few percent, on a short one (LitGPT's Alpaca micro-batches of one
sample) half of the step.

Pure arithmetic, no torch.
"""

from __future__ import annotations

from advisor.precision import NF4_BYTES_PER_WEIGHT
from advisor.workload.transformer_ops import OpList

#: Kernels one ``dequantize_4bit`` of a double-quantized weight launches: the absmax's 8-bit blockwise dequantization,
#: the offset added to it, the NF4 blockwise dequantization.
DEQUANT_KERNELS = 3
#: Bytes per weight of the absmax kernels (one 8-bit absmax read, one fp32 written and then read and written by the
#: offset's add, per block of 64 weights).
_ABSMAX_BYTES_PER_WEIGHT = (1 + 4 + 8) / 64

SOURCE = ("bitsandbytes MatMul4Bit (0.41-0.44): dequantize_4bit to a 16-bit copy before each forward and each "
          "input-gradient matmul (3 kernels with double quantization: absmax, offset, kDequantizeBlockwise); the NF4 "
          "decode is bound by elements per SM cycle (the estimator's index-bound rate), checked against LitGPT's "
          "resource tables (A100-SXM4-40GB, bitsandbytes 0.41.1): tests/data/qlora/step_times.csv")


def dequant_bytes_per_weight() -> float:
    """Device bytes one dequantization moves per weight: the NF4 weight and constants read, a 16-bit copy written."""
    return NF4_BYTES_PER_WEIGHT + 2.0 + _ABSMAX_BYTES_PER_WEIGHT


def add_dequant(ops: OpList, label: str, weights: float, count: int, *, linears: int, train: bool) -> None:
    """The dequantization of ``weights`` NF4 weights (per repetition, ``linears`` separate layers), before each matmul.

    Forward (and, through the builder's recompute, again in a checkpointed block), and in backward for the input
    gradient when training; every weight is an index-bound element (see the module docstring).
    """
    nbytes = weights * dequant_bytes_per_weight()
    ops.add_index_bound(label + ".dequant", "elementwise", "forward", nbytes, count, weights,
                        launches=DEQUANT_KERNELS * linears)
    if train:
        ops.add_index_bound(label + ".dequant.grad", "elementwise", "backward", nbytes, count, weights,
                            launches=DEQUANT_KERNELS * linears)
