"""The Workload: what one training or inference step of a model asks of the hardware.

This is the contract between ``advisor.workload`` (which builds workloads from presets,
config.json files and traced ``torch.nn.Module`` s) and ``advisor.estimate`` (which turns
them into memory and time on a card).  It is pure data: no torch, no pynvml.

Conventions:
- ``batch_size`` is the micro-batch this workload describes (one forward/backward on one
  model replica).  ``with_batch_size`` rebuilds it for another micro-batch.
- Every ``OpCost`` total covers the whole step for that micro-batch: for ``train`` the
  forward, backward and optimizer phases; for ``infer`` the forward (for causal LMs:
  the prefill of the context; one generated token is ``decode_ops``).
- Bytes are bytes moved to/from device memory (reads + writes), at the workload's precision.
- Memory held over the step is split by category; weights, gradients and optimizer state are
  derived by the estimator from the parameter counts, precision and optimizer, not here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from advisor.records import json_fields
from advisor.workload.options import BuiltOptions

Mode = Literal["train", "infer"]
Phase = Literal["forward", "backward", "optimizer", "prefill", "decode"]
OpKind = Literal["matmul", "conv", "attention", "elementwise", "norm", "reduction", "embedding",
                 "recurrent", "optimizer", "optimizer_loop", "communication", "other"]


@dataclass(frozen=True, slots=True)
class OpCost:
    """A group of identical or similar kernels in one step.

    Attributes:
        name: readable label ("layers.*.attn.qkv", "aten.convolution").
        kind: what hardware unit it stresses (``matmul``/``conv``/``attention`` use tensor cores
            when ``tensor_core`` is true; the rest run on vector units).
        phase: where in the step it runs.
        flops: floating-point operations, summed over all ``count`` launches.
        bytes: device-memory bytes read + written, summed over all launches.
        count: number of kernel launches (for launch overhead).
        tensor_core: runs on matrix units at the workload's compute precision.
        min_dim: smallest of M, N, K of the (implicit) GEMM: for conv M = batch x output pixels,
            N = output channels, K = input channels x kernel area / groups; small ones run below peak.
        runtime: ``None`` for every runtime, or the one runtime that runs this op at all (``eager``:
            e.g. Hugging Face's KV cache grown by ``torch.cat`` every token, which paged / static caches
            of graph runtimes do not copy).
        gemms: the (M, N, K) of each GEMM one repetition of this op runs (forward: the layer's own; backward:
            the input-gradient and, when the weight trains, the weight-gradient GEMM), where the builder knows
            them; the estimator then prices tiles, waves and alignment (``advisor.estimator.gemm``).  The op's
            ``flops`` are a whole number of repetitions of these.
        serial_steps: dependent steps the op's kernels run one after another (a recurrent layer's time steps x
            layers x directions): each waits for the one before, so the op takes at least that many step
            latencies however small its work (``advisor.estimator.recurrent.RECURRENT_STEP_S``).
        strided_elements: elements its kernels process on an index-bound path, summed over all launches: an
            elementwise op with a broadcast, non-contiguous or cast operand (TensorIterator's offset-computing
            and dynamic-casting kernels), a ``cat`` along an inner dimension, a reduction across rows
            (``advisor.workload.aten_ops.index_bound_elements``); priced by elements per SM cycle
            (``advisor.estimator.index_bound.STRIDED_ELEMENTS_PER_SM_CYCLE``) where that is slower than its bytes.
        tile_flops, block_flops: a fused attention op's work as its kernels do it, summed over all launches: the
            FLOPs of the (query block x key block) tiles they compute (padding and causal skipping included), and one
            tile's FLOPs per query block, the unit of each thread block's fixed cost
            (``advisor.workload.aten_ops.fused_attention_work``); where the card runs fused kernels the estimator
            prices these instead of ``flops`` (0: priced by ``flops``).
    """

    name: str
    kind: OpKind
    phase: Phase
    flops: float
    bytes: float
    count: int = 1
    tensor_core: bool = False
    min_dim: int | None = None
    runtime: str | None = None
    gemms: tuple[tuple[int, int, int], ...] | None = None
    serial_steps: int = 0
    strided_elements: float = 0.0
    tile_flops: float = 0.0
    block_flops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Workload:
    """What one step of a model asks of one model replica (see module docstring).

    Attributes:
        name: preset id, config name, or module class name.
        source: ``preset``, ``config`` or ``module``.
        family: ``cnn``, ``rnn``, ``mlp``, ``decoder`` (causal LM), ``encoder`` (BERT-like),
            ``encoder-decoder`` (T5-like), ``vit``.
        mode, batch_size, seq_len, image_size, precision, optimizer: as given.
        params: all parameters, counted exactly.
        trainable_params: those that get gradients and optimizer state (LoRA adapters only,
            the head only for a frozen base, all for full training, 0 for ``infer``).
        lora_params: the adapter parameters included in ``params`` (0 without LoRA).
        activation_bytes: bytes saved for backward at the peak of one micro-batch
            (with checkpointing if asked), at the workload's precision; 0 for ``infer``.
        transient_bytes: the largest short-lived buffers on top (logits, attention scores,
            workspace of the biggest op), at the peak.
        kv_cache_bytes: KV cache for ``infer`` of causal LMs at ``seq_len + gen_len``; else 0.
        ops: per-step costs (train: forward + backward + optimizer; infer: forward/prefill).
        calls: a traced step's dispatched calls in order, each ``(index into ops, share of that op's time)``
            (the optimizer, costed analytically, is not among them); empty for analytic workloads.  The
            estimator replays PyTorch eager's launch queue on them (``advisor.estimator.host.queue_replay``).
        decode_ops: for causal-LM ``infer``: the costs of generating ONE token (averaged over
            the generated length); empty otherwise.
        gen_len: tokens generated after the prefill (causal-LM ``infer`` only).
        tokens_per_sample: tokens one sample carries (LMs), ``None`` for vision.
        input_bytes_per_sample: bytes one sample moves host -> device (the input pipeline).
        arch: shape facts the estimator needs for parallelism (``num_layers``, ``hidden_size``,
            ``num_heads``, ``num_kv_heads``, ``head_dim``, ``vocab_size``, ``intermediate_size``,
            ``num_experts``, ``experts_per_token``), where they exist.
        eager_ops: operator calls the host dispatches per phase in PyTorch eager (kernels and views;
            ``decode`` per generated token), where they differ from the ops' launch counts (the
            analytic builders, ``advisor.workload.eager``); a missing phase means the sum of its
            ops' ``count`` (the tracer sees every dispatched op).
        uncounted_ops: ops the tracer could not cost (listed, never silently zero).
        assumptions: every modelling choice made, in words.
        options: what the builder built beyond the fields above (``advisor.workload.options.BuiltOptions``:
            checkpointing, accumulation, LoRA, quantized base, the traced memory and allocations, ``rebuild``).
    """

    name: str
    source: Literal["preset", "config", "module"]
    family: str
    mode: Mode
    batch_size: int
    precision: str
    optimizer: str | None
    params: int
    trainable_params: int
    activation_bytes: float
    transient_bytes: float
    ops: tuple[OpCost, ...]
    calls: tuple[tuple[int, float], ...] = ()
    seq_len: int | None = None
    image_size: int | None = None
    lora_params: int = 0
    kv_cache_bytes: float = 0.0
    decode_ops: tuple[OpCost, ...] = ()
    gen_len: int | None = None
    tokens_per_sample: int | None = None
    input_bytes_per_sample: float = 0.0
    arch: Mapping[str, int] = field(default_factory=dict)
    eager_ops: Mapping[str, int] = field(default_factory=dict)
    uncounted_ops: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    options: BuiltOptions = field(default_factory=BuiltOptions)

    @property
    def flops_per_step(self) -> float:
        """FLOPs of one micro-batch step (train: fwd + bwd + optimizer; infer: forward/prefill)."""
        return sum(op.flops for op in self.ops)

    @property
    def bytes_per_step(self) -> float:
        """Device-memory bytes moved by one micro-batch step."""
        return sum(op.bytes for op in self.ops)

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether activations are recomputed in backward."""
        return self.options.gradient_checkpointing

    @property
    def grad_accum(self) -> int:
        """Micro-batches per optimizer step."""
        return self.options.grad_accum

    def with_batch_size(self, batch_size: int) -> Workload:
        """This workload for another micro-batch size.

        Presets and configs are rebuilt exactly; traced modules scale the per-sample parts
        linearly (set by the builder in ``options.rebuild``).
        """
        if batch_size == self.batch_size:
            return self
        rebuild = self.options.rebuild
        if rebuild is None:
            raise NotImplementedError(f"workload {self.name!r} cannot be rebuilt for another batch size")
        result: Workload = rebuild(batch_size)
        return result

    def summary(self) -> str:
        """A few readable lines: model, shape, params, FLOPs, memory categories."""
        from advisor.units import format_bytes, format_count

        shape = f"seq {self.seq_len}" if self.seq_len else f"image {self.image_size}" if self.image_size else ""
        lines = [
            f"{self.name} ({self.family}, {self.source}) {self.mode}, batch {self.batch_size} {shape}".rstrip(),
            f"  params {format_count(self.params)} (trainable {format_count(self.trainable_params)}), "
            f"precision {self.precision}, optimizer {self.optimizer or '-'}",
            f"  {format_count(self.flops_per_step)}FLOP and {format_bytes(self.bytes_per_step)} moved per step; "
            f"activations {format_bytes(self.activation_bytes)}, transient {format_bytes(self.transient_bytes)}"
            + (f", KV cache {format_bytes(self.kv_cache_bytes)}" if self.kv_cache_bytes else ""),
        ]
        if self.uncounted_ops:
            lines.append(f"  not counted: {', '.join(self.uncounted_ops)}")
        return "\n".join(lines)

    def field_data(self) -> dict[str, Any]:
        """Every field, JSON-safe (what the trace cache stores; ``to_dict`` adds the step's totals)."""
        def ops(values: tuple[OpCost, ...]) -> list[dict[str, Any]]:
            return [op.to_dict() for op in values]

        return json_fields(self, convert={"ops": ops, "decode_ops": ops, "options": BuiltOptions.to_dict})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (ops included)."""
        out = self.field_data()
        out["flops_per_step"] = self.flops_per_step
        out["bytes_per_step"] = self.bytes_per_step
        return out
