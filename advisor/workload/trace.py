"""Trace any ``torch.nn.Module`` on fake tensors: FLOPs, bytes and memory by category per step.

The module runs under ``torch._subclasses.fake_tensor.FakeTensorMode`` (no real memory, no GPU;
modules built on the ``meta`` device work too) with a ``TorchDispatchMode`` that records every
aten op: FLOPs from the formulas ``FlopCounterMode`` uses (``advisor.workload.aten_ops``), bytes
read + written (sizes of tensor inputs and outputs; views move nothing), and storage lifetimes
(allocation when a new storage appears, free when its weak reference expires).  Tensors packed by
autograd (``saved_tensors_hooks``) are the activations; ``.grad`` storages the gradients; the rest
that lives and dies inside the step the temporaries.  So the counts are torch's own on the same
step: FLOPs as ``FlopCounterMode`` counts them (no backward for inputs that need no grad), saved
bytes as autograd saves them.  Recurrent layers and gradient checkpointing: see
``advisor.workload.trace_blocks``; matmul/conv grouping by GEMM shape: ``advisor.workload.aten_ops``;
presets traced at two batches and scaled: ``advisor.workload.trace_presets``; the storage timeline (what
``advisor.estimator.allocator`` replays): ``advisor.workload.trace_timeline``; CUDA's autocast policy on the CPU
run: ``advisor.workload.trace_autocast``; the step's fake inputs and contexts: ``advisor.workload.trace_step``.

This module is one of the designated torch importers; torch is still imported lazily, inside
functions, so importing ``advisor.workload`` stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload.aten_ops import Gemm, OpGroup, bucket_label, bucketed, call_order, merged, nbytes
from advisor.workload.base import OpCost, Workload
from advisor.workload.eager import optimizer_eager_ops
from advisor.workload.options import BuiltOptions, TracedMemory, check_count
from advisor.workload.trace_blocks import RecurrentFiling
from advisor.workload.trace_record import Recording, recorder_type
from advisor.workload.trace_rnn import COPY, GRAD, SAVED, RawStep, cut_calls, extrapolated, has_recurrent
from advisor.workload.trace_sdpa import cuda_attention_kernels
from advisor.workload.trace_step import FakeStep, default_loss, fake_step, step_contexts, wrapped_errors
from advisor.workload.trace_timeline import StorageTimeline, memory_figures
from advisor.workload.transformer import check_common, optimizer_op, optimizer_state_bytes

StepLoss = Callable[[Any, tuple[Any, ...]], Any]  # (output, the step's inputs) -> scalar loss


@dataclass(frozen=True)
class TraceResult:
    """What one traced step recorded (before the optimizer, which is costed analytically).

    ``groups``: the non-GEMM ops per (phase, op); ``gemms``: every matmul/convolution op in order.
    """

    groups: dict[tuple[str, str], OpGroup]
    params: int
    trainable_params: int
    param_bytes: int
    activation_bytes: float
    transient_bytes: float
    gradient_bytes: float
    peak_bytes: float
    input_bytes: float
    uncounted: tuple[str, ...]
    weight_copy_bytes: float = 0.0
    gemms: tuple[Gemm, ...] = ()
    trainable_tensors: int = 0
    temporaries_peak_bytes: float = 0.0
    allocations: Mapping[str, Any] = field(default_factory=dict)  # for advisor.estimator.allocator.replay
    calls: tuple[tuple[tuple[str, str] | None, int, float], ...] | None = ()  # ``Recording.calls``

    def all_groups(self) -> dict[tuple[str, str], OpGroup]:
        """Non-GEMM groups plus the GEMM records grouped by exact shape or ``min_dim`` class, at the traced batch."""
        return merged(self.groups, bucketed([(r.phase, r.name, r.kind, r.tc, r.flops, r.bytes,
                                              min(r.dims) if r.dims else None, r.dims) for r in self.gemms]))

    def gemm_keys(self) -> list[tuple[str, str]]:
        """The (phase, label) ``all_groups`` files each GEMM record under."""
        return [(r.phase, bucket_label(r.name, min(r.dims) if r.dims else None, r.dims)) for r in self.gemms]


def trace_precision(precision: str) -> str:
    """The precision a fake run is made at: those that run alike share one (tf32, fp8, int8, int4 run as fp32).

    Only the parameters' dtype (``dtype_for``) and autocast (``amp-*``) change the traced step; tensor-core
    use is decided from the precision asked for, after the trace.
    """
    return precision if precision in ("fp16", "bf16", "amp-fp16", "amp-bf16") else "fp32"


def run_traced(module: Any, inputs: tuple[Any, ...], kwargs: Mapping[str, Any], *, mode: str, precision: str,
               loss: StepLoss | None, frozen: tuple[str, ...], label: str, checkpoint: bool = False,
               blocks: Any = None) -> TraceResult:
    """One step of ``module`` on fake copies of ``inputs``: ops, parameters and memory by category.

    ``loss(output, fake inputs)`` (default ``default_loss``) is differentiated in ``train`` mode;
    ``checkpoint`` wraps ``blocks`` (default ``find_blocks(module)``) in ``torch.utils.checkpoint``.  Recurrent
    layers are traced for a few time steps and extrapolated where that reproduces the unrolled trace
    (``advisor.workload.trace_rnn``).
    """
    def step(cut: int | None) -> tuple[TraceResult, RawStep | None]:
        return _traced_step(module, inputs, kwargs, mode=mode, precision=precision, loss=loss, frozen=frozen,
                            label=label, checkpoint=checkpoint, blocks=blocks, cut=cut)

    if not checkpoint and has_recurrent(module):
        fast: TraceResult | None = extrapolated(step)
        if fast is not None:
            return fast
    return step(None)[0]


def _traced_step(module: Any, inputs: tuple[Any, ...], kwargs: Mapping[str, Any], *, mode: str, precision: str,
                 loss: StepLoss | None, frozen: tuple[str, ...], label: str, checkpoint: bool, blocks: Any,
                 cut: int | None) -> tuple[TraceResult, RawStep | None]:
    """``run_traced``'s step, unrolled (``cut`` None) or with every recurrent call cut to ``cut`` time steps."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    train = mode == "train"
    # real tensors the module or the loss holds as constants (e.g. targets in a closure) are faked on use
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    timeline = StorageTimeline()
    rec = Recording(timeline, RecurrentFiling(module))
    was_training = getattr(module, "training", False)
    module.train(train)
    saved: dict[int, int] = {}  # alloc id -> nbytes, activations packed by autograd (not params)
    try:
        fake = fake_step(module, inputs, kwargs, fake_mode, rec, train=train, precision=precision, frozen=frozen)

        def pack(t: Any) -> Any:
            aid = timeline.track(t)
            if aid is not None and aid not in rec.persistent and aid not in fake.input_ids \
                    and aid not in rec.weight_copies:
                saved[aid] = int(t.untyped_storage().nbytes())
            return t

        autocast, policy, ckpt, swapped = step_contexts(module, rec, fake, train=train, precision=precision,
                                                    checkpoint=checkpoint, blocks=blocks, label=label, pack=pack)
        grad_ctx = torch.enable_grad() if train else torch.no_grad()
        cutting = cut_calls(module, rec, fake.params, cut) if cut is not None else contextlib.nullcontext()
        # (a checkpointed block's recompute in backward runs under the attention-kernel choice too, and under CUDA's
        # autocast policy: torch.utils.checkpoint re-enters autocast for the recompute, whose ops
        # must take the dtypes the forward gave them, or its saved tensors' metadata check fails)
        with fake_mode, recorder_type()(rec), grad_ctx, rec.rnn, ckpt, swapped, cuda_attention_kernels(), \
                wrapped_errors(label, rec), cutting as cuts, policy:
            with autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = module(*fake.inputs, **fake.kwargs)
                step_loss = (loss(out, fake.inputs) if loss is not None else default_loss(out, label)) \
                    if train else None
            del out
            if step_loss is not None:
                if not step_loss.requires_grad:
                    raise WorkloadError(f"{label}: nothing to train (no parameter requires grad)",
                                        "use mode='infer', or unfreeze some parameters")
                rec.phase = "backward"
                step_loss.backward()
                del step_loss
            timeline.sweep()
        grads = [p.grad for p in fake.params.values() if p.grad is not None]
    finally:
        module.train(was_training)
    res = _result(module, rec, fake, grads, saved, train=train, frozen=frozen)
    if cuts is None:
        return res, None
    first, events = fake.first_event, timeline.events
    flags: dict[int, int] = {}
    for ids, bit in ((saved, SAVED), (rec.weight_copies, COPY), ({timeline.lookup(g) for g in grads}, GRAD)):
        for aid in ids:
            if aid is not None:
                flags[aid] = flags.get(aid, 0) | bit
    return res, RawStep(cut or 0, cuts.lengths, events[:first], events[first:], flags,
                        [(i - first, key) for i, key in rec.marks or ()], res, {i - first for i in timeline.sweeps})


def _result(module: Any, rec: Recording, fake: FakeStep, grads: list[Any], saved: Mapping[int, int], *,
            train: bool, frozen: tuple[str, ...]) -> TraceResult:
    """The ``TraceResult`` of a recorded step: groups, parameters and the memory replayed by category."""
    timeline = rec.timeline
    grad_ids = {timeline.track(g) for g in grads}
    for (phase, rnn_label), g in rec.groups.items():
        if rnn_label in rec.rnn.calls:
            g.count = rec.rnn.calls[rnn_label]
            g.serial_steps = rec.rnn.steps.get(rnn_label, 0)
            g.gemms = tuple(rec.rnn.gemms.get((rnn_label, phase), ())) or None
    grad_bytes = float(sum(nbytes(g) for g in grads))
    mem = memory_figures(timeline, fake.first_event, rec.persistent | fake.input_ids, rec.weight_copies, grad_ids,
                         float(sum(saved.values())) if train else 0.0, set(saved), fake.param_bytes, grad_bytes)
    step = mem.pop("step")
    allocations = {"params": [[nbytes(t), int(t.requires_grad)] for t in (*fake.params.values(),
                                                                         *fake.buffers.values())],
                   "inputs": [nbytes(t) for t in fake.fixed], **step}
    params_in = dict(module.named_parameters())
    n_params = sum(p.numel() for p in params_in.values())
    trainable = [p for n, p in params_in.items() if p.requires_grad and not n.startswith(frozen)]
    n_train = sum(p.numel() for p in trainable)
    return TraceResult(groups=rec.groups, params=int(n_params), trainable_params=int(n_train) if train else 0,
                       trainable_tensors=len(trainable) if train else 0, param_bytes=int(fake.param_bytes),
                       gradient_bytes=grad_bytes, input_bytes=float(sum(nbytes(t) for t in fake.fixed)),
                       uncounted=tuple(rec.uncounted), gemms=tuple(rec.gemms), allocations=allocations,
                       calls=None if rec.calls is None else tuple(rec.calls), **mem)


def _ops_from(groups: Mapping[tuple[str, str], OpGroup], mode: str, precision: str) -> list[OpCost]:
    ops = []
    for (phase, name), g in groups.items():
        ops.append(OpCost(name=name, kind=g.kind, phase=phase, flops=g.flops, bytes=g.bytes,  # type: ignore[arg-type]
                          count=g.count, tensor_core=g.tc and precision not in ("fp32",), min_dim=g.min_dim,
                          gemms=g.gemms, serial_steps=g.serial_steps, strided_elements=g.strided_elements,
                          tile_flops=g.tile_flops, block_flops=g.block_flops))
    return ops


def common_assumptions(precision: str, optimizer: str | None, mode: str, checkpoint: bool = False) -> list[str]:
    out = ["traced on fake tensors (FakeTensorMode, CPU dispatch): FLOPs from torch.utils.flop_counter formulas "
           "(matmul/conv/attention); other ops costed by bytes of their tensor inputs and outputs (views and "
           "kernel-less ops such as _unsafe_view: 0); calls off TensorIterator's vectorized path grouped apart as "
           "aten.<op>[strided] with their elements",
           "activations: unique storages autograd saves for backward (saved_tensors_hooks), parameters excluded"
           + ("; autocast's 16-bit weight copies (held through the forward, 2 bytes/param) are not activations: "
              "see options.traced_memory_bytes.weight_copies" if precision.startswith("amp-") else ""),
           "transient: what the step's peak holds beyond the weights, all gradients, all activations and the weight "
           "copies (its temporaries and inputs, less the gradients not yet made and the activations already freed "
           "at the peak; replayed storage lifetimes, frees recorded before the next op allocates), so the memory "
           "estimate's sum is the traced peak",
           "autocast traced with CUDA's op policy (aten/src/ATen/autocast_mode.h), not CPU's: e.g. cross-entropy's "
           "log-softmax in the logits' dtype and nll_loss in fp32; norms, softmax and sums in fp32"]
    if checkpoint:
        out.append("gradient checkpointing traced as torch.utils.checkpoint (non-reentrant) runs it on the children of "
                   "the ModuleList/Sequential with the most parameterised children (as validate does): activations = "
                   "the blocks' inputs + what the layers outside the blocks save; transient includes one block's "
                   "activations recomputed in backward; backward includes that recompute (one more forward of the "
                   "blocks)")
    if mode == "train" and optimizer:
        out.append(f"optimizer step ({optimizer}) costed analytically: reads/writes params, grads and "
                   f"{optimizer_state_bytes(optimizer):g} bytes of state per trainable parameter")
    if precision == "amp-fp16":
        out.append("amp-fp16 traced with CPU autocast at float16 (same dtypes as CUDA autocast for matmuls)")
    return out


def trace_module(
    module: Any,
    example_inputs: Any,
    *,
    mode: str = "train",
    precision: str = "fp32",
    optimizer: str | None = "adamw",
    loss_fn: Callable[[Any], Any] | None = None,
    example_kwargs: Mapping[str, Any] | None = None,
    frozen: Sequence[str] = (),
    name: str | None = None,
    family: str | None = None,
    gradient_checkpointing: bool = False,
    grad_accum: int = 1,
    seq_len: int | None = None,
    image_size: int | None = None,
    checkpoint_blocks: Any = None,
    step_loss: StepLoss | None = None,
    **unsupported: Any,
) -> Workload:
    """Trace one step of ``module`` on ``example_inputs`` (batch dimension first) into a ``Workload``.

    Args:
        module: any ``torch.nn.Module`` (real, or built on the ``meta`` device).
        example_inputs: a tensor or tuple of positional inputs; only shapes and dtypes are used.
        mode: ``train`` (forward + loss + backward; optimizer costed analytically) or ``infer``.
        precision: ``fp32``/``tf32`` (fp32), ``bf16``/``fp16`` (params cast), ``amp-*`` (autocast).
        optimizer: optimizer name (train only).
        loss_fn: ``output -> scalar``; default: the output if scalar, else the sum of the means of its
            float tensors.
        example_kwargs: keyword inputs.
        frozen: parameter-name prefixes to freeze (in addition to ``requires_grad=False`` ones).
        gradient_checkpointing: wrap the repeated blocks in ``torch.utils.checkpoint`` (train only).
        checkpoint_blocks: the container whose children are checkpointed (default ``find_blocks(module)``).
        step_loss: ``(output, inputs) -> scalar`` instead of ``loss_fn`` (the inputs as traced, e.g. token
            ids for a language-model loss).

    Raises:
        WorkloadError: bad sizes, an op that depends on tensor values, or the module's own error
            (wrapped, naming what was traced).
    """
    label = name or type(module).__name__
    batch_override = unsupported.pop("batch_size", None)
    if unsupported:
        bad = ", ".join(f"{k}={v!r}" for k, v in unsupported.items() if v not in (None, False))
        if bad:
            raise WorkloadError(f"option(s) {bad} are not supported for a traced module ({label})",
                                "LoRA/QLoRA/attention/gen_len options apply to presets and configs")
    inputs, batch = _example_inputs(example_inputs, example_kwargs, label, batch_override,
                                    lambda b: check_common(b, mode, precision, optimizer if mode == "train" else None,
                                                           grad_accum))
    ckpt = bool(gradient_checkpointing) and mode == "train"
    step_loss = step_loss or ((lambda out, _inputs: loss_fn(out)) if loss_fn is not None else None)
    res = run_traced(module, inputs, dict(example_kwargs or {}), mode=mode, precision=precision, loss=step_loss,
                     frozen=tuple(frozen), label=label, checkpoint=ckpt, blocks=checkpoint_blocks)

    def rebuild(new_batch: int) -> Workload:
        import torch

        check_count("batch_size", new_batch)
        with torch.device("meta"):
            new_inputs = tuple(torch.empty((new_batch, *x.shape[1:]), dtype=x.dtype) if hasattr(x, "shape") else x
                               for x in inputs)
        return trace_module(module, new_inputs, mode=mode, precision=precision, optimizer=optimizer,
                            loss_fn=loss_fn, example_kwargs=example_kwargs, frozen=frozen, name=name, family=family,
                            gradient_checkpointing=gradient_checkpointing, grad_accum=grad_accum, seq_len=seq_len,
                            image_size=image_size, checkpoint_blocks=checkpoint_blocks, step_loss=step_loss)

    return traced_workload(res, label=label, family=family or _guess_family(module), mode=mode, batch=batch,
                           precision=precision, optimizer=optimizer, frozen=bool(frozen), checkpoint=ckpt,
                           grad_accum=grad_accum, seq_len=seq_len, image_size=image_size, rebuild=rebuild)


def _example_inputs(example_inputs: Any, example_kwargs: Mapping[str, Any] | None, label: str,
                    batch_override: int | None, check: Callable[[int], None]) -> tuple[tuple[Any, ...], int]:
    """``(positional inputs as a tuple, batch size)``, at ``batch_override`` where given; ``check(batch)`` vets it.

    Raises:
        WorkloadError: no tensor with a batch dimension, or a zero-size dimension.
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (
        tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,))
    first = next((x for x in (*inputs, *(example_kwargs or {}).values()) if hasattr(x, "shape")), None)
    if first is None or len(first.shape) == 0:
        raise WorkloadError(f"example_inputs of {label} need a tensor with a batch dimension first")
    batch = int(first.shape[0])
    if batch_override is not None and batch_override != batch:
        # the batch dimension of the example inputs is a shape only: take the one asked for
        check(batch_override)
        import torch

        with torch.device("meta"):
            inputs = tuple(torch.empty((batch_override, *x.shape[1:]), dtype=x.dtype) if hasattr(x, "shape") else x
                           for x in inputs)
        batch = batch_override
    check(batch)
    for x in inputs:
        if hasattr(x, "shape") and any(int(d) <= 0 for d in x.shape):
            raise WorkloadError(f"example input of shape {tuple(x.shape)} has a zero-size dimension")
    return inputs, batch


def traced_workload(res: TraceResult, *, label: str, family: str, mode: str, batch: int, precision: str,
                    optimizer: str | None, frozen: bool, checkpoint: bool, grad_accum: int, seq_len: int | None,
                    image_size: int | None, rebuild: Callable[[int], Workload]) -> Workload:
    """The ``Workload`` of one traced step (``run_traced``'s result) of a module, as ``trace_module`` returns it.

    ``rebuild(batch)``: the same module at another batch size.
    """
    ops = _ops_from(res.all_groups(), mode, precision)
    calls = call_order(res.calls, res.gemm_keys(), ops)
    opt = optimizer if mode == "train" else None
    if opt and res.trainable_params:
        ops.append(optimizer_op(res.trainable_params, precision, opt, res.trainable_tensors))
    return Workload(
        name=label, source="module", family=family, mode=mode,  # type: ignore[arg-type]
        batch_size=batch, precision=precision, optimizer=opt, params=res.params,
        trainable_params=res.trainable_params, activation_bytes=res.activation_bytes,
        transient_bytes=res.transient_bytes, ops=tuple(ops), calls=calls, seq_len=seq_len, image_size=image_size,
        tokens_per_sample=seq_len, input_bytes_per_sample=res.input_bytes / batch,
        uncounted_ops=res.uncounted, assumptions=tuple(common_assumptions(precision, opt, mode, checkpoint)),
        eager_ops=optimizer_eager_ops(opt, res.trainable_tensors),
        options=BuiltOptions(
            gradient_checkpointing=checkpoint, grad_accum=grad_accum, rebuild=rebuild, allocations=res.allocations,
            frozen=frozen or res.trainable_params < res.params,
            traced_memory_bytes=TracedMemory(
                parameters=res.param_bytes, gradients=res.gradient_bytes, activations=res.activation_bytes,
                transient=res.transient_bytes, temporaries=res.temporaries_peak_bytes,
                weight_copies=res.weight_copy_bytes, peak_without_optimizer=res.peak_bytes)),
    )


def _guess_family(module: Any) -> str:
    names = {type(m).__name__ for m in module.modules()}
    if names & {"LSTM", "GRU", "RNN"}:
        return "rnn"
    if any("Conv" in n for n in names):
        return "vit" if "VisionTransformer" in names else "cnn"
    if "config" in dir(module) and isinstance(getattr(module, "config", None), dict):
        return "decoder"
    return "mlp"
