"""Every assumption behind an estimate, in words, in the order the JSON lists them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advisor.estimator._prepare import is_nchw_cnn
from advisor.estimator._step import StepInputs, StepTime
from advisor.estimator.calibrate import uncalibrated_note
from advisor.estimator.conv import CONV_FP32_SOURCE, LAYOUT_SOURCE
from advisor.estimator.efficiency import (
    CONTEXT_SOURCE,
    HOST_SOURCE,
)
from advisor.estimator.gemm import SIMT_SOURCE, UNALIGNED_SOURCE, activation_rows, unaligned_gemms
from advisor.estimator.host import backward_fraction, backward_op_s
from advisor.estimator.memory import (
    ALLOCATOR_SUMMARY,
    KERNEL_MODULES_INFER_BYTES,
    KERNEL_MODULES_TRAIN_BYTES,
    RESERVE_FRACTION,
)
from advisor.workload.eager import SOURCE as EAGER_SOURCE
from advisor.workload.transformer import compute_bytes


@dataclass(frozen=True, slots=True)
class EstimateNotes:
    """What an estimate says beyond its step's own notes: the card, its clock and calibration, memory, the loader.

    ``changed``: the calibrated figures (``calibrate.apply_efficiencies``); ``calibration`` what was asked for (to
    say when it changed nothing); ``fallback``: the precision's fallback peak, if any; ``package_note``: one device
    of a multi-die package; ``loader_note`` is said only when the loader's rate was not given (``loader_given``).
    """

    clock_note: str
    memory_notes: Sequence[str]
    calibration: Any
    changed: Sequence[str]
    fallback: str | None
    package_note: str | None
    loader_note: str | None
    loader_given: bool


def assumptions(s: StepInputs, step: StepTime, notes: EstimateNotes) -> list[str]:
    """What the estimate of ``s.w`` on the card assumed.

    Batch and parallelism, what memory counts, the efficiencies and clock, the runtime's host floor, calibration,
    fallbacks and the workload's own.
    """
    w = s.w
    said = [*_setting(s, step, notes.clock_note), *notes.memory_notes, *step.notes]
    if is_nchw_cnn(w) and s.rates.layout_transposes and not s.channels_last:
        said.append(LAYOUT_SOURCE)
    if w.precision == "fp32" and s.eff.conv_fp32_math == "matrix" and any(op.kind == "conv" for op in w.ops):
        said.append(CONV_FP32_SOURCE)
    if s.rates.sm_count and any(op.gemms and not (op.tensor_core and s.rates.tensor_cores) for op in w.ops):
        said.append(SIMT_SOURCE)
    said += _unaligned(s, step)
    if notes.changed:
        said.append(f"calibrated by a probe of this card: {', '.join(notes.changed)}")
    elif (note := uncalibrated_note(notes.calibration)) is not None:
        said.append(note)
    if notes.fallback:
        said.append(notes.fallback)
    if notes.package_note:
        said.append(notes.package_note)
    if notes.loader_note and not notes.loader_given:
        said.append(notes.loader_note)
    if w.mode != "train" and w.decode_ops:
        said.append("tokens_per_s counts generated tokens per second over prefill + decode")
    if step.mfu is not None:
        said.append("MFU counts the workload's FLOPs (recomputation included when checkpointing) "
                    "against the dense tensor peak")
    said.extend(w.assumptions)
    if w.uncounted_ops:
        said.append(f"ops not counted by the workload: {', '.join(w.uncounted_ops)}")
    return said


def _setting(s: StepInputs, step: StepTime, clock_note: str) -> list[str]:
    """Batch and parallelism, what memory counts, the precision, the efficiencies, clock, runtime and input."""
    w, plan, eff = s.w, s.plan, s.eff
    train = w.mode == "train"
    k = w.grad_accum
    backward = backward_fraction(w.eager_ops)
    host_rule = ("replayed call by call: see the launch-queue note" if w.calls and not s.serial_host
                 else "each phase takes at least its dispatched operators x host time per op")
    return [
        f"batch_size {s.global_batch} is the global batch of one micro-step across {plan.dp} data-parallel "
        f"replica(s): {s.micro} per GPU" + (f"; {k} micro-steps per optimizer step" if train and k > 1 else ""),
        f"parallelism: {plan.describe()}",
        f"memory is per GPU and predicts nvidia-smi: CUDA context {eff.cuda_context_bytes / 2**20:.0f} MiB "
        f"({eff.arch}; {CONTEXT_SOURCE}) + kernel images loaded on first use "
        f"({(KERNEL_MODULES_TRAIN_BYTES if train else KERNEL_MODULES_INFER_BYTES) / 2**20:.0f} MiB; Hugging Face "
        "'model training anatomy': context + kernels 1.3 GB with eager loading), cuBLAS workspaces, "
        f"{ALLOCATOR_SUMMARY}; fits = total <= card memory "
        f"less a {RESERVE_FRACTION:.0%} reserve",
        "amp-* trains fp32 master weights (4 B) with autocast; its cached 16-bit weight casts (2 B/param) are "
        "counted under activations" if train and w.precision.startswith("amp") else
        f"weights held at {w.precision}",
        f"time: roofline per op with {eff.arch} efficiencies (GEMM {eff.matmul:.0%}, conv {eff.conv:.0%}, "
        f"memory {eff.memory:.0%} of peak, launch {eff.launch_overhead_s * 1e6:.1f} us/kernel), falling for "
        f"small ops; source: {eff.source}",
        clock_note,
        (f"runtime eager: the host dispatches every operator ({host_rule}; "
         f"{eff.host_op_s * 1e6:.1f} us per op forward, {backward_op_s(eff, backward) * 1e6:.1f} us backward; "
         f"{HOST_SOURCE}; per-layer op counts: {EAGER_SOURCE}); host time beyond GPU time: "
         f"{step.host_exposed_s * 1e3:.3g} ms per step" + ("; the host runs the ops itself, so it adds"
                                                           if s.serial_host else "") + " (runtime='graph' for CUDA "
         "graphs / torch.compile reduce-overhead / TensorRT / vLLM / llama.cpp)") if s.runtime == "eager" else
        "runtime graph: no per-op host floor (CUDA graphs / compiled runtime); kernel gaps only",
        "step_s is GPU time; the input pipeline (loader, host->device copies) is assumed overlapped with it, "
        "and the job runs at the slower of the two (effective_samples_per_s, used for the job's time to "
        + ("train)" if train else "serve)"),
    ]


def _unaligned(s: StepInputs, step: StepTime) -> list[str]:
    """The unaligned-GEMM note and its padding advice, where a tensor-core GEMM is off the 16-byte grid."""
    w, rates = s.w, s.rates
    unaligned = (unaligned_gemms(w.ops, 16 // compute_bytes(w.precision), activation_rows(w.batch_size, w.seq_len))
                 if rates.unaligned_flops else [])
    if not unaligned:
        return []
    extra = sum(f / min(rates.tensor_flops, rates.unaligned_flops * a) - f / rates.tensor_flops
                for _n, f, a in unaligned) * (w.grad_accum if w.mode == "train" else 1)
    names = ", ".join(sorted({n.split("[")[0] for n, _f, _a in unaligned}))
    example = "" if all(n.startswith("aten.conv") for n in names.split(", ")) else \
        "; e.g. a vocabulary of 50257 -> 50304"
    notes_pad = (f"pad the dimensions that are not multiples of {16 // compute_bytes(w.precision)} ({names}"
                 f"{example}): about {extra * 1e3:.3g} ms "
                 f"({extra / step.step_s:.0%}) less step time here")
    return [f"{UNALIGNED_SOURCE}: {names}", "advice: " + notes_pad]
