"""CUDA's choice of attention kernel applied on the fake CPU run of ``advisor.workload.trace``.

``F.scaled_dot_product_attention`` with dropout (Hugging Face's BERT and GPT-2 train with ``attention_probs_dropout``
/ ``attn_pdrop`` 0.1) runs one fused kernel on a GPU: FlashAttention, the memory-efficient kernel and cuDNN's fused
attention apply the dropout inside the kernel from a Philox seed.  On the CPU the trace runs on, torch has no fused
kernel with dropout and decomposes the call into the math path: two batched matmuls, a softmax and a dropout,
saving the (batch, heads, seq, seq) probabilities and mask for backward.  Traced as such, such a model's attention
would be priced as unfused matmuls and its activations would hold s x s per head that a GPU never stores.  While
``cuda_attention_kernels`` is entered, the trace calls SDPA without the dropout, so that the CPU takes its fused
kernel (``_scaled_dot_product_flash_attention_for_cpu``, which the tracer files with its tiles) as the GPU takes
one; the dropout's own cost inside a fused kernel is not modelled.  Likewise ``F.dropout`` in training: CUDA runs
``aten::dropout`` as one fused kernel (``native_dropout``: the output and a 1-byte mask; its backward one kernel,
``native_dropout_backward``), where the CPU decomposes it into ``bernoulli_``, ``div_`` and ``mul`` and saves a mask
in the input's dtype (``aten/src/ATen/native/Dropout.cpp``, ``is_fused_kernel_acceptable``): the trace calls
``native_dropout`` as the GPU does.  SDPA with a float mask that needs a gradient (T5's learned relative position
bias, ``attn_mask=position_bias``): CUDA's memory-efficient kernel takes an additive bias and writes its gradient
(``cuda/sdp_utils.cpp``: its checks never look at the mask's gradient; flash takes no mask; cuDNN no fp32), where the
CPU's fused kernel refuses a mask that needs a gradient and torch takes the math path (two batched matmuls and a
softmax, the probabilities saved).  The trace calls ``_scaled_dot_product_efficient_attention`` as
``aten/src/ATen/native/transformers/attention.cpp`` does on CUDA: the mask padded to 16 keys and expanded to
(batch, heads, query, key) (``preprocess_mask``), the log-sum-exp computed when an input needs a gradient; its
backward writes the bias gradient at the expanded shape, which the expand's backward sums over the batch.  The
expanded bias is one (heads, query, key) table read through a zero batch stride, and the kernels walk the batch
slowest (``mem_eff_attention/kernel_forward.h``, ``getBlocksGrid``: query blocks, heads, batches), so each batch
element re-reads what the one before it left in L2: a fused attention kernel's operand is counted at its distinct
elements (``attention_operand_bytes``), not at the expanded view's.  And
``_grouped_mm`` (transformers 5's MoE experts): CUDA runs fp32 operands
(amp's fp32 master weights, or fp32 training) through ``_grouped_mm_fallback``, one mm per group
(``aten/src/ATen/native/cuda/GroupedBlas.cpp``), where torch's meta function, which fake tensors run, accepts only
16-bit operands: while entered, its shape function takes any float dtype.

One of the designated torch importers; torch is imported lazily, inside the context manager.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

#: Position of ``dropout_p`` in ``F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, ...)``.
_DROPOUT_ARG = 4


@contextlib.contextmanager
def cuda_attention_kernels() -> Iterator[None]:
    """While entered, SDPA, dropout and grouped GEMMs run as on a GPU (see above)."""
    import torch
    from torch.overrides import TorchFunctionMode

    sdpa, dropout = torch.nn.functional.scaled_dot_product_attention, torch.nn.functional.dropout

    def as_cuda(func: Any, args: Any, kwargs: Any) -> Any:
        kwargs = dict(kwargs or {})
        if func is sdpa:
            efficient = _efficient_with_bias_grad(torch, *args, **kwargs)
            if efficient is not None:
                return efficient
            if len(args) > _DROPOUT_ARG:
                args = (*args[:_DROPOUT_ARG], 0.0, *args[_DROPOUT_ARG + 1:])
            elif "dropout_p" in kwargs:
                kwargs["dropout_p"] = 0.0
        elif func is dropout:
            fused = _fused_dropout(torch, *args, **kwargs)
            if fused is not None:
                return fused
        return func(*args, **kwargs)

    class FusedAttention(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return as_cuda(func, args, kwargs)

    # torch.utils.checkpoint's recompute runs inside backward, where the torch-function mode stack is empty: the
    # functions themselves are swapped too, so a checkpointed block recomputes with the kernels its forward took
    functional = torch.nn.functional

    def fused_sdpa(*args: Any, **kwargs: Any) -> Any:
        return as_cuda(sdpa, args, kwargs)

    def fused_dropout(*args: Any, **kwargs: Any) -> Any:
        return as_cuda(dropout, args, kwargs)

    # transformers 5 looks for packed sequences in the position ids when a causal LM runs without cache and mask
    # (training with gradient checkpointing): it cannot read fake tensors (is_tracing counts them) and assumes packing,
    # handing SDPA a dense causal mask (every tile, no is_causal); on a GPU it reads one sequence per row and passes
    # none (masking_utils.find_packed_sequence_indices): the trace takes the unpacked rows a batch usually holds
    masking = sys.modules.get("transformers.masking_utils")
    find_packed = getattr(masking, "find_packed_sequence_indices", None)
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel": for this trace only
            lib.impl("_grouped_mm", _grouped_mm_meta, "Meta")
        functional.scaled_dot_product_attention, functional.dropout = fused_sdpa, fused_dropout
        if find_packed is not None:
            masking.find_packed_sequence_indices = _unpacked  # type: ignore[union-attr]
        with FusedAttention():
            yield
    finally:
        functional.scaled_dot_product_attention, functional.dropout = sdpa, dropout
        if find_packed is not None:
            masking.find_packed_sequence_indices = find_packed  # type: ignore[union-attr]
        lib._destroy()


def attention_operand_bytes(t: Any) -> int:
    """Bytes a fused attention kernel reads of one operand: a broadcast (zero-stride) dimension counted once."""
    n = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if stride:
            n *= int(size)
    return n * int(t.element_size()) if t.numel() else 0


#: The memory-efficient kernel's key alignment for a bias (``attention.cpp``, ``mem_eff_alignment``).
_BIAS_ALIGNMENT = 16


def _efficient_with_bias_grad(torch: Any, query: Any, key: Any, value: Any, attn_mask: Any = None,
                              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                              enable_gqa: bool = False) -> Any:
    """CUDA's memory-efficient attention where SDPA's float mask needs a gradient, else ``None`` (see above)."""
    if attn_mask is None or not attn_mask.requires_grad or not attn_mask.is_floating_point() or enable_gqa \
            or query.dim() != 4 or not torch.is_grad_enabled():
        return None
    if torch.is_autocast_enabled("cpu"):  # CUDA's autocast runs SDPA in 16 bits: every float input cast first
        low = torch.get_autocast_dtype("cpu")
        with torch.autocast("cpu", enabled=False):
            query, key, value, attn_mask = (t.to(low) for t in (query, key, value, attn_mask))
        return _efficient(torch, query, key, value, attn_mask, is_causal, scale)
    return _efficient(torch, query, key, value, attn_mask, is_causal, scale)


def _efficient(torch: Any, query: Any, key: Any, value: Any, attn_mask: Any, is_causal: bool,
               scale: float | None) -> Any:
    k_len = key.shape[-2]
    pad = -k_len % _BIAS_ALIGNMENT
    mask = attn_mask if not pad else torch.nn.functional.pad(attn_mask, (0, pad))[..., :k_len]
    mask = mask.expand(query.shape[0], query.shape[1], query.shape[2], k_len)
    lse = query.requires_grad or key.requires_grad or value.requires_grad
    # dropout inside the fused kernel is not modelled (as for the fused kernels above)
    return torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, mask, lse, 0.0, is_causal,
                                                                  scale=scale)[0]


def _unpacked(position_ids: Any) -> None:
    """``find_packed_sequence_indices`` for rows of one sequence each: no packing mask."""


def _fused_dropout(torch: Any, x: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
    """``native_dropout``'s output where CUDA's ``aten::dropout`` would run it (training, 0 < p < 1), else ``None``."""
    if not (training and 0.0 < p < 1.0 and x.numel()):
        return None
    out = torch.native_dropout(x, p, True)[0]
    return x.copy_(out) if inplace else out


def _grouped_mm_meta(a: Any, b: Any, offs: Any = None, bias: Any = None, out_dtype: Any = None) -> Any:
    """``_grouped_mm``'s output as CUDA's ``create_grouped_gemm_output_tensor`` shapes it, for any float dtype."""
    shape: tuple[int, ...]
    if a.dim() == 2 and b.dim() == 2:  # the contraction split between the groups: one output per group
        shape = (offs.shape[0], a.shape[0], b.shape[1])
    elif a.dim() == 2:
        shape = (a.shape[0], b.shape[-1])
    elif b.dim() == 2:
        shape = (a.shape[1], b.shape[1])
    else:
        shape = (a.shape[0], a.shape[1], b.shape[-1])
    return a.new_empty(shape, dtype=out_dtype or a.dtype)
