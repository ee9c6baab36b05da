"""The zoo's models as validate runs them: built with random weights, their optimizer and checkpointed blocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from advisor.device import CpuDevice, Device, as_device
from advisor.errors import AdvisorError, UnknownModelError
from advisor.validate.records import ALL_MODELS, Built, Case, _dtype
from advisor.workload.zoo import TRANSFORMERS


def make_optimizer(name: str, params: Any) -> Any:
    """The torch optimizer for an optimizer name: its update (``advisor.optimizers.algorithm``) issued as named.

    ``-fused`` names pass ``fused=True``, ``-loop`` names ``foreach=False`` (the single-tensor path); the plain names
    keep torch's default (foreach on CUDA).

    Raises:
        AdvisorError: a name torch.optim does not ship (``advisor.optimizers.NOT_IN_TORCH``: bitsandbytes'
            8-bit AdamW, transformers' AdamW, BertAdam) or an unknown name; the hint lists the ones validate runs.
    """
    import torch

    from advisor.optimizers import NOT_IN_TORCH, OPTIMIZER_NAMES

    accepted = ", ".join(n for n in OPTIMIZER_NAMES if n not in NOT_IN_TORCH)
    if name in NOT_IN_TORCH:
        raise AdvisorError(f"validate cannot run optimizer {name!r}: it is {NOT_IN_TORCH[name]}, not torch.optim's",
                           hint=f"validate runs torch.optim's: {accepted} (estimate prices {name!r})")
    if name not in OPTIMIZER_NAMES:
        raise AdvisorError(f"validate cannot run optimizer {name!r}", hint=f"accepted: {accepted}")
    update, issued = OPTIMIZER_NAMES[name]
    how: dict[str, Any] = {"fused": {"fused": True}, "loop": {"foreach": False}}.get(issued, {})
    updates: dict[str, Callable[[], Any]] = {
        "sgd": lambda: torch.optim.SGD(params, lr=1e-3, **how),
        "sgd-momentum": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9, **how),
        "adam": lambda: torch.optim.Adam(params, lr=1e-4, **how),
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-4, **how),
        "adafactor": lambda: torch.optim.Adafactor(params, lr=1e-3, **how),
    }
    return updates[update]()


def find_blocks(model: Any) -> Any:
    """The repeated blocks of a model.

    The ``ModuleList``/``Sequential`` with the most parameterised children (the tracer's own rule,
    ``advisor.workload.trace_blocks.find_blocks``, so the estimate checkpoints the blocks validate does).
    """
    from advisor.workload.trace_blocks import find_blocks as blocks_of

    return blocks_of(model)


def enable_checkpointing(blocks: Any) -> int:
    """Wrap each block's forward in ``torch.utils.checkpoint`` (non-reentrant); returns how many were wrapped."""
    import torch.utils.checkpoint as cp

    count = 0
    for block in blocks.children():
        original = block.forward

        def forward(*args: Any, _f: Callable[..., Any] = original, **kwargs: Any) -> Any:
            return cp.checkpoint(_f, *args, use_reentrant=False, **kwargs)

        block.forward = forward
        count += 1
    return count




def default_builder(case: Case, device: Device | str) -> Built:
    """Build the zoo model of a case with random weights (see :func:`build_model`)."""
    return build_model(case, device)


#: Zoo builder names (``advisor.workload.zoo.build``) of the models that are not ``TRANSFORMERS``.
_ZOO_BUILDERS = {"lstm-lm": "lstm-lm", "mnist-cnn": "mnist-cnn", "resnet50": "resnet50", "vit-b16": "vit_b_16"}


def build_model(case: Case, device: Device | str) -> Built:
    """The model of a case on ``device`` (``"meta"`` for tracing), with random weights and a random batch.

    The models are ``advisor.workload.zoo``'s (the estimator's own definitions); image batches come in the
    case's dtype for the ``fp16``/``bf16`` cases, whose models are cast to it.

    The batch is drawn on the CPU from a CPU generator seeded 0, then moved: the same inputs on every device
    (CUDA's generator draws a different stream from the CPU's), at the cost of one small copy.  The tensors
    are created with ``device="cpu"`` explicitly: inside ``with torch.device("cuda")`` a bare ``torch.randn``
    would land on the GPU, where a CPU generator is refused.

    Raises:
        UnknownModelError: the case names no zoo model.
        AdvisorError: ``seq_len`` (+ ``gen_len``) is more than the model's positions.
    """
    import torch

    from advisor.workload import zoo

    b = case.batch_size
    target = as_device(device).torch_device
    gen = CpuDevice().generator(0)

    def ints(high: int, shape: tuple[int, ...]) -> Any:
        if target == "meta":
            return torch.empty(shape, dtype=torch.long, device="meta")
        return torch.randint(0, high, shape, generator=gen, device="cpu").to(target)

    def floats(shape: tuple[int, ...]) -> Any:
        dtype = _dtype(case.precision)
        if target == "meta":
            return torch.empty(shape, dtype=dtype, device="meta")
        return torch.randn(shape, generator=gen, device="cpu").to(device=target, dtype=dtype)

    if case.model not in TRANSFORMERS and case.model not in _ZOO_BUILDERS:
        raise UnknownModelError(f"unknown validate model {case.model!r}", hint=f"accepted: {', '.join(ALL_MODELS)}")
    with torch.device(target):
        if case.model in TRANSFORMERS:
            seq = case.seq_len or 128
            model, facts = zoo.build(case.model, target)
            if seq + (case.gen_len or 0) > facts["max_positions"]:
                raise AdvisorError(f"{case.model}: seq_len {seq} (+ gen_len) exceeds its "
                                   f"{facts['max_positions']} positions")
            inputs = (ints(int(facts["vocab_size"]), (b, seq)),)
            generate = getattr(model, "generate", None)  # the decoders; BERT has none
            decode = None if generate is None else lambda inp: generate(inp[0], case.gen_len or 0)
            return Built(model, lambda: inputs, zoo.task_loss(facts), decode=decode, blocks=model.blocks)
        if case.model == "lstm-lm":
            model, facts = zoo.build("lstm-lm", target)
            inputs = (ints(int(facts["vocab_size"]), (b, case.seq_len or 20)),)
            return Built(model, lambda: inputs, zoo.task_loss(facts))
        size = case.image_size or (28 if case.model == "mnist-cnn" else 224)
        kwargs = {"image_size": size} if case.model == "vit-b16" else {}
        model, facts = zoo.build(_ZOO_BUILDERS[case.model], target, **kwargs)
        inputs = (floats((b, int(facts["channels"]), size, size)),)
        classes_out = 10 if case.model == "mnist-cnn" else 1000
        return Built(model, lambda: inputs, zoo.task_loss(facts, ints(classes_out, (b,))))
