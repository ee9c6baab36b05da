"""CUDA's choice of attention kernel applied on the fake CPU run of ``advisor.workload.trace``.

``F.scaled_dot_product_attention`` with dropout (Hugging Face's BERT and GPT-2 train with ``attention_probs_dropout``
/ ``attn_pdrop`` 0.1) runs one fused kernel on a GPU: FlashAttention, the memory-efficient kernel and cuDNN's fused
attention apply the dropout inside the kernel from a Philox seed.  On the CPU the trace runs on, torch has no fused
kernel with dropout and decomposes the call into the math path: two batched matmuls, a softmax and a dropout,
saving the (batch, heads, seq, seq) probabilities and mask for backward.  Traced as such, such a model's attention
would be priced as unfused matmuls and its activations would hold s x s per head that a GPU never stores.  While
``cuda_attention_kernels`` is entered, the trace calls SDPA without the dropout, so that the CPU takes its fused
kernel (``_scaled_dot_product_flash_attention_for_cpu``, which the tracer files with its tiles) as the GPU takes
one; the dropout's own cost inside a fused kernel is not modelled.

One of the designated torch importers; torch is imported lazily, inside the context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: Position of ``dropout_p`` in ``F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, ...)``.
_DROPOUT_ARG = 4


@contextlib.contextmanager
def cuda_attention_kernels() -> Iterator[None]:
    """While entered, SDPA calls run without dropout, on the fused kernel a GPU would run (see above)."""
    import torch
    from torch.overrides import TorchFunctionMode

    sdpa = torch.nn.functional.scaled_dot_product_attention

    class FusedAttention(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = dict(kwargs or {})
            if func is sdpa:
                if len(args) > _DROPOUT_ARG:
                    args = (*args[:_DROPOUT_ARG], 0.0, *args[_DROPOUT_ARG + 1:])
                elif "dropout_p" in kwargs:
                    kwargs["dropout_p"] = 0.0
            return func(*args, **kwargs)

    with FusedAttention():
        yield
