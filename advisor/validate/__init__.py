"""``validate``: run real training and inference steps on the local device and set them beside the estimates.

For each case (model, batch size, precision, optimizer, checkpointing, mode) it builds the model from its
definition with random weights, runs warm-up steps, then times several steps and reads the peak memory,
and asks a predictor for the same case.  ``error = predicted / measured - 1``.

How each side is measured (see also ``docs/accuracy.md``):

- CUDA: peak memory from ``torch.cuda.max_memory_reserved`` (the figure compared) and
  ``max_memory_allocated`` after ``reset_peak_memory_stats``, plus NVML's used memory (the nvidia-smi
  view) when the probe's NVML backend is there; step time from CUDA events around each step, median of
  the timed steps after warm-up.
- CPU: torch has no CPU allocator statistics; its CPU tensors come from the C heap, so the peak is the
  C heap's bytes in use (glibc ``mallinfo2``), sampled after every aten op of one extra step, minus the
  bytes in use before the model was built.  It includes small non-tensor bookkeeping (autograd nodes,
  oneDNN scratch), so it is slightly above what tensors alone hold.  Step time from ``time.perf_counter``.

The predictor is a parameter.  The default asks ``advisor.estimate`` for the local card when the device is a
GPU the catalog knows.  On the CPU it asks ``estimate`` too, for a pseudo-card built from the CPU's measured
rates (:func:`cpu_card`: fp32/bf16 matmul FLOP/s, copy bandwidth, per-op overhead, RAM), less the CUDA
context and workspaces a CPU process does not have.  Where ``estimate`` cannot take a case,
:func:`trace_predictor` (FLOPs and saved-for-backward tensors counted on a meta-device trace) answers, and
the row's ``predictor`` says so.

Nothing here prints; torch is imported inside the functions that need it.

The package: ``records`` (cases, rows, report, summary), ``cases`` (the zoo's case table), ``models`` (the zoo's
models as validate runs them), ``runner`` (timing and the measured run), ``local`` (the local device and the CPU
rates), ``predictors``, ``calibration`` (``--calibrate``) and ``replay`` (``--replay``).  Every public name is
re-exported here (``__all__``), so ``from advisor import validate as v; v.run_validation(...)`` stays the API;
private helpers stay in their modules.
"""

from __future__ import annotations

from advisor.validate.calibration import (
    CONV_MODELS,
    calibration_probe,
    fit_calibration,
)
from advisor.validate.cases import (
    NEAR_LIMIT_CASE,
    default_cases,
    near_limit_cases,
)
from advisor.validate.local import (
    local_device,
    measure_cpu_rates,
)
from advisor.validate.models import (
    build_model,
    default_builder,
    enable_checkpointing,
    find_blocks,
    make_optimizer,
)
from advisor.validate.predictors import (
    GPU_ONLY_OVERHEAD,
    cpu_calibration,
    cpu_card,
    default_predictor,
    estimate_predictor,
    estimator_model,
    trace_predictor,
)
from advisor.validate.records import (
    ALL_MODELS,
    QUICK_GPU_MODELS,
    QUICK_MODELS,
    VALIDATE_PRECISIONS,
    ZOO_MODELS,
    Builder,
    Built,
    Case,
    DeviceContext,
    Measurement,
    Prediction,
    Predictor,
    ValidationOom,
    ValidationReport,
    ValidationRow,
    error_stats,
    relative_error,
    step_timing,
    summarize,
)
from advisor.validate.replay import (
    case_from_row,
    device_from_dict,
    replay,
)
from advisor.validate.runner import (
    CPU_MEMORY_METHOD,
    MAX_REPEATS,
    REPEAT_BUDGET_S,
    cpu_memory_method,
    heap_in_use_bytes,
    heap_peak_mode,
    run_case,
    run_validation,
    time_steps,
    time_until_stable,
)

__all__ = ["ALL_MODELS", "CONV_MODELS", "CPU_MEMORY_METHOD", "GPU_ONLY_OVERHEAD", "MAX_REPEATS", "NEAR_LIMIT_CASE",
           "QUICK_GPU_MODELS", "QUICK_MODELS", "REPEAT_BUDGET_S", "VALIDATE_PRECISIONS", "ZOO_MODELS", "Builder",
           "Built", "Case", "DeviceContext", "Measurement", "Prediction", "Predictor", "ValidationOom",
           "ValidationReport", "ValidationRow", "build_model", "calibration_probe", "case_from_row",
           "cpu_calibration", "cpu_card", "cpu_memory_method", "default_builder", "default_cases",
           "default_predictor", "device_from_dict", "enable_checkpointing", "error_stats", "estimate_predictor",
           "estimator_model", "find_blocks", "fit_calibration", "heap_in_use_bytes", "heap_peak_mode", "local_device",
           "make_optimizer", "measure_cpu_rates", "near_limit_cases", "relative_error", "replay", "run_case",
           "run_validation", "step_timing", "summarize", "time_steps", "time_until_stable", "trace_predictor"]
