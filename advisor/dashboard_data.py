"""Shape library results into tables for the dashboard's charts.

Pure helpers: data in, ``pandas.DataFrame`` out (pandas imported inside each function).
No Streamlit here; ``dashboard.py`` only draws what these return, so every number on
screen is computed in ``advisor/`` where the CLI and tests reach it too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from advisor.precision import ELEMENT_BYTES
from advisor.probe.collectives import STRAGGLER_FRACTION as STRAGGLER_FRACTION  # the one straggler rule
from advisor.probe.collectives import find_stragglers
from advisor.units import GiB, format_bytes
from advisor.workload.base import OPTIMIZERS as OPTIMIZERS  # re-exported for dashboard.py
from advisor.workload.base import PRECISIONS as PRECISIONS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from advisor.catalog import GpuSpec

#: Precisions shown in the specs explorer, best tensor rate first.
TENSOR_PRECISION_ORDER: tuple[tuple[str, str], ...] = (
    ("bf16", "bf16_tflops"),
    ("fp16", "fp16_tflops"),
    ("tf32", "tf32_tflops"),
    ("fp32", "fp32_tflops"),
)

#: Labels for the side-by-side comparison: (field, label, unit suffix).
COMPARE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("vendor", "Vendor", ""),
    ("segment", "Segment", ""),
    ("architecture", "Architecture", ""),
    ("release_year", "Released", ""),
    ("memory_gb", "Memory", " GB"),
    ("memory_type", "Memory type", ""),
    ("memory_bandwidth_gbs", "Memory bandwidth", " GB/s"),
    ("fp32_tflops", "FP32", " TFLOP/s"),
    ("tf32_tflops", "TF32 (tensor)", " TFLOP/s"),
    ("fp16_tflops", "FP16 (tensor)", " TFLOP/s"),
    ("bf16_tflops", "BF16 (tensor)", " TFLOP/s"),
    ("fp8_tflops", "FP8 (tensor)", " TFLOP/s"),
    ("int8_tops", "INT8 (tensor)", " TOP/s"),
    ("tdp_w", "Board power", " W"),
    ("price_usd", "Launch price", " USD"),
    ("cloud_usd_per_hour", "Cloud rental", " USD/h"),
)


def tensor_peak(spec: GpuSpec) -> tuple[str, float]:
    """The best 16-bit-or-wider dense rate a card offers for training: (precision, TFLOP/s).

    BF16 where the card has it, else FP16, TF32, then FP32 (every card has FP32).
    """
    for precision, field_name in TENSOR_PRECISION_ORDER:
        value = getattr(spec, field_name)
        if value is not None:
            return precision, float(value)
    raise AssertionError("every GpuSpec has fp32_tflops")  # pragma: no cover


def specs_frame(specs: Iterable[GpuSpec]) -> pd.DataFrame:
    """One row per card with the explorer's columns and the derived efficiency figures.

    Columns: id, name, vendor, segment, architecture, release_year, memory_gb,
    memory_bandwidth_gbs, fp32/tf32/fp16/bf16/fp8_tflops, int8_tops, tdp_w, price_usd,
    cloud_usd_per_hour, peak_precision, peak_tflops (BF16, else FP16/TF32/FP32),
    tflops_per_kusd (peak TFLOP/s per 1000 USD of launch price; NaN without a price),
    tflops_per_w (peak TFLOP/s per watt of board power), bytes_per_flop
    (memory bandwidth / peak: how memory-bound the card is).
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for spec in specs:
        precision, peak = tensor_peak(spec)
        price = spec.price_usd
        rows.append({
            "id": spec.id,
            "name": spec.name,
            "vendor": spec.vendor,
            "segment": spec.segment,
            "architecture": spec.architecture,
            "release_year": spec.release_year,
            "memory_gb": spec.memory_gb,
            "memory_bandwidth_gbs": spec.memory_bandwidth_gbs,
            "fp32_tflops": spec.fp32_tflops,
            "tf32_tflops": spec.tf32_tflops,
            "fp16_tflops": spec.fp16_tflops,
            "bf16_tflops": spec.bf16_tflops,
            "fp8_tflops": spec.fp8_tflops,
            "int8_tops": spec.int8_tops,
            "tdp_w": spec.tdp_w,
            "price_usd": price,
            "cloud_usd_per_hour": spec.cloud_usd_per_hour,
            "peak_precision": precision,
            "peak_tflops": peak,
            "tflops_per_kusd": peak / price * 1000 if price else math.nan,
            "tflops_per_w": peak / spec.tdp_w,
            "bytes_per_flop": spec.memory_bandwidth_gbs * 1e9 / (peak * 1e12),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["id", "name", "vendor", "segment", "memory_gb", "price_usd",
                                     "peak_tflops", "tflops_per_kusd", "tflops_per_w"])
    for column in ("price_usd", "cloud_usd_per_hour", "tf32_tflops", "fp16_tflops", "bf16_tflops",
                   "fp8_tflops", "int8_tops"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def filter_specs(frame: pd.DataFrame, *, vendors: Sequence[str] | None = None,
                 segments: Sequence[str] | None = None, min_memory_gb: float = 0.0,
                 max_price_usd: float | None = None, include_unpriced: bool = True) -> pd.DataFrame:
    """Rows of ``specs_frame`` matching the explorer's filters (empty selections mean "all").

    Args:
        vendors: keep these vendors.
        segments: keep these segments.
        min_memory_gb: keep cards with at least this much memory, in GB.
        max_price_usd: keep cards at or below this launch price, in USD.
        include_unpriced: with a price cap, also keep cards with no known price.
    """
    mask = frame["memory_gb"] >= min_memory_gb
    if vendors:
        mask &= frame["vendor"].isin(list(vendors))
    if segments:
        mask &= frame["segment"].isin(list(segments))
    if max_price_usd is not None:
        priced = frame["price_usd"] <= max_price_usd
        mask &= (priced | frame["price_usd"].isna()) if include_unpriced else priced
    return frame[mask].reset_index(drop=True)


def _format_value(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"
        return f"{text}{unit}"
    return f"{value}{unit}"


def compare_frame(specs: Sequence[GpuSpec]) -> pd.DataFrame:
    """Side-by-side comparison: one row per figure (with its unit), one column per card.

    Cells are display strings ("—" where the card has no such figure); the last row is each
    card's source.
    """
    import pandas as pd

    data: dict[str, list[str]] = {}
    for spec in specs:
        column = [_format_value(getattr(spec, f), unit) for f, _, unit in COMPARE_FIELDS]
        pcie = spec.interconnect.pcie_gbs
        column.append("—" if pcie is None else f"{pcie:.1f} GB/s (PCIe {spec.interconnect.pcie_gen} "
                                                f"x{spec.interconnect.pcie_lanes})")
        column.append(_format_value(spec.interconnect.nvlink_gbs, " GB/s"))
        column.append(spec.source)
        data[spec.name] = column
    index = [label for _, label, _ in COMPARE_FIELDS] + ["PCIe (one direction)", "NVLink (both directions)",
                                                         "Source"]
    return pd.DataFrame(data, index=index)


def memory_breakdown_frame(estimates: Iterable[Any], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table for a stacked memory bar: card, category, GiB, capacity_gib.

    Args:
        estimates: ``Estimate`` objects or their ``to_dict()`` forms (DESIGN.md's estimate JSON),
            each with ``gpu.name``, ``memory.breakdown_bytes`` and the card's capacity in
            ``gpu.memory_bytes`` / ``gpu.memory_gb`` when given (else looked up by ``gpu.id``).
        labels: the bar label of each estimate (default: the card's name).
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for i, est in enumerate(estimates):
        d = est if isinstance(est, Mapping) else est.to_dict()
        gpu = d.get("gpu", {})
        card = labels[i] if labels is not None else (gpu.get("name") or gpu.get("id") or "?")
        capacity = d.get("memory", {}).get("capacity_bytes") or _capacity_bytes(gpu)
        for category, nbytes in (d.get("memory", {}).get("breakdown_bytes") or {}).items():
            rows.append({"card": card, "category": category, "gib": float(nbytes or 0) / GiB,
                         "label": format_bytes(nbytes),
                         "capacity_gib": capacity / GiB if capacity else math.nan})
    return pd.DataFrame(rows, columns=["card", "category", "gib", "label", "capacity_gib"])


def _capacity_bytes(gpu: Mapping[str, Any]) -> float | None:
    if gpu.get("memory_bytes"):
        return float(gpu["memory_bytes"])
    if gpu.get("memory_gb"):
        return float(gpu["memory_gb"]) * 1e9
    if gpu.get("id"):
        from advisor.catalog import get_gpu
        from advisor.errors import AdvisorError

        try:
            return get_gpu(gpu["id"]).memory_bytes
        except AdvisorError:  # an unknown id only loses the capacity line, not the chart
            return None
    return None


def live_sample_row(row: Mapping[str, Any], t_s: float) -> dict[str, Any]:
    """One point of the live charts from a ``advisor.probe.watch.device_rows`` record: None where not reported.

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


# ---------------------------------------------------------------- workload choices

#: Precisions and optimizers come from the workload contract (the recommender's objectives from
#: ``advisor.recommend.OBJECTIVES``, read by the page itself).


def parse_config_json(data: bytes, *, name: str = "config.json", max_bytes: int = 1024 * 1024) -> dict[str, Any]:
    """Validate an uploaded HF-style config.json: size-limited UTF-8 JSON holding an object.

    Never unpickles anything: only ``json.loads`` touches the bytes.

    Raises:
        WorkloadError: too large, not UTF-8, not JSON, or not a JSON object.
    """
    import json

    from advisor.errors import WorkloadError

    if len(data) > max_bytes:
        raise WorkloadError(f"{name} is {format_bytes(len(data))}; uploads are limited to {format_bytes(max_bytes)}",
                            hint="a model's config.json is a few KiB; upload the config, not the weights")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise WorkloadError(f"{name} is not UTF-8 text", hint="upload a JSON config.json") from None
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}",
                            hint="upload a Hugging Face-style config.json") from None
    if not isinstance(parsed, dict):
        raise WorkloadError(f"{name} holds a JSON {type(parsed).__name__}, not an object",
                            hint="a config.json is one JSON object of model hyper-parameters")
    return parsed


_VISION_WORDS = ("resnet", "vit", "convnext", "efficientnet", "vgg", "mobilenet", "unet", "densenet",
                 "regnet", "swin", "inception", "alexnet", "yolo", "detr", "clip-vision")


def _is_vision(model: Any) -> bool:
    """A vision model (CNN, ViT): a config with an image size or channels, a preset of a vision family,
    else a name that says so."""
    if isinstance(model, Mapping):
        return "image_size" in model or "num_channels" in model
    from advisor.workload.presets import PRESETS

    preset = PRESETS.get(str(model))
    if preset is not None and preset.kind == "module":
        return preset.family in ("cnn", "vit")
    if preset is not None:
        return False
    return any(word in str(model).lower() for word in _VISION_WORDS)


# ---------------------------------------------------------------- my machine

_LEVELS = {"ok": "ok", "info": "info", "warning": "warn", "problem": "error"}


def _as_dict(obj: Any) -> dict[str, Any]:
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
        x = matmul_intensity(k.get("shape"), k.get("precision"))
        if x is not None:
            points.append({"kernel": _kernel_label(k), "precision": k.get("precision"), "intensity": x,
                           "tflops": float(k["value"])})
    return {"lines": pd.DataFrame(lines, columns=["intensity", "tflops", "roof"]),
            "points": pd.DataFrame(points, columns=["kernel", "precision", "intensity", "tflops"])}


# ---------------------------------------------------------------- history and fleet

def _best_per_kernel(result: Mapping[str, Any]) -> dict[tuple[int, str, str], tuple[float, str, str]]:
    """(device_index, kernel, precision) -> (best value, unit, device name) over a result's sizes."""
    names = {d.get("index"): d.get("name") or f"device {d.get('index')}" for d in result.get("devices", [])}
    best: dict[tuple[int, str, str], tuple[float, str, str]] = {}
    for k in result.get("kernels", []):
        if k.get("value") is None or k.get("skipped") or k.get("error") or k.get("unit") not in ("TFLOP/s", "GB/s"):
            continue
        key = (int(k.get("device_index", 0)), str(k.get("name")), str(k.get("precision") or ""))
        if key not in best or k["value"] > best[key][0]:
            best[key] = (float(k["value"]), k["unit"], names.get(key[0], f"device {key[0]}"))
    return best


def run_label(result: Mapping[str, Any], position: int) -> str:
    """A readable, unique label for one stored run: ``#id 2026-11-23 09:00 host (quick)``."""
    ident = result.get("id", position)
    when = str(result.get("timestamp", "?")).replace("T", " ")[:16]
    depth = "quick" if result.get("quick") else "full"
    return f"#{ident} {when} {result.get('host', '?')} ({depth})"


def history_runs_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per stored probe run: run, time, host, devices, kernels measured, best matmul, best copy."""
    import pandas as pd

    rows = []
    for i, r in enumerate(results):
        best = _best_per_kernel(r)
        matmul = [v for (_, name, _), (v, unit, _) in best.items() if name == "matmul" and unit == "TFLOP/s"]
        copy = [v for (_, name, _), (v, unit, _) in best.items() if name == "memory_copy"]
        rows.append({"run": run_label(r, i), "time": pd.to_datetime(r.get("timestamp"), utc=True, errors="coerce"),
                     "host": r.get("host"),
                     "devices": ", ".join(str(d.get("name") or "?") for d in r.get("devices", [])),
                     "kernels": len(r.get("kernels", [])),
                     "best matmul (TFLOP/s)": max(matmul) if matmul else math.nan,
                     "device copy (GB/s)": max(copy) if copy else math.nan})
    return pd.DataFrame(rows, columns=["run", "time", "host", "devices", "kernels", "best matmul (TFLOP/s)",
                                       "device copy (GB/s)"])


def history_trend_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table of each run's best value per device and kernel: time, device, series, achieved, unit."""
    import pandas as pd

    rows = []
    for r in results:
        when = pd.to_datetime(r.get("timestamp"), utc=True, errors="coerce")
        for (index, name, precision), (value, unit, device) in _best_per_kernel(r).items():
            rows.append({"time": when, "device": f"{r.get('host', '?')} / {index}: {device}",
                         "series": f"{name} {precision}".strip() + f" ({unit})", "achieved": value, "unit": unit})
    return pd.DataFrame(rows, columns=["time", "device", "series", "achieved", "unit"]).sort_values("time")


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Kernels measured in both runs: device, kernel, precision, A, B, unit, change_pct (B vs A)."""
    import pandas as pd

    best_a, best_b = _best_per_kernel(a), _best_per_kernel(b)
    rows = []
    for key in sorted(best_a.keys() & best_b.keys()):
        (va, unit, device), (vb, _, _) = best_a[key], best_b[key]
        rows.append({"device": f"{key[0]}: {device}", "kernel": key[1], "precision": key[2], "A": va, "B": vb,
                     "unit": unit, "change_pct": _no_negative_zero((vb / va - 1) * 100, 1) if va else math.nan})
    return pd.DataFrame(rows, columns=["device", "kernel", "precision", "A", "B", "unit", "change_pct"])


def _collectives_members(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Per-node views of a stored collectives run (``backend == "collectives"``).

    Its devices are the ranks, named ``"host/cuda:N card"``; per-rank kernels (not ``collective_*``, which
    describe the whole group) are mapped to the node and local GPU index.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for d in result.get("devices", []):
        name = str(d.get("name") or "")
        host, _, rest = name.partition("/")
        device, _, card = rest.partition(" ")
        local = int(device.split(":")[1]) if device.split(":")[-1].isdigit() and ":" in device else d.get("index", 0)
        rank = d.get("index", 0)
        node = nodes.setdefault(host or str(result.get("host") or "?"),
                                {"host": host, "timestamp": result.get("timestamp"), "devices": [], "kernels": []})
        node["devices"].append({"index": local, "name": card or name})
        node["kernels"] += [{**k, "device_index": local} for k in result.get("kernels", [])
                            if k.get("device_index") == rank and not str(k.get("name", "")).startswith("collective_")]
    return list(nodes.items())


def collectives_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The newest stored collectives run: op, size_bytes, busbw_gbs, link_gbs, fraction_pct, timestamp, ranks.

    Bus bandwidth follows nccl-tests' definitions (the probe computes it); skipped sizes are left out.
    """
    import pandas as pd

    columns = ["op", "size_bytes", "size", "busbw_gbs", "link_gbs", "fraction_pct", "timestamp", "ranks"]
    runs = [r for r in results if r.get("backend") == "collectives"]
    if not runs:
        return pd.DataFrame(columns=columns)
    newest = max(runs, key=lambda r: str(r.get("timestamp", "")))
    rows = []
    for k in newest.get("kernels", []):
        if not str(k.get("name", "")).startswith("collective_") or k.get("value") is None or k.get("skipped"):
            continue
        size = k.get("work")
        frac = k.get("fraction_of_peak")
        rows.append({"op": k["name"].removeprefix("collective_"), "size_bytes": size,
                     "size": format_bytes(size), "busbw_gbs": float(k["value"]), "link_gbs": k.get("spec_peak"),
                     "fraction_pct": math.nan if frac is None else 100 * frac,
                     "timestamp": newest.get("timestamp"), "ranks": len(newest.get("devices", []))})
    return pd.DataFrame(rows, columns=columns)


def _fleet_members(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(node, per-node result) pairs of one stored document: a fleet result's nodes, else the run itself."""
    if result.get("backend") == "collectives":
        return _collectives_members(result)
    for key in ("nodes", "ranks", "members"):
        members = result.get(key)
        if isinstance(members, list) and members and isinstance(members[0], Mapping):
            return [(str(m.get("node") or m.get("host") or f"node {i}"), m) for i, m in enumerate(members)]
    return [(str(result.get("host") or "?"), result)]


def fleet_frame(results: Sequence[Mapping[str, Any]], fraction: float = STRAGGLER_FRACTION) -> pd.DataFrame:
    """Per-node, per-GPU cells for the fleet heatmap, with stragglers flagged per measurement.

    Uses the newest stored result of each node (a fleet document counts for all its nodes).
    A GPU is a straggler for a measurement when it is more than ``fraction`` below the median
    of all GPUs of the same card model for that measurement.

    Columns: node, gpu, name, metric, value, unit, vs_median_pct, straggler.
    """
    import pandas as pd

    latest: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for r in results:
        when = str(r.get("timestamp", ""))
        for node, member in _fleet_members(r):
            if not _best_per_kernel(member):
                continue  # e.g. a collectives run without per-rank measurements: nothing per GPU to show
            if node not in latest or when > latest[node][0]:
                latest[node] = (when, member)
    rows = []
    for node, (_, member) in sorted(latest.items()):
        for (index, name, precision), (value, unit, device) in _best_per_kernel(member).items():
            if name not in ("matmul", "conv2d", "memory_copy", "memory_read", "memory_write", "h2d_pinned",
                            "d2h_pinned") and unit != "GB/s":
                continue
            rows.append({"node": node, "gpu": index, "name": device,
                         "metric": f"{name} {precision}".strip() + f" ({unit})", "value": value, "unit": unit})
    frame = pd.DataFrame(rows, columns=["node", "gpu", "name", "metric", "value", "unit"])
    frame["vs_median_pct"] = math.nan
    frame["straggler"] = False
    for (_, _), group in frame.groupby(["metric", "name"]):
        slow = set(find_stragglers({str(i): v for i, v in group["value"].items()}, fraction))
        median = statistics.median(group["value"])
        for i in group.index:
            frame.loc[i, "straggler"] = str(i) in slow
            frame.loc[i, "vs_median_pct"] = (frame.loc[i, "value"] / median - 1) * 100 if median else math.nan
    frame["straggler"] = frame["straggler"].astype(bool)
    return frame


# ---------------------------------------------------------------- recommender

def _num(value: Any, scale: float = 1.0) -> float:
    return math.nan if value is None else float(value) / scale


def _first(row: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` that the row has (the recommender's cost columns are being renamed)."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


#: Cost columns of a recommend row, newest name first: the job's cloud rental, the cards' purchase price.
CLOUD_COST_KEYS = ("cost_cloud_usd", "cloud_cost_usd")
BUY_COST_KEYS = ("cost_buy_usd", "purchase_cost_usd")
BREAK_EVEN_KEYS = ("break_even_hours", "break_even_h")


def card_label(gpu_name: str, num_gpus: int) -> str:
    """``H100 SXM5 80GB`` for one card, ``4x H100 SXM5 80GB`` for several."""
    return gpu_name if num_gpus == 1 else f"{num_gpus}x {gpu_name}"


def recommendation_view(rec: Any) -> dict[str, Any]:
    """Everything the recommender page draws, as plain records (cacheable, JSON-safe).

    Args:
        rec: a ``Recommendation`` (``rows`` of candidates, ``rejected``, ``to_dict()``); each row's and
            each memory rejection's ``memory_breakdown_bytes`` feed the stacked memory bars.

    Returns ``{"ranked", "rejected", "time_cost", "memory", "raw", "assumptions", "partial", "job",
    "workload"}``: ranked rows with units in the column names (cloud rental and purchase in separate
    columns, never mixed), rejected cards with their reasons, the time vs cost points (``cloud_usd`` and
    ``buy_usd`` apart), the memory bars' long table, and ``rec.to_dict()``.
    """
    raw = rec.to_dict()
    ranked = []
    points = []
    for r in raw.get("rows", []):
        label = card_label(r["gpu_name"], r["num_gpus"])
        cloud, buy = _first(r, *CLOUD_COST_KEYS), _first(r, *BUY_COST_KEYS)
        ranked.append({
            "rank": r["rank"], "card": label, "segment": r.get("segment"),
            "parallelism": r.get("parallelism") or "single GPU", "batch per GPU": r.get("per_gpu_batch"),
            "memory per GPU (GiB)": _num(r.get("memory_per_gpu_bytes"), GiB),
            "headroom (GiB)": _num(r.get("headroom_bytes"), GiB),
            "step (s)": _num(r.get("step_s")), "samples/s": _num(r.get("samples_per_s")),
            "tokens/s": _num(r.get("tokens_per_s")),
            "time to train (h)": _num(r.get("time_to_train_s"), 3600),
            "cloud cost of the job (USD)": _num(cloud), "purchase cost of the cards (USD)": _num(buy),
            "break-even (h)": _num(_first(r, *BREAK_EVEN_KEYS)),
            "energy (kWh)": _num(r.get("energy_kwh")), "bound": r.get("bound"), "limited by": r.get("limiter"),
            "calibrated": bool(r.get("calibrated")),
        })
        points.append({"rank": r["rank"], "card": label, "segment": r.get("segment"),
                       "hours": r["time_to_train_s"] / 3600, "cloud_usd": _num(cloud), "buy_usd": _num(buy)})
    rejected = [{"card": x["gpu_name"], "GPUs": x["num_gpus"], "why": x["code"].replace("_", " "),
                 "reason": x["reason"]} for x in raw.get("rejected", [])]
    return {"ranked": ranked, "rejected": rejected, "time_cost": points,
            "memory": memory_breakdown_records(rec), "raw": raw,
            "assumptions": list(raw.get("assumptions", [])), "partial": raw.get("partial"),
            "job": raw.get("job", {}), "workload": workload_summary(raw.get("workload", {}))}


def memory_breakdown_records(rec: Any, limit: int = 8) -> list[dict[str, Any]]:
    """Long table for the stacked memory bars: the best-ranked row of each card, then cards rejected for
    memory at one GPU, ``limit`` cards in all (from each row's ``memory_breakdown_bytes``).

    Records: card, category, gib, label, capacity_gib (usable memory per GPU when known, else the card's).
    """
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []

    def add(label: str, parts: Mapping[str, float] | None, capacity: float | None) -> None:
        for category, nbytes in (parts or {}).items():
            rows.append({"card": label, "category": category, "gib": float(nbytes or 0) / GiB,
                         "label": format_bytes(nbytes), "capacity_gib": capacity / GiB if capacity else math.nan})

    for r in rec.rows:
        if r.gpu_id in seen or len(seen) >= limit:
            continue
        seen.add(r.gpu_id)
        capacity = r.usable_per_gpu_bytes or _capacity_bytes({"id": r.gpu_id})
        add(card_label(r.gpu_name, r.num_gpus), getattr(r, "memory_breakdown_bytes", None), capacity)
    for x in rec.rejected:
        if x.gpu_id in seen or x.code != "does_not_fit" or x.num_gpus != 1 or len(seen) >= limit:
            continue
        seen.add(x.gpu_id)
        add(f"{x.gpu_name} (does not fit)", getattr(x, "memory_breakdown_bytes", None), x.available_bytes)
    return rows


def workload_summary(workload: Mapping[str, Any]) -> str:
    """``train, global batch 64, image 224, amp-bf16``: the parts that are set, comma-separated."""
    parts = [workload.get("mode")]
    if workload.get("batch_size") is not None:
        parts.append(f"global batch {workload['batch_size']}")
    if workload.get("seq_len"):
        parts.append(f"seq {workload['seq_len']}")
    elif workload.get("image_size"):
        parts.append(f"image {workload['image_size']}")
    parts += [workload.get("precision"), workload.get("optimizer")]
    return ", ".join(str(p) for p in parts if p)


def fit_view(rec: Any, card: str) -> dict[str, Any]:
    """Does the workload fit on one card: a ``recommend(..., gpus=[card], max_gpus=1)`` answer in words.

    Returns ``{"fits": bool | None, "card", "needed_bytes", "usable_bytes", "headroom_bytes", "message",
    "memory"}`` (``fits`` None when the card cannot run the workload at all, e.g. no such precision).
    """
    row = next((r for r in rec.rows if r.num_gpus == 1), None)
    if row is not None:
        needed, usable = row.memory_per_gpu_bytes, row.usable_per_gpu_bytes
        return {"fits": True, "card": row.gpu_name, "needed_bytes": needed, "usable_bytes": usable,
                "headroom_bytes": row.headroom_bytes,
                "message": f"Fits on one {row.gpu_name}: needs {format_bytes(needed)} of "
                           f"{format_bytes(usable) if usable else 'its memory'}"
                           + (f", {format_bytes(row.headroom_bytes)} to spare" if row.headroom_bytes else "")
                           + f"; a step takes {row.step_s:.3g} s.",
                "memory": memory_breakdown_records(rec, limit=1)}
    miss = next((x for x in rec.rejected if x.num_gpus == 1), None)
    if miss is None:
        return {"fits": None, "card": card, "needed_bytes": None, "usable_bytes": None, "headroom_bytes": None,
                "message": f"No answer for {card}.", "memory": []}
    fits = False if miss.code == "does_not_fit" else None
    return {"fits": fits, "card": miss.gpu_name, "needed_bytes": miss.needed_bytes,
            "usable_bytes": miss.available_bytes, "headroom_bytes": None,
            "message": f"{miss.gpu_name}: {miss.reason}." + (f" {rec.partial}." if rec.partial and fits is False
                                                             else ""),
            "memory": memory_breakdown_records(rec, limit=1)}


def _no_negative_zero(value: float, digits: int) -> float:
    """Round for display; ``-0.0`` becomes ``0.0`` (so nothing prints as "-0.0%")."""
    return round(float(value), digits) + 0.0


def display_frame(frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> Any:
    """A table ready for ``st.dataframe``: missing values as "–" (not "None"/"NaN"), numbers formatted
    with ``formats`` (``{column: "{:,.1f}"}``) and never shown as "-0.0".

    Complete numeric columns stay numbers (formatted through a ``Styler``, so sorting uses the values);
    a column with gaps becomes its display strings, because Streamlit draws a missing number as "None"
    whatever the Styler says.
    """
    formats = dict(formats or {})

    def formatter(spec: str) -> Any:
        def fmt(value: Any) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "–"
            text = spec.format(value)
            if "-" in text and not any(c in "123456789" for c in text):
                return spec.format(0.0)  # a negative number that rounds to zero is zero, not "-0.0"
            return text
        return fmt

    out = frame.copy()
    funcs = {}
    for col in out.columns:
        fmt = formatter(formats.get(col, "{}"))
        if out[col].isna().any():
            out[col] = [fmt(v) for v in out[col]]
        elif col in formats:
            funcs[col] = fmt
    return out.style.format(funcs or None, na_rep="–")


def recommend_options(*, model: Any, batch_size: int, seq_len: int | None, image_size: int | None, precision: str,
                      optimizer: str, mode: str, gradient_checkpointing: bool, lora_rank: int | None,
                      max_gpus: int, objective: str, budget_usd: float | None,
                      runtime: str = "eager", gpus: Sequence[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``recommend(...)`` from the recommender's form.

    The form shows only the inputs that mean something for the model (``model_inputs``); this
    applies the same rule, so a hidden input never reaches ``recommend``: image size for vision
    models, sequence length, LoRA and checkpointing for language models; the optimizer only when
    training.  ``gpus``: keep only these cards (empty = all).  ``runtime``: ``eager`` (PyTorch eager,
    host dispatch can bound small steps) or ``graph`` (CUDA graphs, vLLM, ...).
    """
    shown = model_inputs(model)
    options: dict[str, Any] = {"batch_size": batch_size, "precision": precision, "mode": mode,
                               "max_gpus": max_gpus, "objective": objective, "runtime": runtime}
    if "image_size" in shown:
        options["image_size"] = image_size
    if "seq_len" in shown:
        options["seq_len"] = seq_len
    if mode == "train":
        options["optimizer"] = optimizer
        if "gradient_checkpointing" in shown:
            options["gradient_checkpointing"] = gradient_checkpointing
        if lora_rank and "lora_rank" in shown:
            options["lora_rank"] = lora_rank
    if budget_usd:
        options["budget_usd"] = budget_usd
    if gpus:
        options["gpus"] = list(gpus)
    return options


def default_image_size(model: Any, fallback: int = 224) -> int:
    """The image size a vision model was built for: its config's ``image_size`` (a preset's or an
    uploaded config's), else ``fallback`` pixels."""
    config: Any = model if isinstance(model, Mapping) else None
    if config is None:
        from advisor.workload import presets as _presets

        preset = getattr(_presets, "PRESETS", {}).get(model)
        config = getattr(preset, "config", None)
    size = config.get("image_size") if isinstance(config, Mapping) else None
    return int(size) if isinstance(size, int) and size > 0 else fallback


def model_inputs(model: Any) -> frozenset[str]:
    """Which of the recommender's model-specific inputs apply: ``image_size`` for vision models (CNN,
    ViT); ``seq_len``, ``lora_rank`` and ``gradient_checkpointing`` for language models."""
    if _is_vision(model):
        return frozenset({"image_size"})
    return frozenset({"seq_len", "lora_rank", "gradient_checkpointing"})
