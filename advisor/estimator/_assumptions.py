"""Every assumption behind an estimate, in words, in the order the JSON lists them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advisor.estimator._prepare import is_nchw_cnn
from advisor.estimator._step import StepTime
from advisor.estimator.calibrate import uncalibrated_note
from advisor.estimator.conv import LAYOUT_SOURCE
from advisor.estimator.efficiency import (
    CONTEXT_SOURCE,
    HOST_SOURCE,
    ArchEfficiency,
)
from advisor.estimator.gemm import SIMT_SOURCE, UNALIGNED_SOURCE, activation_rows, unaligned_gemms
from advisor.estimator.host import backward_fraction, backward_op_s
from advisor.estimator.memory import (
    ALLOCATOR_SUMMARY,
    KERNEL_MODULES_INFER_BYTES,
    KERNEL_MODULES_TRAIN_BYTES,
    RESERVE_FRACTION,
)
from advisor.estimator.parallel import ParallelPlan
from advisor.estimator.time import CardRates
from advisor.workload.base import Workload
from advisor.workload.eager import SOURCE as EAGER_SOURCE
from advisor.workload.transformer import compute_bytes


def assumptions(w: Workload, plan: ParallelPlan, eff: ArchEfficiency, rates: CardRates, step: StepTime, *,
                global_batch: int, micro: int, runtime: str, serial_host: bool, channels_last: bool,
                clock_note: str, memory_notes: Sequence[str], calibration: Any, changed: Sequence[str],
                fallback: str | None, package_note: str | None, loader_note: str | None,
                loader_given: bool) -> list[str]:
    """What the estimate of ``w`` on the card assumed.

    Batch and parallelism, what memory counts, the efficiencies and clock, the runtime's host floor, calibration,
    fallbacks and the workload's own.
    """
    train = w.mode == "train"
    k = w.grad_accum
    host_exposed = step.host_exposed_s
    backward = backward_fraction(w.eager_ops)
    host_rule = ("replayed call by call: see the launch-queue note" if w.calls and not serial_host
                 else "each phase takes at least its dispatched operators x host time per op")
    assumptions = [
        f"batch_size {global_batch} is the global batch of one micro-step across {plan.dp} data-parallel "
        f"replica(s): {micro} per GPU" + (f"; {k} micro-steps per optimizer step" if train and k > 1 else ""),
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
         f"{host_exposed * 1e3:.3g} ms per step" + ("; the host runs the ops itself, so it adds" if serial_host
                                                     else "") + " (runtime='graph' for CUDA graphs / "
         "torch.compile reduce-overhead / TensorRT / vLLM / llama.cpp)") if runtime == "eager" else
        "runtime graph: no per-op host floor (CUDA graphs / compiled runtime); kernel gaps only",
        "step_s is GPU time; the input pipeline (loader, host->device copies) is assumed overlapped with it, "
        "and the job runs at the slower of the two (effective_samples_per_s, used for the job's time to "
        + ("train)" if train else "serve)"),
        *memory_notes,
        *step.notes,
    ]
    if is_nchw_cnn(w) and rates.layout_transposes and not channels_last:
        assumptions.append(LAYOUT_SOURCE)
    if rates.sm_count and any(op.gemms and not op.tensor_core for op in w.ops):
        assumptions.append(SIMT_SOURCE)
    unaligned = (unaligned_gemms(w.ops, 16 // compute_bytes(w.precision), activation_rows(w.batch_size, w.seq_len))
                 if rates.unaligned_flops else [])
    if unaligned:
        extra = sum(f / min(rates.tensor_flops, rates.unaligned_flops * a) - f / rates.tensor_flops
                    for _n, f, a in unaligned) * (k if train else 1)
        names = ", ".join(sorted({n.split("[")[0] for n, _f, _a in unaligned}))
        assumptions.append(f"{UNALIGNED_SOURCE}: {names}")
        example = "" if all(n.startswith("aten.conv") for n in names.split(", ")) else \
            "; e.g. a vocabulary of 50257 -> 50304"
        notes_pad = (f"pad the dimensions that are not multiples of {16 // compute_bytes(w.precision)} ({names}"
                     f"{example}): about {extra * 1e3:.3g} ms "
                     f"({extra / step.step_s:.0%}) less step time here")
        assumptions.append("advice: " + notes_pad)
    if changed:
        assumptions.append(f"calibrated by a probe of this card: {', '.join(changed)}")
    elif (note := uncalibrated_note(calibration)) is not None:
        assumptions.append(note)
    if fallback:
        assumptions.append(fallback)
    if package_note:
        assumptions.append(package_note)
    if loader_note and not loader_given:
        assumptions.append(loader_note)
    if not train and w.decode_ops:
        assumptions.append("tokens_per_s counts generated tokens per second over prefill + decode")
    if step.mfu is not None:
        assumptions.append("MFU counts the workload's FLOPs (recomputation included when checkpointing) "
                           "against the dense tensor peak")
    assumptions.extend(w.assumptions)
    if w.uncounted_ops:
        assumptions.append(f"ops not counted by the workload: {', '.join(w.uncounted_ops)}")
    return assumptions
