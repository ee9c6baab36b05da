"""The public API's functions that reach outside the library: here ``calibration="auto"`` is resolved.

``estimate(model, gpu, ...)`` builds the workload (``advisor.workload``), looks the card up, reads the
history store for ``calibration="auto"`` (``advisor.calibration``) and hands the pure estimator
(``advisor.estimator.estimate_workload``) data.  ``from advisor import estimate`` is this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.calibration import resolve_calibration
from advisor.catalog import GpuSpec, get_gpu
from advisor.estimator import (
    Estimate,
    MemoryEstimate,
    TimeEstimate,
    build_workload,
    estimate_workload,
    is_named_model,
)
from advisor.estimator.time import check_runtime
from advisor.workload.options import WorkloadOptions

__all__ = ["estimate", "estimate_memory", "estimate_time"]


def estimate(model: Any, gpu: str | GpuSpec, *, num_gpus: int = 1, batch_size: int = 1, seq_len: int | None = None,
             image_size: int | None = None, precision: str = "amp-bf16", optimizer: str | None = "adamw",
             mode: str = "train", gradient_checkpointing: bool = False, lora_rank: int | None = None,
             quantize_base: str | None = None, grad_accum: int = 1, parallelism: str | None = None,
             example_inputs: Any = None, gen_len: int | None = None, calibration: Any = "auto",
             loader_samples_per_s: float | None = None, dataset_samples: int | None = None, epochs: float = 1,
             total_tokens: float | None = None, specs_dir: str | Path | None = None,
             runtime: str = "eager", channels_last: bool = False, door: str = "closed") -> Estimate:
    """Peak memory per GPU and step time of ``model`` on ``num_gpus`` x ``gpu``.

    Args:
        model: preset name, path to a config.json, config dict, ``torch.nn.Module`` (with
            ``example_inputs``) or a built ``Workload``.
        gpu: card name (catalog id, marketing or NVML name) or a ``GpuSpec``.
        batch_size: GLOBAL batch of one micro-step across data-parallel replicas (for a module: default
            the first dimension of ``example_inputs``).
        calibration: ``"auto"`` (latest probe of the card in the history store), ``None``/``"none"``,
            a ``ProbeResult``, a probe JSON path, or an efficiencies mapping.
        runtime: ``eager`` (PyTorch eager, the default: host dispatch can bound small steps) or ``graph``
            (CUDA graphs / compiled / TensorRT / vLLM / llama.cpp); see ``estimate_workload``.
        channels_last: a CNN trained or run in ``torch.channels_last`` (see ``estimate_workload``).
        door: how a named transformer is priced: ``closed`` (the closed-form builder, the default) or ``trace`` (its
            transformers module built from the config and traced, cached; docs/doors.md).
        (others: see DESIGN.md)

    Raises:
        EstimateError: bad option, unsupported precision on this card, bad parallelism.
        UnknownGpuError / UnknownModelError / WorkloadError: from the catalog and workload builders.
    """
    options = WorkloadOptions(batch_size=batch_size, seq_len=seq_len, image_size=image_size, precision=precision,
                              optimizer=optimizer, mode=mode, gradient_checkpointing=gradient_checkpointing,
                              lora_rank=lora_rank, quantize_base=quantize_base, grad_accum=grad_accum,
                              gen_len=gen_len, door=door)
    options.validate(num_gpus=num_gpus, epochs=epochs, dataset_samples=dataset_samples, total_tokens=total_tokens,
                     loader_samples_per_s=loader_samples_per_s)
    check_runtime(runtime)
    options.validate_quantize_base()
    calibration = resolve_calibration(calibration)
    spec = get_gpu(gpu, specs_dir=specs_dir)
    workload = build_workload(model, options, example_inputs=example_inputs)
    # A traced module's batch is example_inputs' first dimension unless batch_size asks for another one
    # (then per-sample parts scale linearly, as the tracer's rebuild does).
    global_batch = batch_size if is_named_model(model) or batch_size != 1 else None
    return estimate_workload(workload, spec, num_gpus=num_gpus, parallelism=parallelism, calibration=calibration,
                             batch_size=global_batch, gen_len=gen_len, loader_samples_per_s=loader_samples_per_s,
                             dataset_samples=dataset_samples, epochs=epochs, total_tokens=total_tokens,
                             runtime=runtime, channels_last=channels_last)


def estimate_memory(*args: Any, **kwargs: Any) -> MemoryEstimate:
    """``estimate(...).memory``: per-GPU peak memory with its breakdown (same arguments)."""
    return estimate(*args, **kwargs).memory


def estimate_time(*args: Any, **kwargs: Any) -> TimeEstimate:
    """``estimate(...).time``: step time, throughput, bound (same arguments)."""
    return estimate(*args, **kwargs).time
