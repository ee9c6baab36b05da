"""Step time: a roofline per op, with shape-aware efficiencies, launch overhead and host dispatch.

For every ``OpCost``: max(flops / (peak x compute efficiency), bytes / (bandwidth x memory
efficiency)) + count x launch overhead.  In PyTorch eager the host dispatches every op and the GPU
runs behind it asynchronously: the host's side (dispatch, launch calls, the per-phase floor and the launch
queue's replay) is ``advisor.estimator.host``.  Tensor-core ops
(``tensor_core`` matmul / conv / attention) use the peak of the workload's precision; everything
else the vector peak (FP32, or the 16-bit vector rate where the card lists one).  The compute
efficiency falls for small ops (``efficiency.compute_efficiency``).  Pure arithmetic over tuples
prepared once per workload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from advisor.errors import EstimateError
from advisor.estimator._peaks import matmul_rate
from advisor.estimator.efficiency import HALF_DIM_REF, REF_SMS
from advisor.estimator.gemm import (
    aligned,
    common_alignment,
    gemm_flops,
    has_tensor_cores,
    shape_seconds,
    tensor_core_gemms,
    unaligned_fraction,
    unaligned_seconds,
)
from advisor.precision import master_bytes
from advisor.workload.aten_ops import label_op, winograd_label
from advisor.workload.base import OpCost
from advisor.workload.costs import compute_bytes

# Op classes (ints keep the per-card loop cheap).
TENSOR, CONV, MATMUL_VECTOR, VECTOR, CONV_3X3 = 0, 1, 2, 3, 4
CONV_CLASSES = (CONV, CONV_3X3)
#: What ``estimate --breakdown`` reports time by (an op's ``kind`` decides its group).
GROUPS: tuple[str, ...] = ("gemm", "attention", "conv", "norm", "elementwise", "optimizer", "communication",
                           "other")
_GROUP_OF_KIND = {"matmul": 0, "recurrent": 0, "attention": 1, "conv": 2, "norm": 3, "elementwise": 4,
                  "reduction": 4, "embedding": 4, "optimizer": 5, "communication": 6}
_NORM = GROUPS.index("norm")
PHASES: tuple[str, ...] = ("forward", "backward", "optimizer", "prefill", "decode")
#: ``eager``: PyTorch eager (host dispatch can bound a phase); ``graph``: CUDA graphs / compiled runtimes.
RUNTIMES: tuple[str, ...] = ("eager", "graph")


def check_runtime(runtime: Any) -> None:
    """Refuse a runtime name outside ``RUNTIMES``, naming the accepted ones."""
    if runtime not in RUNTIMES:
        raise EstimateError(f"unknown runtime {runtime!r}", hint=f"accepted: {', '.join(RUNTIMES)}")

class PreparedOp(NamedTuple):
    """One op as the pricing loop reads it (``prepare_ops``): a tuple, so the hot loop unpacks it.

    ``plan`` is the GEMM plan: ``None`` (priced by ``min_dim``), ``(repetitions, shapes)`` or, for a tensor-core
    GEMM off the 16-byte grid, ``(repetitions, shapes, alignment)`` (the alignment in elements its dimensions do
    have).  ``library`` names the host cost each of its calls adds beyond a generic op
    (``advisor.estimator.host.LIBRARY_CALL_HOST_OPS``): ``conv``, ``recurrent``, ``embedding`` (an embedding's
    backward, ``count`` calls), ``attention`` (a fused 16-bit attention call: tile work on tensor cores; fp32's
    memory-efficient kernel is another library, unmeasured), ``gemm`` (a BLAS call) or ``""``.
    """

    flops: float
    bytes: float
    calls: int  # the op's count (kernel calls per step)
    cls: int  # TENSOR, CONV, ... (``op_class``)
    min_dim: int  # 0: unknown
    phase: int  # index in PHASES
    group: int  # index in GROUPS
    plan: Any
    bn_elements: float  # NCHW training batch-norm elements (BN_NCHW_ELEMENTS_PER_SM_CYCLE)
    transpose_bytes: float  # NCHW<->NHWC layout-transpose bytes (LAYOUT_SOURCE)
    steps: int  # dependent serial steps (a recurrent layer)
    strided: float  # index-bound elements (STRIDED_ELEMENTS_PER_SM_CYCLE units)
    tiles: float  # fused attention tile work
    library: str

#: An embedding's backward, traced (``aten.embedding_dense_backward``) or from the analytic builders (one call per
#: embedding table): on CUDA a sort of the indices and a segmented sum, some twenty kernels (see ``host.py``).
EMBEDDING_BACKWARDS = ("aten.embedding_dense_backward", "embedding.grad")

#: cuDNN's NCHW training batch norm (``bn_fw_tr_1C11`` / ``bn_bw_1C11`` kernels: one block row per channel,
#: several passes) is bound by its per-element work, not by bytes: the H200 profile of ResNet-50 measured
#: 0.373 G elements/ms for fp16 and 0.342 for fp32 (profile-ops.json: the BN kernels of the b128 training steps),
#: i.e. 1.37 elements per SM per cycle at 132 SMs x 1.98 GHz.  Priced so on every card with a known SM count and
#: clock, or by its bytes where that is slower (the H100 rows check it).
BN_NCHW_ELEMENTS_PER_SM_CYCLE = 1.37
#: cuDNN's tensor-core convolutions take NHWC: on NCHW tensors (PyTorch's default layout) each convolution call
#: (forward, data and weight gradient) launches an nchwToNhwc transpose, and some an nhwcToNchw one back (H200
#: profile of ResNet-50: 158 + 68 transposes per step for 159 conv calls, 6.3 ms of 42.6); taken as one more
#: read and write of the call's own tensors.  channels_last models do not pay it.
#: The transposes are bound by elements, not bytes: the H200 profile's nchwToNhwc / nhwcToNchw kernels took 6.25 ms
#: at fp16 and 7.28 ms at fp32 for the same 6.99 G elements the rule above charges ResNet-50 b128 (4.28 and 3.67
#: elements per SM per boost cycle, median 3.98: benchmarks/strided_rates.py), where bytes would halve the fp16
#: time.  A transpose takes the slower of its bytes and its elements.
LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE = 4.0
LAYOUT_SOURCE = ("cuDNN transposes NCHW tensors to NHWC for every tensor-core convolution call (one more read + "
                 "write of the call's tensors, at the slower of the bandwidth and "
                 f"~{LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE:g} elements per SM per cycle) and runs NCHW training "
                 "batch norm at ~1.4 elements per SM per cycle (H200 profile of ResNet-50); channels_last "
                 "(estimate(..., channels_last=True)) avoids both")
#: Elementwise kernels off TensorIterator's vectorized path (an operand broadcast, non-contiguous or cast; ``cat``
#: along an inner dimension) compute an offset per operand per element (integer divisions per dimension) and load
#: one element at a time: they are bound by elements per SM cycle, not bytes.  MEASURED in the H200 profile
#: (profile-ops.json, torch 2.11), each non-vectorized kernel against the elements the trace gives its ops
#: (benchmarks/strided_rates.py): broadcast bf16/fp32 mul, strided add, neg, the unrolled bf16->fp32 cast,
#: transposing clones, RoPE's inner-dimension cat and BERT's stack of its permuted q/k/v gradients, in llama-small,
#: bert-base, gpt2 and vit-b16 (12 ops with >= 0.1 G such elements per step): 0.91-1.49 elements per SM per boost
#: cycle (132 SMs x 1.98 GHz), median 1.15, whatever the dtype (the NCHW batch norm's 1.37 is the same kind of
#: bound).  A group is priced at the slower of its bytes and its elements.  Fitted on the H200 profile only: the
#: H100 rows (same SM count and clock, 30% less bandwidth) check it.
STRIDED_ELEMENTS_PER_SM_CYCLE = 1.15
#: Reductions across rows (``sum`` over the batch keeping the innermost dimension: every bias gradient): the same
#: profile's ``reduce_kernel`` times against the elements reduced (bert-base, gpt2, llama-small, vit-b16: 6 ops,
#: 1.51-2.91, median 2.54).
COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE = 2.5
COLUMN_REDUCE_RATIO = STRIDED_ELEMENTS_PER_SM_CYCLE / COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE  # in elementwise units
#: NCHW max pooling (``advisor.workload.aten_ops.MAX_POOLS``: a thread per output element forward, per input element
#: backward, each dividing its flat index into n, c, h, w and looping over its windows): the same profile's
#: ``max_pool_forward_nchw`` / ``max_pool_backward_nchw`` kernels against those threads (benchmarks/strided_rates.py;
#: ResNet-50's 3x3/2 pool at fp16 and fp32, mnist-cnn's two 2x2/2 pools): forward 0.24-0.30 output elements per SM
#: per cycle (median 0.24), backward with its zero fill of the input gradient 0.32-0.34 input elements (median 0.33),
#: whatever the window; their bytes at the bandwidth gave a quarter of that time.  Channels-last tensors take the
#: NHWC kernels (unmeasured: priced by bytes).  Fitted on the H200 profile only.
MAX_POOL_ELEMENTS_PER_SM_CYCLE: dict[str, float] = {"max_pool2d_with_indices": 0.24,
                                                    "max_pool2d_with_indices_backward": 0.33}
STRIDED_SOURCE = (f"elementwise ops with a broadcast, non-contiguous or cast operand run TensorIterator's "
                  f"index-computing kernels at ~{STRIDED_ELEMENTS_PER_SM_CYCLE:g} elements per SM per cycle, "
                  f"reductions across rows at ~{COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE:g} (H200 profile: "
                  "benchmarks/strided_rates.py), not at the memory bandwidth")
POOL_SOURCE = ("NCHW max pooling runs a thread per output element forward and per input element backward at "
               f"~{MAX_POOL_ELEMENTS_PER_SM_CYCLE['max_pool2d_with_indices']:g} and "
               f"~{MAX_POOL_ELEMENTS_PER_SM_CYCLE['max_pool2d_with_indices_backward']:g} per SM per cycle (H200 "
               "profile: benchmarks/strided_rates.py), not at the memory bandwidth; channels_last avoids it")
#: cuDNN runs 3x3 stride-1 convolutions that take the CUDA cores (fp32 on cards without TF32 tensor cores: Pascal,
#: Volta, Turing) with its Winograd algorithms where they are fastest (cudnn.benchmark, and its heuristics for
#: such layers): F(2x2, 3x3) computes a 2x2 output tile with 16 multiplies instead of 36, 2.25x fewer (Lavin & Gray,
#: "Fast Algorithms for Convolutional Neural Networks", CVPR 2016; F(4x4, 3x3) saves 4x, with costlier transforms).
#: Taken at the smaller reduction on the same achieved rate.  Without it a published fp32 ResNet-50 on a T4 would
#: beat the card's FP32 peak (1,142 images/s x 8.2 GFLOP = 9.4 TFLOP/s of 8.1): the work done is not the direct
#: convolution's.  Tensor-core convolutions (TF32, 16-bit) run implicit GEMMs at the FLOPs counted.
WINOGRAD_MULTIPLY_REDUCTION = 2.25
WINOGRAD_SOURCE = (f"3x3 stride-1 fp32 convolutions on CUDA cores run cuDNN's Winograd algorithms: "
                   f"{WINOGRAD_MULTIPLY_REDUCTION:g}x fewer multiplies (F(2x2,3x3), Lavin & Gray 2016)")
#: A fused attention kernel's backward (FlashAttention-style: it recomputes the scores and their exponentials and runs
#: five GEMMs to the forward's two, 2.5x the FLOPs, plus dQ's accumulation) runs below the forward's rate per FLOP: in
#: the H200 profile's five 16-bit cases (GPT-2 amp and bf16 b16 s1024, llama-small b8 s2048, BERT-base b16 s512,
#: ViT-B/16 b64 s197; head dim 64) at 0.74-0.85 of the forward's tile-model rate (``FUSED_ATTENTION_BLOCK_TILES``),
#: median 0.76 (benchmarks/strided_rates.py).  fp32 runs the memory-efficient kernel, whose backward measured 2.1x
#: its forward's time (bert-base fp32: not slower per FLOP): not applied there.
ATTENTION_BACKWARD_RATE = 0.76
#: 16-bit fused attention's work as its kernels do it (``OpCost.tile_flops``: the (query block x key block) tiles
#: computed, padding and causal skipping included; ``block_flops``: one tile per query block, each thread block's
#: fixed cost of loading its queries and rescaling and writing its output) is priced as tiles + this many tiles per
#: block.  Each tile runs its two GEMMs (4 x head dim FLOPs per score) and then exponentiates its scores on the
#: special-function units, one after the other (FlashAttention-2, cuDNN): ``SFU_EXPONENTIALS_PER_SM_CYCLE``.  So a
#: tile FLOP costs 1 / GEMM rate + 1 / (4 x head dim x exponential rate), nothing fitted; the backward (2.5x the
#: FLOPs, the scores exponentiated again) runs at ``ATTENTION_BACKWARD_RATE`` of that.  1.25 tiles per block is the
#: value that makes the H200 profile's forwards most alike (ViT-B/16 s197, GPT-2 s1024 causal amp and bf16,
#: llama-small s2048 causal, head dim 64; benchmarks/strided_rates.py): they then measured 0.98-1.02x this model's
#: time, where by counted FLOPs their rates spread 0.16-0.97 of the probe's GEMM rate.
FUSED_ATTENTION_BLOCK_TILES = 1.25
#: Exponentials per SM per clock on NVIDIA's special-function units (MUFU.EX2; exp2f): 16 next to a Hopper SM's 4,096
#: dense 16-bit tensor FLOPs per clock (FlashAttention-3, Shah et al. 2024, section 3.1: "the H100 SXM5 GPU has 989
#: TFLOPS of FP16 matmul but only 3.9 TFLOPS of special functions"; the CUDA C++ Programming Guide's throughput
#: table lists 16 results per clock per SM for the 32-bit exponential on compute capability 7.x-9.0).  Taken at the
#: boost clock: like index-bound kernels, attention runs far from the power cap that the sustained clock reflects.
SFU_EXPONENTIALS_PER_SM_CYCLE = 16
ATTENTION_SOURCE = ("16-bit fused attention priced by the tiles its kernels compute (128 x 128 blocks: padded "
                    "sequences, causal diagonals and each query block's fixed cost counted), each tile's GEMMs then "
                    f"its exponentials on the special-function units ({SFU_EXPONENTIALS_PER_SM_CYCLE} per SM per "
                    "clock), one after the other")
#: Where 16-bit attention runs those kernels is the card's profile's (``fused_attention``: FlashAttention / cuDNN's
#: fused attention need sm80+); older cards and AMD run other kernels, priced at their FLOPs.
#: torch.optim's foreach kernels (``multi_tensor_apply``: chunks of 64 Ki elements, four per thread-iteration, as many
#: tensors per launch as its metadata holds) move their bytes below the copy bandwidth, and less with 16-bit states
#: (four elements are 8 bytes per access, not 16).  MEASURED in the H200 profile (``Optimizer.step`` device time
#: against the optimizer op's bytes, over the probe's copy bandwidth; benchmarks/strided_rates.py): fp32 states
#: 0.29-0.85 (ResNet-50 SGD with momentum 0.68 / 0.70, BERT-base / GPT-2 / ViT-B/16 AdamW under amp 0.83 / 0.82 /
#: 0.85, BERT-base fp32 0.29), median 0.76; 16-bit states 0.60 / 0.71 (GPT-2, llama-small in bf16), median 0.65.
FOREACH_BANDWIDTH_FRACTION: dict[int, float] = {4: 0.76, 2: 0.65}
#: Latency of one dependent time step of a cuDNN recurrent layer (the persistent ``RNN_blockPersist_*`` kernels):
#: the H200 profile of lstm-lm (b128, 256 steps, 1 layer) measured 0.629 ms forward and 0.600 ms backward, i.e.
#: 2.3-2.5 us per step whatever the batch; a recurrent op takes at least its steps x this (the H100 rows check it).
RECURRENT_STEP_S = 2.4e-6
_ATTENTION, _BACKWARD, _OPTIMIZER = GROUPS.index("attention"), PHASES.index("backward"), GROUPS.index("optimizer")
_BATCH_NORMS = ("native_batch_norm", "cudnn_batch_norm", "_native_batch_norm_legit", "batch_norm")


#: What makes each op class faster, for ``estimate --breakdown`` and the dashboard.
CLASS_ADVICE: dict[str, str] = {
    "gemm": "16-bit or fp8 tensor cores, dimensions padded to multiples of 8 (16 bytes), a card with more "
            "tensor FLOP/s",
    "attention": "a fused kernel (SDPA flash / memory-efficient, FlashAttention)",
    "conv": "channels_last (no NCHW<->NHWC transposes), amp (16-bit tensor cores)",
    "norm": "channels_last batch norm, fused norm kernels (torch.compile, apex)",
    "elementwise": "fusion (torch.compile), fewer dtype casts, a card with more memory bandwidth",
    "optimizer": "a fused optimizer (torch.optim.AdamW(fused=True)), fewer parameter tensors",
    "communication": "overlap with backward (bucketed DDP), a faster interconnect (NVLink), fewer cards",
    "other": "-",
    "host (exposed)": "a larger batch, torch.compile with CUDA graphs (mode='reduce-overhead'), a graph runtime",
}


def class_advice(ops: Sequence[PreparedOp], rates: CardRates, precision: str, eff: Any, *, tensor_cores_16: bool,
                 channels_last: bool) -> dict[str, str]:
    """``CLASS_ADVICE`` for one estimate: only the changes that apply to this card and workload.

    ``tensor_cores_16``: the card has 16-bit tensor cores.  16-bit math is offered to fp32/tf32 workloads on such
    cards; channels_last where cuDNN transposes this step's NCHW convolutions; padding where a tensor-core GEMM is
    off the 16-byte grid; for attention already fused (``OpCost.tile_flops``), 16-bit kernels where the card has
    them (its profile's ``fused_attention``), else what its tiles and exponentials cost (``ATTENTION_SOURCE``).
    """
    advice = dict(CLASS_ADVICE)
    wide = precision in ("fp32", "tf32")
    amp = ["amp / bf16 (16-bit tensor cores)"] if wide and tensor_cores_16 else []
    faster = "a card with more tensor FLOP/s" if tensor_cores_16 else "a card with tensor cores"
    unaligned = bool(rates.unaligned_flops) and any(op.plan is not None and len(op.plan) > 2 for op in ops)
    padded = ["dimensions padded to multiples of 8 (16 bytes)"] if unaligned else []
    advice["gemm"] = ", ".join([*amp, *padded, faster])
    transposes = rates.layout_transposes and not channels_last and any(op.transpose_bytes for op in ops)
    advice["conv"] = ", ".join([*(["channels_last (no NCHW<->NHWC transposes)"] if transposes else []), *amp,
                                faster])
    advice["norm"] = ", ".join([*(["channels_last batch norm"] if any(op.bn_elements for op in ops) else []),
                                "fused norm kernels (torch.compile, apex)"])
    if any(op.tiles for op in ops):  # a fused kernel already
        if rates.exponentials_s:
            advice["attention"] = ("a larger head dim (fewer softmax exponentials per FLOP), sequence lengths that "
                                   "fill 128-row tiles")
        elif wide and eff.fused_attention:
            advice["attention"] = "amp / bf16 (FlashAttention / cuDNN fused kernels)"
        elif eff.attention_upgrade:
            advice["attention"] = eff.attention_upgrade
        else:
            advice["attention"] = faster
    return advice


def class_breakdown(by_class: Mapping[str, float], step_s: float,
                    advice: Mapping[str, str] | None = None) -> list[tuple[str, float, float, str]]:
    """(class, seconds, share of the step, what would help) for the classes that take time, largest first.

    ``advice``: the estimate's own (``class_advice``; ``time.class_advice``), else ``CLASS_ADVICE``.
    """
    table = advice or CLASS_ADVICE
    rows = [(name, sec, sec / step_s if step_s else 0.0, table.get(name, CLASS_ADVICE.get(name, "-")))
            for name, sec in by_class.items() if sec > 0]
    return sorted(rows, key=lambda r: -r[1])


def op_class(op: OpCost) -> int:
    """Which peak and efficiency an op runs at.

    Convolutions are always priced at the conv rate: cuDNN runs fp32 convolutions as TF32 by default
    (``torch.backends.cudnn.allow_tf32`` is True), and the caller sets that rate per precision.
    """
    if op.kind == "conv":
        return CONV_3X3 if winograd_label(op.name) else CONV
    if op.kind in ("matmul", "attention", "recurrent"):
        return TENSOR if op.tensor_core else MATMUL_VECTOR
    return VECTOR


def op_group(op: OpCost) -> int:
    """Index of the op's breakdown group in ``GROUPS``."""
    return _GROUP_OF_KIND.get(op.kind, len(GROUPS) - 1)


def _gemm_plan(op: OpCost, tp: int, align_elems: int, rows: Sequence[int]) -> Any:
    if op.kind == "recurrent":  # the GEMMs cuDNN runs beside its persistent kernel, each once (RECURRENT_STEP_S)
        return (1.0, op.gemms) if op.gemms and tp <= 1 else None
    if not op.gemms or tp > 1 or not op.flops:
        return None
    per_rep = sum(gemm_flops(g) for g in op.gemms)
    if op.tensor_core and not aligned(op.gemms, align_elems, rows):  # CUDA-core GEMMs take any alignment
        return (op.flops / per_rep, op.gemms, common_alignment(op.gemms, align_elems, rows))
    return (op.flops / per_rep, op.gemms)


def max_pool_rate(op: OpCost) -> float | None:
    """Threads per SM per cycle of an NCHW max-pooling op (``MAX_POOL_ELEMENTS_PER_SM_CYCLE``); None for others."""
    if not op.strided_elements:
        return None
    return MAX_POOL_ELEMENTS_PER_SM_CYCLE.get(label_op(op.name))


def _index_bound_elements(op: OpCost, channels_last: bool) -> float:
    """An op's index-bound elements in ``STRIDED_ELEMENTS_PER_SM_CYCLE`` units (0 where it is priced by bytes)."""
    if not op.strided_elements:
        return 0.0
    pool = max_pool_rate(op)
    if pool is not None:  # a traced NCHW pool run channels_last takes the NHWC kernels
        return 0.0 if channels_last else op.strided_elements * STRIDED_ELEMENTS_PER_SM_CYCLE / pool
    return op.strided_elements * (COLUMN_REDUCE_RATIO if op.kind == "reduction" else 1.0)


def prepare_ops(ops: Sequence[OpCost], tp: int = 1, runtime: str = "eager", align_elems: int = 8,
                nchw: bool = False, training_norms: bool = True,
                channels_last: bool = False, rows: Sequence[int] = ()) -> tuple[PreparedOp, ...]:
    """Ops as ``PreparedOp`` tuples; under tensor parallel ``tp`` each GPU runs 1/tp of all but norms.

    Megatron without sequence parallelism keeps layer norms (and dropout) replicated; launches
    stay per GPU.  Ops that only one runtime runs (``OpCost.runtime``) are left out for the others.
    ``align_elems``: elements in 16 bytes at the workload's precision (GEMM alignment).  ``nchw``: the model's
    convolutions and batch norms run on NCHW tensors through cuDNN (``LAYOUT_SOURCE``); ``training_norms``: its
    batch norms compute batch statistics (inference in ``eval()`` applies the running ones in one pass);
    ``channels_last``: the estimate runs a CNN traced on NCHW tensors as channels_last.  ``rows``: the step's
    activation row counts (``advisor.estimator.gemm.activation_rows``), left out of the GEMMs' alignment.
    """
    out = []
    elem = 16 // align_elems
    for op in ops:
        if op.runtime is not None and op.runtime != runtime:
            continue
        div = 1 if tp <= 1 or op.kind == "norm" else tp
        phase = PHASES.index(op.phase) if op.phase in PHASES else 0
        bn = transpose = 0.0
        if nchw and training_norms and op.kind == "norm" and op.name.removeprefix("aten.").startswith(_BATCH_NORMS) \
                and "no_training" not in op.name:  # inference batch norm is one fused elementwise pass
            bn = op.bytes / div / elem  # elements moved
        if nchw and op.kind == "conv":
            transpose = op.bytes / div
        library = ("conv" if op.kind == "conv" else "recurrent" if op.serial_steps
                   else "embedding" if op.name.split("[")[0] in EMBEDDING_BACKWARDS
                   else "attention" if op.kind == "attention" and op.tile_flops and op.tensor_core
                   else "gemm" if op.kind == "matmul" else "")
        out.append(PreparedOp(op.flops / div, op.bytes / div, op.count, op_class(op), op.min_dim or 0, phase,
                              op_group(op), _gemm_plan(op, tp, align_elems, rows), bn, transpose, op.serial_steps,
                              _index_bound_elements(op, channels_last) / div,
                              (op.tile_flops + FUSED_ATTENTION_BLOCK_TILES * op.block_flops) / div, library))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CardRates:
    """What one card achieves for one precision (FLOP/s, bytes/s, seconds), calibrated or default."""

    tensor_flops: float
    conv_flops: float
    vector_flops: float
    matmul_vector_flops: float
    memory_bytes_s: float
    launch_s: float
    half_dim: float  # d_half of the shape curve (efficiency.shape_factor) for this card's SM count
    sm_count: int = 0  # 0: unknown, GEMMs priced by the shape curve alone
    tensor_cores: bool = True  # the precision's matmuls run on tensor cores (else the CUDA cores' SIMT tiles)
    unaligned_flops: float = 0.0  # rate of an align-1 GEMM, doubling per alignment step (0: not modelled)
    unaligned_conv_flops: float = 0.0  # the same for convolutions (their peak: TF32 for fp32 under cuDNN)
    bn_elements_s: float = 0.0  # NCHW batch-norm elements per second (0: priced by its bytes)
    layout_transposes: bool = False  # cuDNN tensor-core convs transpose NCHW tensors (NVIDIA Volta and later)
    transpose_bytes_s: float = 0.0  # bytes/s of those transposes: the bandwidth, or their element rate if slower
    step_latency_s: float = 0.0  # one dependent recurrent time step (RECURRENT_STEP_S on a GPU)
    norm_bytes_s: float = 0.0  # normalization kernels' achieved bandwidth (eff.norm_memory; 0: memory_bytes_s),
    # for every norm op not priced by the NCHW batch-norm element rate (inference batch norm included)
    strided_elements_s: float = 0.0  # index-bound elementwise elements per second (0: priced by bytes alone)
    winograd_factor: float = 1.0  # 3x3 stride-1 convolutions' speed-up over direct FLOPs (WINOGRAD_MULTIPLY_REDUCTION)
    attention_backward_rate: float = 1.0  # fused attention's backward rate over its forward's (ATTENTION_BACKWARD_RATE)
    exponentials_s: float = 0.0  # fused attention's softmax exponentials per second (0: no fused kernels, by FLOPs)
    optimizer_bytes_s: float = 0.0  # the foreach optimizer kernels' bandwidth (FOREACH_BANDWIDTH_FRACTION; 0: bw)


def card_rates(spec: Any, precision: str, eff: Any, tensor_peak: float, vector_peak: float, *,
               serial_host: bool = False) -> CardRates:
    """What one card achieves for one precision: the ``CardRates`` every op of a step is priced at.

    Args:
        spec: the card (``GpuSpec``; per device for a multi-die package).
        precision: the workload's precision.
        eff: its efficiencies (defaults or calibrated; ``eff.clock`` the sustained fraction of the boost clock).
        tensor_peak, vector_peak: dense tensor and vector peaks for ``precision`` (FLOP/s).
        serial_host: the card is the host's CPU (validate's pseudo-card): no launches, layouts or alignment.
    """
    half = HALF_DIM_REF * math.sqrt((spec.sm_count or REF_SMS) / REF_SMS)
    # compute runs at the sustained clock (eff.clock); memory bandwidth does not (the memory clock holds)
    tensor_held, vector_held = tensor_peak * eff.clock, vector_peak * eff.clock
    conv_peak, conv_eff = tensor_held, eff.conv
    conv_tensor_cores = precision not in ("fp32", "tf32") or bool(spec.tf32_tflops)
    if precision == "fp32":
        # cuDNN's default (torch.backends.cudnn.allow_tf32 is True): TF32 tensor cores where the card has them,
        # else the FP32 units at the GEMM efficiency
        conv_peak, conv_eff = ((spec.tf32_tflops * 1e12 * eff.clock, eff.conv) if spec.tf32_tflops
                               else (vector_held, eff.matmul))
    # SM cycles per second at the boost clock: index-bound elementwise kernels draw far from the power cap that
    # eff.clock (measured under the largest GEMM) reflects, and STRIDED_ELEMENTS_PER_SM_CYCLE was fitted so
    boost_cycles = (spec.sm_count or 0) * (spec.boost_clock_mhz or 0) * 1e6
    bw = spec.memory_bandwidth_bytes_s * eff.memory
    transpose_s = boost_cycles * LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE * compute_bytes(precision)
    fused = precision not in ("fp32", "tf32") and eff.fused_attention  # 16-bit fused attention kernels
    used = matmul_rate(spec, precision)
    # tensor-core matmuls on a card without matrix units (or 16-bit ones computed on its FP32 units) run cuBLAS's
    # CUDA-core kernels: their efficiency, their tiles, any alignment
    tensor_cores = used is not None and tensor_core_gemms(spec, precision, used[1])
    rates = CardRates(tensor_flops=tensor_held * (eff.matmul if tensor_cores else eff.vector_matmul),
                      conv_flops=conv_peak * conv_eff,
                      vector_flops=vector_held * eff.vector, matmul_vector_flops=vector_held * eff.vector_matmul,
                      memory_bytes_s=bw, launch_s=eff.launch_overhead_s,
                      half_dim=half, sm_count=spec.sm_count or 0, tensor_cores=tensor_cores,
                      # the profile's unaligned_fraction is a fraction of the boost-clock peak: no clock factor
                      unaligned_flops=tensor_peak * unaligned_fraction(eff.unaligned) if tensor_cores else 0.0,
                      unaligned_conv_flops=conv_peak / (eff.clock or 1.0) * unaligned_fraction(eff.unaligned)
                      if conv_tensor_cores and has_tensor_cores(spec) else 0.0,
                      bn_elements_s=boost_cycles * eff.clock * BN_NCHW_ELEMENTS_PER_SM_CYCLE,
                      layout_transposes=eff.layout_transposes and conv_tensor_cores,
                      transpose_bytes_s=min(bw, transpose_s) if transpose_s else bw, step_latency_s=RECURRENT_STEP_S,
                      norm_bytes_s=bw * eff.norm_memory,
                      strided_elements_s=boost_cycles * STRIDED_ELEMENTS_PER_SM_CYCLE,
                      winograd_factor=1.0 if conv_tensor_cores or spec.vendor != "nvidia"
                      else WINOGRAD_MULTIPLY_REDUCTION,
                      attention_backward_rate=ATTENTION_BACKWARD_RATE if fused else 1.0,
                      exponentials_s=boost_cycles * SFU_EXPONENTIALS_PER_SM_CYCLE if fused else 0.0,
                      optimizer_bytes_s=bw * FOREACH_BANDWIDTH_FRACTION.get(master_bytes(precision), 1.0))
    if serial_host:
        rates = replace(rates, launch_s=0.0, bn_elements_s=0.0, layout_transposes=False, unaligned_flops=0.0,
                        unaligned_conv_flops=0.0, step_latency_s=0.0, strided_elements_s=0.0, winograd_factor=1.0,
                        attention_backward_rate=1.0, exponentials_s=0.0, optimizer_bytes_s=0.0)
    return rates


@dataclass(frozen=True, slots=True)
class OpsTime:
    """Where the seconds of a list of ops go: per phase, roofline side, and breakdown group."""

    phases: list[float]
    compute_s: float
    memory_s: float
    launch_s: float
    by_group: list[float]
    per_op: list[float] = field(default_factory=list)  # each op's seconds without its launch gaps, in order


def ops_time_detail(ops: Sequence[PreparedOp], rates: CardRates) -> OpsTime:
    """Per-phase and per-group seconds, and the compute-bound, memory-bound and launch shares of the total.

    A GEMM whose shapes are known is priced by tiles and waves (``advisor.estimator.gemm``) at its class's
    large-shape rate, and no faster than the unaligned rate when a dimension is off the 16-byte grid on tensor
    cores; other matmuls by the saturating ``min_dim`` curve.
    """
    phases = [0.0] * len(PHASES)
    groups = [0.0] * len(GROUPS)
    compute_s = memory_s = launch_s = 0.0
    peaks = (rates.tensor_flops, rates.conv_flops, rates.matmul_vector_flops, rates.vector_flops,
             rates.conv_flops * rates.winograd_factor)
    bw, launch, h2, sms = rates.memory_bytes_s, rates.launch_s, rates.half_dim, rates.sm_count
    strided_s = rates.strided_elements_s
    attention_bwd = rates.attention_backward_rate
    exp_s = rates.exponentials_s
    per_op: list[float] = []
    for flops, nbytes, count, cls, dim, phase, group, plan, bn, transpose, steps, strided, tiles, _library in ops:
        bwd_rate = attention_bwd if group == _ATTENTION and phase == _BACKWARD else 1.0
        peak = peaks[cls] * bwd_rate
        if tiles and exp_s and dim:  # each tile's GEMMs, then its scores' exponentials (SFU_EXPONENTIALS_...)
            rate = 1.0 / (1.0 / peaks[cls] + 1.0 / (4.0 * dim * exp_s))
            flops, peak, dim = tiles, rate * bwd_rate, 0
        # cuDNN's recurrent layer on a GPU: its persistent kernel's dependent steps, then the GEMMs of its plan at
        # cuDNN's rate (TF32 for fp32 by default, as for convolutions); the traced per-step ops' bytes are not
        # cuDNN's.  Off cuDNN (the host's CPU) a recurrent op's FLOPs all run at its class's rate.
        cudnn_rnn = bool(steps and plan is not None and rates.step_latency_s and sms)
        if cudnn_rnn:
            tc = plan[0] * sum(shape_seconds(g, rate_flops=rates.conv_flops, sms=sms) for g in plan[1])
        elif plan is not None and sms and cls != VECTOR and not steps:
            reps, shapes = plan[0], plan[1]
            base = (rates.unaligned_conv_flops if cls in CONV_CLASSES else rates.unaligned_flops if cls == TENSOR
                    else 0.0)
            if len(plan) > 2 and base:  # off the 16-byte grid: tensor-core kernels fall back to align-1/2/4 ones
                tc = unaligned_seconds(shapes, reps, rate_flops=peak, fallback_flops=base * plan[2], sms=sms)
            else:
                simt = cls == MATMUL_VECTOR or (cls == TENSOR and not rates.tensor_cores)
                tc = reps * sum(shape_seconds(g, rate_flops=peak, sms=sms, simt=simt) for g in shapes)
        else:
            if dim and cls != VECTOR:
                peak = max(peak * dim / (dim + h2), peak * 0.02)
            tc = flops / peak
        tm = nbytes / (rates.norm_bytes_s if group == _NORM and rates.norm_bytes_s and not bn
                       else rates.optimizer_bytes_s if group == _OPTIMIZER and rates.optimizer_bytes_s else bw)
        if bn and rates.bn_elements_s:
            tm = max(tm, bn / rates.bn_elements_s)
        if strided and strided_s:
            tm = max(tm, strided / strided_s)
        lt = count * launch if (flops or nbytes) else 0.0  # views and metadata ops launch no kernel
        if cudnn_rnn:
            t = steps * rates.step_latency_s + tc
        else:
            t = max(tc, tm, steps * rates.step_latency_s) + (transpose / rates.transpose_bytes_s
                                                             if rates.layout_transposes else 0.0)
        if tc >= tm:
            compute_s += tc
        else:
            memory_s += tm
        phases[phase] += t + lt
        groups[group] += t + lt
        launch_s += lt
        per_op.append(t)
    return OpsTime(phases, compute_s, memory_s, launch_s, groups, per_op)


def ops_time(ops: Sequence[PreparedOp], rates: CardRates) -> tuple[list[float], float, float, float]:
    """Per-phase seconds, and the compute-bound, memory-bound and launch shares of the total."""
    d = ops_time_detail(ops, rates)
    return d.phases, d.compute_s, d.memory_s, d.launch_s


@dataclass(frozen=True, slots=True)
class TimeEstimate:
    """Time of one optimizer step (train) or one request batch (infer).

    Attributes:
        step_s: seconds per step (train: ``grad_accum`` micro-steps + optimizer + exposed communication;
            infer: forward / prefill, plus ``gen_len`` decode steps for causal LMs).
        samples_per_s: global samples per second (GPU side; see ``input_bound``).
        tokens_per_s: train / prefill-only: tokens processed per second; generation: generated tokens
            per second; ``None`` for non-token models.
        bound: ``compute`` or ``memory`` (which roofline side most op time sits on).
        limiter: what limits the step most: compute, memory, launch, communication, host (eager dispatch:
            the GPU waits for the Python/dispatcher side) or input.
        mfu: model FLOPs utilization (counts recomputation when checkpointing, so closer to HFU).
        phases_s: per-phase seconds of one step (forward, backward, optimizer, prefill, decode, communication).
        comm_s: exposed communication per step; comm_total_s: all of it (partly overlapped).
        host_s: host dispatch time beyond the GPU's per step (``runtime`` eager); runtime: eager or graph.
        by_class_s: seconds per op class (``GROUPS``: GEMM, attention, conv, norm, elementwise, optimizer,
            communication, other) plus ``host (exposed)``; GPU-side classes include their launch gaps and sum,
            with the exposed host time, to about ``step_s`` (the per-phase host floor replaces, not adds).
        class_advice: per op class, what would make it faster on this card and workload (``class_advice``).
        prefill_s, decode_step_s, decode_tokens_per_s: causal-LM inference.
        time_to_train_s: ``dataset_samples x epochs`` or ``total_tokens`` at this rate.
        input_bound, input_advice, h2d_s, loader_samples_per_s: the input pipeline check.
        effective_samples_per_s: what the job really runs at: the GPUs' rate (host dispatch included),
            capped by the data loader and host->device copies (``limiter`` names the cap); ``time_to_train_s``
            uses it.  ``None`` on estimates built before it existed: then ``samples_per_s``.
    """

    step_s: float
    samples_per_s: float
    tokens_per_s: float | None
    bound: str
    limiter: str
    mfu: float | None
    phases_s: Mapping[str, float] = field(default_factory=dict)
    compute_bound_s: float = 0.0
    memory_bound_s: float = 0.0
    launch_s: float = 0.0
    comm_s: float = 0.0
    comm_total_s: float = 0.0
    prefill_s: float | None = None
    decode_step_s: float | None = None
    decode_tokens_per_s: float | None = None
    time_to_train_s: float | None = None
    input_bound: bool = False
    input_advice: str | None = None
    h2d_s: float = 0.0
    loader_samples_per_s: float | None = None
    host_s: float = 0.0
    runtime: str = "eager"
    by_class_s: Mapping[str, float] = field(default_factory=dict)
    effective_samples_per_s: float | None = None
    class_advice: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (DESIGN.md's ``time`` keys first)."""
        return {"step_s": self.step_s, "samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s,
                "bound": self.bound, "limiter": self.limiter, "mfu": self.mfu, "phases_s": dict(self.phases_s),
                "compute_bound_s": self.compute_bound_s, "memory_bound_s": self.memory_bound_s,
                "launch_s": self.launch_s, "comm_s": self.comm_s, "comm_total_s": self.comm_total_s,
                "prefill_s": self.prefill_s, "decode_step_s": self.decode_step_s,
                "decode_tokens_per_s": self.decode_tokens_per_s, "time_to_train_s": self.time_to_train_s,
                "input_bound": self.input_bound, "input_advice": self.input_advice, "h2d_s": self.h2d_s,
                "loader_samples_per_s": self.loader_samples_per_s, "host_s": self.host_s, "runtime": self.runtime,
                "by_class": dict(self.by_class_s), "effective_samples_per_s": self.effective_samples_per_s,
                "class_advice": dict(self.class_advice)}

    def to_frame(self) -> Any:
        """One row per phase: seconds and share of the step."""
        import pandas as pd

        rows = [{"phase": k, "seconds": v, "share": v / self.step_s if self.step_s else None}
                for k, v in self.phases_s.items()]
        return pd.DataFrame(rows)
