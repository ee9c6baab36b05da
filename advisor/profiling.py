"""Where a measured step's time went, by the estimator's op classes: ``validate --profile``.

A few steps run under ``torch.profiler``; every GPU kernel (or, on a CPU, every aten op's own CPU time) is put
in one of ``advisor.estimator.ops.GROUPS`` by its name, so the measured time per class sits beside the
estimate's ``time.by_class``.  This is how the next step-time error is found: the class whose measured time
differs most from its prediction is where the model is wrong.  The exposed host time is wall time less
kernel time (the GPU waiting for the host).

Torch is imported inside the functions; the classifiers are pure string rules (tested without torch).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

#: The CUDA/HIP runtime calls that launch a kernel (counted as launches).
LAUNCH_EVENTS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                 "hipLaunchKernel", "hipExtModuleLaunchKernel")

# Ordered rules: the first class whose words appear in the (lower-cased) kernel name wins.
_KERNEL_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("communication", ("nccl", "rccl", "allreduce", "all_reduce", "allgather", "reducescatter")),
    ("attention", ("sdpa", "flash", "fmha", "attention", "mha_")),
    ("optimizer", ("multi_tensor_apply", "fused_adam", "adam", "sgd_kernel")),
    ("conv", ("fprop", "dgrad", "wgrad", "implicit_gemm", "conv", "winograd", "nchwtonhwc", "nhwctonchw")),
    ("gemm", ("gemm", "nvjet", "cutlass", "xmma", "rnn_", "lstm", "gru_")),
    ("norm", ("norm", "gammabeta", "bn_fw", "bn_bw", "welford")),
)
# On a CPU there are no kernels: the aten ops themselves are classified.
_OP_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("communication", ("c10d", "nccl", "gloo", "all_reduce", "allreduce")),
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention")),
    ("optimizer", ("_foreach_", "_fused_adam", "optimizer.")),
    ("conv", ("convolution", "conv2d", "conv1d", "conv3d")),
    ("gemm", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_int_mm", "rnn", "lstm", "gru")),
    ("norm", ("norm",)),
)


def _classify(name: str, rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    low = name.lower()
    for group, words in rules:
        if any(w in low for w in words):
            return group
    return "elementwise"


def kernel_class(name: str) -> str:
    """The op class (``GROUPS``) of a GPU kernel by its name; ``elementwise`` when no rule matches."""
    return _classify(name, _KERNEL_RULES)


def op_class(name: str) -> str:
    """The op class (``GROUPS``) of an aten op by its profiler name (``aten::addmm``), for CPU profiles."""
    return _classify(name, _OP_RULES)


def _device_us(evt: Any, self_time: bool) -> float:
    names = ("self_device_time_total", "self_cuda_time_total") if self_time else ("device_time_total",
                                                                                    "cuda_time_total")
    for name in names:
        value = getattr(evt, name, None)
        if value is not None:
            return float(value)
    return 0.0


def summarize(prof: Any, steps: int, wall_s: float) -> dict[str, Any]:
    """Per-step figures of one profiled run (``prof``: a finished ``torch.profiler.profile``).

    Returns wall time and kernel time per step, launches and aten ops per step, the measured seconds per op
    class (``by_class_s``: GPU kernel time, or on a CPU the ops' own CPU time; plus ``host (exposed)`` = wall
    less kernel time on a GPU), and the top kernels and ops.
    """
    from torch.profiler import DeviceType

    events = prof.key_averages()
    kernels = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
    ops = [e for e in events if e.key.startswith(("aten::", "autograd::", "Optimizer."))]
    launches = sum(e.count for e in events if e.key in LAUNCH_EVENTS)
    kernel_us = sum(_device_us(e, True) for e in kernels)
    by_class: dict[str, float] = {}
    if kernels:
        for e in kernels:
            if e.key.startswith("Optimizer."):
                continue  # a profiler range over the optimizer's kernels, not a kernel
            group = kernel_class(e.key)
            by_class[group] = by_class.get(group, 0.0) + _device_us(e, True) / 1e6 / steps
        by_class["host (exposed)"] = max(0.0, wall_s / steps - kernel_us / 1e6 / steps)
    else:
        for e in ops:
            if e.key.startswith("aten::"):
                group = op_class(e.key)
                by_class[group] = by_class.get(group, 0.0) + e.self_cpu_time_total / 1e6 / steps
    return {
        "wall_s_per_step_profiled": wall_s / steps,
        "gpu_kernel_s_per_step": kernel_us / 1e6 / steps,
        "kernel_launches_per_step": launches / steps,
        "aten_ops_per_step": sum(e.count for e in ops if e.key.startswith("aten::")) / steps,
        "by_class_s": by_class,
        "top_kernels": [{"name": e.key[:200], "class": kernel_class(e.key), "count_per_step": e.count / steps,
                         "ms_per_step": _device_us(e, True) / 1e3 / steps}
                        for e in sorted(kernels, key=lambda e: -_device_us(e, True))[:25]],
        "top_ops": [{"name": e.key[:200], "count_per_step": e.count / steps,
                     "cpu_ms_per_step": e.cpu_time_total / 1e3 / steps,
                     "device_ms_per_step": _device_us(e, False) / 1e3 / steps}
                    for e in sorted(ops, key=lambda e: (-_device_us(e, False), -e.cpu_time_total))[:30]],
    }


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Hold what this process writes to its stdout and stderr file descriptors; yields the lines, filled on exit.

    The profiler's C++ side (Kineto) logs to file descriptor 2 itself ("profiler_start", "gpuGetDeviceCount
    failed" on a machine without a GPU); redirecting the descriptors, not ``sys.stderr``, is what keeps those
    lines out of the user's output.  Python's own streams are flushed first so nothing already written moves.
    """
    lines: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield lines
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())


def profile_steps(step: Callable[[], Any], *, cuda: bool, synchronize: Callable[[], None], steps: int = 3,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Run ``steps`` more steps under ``torch.profiler`` and summarize them (see :func:`summarize`).

    What the profiler itself prints goes into the summary's ``profiler_log`` (see :func:`captured_output`),
    not to the terminal between the caller's lines.
    """
    import torch
    import torch.profiler as tp

    # the kernels are recorded where torch really has a GPU (a test's fake CUDA device runs on the CPU)
    activities = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if cuda and torch.cuda.is_available()
                                              else [])
    synchronize()
    with captured_output() as log:
        with tp.profile(activities=activities) as prof:
            t0 = clock()
            for _ in range(steps):
                step()
            synchronize()
            wall = clock() - t0
        out = summarize(prof, steps, wall)
        del prof  # its event buffers go now, not at the next case's gc.collect()
    return {**out, "profiler_log": log}
