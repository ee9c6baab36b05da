"""Records of a validate run: the cases, predictions, measurements, rows, report and its summary."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advisor.device import CpuDevice, CudaDevice, Device
from advisor.errors import AdvisorError

if TYPE_CHECKING:
    from advisor.probing.results import Measurement as Repetitions

#: Models of the full zoo, in the order the table lists them.
ZOO_MODELS: tuple[str, ...] = ("resnet50", "vit-b16", "bert-base", "gpt2", "gpt2-medium", "llama-small",
                               "lstm-lm", "mnist-cnn")
#: Models of ``--quick`` (the default on a CPU): small enough for a laptop core.
QUICK_MODELS: tuple[str, ...] = ("mnist-cnn", "lstm-lm", "gpt2-tiny", "llama-tiny")
#: Every name ``--models`` accepts.
ALL_MODELS: tuple[str, ...] = tuple(dict.fromkeys((*ZOO_MODELS, *QUICK_MODELS)))
#: Models of ``--quick`` on a GPU.
QUICK_GPU_MODELS: tuple[str, ...] = ("mnist-cnn", "lstm-lm", "gpt2", "llama-small")
VALIDATE_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16")

Predictor = Callable[["Case", "DeviceContext"], "Prediction"]
#: Makes a case's model and batch on a device (a ``Device``; ``"meta"`` or another torch device string for tracing).
Builder = Callable[["Case", Any], "Built"]


class ValidationOom(AdvisorError):
    """A case ran out of device memory (recorded as a row, never raised out of ``run_validation``)."""




@dataclass(frozen=True, slots=True)
class Case:
    """One configuration to run and predict.

    Attributes:
        model: zoo name (``gpt2``, ``resnet50``, ``gpt2-tiny``...).
        mode: ``train`` (forward, backward, optimizer step) or ``infer`` (forward only, or decode).
        batch_size: samples per step.
        precision: one of ``VALIDATE_PRECISIONS``.
        optimizer: for ``train``; ``None`` for ``infer``.
        seq_len: tokens per sample (language models), else ``None``.
        image_size: pixels per side (vision models), else ``None``.
        gradient_checkpointing: recompute activations of each block in backward.
        gen_len: tokens generated after a prefill of ``seq_len`` (an inference-decode case), else ``None``.
    """

    model: str
    mode: str
    batch_size: int
    precision: str = "fp32"
    optimizer: str | None = None
    seq_len: int | None = None
    image_size: int | None = None
    gradient_checkpointing: bool = False
    gen_len: int | None = None

    def config(self) -> dict[str, Any]:
        """The JSON ``config`` of a row."""
        out: dict[str, Any] = {"mode": self.mode, "batch_size": self.batch_size, "precision": self.precision,
                               "optimizer": self.optimizer, "seq_len": self.seq_len, "image_size": self.image_size,
                               "gradient_checkpointing": self.gradient_checkpointing}
        if self.gen_len is not None:
            out["gen_len"] = self.gen_len
        return out

    def label(self) -> str:
        """A short readable description of the configuration."""
        shape = f"s{self.seq_len}" if self.seq_len else f"{self.image_size}px" if self.image_size else ""
        bits = [self.mode, f"b{self.batch_size}", shape, self.precision]
        if self.optimizer:
            bits.append(self.optimizer)
        if self.gradient_checkpointing:
            bits.append("ckpt")
        if self.gen_len:
            bits.append(f"decode {self.gen_len}")
        return " ".join(b for b in bits if b)


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """The device the cases run on, and what predictors need to know about it.

    Attributes:
        kind: ``cuda`` or ``cpu``.
        name: what the device calls itself.
        catalog_id: the catalog card it is, ``None`` for a CPU or an unknown card.
        torch_version, driver: versions, for the record.
        memory_method: how measured memory is obtained on this device (said in every report).
        rates: measured rates a CPU predictor needs: ``matmul_fp32_flops``, ``matmul_bf16_flops`` (FLOP/s),
            ``memory_copy_bytes_s`` (bytes/s read + written), ``op_overhead_s`` (per eager op),
            ``memory_bytes`` (RAM).
        rates_source: where the rates came from (a stored CPU probe, or a quick measurement here).
        device: the ``Device`` the cases run on (``None``: the first CUDA device or the CPU, by ``kind``).
    """

    kind: str
    name: str
    catalog_id: str | None = None
    torch_version: str | None = None
    driver: str | None = None
    memory_method: str = ""
    rates: Mapping[str, float] = field(default_factory=dict)
    rates_source: str | None = None
    device: Device | None = field(default=None, compare=False, repr=False)

    @property
    def torch_device(self) -> str:
        """The torch device string."""
        if self.device is not None:
            return self.device.torch_device
        return "cuda" if self.kind == "cuda" else "cpu"

    def runner(self, clock: Callable[[], float] = time.perf_counter) -> Device:
        """The ``Device`` to run on: ``device`` when given, else CUDA device 0 or the CPU timed with ``clock``."""
        if self.device is not None:
            return self.device
        return CudaDevice(0) if self.kind == "cuda" else CpuDevice(clock)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"kind": self.kind, "name": self.name, "catalog_id": self.catalog_id,
                "torch_version": self.torch_version, "driver": self.driver, "memory_method": self.memory_method,
                "rates": dict(self.rates), "rates_source": self.rates_source}


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predictor's answer for one case (``None`` where it cannot say).

    ``memory_bytes`` is what is compared with the measured peak (on a GPU: torch's reserved memory, so
    without the CUDA context); ``total_bytes`` is the whole-process figure set beside NVML's used memory.
    """

    memory_bytes: float | None
    step_s: float | None
    fits: bool | None = None
    calibrated: bool = False
    source: str = ""
    assumptions: tuple[str, ...] = ()
    total_bytes: float | None = None
    by_class_s: Mapping[str, float] | None = None


def step_timing(times_s: Sequence[float]) -> Repetitions:
    """Timed steps as the probe's ``advisor.probing.results.Measurement`` (one step per repetition).

    Its ``spread`` (IQR / median) and ``trustworthy`` (enough repetitions, spread within ``spread_limit``) are the
    rule validate applies to its step times: one rule for the probe's kernels and validate's steps.
    """
    from advisor.probing.results import Measurement  # lazy: the probe package is not light

    return Measurement(times_s=tuple(times_s), iterations=1)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one case measured on the device.

    Attributes:
        peak_bytes: the peak compared with the prediction (CUDA: reserved; CPU: resident-set growth).
        step_s: median step time.
        step_times_s: every timed step of the round kept, for the spread.
        allocated_bytes, reserved_bytes, nvml_used_bytes: the CUDA views, where they exist.
        profile: ``validate --profile``: a few more steps under torch.profiler, time per op class
            (``advisor.profiling.summarize``).
        timing_rounds: rounds of timed steps run (more than one when a round was too spread to trust, see
            ``advisor.validate.runner.time_until_stable``).
    """

    peak_bytes: float | None
    step_s: float
    step_times_s: tuple[float, ...] = ()
    allocated_bytes: float | None = None
    reserved_bytes: float | None = None
    nvml_used_bytes: float | None = None
    profile: Mapping[str, Any] | None = None
    timing_rounds: int = 1

    @property
    def spread(self) -> float | None:
        """IQR / median of the timed steps, by the probe's rule (``None`` without timed steps)."""
        return step_timing(self.step_times_s).spread if self.step_times_s else None

    @property
    def spread_limit(self) -> float:
        """The spread above which the time is not trusted (the probe's limit)."""
        return float(step_timing(self.step_times_s or (1.0,)).spread_limit)

    @property
    def too_spread(self) -> bool:
        """The timed steps spread more than the probe's limit (``False`` without timed steps)."""
        return bool(self.step_times_s) and step_timing(self.step_times_s).too_spread

    @property
    def noisy(self) -> bool:
        """The probe's rule does not trust these step times (too spread, or too few to tell): nor the time error."""
        return bool(self.step_times_s) and not step_timing(self.step_times_s).trustworthy


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    """``predicted / measured - 1``; ``None`` when either side is missing or the measurement is not positive."""
    if predicted is None or measured is None or not measured > 0:
        return None
    return predicted / measured - 1.0


@dataclass(frozen=True, slots=True)
class ValidationRow:
    """One case: predicted beside measured (or the failure that stopped it)."""

    model: str
    case: Case
    prediction: Prediction
    measurement: Measurement | None
    oom: bool = False
    error_message: str | None = None

    @property
    def memory_error(self) -> float | None:
        """Relative error of the memory prediction."""
        m = self.measurement
        return relative_error(self.prediction.memory_bytes, m.peak_bytes if m else None)

    @property
    def time_error(self) -> float | None:
        """Relative error of the step-time prediction."""
        m = self.measurement
        return relative_error(self.prediction.step_s, m.step_s if m else None)

    @property
    def fits_right(self) -> bool | None:
        """Whether the predictor's ``fits`` agreed with what happened (``None`` if it did not say)."""
        if self.prediction.fits is None or (self.measurement is None and not self.oom):
            return None
        return self.prediction.fits == (not self.oom)

    def to_dict(self) -> dict[str, Any]:
        """The row of DESIGN.md's validate JSON (plus oom, fits and the measured details)."""
        m = self.measurement
        return {
            "model": self.model,
            "config": self.case.config(),
            "memory": {"predicted_bytes": self.prediction.memory_bytes,
                       "measured_bytes": m.peak_bytes if m else None,
                       "error": self.memory_error,
                       "allocated_bytes": m.allocated_bytes if m else None,
                       "reserved_bytes": m.reserved_bytes if m else None,
                       "nvml_used_bytes": m.nvml_used_bytes if m else None,
                       "predicted_total_bytes": self.prediction.total_bytes},
            "time": {"predicted_s": self.prediction.step_s,
                     "measured_s": m.step_s if m else None,
                     "error": self.time_error,
                     "steps_s": list(m.step_times_s) if m else [],
                     "spread": m.spread if m else None, "noisy": bool(m and m.noisy),
                     "rounds": m.timing_rounds if m else None},
            "oom": self.oom,
            "fits": {"predicted": self.prediction.fits, "right": self.fits_right},
            "predictor": self.prediction.source,
            "calibrated": self.prediction.calibrated,
            "error_message": self.error_message,
            **({"profile": {**m.profile, "predicted_by_class_s": dict(self.prediction.by_class_s or {})}}
               if m is not None and m.profile is not None else {}),
        }


def error_stats(values: Sequence[float]) -> dict[str, Any]:
    """``n``, median, p90 (nearest rank: the ceil(0.9 n)-th smallest) and max of |error|, and the signed median."""
    absolute = [abs(v) for v in values]
    ranked = sorted(absolute)
    return {"n": len(absolute),
            "median_abs_error": statistics.median(absolute) if absolute else None,
            "p90_abs_error": ranked[min(len(ranked) - 1, math.ceil(0.9 * len(ranked)) - 1)] if ranked else None,
            "max_abs_error": max(absolute) if absolute else None,
            "median_error": statistics.median(values) if values else None}


def summarize(rows: Sequence[ValidationRow], memory_tolerance: float = 0.05,
              memory_slack_bytes: float = 512 * 2**20) -> dict[str, Any]:
    """Medians and maxima of |error| for memory and time, and how often ``fits`` was right.

    Args:
        rows: the validation rows.
        memory_tolerance: relative tolerance for "memory within tolerance" (issue 7: 5%).
        memory_slack_bytes: absolute tolerance that also counts as within (issue 7: 512 MiB).
    """
    mem = [r.memory_error for r in rows if r.memory_error is not None]
    tim = [r.time_error for r in rows if r.time_error is not None]
    within = 0
    for r in rows:
        m = r.measurement
        if r.memory_error is None or m is None or m.peak_bytes is None or r.prediction.memory_bytes is None:
            continue
        gap_bytes = abs(r.prediction.memory_bytes - m.peak_bytes)
        if abs(r.memory_error) <= memory_tolerance or gap_bytes <= memory_slack_bytes:
            within += 1
    fits = [r.fits_right for r in rows if r.fits_right is not None]
    return {
        "rows": len(rows),
        "measured": sum(1 for r in rows if r.measurement is not None),
        "oom": sum(1 for r in rows if r.oom),
        "failed": sum(1 for r in rows if r.measurement is None and not r.oom),
        "memory": {**error_stats(mem), "within_tolerance": within, "tolerance": memory_tolerance,
                   "slack_bytes": memory_slack_bytes},
        "time": error_stats(tim),
        "fits": {"checked": len(fits), "right": sum(fits)},
    }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every row of one validate run, the device, and the summary."""

    device: DeviceContext
    rows: tuple[ValidationRow, ...]
    created_at: str = ""
    notes: tuple[str, ...] = ()

    @property
    def summary(self) -> dict[str, Any]:
        """See :func:`summarize`."""
        return summarize(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """DESIGN.md's validate JSON: ``{"device", "rows", "summary"}`` plus when and notes."""
        return {"device": self.device.to_dict(), "rows": [r.to_dict() for r in self.rows],
                "summary": self.summary, "created_at": self.created_at, "notes": list(self.notes)}

    def to_frame(self) -> Any:
        """One line per row (pandas, imported here)."""
        import pandas as pd

        records = []
        for r in self.rows:
            m = r.measurement
            records.append({"model": r.model, "config": r.case.label(),
                            "mem_predicted_bytes": r.prediction.memory_bytes,
                            "mem_measured_bytes": m.peak_bytes if m else None, "mem_error": r.memory_error,
                            "predicted_s": r.prediction.step_s, "measured_s": m.step_s if m else None,
                            "time_error": r.time_error, "oom": r.oom, "fits_predicted": r.prediction.fits})
        return pd.DataFrame.from_records(records)


@dataclass
class Built:
    """A model on the device and how to run one step of it.

    Attributes:
        model: the module.
        make_inputs: returns the positional inputs of one step (on the device).
        loss: turns the model's output (and the inputs) into a scalar loss (``train``).
        decode: for decode cases: runs a prefill then ``gen_len`` tokens (``infer`` with ``gen_len``).
        blocks: the repeated blocks gradient checkpointing wraps (``None``: found automatically).
    """

    model: Any
    make_inputs: Callable[[], tuple[Any, ...]]
    loss: Callable[[Any, tuple[Any, ...]], Any]
    decode: Callable[[tuple[Any, ...]], Any] | None = None
    blocks: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _dtype(precision: str) -> Any:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


def _autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if precision == "amp-fp16":
        return torch.autocast(device_type, dtype=torch.float16)
    if precision == "amp-bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
