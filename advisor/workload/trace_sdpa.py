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
``native_dropout`` as the GPU does.  And ``_grouped_mm`` (transformers 5's MoE experts): CUDA runs fp32 operands
(amp's fp32 master weights, or fp32 training) through ``_grouped_mm_fallback``, one mm per group
(``aten/src/ATen/native/cuda/GroupedBlas.cpp``), where torch's meta function, which fake tensors run, accepts only
16-bit operands: while entered, its shape function takes any float dtype.

One of the designated torch importers; torch is imported lazily, inside the context manager.
"""

from __future__ import annotations

import contextlib
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

    class FusedAttention(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = dict(kwargs or {})
            if func is sdpa:
                if len(args) > _DROPOUT_ARG:
                    args = (*args[:_DROPOUT_ARG], 0.0, *args[_DROPOUT_ARG + 1:])
                elif "dropout_p" in kwargs:
                    kwargs["dropout_p"] = 0.0
            elif func is dropout:
                fused = _fused_dropout(torch, *args, **kwargs)
                if fused is not None:
                    return fused
            return func(*args, **kwargs)

    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel": for this trace only
            lib.impl("_grouped_mm", _grouped_mm_meta, "Meta")
        with FusedAttention():
            yield
    finally:
        lib._destroy()


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
