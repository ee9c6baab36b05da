"""Which traced calls run off TensorIterator's vectorized path, and which ops launch no kernel.

``index_bound_elements`` is the rule ``advisor.workload.aten_ops`` (re-exported there) and the tracer file a call's
index-bound elements by; ``NO_KERNEL`` the ops that move no bytes.  Plain Python on tensors' shapes and strides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Ops that launch no kernel although torch does not mark them as views: ``_unsafe_view`` is a view without
#: autograd's view tracking (``matmul`` on 3-D inputs ends in one: no kernel in the H200 profile's per-op times),
#: ``_reshape_alias`` likewise; ``empty*`` only allocate; ``detach``/``alias``/``lift_fresh`` alias.
NO_KERNEL = frozenset({"_unsafe_view", "_reshape_alias", "detach", "alias", "lift_fresh", "empty", "empty_like",
                       "empty_strided", "new_empty", "new_empty_strided"})
#: Copies that torch 2.x runs on a dedicated vectorized kernel although they cast: fp32 -> bf16 / fp16
#: (``bfloat16_copy_kernel_cuda``: 3.6-4.0 TB/s in the H200 profile); every other cast copy runs TensorIterator's
#: unrolled dynamic-casting path (``unrolled_elementwise_kernel<direct_copy_kernel_cuda...>``).
_VECTOR_CASTS = frozenset({("float32", "bfloat16"), ("float32", "float16")})
_COPIES = frozenset({"_to_copy", "copy_", "copy", "to", "clone"})
#: Reductions that, keeping the innermost dimension, reduce across rows (strided reads per output element).
_COLUMN_REDUCTIONS = frozenset({"sum", "mean"})
#: Max pooling on NCHW tensors (``aten/src/ATen/native/cuda/DilatedMaxPool2d.cu``): ``max_pool_forward_nchw`` runs
#: a thread per output element over its window, ``max_pool_backward_nchw`` a thread per input element over the
#: windows that cover it, each splitting its flat index by integer division; the call's output (the forward's
#: pooled map, the backward's input gradient) counts the threads.  Channels-last tensors take the NHWC kernels.
MAX_POOLS = frozenset({"max_pool2d_with_indices", "max_pool2d_with_indices_backward"})


def _dense(t: Any) -> bool:
    """Whether a tensor's elements fill its memory without gaps or overlap, in some order of its dimensions."""
    expect = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride(), strict=True) if sz != 1):
        if stride != expect:
            return False
        expect *= size
    return True


def index_bound_elements(name: str, kind: str, pointwise: bool, args: Sequence[Any], kwargs: Mapping[str, Any],
                         ins: Sequence[Any], outs: Sequence[Any]) -> int:
    """Elements one call processes on an index-bound path (0: the vectorized, bandwidth-bound one).

    Pointwise ops (torch's ``pointwise`` tag) and copies run on TensorIterator
    (``aten/src/ATen/native/cuda/Loops.cuh``): its vectorized kernel needs every tensor operand laid out exactly
    as the output, densely, in one dtype; a broadcast or non-contiguous operand takes ``elementwise_kernel`` (an
    offset per operand per element), a cast the unrolled dynamic-casting kernel (``_VECTOR_CASTS`` excepted).
    ``cat``/``stack`` along an inner dimension interleave their inputs, and with a non-contiguous input gather it,
    on ``CatArrayBatchedCopy``'s element-by-element path (the H200 profile: BERT's q/k/v gradients stacked along dim 0
    from attention's permuted layout ran at ~1 element per SM per cycle in bf16 and fp32 alike).  Reductions:
    ``sum``/``mean`` keeping the innermost dimension.  NCHW max pooling: its threads (``MAX_POOLS``).  Other ops
    (``select_backward``'s fill and slice copy, indexing) are priced by their bytes.  ``ins``/``outs``: the call's
    tensors; single-element tensors count as scalars.
    """
    if not outs:
        return 0
    o = outs[0]
    if name in MAX_POOLS:  # channels-last: stride 1 along C (suggest_memory_format's test for 4-D tensors)
        return 0 if o.dim() == 4 and o.shape[1] > 1 and o.stride()[1] == 1 else int(o.numel())
    if kind == "reduction":
        x = ins[0] if ins else None
        if (name in _COLUMN_REDUCTIONS and x is not None and o.dim() and x.dim() and o.numel() > 1
                and x.numel() > o.numel() and x.shape[-1] == o.shape[-1] > 1):
            return int(x.numel())
        return 0
    if kind != "elementwise" or name in NO_KERNEL or o.numel() <= 1:
        return 0
    if name in ("cat", "stack"):  # interleaved (an inner dim) or gathered (a non-contiguous input): index math
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        dim %= max(o.dim(), 1)
        inner = math.prod(o.shape[:dim]) > 1
        return int(o.numel()) if inner or not all(t.is_contiguous() for t in ins if t.numel() > 1) else 0
    if not (pointwise or name in _COPIES):
        return 0
    if not _dense(o):
        return int(o.numel())
    for t in ins:
        if t.numel() <= 1:
            continue
        if tuple(t.shape) != tuple(o.shape) or tuple(t.stride()) != tuple(o.stride()):
            return int(o.numel())
        if t.is_floating_point() and o.is_floating_point() and t.dtype != o.dtype and not (
                name in _COPIES and (str(t.dtype)[6:], str(o.dtype)[6:]) in _VECTOR_CASTS):
            return int(o.numel())
    return 0
