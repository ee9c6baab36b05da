"""Running a case: timing, the measured run (CUDA or CPU heap peak), out-of-memory rows, the whole run."""

from __future__ import annotations

import ctypes
import functools
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from advisor.device import CpuDevice, Device, as_device
from advisor.errors import AdvisorError
from advisor.validate.models import default_builder, enable_checkpointing, find_blocks, make_optimizer
from advisor.validate.predictors import default_predictor
from advisor.validate.records import (
    Builder,
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
    step_timing,
)
from advisor.workload.options import OPTIMIZERS


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


#: More rounds of ``iters`` timed steps a case may run when a round's times are too spread to trust.
MAX_REPEATS = 3
#: ... while the steps timed so far took less than this many seconds (a slow case is not rerun for minutes).
REPEAT_BUDGET_S = 20.0


def time_until_stable(step: Callable[[], Any], *, device: Device | str, warmup: int, iters: int,
                      clock: Callable[[], float] = time.perf_counter, max_repeats: int = MAX_REPEATS,
                      budget_s: float = REPEAT_BUDGET_S) -> tuple[list[float], int]:
    """:func:`time_steps`, repeated while its times spread more than the probe's rule allows (:func:`step_timing`).

    A busy host (another process on the cores) makes CPU step times swing; rounds of ``iters`` steps are
    timed again, at most ``max_repeats`` more and while the timed steps so far took under ``budget_s``.
    The steadiest round (smallest spread) is kept: interference only adds time, so it is the closest to the
    step's own time; when even that one is not trusted the row says so (``Measurement.noisy``).  A round
    too short for the rule (fewer steps than it needs) is not repeated: more rounds of it cannot help.

    Returns the kept round's step times and how many rounds ran.
    """
    best = time_steps(step, device=device, warmup=warmup, iters=iters, clock=clock)
    spent, rounds = sum(best), 1
    while step_timing(best).too_spread and rounds <= max_repeats and spent < budget_s:
        again = time_steps(step, device=device, warmup=0, iters=iters, clock=clock)
        rounds += 1
        spent += sum(again)
        if step_timing(again).spread < step_timing(best).spread:
            best = again
    return best, rounds


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


def heap_peak_mode() -> Any:
    """A dispatch mode that samples the heap after every aten op (so the peak of a step is seen)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class HeapPeak(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            self.peak = heap_in_use_bytes() or 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            used = heap_in_use_bytes() or 0
            if used > self.peak:
                self.peak = used
            return out

    return HeapPeak()


def _is_oom(exc: BaseException) -> bool:
    from advisor.probing.kernels import is_out_of_memory

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

        times, rounds = time_until_stable(step, device=device, warmup=warmup, iters=iters)
        allocated = reserved = used = peak = None
        if cuda:
            allocated = float(device.peak_allocated_bytes() or 0)
            reserved = peak = float(device.peak_reserved_bytes() or 0)
            used = nvml_used() if nvml_used else None
        elif heap_base is not None:
            # one more step, sampled op by op: the steady-state peak (optimizer state exists after warm-up)
            with heap_peak_mode() as mode:
                step()
            peak = float(max(mode.peak - heap_base, 0))
        profiled = None
        if profile:  # after time and memory are read, so neither holds the profiler's own cost or buffers
            from advisor.profiling import profile_steps

            profiled = profile_steps(step, cuda=cuda, synchronize=device.synchronize, steps=profile)
        return Measurement(peak, statistics.median(times), tuple(times), allocated, reserved, used, profiled,
                           timing_rounds=rounds)
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
    except (RuntimeError, MemoryError, AdvisorError) as exc:  # torch's OOM is a RuntimeError; anything else: a bug
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
