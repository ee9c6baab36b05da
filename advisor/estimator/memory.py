"""Peak device memory per GPU, as nvidia-smi would show it, with a breakdown.

Card-independent parts (model states, activations, KV cache) are computed once per workload and
plan by ``memory_parts``; ``memory_on_card`` adds the card's CUDA context and checks the fit with
pure arithmetic, so ``recommend`` can sweep the catalog quickly.

Model states (bytes per parameter; ZeRO paper, sec. 3.1, counts 16 for mixed-precision Adam):
- weights: fp32/tf32 4; ``amp-*`` 4 (fp32 master weights; autocast casts on the fly); fp16/bf16 2;
  fp8/int8 1; int4 0.5 (+ fp16 group-128 scales); a QLoRA nf4 base 0.5 + 0.127 bit of double-quantized
  constants (Dettmers et al. 2023).  Frozen weights under ``amp-*`` are held in 16 bits.
- gradients: trainable params x 4 (fp32 / amp: grads follow the fp32 weights) or 2 (fp16/bf16).
- optimizer: adam/adamw two states (8 B fp32; 4 B when the weights are 16-bit, as torch keeps states
  in the parameter dtype); sgd-momentum one; sgd none; adamw-8bit 2 B + fp32 absmax per 2048-block
  (bitsandbytes); adafactor factored second moment, ~4 x (rows + cols) per matrix.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from advisor.estimator.allocator import Replay, cast_notes, replay, supports
from advisor.estimator.efficiency import ArchEfficiency
from advisor.estimator.expert_parallel import ep_memory_note, experts_elsewhere
from advisor.estimator.parallel import ParallelPlan, megatron_activation_factor
from advisor.precision import NF4_BYTES_PER_WEIGHT, optimizer_state_bytes
from advisor.units import MiB
from advisor.workload.base import Workload

BREAKDOWN_KEYS: tuple[str, ...] = ("weights", "gradients", "optimizer", "activations", "kv_cache", "overhead")

#: Memory kept free of the estimate: driver reservations, ECC, the display, other processes.
RESERVE_FRACTION = 0.03
# -- PyTorch's CUDA caching allocator (what max_memory_reserved sees beyond max_memory_allocated) ------------
# How it works (PyTorch docs, "CUDA semantics: memory management", and c10/cuda/CUDACachingAllocator.cpp):
# requests are rounded up to 512 B; requests <= 1 MiB are served from 2 MiB segments (small pool), 1-10 MiB
# from 20 MiB segments, larger ones rounded up to a multiple of 2 MiB and cudaMalloc'ed as their own segment
# when no cached free block is large enough.  Freed blocks stay cached and are split to serve later requests;
# a free block coalesces only with free neighbours in its own segment, and segments never merge.  So a large
# tensor freed and re-requested each step (logits, their fp32 copy and gradient, the biggest activations)
# finds its old segment split by smaller tensors and needs a fresh one: reserved grows with the size of the
# per-step temporaries and with the churn of activations, not with the weights.
# A traced workload carries its step's allocations in order, and the closed-form builder writes its step's
# (advisor.workload.step_timeline: the Hugging Face module's ops, tensor by tensor, frees as eager autograd makes them;
# its replayed peaks are the traced module's): there the gap is replayed through these rules
# (advisor.estimator.allocator), which reproduces the measured reserved bytes of the shared H200 transformer
# rows within 0.8%.  The formula below is the fallback for steps with no timeline (bare encoders, T5, MoE but Mixtral,
# LoRA, loops over the plain forward or with repeat_kv, quantized steps, ZeRO / FSDP replicas).
# Sizes of the terms: fitted to the reserved - allocated gap of the 37 validate rows measured on the H100
# (tests/data/gpu-runs/h100-2026-11-28; inputs: each row's predicted transient and activations), by
# non-negative least squares on absolute bytes (107 MiB + 0.36 x transient + 0.09 x activations) and on
# relative error (30 MiB + 0.37 x transient + 0.09 x activations): the shares agree, the constant is taken
# between the two.  The H200 rows (h200-2026-11-28) were kept out of the fit; they check it.
#: Segments held whatever the batch: small-pool 2 MiB segments and 20 MiB segments of mid-size requests.
ALLOCATOR_SEGMENTS_BYTES = 64 * MiB
#: Share of the per-step temporaries (transient) held again as cached, split segments.
ALLOCATOR_TRANSIENT = 0.36
#: Share of the activations (allocated in the forward, freed in reverse order in backward) lost to splitting.
ALLOCATOR_ACTIVATIONS = 0.09
#: On memory allocated once (weights, gradients, optimizer state, KV cache): rounding only.
ALLOCATOR_STATIC = 0.01
#: One line for an estimate's assumptions.
ALLOCATOR_SUMMARY = ("caching allocator (reserved beyond allocated): for a traced workload or a closed-form step "
                     "written op by op, PyTorch's allocator rules replayed on the step's allocations (see the "
                     "caching-allocator note); otherwise "
                     f"{ALLOCATOR_SEGMENTS_BYTES / MiB:.0f} MiB of segments + {ALLOCATOR_TRANSIENT:.0%} of per-step "
                     f"temporaries + {ALLOCATOR_ACTIVATIONS:.0%} of activations + {ALLOCATOR_STATIC:.0%} of model "
                     "states (fitted to the H100 validate rows; near a full card the allocator frees cached "
                     "segments before it fails, so part of it is soft)")
#: One line for an estimate's assumptions when the traced step's allocations are replayed.
ALLOCATOR_REPLAY_SUMMARY = ("reserved beyond allocated from PyTorch's caching-allocator rules (512 B rounding, "
                            "2 MiB / 20 MiB / rounded segments, best-fit split blocks that merge only within "
                            "their segment) replayed on the step's allocations in order (traced, or written op by "
                            "op as the Hugging Face module runs them: advisor.workload.step_timeline), over 3 steps "
                            "with the optimizer's state and temporaries (advisor.estimator.allocator)")
#: cuBLAS(Lt) workspaces are the card profile's ``workspace_mib`` (32 MiB per handle on sm90+, 4 MiB before:
#: CUBLAS_WORKSPACE_CONFIG docs; two handles), plus cuDNN's handle for conv nets (in transient).

_WEIGHT_BYTES = {"fp32": 4.0, "tf32": 4.0, "amp-fp16": 4.0, "amp-bf16": 4.0, "fp16": 2.0, "bf16": 2.0,
                 "fp8": 1.0, "int8": 1.0, "int4": 0.5 + 2 / 128}
_FROZEN_BYTES = {**_WEIGHT_BYTES, "amp-fp16": 2.0, "amp-bf16": 2.0}
NF4_BYTES = NF4_BYTES_PER_WEIGHT


def weight_bytes_per_param(precision: str, *, trainable: bool, mode: str, quantize_base: str | None = None) -> float:
    """Bytes one parameter takes as a weight.

    Trainable weights under ``amp-*`` are fp32 masters; frozen ones (LoRA base, inference) 16-bit;
    a ``quantize_base="nf4"`` frozen weight 0.5 B + quantization constants; quantized precisions
    (fp8/int8/int4) train adapters in bf16.
    """
    if not trainable:
        if quantize_base == "nf4":
            return NF4_BYTES
        return _FROZEN_BYTES[precision] if mode == "train" or precision.startswith("amp") else _WEIGHT_BYTES[precision]
    if precision in ("fp8", "int8", "int4"):
        return 2.0
    return _WEIGHT_BYTES[precision]


def grad_bytes_per_param(precision: str) -> float:
    """Bytes of one gradient: fp32 for fp32/tf32/amp (grads follow the fp32 weights), else 2."""
    return 4.0 if precision in ("fp32", "tf32", "amp-fp16", "amp-bf16") else 2.0


def optimizer_bytes(optimizer: str | None, precision: str, trainable: int, hidden: int | None) -> float:
    """Optimizer state bytes for ``trainable`` parameters (the rule: ``advisor.precision.optimizer_state_bytes``)."""
    if not trainable or optimizer is None:
        return 0.0
    return optimizer_state_bytes(optimizer, precision, hidden) * trainable


@dataclass(frozen=True, slots=True)
class MemoryParts:
    """Card-independent memory of one GPU for one per-GPU micro-batch (bytes)."""

    micro_batch: int
    weights: float
    gradients: float
    optimizer: float
    autocast_cache: float
    activations: float
    transient: float
    kv_cache: float
    notes: tuple[str, ...] = ()
    train: bool = True
    #: the caching allocator's share from the replay of the traced step: its reserved peak beyond the items above
    #: (``None``: not traced, or a plan the replay does not cover; then the fitted ``allocator_bytes`` formula)
    allocator_gap: float | None = None

    @property
    def static_bytes(self) -> float:
        """Bytes that do not grow with the batch (before fragmentation)."""
        return self.weights + self.gradients + self.optimizer + self.autocast_cache

    def per_sample(self) -> tuple[float, float]:
        """(dynamic, kv) bytes per sample of the micro-batch (linear scaling)."""
        b = max(1, self.micro_batch)
        return (self.activations + self.transient) / b, self.kv_cache / b


def _allocations(w: Workload) -> Mapping[str, Any] | None:
    """The step's allocations in order: a trace's, or the closed-form builder's timeline (``options.timeline``)."""
    allocations = w.options.allocations
    if not allocations and w.options.timeline is not None:
        allocations = w.options.timeline()
    return allocations


#: Replays of recent steps, by the identity of their allocations (held in the entry, so the id stays theirs): a
#: workload's step is priced under several plans and cards, its replay is the same for each.
_REPLAYS: OrderedDict[tuple[int, str | None, bool, int], tuple[Mapping[str, Any], Replay]] = OrderedDict()
_REPLAYS_KEPT = 64
_REPLAYS_LOCK = threading.Lock()


def _replayed(allocations: Mapping[str, Any], optimizer: str | None, cast_from_fp32: bool, accumulate: int) -> Replay:
    key = (id(allocations), optimizer, cast_from_fp32, min(accumulate, 2))
    with _REPLAYS_LOCK:
        hit = _REPLAYS.get(key)
        if hit is not None and hit[0] is allocations:
            _REPLAYS.move_to_end(key)
            return hit[1]
    run = replay(allocations, optimizer, cast_from_fp32=cast_from_fp32, accumulate=accumulate)
    with _REPLAYS_LOCK:
        _REPLAYS[key] = (allocations, run)
        if len(_REPLAYS) > _REPLAYS_KEPT:
            _REPLAYS.popitem(last=False)
    return run


def _allocator_gap(w: Workload, plan: ParallelPlan, held: float, notes: list[str]) -> float | None:
    """The caching allocator's share from the replayed step beyond ``held`` (the items' sum), or ``None``."""
    train = w.mode == "train"
    allocations = _allocations(w)
    # a replica that shards the model states (ZeRO, FSDP, the experts under ep) does not run the single-GPU step's
    # allocations: the segments its replay reserves are sized by whole weights, gradients and optimizer temporaries
    # (a 70B step's: over 100 GB): those plans keep the fitted share
    sharded = plan.zero_stage > 0 or plan.strategy in ("tp", "ep")
    if allocations and not sharded and supports(w.optimizer if train else None):
        run = _replayed(allocations, w.optimizer if train else None, w.precision in ("fp16", "bf16"), w.grad_accum)
        notes.extend(cast_notes(w.precision, allocations))
        if plan.strategy == "single":
            # the replay's reserved peak is the step's; the items above are each at their own peak (all gradients,
            # all activations), so their sum can exceed the step's allocated peak: the allocator's share is what
            # the reserved peak holds beyond them
            notes.append(f"caching allocator: {ALLOCATOR_REPLAY_SUMMARY}")
            return max(0.0, float(run.peak_reserved) - held)
        # data parallel: each GPU runs the single-GPU step on its slice (gradient buckets beside it): the replayed
        # step's reserved-beyond-allocated gap
        notes.append(f"caching allocator: {ALLOCATOR_REPLAY_SUMMARY}; the single-GPU step's gap, taken for "
                     f"each {plan.strategy} replica")
        return float(run.gap)
    return None


def memory_parts(w: Workload, plan: ParallelPlan) -> MemoryParts:
    """Model states, activations and KV cache per GPU for workload ``w`` (its micro-batch) under ``plan``."""
    train = w.mode == "train"
    trainable = w.trainable_params if train else 0
    frozen = w.params - trainable
    qb = w.options.quantize_base
    weights = (trainable * weight_bytes_per_param(w.precision, trainable=True, mode=w.mode)
               + frozen * weight_bytes_per_param(w.precision, trainable=False, mode=w.mode, quantize_base=qb))
    notes = []
    arch = w.arch or {}
    if qb and arch.get("vocab_size") and arch.get("hidden_size"):
        # bitsandbytes quantizes nn.Linear layers only, and PEFT / LitGPT keep the LM head unquantized:
        # the input embedding and the head stay 16-bit (tied embeddings: one table).
        tables = 1 if arch.get("tie_word_embeddings") else 2
        embed = min(frozen, tables * arch["vocab_size"] * arch["hidden_size"])
        weights += embed * (2.0 - NF4_BYTES)
        notes.append(f"{qb} base: linear layers quantized; embedding and LM head ({embed / 1e6:.0f}M params) "
                     "kept in 16 bits")
    elsewhere = experts_elsewhere(w, plan)  # under ep (full training: every parameter trainable)
    if elsewhere:
        weights -= elsewhere * weight_bytes_per_param(w.precision, trainable=train, mode=w.mode)
        notes.append(ep_memory_note(w, plan, elsewhere))
    trainable_held = trainable - (elsewhere if train else 0)
    grads = trainable_held * grad_bytes_per_param(w.precision)
    if plan.strategy == "ddp":
        grads *= 2
        notes.append("DDP keeps its gradient buckets as a second copy of the gradients "
                      "(gradient_as_bucket_view=False, the default)")
    hidden = w.arch.get("hidden_size") if w.arch else None
    opt = optimizer_bytes(w.optimizer if train else None, w.precision, trainable_held, hidden)
    # Autocast caches the 16-bit casts of trainable weights; matmul backward keeps them until it runs.
    cache = 2.0 * trainable_held if train and w.precision.startswith("amp") else 0.0
    if plan.strategy in ("zero1", "zero2", "zero3") and train and w.precision.startswith("amp") and trainable:
        # DeepSpeed's mixed-precision layout (ZeRO paper sec. 3.1): 16-bit weights (2) and gradients (2);
        # the fp32 master copy is optimizer state with Adam's moments (K = 12): same 16 B/param in all.
        master = trainable * weight_bytes_per_param(w.precision, trainable=True, mode=w.mode)
        weights -= master - 2.0 * trainable
        opt += master
        grads = 2.0 * trainable
        cache = 0.0
        notes.append(f"{plan.strategy}: DeepSpeed mixed precision keeps 16-bit weights and gradients and the fp32 "
                     "master weights with the optimizer state (ZeRO paper: 2 + 2 + 12 bytes/param for Adam)")
    act, transient, kv = float(w.activation_bytes), float(w.transient_bytes), float(w.kv_cache_bytes)
    if plan.strategy == "tp":
        arch = w.arch or {}
        act *= megatron_activation_factor(plan.tp, seq_len=w.seq_len, hidden=arch.get("hidden_size"),
                                          heads=arch.get("num_heads"))
        transient /= plan.tp
        kv_heads = arch.get("num_kv_heads") or arch.get("num_heads") or plan.tp
        kv /= min(plan.tp, kv_heads)
        notes.append("tp: weights, gradients, optimizer state and transient buffers split evenly; activations "
                     "per Korthikanti et al. 2022 (no sequence parallelism); KV cache split by KV heads")
    return MemoryParts(
        allocator_gap=_allocator_gap(w, plan, weights + grads + opt + cache + act + transient + kv, notes),
        micro_batch=w.batch_size,
        weights=weights / plan.weights_divisor,
        gradients=grads / plan.gradients_divisor,
        optimizer=opt / plan.optimizer_divisor,
        autocast_cache=cache / plan.weights_divisor,
        activations=act,
        transient=transient,
        kv_cache=kv,
        notes=tuple(notes),
        train=train,
    )


#: The memory categories a user can act on, each with the change that shrinks it (``categories_bytes``): the same
#: bytes as ``breakdown_bytes``, with ``overhead`` and ``activations`` split into what they hold.
CATEGORY_ADVICE: Mapping[str, str] = {
    "weights": "quantize the frozen base (QLoRA: --quantize-base nf4), lower-precision weights, or shard them "
               "(ZeRO-3 / FSDP over more cards)",
    "gradients": "train fewer parameters (LoRA: --lora-rank), or shard them (ZeRO-2 / ZeRO-3)",
    "optimizer states": "an 8-bit optimizer (--optimizer adamw-8bit), a stateless one (sgd), or shard them (ZeRO-1+)",
    "activations saved for backward": "gradient checkpointing, or a smaller micro-batch with gradient accumulation",
    "16-bit weight copies (autocast cache)": "keep the weights in 16 bits (no fp32 master copy), or autocast with "
                                             "cache_enabled=False (re-casts per matmul instead)",
    "logits, loss and other step temporaries": "a smaller micro-batch, or a chunked / fused cross-entropy that "
                                               "never holds the whole fp32 logits (e.g. Liger kernel, Apple "
                                               "cut-cross-entropy)",
    "KV cache": "shorter contexts, fewer concurrent requests, or an 8-bit / 4-bit KV cache",
    "CUDA context and kernels": "fixed per process (lazy module loading keeps it small)",
    "library workspaces": "fixed (cuBLAS / cuDNN workspaces)",
    "allocator reserve (fragmentation)": "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, or fewer distinct "
                                         "tensor sizes per step (fixed-length batches)",
}


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Peak memory of one GPU (bytes), as nvidia-smi would show it.

    Attributes:
        total_bytes: sum of ``breakdown_bytes``.
        fits: ``total_bytes <= usable_bytes``.
        capacity_bytes: the card's memory.
        usable_bytes: capacity less ``reserve_bytes`` (3% kept free).
        margin_bytes: ``usable_bytes - total_bytes`` (negative when it does not fit).
        max_batch_size: the largest GLOBAL batch that fits (0 if not even one sample does).
        breakdown_bytes: weights, gradients, optimizer, activations, kv_cache, overhead.
        overhead_detail_bytes: what ``overhead`` holds (CUDA context, library workspaces,
            transient buffers, and ``allocator``: what PyTorch's caching allocator reserves beyond the
            bytes allocated -- segment rounding and blocks that do not coalesce).
        categories_bytes: the same total split into what a user can act on (``CATEGORY_ADVICE`` says what shrinks
            each): activations apart from autocast's 16-bit weight copies, the step's temporaries (logits and loss)
            and the allocator's reserve apart from the fixed context and workspaces.
    """

    total_bytes: float
    fits: bool
    capacity_bytes: float
    usable_bytes: float
    reserve_bytes: float
    margin_bytes: float
    max_batch_size: int
    breakdown_bytes: Mapping[str, float]
    overhead_detail_bytes: Mapping[str, float] = field(default_factory=dict)
    categories_bytes: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (DESIGN.md's ``memory`` keys first)."""
        return {"total_bytes": self.total_bytes, "fits": self.fits,
                "breakdown_bytes": dict(self.breakdown_bytes),
                "usable_bytes": self.usable_bytes, "capacity_bytes": self.capacity_bytes,
                "reserve_bytes": self.reserve_bytes, "margin_bytes": self.margin_bytes,
                "max_batch_size": self.max_batch_size,
                "overhead_detail_bytes": dict(self.overhead_detail_bytes),
                "categories_bytes": dict(self.categories_bytes),
                "category_advice": {k: CATEGORY_ADVICE[k] for k in self.categories_bytes if k in CATEGORY_ADVICE}}

    def to_frame(self) -> Any:
        """One row per category: bytes and GiB."""
        import pandas as pd

        rows = [{"category": k, "bytes": v, "gib": v / 1024**3} for k, v in self.breakdown_bytes.items()]
        rows.append({"category": "total", "bytes": self.total_bytes, "gib": self.total_bytes / 1024**3})
        return pd.DataFrame(rows)


def allocator_bytes(static: float, activations: float, transient: float, kv: float) -> float:
    """What PyTorch's caching allocator reserves beyond the bytes allocated (see the constants above)."""
    return (ALLOCATOR_SEGMENTS_BYTES + ALLOCATOR_STATIC * (static + kv) + ALLOCATOR_ACTIVATIONS * activations
            + ALLOCATOR_TRANSIENT * transient)


def part_allocator_bytes(parts: MemoryParts, batch: int | None = None) -> float:
    """The allocator's share for ``parts`` at micro-batch ``batch`` (default its own).

    The replayed gap, scaled with the batch (it comes from the per-step tensors, which scale with it), else the fitted
    formula.
    """
    b0 = max(1, parts.micro_batch)
    b = b0 if batch is None else batch
    if parts.allocator_gap is not None:
        return parts.allocator_gap * b / b0
    return allocator_bytes(parts.static_bytes, parts.activations * b / b0, parts.transient * b / b0,
                           parts.kv_cache * b / b0)


def _total(parts: MemoryParts, b: int, fixed_overhead: float) -> float:
    scale = b / max(1, parts.micro_batch)
    return (parts.static_bytes + (parts.activations + parts.transient + parts.kv_cache) * scale + fixed_overhead
            + part_allocator_bytes(parts, b))


#: GPU kernel images loaded on first use (CUDA lazy loading): cuBLAS, cuDNN and PyTorch kernels a step runs.
#: Hugging Face's "Model training anatomy" measures 1343 MB for context + kernels with eager loading and says
#: kernels "can take up 1-2GB"; lazy loading (CUDA >= 11.7) loads only what is used: ~half that for a
#: training step (forward, backward and optimizer kernels), a quarter for inference.
KERNEL_MODULES_TRAIN_BYTES = 512 * MiB
KERNEL_MODULES_INFER_BYTES = 256 * MiB


def memory_on_card(parts: MemoryParts, capacity_bytes: float, eff: ArchEfficiency, dp: int) -> MemoryEstimate:
    """Total, fit and largest batch of ``parts`` on a card of ``capacity_bytes``.

    Args:
        parts: from ``memory_parts``.
        capacity_bytes: the card's memory.
        eff: the card's architecture figures (CUDA context size).
        dp: data-parallel degree (global batch = per-GPU micro-batch x dp).
    """
    context = eff.cuda_context_bytes
    kernels = KERNEL_MODULES_TRAIN_BYTES if parts.train else KERNEL_MODULES_INFER_BYTES
    workspace = eff.workspace_bytes
    fixed = context + kernels + workspace
    alloc = part_allocator_bytes(parts)
    reserve = RESERVE_FRACTION * capacity_bytes
    usable = capacity_bytes - reserve
    overhead = context + kernels + workspace + parts.transient + alloc
    breakdown = {"weights": parts.weights, "gradients": parts.gradients,
                 "optimizer": parts.optimizer,
                 "activations": parts.activations + parts.autocast_cache,
                 "kv_cache": parts.kv_cache, "overhead": overhead}
    total = sum(breakdown.values())  # identical up to rounding; keeps "breakdown sums to total" exact
    # cuda_context includes the lazily loaded kernel images (one key: validate.py subtracts it for CPU rows)
    detail = {"cuda_context": context + kernels, "library_workspaces": workspace, "transient": parts.transient,
              "allocator": alloc, "autocast_weight_cache (in activations)": parts.autocast_cache}
    categories = {"weights": parts.weights, "gradients": parts.gradients, "optimizer states": parts.optimizer,
                  "activations saved for backward": parts.activations,
                  "16-bit weight copies (autocast cache)": parts.autocast_cache,
                  "logits, loss and other step temporaries": parts.transient, "KV cache": parts.kv_cache,
                  "CUDA context and kernels": context + kernels, "library workspaces": workspace,
                  "allocator reserve (fragmentation)": alloc}
    return MemoryEstimate(total_bytes=total, fits=total <= usable, capacity_bytes=capacity_bytes,
                          usable_bytes=usable, reserve_bytes=reserve, margin_bytes=usable - total,
                          max_batch_size=max_micro_batch(parts, usable, fixed) * dp,
                          breakdown_bytes=breakdown, overhead_detail_bytes=detail,
                          categories_bytes={k: v for k, v in categories.items() if v})


def max_micro_batch(parts: MemoryParts, usable_bytes: float, fixed_overhead: float, limit: int = 1 << 24) -> int:
    """Largest per-GPU micro-batch whose total fits in ``usable_bytes`` (binary search, linear scaling).

    Per-sample parts (activations, transient buffers, KV cache) scale linearly with the batch;
    model states and the context do not.  0 when not even one sample fits.
    """
    b0 = max(1, parts.micro_batch)
    act_ps, tr_ps, kv_ps = parts.activations / b0, parts.transient / b0, parts.kv_cache / b0

    def total(b: int) -> float:
        return _total(parts, b, fixed_overhead)

    if total(1) > usable_bytes:
        return 0
    if act_ps <= 0 and tr_ps <= 0 and kv_ps <= 0:
        return limit
    lo, hi = 1, 2
    while hi < limit and total(hi) <= usable_bytes:
        lo, hi = hi, hi * 2
    hi = min(hi, limit)
    if total(hi) <= usable_bytes:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if total(mid) <= usable_bytes:
            lo = mid
        else:
            hi = mid
    return lo


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling of a / b."""
    return -(-a // b) if b > 0 else a


