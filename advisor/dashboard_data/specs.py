"""The specs explorer's tables: one row per card with derived efficiency figures, filters, side by side."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

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
    ("price_usd", "Purchase price", " USD"),
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
    memory_bandwidth_gbs, fp32/tf32/fp16/bf16/fp8_tflops, int8_tops, tdp_w, price_usd, price_note (the price's
    kind and date: "street, 2025-06"), cloud_usd_per_hour, cloud_note (its provider class and date),
    peak_precision, peak_tflops (BF16, else FP16/TF32/FP32),
    tflops_per_kusd (peak TFLOP/s per 1000 USD of purchase price; NaN without a price),
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
            "price_note": f"{spec.price_kind}, {spec.price_date}" if spec.price_kind else None,
            "cloud_usd_per_hour": spec.cloud_usd_per_hour,
            "cloud_note": (f"{spec.cloud_price_class or 'on demand'}, {spec.cloud_price_date}"
                           if spec.cloud_usd_per_hour is not None else None),
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
        max_price_usd: keep cards at or below this purchase price, in USD.
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
