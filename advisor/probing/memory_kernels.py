"""Memory kernels of the probe: device-memory bandwidth (copy, read, write) and host<->device transfers.

``work`` is the bytes one iteration moves, so ``value = work / median time`` (GB/s = 10^9 bytes/s, as the specs):

- memory_copy: ``2 * buffer_bytes`` (each byte read once and written once); memory_read (a sum):
  ``buffer_bytes``; memory_write (a fill): ``buffer_bytes``.
- transfers (h2d / d2h, pinned / pageable): ``buffer_bytes`` one way across PCIe.

torch is imported inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from advisor.errors import AdvisorError
from advisor.probing.kernel_env import (
    KERNEL_ERRORS,
    MIB,
    KernelEnv,
    failed_result,
    fits,
    free_memory,
    import_torch,
    skip_result,
    timed_result,
)
from advisor.probing.results import KernelResult

__all__ = ["bandwidth_buffer_bytes", "bandwidth_bytes", "run_bandwidth", "run_transfer"]


def bandwidth_bytes(mode: str, buffer_bytes: int) -> int:
    """Bytes moved per iteration: copy reads and writes each byte (2x); read or write once (1x)."""
    factor = {"copy": 2, "read": 1, "write": 1}.get(mode)
    if factor is None:
        raise AdvisorError(f"unknown bandwidth mode {mode!r}", hint="accepted: copy, read, write")
    return factor * buffer_bytes


def bandwidth_buffer_bytes(env: KernelEnv) -> int:
    """Buffer size for bandwidth kernels: >= 8x the L2 cache and >= 256 MiB on a GPU; 64 MiB on CPU.

    (16 MiB for small shapes on a CUDA device: a fake one in CI.)
    """
    if not env.is_cuda:
        return 64 * MIB
    if env.small:
        return 16 * MIB
    l2_mb = getattr(env.spec, "l2_cache_mb", None) if env.spec is not None else None
    size = max(256 * MIB, int(8 * (l2_mb or 50) * 1e6))
    return int(math.ceil(size / MIB) * MIB)


def run_bandwidth(env: KernelEnv, mode: str, buffer_bytes: int) -> KernelResult:
    """Device-memory GB/s: copy (dst.copy_(src)), read (src.sum()), write (dst.fill_()).

    On a GPU the L2 cache is flushed (a write to a buffer twice its size) before each repetition.
    """
    name = f"memory_{mode}"
    nbytes = buffer_bytes - buffer_bytes % 4
    shape = f"{nbytes / MIB:.0f} MiB"
    buffers = 2 if mode == "copy" else 1
    l2_bytes = int((getattr(env.spec, "l2_cache_mb", None) or 50) * 1e6) if env.is_cuda else 0
    flush_bytes = 2 * l2_bytes
    if not fits(env, buffers * nbytes + flush_bytes):
        return skip_result(env, name, None, shape, "buffers exceed the memory limit")
    torch = import_torch()
    src: Any = None
    dst: Any = None
    flush: Any = None
    try:
        g = env.dev.generator(env.seed)
        src = torch.randn(nbytes // 4, generator=g, device=env.torch_device)
        dst = torch.empty_like(src) if mode == "copy" else src
        if mode == "copy":
            def fn() -> None:
                dst.copy_(src)
        elif mode == "read":
            def fn() -> None:
                src.sum()
        else:
            def fn() -> None:
                src.fill_(1.0)
        before = None
        if flush_bytes:
            flush = torch.empty(flush_bytes, dtype=torch.uint8, device=env.torch_device)

            def before() -> None:
                flush.zero_()

        spec_peak = getattr(env.spec, "memory_bandwidth_gbs", None) if env.spec is not None else None
        return timed_result(env, name=name, precision=None, shape=shape, fn=fn, work=bandwidth_bytes(mode, nbytes),
                            work_unit="bytes", unit="GB/s", scale=1e9, spec_peak=spec_peak, before_repetition=before)
    except KERNEL_ERRORS as exc:
        return failed_result(env, name, None, shape, exc)
    finally:
        src = dst = flush = None
        free_memory(env)


def run_transfer(env: KernelEnv, direction: str, pinned: bool, buffer_bytes: int) -> KernelResult:
    """Host<->device GB/s one way, pinned or pageable host memory, against the current PCIe link's peak."""
    name = f"{direction}_{'pinned' if pinned else 'pageable'}"
    shape = f"{buffer_bytes / MIB:.0f} MiB"
    if not env.is_cuda:
        return skip_result(env, name, None, shape, "no GPU: host<->device transfers need one")
    if not fits(env, buffer_bytes):
        return skip_result(env, name, None, shape, "buffer exceeds the memory limit")
    torch = import_torch()
    host: Any = None
    dev: Any = None
    try:
        host = torch.empty(buffer_bytes, dtype=torch.uint8, pin_memory=pinned)
        host.fill_(7)
        dev = torch.empty(buffer_bytes, dtype=torch.uint8, device=env.torch_device)
        if direction == "h2d":
            def fn() -> None:
                dev.copy_(host, non_blocking=pinned)
        else:
            def fn() -> None:
                host.copy_(dev, non_blocking=pinned)
        result = timed_result(env, name=name, precision=None, shape=shape, fn=fn, work=buffer_bytes, work_unit="bytes",
                              unit="GB/s", scale=1e9, spec_peak=env.pcie_gbs)
        return _against_live_link(env, result, fn)
    except KERNEL_ERRORS as exc:
        return failed_result(env, name, None, shape, exc)
    finally:
        host = dev = None
        free_memory(env)


_LINK_ERRORS: tuple[type[Exception], ...] = (AdvisorError, *KERNEL_ERRORS)


def _against_live_link(env: KernelEnv, result: KernelResult, fn: Callable[[], None]) -> KernelResult:
    """Re-read the PCIe link while traffic flows (idle links train down) and set the result against it."""
    if env.read_link is None or not result.ok:
        return result
    from advisor.catalog import pcie_bandwidth_gbs

    try:
        fn()  # keep the link busy while it is read
        gen, width = env.read_link()
        env.dev.synchronize()
    except _LINK_ERRORS:  # the backend cannot read the link, or the transfer failed this time
        return result  # the inventory figure stays
    peak = pcie_bandwidth_gbs(gen, width)
    if peak is None:
        return result
    return replace(result, spec_peak=peak, fraction_of_peak=(result.value or 0.0) / peak,
                   notes=(*result.notes, f"against PCIe gen{gen} x{width} read during the transfer"))
