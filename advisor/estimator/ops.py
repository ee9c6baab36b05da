"""Prepared ops: each ``OpCost`` of a workload as the per-card pricing loop reads it, once per workload.

``prepare_ops`` asks every mechanism for its share of an op: its class and breakdown group (here), its GEMM plan
(``gemm``: tiles, waves, alignment), NCHW batch-norm elements (``norms``), layout-transpose bytes (``conv``),
dependent steps (``recurrent``), index-bound elements (``index_bound``), fused-attention tiles (``attention``), the
library whose host cost each call adds (``host``) and the mechanism that prices it (``pricing_kind``: the
``advisor.estimator.pricing`` registry).  ``advisor.estimator.time`` prices the result per card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

# each mechanism module registers its op kinds' pricing function (advisor.estimator.pricing) when it loads
from advisor.estimator import conv, optimizer, recurrent  # noqa: F401
from advisor.estimator.attention import attention_tiles, backward_calls
from advisor.estimator.gemm import aligned, common_alignment, gemm_flops
from advisor.estimator.index_bound import index_bound_elements
from advisor.estimator.norms import is_training_batch_norm
from advisor.estimator.pricing import (
    CONV,
    CONV_3X3,
    GROUPS,
    MATMUL_VECTOR,
    PHASES,
    PRICING,
    TENSOR,
    VECTOR,
)
from advisor.workload.aten_ops import winograd_label
from advisor.workload.base import OpCost

_GROUP_OF_KIND = {"matmul": 0, "recurrent": 0, "attention": 1, "conv": 2, "norm": 3, "elementwise": 4,
                  "reduction": 4, "embedding": 4, "optimizer": 5, "optimizer_loop": 5, "communication": 6}
#: An embedding's backward, traced (``aten.embedding_dense_backward``) or from the analytic builders (one call per
#: embedding table): on CUDA a sort of the indices and a segmented sum, some twenty kernels (see ``host.py``).
EMBEDDING_BACKWARDS = ("aten.embedding_dense_backward", "embedding.grad")


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
    bn_elements: float  # NCHW training batch-norm elements (norms.BN_NCHW_ELEMENTS_PER_SM_CYCLE)
    transpose_bytes: float  # NCHW<->NHWC layout-transpose bytes (conv.LAYOUT_SOURCE)
    steps: int  # dependent serial steps (a recurrent layer)
    strided: float  # index-bound elements (index_bound.STRIDED_ELEMENTS_PER_SM_CYCLE units)
    tiles: float  # fused attention tile work
    library: str
    attention_calls: float = 0.0  # a fused attention backward's calls (``attention.backward_calls``; 0: not one)
    attention_blocks: float = 0.0  # query blocks each of those calls walks
    pricing: str = "other"  # the ``pricing.PRICING`` entry that prices it (``pricing_kind``)


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


def pricing_kind(op: OpCost) -> str:
    """The ``pricing.PRICING`` entry that prices the op.

    Its kind; ``recurrent`` for any op with dependent steps (``OpCost.serial_steps``); ``other`` for a kind no
    mechanism registered.
    """
    if op.serial_steps:
        return "recurrent"
    return op.kind if op.kind in PRICING else "other"


def op_group(op: OpCost) -> int:
    """Index of the op's breakdown group in ``GROUPS``."""
    return _GROUP_OF_KIND.get(op.kind, len(GROUPS) - 1)


def _gemm_plan(op: OpCost, tp: int, align_elems: int, rows: Sequence[int]) -> Any:
    if op.kind == "recurrent":  # the GEMMs cuDNN runs beside its persistent kernel, each once
        return (1.0, op.gemms) if op.gemms and tp <= 1 else None
    if not op.gemms or tp > 1 or not op.flops:
        return None
    per_rep = sum(gemm_flops(g) for g in op.gemms)
    if op.tensor_core and not aligned(op.gemms, align_elems, rows):  # CUDA-core GEMMs take any alignment
        return (op.flops / per_rep, op.gemms, common_alignment(op.gemms, align_elems, rows))
    return (op.flops / per_rep, op.gemms)


def _library(op: OpCost) -> str:
    """The library whose host cost each of the op's calls adds (``PreparedOp.library``)."""
    return ("conv" if op.kind == "conv" else "recurrent" if op.serial_steps
            else "embedding" if op.name.split("[")[0] in EMBEDDING_BACKWARDS
            else "attention" if op.kind == "attention" and op.tile_flops and op.tensor_core
            else "gemm" if op.kind == "matmul" else "")


def prepare_ops(ops: Sequence[OpCost], tp: int = 1, runtime: str = "eager", align_elems: int = 8,
                nchw: bool = False, training_norms: bool = True,
                channels_last: bool = False, rows: Sequence[int] = (),
                seq_len: int | None = None) -> tuple[PreparedOp, ...]:
    """Ops as ``PreparedOp`` tuples; under tensor parallel ``tp`` each GPU runs 1/tp of all but norms.

    Megatron without sequence parallelism keeps layer norms (and dropout) replicated; launches
    stay per GPU.  Ops that only one runtime runs (``OpCost.runtime``) are left out for the others.
    ``align_elems``: elements in 16 bytes at the workload's precision (GEMM alignment).  ``nchw``: the model's
    convolutions and batch norms run on NCHW tensors through cuDNN (``conv.LAYOUT_SOURCE``); ``training_norms``: its
    batch norms compute batch statistics (inference in ``eval()`` applies the running ones in one pass);
    ``channels_last``: the estimate runs a CNN traced on NCHW tensors as channels_last.  ``rows``: the step's
    activation row counts (``advisor.estimator.gemm.activation_rows``), left out of the GEMMs' alignment.
    ``seq_len``: the step's sequence (a fused attention backward's query blocks, ``attention.backward_calls``).
    """
    out = []
    attention_calls = backward_calls(ops, seq_len)
    elem = 16 // align_elems
    for i, op in enumerate(ops):
        if op.runtime is not None and op.runtime != runtime:
            continue
        div = 1 if tp <= 1 or op.kind == "norm" else tp
        phase = PHASES.index(op.phase) if op.phase in PHASES else 0
        bn = transpose = 0.0
        if nchw and training_norms and is_training_batch_norm(op):
            bn = op.bytes / div / elem  # elements moved
        if nchw and op.kind == "conv":
            transpose = op.bytes / div
        out.append(PreparedOp(op.flops / div, op.bytes / div, op.count, op_class(op), op.min_dim or 0, phase,
                              op_group(op), _gemm_plan(op, tp, align_elems, rows), bn, transpose, op.serial_steps,
                              index_bound_elements(op, channels_last) / div, attention_tiles(op) / div,
                              _library(op), *attention_calls.get(i, (0.0, 0.0)), pricing_kind(op)))
    return tuple(out)
