"""What a probe finds: device inventory, kernel measurements, verdicts.

Frozen dataclasses with ``to_dict()`` (JSON-safe) and ``from_dict()`` (the history store
and ``--out`` files round-trip through them).  Pure Python: no torch, no pynvml.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from advisor.errors import AdvisorError
from advisor.probing.measurement import Measurement, Sample, quantile
from advisor.records import json_fields

__all__ = ["PROBE_DOCUMENT_HINT", "SCHEMA_VERSION", "DeviceInfo", "KernelResult", "Measurement", "NvLinkInfo",
           "ProbeDocumentError", "ProbeResult", "ProcessInfo", "Sample", "Severity", "Verdict"]

SCHEMA_VERSION = 1
PROBE_DOCUMENT_HINT = "expected the JSON document of `probe --json` (timestamp, host, devices, kernels)"


class ProbeDocumentError(AdvisorError, ValueError):
    """A document that is not a probe result: ``error: not a probe result: <detail>`` with a hint.

    Also a ValueError whose ``str()`` is the detail alone, so that a caller that wraps malformed input in its
    own message (``calibration file 'x' is not a probe result: <detail>``) does not repeat the words.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(f"not a probe result: {detail}", hint=PROBE_DOCUMENT_HINT)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail

Severity = Literal["ok", "info", "warning", "problem"]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A process holding memory on a GPU."""

    pid: int
    name: str | None = None
    used_memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class NvLinkInfo:
    """One NVLink link of a GPU and whether it is up."""

    index: int
    active: bool


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Inventory and health of one device. Every field may be ``None``; ``missing`` says why.

    ``error`` is set (and most fields are ``None``) when the whole device failed, e.g. "GPU is lost".
    """

    index: int
    kind: str = "gpu"  # "gpu" or "cpu"
    backend: str | None = None  # "nvml", "amdsmi", "torch", "cpu"
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    catalog_id: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    compute_capability: str | None = None  # "9.0"
    architecture: str | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    mem_clock_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    default_power_limit_w: float | None = None
    temperature_c: int | None = None
    fan_pct: int | None = None
    pcie_gen: int | None = None
    pcie_gen_max: int | None = None
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    ecc_enabled: bool | None = None
    ecc_uncorrected_errors: int | None = None
    retired_pages: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    mig_enabled: bool | None = None
    throttle_reasons: tuple[str, ...] | None = None
    utilization_gpu_pct: int | None = None
    utilization_mem_pct: int | None = None
    processes: tuple[ProcessInfo, ...] | None = None
    nvlinks: tuple[NvLinkInfo, ...] | None = None
    cpu_cores: int | None = None
    missing: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        def records(values: tuple[Any, ...]) -> list[dict[str, Any]]:
            return [dataclasses.asdict(v) for v in values]

        return json_fields(self, convert={"processes": records, "nvlinks": records})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceInfo:
        """Inverse of ``to_dict`` (unknown keys are ignored, so newer documents still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if kw.get("processes") is not None:
            kw["processes"] = tuple(ProcessInfo(**p) for p in kw["processes"])
        if kw.get("nvlinks") is not None:
            kw["nvlinks"] = tuple(NvLinkInfo(**n) for n in kw["nvlinks"])
        if kw.get("throttle_reasons") is not None:
            kw["throttle_reasons"] = tuple(kw["throttle_reasons"])
        kw["missing"] = dict(kw.get("missing") or {})
        return cls(**kw)


#: Kernels whose value is host microseconds (lower is better: the smallest is kept) -> their efficiency keys.
_MICROSECOND_KEYS = {"launch": "launch_overhead_s", "host_dispatch": "host_dispatch_s_per_op",
                     "host_backward": "host_backward_s_per_op"}


@dataclass(frozen=True, slots=True)
class KernelResult:
    """One measured (or skipped) kernel on one device.

    ``value`` is in ``unit`` ("TFLOP/s", "GB/s" with GB = 1e9 bytes, or "us" per launch);
    ``work`` is what one iteration does, in ``work_unit`` ("FLOP" or "bytes"), so that
    value = work / median time.  ``fraction_of_peak`` is ``value / spec_peak`` when the
    device's spec is known, else ``None``.
    """

    name: str
    precision: str | None = None
    shape: str | None = None
    device_index: int = 0
    device: str = "cpu"
    value: float | None = None
    unit: str | None = None
    work: float | None = None
    work_unit: str | None = None
    spec_peak: float | None = None
    fraction_of_peak: float | None = None
    measurement: Measurement | None = None
    samples: tuple[Sample, ...] = ()
    skipped: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Measured, not skipped or failed."""
        return self.value is not None and self.skipped is None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"name": self.name, "precision": self.precision, "shape": self.shape,
                "device_index": self.device_index, "device": self.device, "value": self.value,
                "unit": self.unit, "work": self.work, "work_unit": self.work_unit, "spec_peak": self.spec_peak,
                "fraction_of_peak": self.fraction_of_peak,
                "measurement": None if self.measurement is None else self.measurement.to_dict(),
                "samples": [s.to_dict() for s in self.samples], "skipped": self.skipped, "error": self.error,
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelResult:
        """Inverse of ``to_dict``."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if kw.get("measurement") is not None:
            kw["measurement"] = Measurement.from_dict(kw["measurement"])
        kw["samples"] = tuple(Sample.from_dict(s) for s in kw.get("samples") or ())
        kw["notes"] = tuple(kw.get("notes") or ())
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A plain-words finding with the evidence behind it."""

    severity: Severity
    code: str
    message: str
    evidence: str
    device_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Inverse of ``to_dict``."""
        return cls(**{k: data[k] for k in ("severity", "code", "message", "evidence", "device_index") if k in data})


# efficiencies() key -> (kernel name, precision or None)
_MATMUL_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
_BANDWIDTH_KEYS = {"memory_bandwidth": "memory_copy", "memory_read": "memory_read", "memory_write": "memory_write",
                   "h2d_pinned": "h2d_pinned", "d2h_pinned": "d2h_pinned", "h2d_pageable": "h2d_pageable",
                   "d2h_pageable": "d2h_pageable"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Everything one probe run found. ``to_dict()`` is the ``probe --json`` document."""

    timestamp: str
    host: str
    versions: Mapping[str, str | None]
    devices: tuple[DeviceInfo, ...]
    kernels: tuple[KernelResult, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    notes: tuple[str, ...] = ()
    backend: str | None = None
    quick: bool = False
    elapsed_s: float | None = None
    schema_version: int = SCHEMA_VERSION

    def kernels_for(self, device_index: int) -> tuple[KernelResult, ...]:
        """The kernel results of one device."""
        return tuple(k for k in self.kernels if k.device_index == device_index)

    def efficiencies(self, device_index: int = 0) -> dict[str, float]:
        """Measured fractions of spec peak, best size per kernel, for the estimator to calibrate.

        Keys (present only when measured against a known spec): ``matmul_<precision>``,
        ``conv_<precision>``, ``memory_bandwidth`` (device copy), ``memory_read``, ``memory_write``,
        ``h2d_pinned``, ``d2h_pinned``, ``h2d_pageable``, ``d2h_pageable``; plus ``launch_overhead_s``
        (seconds per tiny kernel launch, present whenever measured, even on the CPU),
        ``host_dispatch_s_per_op`` / ``host_backward_s_per_op`` (host seconds per aten op of a training forward /
        backward of validate's gpt2-tiny on tiny tensors: the host's own cost), and
        ``sustained_clock_fraction_<precision>`` / ``sustained_clock_fraction``: the median SM clock sampled
        (NVML) during the largest matmul of each precision / of all precisions, over the device's maximum SM
        clock (present when clocks were sampled and the maximum is known).
        """
        best: dict[str, float] = {}

        def keep(key: str, value: float | None) -> None:
            if value is not None and math.isfinite(value) and value > best.get(key, -math.inf):
                best[key] = value

        by_name = {v: k for k, v in _BANDWIDTH_KEYS.items()}
        for k in self.kernels_for(device_index):
            if not k.ok:
                continue
            if k.name == "matmul" and k.precision:
                keep(f"matmul_{k.precision}", k.fraction_of_peak)
            elif k.name == "conv2d" and k.precision:
                keep(f"conv_{k.precision}", k.fraction_of_peak)
            elif k.name in by_name:
                keep(by_name[k.name], k.fraction_of_peak)
            elif k.name in _MICROSECOND_KEYS and k.value is not None:
                key, seconds = _MICROSECOND_KEYS[k.name], k.value * 1e-6
                if key not in best or seconds < best[key]:
                    best[key] = seconds
        best.update(self._clock_fractions(device_index))
        return best

    def _clock_fractions(self, device_index: int) -> dict[str, float]:
        """``sustained_clock_fraction[_<p>]``: SM clock under the longest GEMM of each precision / max SM clock."""
        dev = next((d for d in self.devices if d.index == device_index), None)
        top = None if dev is None else dev.sm_clock_max_mhz
        if not top:
            return {}
        largest: dict[str, KernelResult] = {}
        for k in self.kernels_for(device_index):
            if k.ok and k.name == "matmul" and k.precision and k.work is not None:
                held = largest.get(k.precision)
                if held is None or (held.work or 0.0) < k.work:
                    largest[k.precision] = k
        out: dict[str, float] = {}
        every: list[float] = []
        for precision, k in largest.items():
            clocks = sorted(float(s.sm_clock_mhz) for s in k.samples if s.sm_clock_mhz)
            if clocks:
                out[f"sustained_clock_fraction_{precision}"] = quantile(clocks, 0.5) / top
                every.extend(clocks)
        if every:
            out["sustained_clock_fraction"] = quantile(sorted(every), 0.5) / top
        return out

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON document."""
        return {"schema_version": self.schema_version, "timestamp": self.timestamp, "host": self.host,
                "backend": self.backend, "quick": self.quick, "elapsed_s": self.elapsed_s,
                "versions": dict(self.versions), "notes": list(self.notes),
                "devices": [d.to_dict() for d in self.devices],
                "kernels": [k.to_dict() for k in self.kernels],
                "verdicts": [v.to_dict() for v in self.verdicts],
                "efficiencies": {str(d.index): self.efficiencies(d.index) for d in self.devices}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        """Inverse of ``to_dict`` (derived keys such as ``efficiencies`` are recomputed).

        Raises:
            ProbeDocumentError: ``data`` is not a probe result (a required key missing, a part of the wrong shape).
        """
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # what a wrong shape raises in the above
            detail = f"no {exc.args[0]!r} key" if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ProbeDocumentError(detail) from exc

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        return cls(timestamp=data["timestamp"], host=data["host"], versions=dict(data.get("versions") or {}),
                   devices=tuple(DeviceInfo.from_dict(d) for d in data.get("devices") or ()),
                   kernels=tuple(KernelResult.from_dict(k) for k in data.get("kernels") or ()),
                   verdicts=tuple(Verdict.from_dict(v) for v in data.get("verdicts") or ()),
                   notes=tuple(data.get("notes") or ()), backend=data.get("backend"),
                   quick=bool(data.get("quick", False)), elapsed_s=data.get("elapsed_s"),
                   schema_version=int(data.get("schema_version", SCHEMA_VERSION)))

    def to_frame(self) -> Any:
        """Kernel results as a pandas DataFrame (one row per kernel)."""
        import pandas as pd

        rows = []
        for k in self.kernels:
            m = k.measurement
            rows.append({"device_index": k.device_index, "kernel": k.name, "precision": k.precision,
                         "shape": k.shape, "value": k.value, "unit": k.unit, "spec_peak": k.spec_peak,
                         "fraction_of_peak": k.fraction_of_peak,
                         "median_s": None if m is None else m.median_s, "iqr_s": None if m is None else m.iqr_s,
                         "trustworthy": None if m is None else m.trustworthy, "skipped": k.skipped,
                         "error": k.error})
        return pd.DataFrame(rows)
