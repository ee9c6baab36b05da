"""Bytes per element at each precision name: the one table the workload builders, the probe and the dashboard read.

Pure data, no imports beyond the errors and the optimizer names: importing it is free.  Precision names are
``advisor.workload.options.PRECISIONS`` (the probe's kernel precisions are a subset of them).

Not here: what a *parameter* costs in memory (fp32 master weights under AMP, int4 group scales), which is the
memory model's rule (``advisor.estimator.memory.weight_bytes_per_param``); an NF4 weight's bytes are here
(``NF4_BYTES_PER_WEIGHT``), read by that rule and by the transformer builder's dequantization kernels.
"""

from __future__ import annotations

from advisor.errors import WorkloadError
from advisor.optimizers import OPTIMIZER_NAMES, algorithm

#: Bytes of one element as the kernels read it: the data type itself.  Under AMP (``amp-*``) the
#: matmuls run on the 16-bit copy; int4 packs two weights per byte.
ELEMENT_BYTES: dict[str, float] = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "amp-fp16": 2, "amp-bf16": 2,
                                   "fp8": 1, "int8": 1, "int4": 0.5}


#: Bytes of one NF4 weight as bitsandbytes stores a QLoRA base: 4 bits, plus its block's absmax (one per 64
#: weights) quantized to 8 bits with one fp32 constant per 256 blocks (double quantization): 8/64 + 32/(64*256) =
#: 0.127 bits per weight (Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs", 2023, section 3).
NF4_BYTES_PER_WEIGHT = 0.5 + (8 / 64 + 32 / (64 * 256)) / 8


def element_bytes(precision: str) -> float:
    """Bytes of one element stored at ``precision`` (a weight a forward matmul reads, a probe kernel's operand).

    Raises:
        WorkloadError: an unknown precision name (the hint lists the accepted ones).
    """
    try:
        return ELEMENT_BYTES[precision]
    except KeyError:
        raise WorkloadError(f"unknown precision {precision!r}", f"accepted: {', '.join(ELEMENT_BYTES)}") from None


def activation_bytes(precision: str) -> int:
    """Bytes of one activation element (matmul inputs and outputs) at ``precision``.

    int8 and int4 are weight-only quantization: their activations stay 16-bit.  fp8 runs its matmuls
    on fp8 operands (as the probe's FP8 kernel does).
    """
    return 2 if precision in ("int8", "int4") else int(element_bytes(precision))


def master_bytes(precision: str) -> int:
    """Bytes of one trained weight, its gradient and its optimizer states' elements at ``precision``.

    fp32 master weights under fp32, tf32 and AMP (``amp-*`` computes in 16 bits on copies); 16-bit for pure
    fp16/bf16 training (and the inference precisions, which train nothing).
    """
    return 4 if precision in ("fp32", "tf32", "amp-fp16", "amp-bf16") else 2


def optimizer_state_bytes(optimizer: str | None, precision: str = "fp32", hidden: int | None = None) -> float:
    """Optimizer-state bytes per trainable parameter: the one rule memory, the workload builders and validate use.

    States follow the weights' dtype: fp32 under fp32/tf32/amp (master weights), 2 bytes for pure fp16/bf16
    training.  Adam/AdamW keep two moments, SGD with momentum one; bitsandbytes' 8-bit AdamW two 1-byte moments
    plus an fp32 scale per 2,048-element block each; Hugging Face's Adafactor (beta1=None, its default) a
    factored second moment, rows + columns in fp32 per r x c matrix, about 2/h of its size for width ``hidden``
    (at least 1/64 when the width is unknown).

    Raises:
        WorkloadError: an unknown optimizer name (the hint lists the accepted ones).
    """
    state = float(master_bytes(precision))
    name, optimizer = optimizer, algorithm(optimizer) if optimizer is not None else None  # the state: the update's
    if optimizer is None or optimizer == "sgd":
        return 0.0
    if optimizer in ("adam", "adamw"):
        return 2 * state
    if optimizer == "sgd-momentum":
        return state
    if optimizer == "adamw-8bit":
        return 2.0 + 2 * 4 / 2048
    if optimizer == "adafactor":
        return 4.0 * max(2.0 / (hidden or 1024), 1 / 64 if hidden is None else 0.0)
    raise WorkloadError(f"unknown optimizer {name!r}", f"accepted: {', '.join(OPTIMIZER_NAMES)}")
