"""One card of the catalog: ``GpuSpec`` (every figure in the units its name carries), its links, and the names.

Numbers are dense (no 2:4 structured sparsity).  Tensor-core figures are with FP32 accumulate where a card has two
rates (GeForce cards run FP16-accumulate at twice the FP32-accumulate rate; training accumulates in FP32).  The
records only: ``advisor.spec_schema`` checks a spec file's fields, ``advisor.catalog`` loads and looks cards up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from advisor.errors import EstimateError
from advisor.records import json_fields

Segment = Literal["geforce", "workstation", "datacenter", "radeon", "instinct", "edge"]
SEGMENTS: tuple[str, ...] = ("geforce", "workstation", "datacenter", "radeon", "instinct", "edge")
VENDORS: tuple[str, ...] = ("nvidia", "amd")
#: What a purchase price is: the vendor's list price (MSRP/SEP) at launch, what new cards sell for (street),
#: the second-hand market (used), or ``not sold`` (no per-card sale to end users; no ``price_usd``).
PRICE_KINDS: tuple[str, ...] = ("list", "street", "used", "not sold")
#: Who a cloud price is from (docs/prices.md, "One cloud price basis"): a GPU cloud (Lambda, RunPod Secure Cloud,
#: ...), a marketplace of third-party hosts (RunPod Community Cloud, ...) or a hyperscaler (AWS, Google Cloud, Azure).
CLOUD_PRICE_CLASSES: tuple[str, ...] = ("gpu cloud", "marketplace", "hyperscaler")

#: Throughput fields, in the units their names carry (TFLOP/s, or TOP/s for integers).
THROUGHPUT_FIELDS: tuple[str, ...] = (
    "fp32_tflops",
    "tf32_tflops",
    "fp16_tflops",
    "bf16_tflops",
    "fp8_tflops",
    "int8_tops",
    "int4_tops",
    "fp64_tflops",
    "fp16_vector_tflops",
)

#: Precision names users pass -> the spec field holding that precision's peak.
PRECISION_FIELDS: dict[str, str] = {
    "fp32": "fp32_tflops",
    "tf32": "tf32_tflops",
    "fp16": "fp16_tflops",
    "bf16": "bf16_tflops",
    "amp-fp16": "fp16_tflops",
    "amp-bf16": "bf16_tflops",
    "fp8": "fp8_tflops",
    "int8": "int8_tops",
    "int4": "int4_tops",
}


@dataclass(frozen=True, slots=True)
class Interconnect:
    """How a card talks to the host and to its peers (bandwidths in GB/s, both directions summed)."""

    pcie_gen: int | None = None
    pcie_lanes: int | None = None
    nvlink_gbs: float | None = None
    infinity_fabric_gbs: float | None = None
    c2c_gbs: float | None = None
    fabric: str | None = None

    @property
    def pcie_gbs(self) -> float | None:
        """Theoretical one-direction PCIe bandwidth in GB/s (after line encoding)."""
        return pcie_bandwidth_gbs(self.pcie_gen, self.pcie_lanes)

    @property
    def peer_gbs(self) -> float | None:
        """Best one-direction GPU-to-GPU bandwidth in GB/s: NVLink / Infinity Fabric, else PCIe."""
        fabric = self.nvlink_gbs or self.infinity_fabric_gbs
        if fabric:
            return fabric / 2
        return self.pcie_gbs

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, ``None`` where the card has no such link."""
        return dataclasses.asdict(self)


#: Per-lane raw rate (GT/s) and line-code efficiency for each PCIe generation.
PCIE_LANE_RATES: dict[int, tuple[float, float]] = {1: (2.5, 8 / 10), 2: (5.0, 8 / 10), 3: (8.0, 128 / 130),
                                                   4: (16.0, 128 / 130), 5: (32.0, 128 / 130), 6: (64.0, 242 / 256)}


def pcie_bandwidth_gbs(gen: int | None, lanes: int | None) -> float | None:
    """Theoretical one-direction PCIe bandwidth in GB/s: GT/s x encoding x lanes / 8.

    ``pcie_bandwidth_gbs(4, 16)`` is 31.5 GB/s; ``(5, 16)`` is 63.0 GB/s.
    """
    if not gen or not lanes or gen not in PCIE_LANE_RATES:
        return None
    rate, efficiency = PCIE_LANE_RATES[gen]
    return rate * efficiency * lanes / 8


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One card of the catalog. Field names carry their units; absent throughput = unsupported."""

    id: str
    name: str
    vendor: str
    segment: str
    architecture: str
    release_year: int
    memory_gb: float
    memory_type: str
    memory_bandwidth_gbs: float
    fp32_tflops: float
    tdp_w: float
    source: str
    tf32_tflops: float | None = None
    fp16_tflops: float | None = None
    bf16_tflops: float | None = None
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    int4_tops: float | None = None
    fp64_tflops: float | None = None
    fp16_vector_tflops: float | None = None
    aliases: tuple[str, ...] = ()
    tensor_cores: int | None = None
    sm_count: int | None = None
    boost_clock_mhz: float | None = None
    #: Datasheet base clock: the clock NVIDIA guarantees at TDP (the floor of the sustained-clock model).
    base_clock_mhz: float | None = None
    #: Devices software sees per package (2 for an MI250/MI250X: one per GCD).  Every figure in the file is
    #: for the whole package; ``per_device`` gives what one device (what PyTorch calls a GPU) has.
    devices_per_package: int = 1
    l2_cache_mb: float | None = None
    interconnect: Interconnect = field(default_factory=Interconnect)
    price_usd: float | None = None
    #: One of ``PRICE_KINDS``; ``price_date`` (YYYY-MM or YYYY) is when the price was seen / the card checked.
    price_kind: str | None = None
    price_date: str | None = None
    cloud_usd_per_hour: float | None = None
    cloud_price_date: str | None = None
    #: One of ``CLOUD_PRICE_CLASSES``: whose on-demand rate ``cloud_usd_per_hour`` is.
    cloud_price_class: str | None = None
    #: ``False``: no public on-demand offer was found on ``cloud_price_date``; ``None``: not checked.
    cloud_rentable: bool | None = None
    tensor_accumulate: str | None = None
    notes: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    @property
    def memory_bytes(self) -> float:
        """Memory capacity in bytes (vendors' GB are 10^9 bytes, except where noted)."""
        return self.memory_gb * 1e9

    @property
    def memory_bandwidth_bytes_s(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.memory_bandwidth_gbs * 1e9

    def per_device(self) -> GpuSpec:
        """The spec of one device of the package.

        Memory, bandwidth, throughputs, SMs, L2 and TDP divided by ``devices_per_package`` (itself when it is 1).
        Clocks, links and prices stay as they are.
        """
        n = self.devices_per_package
        if n == 1:
            return self
        split = {k: getattr(self, k) / n for k in ("memory_gb", "memory_bandwidth_gbs", "tdp_w", *THROUGHPUT_FIELDS)
                 if getattr(self, k) is not None}
        for k in ("tensor_cores", "sm_count"):
            if getattr(self, k) is not None:
                split[k] = getattr(self, k) // n
        if self.l2_cache_mb is not None:
            split["l2_cache_mb"] = self.l2_cache_mb / n
        return dataclasses.replace(self, **split, devices_per_package=1)

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak in FLOP/s (or OP/s) for a precision name, ``None`` if unsupported.

        Args:
            precision: one of ``PRECISION_FIELDS`` (``fp32``, ``tf32``, ``amp-bf16``, ...).
        """
        key = PRECISION_FIELDS.get(precision)
        if key is None:
            raise EstimateError(f"unknown precision {precision!r}", hint=f"accepted: {', '.join(PRECISION_FIELDS)}")
        value = getattr(self, key)
        return None if value is None else value * 1e12

    def supports(self, precision: str) -> bool:
        """Whether the card has a peak figure for this precision."""
        return self.peak_flops(precision) is not None

    @property
    def supported_precisions(self) -> tuple[str, ...]:
        """The precision names this card supports, in the catalog's order."""
        return tuple(p for p in PRECISION_FIELDS if getattr(self, PRECISION_FIELDS[p]) is not None)

    def source_for(self, field_name: str) -> str:
        """The source of one figure: its own entry in ``sources`` if any, else the record's."""
        return self.sources.get(field_name, self.source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with the keys of DESIGN.md's spec fields."""
        return json_fields(self, skip=("path",), convert={"interconnect": Interconnect.to_dict})
