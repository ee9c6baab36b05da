"""The setup of a traced step: its fake parameters and inputs, the contexts it runs in, its default loss and errors.

Used by ``advisor.workload.trace.run_traced``.  One of the designated torch importers; torch is imported lazily,
inside the functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload.trace_autocast import cuda_autocast_policy
from advisor.workload.trace_blocks import checkpointed, find_blocks
from advisor.workload.trace_record import Recording
from advisor.workload.trace_rnn import NotCut


def dtype_for(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def fake_like(t: Any, requires_grad: bool, dtype: Any = None) -> Any:
    import torch

    dt = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
    return torch.empty_strided(tuple(t.shape), tuple(t.stride()) if t.is_contiguous() else
                               torch.empty(tuple(t.shape)).stride(), dtype=dt,
                               device="cpu").requires_grad_(requires_grad)


def default_loss(out: Any, label: str) -> Any:
    """The output if scalar, else the sum of the means of its float tensors."""
    import torch
    from torch.utils._pytree import tree_flatten

    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return out
    leaves = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not leaves:
        raise WorkloadError(f"{label}: the module's output has no float tensor to differentiate", "pass loss_fn=")
    return sum(t.float().mean() for t in leaves)


@contextlib.contextmanager
def wrapped_errors(label: str, recording: Recording) -> Iterator[None]:
    """Any failure of the traced step as a ``WorkloadError`` naming the module and the phase."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

    try:
        yield
    except (DataDependentOutputException, DynamicOutputShapeException) as exc:
        raise WorkloadError(
            f"{label}: a data-dependent op ({exc.func if hasattr(exc, 'func') else exc}) cannot be "
            "traced on fake tensors (e.g. nonzero, .item(), boolean-mask indexing)",
            "make the shapes independent of the values, or estimate from a preset/config") from exc
    except (WorkloadError, NotCut):
        raise
    except Exception as exc:
        raise WorkloadError(f"tracing {label} ({recording.phase}) failed: {type(exc).__name__}: {exc}",
                            "check that example_inputs fit the module (batch dimension first)") from exc


@dataclass
class FakeStep:
    """The fake copies a traced step runs on, and what the timeline knows of them before the step."""

    params: dict[str, Any]
    buffers: dict[str, Any]
    inputs: tuple[Any, ...]
    kwargs: dict[str, Any]
    fixed: list[Any]  # the input tensors (positional and keyword)
    input_ids: set[int | None]
    param_bytes: int
    first_event: int  # the timeline's first event of the step itself


def fake_step(module: Any, inputs: tuple[Any, ...], kwargs: Mapping[str, Any], fake_mode: Any, rec: Recording, *,
               train: bool, precision: str, frozen: tuple[str, ...]) -> FakeStep:
    """Fake copies of the module's parameters, buffers and the inputs, tracked as allocated before the step."""
    import torch

    amp = precision.startswith("amp-")
    pdtype = dtype_for(precision)
    timeline = rec.timeline
    with fake_mode:
        fparams = {n: fake_like(p, train and p.requires_grad and not n.startswith(frozen), pdtype)
                   for n, p in module.named_parameters()}
        fbuffers = {n: fake_like(b, False, pdtype if b.is_floating_point() else None)
                    for n, b in module.named_buffers()}
        finputs = tuple(fake_like(x, False, pdtype if (not amp and x.is_floating_point()) else None)
                        if isinstance(x, torch.Tensor) else x for x in inputs)
        fkwargs = {k: fake_like(v, False) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    fixed = [t for t in (*finputs, *fkwargs.values()) if isinstance(t, torch.Tensor)]
    rec.persistent.update(timeline.track(t) for t in (*fparams.values(), *fbuffers.values()))
    input_ids = {timeline.track(t) for t in fixed}
    param_bytes = sum(n for _kind, aid, n in timeline.events if aid in rec.persistent)
    return FakeStep(fparams, fbuffers, finputs, fkwargs, fixed, input_ids, param_bytes, len(timeline.events))


def step_contexts(module: Any, rec: Recording, fake: FakeStep, *, train: bool, precision: str, checkpoint: bool,
              blocks: Any, label: str, pack: Callable[[Any], Any]) -> tuple[Any, Any, Any, Any]:
    """``(autocast, its CUDA op policy, the checkpoint wrappers, the fake parameters swapped in)``."""
    import torch
    from torch.nn.utils.stateless import _reparametrize_module

    amp = precision.startswith("amp-")
    autocast = (torch.autocast("cpu", dtype=dtype_for(precision.removeprefix("amp-")))
                if amp else torch.autocast("cpu", enabled=False))
    policy = cuda_autocast_policy() if amp else contextlib.nullcontext()
    if checkpoint and train:
        blocks = blocks if blocks is not None else find_blocks(module)
        if blocks is None:
            raise WorkloadError(f"{label}: no repeated blocks found to checkpoint",
                                "gradient checkpointing wraps the children of the ModuleList/Sequential with "
                                "the most parameterised children; the module has none with two")
    ckpt = checkpointed(blocks, on_input=pack) if checkpoint and train else contextlib.nullcontext()
    # the fake parameters stay in place through backward: a checkpointed block recomputes there
    swapped = _reparametrize_module(module, {**fake.params, **fake.buffers}, tie_weights=True)
    return autocast, policy, ckpt, swapped
