"""Estimates: per-GPU peak memory and step time of a workload on a card (and on several).

``estimate_workload(workload, spec, ...)`` is the estimator; the public ``advisor.estimate(model, gpu, ...)``
(``advisor.api``) builds the workload, looks the card up, resolves ``calibration="auto"`` at the edge and
calls it, and ``recommend`` calls it in a loop over cards and counts: everything that does not depend on
the card is prepared once per workload (and cached), so each card costs plain arithmetic.  Nothing here
imports torch or reads the history store: calibration comes in as data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advisor.catalog import GpuSpec
from advisor.estimator._assumptions import EstimateNotes, assumptions
from advisor.estimator._build import build_workload, is_named_model
from advisor.estimator._input import DECODE_IMAGES_PER_S_PER_CORE, HOST_CORES_PER_GPU, InputPipeline, input_pipeline
from advisor.estimator._peaks import HALF_ON_FP32_UNITS, matmul_rate, peaks
from advisor.estimator._prepare import PreparedWorkload, is_nchw_cnn, prepare_workload
from advisor.estimator._result import Estimate
from advisor.estimator._step import StepInputs, StepTime, step_time
from advisor.estimator.calibrate import CalibrationFile, StoredProbes, apply_efficiencies, load_efficiencies
from advisor.estimator.efficiency import ArchEfficiency
from advisor.estimator.memory import MemoryEstimate, ceil_div, memory_on_card
from advisor.estimator.parallel import resolve_plan
from advisor.estimator.power import sustained_clock
from advisor.estimator.profiles import Profile, efficiency_for, profile_for
from advisor.estimator.time import TimeEstimate, card_rates, check_runtime
from advisor.estimator.uncertainty import RANGE_SOURCE, evidence_level, step_range
from advisor.workload.base import Workload
from advisor.workload.options import check_count

__all__ = ["DECODE_IMAGES_PER_S_PER_CORE", "HALF_ON_FP32_UNITS", "HOST_CORES_PER_GPU", "CalibrationFile", "Estimate",
           "InputPipeline",
           "MemoryEstimate", "PreparedWorkload", "StepTime", "StoredProbes", "TimeEstimate", "build_workload",
           "estimate_workload", "is_named_model", "is_nchw_cnn", "matmul_rate", "prepare_workload"]


def estimate_workload(workload: Workload | PreparedWorkload, spec: GpuSpec, *, num_gpus: int = 1,
                      parallelism: str | None = None, calibration: Any = None, batch_size: int | None = None,
                      gen_len: int | None = None, loader_samples_per_s: float | None = None,
                      dataset_samples: int | None = None, epochs: float = 1, total_tokens: float | None = None,
                      model_name: str | None = None, runtime: str = "eager", channels_last: bool = False) -> Estimate:
    """Estimate a built workload on ``num_gpus`` cards ``spec`` (fast: ``recommend`` calls it in a loop).

    Args:
        workload: built at the GLOBAL batch (or a ``PreparedWorkload`` of one).
        spec: the card.
        num_gpus: cards in all.
        parallelism: ``ddp``, ``zero1``, ``zero2``, ``zero3``, ``fsdp``, ``tp``, ``ep`` (MoE models);
            ``None``: ddp for several.
        calibration: ``None`` (defaults), a ``ProbeResult``, an efficiencies mapping, or what
            ``advisor.calibration.resolve_calibration`` makes of ``"auto"`` (``StoredProbes``) and of a probe JSON
            path (``CalibrationFile``).
        batch_size: global batch; default the workload's.
        gen_len: tokens to generate (causal-LM infer); default the workload's.
        loader_samples_per_s: what the data loader delivers (whole host), for the input check.
        dataset_samples, epochs, total_tokens: for ``time_to_train_s``.
        model_name: label for the result (default the workload's name).
        runtime: ``eager`` (PyTorch eager: a phase takes at least its dispatched ops x host time per op,
            the GPU idling while the host falls behind) or ``graph`` (CUDA graphs, torch.compile with
            reduce-overhead, TensorRT(-LLM), vLLM, llama.cpp: no per-op host floor).
        channels_last: a CNN run in ``torch.channels_last`` (NHWC): cuDNN needs no layout transposes and runs
            its NHWC batch norm (default: PyTorch's NCHW).

    Raises:
        EstimateError: unsupported precision, bad parallelism or count, bad calibration figures.
    """
    check_runtime(runtime)
    prep = prepare_workload(workload)
    w0 = prep.workload
    arch = dict(w0.arch or {})
    plan = resolve_plan(parallelism, num_gpus, num_heads=arch.get("num_heads"), num_experts=arch.get("num_experts"))
    global_batch = check_count("batch_size", batch_size if batch_size is not None else w0.batch_size)
    micro = ceil_div(global_batch, plan.dp)
    w = prep.micro(micro)
    spec, package_note = _one_device(spec)
    tensor_peak, vector_peak, fallback = peaks(spec, w.precision)
    profile = profile_for(spec)
    eff, changed, clock_note = _efficiencies(spec, w.precision, calibration)
    parts = prep.parts(micro, plan)
    mem = memory_on_card(parts, spec.memory_bytes, eff, plan.dp)

    serial_host = spec.architecture.strip().lower() == "cpu"  # the host runs the ops too: no overlap
    rates = card_rates(spec, w.precision, eff, tensor_peak, vector_peak, serial_host=serial_host)
    inputs = StepInputs(prep=prep, w=w, spec=spec, plan=plan, eff=eff, rates=rates, arch=arch, micro=micro,
                        global_batch=global_batch, gen_len=gen_len, runtime=runtime, channels_last=channels_last,
                        tensor_peak=tensor_peak, serial_host=serial_host)
    step = step_time(inputs)
    feed = input_pipeline(w, spec, plan, eff, step, micro=micro, global_batch=global_batch,
                          loader_samples_per_s=loader_samples_per_s, dataset_samples=dataset_samples, epochs=epochs,
                          total_tokens=total_tokens)
    said = assumptions(inputs, step, EstimateNotes(
        clock_note=clock_note, memory_notes=parts.notes, calibration=calibration, changed=changed, fallback=fallback,
        package_note=package_note, loader_note=feed.loader_note, loader_given=loader_samples_per_s is not None))
    evidence = evidence_level(profile.evidence, any(c.startswith(("matmul", "conv")) for c in changed))
    low, high = step_range(step.step_s, evidence)
    said.append(_range_note(profile, evidence, low, high, step.step_s))
    return Estimate(model=model_name or w0.name, gpu_id=spec.id, gpu_name=spec.name, num_gpus=plan.num_gpus,
                    parallelism=plan.strategy, workload=w, batch_size=global_batch, micro_batch_per_gpu=micro,
                    memory=mem, time=_time_estimate(step, feed, runtime), flops_per_step=step.flops_global,
                    calibrated=bool(changed), assumptions=tuple(said), calibrated_figures=tuple(changed),
                    profile=profile.id, profile_name=profile.name, evidence=evidence,
                    inherited_figures=tuple(profile.inherited()), step_s_low=low, step_s_high=high)


def _one_device(spec: GpuSpec) -> tuple[GpuSpec, str | None]:
    """The card one GPU is (a multi-die package's device: its share of memory and rates), and what that assumes."""
    if spec.devices_per_package <= 1:
        return spec, None
    note = (f"one GPU is one of the {spec.devices_per_package} devices of the {spec.name} package (what "
            f"ROCm/PyTorch enumerate): {spec.memory_gb / spec.devices_per_package:.0f} GB and 1/"
            f"{spec.devices_per_package} of the package's rates each; num_gpus counts devices")
    return spec.per_device(), note


def _efficiencies(spec: GpuSpec, precision: str, calibration: Any) -> tuple[ArchEfficiency, list[str], str]:
    """The card's efficiencies (the profile's, calibrated), the figures calibration changed, the clock note."""
    clock = sustained_clock(spec)
    eff0 = efficiency_for(spec).replace(clock=clock.fraction)
    measured = load_efficiencies(calibration, spec.id)
    if precision == "fp8" and eff0.fp8_matmul != 1.0:  # fp8 GEMMs reach less of their peak (a probe replaces it)
        eff0 = dataclasses.replace(eff0, matmul=eff0.matmul * eff0.fp8_matmul)
    eff, changed = apply_efficiencies(eff0, measured, precision)
    clock_note = clock.note if eff.clock == clock.fraction else (
        f"sustained clock {eff.clock:.0%} of the maximum SM clock, from the probe's NVML clock samples under its "
        f"largest {precision} GEMM (replaces the power model: {clock.note})")
    return eff, changed, clock_note


def _time_estimate(step: StepTime, feed: InputPipeline, runtime: str) -> TimeEstimate:
    """The estimate's ``time``: the step's figures and the input pipeline's."""
    return TimeEstimate(step_s=step.step_s, samples_per_s=step.samples_per_s, tokens_per_s=step.tokens_per_s,
                        bound=step.bound, limiter="input" if feed.input_bound else step.limiter, mfu=step.mfu,
                        phases_s=step.phases_s, compute_bound_s=step.compute_s, memory_bound_s=step.memory_s,
                        launch_s=step.launch_s, comm_s=step.comm.exposed_s, comm_total_s=step.comm.total_s,
                        host_s=step.host_exposed_s, runtime=runtime, by_class_s=step.by_class_s,
                        prefill_s=step.prefill_s, decode_step_s=step.decode_step_s,
                        decode_tokens_per_s=step.decode_tokens_per_s, time_to_train_s=feed.time_to_train_s,
                        input_bound=feed.input_bound, input_advice=feed.advice, h2d_s=feed.h2d_s,
                        loader_samples_per_s=feed.loader_samples_per_s,
                        effective_samples_per_s=feed.effective_samples_per_s, class_advice=step.class_advice)


def _range_note(profile: Profile, evidence: str, low: float, high: float, step_s: float) -> str:
    """The profile, its evidence level and the step-time range it gives (with what it inherits)."""
    inherited = profile.inherited()
    return (f"profile {profile.id} ({profile.name}), evidence {evidence}: step time "
            f"{low * 1e3:.3g}-{high * 1e3:.3g} ms around {step_s * 1e3:.3g} ms ({RANGE_SOURCE})"
            + (f"; inherited from other profiles: {', '.join(inherited)}" if inherited else ""))
