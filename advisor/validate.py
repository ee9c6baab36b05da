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
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from advisor.device import CpuDevice, CudaDevice, Device, as_device
from advisor.errors import AdvisorError, UnknownModelError
from advisor.workload.base import OPTIMIZERS
from advisor.workload.zoo import TRANSFORMERS

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


# --------------------------------------------------------------------------------------------- records


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


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one case measured on the device.

    Attributes:
        peak_bytes: the peak compared with the prediction (CUDA: reserved; CPU: resident-set growth).
        step_s: median step time.
        step_times_s: every timed step, for the spread.
        allocated_bytes, reserved_bytes, nvml_used_bytes: the CUDA views, where they exist.
        profile: ``validate --profile``: a few more steps under torch.profiler, time per op class
            (``advisor.profiling.summarize``).
    """

    peak_bytes: float | None
    step_s: float
    step_times_s: tuple[float, ...] = ()
    allocated_bytes: float | None = None
    reserved_bytes: float | None = None
    nvml_used_bytes: float | None = None
    profile: Mapping[str, Any] | None = None


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
                     "steps_s": list(m.step_times_s) if m else []},
            "oom": self.oom,
            "fits": {"predicted": self.prediction.fits, "right": self.fits_right},
            "predictor": self.prediction.source,
            "calibrated": self.prediction.calibrated,
            "error_message": self.error_message,
            **({"profile": {**m.profile, "predicted_by_class_s": dict(self.prediction.by_class_s or {})}}
               if m is not None and m.profile is not None else {}),
        }


def _stats(values: Sequence[float]) -> dict[str, Any]:
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
        "memory": {**_stats(mem), "within_tolerance": within, "tolerance": memory_tolerance,
                   "slack_bytes": memory_slack_bytes},
        "time": _stats(tim),
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


# --------------------------------------------------------------------------------------------- cases


def _lm(model: str, batches: Sequence[int], seq_len: int, precisions: Sequence[str], optimizer: str,
        ckpt: bool = True) -> list[Case]:
    cases = [Case(model, "train", b, p, optimizer, seq_len=seq_len) for b in batches for p in precisions]
    if ckpt:
        cases.append(Case(model, "train", batches[-1], precisions[-1], optimizer, seq_len=seq_len,
                          gradient_checkpointing=True))
    return cases


#: The near-limit pair (GPU only): this model's training step at the largest batch ``estimate`` says fits on
#: the local card, and one above it, so a run checks ``fits`` where it matters.
NEAR_LIMIT_CASE = Case("gpt2", "train", 1, "amp-bf16", "adamw", seq_len=1024)


def near_limit_cases(card: str, base: Case = NEAR_LIMIT_CASE) -> list[Case]:
    """``base`` at the largest batch ``estimate`` says fits on ``card`` (a catalog id) and at one more.

    Empty when not even one sample fits.  The batch comes from the same model ``validate`` predicts with
    (:func:`estimator_model`, re-built at each batch tried), so the pair brackets the estimator's own verdict:
    ``fits`` at the first, not at the second.
    """
    from advisor.estimate import estimate

    def verdict(b: int) -> Any:
        case = dataclasses.replace(base, batch_size=b)
        model, kwargs = estimator_model(case)
        kwargs.update(batch_size=b, precision=case.precision, mode=case.mode, optimizer=case.optimizer,
                      gradient_checkpointing=case.gradient_checkpointing)
        return estimate(model, card, calibration=None, **kwargs).memory

    first = verdict(base.batch_size)
    if not first.fits:
        return []
    # the estimate's own largest batch (linear scaling from base), then settled on the verdicts near it
    guess = max(int(first.max_batch_size), base.batch_size)
    step = max(1, guess // 64)
    if verdict(guess).fits:
        lo, hi = guess, guess + step
        while verdict(hi).fits:
            lo, hi, step = hi, hi + 2 * step, 2 * step
    else:  # base.batch_size fits, so this ends
        lo, hi = max(base.batch_size, guess - step), guess
        while not verdict(lo).fits:
            lo, hi, step = max(base.batch_size, lo - 2 * step), lo, 2 * step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if verdict(mid).fits else (lo, mid)
    return [dataclasses.replace(base, batch_size=b) for b in (lo, lo + 1)]


def default_cases(models: Sequence[str] | None = None, *, quick: bool = False, cuda: bool = False,
                  card: str | None = None) -> list[Case]:
    """The zoo's cases: several batch sizes, precisions, optimizers, checkpointing and one decode case.

    Args:
        models: restrict to these names (``None``: the zoo for the mode).
        quick: only the small models (``QUICK_MODELS``); the default set on a CPU.
        cuda: whether the device is a GPU (sizes and precisions for a GPU, else small ones for a CPU).
        card: the local GPU's catalog id: with ``cuda`` (and not ``quick``), the near-limit pair of
            :func:`near_limit_cases` ends ``NEAR_LIMIT_CASE``'s model's list (``None``: no such pair).

    Raises:
        UnknownModelError: a name in ``models`` is not a validate model.
    """
    known = ALL_MODELS
    for name in models or ():
        if name not in known:
            raise UnknownModelError(f"unknown validate model {name!r}", hint=f"accepted: {', '.join(known)}")
    if cuda:
        half = ("amp-bf16", "bf16")
        table: dict[str, list[Case]] = {
            "resnet50": [Case("resnet50", "train", b, p, "sgd-momentum", image_size=224)
                         for b in (32, 128) for p in ("fp32", "amp-fp16")]
                        + [Case("resnet50", "infer", 256, "amp-fp16", image_size=224)],
            "vit-b16": [Case("vit-b16", "train", b, p, "adamw", image_size=224) for b in (32, 64) for p in half]
                       + [Case("vit-b16", "train", 64, "amp-bf16", "adamw", image_size=224,
                               gradient_checkpointing=True)],
            "bert-base": _lm("bert-base", (16, 32), 512, ("fp32", "amp-bf16"), "adamw"),
            "gpt2": [*_lm("gpt2", (8, 16), 1024, ("amp-bf16", "bf16"), "adamw"),
                     Case("gpt2", "infer", 8, "bf16", seq_len=512, gen_len=64)],
            "gpt2-medium": _lm("gpt2-medium", (4, 8), 1024, ("amp-bf16",), "adam"),
            "llama-small": _lm("llama-small", (4, 8), 2048, ("bf16", "amp-bf16"), "adamw"),
            "lstm-lm": [Case("lstm-lm", "train", b, p, "adam", seq_len=256) for b in (32, 128)
                        for p in ("fp32", "amp-fp16")],
            "mnist-cnn": [Case("mnist-cnn", "train", b, "fp32", o, image_size=28)
                          for b, o in ((256, "sgd"), (1024, "adam"))],
        }
    else:
        table = {
            "mnist-cnn": [Case("mnist-cnn", "train", b, "fp32", o, image_size=28)
                          for b, o in ((32, "sgd"), (64, "adam"))],
            "lstm-lm": [Case("lstm-lm", "train", 8, "fp32", "adam", seq_len=32)],
            "gpt2-tiny": [Case("gpt2-tiny", "train", b, "fp32", "adamw", seq_len=64) for b in (4, 8)]
                         + [Case("gpt2-tiny", "train", 8, "amp-bf16", "adamw", seq_len=64),
                            Case("gpt2-tiny", "train", 8, "fp32", "adamw", seq_len=64, gradient_checkpointing=True),
                            Case("gpt2-tiny", "infer", 4, "fp32", seq_len=32, gen_len=16)],
            "llama-tiny": [Case("llama-tiny", "train", 4, "fp32", "sgd-momentum", seq_len=64),
                           Case("llama-tiny", "train", 4, "bf16", "adamw", seq_len=64)],
        }
        # the rest of the zoo on a CPU: one small case each (minutes, not seconds)
        table.update({
            "resnet50": [Case("resnet50", "train", 2, "fp32", "sgd-momentum", image_size=64)],
            "vit-b16": [Case("vit-b16", "infer", 1, "fp32", image_size=224)],
            "bert-base": [Case("bert-base", "train", 1, "fp32", "adamw", seq_len=64)],
            "gpt2": [Case("gpt2", "train", 1, "fp32", "adamw", seq_len=64)],
            "gpt2-medium": [Case("gpt2-medium", "infer", 1, "fp32", seq_len=64)],
            "llama-small": [Case("llama-small", "train", 1, "fp32", "adamw", seq_len=64)],
        })
    if cuda:
        table.update({"gpt2-tiny": [Case("gpt2-tiny", "train", 32, "amp-bf16", "adamw", seq_len=256)],
                      "llama-tiny": [Case("llama-tiny", "train", 32, "bf16", "adamw", seq_len=256)]})
    if cuda and card and not quick:
        table[NEAR_LIMIT_CASE.model] = [*table[NEAR_LIMIT_CASE.model], *near_limit_cases(card)]
    if models:
        wanted = list(models)
    elif cuda:
        wanted = list(QUICK_GPU_MODELS if quick else ZOO_MODELS)
    else:
        wanted = list(QUICK_MODELS)
    cases: list[Case] = []
    for name in wanted:
        if name not in table:
            raise UnknownModelError(f"validate model {name!r} has no cases on this device with these options",
                                    hint=f"available here: {', '.join(table)}")
        cases.extend(table[name])
    return cases


# --------------------------------------------------------------------------------------------- running


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


def make_optimizer(name: str, params: Any) -> Any:
    """The torch optimizer for a DESIGN.md optimizer name.

    Raises:
        AdvisorError: ``adamw-8bit`` (needs bitsandbytes, not a dependency) or an unknown name.
    """
    import torch

    makers: dict[str, Callable[[], Any]] = {
        "sgd": lambda: torch.optim.SGD(params, lr=1e-3),
        "sgd-momentum": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        "adam": lambda: torch.optim.Adam(params, lr=1e-4),
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-4),
        "adafactor": lambda: torch.optim.Adafactor(params, lr=1e-3),
    }
    if name not in makers:
        raise AdvisorError(f"validate cannot run optimizer {name!r}",
                           hint=f"accepted: {', '.join(makers)} (adamw-8bit needs bitsandbytes, not a dependency)")
    return makers[name]()


def find_blocks(model: Any) -> Any:
    """The repeated blocks of a model: the ``ModuleList``/``Sequential`` with the most parameterised children
    (the tracer's own rule, ``advisor.workload.trace_blocks.find_blocks``, so the estimate checkpoints the blocks
    validate does)."""
    from advisor.workload.trace_blocks import find_blocks as blocks_of

    return blocks_of(model)


def enable_checkpointing(blocks: Any) -> int:
    """Wrap each block's forward in ``torch.utils.checkpoint`` (non-reentrant); returns how many were wrapped."""
    import torch.utils.checkpoint as cp

    count = 0
    for block in blocks.children():
        original = block.forward

        def forward(*args: Any, _f: Callable[..., Any] = original, **kwargs: Any) -> Any:
            return cp.checkpoint(_f, *args, use_reentrant=False, **kwargs)

        block.forward = forward
        count += 1
    return count


def time_steps(step: Callable[[], Any], *, device: Device | str, warmup: int, iters: int,
               clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Run ``warmup`` untimed steps then time ``iters`` steps, one by one, with the device's region timer.

    CUDA: events recorded around each step (launches are asynchronous, so the host clock would time
    the launch, not the work); CPU: ``clock`` (``perf_counter``) around each step.
    """
    dev = CpuDevice(clock) if device == "cpu" else as_device(device)
    for _ in range(warmup):
        step()
    dev.synchronize()
    timer = dev.region_timer()
    return [timer(step, 1) for _ in range(iters)]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None  # not glibc, or glibc < 2.33
    fn.restype = _MallInfo2
    return cast(Callable[[], _MallInfo2], fn)


def heap_in_use_bytes() -> int | None:
    """Bytes the C heap has handed out and not taken back (glibc ``mallinfo2``: arenas + mmapped chunks).

    torch's CPU tensors are allocated through it, so its growth is what tensors (plus small bookkeeping)
    hold.  ``None`` where glibc's ``mallinfo2`` is missing.
    """
    fn = _mallinfo2()
    if fn is None:
        return None
    info = fn()
    return int(info.uordblks + info.hblkhd)


CPU_MEMORY_METHOD = ("peak C-heap bytes in use (glibc mallinfo2, sampled after every aten op of one extra step) "
                     "minus the bytes in use before the model was built; torch has no CPU allocator statistics")


def cpu_memory_method() -> str:
    """How the CPU peak is measured here (said in the report)."""
    if heap_in_use_bytes() is not None:
        return CPU_MEMORY_METHOD
    return "not measured: this C library has no mallinfo2"


def _heap_peak_mode() -> Any:
    """A dispatch mode that samples the heap after every aten op (so the peak of a step is seen)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class HeapPeak(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.peak = heap_in_use_bytes() or 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            used = heap_in_use_bytes() or 0
            if used > self.peak:
                self.peak = used
            return out

    return HeapPeak()


def _is_oom(exc: BaseException) -> bool:
    from advisor.probe.kernels import is_out_of_memory

    return isinstance(exc, ValidationOom) or is_out_of_memory(exc)


def _run_measured(case: Case, device: Device, build: Builder, warmup: int, iters: int,
                  nvml_used: Callable[[], float | None] | None, profile: int = 0) -> Measurement:
    import torch

    state: dict[str, Any] = {}
    heap_base: int | None = None
    cuda = device.kind == "cuda"
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        gc.collect()
        if cuda:
            device.empty_cache()
            device.reset_peak()
        else:
            heap_base = heap_in_use_bytes()
        torch.backends.cuda.matmul.allow_tf32 = case.precision == "tf32"
        built = build(case, device)
        state["built"] = built
        model = built.model.to(device=device.torch_device)
        if case.precision in ("fp16", "bf16"):
            model = model.to(dtype=_dtype(case.precision))
        inputs = built.make_inputs()
        state["inputs"] = inputs
        if case.mode == "train":
            if case.optimizer is None:
                raise AdvisorError(f"train case of {case.model!r} has no optimizer", hint=f"one of {OPTIMIZERS}")
            if case.gradient_checkpointing:
                blocks = built.blocks if built.blocks is not None else find_blocks(model)
                if blocks is None or not enable_checkpointing(blocks):
                    raise AdvisorError(f"{case.model}: no repeated blocks found to checkpoint")
            model.train()
            opt = make_optimizer(case.optimizer, [p for p in model.parameters() if p.requires_grad])
            state["opt"] = opt
            scaler = torch.amp.GradScaler(device.kind) if case.precision == "amp-fp16" and cuda else None

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                with _autocast(case.precision, device.kind):
                    loss = built.loss(model(*inputs), inputs)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
        else:
            model.eval()

            def step() -> None:
                with torch.inference_mode(), _autocast(case.precision, device.kind):
                    if case.gen_len:
                        if built.decode is None:
                            raise AdvisorError(f"{case.model}: has no decode loop for an inference-decode case")
                        built.decode(inputs)
                    else:
                        model(*inputs)

        times = time_steps(step, device=device, warmup=warmup, iters=iters)
        profiled = None
        if profile:  # after the timed steps, so the profiler's own cost never enters the measured time
            from advisor.profiling import profile_steps

            profiled = profile_steps(step, cuda=cuda, synchronize=device.synchronize, steps=profile)
        if cuda:
            allocated = float(device.peak_allocated_bytes() or 0)
            reserved = float(device.peak_reserved_bytes() or 0)
            used = nvml_used() if nvml_used else None
            return Measurement(reserved, statistics.median(times), tuple(times), allocated, reserved, used,
                               profiled)
        peak: float | None = None
        if heap_base is not None:
            # one more step, sampled op by op: the steady-state peak (optimizer state exists after warm-up)
            with _heap_peak_mode() as mode:
                step()
            peak = float(max(mode.peak - heap_base, 0))
        return Measurement(peak, statistics.median(times), tuple(times), profile=profiled)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
        state.clear()


def _release(device: Device) -> None:
    """Free what a finished case held: collect its cycles, hand cached CUDA blocks back to the driver."""
    gc.collect()
    device.empty_cache()


def run_case(case: Case, device: DeviceContext, *, build: Builder, predict: Predictor, warmup: int = 2,
             iters: int = 5, nvml_used: Callable[[], float | None] | None = None,
             clock: Callable[[], float] = time.perf_counter, profile: int = 0) -> ValidationRow:
    """Predict, then run and measure one case; an OOM or a failure is a row, not an exception.

    Args:
        case: what to run.
        device: where (``device.kind``) and what predictors know about it.
        build: makes the model and its inputs (``Built``) for a case on a torch device.
        predict: the predictor under test.
        warmup, iters: untimed and timed steps.
        nvml_used: returns the device's used memory in bytes as NVML sees it (CUDA only; optional).
        clock: the CPU clock (a parameter so tests can script it) when ``device`` carries no ``Device``.
        profile: that many more steps under torch.profiler (0: none), time per op class in the row.
    """
    runner = device.runner(clock)
    try:
        prediction = predict(case, device)
    except AdvisorError as exc:
        prediction = Prediction(None, None, source=f"no prediction: {exc.message}")
    row: ValidationRow | None = None
    try:
        row = ValidationRow(case.model, case, prediction,
                            _run_measured(case, runner, build, warmup, iters, nvml_used, profile))
    except Exception as exc:
        if _is_oom(exc):
            first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            row = ValidationRow(case.model, case, prediction, None, oom=True,
                                error_message=f"out of memory: {first_line}")
        elif isinstance(exc, AdvisorError):
            row = ValidationRow(case.model, case, prediction, None, error_message=exc.message)
        else:
            raise
    # Released here, not inside the except block: until it ends, the traceback keeps the failed case's
    # frame (model, optimizer state, activations) alive.
    _release(runner)
    return row


def run_validation(cases: Sequence[Case], device: DeviceContext, *, build: Builder | None = None,
                   predict: Predictor | None = None, warmup: int = 2, iters: int = 5,
                   nvml_used: Callable[[], float | None] | None = None,
                   progress: Callable[[int, int, Case], None] | None = None,
                   clock: Callable[[], float] = time.perf_counter, notes: Sequence[str] = (),
                   profile: int = 0) -> ValidationReport:
    """Run every case (see :func:`run_case`) and return the report.

    Args:
        cases: from :func:`default_cases` or your own.
        device: from :func:`local_device`.
        build: model builder (default :func:`default_builder`).
        predict: predictor (default :func:`default_predictor`).
        progress: called before each case with (index, total, case) (the CLI draws a progress line).
    """
    build = build or default_builder
    predict = predict or default_predictor
    rows = []
    # Objects alive now (torch's own, the caller's) are not the cases' garbage: freezing them keeps the
    # gc.collect() around every case from walking millions of objects (~1 s each otherwise).
    gc.collect()
    gc.freeze()
    try:
        for i, case in enumerate(cases):
            if progress:
                progress(i, len(cases), case)
            rows.append(run_case(case, device, build=build, predict=predict, warmup=warmup, iters=iters,
                                 nvml_used=nvml_used, clock=clock, profile=profile))
    finally:
        gc.unfreeze()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return ValidationReport(device, tuple(rows), created_at=created, notes=tuple(notes))


# --------------------------------------------------------------------------------------------- device


def _median_time(fn: Callable[[], Any], iters: int) -> float:
    """Median seconds per call of ``fn``, timed by the probe's loop (warm-up until settled, >= 5 ms regions)."""
    from advisor.probe.timing import measure

    return measure(fn, repetitions=max(iters, 5), min_region_s=5e-3, warmup_max_s=0.5).median_s


def measure_cpu_rates(n: int = 512) -> dict[str, float]:
    """Quick CPU rates for the CPU predictor (about a second).

    ``matmul_fp32_flops`` / ``matmul_bf16_flops``: median of n^3 (bf16: (n/2)^3) products; ``memory_copy_bytes_s``:
    a 64 MiB copy (read + write counted); ``op_overhead_s``: an eager add on one element (dispatch cost).
    """
    import torch

    out: dict[str, float] = {}
    # bf16 at half the side: CPUs without bf16 matrix units run it 10-20x slower than fp32
    for precision, dtype, side in (("fp32", torch.float32, n), ("bf16", torch.bfloat16, n // 2)):
        a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
        out[f"matmul_{precision}_flops"] = 2 * side**3 / _median_time(lambda a=a, b=b: a @ b, 5)
    src = torch.ones(16 * 2**20)
    dst = torch.empty_like(src)
    out["memory_copy_bytes_s"] = 2 * src.numel() * 4 / _median_time(lambda: dst.copy_(src), 6)
    one = torch.ones(1)
    out["op_overhead_s"] = _median_time(lambda: [one + one for _ in range(200)], 5) / 200
    return out


def _stored_cpu_rates() -> tuple[dict[str, float], str] | None:
    """Rates from the newest CPU probe in the history store, when one measured them all."""
    try:
        from advisor.store import HistoryStore

        records = HistoryStore().list_probes(limit=20)
    except (ImportError, AdvisorError):
        return None
    for record in records:
        doc = record.document
        devices = doc.get("devices") or []
        if not devices or devices[0].get("kind") != "cpu":
            continue
        rates: dict[str, float] = {}
        for k in doc.get("kernels") or []:
            value, name, prec = k.get("value"), k.get("name"), k.get("precision")
            if value is None or k.get("skipped") or k.get("error"):
                continue
            if name == "matmul" and prec in ("fp32", "bf16"):
                key = f"matmul_{prec}_flops"
                rates[key] = max(rates.get(key, 0.0), float(value) * 1e12)
            elif name == "memory_copy":
                rates["memory_copy_bytes_s"] = max(rates.get("memory_copy_bytes_s", 0.0), float(value) * 1e9)
            elif name == "launch":
                rates["op_overhead_s"] = float(value) * 1e-6
        if {"matmul_fp32_flops", "memory_copy_bytes_s"} <= set(rates):
            return rates, f"the CPU probe saved at {record.timestamp} (history store id {record.id})"
    return None


def _total_ram_bytes() -> float | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return None


def local_device(*, prefer_cuda: bool = True, use_store: bool = False) -> DeviceContext:
    """Describe the device validate runs on: the first CUDA GPU if torch sees one, else the CPU.

    On a GPU the catalog card comes from the probe's inventory (NVML name) when the probe is there, else
    from torch's device name.  The inventory device is the one whose UUID matches torch's device 0 (NVML's
    numbering ignores ``CUDA_VISIBLE_DEVICES``: its device 0 may be another card).

    On the CPU the predictor's rates are measured now (:func:`measure_cpu_rates`,
    about a second, under the same load as the steps); ``use_store=True`` takes them from the newest CPU
    probe in the history store instead (a CPU's rates drift with its load, so a stale probe misleads).
    """
    import torch

    from advisor.catalog import find_gpu, load_specs
    from advisor.device import cuda_runtime, nvml_index_for

    runtime = cuda_runtime() if prefer_cuda else None
    if runtime is not None and runtime.is_available():
        name = runtime.name(0)
        catalog_id, driver, nvml_index = None, None, None
        try:  # the probe's inventory is optional here: torch's name is enough
            from advisor.probe import default_backend

            backend = default_backend()
        except AdvisorError:
            backend = None
        if backend is not None:
            try:
                nvml_index = nvml_index_for(0, runtime, backend) if backend.name != "cpu" else None
                if nvml_index is not None:
                    info = backend.device_info(nvml_index)
                    catalog_id, driver = info.catalog_id, info.driver_version
                    name = info.name or name
            except AdvisorError:
                nvml_index = None
            finally:
                backend.close()
        if catalog_id is None:
            with contextlib.suppress(AdvisorError):
                catalog_id = find_gpu(name, load_specs()).id
        return DeviceContext("cuda", name, catalog_id, torch.__version__,
                             f"driver {driver}, CUDA {torch.version.cuda}" if driver else f"CUDA {torch.version.cuda}",
                             memory_method="torch.cuda.max_memory_reserved after reset_peak_memory_stats "
                                           "(allocated and NVML used memory alongside)",
                             device=CudaDevice(0, nvml_index=nvml_index, runtime=runtime))
    stored = _stored_cpu_rates() if use_store else None
    if stored is not None:
        rates, source = stored
    else:
        rates = measure_cpu_rates()
        source = "measured by validate: 512^3 fp32 / 256^3 bf16 matmuls, a 64 MiB copy, 1-element adds"
    ram = _total_ram_bytes()
    if ram:
        rates["memory_bytes"] = ram
    cpu = platform.processor() or platform.machine()
    return DeviceContext("cpu", f"{cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)", None,
                         torch.__version__, None, cpu_memory_method(), rates, source)


# --------------------------------------------------------------------------------------------- predictors

#: Parts of the estimator's overhead that exist only on a GPU (left out of CPU predictions): the CUDA context,
#: cuBLAS workspaces, and the CUDA caching allocator's segments (torch's CPU tensors come from the C heap).
GPU_ONLY_OVERHEAD = ("cuda_context", "library_workspaces", "allocator")


def cpu_card(device: DeviceContext) -> Any:
    """A pseudo catalog card for the local CPU, from its measured rates (so ``estimate`` can run on it)."""
    from advisor.catalog import spec_from_mapping

    r = device.rates
    if not r.get("matmul_fp32_flops") or not r.get("memory_copy_bytes_s"):
        raise AdvisorError("the CPU's rates were not measured", hint="use local_device() to describe the CPU")
    data: dict[str, Any] = {
        "id": "local-cpu", "name": f"local CPU: {device.name}", "vendor": "nvidia", "segment": "edge",
        "architecture": "cpu", "release_year": 2000, "memory_gb": r.get("memory_bytes", 16e9) / 1e9,
        "memory_type": "host RAM", "memory_bandwidth_gbs": r["memory_copy_bytes_s"] / 1e9,
        "fp32_tflops": r["matmul_fp32_flops"] / 1e12, "tdp_w": 100,
        "source": f"measured on this machine: {device.rates_source}"}
    if r.get("matmul_bf16_flops"):
        data["bf16_tflops"] = r["matmul_bf16_flops"] / 1e12
    return spec_from_mapping(data, "<local cpu>")


@functools.lru_cache(maxsize=64)
def _zoo_workload(model: str, batch_size: int, seq_len: int, precision: str, optimizer: str | None,
                  gradient_checkpointing: bool = False) -> Any:
    """The traced training step of a zoo transformer, with validate's own loss and checkpointed blocks (cached:
    replays predict the same case for many cards)."""
    import torch
    import torch.nn.functional as F

    from advisor.workload import zoo
    from advisor.workload.trace import trace_module

    module, _facts = zoo.build(model, "meta")
    tokens = torch.zeros((batch_size, seq_len), dtype=torch.long)
    return trace_module(module, (tokens,), precision=precision, optimizer=optimizer, mode="train", name=model,
                        loss_fn=lambda out: F.cross_entropy(out.flatten(0, 1), tokens.flatten()),
                        gradient_checkpointing=gradient_checkpointing,
                        checkpoint_blocks=module.blocks if gradient_checkpointing else None)


def estimator_model(case: Case) -> tuple[Any, dict[str, Any]]:
    """What to hand ``estimate`` for a case: the zoo module itself (traced) for a transformer's training step,
    an HF-style config of the model run for its decoding steps, or the preset name."""
    kwargs: dict[str, Any] = {}
    if case.seq_len:
        kwargs["seq_len"] = case.seq_len
    if case.image_size:
        kwargs["image_size"] = case.image_size
    cfg = TRANSFORMERS.get(case.model)
    if cfg is None:
        return case.model, kwargs
    if case.mode == "train":
        # the very module validate runs, traced on the meta device: every op it dispatches (its unfused
        # RMSNorm, rotary and GELU, its MLM head over the vocabulary, its checkpointed blocks), not the Hugging
        # Face class a config describes
        return _zoo_workload(case.model, case.batch_size, case.seq_len or 128, case.precision, case.optimizer,
                             case.gradient_checkpointing), {}
    if case.mode == "infer" and not case.gen_len and cfg["family"] != "bert":
        kwargs["gen_len"] = 0  # the run is one forward over the sequence (logits at every position), no generation
    if cfg["family"] == "gpt":
        config = {"model_type": "gpt2", "n_layer": cfg["layers"], "n_embd": cfg["d"], "n_head": cfg["heads"],
                  "vocab_size": cfg["vocab"], "n_positions": cfg["max_pos"], "tie_word_embeddings": True,
                  "resid_pdrop": 0.0}
    elif cfg["family"] == "llama":
        config = {"model_type": "llama", "num_hidden_layers": cfg["layers"], "hidden_size": cfg["d"],
                  "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["heads"],
                  "intermediate_size": cfg["ff"], "vocab_size": cfg["vocab"], "tie_word_embeddings": False}
    else:
        config = {"model_type": "bert", "num_hidden_layers": cfg["layers"], "hidden_size": cfg["d"],
                  "num_attention_heads": cfg["heads"], "intermediate_size": cfg["ff"], "vocab_size": cfg["vocab"],
                  "max_position_embeddings": cfg["max_pos"], "type_vocab_size": 2,
                  # the zoo's TinyBert is a masked LM: a tied decoder over the vocabulary, loss at every position
                  "architectures": ["BertForMaskedLM"]}
    return config, kwargs


def estimate_predictor(card: Any, *, calibration: Any = "auto", cpu: bool = False) -> Predictor:
    """Ask ``advisor.estimate.estimate`` for the case on ``card`` (a catalog name or a ``GpuSpec``).

    Args:
        card: the card to predict for.
        calibration: passed to ``estimate`` (``"auto"``: the newest stored probe of the card).
        cpu: the card is the local CPU (:func:`cpu_card`): the CUDA context, library workspaces and caching
            allocator's share are left out of the memory, which a CPU process does not have.
    """

    def predict(case: Case, device: DeviceContext) -> Prediction:
        from advisor.estimate import estimate

        model, kwargs = estimator_model(case)
        kwargs.update(batch_size=case.batch_size, precision=case.precision, mode=case.mode,
                      gradient_checkpointing=case.gradient_checkpointing)
        if case.mode == "train":
            kwargs["optimizer"] = case.optimizer
        else:
            kwargs["optimizer"] = None
        if case.gen_len:
            kwargs["gen_len"] = case.gen_len
        e = estimate(model, card, calibration=calibration, **kwargs)
        total = float(e.memory.total_bytes)
        detail = e.memory.to_dict().get("overhead_detail_bytes", {})
        assumptions = list(e.assumptions)
        if cpu:
            memory = total - sum(float(detail.get(k, 0.0)) for k in GPU_ONLY_OVERHEAD)
            assumptions.append("CPU row: predicted memory is the estimate less the CUDA context, library "
                               "workspaces and the CUDA caching allocator's share (a CPU process has none of them)")
        else:
            # torch's allocator (max_memory_reserved) never sees the CUDA context; nvidia-smi does
            memory = total - float(detail.get("cuda_context", 0.0))
            assumptions.append("GPU row: predicted memory compared with max_memory_reserved is the estimate less "
                               "the CUDA context; the estimate's total (nvidia-smi view) is beside NVML's used")
        t = e.time.to_dict()
        step_s = float(e.time.step_s)
        if case.gen_len and t.get("prefill_s") is not None and t.get("decode_step_s") is not None:
            step_s = float(t["prefill_s"]) + case.gen_len * float(t["decode_step_s"])  # the loop timed: prefill + N
        name = card if isinstance(card, str) else card.id
        by_class = dict(t.get("by_class") or {})  # prefill and every generated token included
        return Prediction(memory, step_s, None if cpu else bool(e.memory.fits), bool(e.calibrated),
                          f"estimate(gpu={name})", tuple(assumptions), None if cpu else total, by_class)

    return predict


def cpu_calibration(device: DeviceContext) -> dict[str, float]:
    """Efficiencies for the CPU pseudo-card: its peaks *are* the measured rates, so GEMM and copy run at 1.0."""
    from advisor.estimate.efficiency import HOST_OP_PER_BARE_OP

    cal = {"matmul_fp32": 1.0, "matmul_bf16": 1.0, "memory_bandwidth": 1.0}
    if device.rates.get("op_overhead_s"):
        # the CPU's bare-op time scales to a realistic op's dispatch (both measured on a CPU-only host)
        cal["host_op_s"] = float(device.rates["op_overhead_s"]) * HOST_OP_PER_BARE_OP
    return cal


def default_predictor(case: Case, device: DeviceContext) -> Prediction:
    """``estimate`` for the local card (GPU) or for the CPU pseudo-card; the trace predictor as a fallback."""
    if device.kind == "cuda":
        if not device.catalog_id:
            return trace_predictor()(case, device)
        return estimate_predictor(device.catalog_id)(case, device)
    try:
        return estimate_predictor(cpu_card(device), calibration=cpu_calibration(device), cpu=True)(case, device)
    except (AdvisorError, ImportError) as exc:
        fallback = trace_predictor()(case, device)
        reason = exc.message if isinstance(exc, AdvisorError) else f"{type(exc).__name__}: {exc}"
        return dataclasses.replace(fallback, source=f"{fallback.source}; estimate failed: {reason}")


@contextlib.contextmanager
def _meta_trace() -> Iterator[dict[str, Any]]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    saved: list[Any] = []

    def pack(t: Any) -> Any:
        saved.append(t)
        return t

    result: dict[str, Any] = {"saved": saved}
    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result
    result["flops"] = float(counter.get_total_flops())


_OPT_STATE_BYTES = {"sgd": 0, "sgd-momentum": 4, "adam": 8, "adamw": 8, "adafactor": 0.5, "adamw-8bit": 2}


def trace_predictor(build: Builder | None = None) -> Predictor:
    """A fallback predictor of this module's own, for devices and models the estimator cannot take.

    It builds the case's model on torch's ``meta`` device (no memory, no compute) and runs one step
    traced by ``FlopCounterMode`` and a saved-tensors hook:
    time = FLOPs / the device's measured fp32 matmul rate (``rates['matmul_fp32_flops']``; ``None`` on a GPU);
    memory = weights + gradients + optimizer state (bytes per parameter by optimizer) + the tensors
    autograd saves for backward (parameters excluded), or weights + twice the output for inference.
    """

    def predict(case: Case, device: DeviceContext) -> Prediction:
        import torch

        builder = build or default_builder
        with torch.device("meta"):
            built = builder(case, "meta")
            model = built.model
            if case.precision in ("fp16", "bf16"):
                model = model.to(dtype=_dtype(case.precision))
            inputs = built.make_inputs()
        params = list(model.parameters())
        param_ids = {id(p) for p in params}
        n_params = sum(p.numel() for p in params)
        weight_bytes = sum(p.numel() * p.element_size() for p in params)
        if case.mode == "train":
            if case.gradient_checkpointing:
                blocks = built.blocks if built.blocks is not None else find_blocks(model)
                if blocks is not None:
                    enable_checkpointing(blocks)
            with _meta_trace() as trace, _autocast(case.precision, "cpu"):
                loss = built.loss(model(*inputs), inputs)
                loss.backward()
            seen: set[int] = set()
            act = 0
            for t in trace["saved"]:
                base = t._base if t._base is not None else t
                if id(base) in param_ids or id(base) in seen or (t.is_leaf and t.requires_grad):
                    continue
                seen.add(id(base))
                act += base.numel() * base.element_size()
            opt_bytes = _OPT_STATE_BYTES.get(case.optimizer or "sgd", 8) * n_params
            if case.precision in ("fp16", "bf16"):
                opt_bytes = opt_bytes // 2
            memory = 2 * weight_bytes + opt_bytes + act
        else:
            with _meta_trace() as trace, torch.no_grad(), _autocast(case.precision, "cpu"):
                out = built.decode(inputs) if case.gen_len and built.decode is not None else model(*inputs)
            memory = weight_bytes + 2 * out.numel() * out.element_size()
        flops = float(trace["flops"])
        rate = device.rates.get("matmul_fp32_flops") if device.kind == "cpu" else None
        step_s = flops / rate if rate and flops else None
        return Prediction(float(memory), step_s, None, False, "trace (meta-device FLOPs / measured matmul rate)",
                          ("time = traced FLOPs / measured dense fp32 matmul rate (no memory-bound term, "
                           "no launch overhead)",
                           "memory = weights + gradients + optimizer state + tensors saved for backward"))

    return predict


def default_builder(case: Case, device: Device | str) -> Built:
    """Build the zoo model of a case with random weights (see :func:`build_model`)."""
    return build_model(case, device)


# --------------------------------------------------------------------------------------------- the zoo's models

#: Zoo builder names (``advisor.workload.zoo.build``) of the models that are not ``TRANSFORMERS``.
_ZOO_BUILDERS = {"lstm-lm": "lstm-lm", "mnist-cnn": "mnist-cnn", "resnet50": "resnet50", "vit-b16": "vit_b_16"}


def build_model(case: Case, device: Device | str) -> Built:
    """The model of a case on ``device`` (``"meta"`` for tracing), with random weights and a random batch.

    The models are ``advisor.workload.zoo``'s (the estimator's own definitions); image batches come in the
    case's dtype for the ``fp16``/``bf16`` cases, whose models are cast to it.

    The batch is drawn on the CPU from a CPU generator seeded 0, then moved: the same inputs on every device
    (CUDA's generator draws a different stream from the CPU's), at the cost of one small copy.  The tensors
    are created with ``device="cpu"`` explicitly: inside ``with torch.device("cuda")`` a bare ``torch.randn``
    would land on the GPU, where a CPU generator is refused.

    Raises:
        UnknownModelError: the case names no zoo model.
        AdvisorError: ``seq_len`` (+ ``gen_len``) is more than the model's positions.
    """
    import torch
    import torch.nn.functional as F

    from advisor.workload import zoo

    b = case.batch_size
    target = as_device(device).torch_device
    gen = CpuDevice().generator(0)

    def ints(high: int, shape: tuple[int, ...]) -> Any:
        if target == "meta":
            return torch.empty(shape, dtype=torch.long, device="meta")
        return torch.randint(0, high, shape, generator=gen, device="cpu").to(target)

    def floats(shape: tuple[int, ...]) -> Any:
        dtype = _dtype(case.precision)
        if target == "meta":
            return torch.empty(shape, dtype=dtype, device="meta")
        return torch.randn(shape, generator=gen, device="cpu").to(device=target, dtype=dtype)

    def classify(target: Any) -> Callable[[Any, tuple[Any, ...]], Any]:
        return lambda out, _inputs: F.cross_entropy(out, target)

    def lm_loss(out: Any, inputs: tuple[Any, ...]) -> Any:
        return F.cross_entropy(out.flatten(0, 1), inputs[0].flatten())

    if case.model not in TRANSFORMERS and case.model not in _ZOO_BUILDERS:
        raise UnknownModelError(f"unknown validate model {case.model!r}", hint=f"accepted: {', '.join(ALL_MODELS)}")
    with torch.device(target):
        if case.model in TRANSFORMERS:
            seq = case.seq_len or 128
            model, facts = zoo.build(case.model, target)
            if seq + (case.gen_len or 0) > facts["max_positions"]:
                raise AdvisorError(f"{case.model}: seq_len {seq} (+ gen_len) exceeds its "
                                   f"{facts['max_positions']} positions")
            inputs = (ints(int(facts["vocab_size"]), (b, seq)),)
            generate = getattr(model, "generate", None)  # the decoders; BERT has none
            decode = None if generate is None else lambda inp: generate(inp[0], case.gen_len or 0)
            return Built(model, lambda: inputs, lm_loss, decode=decode, blocks=model.blocks)
        if case.model == "lstm-lm":
            model, facts = zoo.build("lstm-lm", target)
            inputs = (ints(int(facts["vocab_size"]), (b, case.seq_len or 20)),)
            return Built(model, lambda: inputs, lm_loss)
        size = case.image_size or (28 if case.model == "mnist-cnn" else 224)
        kwargs = {"image_size": size} if case.model == "vit-b16" else {}
        model, facts = zoo.build(_ZOO_BUILDERS[case.model], target, **kwargs)
        inputs = (floats((b, int(facts["channels"]), size, size)),)
        classes_out = 10 if case.model == "mnist-cnn" else 1000
        return Built(model, lambda: inputs, classify(ints(classes_out, (b,))))


# --------------------------------------------------------------------------------------------- calibration

#: Models whose step time is mostly convolutions (fitted as ``conv_<precision>``; the rest as ``matmul_``).
CONV_MODELS = ("resnet50", "mnist-cnn")


def fit_calibration(report: ValidationReport, spec: Any) -> dict[str, dict[str, Any]]:
    """Per-card efficiencies fitted from measured step times.

    Rows must have been predicted *uncalibrated* (``calibration=None``), i.e. with the default efficiency
    ``e`` of the card's architecture.  Step time is taken as inversely proportional to the efficiency, so
    the fitted efficiency of a group (``matmul_<precision>``, or ``conv_<precision>`` for CNNs) is
    ``e x median(predicted_s / measured_s)`` over its rows, kept within (0, 1.2].

    Returns:
        ``{key: {"efficiency", "default", "rows", "ratio"}}``.
    """
    from advisor.estimate.calibrate import precision_key
    from advisor.estimate.efficiency import defaults_for

    eff = defaults_for(spec.architecture, spec.segment)
    groups: dict[str, list[float]] = {}
    for r in report.rows:
        if r.time_error is None or r.measurement is None or not r.prediction.step_s:
            continue
        kind = "conv" if r.model in CONV_MODELS else "matmul"
        key = f"{kind}_{precision_key(r.case.precision)}"
        groups.setdefault(key, []).append(r.prediction.step_s / r.measurement.step_s)
    out: dict[str, dict[str, Any]] = {}
    for key, ratios in sorted(groups.items()):
        base = eff.conv if key.startswith("conv") else eff.matmul
        ratio = statistics.median(ratios)
        out[key] = {"efficiency": min(max(base * ratio, 1e-3), 1.2), "default": base, "rows": len(ratios),
                    "ratio": ratio}
    return out


def calibration_probe(report: ValidationReport, spec: Any, fitted: Mapping[str, Mapping[str, Any]]) -> Any:
    """A probe-like record (``ProbeResult``) carrying the fitted efficiencies, for the history store.

    ``estimate(..., calibration="auto")`` reads the newest probe of a card from the store and takes
    ``matmul_<p>`` / ``conv_<p>`` from ``ProbeResult.efficiencies()``, so saving this makes later
    estimates for this card calibrated by the validation.
    """
    import socket

    from advisor.probe.results import DeviceInfo, KernelResult, ProbeResult

    kernels = []
    for key, fit in fitted.items():
        kind, precision = key.split("_", 1)
        peak = spec.peak_flops(precision) if precision in ("fp32", "tf32", "fp16", "bf16", "fp8") else None
        if not peak:
            continue
        kernels.append(KernelResult(
            name="conv2d" if kind == "conv" else "matmul", precision=precision, device_index=0, device="cuda",
            value=fit["efficiency"] * peak / 1e12, unit="TFLOP/s", spec_peak=peak / 1e12,
            fraction_of_peak=fit["efficiency"], shape="end-to-end steps",
            notes=(f"fitted by validate --calibrate from {fit['rows']} measured steps: default "
                   f"{fit['default']:.3g} x median(predicted/measured) {fit['ratio']:.3g}",)))
    dev = report.device
    device = DeviceInfo(index=0, kind="gpu", backend="validate", name=dev.name, catalog_id=spec.id)
    return ProbeResult(timestamp=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), host=socket.gethostname(),
                       versions={"torch": dev.torch_version, "driver": dev.driver}, devices=(device,),
                       kernels=tuple(kernels), backend="validate",
                       notes=("calibration record written by `validate --calibrate` (not a kernel probe)",))


# --------------------------------------------------------------------------------------------- replay


def case_from_row(model: str, config: Mapping[str, Any]) -> Case:
    """The :class:`Case` a saved row's ``config`` describes (the inverse of :meth:`Case.config`).

    Raises:
        AdvisorError: the config lacks a field a case needs, or holds a value of the wrong type.
    """
    try:
        return Case(model=str(model), mode=str(config["mode"]), batch_size=int(config["batch_size"]),
                    precision=str(config.get("precision") or "fp32"), optimizer=config.get("optimizer"),
                    seq_len=config.get("seq_len"), image_size=config.get("image_size"),
                    gradient_checkpointing=bool(config.get("gradient_checkpointing", False)),
                    gen_len=config.get("gen_len"))
    except (KeyError, TypeError, ValueError) as exc:
        raise AdvisorError(f"validate row {model!r}: its config is not a validate case ({exc})",
                           hint="replay takes the JSON that `validate --json` writes") from exc


def _measurement_from_row(row: Mapping[str, Any]) -> Measurement | None:
    mem, tim = row.get("memory") or {}, row.get("time") or {}
    if tim.get("measured_s") is None:
        return None
    return Measurement(peak_bytes=mem.get("measured_bytes"), step_s=float(tim["measured_s"]),
                       step_times_s=tuple(float(s) for s in tim.get("steps_s") or ()),
                       allocated_bytes=mem.get("allocated_bytes"), reserved_bytes=mem.get("reserved_bytes"),
                       nvml_used_bytes=mem.get("nvml_used_bytes"),
                       profile={k: v for k, v in row["profile"].items() if k != "predicted_by_class_s"}
                       if isinstance(row.get("profile"), Mapping) else None)


def device_from_dict(data: Mapping[str, Any]) -> DeviceContext:
    """The :class:`DeviceContext` of a saved run's ``device`` object."""
    return DeviceContext(kind=str(data.get("kind", "cuda")), name=str(data.get("name", "?")),
                         catalog_id=data.get("catalog_id"), torch_version=data.get("torch_version"),
                         driver=data.get("driver"), memory_method=str(data.get("memory_method", "")),
                         rates={str(k): float(v) for k, v in (data.get("rates") or {}).items()},
                         rates_source=data.get("rates_source"))


def replay(doc: Mapping[str, Any], *, calibration: Any = "auto", predict: Predictor | None = None,
           notes: Sequence[str] = ()) -> ValidationReport:
    """Re-predict the measured rows of a saved validate run with the current estimator.

    The measurements are kept as they were; only the predictions are made anew, so a run taken before an
    upgrade can be re-scored after it.  A GPU run is predicted for its own catalog card with
    ``calibration`` (``"auto"``: the card's newest stored probe; ``None``/``"none"``: the spec sheet only;
    a probe JSON path or ``ProbeResult``: that probe).  A CPU run is predicted for the CPU pseudo-card of the
    rates it recorded.

    Raises:
        AdvisorError: the document is not a validate run, or a GPU run names no catalog card.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rows"), list) or \
            not isinstance(doc.get("device"), Mapping):
        raise AdvisorError("not a validate run: expected an object with 'device' and 'rows'",
                           hint="replay takes the JSON that `validate --json` writes (or a saved validation id)")
    device = device_from_dict(doc["device"])
    if predict is None:
        if device.kind == "cuda":
            if not device.catalog_id:
                raise AdvisorError(f"the run's device {device.name!r} is not a catalog card: nothing to predict for",
                                   hint="add the card to a specs directory (--specs-dir) and set its catalog_id")
            predict = estimate_predictor(device.catalog_id, calibration=calibration)
        else:
            predict = estimate_predictor(cpu_card(device), calibration=cpu_calibration(device), cpu=True)
    rows = []
    for raw in doc["rows"]:
        case = case_from_row(raw.get("model", "?"), raw.get("config") or {})
        measurement = _measurement_from_row(raw)
        try:
            prediction = predict(case, device)
        except AdvisorError as exc:
            prediction = Prediction(None, None, source=f"estimate failed: {exc.message}")
        rows.append(ValidationRow(case.model, case, prediction, measurement, oom=bool(raw.get("oom")),
                                  error_message=raw.get("error_message")))
    return ValidationReport(device, tuple(rows), created_at=str(doc.get("created_at", "")),
                            notes=(*notes, f"replayed with the current estimator (calibration: {calibration!s})"))
