"""What the collective-communication probe reports: nccl-tests' bandwidths, per-rank results, the fleet report.

``size`` is the whole buffer of one rank (for all-gather the gathered output, for reduce-scatter the input),
``algbw = size / time`` and ``busbw = algbw x factor`` with factor ``2(n-1)/n`` for all-reduce, ``(n-1)/n`` for
all-gather, reduce-scatter and all-to-all, and ``1`` for broadcast (nccl-tests, ``doc/PERFORMANCE.md``).  Pure
Python: ``advisor.probing.collectives`` runs the probe under torchrun and exports these too.
"""

from __future__ import annotations

import math
import socket
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from advisor.errors import AdvisorError

OPS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all")
#: Straggler threshold: a rank (or a fleet page's GPU) this far below the fleet median is flagged (issue 8: 5%).
STRAGGLER_FRACTION = 0.05
RankKey = TypeVar("RankKey", int, str)


def bus_factor(op: str, world_size: int) -> float:
    """nccl-tests' bus-bandwidth factor of a collective on ``world_size`` ranks.

    Raises:
        AdvisorError: an unknown collective or a world size below 1.
    """
    if world_size < 1:
        raise AdvisorError(f"world size must be >= 1, got {world_size}")
    n = world_size
    factors = {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n, "reduce_scatter": (n - 1) / n,
               "broadcast": 1.0, "all_to_all": (n - 1) / n}
    if op not in factors:
        raise AdvisorError(f"unknown collective {op!r}", hint=f"accepted: {', '.join(OPS)}")
    return factors[op]


def algbw_bytes_s(size_bytes: float, time_s: float) -> float:
    """Algorithm bandwidth: the rank's buffer size over the time (bytes/s)."""
    if time_s <= 0:
        raise AdvisorError(f"time must be > 0 s, got {time_s}")
    return size_bytes / time_s


def busbw_bytes_s(op: str, size_bytes: float, time_s: float, world_size: int) -> float:
    """Bus bandwidth (bytes/s): ``algbw x bus_factor(op, n)``, comparable with a link's one-way speed."""
    return algbw_bytes_s(size_bytes, time_s) * bus_factor(op, world_size)


@dataclass(frozen=True, slots=True)
class CollectiveResult:
    """One collective at one size across the world (time = the slowest rank's median)."""

    op: str
    size_bytes: int
    time_s: float | None
    world_size: int
    rank_times_s: tuple[float, ...] = ()
    link_gbs: float | None = None
    skipped: str | None = None

    @property
    def algbw_gbs(self) -> float | None:
        """Algorithm bandwidth in GB/s (1e9 bytes)."""
        return None if not self.time_s else algbw_bytes_s(self.size_bytes, self.time_s) / 1e9

    @property
    def busbw_gbs(self) -> float | None:
        """Bus bandwidth in GB/s (1e9 bytes)."""
        return None if not self.time_s else busbw_bytes_s(self.op, self.size_bytes, self.time_s,
                                                          self.world_size) / 1e9

    @property
    def fraction_of_link(self) -> float | None:
        """Bus bandwidth over the link's one-direction spec bandwidth, when the card is known."""
        bw = self.busbw_gbs
        return None if bw is None or not self.link_gbs else bw / self.link_gbs

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"op": self.op, "size_bytes": self.size_bytes, "time_s": self.time_s,
                "algbw_gbs": self.algbw_gbs, "busbw_gbs": self.busbw_gbs,
                "bus_factor": bus_factor(self.op, self.world_size), "link_gbs": self.link_gbs,
                "fraction_of_link": self.fraction_of_link, "rank_times_s": list(self.rank_times_s),
                "skipped": self.skipped}


@dataclass(frozen=True, slots=True)
class RankInfo:
    """What one rank is and what its own device measured."""

    rank: int
    local_rank: int
    hostname: str
    device: str
    device_name: str
    catalog_id: str | None
    matmul_tflops: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"rank": self.rank, "local_rank": self.local_rank, "hostname": self.hostname, "device": self.device,
                "device_name": self.device_name, "catalog_id": self.catalog_id,
                "matmul_tflops": self.matmul_tflops}


def find_stragglers(values: Mapping[RankKey, float | None], fraction: float = STRAGGLER_FRACTION) -> list[RankKey]:
    """Keys whose value is more than ``fraction`` below the median of all measured values (higher = better).

    The one straggler rule: the collectives probe flags ranks with it, the dashboard's fleet page GPUs.
    ``None`` and NaN are not measured: never stragglers, and not in the median; fewer than two measured
    values flag nothing.
    """
    measured = {k: float(v) for k, v in values.items() if v is not None and not math.isnan(v)}
    if len(measured) < 2:
        return []
    median = statistics.median(measured.values())
    return sorted(k for k, v in measured.items() if v < (1 - fraction) * median)


@dataclass(frozen=True, slots=True)
class CollectivesReport:
    """The fleet result rank 0 prints and saves."""

    backend: str
    world_size: int
    launcher: str
    device_kind: str
    results: tuple[CollectiveResult, ...]
    fleet: tuple[RankInfo, ...]
    link: Mapping[str, Any] = field(default_factory=dict)
    p2p: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()
    timestamp: str = ""
    elapsed_s: float | None = None

    @property
    def stragglers(self) -> list[int]:
        """Ranks more than 5% below the fleet median of their own device's matmul rate."""
        return find_stragglers({r.rank: r.matmul_tflops for r in self.fleet})

    def peak_busbw_gbs(self) -> dict[str, float | None]:
        """Best bus bandwidth per collective (GB/s), ``None`` where skipped."""
        out: dict[str, float | None] = {}
        for op in OPS:
            values = [r.busbw_gbs for r in self.results if r.op == op and r.busbw_gbs is not None]
            out[op] = max(values) if values else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``probe --collectives --json`` document."""
        return {"kind": "collectives", "timestamp": self.timestamp, "backend": self.backend,
                "world_size": self.world_size, "launcher": self.launcher, "device_kind": self.device_kind,
                "link": dict(self.link), "results": [r.to_dict() for r in self.results],
                "peak_busbw_gbs": self.peak_busbw_gbs(), "fleet": [f.to_dict() for f in self.fleet],
                "stragglers": self.stragglers, "straggler_fraction": STRAGGLER_FRACTION,
                "p2p": None if self.p2p is None else dict(self.p2p), "notes": list(self.notes),
                "elapsed_s": self.elapsed_s}

    def to_probe_result(self) -> Any:
        """A ``ProbeResult`` for the history store: one device per rank, one kernel per collective and size.

        The devices carry no ``catalog_id`` on purpose: the estimator calibrates from a card's newest probe,
        and this record has no single-device kernels to calibrate from.
        """
        from advisor.probing.results import DeviceInfo, KernelResult, ProbeResult

        devices = tuple(DeviceInfo(index=f.rank, kind="gpu" if f.device.startswith("cuda") else "cpu",
                                   backend="collectives", name=f"{f.hostname}/{f.device} {f.device_name}")
                        for f in self.fleet)
        kernels = tuple(KernelResult(name=f"collective_{r.op}", shape=f"{r.size_bytes} bytes x {r.world_size} ranks",
                                     device_index=0, device=self.device_kind, value=r.busbw_gbs, unit="GB/s",
                                     work=float(r.size_bytes), work_unit="bytes", spec_peak=r.link_gbs,
                                     fraction_of_peak=r.fraction_of_link, skipped=r.skipped,
                                     notes=(f"busbw (nccl-tests); algbw {r.algbw_gbs} GB/s; {self.backend}",))
                        for r in self.results)
        return ProbeResult(timestamp=self.timestamp, host=socket.gethostname(),
                           versions={"backend": self.backend, "world_size": str(self.world_size)},
                           devices=devices, kernels=kernels, backend="collectives",
                           notes=(*self.notes, f"stragglers: {self.stragglers or 'none'}"),
                           elapsed_s=self.elapsed_s)
