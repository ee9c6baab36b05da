"""The input pipeline beside the GPU step: host->device copies and the data loader, and what the job runs at."""

from __future__ import annotations

from dataclasses import dataclass

from advisor.catalog import GpuSpec
from advisor.estimator._step import StepTime
from advisor.estimator.efficiency import ArchEfficiency
from advisor.estimator.parallel import ParallelPlan
from advisor.workload.base import Workload

#: Image presets: a CPU JPEG decode + RandomResizedCrop rate per core (Pillow, torchvision ImageFolder;
#: NVIDIA DALI docs and the PyTorch ImageNet example report ~100-200 images/s/core) x cores per GPU.
DECODE_IMAGES_PER_S_PER_CORE = 150.0
HOST_CORES_PER_GPU = 8


@dataclass(frozen=True, slots=True)
class InputPipeline:
    """Copies and loader against the step: the job runs at the slowest of the GPUs, the loader and the copies."""

    h2d_s: float
    loader_samples_per_s: float | None
    loader_note: str | None
    advice: str | None
    input_bound: bool
    effective_samples_per_s: float
    time_to_train_s: float | None


def input_pipeline(w: Workload, spec: GpuSpec, plan: ParallelPlan, eff: ArchEfficiency, step: StepTime, *,
                   micro: int, global_batch: int, loader_samples_per_s: float | None, dataset_samples: int | None,
                   epochs: float, total_tokens: float | None) -> InputPipeline:
    """Whether the input pipeline keeps up with ``step``, and the time to train at the rate the job runs at.

    The loader is the given rate, or a CPU image decode assumed for vision presets; the host->device copies are
    checked beside it.
    """
    ic = spec.interconnect
    h2d_gbs = (ic.c2c_gbs / 2) if ic.c2c_gbs else ic.pcie_gbs
    unified = eff.unified_memory
    h2d_s = 0.0
    if w.input_bytes_per_sample and not unified:
        h2d_s = micro * w.input_bytes_per_sample / ((h2d_gbs or 15.75) * 1e9 * eff.h2d)
    loader = loader_samples_per_s
    loader_note = None
    if loader is None and w.family in ("cnn", "vit") and w.image_size:
        loader = DECODE_IMAGES_PER_S_PER_CORE * HOST_CORES_PER_GPU * plan.num_gpus
        loader_note = (f"input: image decode on the CPU assumed at {DECODE_IMAGES_PER_S_PER_CORE:.0f} images/s per "
                       f"core x {HOST_CORES_PER_GPU} cores per GPU = {loader:,.0f} images/s (pass "
                       "loader_samples_per_s to use your measured rate)")
    step_s, samples_per_s, tokens_per_s = step.step_s, step.samples_per_s, step.tokens_per_s
    micro_step_s = step_s / max(1, w.grad_accum) if w.mode == "train" else step_s
    advice = []
    if h2d_s > micro_step_s:
        advice.append(f"host->device copies ({h2d_s * 1e3:.2f} ms per micro-step) exceed GPU time: use pinned "
                      "memory with non_blocking copies, send uint8 / smaller dtypes and convert on the GPU, or "
                      "keep the data on the GPU")
    if loader is not None and loader < samples_per_s:
        advice.append(f"the loader delivers {loader:,.0f} samples/s but the GPUs could take {samples_per_s:,.0f}: "
                      "add DataLoader workers (num_workers), decode on the GPU (NVIDIA DALI / torchvision.io "
                      "decode_jpeg on cuda), pre-process to a faster format, or cache decoded samples")
    input_bound = bool(advice)
    # The job runs at the slowest of the GPUs (host dispatch included in step_s), the loader and the copies.
    effective_sps = samples_per_s
    if loader is not None:
        effective_sps = min(effective_sps, loader)
    if h2d_s > micro_step_s:
        effective_sps = min(effective_sps, global_batch / h2d_s)
    effective_tps = tokens_per_s * effective_sps / samples_per_s if tokens_per_s and samples_per_s else tokens_per_s

    time_to_train = None
    if dataset_samples:
        time_to_train = dataset_samples * epochs / effective_sps if effective_sps else None
    elif total_tokens and effective_tps:
        time_to_train = total_tokens / effective_tps
    return InputPipeline(h2d_s=h2d_s, loader_samples_per_s=loader, loader_note=loader_note,
                         advice="; ".join(advice) or None, input_bound=input_bound,
                         effective_samples_per_s=effective_sps, time_to_train_s=time_to_train)
