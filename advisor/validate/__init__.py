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
rates), ``predictors``, ``calibration`` (``--calibrate``) and ``replay`` (``--replay``).  Everything is
re-exported here, so ``from advisor import validate as v; v.run_validation(...)`` stays the API.
"""

from __future__ import annotations

from advisor.validate.calibration import (  # noqa: F401
    CONV_MODELS,
    calibration_probe,
    fit_calibration,
)
from advisor.validate.cases import (  # noqa: F401
    NEAR_LIMIT_CASE,
    _lm,
    default_cases,
    near_limit_cases,
)
from advisor.validate.local import (  # noqa: F401
    _median_time,
    _stored_cpu_rates,
    local_device,
    measure_cpu_rates,
)
from advisor.validate.models import (  # noqa: F401
    _ZOO_BUILDERS,
    build_model,
    default_builder,
    enable_checkpointing,
    find_blocks,
    make_optimizer,
)
from advisor.validate.predictors import (  # noqa: F401
    GPU_ONLY_OVERHEAD,
    _meta_trace,
    _zoo_workload,
    cpu_calibration,
    cpu_card,
    default_predictor,
    estimate_predictor,
    estimator_model,
    trace_predictor,
)
from advisor.validate.records import (  # noqa: F401
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
    _autocast,
    _dtype,
    error_stats,
    relative_error,
    summarize,
)
from advisor.validate.replay import (  # noqa: F401
    _measurement_from_row,
    case_from_row,
    device_from_dict,
    replay,
)
from advisor.validate.runner import (  # noqa: F401
    CPU_MEMORY_METHOD,
    _heap_peak_mode,
    _is_oom,
    _MallInfo2,
    _mallinfo2,
    _release,
    _run_measured,
    cpu_memory_method,
    heap_in_use_bytes,
    run_case,
    run_validation,
    time_steps,
)
