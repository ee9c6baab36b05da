"""Specs explorer: filters, sortable table, side-by-side comparison, scatter charts."""

from __future__ import annotations

import streamlit as st

from advisor import dashboard_data as dd
from advisor.dashboard import common

COLUMNS = ["name", "vendor", "segment", "architecture", "release_year", "memory_gb", "memory_bandwidth_gbs",
           "fp32_tflops", "bf16_tflops", "fp16_tflops", "fp8_tflops", "tdp_w", "price_usd", "price_note",
           "cloud_usd_per_hour", "cloud_note", "tflops_per_kusd", "tflops_per_w"]
FORMATS = {"release_year": "{:.0f}", "memory_gb": "{:,.0f}", "memory_bandwidth_gbs": "{:,.0f}",
           "fp32_tflops": "{:,.1f}", "bf16_tflops": "{:,.1f}", "fp16_tflops": "{:,.1f}", "fp8_tflops": "{:,.1f}",
           "tdp_w": "{:,.0f}", "price_usd": "${:,.0f}", "cloud_usd_per_hour": "${:,.2f}",
           "tflops_per_kusd": "{:,.1f}", "tflops_per_w": "{:.3f}"}
LABELS = {"name": "Card", "vendor": "Vendor", "segment": "Segment", "architecture": "Architecture",
          "release_year": "Year", "memory_gb": "Memory (GB)", "memory_bandwidth_gbs": "Bandwidth (GB/s)",
          "fp32_tflops": "FP32 (TFLOP/s)", "bf16_tflops": "BF16 (TFLOP/s)", "fp16_tflops": "FP16 (TFLOP/s)",
          "fp8_tflops": "FP8 (TFLOP/s)", "tdp_w": "Power (W)", "price_usd": "Purchase price (USD)",
          "price_note": "Price (kind, date)", "cloud_usd_per_hour": "Cloud (USD/GPU-h)",
          "cloud_note": "Cloud price (class, date)", "tflops_per_kusd": "TFLOP/s per $1k",
          "tflops_per_w": "TFLOP/s per W"}


def page() -> None:
    """Specs explorer: filters, sortable table, side-by-side comparison, scatter charts."""
    from advisor.dashboard import charts

    st.title("Specs explorer")
    frame = common.specs_frame()
    with st.sidebar:
        st.header("Filters")
        vendors = st.multiselect("Vendor", sorted(frame["vendor"].unique()), key="spec_vendor")
        segments = st.multiselect("Segment", sorted(frame["segment"].unique()), key="spec_segment")
        max_mem = float(frame["memory_gb"].max()) if not frame.empty else 0.0
        min_mem = st.slider("Minimum memory (GB)", 0.0, max_mem, 0.0, step=1.0, format="%.0f GB", key="spec_min_mem")
        prices = frame["price_usd"].dropna()
        cap = None
        if not prices.empty:
            top = float(prices.max())
            cap = st.slider("Maximum purchase price (USD)", 0.0, top, top, step=100.0, format="$%.0f",
                            key="spec_max_price")
        unpriced = st.checkbox("Include cards without a known price", value=True, key="spec_unpriced")
    shown = dd.filter_specs(frame, vendors=vendors, segments=segments, min_memory_gb=min_mem,
                            max_price_usd=cap, include_unpriced=unpriced)
    st.caption(f"{len(shown)} of {len(frame)} cards. Tensor figures are dense (no sparsity) with FP32 "
               "accumulate. Click a column header to sort; \"–\": the card has no such figure.")
    st.dataframe(dd.display_frame(shown[COLUMNS], FORMATS), hide_index=True, key="spec_table",
                 column_config=LABELS)

    st.subheader("Compare side by side")
    names = dict(zip(frame["name"], frame["id"], strict=True))
    popular = [n for i, n in zip(shown["id"], shown["name"], strict=True) if i in ("rtx-4090", "h100-sxm5-80gb")]
    default = popular if len(popular) == 2 else list(shown["name"][:2])
    picked = st.multiselect("Cards to compare", list(names), default=default, key="spec_compare")
    if picked:
        from advisor.catalog import get_gpu

        st.dataframe(dd.compare_frame([get_gpu(names[n]) for n in picked]), key="spec_compare_table")

    if shown.empty:
        st.info("No card matches these filters.")
        return
    st.subheader("Charts")
    st.caption("Colour: segment (the same colours on every page); hover a point for the card. Peak tensor "
               "TFLOP/s: BF16, else FP16, TF32 or FP32, dense.")
    c1, c2 = st.columns(2)
    with c1:
        common.chart(charts.spec_scatter(shown, "memory_bandwidth_gbs", "memory bandwidth (GB/s)", "peak_tflops",
                                         "peak tensor TFLOP/s", "Throughput vs bandwidth"))
    with c2:
        priced = shown.dropna(subset=["price_usd"])
        if priced.empty:
            st.caption("No card in this selection has a known price.")
        else:
            common.chart(charts.spec_scatter(priced, "price_usd", "purchase price (USD)", "memory_gb", "memory (GB)",
                                             "Memory vs price"))
    priced = shown.dropna(subset=["tflops_per_kusd"])
    if not priced.empty:
        common.chart(charts.spec_scatter(priced, "tflops_per_kusd", "peak TFLOP/s per 1000 USD of purchase price",
                                         "tflops_per_w", "peak TFLOP/s per watt of board power",
                                         "Throughput per dollar and per watt"))
