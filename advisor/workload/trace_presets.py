"""Traced presets (CNN, ViT, RNN): traced once per shape at two small batches, then scaled linearly.

Costs are linear in the batch size (fixed weight traffic + per-sample work), so two traces give
them at any batch.  GEMM shapes are not fixed: M = batch x rows grows with the batch, so a
matmul's ``min_dim`` class at batch 2 says little about batch 256.  Hence the GEMM ops are kept
one by one: the i-th op of a (phase, op) in the batch-2 trace is the i-th of the batch-4 trace
(the same module takes the same op sequence), its FLOPs and bytes are scaled linearly, each
GEMM dimension that differs between the two traces is scaled linearly too (it grows with the
batch; one that does not is a weight dimension and stays), and only then are the ops bucketed by
``min_dim`` class, at the batch asked for (cached per preset shape and batch).  Where the two
traces took different kernels (different non-GEMM ops, or a different number of a matmul op),
those ops fall back to one group per (phase, kind) scaled as totals, as before; a fallen-back
GEMM group takes the smallest ``min_dim`` of the batch-4 trace (conservative).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload import zoo
from advisor.workload.aten_ops import Gemm, OpGroup, bucket_label, bucketed, call_order, merged
from advisor.workload.base import OpCost, Workload
from advisor.workload.eager import optimizer_eager_ops
from advisor.workload.options import BuiltOptions, check_count
from advisor.workload.trace import TraceResult, common_assumptions, run_traced, trace_precision
from advisor.workload.transformer import check_common, optimizer_op

_TRACE_BATCHES = (2, 4)  # batch 1 takes special kernel paths in places (addmm vs mm on squeezed shapes)


def _by_kind(groups: Mapping[tuple[str, str], OpGroup]) -> dict[tuple[str, str], OpGroup]:
    out: dict[tuple[str, str], OpGroup] = {}
    for (phase, _name), g in groups.items():
        m = out.setdefault((phase, f"{g.kind} ops"), OpGroup(g.kind, g.tc))
        m.flops += g.flops
        m.bytes += g.bytes
        m.count += g.count
        m.strided_elements += g.strided_elements
        m.tile_flops += g.tile_flops
        m.block_flops += g.block_flops
        m.tc = m.tc or g.tc
        if g.min_dim is not None:
            m.min_dim = g.min_dim if m.min_dim is None else min(m.min_dim, g.min_dim)
    return out


def _preset_trace(builder: str, image_size: int | None, seq_len: int | None, mode: str,
                  precision: str, checkpoint: bool = False) -> tuple[TraceResult, TraceResult, dict[str, Any]]:
    """The two traced batches of a preset shape: shipped with the package where it is, else traced now."""
    return _traces(builder, image_size, seq_len, mode, trace_precision(precision), checkpoint)


@functools.lru_cache(maxsize=64)
def _traces(builder: str, image_size: int | None, seq_len: int | None, mode: str, precision: str,
            checkpoint: bool) -> tuple[TraceResult, TraceResult, dict[str, Any]]:
    from advisor.workload.trace_shipped import shipped_trace

    shipped = shipped_trace(builder, image_size, seq_len, mode, precision, checkpoint)
    if shipped is not None:
        return shipped
    return trace_pair(builder, image_size, seq_len, mode, precision, checkpoint)


def trace_pair(builder: str, image_size: int | None, seq_len: int | None, mode: str,
               precision: str, checkpoint: bool = False) -> tuple[TraceResult, TraceResult, dict[str, Any]]:
    """Trace a preset shape at the two ``_TRACE_BATCHES`` (torch imported): the traces and the model's facts."""
    import torch

    module, facts = zoo.build(builder, device="meta")
    results = []
    for b in _TRACE_BATCHES:
        with torch.device("meta"):
            if facts["input"] == "image":
                x = torch.empty(b, facts["channels"], image_size, image_size)  # type: ignore[arg-type]
            else:
                x = torch.empty(b, seq_len, dtype=torch.long)  # type: ignore[arg-type]
        results.append(run_traced(module, (x,), {}, mode=mode, precision=precision, loss=zoo.task_loss(facts),
                                   frozen=tuple(facts["frozen_prefixes"]), label=builder, checkpoint=checkpoint))
    return results[0], results[1], facts


def _lin(v1: float, v2: float, b: int) -> float:
    b1, b2 = _TRACE_BATCHES
    slope = (v2 - v1) / (b2 - b1)
    return max(0.0, v1 + slope * (b - b1))


def _scaled_allocations(a1: Mapping[str, Any], a2: Mapping[str, Any], b: int) -> dict[str, Any] | None:
    """The traced step's allocations at batch ``b`` from the two traced batches, each size scaled linearly.

    ``None`` when the two steps differ in more than sizes: then nothing is replayed.
    """
    if not a1 or not a2 or a1["params"] != a2["params"] or a1["grads"] != a2["grads"] or \
            len(a1["step"]) != len(a2["step"]) or len(a1["inputs"]) != len(a2["inputs"]) or \
            any((e1 < 0 or e2 < 0) and e1 != e2 for e1, e2 in zip(a1["step"], a2["step"], strict=True)):
        return None
    return {"params": a1["params"], "grads": a1["grads"],
            "inputs": [round(_lin(x1, x2, b)) for x1, x2 in zip(a1["inputs"], a2["inputs"], strict=True)],
            "step": [e1 if e1 < 0 else round(_lin(e1, e2, b)) for e1, e2 in zip(a1["step"], a2["step"], strict=True)]}


def _scaled_dim(d1: int, d2: int, b: int) -> int:
    return d1 if d1 == d2 else max(1, round(_lin(d1, d2, b)))


def _scaled_gemms(g1: tuple[tuple[int, int, int], ...] | None, g2: tuple[tuple[int, int, int], ...] | None,
                  b: int) -> tuple[tuple[int, int, int], ...] | None:
    """A group's GEMM shapes at batch ``b`` from the two traced batches (dimensions that grow scaled)."""
    if not g1 or not g2 or len(g1) != len(g2):
        return None
    return tuple(tuple(_scaled_dim(d1, d2, b) for d1, d2 in zip(a, c, strict=True))  # type: ignore[misc]
                 for a, c in zip(g1, g2, strict=True))


@functools.lru_cache(maxsize=256)
def _preset_ops(builder: str, image_size: int | None, seq_len: int | None, mode: str, precision: str,
                batch: int, checkpoint: bool = False) -> tuple[tuple[OpCost, ...], tuple[tuple[int, float], ...]]:
    """The traced ops (no optimizer) of a preset shape at ``batch``, and their calls in order.

    See the section comment; the calls (``Workload.calls``) are the larger traced batch's order and shares.
    """
    r1, r2, _facts = _preset_trace(builder, image_size, seq_len, mode, precision, checkpoint)
    groups1, groups2 = r1.groups, r2.groups
    same_groups = groups1.keys() == groups2.keys()
    if not same_groups:
        # the two batches took different kernels (e.g. addmm vs mm + add): scale per (phase, kind)
        groups1, groups2 = _by_kind(groups1), _by_kind(groups2)
    scaled: dict[tuple[str, str], OpGroup] = {}
    for key, g1 in groups1.items():
        g2 = groups2.get(key, g1)
        scaled[key] = OpGroup(g1.kind, g1.tc, flops=_lin(g1.flops, g2.flops, batch),
                             bytes=_lin(g1.bytes, g2.bytes, batch), count=g1.count,
                             serial_steps=g1.serial_steps,  # time steps do not grow with the batch
                             strided_elements=_lin(g1.strided_elements, g2.strided_elements, batch),
                             tile_flops=_lin(g1.tile_flops, g2.tile_flops, batch),
                             block_flops=_lin(g1.block_flops, g2.block_flops, batch),
                             min_dim=g1.min_dim,  # attention's head dim: not the batch's
                             gemms=_scaled_gemms(g1.gemms, g2.gemms, batch))
    seqs: dict[tuple[str, str], tuple[list[Gemm], list[Gemm]]] = {}
    for i, res in enumerate((r1, r2)):
        for r in res.gemms:
            seqs.setdefault((r.phase, r.name), ([], []))[i].append(r)
    records: list[tuple[Any, ...]] = []
    fallback: dict[tuple[str, str], list[OpGroup]] = {}
    where2 = {id(r): i for i, r in enumerate(r2.gemms)}
    keys2: dict[int, tuple[str, str]] = {}  # the group each of the larger batch's GEMM records lands in
    for (phase, name), (s1, s2) in seqs.items():
        if len(s1) == len(s2) and all(len(a.dims) == len(b.dims) for a, b in zip(s1, s2, strict=True)):
            for a, b in zip(s1, s2, strict=True):
                dims = [_scaled_dim(d1, d2, batch) for d1, d2 in zip(a.dims, b.dims, strict=True)]
                md = min(dims) if dims else None
                records.append((phase, name, a.kind, a.tc, _lin(a.flops, b.flops, batch),
                                _lin(a.bytes, b.bytes, batch), md, tuple(dims)))
                keys2[where2[id(b)]] = (phase, bucket_label(name, md, tuple(dims)))
            continue
        for i, part in enumerate((s1, s2)):
            for r in part:
                if i == 1:
                    keys2[where2[id(r)]] = (phase, f"{r.kind} ops")
                gs = fallback.setdefault((phase, f"{r.kind} ops"), [OpGroup(r.kind, r.tc), OpGroup(r.kind, r.tc)])
                g = gs[i]
                g.flops += r.flops
                g.bytes += r.bytes
                g.count += 1
                if i == 1 and r.dims:
                    g.min_dim = min(r.dims) if g.min_dim is None else min(g.min_dim, *r.dims)
    for key, (g1, g2) in fallback.items():
        scaled[key] = OpGroup(g1.kind, g1.tc, flops=_lin(g1.flops, g2.flops, batch),
                             bytes=_lin(g1.bytes, g2.bytes, batch), count=g1.count or g2.count,
                             min_dim=g2.min_dim)
    grouped = merged(scaled, bucketed(records))
    ops = tuple(OpCost(name=name, kind=g.kind, phase=phase, flops=g.flops, bytes=g.bytes,  # type: ignore[arg-type]
                       count=g.count, tensor_core=g.tc and precision != "fp32", min_dim=g.min_dim,
                       gemms=g.gemms, serial_steps=g.serial_steps, strided_elements=g.strided_elements,
                       tile_flops=g.tile_flops, block_flops=g.block_flops)
                for (phase, name), g in grouped.items())
    calls = call_order(r2.calls, [keys2[i] for i in range(len(r2.gemms))], ops) if same_groups else ()
    return ops, calls


def preset_workload(preset: Any, *, batch_size: int, seq_len: int | None, image_size: int | None, mode: str,
                    precision: str, optimizer: str | None, gradient_checkpointing: bool = False,
                    grad_accum: int = 1) -> Workload:
    """A traced preset at any batch size (two fake traces per shape, cached, scaled linearly).

    See the comment above ``_TRACE_BATCHES`` for how matmul/convolution shapes (``min_dim``) are
    scaled to ``batch_size`` before the ops are grouped.
    """
    check_common(batch_size, mode, precision, optimizer if mode == "train" else None, grad_accum)
    ckpt = bool(gradient_checkpointing) and mode == "train"
    cfg = preset.config
    assumptions: list[str] = []
    if preset.family == "rnn":
        seq = seq_len if seq_len is not None else cfg["seq_len"]
        check_count("seq_len", seq)
        img = None
    else:
        img = image_size if image_size is not None else cfg["image_size"]
        check_count("image_size", img)
        if preset.name == "mnist-cnn" and img < 28:
            raise WorkloadError(f"image_size {img} is too small for mnist-cnn", "use image_size >= 28")
        if preset.family == "vit" and img != 224:
            raise WorkloadError(f"{preset.name} takes 224x224 images only, got image_size {img}")
        seq = None
    r1, r2, facts = _preset_trace(cfg["builder"], img, seq, mode, precision, ckpt)
    traced_ops, calls = _preset_ops(cfg["builder"], img, seq, mode, precision, batch_size, ckpt)
    ops = list(traced_ops)
    opt = optimizer if mode == "train" else None
    if opt and r1.trainable_params:
        ops.append(optimizer_op(r1.trainable_params, precision, opt, r1.trainable_tensors))
    assumptions += common_assumptions(precision, opt, mode, ckpt)
    if mode == "train":
        assumptions.append(zoo.task_loss_note(facts))
    assumptions.append(f"traced at batch {_TRACE_BATCHES[0]} and {_TRACE_BATCHES[1]} and scaled linearly in the "
                       "batch size (fixed weight traffic + per-sample costs); matmul/conv ops scaled one by "
                       "one (GEMM dims that grow with the batch scaled with it) and grouped by min(M, N, K) class "
                       "at this batch")
    if preset.name == "vgg16-transfer" and mode == "train":
        assumptions.append("vgg16-transfer: conv base frozen (no weight gradients, no optimizer state); "
                           "backward stops at the head")

    def rebuild(new_batch: int) -> Workload:
        return preset_workload(preset, batch_size=new_batch, seq_len=seq_len, image_size=image_size, mode=mode,
                               precision=precision, optimizer=optimizer, gradient_checkpointing=gradient_checkpointing,
                               grad_accum=grad_accum)

    return Workload(
        name=preset.name, source="preset", family=preset.family, mode=mode, batch_size=batch_size,  # type: ignore[arg-type]
        precision=precision, optimizer=opt, params=r1.params, trainable_params=r1.trainable_params,
        activation_bytes=_lin(r1.activation_bytes, r2.activation_bytes, batch_size),
        transient_bytes=_lin(r1.transient_bytes, r2.transient_bytes, batch_size), ops=tuple(ops), calls=calls,
        seq_len=seq, image_size=img, tokens_per_sample=seq,
        input_bytes_per_sample=(r2.input_bytes - r1.input_bytes) / (_TRACE_BATCHES[1] - _TRACE_BATCHES[0]),
        uncounted_ops=r1.uncounted, assumptions=tuple(assumptions),
        eager_ops=optimizer_eager_ops(opt, r1.trainable_tensors),
        options=BuiltOptions(gradient_checkpointing=ckpt, grad_accum=grad_accum,
                             frozen=r1.trainable_params < r1.params and mode == "train", rebuild=rebuild,
                             allocations=_scaled_allocations(r1.allocations, r2.allocations, batch_size) or None),
    )
