"""The machine page's tables: a device's summary and verdicts, live samples, measured kernels, the roofline."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from advisor.precision import ELEMENT_BYTES
from advisor.units import GiB, format_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def live_sample_row(row: Mapping[str, Any], t_s: float) -> dict[str, Any]:
    """One point of the live charts from a ``advisor.probing.watch.device_rows`` record: None where not reported.

    Keys: t_s, device, utilization_pct, memory_used_gib, power_w, temperature_c, clock_mhz (a GPU's SM
    clock, a CPU's mean core clock).
    """
    used = row.get("memory_used_bytes")
    kind = "CPU" if row.get("kind") == "cpu" else "GPU"
    return {
        "t_s": t_s,
        "device": f"{kind} {row.get('index', '?')}: {row.get('name', '?')}",
        "utilization_pct": row.get("utilization_pct"),
        "memory_used_gib": None if used is None else used / GiB,
        "power_w": row.get("power_w"),
        "temperature_c": row.get("temperature_c"),
        "clock_mhz": row.get("sm_clock_mhz"),
    }

_LEVELS = {"ok": "ok", "info": "info", "warning": "warn", "problem": "error"}


class _Recorded(Protocol):
    """A result record (``DeviceInfo``, ``Verdict``): its JSON-safe dict."""

    def to_dict(self) -> dict[str, Any]: ...


def _as_dict(obj: Mapping[str, Any] | _Recorded) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    return obj.to_dict()


def device_summary(info: Any, verdicts: Iterable[Any] = ()) -> dict[str, Any]:
    """Display strings for one device card, plus its verdicts as {level, check, message}.

    Args:
        info: a ``DeviceInfo`` or its dict.
        verdicts: ``Verdict`` objects or dicts; those for other devices are left out.
    """
    d = _as_dict(info)
    index = d.get("index", 0)
    total, used = d.get("memory_total_bytes"), d.get("memory_used_bytes")
    if total:
        memory = f"{used / GiB:.1f} / {total / GiB:.1f} GiB" if used is not None else format_bytes(total)
    else:
        memory = "n/a"
    temp = d.get("temperature_c")
    power, limit = d.get("power_draw_w"), d.get("power_limit_w")
    if power is None:
        power_text = "n/a"
    else:
        power_text = f"{power:.0f} W" + (f" / {limit:.0f} W" if limit else "")
    clock, clock_max = d.get("sm_clock_mhz"), d.get("sm_clock_max_mhz")
    clock_text = "n/a" if clock is None else f"{clock} MHz" + (f" / {clock_max}" if clock_max else "")
    details: list[str] = []
    for key, label in (("catalog_id", "catalog"), ("architecture", "arch"), ("compute_capability", "CC"),
                       ("driver_version", "driver"), ("backend", "backend")):
        if d.get(key):
            details.append(f"{label} {d[key]}")
    if d.get("pcie_gen") and d.get("pcie_width"):
        link = f"PCIe {d['pcie_gen']} x{d['pcie_width']}"
        if d.get("pcie_gen_max"):
            link += f" (max {d.get('pcie_gen_max')} x{d.get('pcie_width_max')})"
        details.append(link)
    if d.get("utilization_gpu_pct") is not None:
        details.append(f"utilization {d['utilization_gpu_pct']}%")
    if d.get("cpu_cores"):
        details.append(f"{d['cpu_cores']} cores")
    rows = []
    for v in verdicts:
        vd = _as_dict(v)
        if vd.get("device_index") not in (None, index):
            continue
        rows.append({"level": _LEVELS.get(vd.get("severity", "info"), "info"), "check": vd.get("code", "check"),
                     "message": vd.get("message", "") + (f" ({vd['evidence']})" if vd.get("evidence") else "")})
    return {"index": index, "name": d.get("name") or "unknown device", "error": d.get("error"),
            "memory": memory, "temperature": "n/a" if temp is None else f"{temp} °C",
            "power": power_text, "clock": clock_text, "details": details, "verdicts": rows}


LIVE_METRICS: tuple[tuple[str, str], ...] = (
    ("utilization_pct", "utilization (%)"),
    ("memory_used_gib", "memory used (GiB)"),
    ("power_w", "power (W)"),
    ("temperature_c", "temperature (°C)"),
    ("clock_mhz", "clock (MHz)"),
)


def live_frame(samples: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table of live samples: t_s, device, metric (label with unit), value; unreported values dropped."""
    import pandas as pd

    rows = [{"t_s": s["t_s"], "device": s["device"], "metric": label, "value": float(s[key])}
            for s in samples for key, label in LIVE_METRICS if s.get(key) is not None]
    return pd.DataFrame(rows, columns=["t_s", "device", "metric", "value"])


def _kernel_label(k: Mapping[str, Any]) -> str:
    parts = [k.get("name", "?")]
    if k.get("precision"):
        parts.append(k["precision"])
    if k.get("shape"):
        parts.append(k["shape"])
    return " ".join(parts)


def kernel_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """Achieved vs spec per measured kernel: the best size of each (device, kernel, precision).

    Columns: device, kernel, precision, achieved, spec, unit, efficiency_pct (NaN without a spec), label.
    Skipped and failed kernels and per-launch overheads (unit "us") are left out.
    """
    import pandas as pd

    devices = {d.get("index"): d.get("name") or f"device {d.get('index')}" for d in result.get("devices", [])}
    best: dict[tuple[Any, str, str], dict[str, Any]] = {}
    for k in result.get("kernels", []):
        if k.get("value") is None or k.get("skipped") or k.get("error") or k.get("unit") not in ("TFLOP/s", "GB/s"):
            continue
        key = (k.get("device_index", 0), k.get("name", "?"), k.get("precision") or "")
        if key not in best or k["value"] > best[key]["value"]:
            best[key] = dict(k)
    rows = []
    for (index, name, precision), k in best.items():
        spec = k.get("spec_peak")
        frac = k.get("fraction_of_peak")
        if frac is None and spec:
            frac = k["value"] / spec
        rows.append({"device": f"{index}: {devices.get(index, '?')}", "kernel": name, "precision": precision,
                     "achieved": float(k["value"]), "spec": spec, "unit": k["unit"],
                     "efficiency_pct": math.nan if frac is None else 100.0 * frac,
                     "label": f"{name} {precision}".strip()})
    return pd.DataFrame(rows, columns=["device", "kernel", "precision", "achieved", "spec", "unit",
                                       "efficiency_pct", "label"])


def matmul_intensity(shape: str | None, precision: str | None) -> float | None:
    """FLOP per byte of an ``MxNxK`` matmul reading A, B and writing C once: 2MNK / (e(MK + KN + MN))."""
    if not shape or precision not in ELEMENT_BYTES:
        return None
    import re

    dims = [int(x) for x in re.findall(r"\d+", shape)]
    if len(dims) < 3:
        return None
    m, n, k = dims[-3:] if len(dims) == 3 else dims[:3]
    return 2 * m * n * k / (ELEMENT_BYTES[str(precision)] * (m * k + k * n + m * n))


def roofline_frame(result: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Roofline of the first catalogued device in a probe result, with its measured matmul points.

    Returns ``{"lines": intensity, tflops, roof; "points": kernel, precision, intensity, tflops}``;
    both empty when no device of the result is in the catalog.
    """
    import pandas as pd

    empty = {"lines": pd.DataFrame(columns=["intensity", "tflops", "roof"]),
             "points": pd.DataFrame(columns=["kernel", "precision", "intensity", "tflops"])}
    device = next((d for d in result.get("devices", []) if d.get("catalog_id") in specs), None)
    if device is None:
        return empty
    spec = specs[device["catalog_id"]]
    bandwidth_tbs = spec["memory_bandwidth_gbs"] / 1000  # TB/s x FLOP/byte = TFLOP/s
    measured_bw = [k["value"] for k in result.get("kernels", [])
                   if k.get("device_index") == device["index"] and k.get("name") == "memory_copy"
                   and k.get("value")]
    intensities = [2 ** (i / 2) for i in range(-4, 24)]
    lines = []
    for precision in ("fp32", "tf32", "fp16", "bf16", "fp8"):
        peak = spec.get(f"{precision}_tflops")
        if not peak:
            continue
        for x in intensities:
            lines.append({"intensity": x, "tflops": min(peak, bandwidth_tbs * x), "roof": f"{precision} spec"})
    if measured_bw:
        best_peak = max(spec.get(f"{p}_tflops") or 0 for p in ("fp32", "tf32", "fp16", "bf16", "fp8"))
        for x in intensities:
            lines.append({"intensity": x, "tflops": min(best_peak, max(measured_bw) / 1000 * x),
                          "roof": "measured bandwidth"})
    points = []
    for k in result.get("kernels", []):
        if k.get("device_index") != device["index"] or k.get("name") != "matmul" or not k.get("value"):
            continue
        if k.get("skipped") or k.get("error") or k.get("unit") != "TFLOP/s":
            continue
        intensity = matmul_intensity(k.get("shape"), k.get("precision"))
        if intensity is not None:
            points.append({"kernel": _kernel_label(k), "precision": k.get("precision"), "intensity": intensity,
                           "tflops": float(k["value"])})
    return {"lines": pd.DataFrame(lines, columns=["intensity", "tflops", "roof"]),
            "points": pd.DataFrame(points, columns=["kernel", "precision", "intensity", "tflops"])}
