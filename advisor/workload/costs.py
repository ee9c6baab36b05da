"""Per-element and per-parameter costs and the option checks that the analytic and the traced builders share.

Bytes of an activation and a weight at a precision, optimizer state and the optimizer step's op.
"""

from __future__ import annotations

from typing import Any

from advisor.errors import WorkloadError
from advisor.optimizers import algorithm, implementation
from advisor.precision import activation_bytes, element_bytes, master_bytes
from advisor.precision import optimizer_state_bytes as _state_bytes
from advisor.workload.base import OpCost, OpKind
from advisor.workload.options import (
    BUILDER_QUANTIZE_BASES,
    MODES,
    OPTIMIZERS,
    PRECISIONS,
    WorkloadOptions,
    check_count,
)


def compute_bytes(precision: str) -> int:
    """Bytes of one activation element in matmul inputs/outputs at this precision."""
    return activation_bytes(precision)


def weight_bytes(precision: str) -> float:
    """Bytes per weight element read by a forward matmul."""
    return element_bytes(precision)


def optimizer_state_bytes(optimizer: str | None, precision: str = "fp32", hidden: int | None = None) -> float:
    """Optimizer-state bytes per trainable parameter (``advisor.precision.optimizer_state_bytes``)."""
    return _state_bytes(optimizer, precision, hidden)


_OPT_FLOPS = {"sgd": 2, "sgd-momentum": 4, "adam": 12, "adamw": 14, "adafactor": 12, "adamw-8bit": 14}
#: torch.optim's foreach implementations (the CUDA default since PyTorch 2.0): bytes read + written per fp32
#: parameter in one step, and the list-wide passes that move them, counted on torch 2.14 as it runs
#: (benchmarks/count_optimizer_bytes.py).  Each ``_foreach_*`` op is a pass over every parameter, so AdamW
#: moves 80 B/param in 9 passes where the bare update needs 28 (read p, g, m, v; write p, m, v); the ninth pass is
#: the CPU step counters' ``_foreach_add_`` (a host-side call).
OPTIMIZER_PASS_BYTES: dict[str, tuple[float, int]] = {"sgd": (12.0, 1), "sgd-momentum": (32.0, 3),
                                                      "adam": (72.0, 8), "adamw": (80.0, 9)}
#: Fused implementations (``torch.optim.Adam(W)(fused=True)``, apex's ``FusedAdam``): one kernel pass over the list
#: reads p, g, m, v and writes p, m, v: 28 B per fp32 parameter (the script counts 32: ``_fused_adamw_``'s schema
#: marks the gradients written, which its kernel does only to unscale them when a GradScaler's scale is passed).
FUSED_PASS_BYTES: dict[str, tuple[float, int]] = {"adam": (28.0, 1), "adamw": (28.0, 1)}
#: Per-parameter loops, per parameter tensor: (dispatched ops, kernels, bytes read + written per fp32 element).
#: torch.optim with ``foreach=False`` (``_single_tensor_*``), counted on torch 2.14 as it runs
#: (benchmarks/count_optimizer_bytes.py; its step counter's increment and ``.item()`` are host-only ops); Hugging Face
#: transformers' ``AdamW`` (``adamw-hf``: src/transformers/optimization.py, transformers 4.x, ``step``: exp_avg
#: ``mul_`` + ``add_``, exp_avg_sq ``mul_`` + ``addcmul_``, ``sqrt`` + ``add_`` (denom), ``addcdiv_`` into p: seven
#: kernels; weight decay, an eighth, is 0 by the Trainer's default) read in its source; NVIDIA DeepLearningExamples'
#: ``BertAdam`` (``bertadam``: PyTorch/LanguageModeling/BERT/optimization.py, unchanged in the step since 2020 (DLE
#: 155578a7 .. 729963dd), read in its source): ``clip_grad_norm_(p, max_grad_norm)`` per parameter (torch 1.x: 8
#: kernels, counted by the script with ``foreach=False``, 12 B), then next_m ``mul_`` + ``add_``, next_v ``mul_`` +
#: ``addcmul_``, ``next_m / (next_v.sqrt() + e)`` (3), ``update += weight_decay * p.data`` (2), ``lr * update``,
#: its negation and ``p.data.add_`` (3): 20 kernels and 116 B, plus ``.data`` views (23 dispatched ops).  Every
#: tensor is counted as decayed (DLE exempts biases and LayerNorm: two kernels fewer on those, a few bytes).
LOOP_KERNELS: dict[str, tuple[int, int, float]] = {
    "sgd-loop": (1, 1, 12.0), "sgd-momentum-loop": (3, 3, 32.0), "adam-loop": (9, 7, 72.0),
    "adamw-loop": (10, 8, 80.0), "adamw-hf": (7, 7, 72.0), "bertadam": (23, 20, 128.0)}


def optimizer_op(trainable: int, precision: str, optimizer: str | None, tensors: int = 0) -> OpCost:
    """One optimizer step over the trainable parameters (``tensors`` of them): every kernel its implementation runs.

    torch.optim's foreach optimizers move ``OPTIMIZER_PASS_BYTES`` per parameter (states in the parameters'
    dtype: fp32 master weights under amp, 16-bit for pure fp16/bf16 training), fused ones ``FUSED_PASS_BYTES`` in
    one pass, both priced by the ``multi_tensor_apply`` kernels' bandwidth (kind ``optimizer``); a per-parameter loop
    (``advisor.optimizers``: ``-loop``, ``adamw-hf``, ``bertadam``) launches ``LOOP_KERNELS`` kernels per tensor,
    each an ordinary elementwise kernel (kind ``optimizer_loop``); Adafactor and 8-bit Adam (other libraries) are
    costed by their bare update: read grad, read/write param and states.
    """
    master = master_bytes(precision)  # amp keeps fp32 master weights and grads
    impl, algo = implementation(optimizer or ""), algorithm(optimizer or "sgd")
    passes = 1
    kind: OpKind = "optimizer"
    if optimizer in LOOP_KERNELS and tensors:
        _, kernels, per_fp32 = LOOP_KERNELS[optimizer]
        per_param, passes, kind = per_fp32 * master / 4, kernels * tensors, "optimizer_loop"
    elif impl == "fused" and algo in FUSED_PASS_BYTES:
        per_fp32, passes = FUSED_PASS_BYTES[algo]
        per_param = per_fp32 * master / 4
    elif algo in OPTIMIZER_PASS_BYTES:  # foreach, or a loop whose tensors are not known: its bytes, as foreach
        per_fp32, passes = OPTIMIZER_PASS_BYTES[algo]
        per_param = (LOOP_KERNELS[optimizer][2] if optimizer in LOOP_KERNELS else per_fp32) * master / 4
    else:
        per_param = 2 * master + master + 2 * optimizer_state_bytes(optimizer, precision)
    return OpCost(name=f"optimizer.{optimizer}", kind=kind, phase="optimizer",
                  flops=float(_OPT_FLOPS.get(algo, 2) * trainable),
                  bytes=float(per_param * trainable), count=passes)


def check_common(batch_size: Any, mode: str, precision: str, optimizer: str | None, grad_accum: Any) -> None:
    """Reject bad sizes and unknown choices with the accepted values named.

    Raises:
        WorkloadError: an unknown mode, precision or optimizer, a training-only precision in train mode, or
            (``OptionError``, a ``WorkloadError``) a count outside ``COUNT_LIMITS``.
    """
    check_count("batch_size", batch_size)
    if mode not in MODES:
        raise WorkloadError(f"unknown mode {mode!r}", f"accepted: {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise WorkloadError(f"unknown precision {precision!r}", f"accepted: {', '.join(PRECISIONS)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise WorkloadError(f"unknown optimizer {optimizer!r}", f"accepted: {', '.join(OPTIMIZERS)}")
    if mode == "train" and precision in ("fp8", "int8", "int4"):
        raise WorkloadError(f"precision {precision!r} is for inference and quantized fine-tuning only",
                            "train with fp32, tf32, fp16, bf16, amp-fp16 or amp-bf16 (or use "
                            "lora_rank with quantize_base='nf4' for QLoRA)")
    check_count("grad_accum", grad_accum)


def check_builder_options(name: str, opts: WorkloadOptions) -> str | None:
    """The closed-form transformer builders' shared option checks (``build_transformer``, ``build_encoder_decoder``).

    No image size, the common choices (``check_common``), a known quantized base, trained only under LoRA.

    Returns:
        The options' ``quantize_base``.
    """
    if opts.image_size is not None:
        raise WorkloadError(f"image_size does not apply to {name} (a transformer)", "use seq_len")
    check_common(opts.batch_size, opts.mode, opts.precision, opts.optimizer, opts.grad_accum)
    qb = opts.quantize_base
    if qb is not None and qb not in BUILDER_QUANTIZE_BASES:
        raise WorkloadError(f"unknown quantize_base {qb!r}", f"accepted: {', '.join(BUILDER_QUANTIZE_BASES)}")
    if qb and opts.lora_rank is None and opts.mode == "train":
        raise WorkloadError("quantize_base needs lora_rank for training (a quantized base is frozen)",
                            "pass lora_rank (QLoRA), or use mode='infer'")
    return qb
