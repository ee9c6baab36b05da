"""The probe's kernels: which run for each group (``plan``), and running them under a time budget (``run_plan``).

The kernels live by job: ``compute_kernels`` (matmul, conv2d), ``memory_kernels`` (device bandwidth,
host<->device transfers), ``launch_kernels`` (launch overhead, host dispatch per op); ``kernel_env`` holds
``KernelEnv`` and the measuring helpers they share.  Their public names are re-exported here.

Kernels run on an ``advisor.device.Device``: its generator makes the inputs where they land, its
region timer times them (CUDA events on a GPU), its ``empty_cache`` frees what they held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from advisor.errors import AdvisorError
from advisor.probing.compute_kernels import (
    CONV_PRECISIONS,
    CPU_CONV_LAYERS,
    CPU_MATMUL_SHAPES,
    CPU_MATMUL_SHAPES_QUICK,
    GPU_MATMUL_SHAPES,
    GPU_MATMUL_SHAPES_QUICK,
    INT8_MIN_FRACTION,
    MATMUL_PRECISIONS,
    RESNET50_LAYERS,
    conv2d_flops,
    conv2d_output_hw,
    matmul_flops,
    matmul_support,
    run_conv,
    run_matmul,
    warm_device,
)
from advisor.probing.kernel_env import ABOVE_PEAK, MIB, KernelEnv, cuda_env, is_out_of_memory, skip_result
from advisor.probing.launch_kernels import HOST_MODEL, run_host_backward, run_host_dispatch, run_launch
from advisor.probing.memory_kernels import bandwidth_buffer_bytes, bandwidth_bytes, run_bandwidth, run_transfer
from advisor.probing.results import KernelResult

__all__ = ["ABOVE_PEAK", "CONV_PRECISIONS", "CPU_CONV_LAYERS", "CPU_MATMUL_SHAPES", "CPU_MATMUL_SHAPES_QUICK",
           "GPU_MATMUL_SHAPES", "GPU_MATMUL_SHAPES_QUICK", "HOST_MODEL", "INT8_MIN_FRACTION", "KERNEL_GROUPS",
           "MATMUL_PRECISIONS", "MIB", "RESNET50_LAYERS", "KernelEnv", "KernelResult", "PlannedKernel",
           "bandwidth_buffer_bytes", "bandwidth_bytes", "conv2d_flops", "conv2d_output_hw", "cuda_env",
           "is_out_of_memory", "matmul_flops", "matmul_support", "plan", "run_bandwidth", "run_conv",
           "run_host_backward", "run_host_dispatch", "run_launch", "run_matmul", "run_plan", "run_transfer",
           "warm_device"]

#: Kernel groups a user can ask for with ``--kernels`` (the one definition; ``advisor.probe`` re-exports it).
KERNEL_GROUPS = ("matmul", "conv", "bandwidth", "transfer", "launch")


@dataclass(frozen=True)
class PlannedKernel:
    """One kernel the probe will run: its group, a label for progress, and how to run it."""

    group: str
    label: str
    run: Callable[[KernelEnv], KernelResult]


def plan(env: KernelEnv, groups: Iterable[str] = KERNEL_GROUPS) -> list[PlannedKernel]:
    """The kernels to run on ``env`` for the chosen groups, quick or full, GPU or CPU sizes.

    Groups run in ``KERNEL_GROUPS``' order, whatever the order asked.
    """
    groups = tuple(groups)
    unknown = [g for g in groups if g not in KERNEL_GROUPS]
    if unknown:
        raise AdvisorError(f"unknown kernel group {unknown[0]!r}", hint=f"choose from: {', '.join(KERNEL_GROUPS)}")
    return [kernel for group in KERNEL_GROUPS if group in groups for kernel in _PLANNERS[group](env)]


def _matmul_kernels(env: KernelEnv) -> list[PlannedKernel]:
    quick, small = env.quick, env.small
    precisions: tuple[str, ...]
    if env.is_cuda:
        precisions = MATMUL_PRECISIONS
    else:
        precisions = ("fp32", "bf16") if quick else ("fp32", "fp16", "bf16", "int8")
    shapes: tuple[tuple[int, int, int], ...]
    if small:
        shapes = CPU_MATMUL_SHAPES_QUICK if quick else CPU_MATMUL_SHAPES
    else:
        shapes = GPU_MATMUL_SHAPES_QUICK if quick else GPU_MATMUL_SHAPES
    out = []
    for prec in precisions:
        for m, n, k in shapes:
            if small and prec != "fp32" and m > 256:
                continue  # CPUs without native bf16/fp16/int8 GEMM take seconds at larger sizes
            out.append(PlannedKernel("matmul", f"matmul {prec} {m}x{n}x{k}",
                                     partial(run_matmul, precision=prec, m=m, n=n, k=k)))
    return out


def _conv_kernels(env: KernelEnv) -> list[PlannedKernel]:
    quick = env.quick
    precisions: tuple[str, ...]
    if env.is_cuda:
        precisions = ("bf16", "fp16") if quick else CONV_PRECISIONS
    else:
        precisions = ("fp32",) if quick else ("fp32", "bf16")
    layers: tuple[tuple[int, ...], ...]
    if env.small:
        layers, batch = CPU_CONV_LAYERS, 2
    else:
        layers = RESNET50_LAYERS[:2] if quick else RESNET50_LAYERS
        batch = 64
    return [PlannedKernel("conv", f"conv2d {prec} {'nhwc' if cl else 'nchw'} c{layer[0]}",
                          partial(run_conv, precision=prec, layer=layer, batch=batch, channels_last=cl))
            for prec in precisions for layer in layers for cl in (False, True)]


def _bandwidth_kernels(env: KernelEnv) -> list[PlannedKernel]:
    size = bandwidth_buffer_bytes(env)
    sizes = (size,) if env.quick or env.small else (size, 4 * size)
    return [PlannedKernel("bandwidth", f"memory {mode} {sz // MIB} MiB",
                          partial(run_bandwidth, mode=mode, buffer_bytes=sz))
            for mode in ("copy", "read", "write") for sz in sizes]


def _transfer_kernels(env: KernelEnv) -> list[PlannedKernel]:
    sizes: tuple[int, ...]
    if env.small:
        sizes = (MIB,) if env.quick else (MIB, 4 * MIB)
    else:
        sizes = (256 * MIB,) if env.quick else (16 * MIB, 256 * MIB, 1024 * MIB)
    return [PlannedKernel("transfer", f"{direction} {'pinned' if pinned else 'pageable'} {sz // MIB} MiB",
                          partial(run_transfer, direction=direction, pinned=pinned, buffer_bytes=sz))
            for direction in ("h2d", "d2h") for pinned in (True, False) for sz in sizes]


def _launch_kernels(env: KernelEnv) -> list[PlannedKernel]:
    return [PlannedKernel("launch", "launch overhead", run_launch),
            PlannedKernel("launch", "host dispatch per op", run_host_dispatch),
            PlannedKernel("launch", "host backward per op", run_host_backward)]


#: How each group's kernels are chosen for a device.
_PLANNERS: dict[str, Callable[[KernelEnv], list[PlannedKernel]]] = {
    "matmul": _matmul_kernels, "conv": _conv_kernels, "bandwidth": _bandwidth_kernels,
    "transfer": _transfer_kernels, "launch": _launch_kernels,
}


def run_plan(env: KernelEnv, planned: Sequence[PlannedKernel],
             progress: Callable[[str, float], None] | None = None) -> list[KernelResult]:
    """Run planned kernels in order, skipping the rest once ``env.deadline`` (on ``env.clock``) has passed."""
    results = []
    for i, pk in enumerate(planned):
        if progress is not None:
            progress(pk.label, i / max(1, len(planned)))
        if env.deadline is not None and env.clock() >= env.deadline:
            results.append(skip_result(env, pk.group if pk.group != "conv" else "conv2d", None, pk.label,
                                       "time budget (--max-seconds) used up"))
            continue
        results.append(pk.run(env))
    return results
