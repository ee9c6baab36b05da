"""Collective-communication probe: ``torchrun --nproc-per-node N -m advisor probe --collectives``.

Every rank joins ``torch.distributed`` from torchrun's environment (NCCL on CUDA, gloo on the CPU), times
all-reduce, all-gather, reduce-scatter, broadcast and all-to-all over a range of sizes, and probes its own
device (a matmul rate) so stragglers show.  Rank 0 gathers one fleet result (host, local rank, device),
flags ranks more than 5% below the fleet median.  ``probe --collectives`` (``advisor/commands/probe.py``)
prints rank 0's document (other ranks print nothing on stdout) and saves the run to the history store.

Bandwidths follow nccl-tests (``advisor.probing.collective_results``, the report's records): busbw is what
compares with a link's one-direction bandwidth (the card's NVLink or PCIe figure from the catalog).

A single process that sees several GPUs also measures the device-to-device copy matrix (P2P).
Without torchrun's environment the probe runs as a world of one and says so.  torch is imported inside
the functions only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import AdvisorError
from advisor.probing.collective_results import (
    OPS,
    STRAGGLER_FRACTION,
    CollectiveResult,
    CollectivesReport,
    RankInfo,
    algbw_bytes_s,
    bus_factor,
    busbw_bytes_s,
    find_stragglers,
)

__all__ = ["CPU_SIZES", "CPU_SIZES_QUICK", "GPU_SIZES", "GPU_SIZES_QUICK", "OPS", "STRAGGLER_FRACTION",
           "CollectiveResult", "CollectivesReport", "DistEnv", "RankInfo", "algbw_bytes_s", "bus_factor",
           "busbw_bytes_s", "find_stragglers", "p2p_matrix", "run_collectives"]

CPU_SIZES_QUICK = (4 * 2**10, 64 * 2**10, 1 * 2**20)
CPU_SIZES = (4 * 2**10, 64 * 2**10, 1 * 2**20, 4 * 2**20)
GPU_SIZES_QUICK = (2**20, 16 * 2**20, 256 * 2**20)
GPU_SIZES = tuple(2**k for k in range(10, 31, 2))  # 1 KiB .. 1 GiB


# --------------------------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class DistEnv:
    """What torchrun (or srun around it) put in the environment."""

    rank: int
    world_size: int
    local_rank: int
    launched: bool

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistEnv:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; absent means a single process (world of one).

        Raises:
            AdvisorError: the variables are present but not integers or out of range.
        """
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls(0, 1, 0, False)
        try:
            rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"]))
        except ValueError as exc:
            raise AdvisorError(f"bad torchrun environment: RANK={env.get('RANK')!r} "
                               f"WORLD_SIZE={env.get('WORLD_SIZE')!r}", hint="launch with torchrun") from exc
        if world < 1 or not 0 <= rank < world:
            raise AdvisorError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
        return cls(rank, world, local, True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sync(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _make_op(op: str, size_bytes: int, world: int, rank: int, device: Any, dtype: Any) -> Callable[[], Any]:
    """A closure that runs one collective on buffers of ``size_bytes`` per rank (nccl-tests' sizes)."""
    import torch
    import torch.distributed as dist

    elem = torch.empty((), dtype=dtype).element_size()
    count = max(size_bytes // elem // world * world, world)  # divisible by the world for scatter/gather ops
    if op == "all_reduce":
        buf = torch.ones(count, dtype=dtype, device=device)
        return lambda: dist.all_reduce(buf)
    if op == "broadcast":
        buf = torch.ones(count, dtype=dtype, device=device)
        return lambda: dist.broadcast(buf, src=0)
    if op == "all_gather":
        out = torch.empty(count, dtype=dtype, device=device)
        inp = torch.ones(count // world, dtype=dtype, device=device)
        # torch >= 2.10 names it all_gather_single (all_gather_into_tensor is deprecated there)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(out, inp)
    if op == "reduce_scatter":
        inp = torch.ones(count, dtype=dtype, device=device)
        out = torch.empty(count // world, dtype=dtype, device=device)
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: scatter(out, inp)
    if op == "all_to_all":
        inp = torch.ones(count, dtype=dtype, device=device)
        out = torch.empty(count, dtype=dtype, device=device)
        return lambda: dist.all_to_all_single(out, inp)
    raise AdvisorError(f"unknown collective {op!r}", hint=f"accepted: {', '.join(OPS)}")


def _time_op(run: Callable[[], Any], device: Any, iters: int, reps: int, barrier: Callable[[], Any],
             clock: Callable[[], float] = time.perf_counter) -> float:
    """Median over ``reps`` of the mean time of ``iters`` back-to-back calls (nccl-tests' way), on ``clock``."""
    for _ in range(2):
        run()
    _sync(device)
    times = []
    for _ in range(reps):
        barrier()  # start together: the collective's time, not a late rank's arrival
        t0 = clock()
        for _ in range(iters):
            run()
        _sync(device)  # collectives are asynchronous on CUDA
        times.append((clock() - t0) / iters)
    return statistics.median(times)


def _local_matmul_tflops(device: Any, quick: bool, clock: Callable[[], float] = time.perf_counter) -> float:
    """This rank's own device: a dense matmul rate (bf16 on GPU, fp32 on CPU), for straggler detection."""
    import torch

    if device.type == "cuda":
        n, dtype = (4096 if quick else 8192), torch.bfloat16
    else:
        n, dtype = 256, torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    times = []
    for i in range(7):
        _sync(device)
        t0 = clock()
        a @ b
        _sync(device)
        if i >= 2:
            times.append(clock() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def p2p_matrix(size_bytes: int = 256 * 2**20, reps: int = 5,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Device-to-device copy bandwidth (GB/s) between every pair of GPUs this process sees, and P2P access.

    Raises:
        AdvisorError: fewer than two CUDA devices.
    """
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        raise AdvisorError(f"the P2P matrix needs two or more GPUs; this process sees {n}")
    gbs: list[list[float | None]] = [[None] * n for _ in range(n)]
    access: list[list[bool]] = [[i == j for j in range(n)] for i in range(n)]
    count = size_bytes // 4
    for i in range(n):
        src = torch.ones(count, device=f"cuda:{i}")
        for j in range(n):
            if i == j:
                continue
            access[i][j] = bool(torch.cuda.can_device_access_peer(i, j))
            dst = torch.empty(count, device=f"cuda:{j}")
            dst.copy_(src)
            times = []
            for _ in range(reps):
                torch.cuda.synchronize(i)
                torch.cuda.synchronize(j)
                t0 = clock()
                dst.copy_(src)
                torch.cuda.synchronize(i)
                torch.cuda.synchronize(j)
                times.append(clock() - t0)
            gbs[i][j] = size_bytes / statistics.median(times) / 1e9
            del dst
        del src
    torch.cuda.empty_cache()
    return {"size_bytes": size_bytes, "copy_gbs": gbs, "peer_access": access,
            "note": "row = source, column = destination; one-direction copy with torch (P2P where peer_access)"}


def _link_spec(device_name: str | None) -> dict[str, Any]:
    """The card's interconnect from the catalog (one-direction GB/s), or why there is none."""
    if not device_name:
        return {"card": None, "link_gbs": None, "note": "CPU ranks: no link spec to compare with"}
    from advisor.catalog import find_gpu, load_specs

    try:
        spec = find_gpu(device_name, load_specs())
    except AdvisorError:
        return {"card": None, "link_gbs": None, "note": f"{device_name} is not in the catalog"}
    ic = spec.interconnect
    kind = "nvlink" if ic.nvlink_gbs else "infinity_fabric" if ic.infinity_fabric_gbs else "pcie"
    return {"card": spec.id, "link": kind, "link_gbs": ic.peer_gbs, "pcie_gbs": ic.pcie_gbs,
            "note": "one-direction peer bandwidth from the catalog (NVLink total / 2, else PCIe); inter-node "
                    "traffic goes over the network instead"}


def run_collectives(*, quick: bool = False, sizes: Sequence[int] | None = None, ops: Sequence[str] = OPS,
                    iters: int | None = None, reps: int = 3, env: DistEnv | None = None,
                    backend: str | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> CollectivesReport | None:
    """Join (or create) the process group, probe, gather; returns the report on rank 0, ``None`` elsewhere.

    Args:
        quick: fewer, smaller sizes and iterations.
        sizes: buffer sizes in bytes per rank (default by device and ``quick``).
        ops: the collectives to time.
        iters, reps: back-to-back calls per timed region, and regions (median kept).
        env: the launcher's environment (default: read from ``os.environ``).
        backend: ``nccl`` or ``gloo`` (default: nccl on CUDA, gloo on the CPU).
        clock: seconds, monotonic (every timed region and the elapsed time read it).

    Raises:
        AdvisorError: an unknown collective or backend, or the process group cannot be formed.
    """
    import torch
    import torch.distributed as dist

    t_start = clock()
    for op in ops:
        bus_factor(op, 1)  # validates the name
    env = env or DistEnv.from_environ()
    backend, device = _backend_and_device(backend, env)
    notes: list[str] = []
    own_group = _join(backend, env, notes)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        if sizes is None:
            sizes = (GPU_SIZES_QUICK if quick else GPU_SIZES) if device.type == "cuda" else (
                CPU_SIZES_QUICK if quick else CPU_SIZES)
        iters = iters or (5 if quick or device.type == "cpu" else 20)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        link = _link_spec(device_name)
        my_times, skipped = _time_all(ops, sizes, world, rank, device, iters, reps, backend, clock)
        info = RankInfo(rank, env.local_rank, socket.gethostname(), str(device),
                        device_name or "cpu", link.get("card"), _local_matmul_tflops(device, quick, clock))
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, {"info": info.to_dict(), "times": my_times, "skipped": skipped})
        if rank != 0:
            return None
        results = _fleet_results(gathered, ops, sizes, world, link.get("link_gbs"))
        fleet = tuple(RankInfo(**g["info"]) for g in gathered)
        if world == 1 and torch.cuda.is_available() and torch.cuda.device_count() > 1:
            p2p: dict[str, Any] | None = p2p_matrix(size_bytes=(64 if quick else 256) * 2**20, clock=clock)
        else:
            p2p = None
        return CollectivesReport(backend, world, "torchrun" if env.launched else "single process", device.type,
                                 tuple(results), fleet, link, p2p, tuple(notes),
                                 time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                                 round(clock() - t_start, 3))
    finally:
        if own_group:
            with contextlib.suppress(RuntimeError, ValueError):  # a group already gone: c10d's errors
                dist.destroy_process_group()


def _backend_and_device(backend: str | None, env: DistEnv) -> tuple[str, Any]:
    """The backend (default nccl on CUDA, gloo on the CPU) and this rank's device.

    Raises:
        AdvisorError: an unknown backend, or nccl without CUDA.
    """
    import torch

    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    if backend not in ("nccl", "gloo"):
        raise AdvisorError(f"unknown backend {backend!r}", hint="accepted: nccl (CUDA), gloo (CPU)")
    if backend == "nccl" and not cuda:
        raise AdvisorError("backend nccl needs CUDA devices", hint="use gloo on the CPU")
    if cuda and backend == "nccl":
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        return backend, torch.device("cuda", torch.cuda.current_device())
    return backend, torch.device("cpu")


def _join(backend: str, env: DistEnv, notes: list[str]) -> bool:
    """Join torchrun's process group (or a world of one, said in ``notes``); whether this call created it.

    Raises:
        AdvisorError: the process group cannot be formed.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    try:
        if env.launched:
            dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
        else:
            notes.append("no torchrun environment: ran as a single process (world size 1); bus bandwidth is "
                         "0 by definition for most collectives - launch with torchrun --nproc-per-node N")
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                                    world_size=1)
    except (RuntimeError, ValueError) as exc:
        raise AdvisorError(f"cannot join the {backend} process group: {exc}",
                           hint="launch with torchrun; check MASTER_ADDR/MASTER_PORT") from exc
    return True


def _time_all(ops: Sequence[str], sizes: Sequence[int], world: int, rank: int, device: Any, iters: int, reps: int,
              backend: str, clock: Callable[[], float]) -> tuple[dict[str, dict[int, float]], dict[str, str]]:
    """This rank's time of every collective at every size, and why a collective was skipped (its first failure)."""
    import torch
    import torch.distributed as dist

    my_times: dict[str, dict[int, float]] = {}
    skipped: dict[str, str] = {}
    for op in ops:
        for size in sizes:
            try:
                run = _make_op(op, int(size), world, rank, device, torch.float32)
                elapsed = _time_op(run, device, iters, reps, dist.barrier, clock)
            except (RuntimeError, NotImplementedError, ValueError) as exc:
                # the same backend fails the same way on every rank, so no rank is left waiting
                skipped[op] = f"{backend} cannot run {op}: {str(exc).splitlines()[0][:160]}"
                break
            my_times.setdefault(op, {})[int(size)] = elapsed
    return my_times, skipped


def _fleet_results(gathered: Sequence[Any], ops: Sequence[str], sizes: Sequence[int], world: int,
                   link_gbs: float | None) -> list[CollectiveResult]:
    """One result per collective and size from every rank's times (the slowest rank's), or why it was skipped."""
    results: list[CollectiveResult] = []
    for op in ops:
        reasons = [g["skipped"].get(op) for g in gathered if g["skipped"].get(op)]
        for size in sizes:
            per_rank = [g["times"].get(op, {}).get(int(size)) for g in gathered]
            if any(t is None for t in per_rank):
                if reasons and size == sizes[0]:
                    results.append(CollectiveResult(op, int(size), None, world, link_gbs=link_gbs,
                                                    skipped=reasons[0]))
                continue
            results.append(CollectiveResult(op, int(size), max(per_rank), world, tuple(per_rank), link_gbs))
    return results
