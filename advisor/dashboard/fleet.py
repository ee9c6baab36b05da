"""Fleet: per-node, per-GPU heatmap of probe results, stragglers highlighted; collectives bandwidth."""

from __future__ import annotations

from typing import Any

import streamlit as st

from advisor import dashboard_data as dd
from advisor.dashboard import common
from advisor.dashboard.history import stored_probes_or_notice


def _collectives_section(probes: list[dict[str, Any]]) -> None:
    """Bus bandwidth per collective and message size, from the newest stored collectives run."""
    from advisor.dashboard import charts

    coll = dd.collectives_frame(probes)
    if coll.empty:
        return
    st.subheader(f"Collectives: {coll['ranks'].iloc[0]} ranks, {common.when(coll['timestamp'].iloc[0])}")
    common.chart(charts.collectives_lines(coll))
    st.caption("Bus bandwidth as nccl-tests defines it (e.g. all-reduce: algbw x 2(n-1)/n).")


def page() -> None:
    """Fleet: per-node, per-GPU heatmap of probe results, stragglers highlighted."""
    st.title("Fleet")
    probes = stored_probes_or_notice()
    if probes is None:
        return
    _collectives_section(probes)
    cells = dd.fleet_frame(probes)
    if cells.empty:  # nothing stored, CPU runs only, or no per-GPU figure: say which, and what to run
        st.info(dd.fleet_empty_reason(probes), icon=":material/info:")
        return
    from advisor.dashboard import charts

    metrics = list(dict.fromkeys(cells["metric"]))
    metric = st.selectbox("Measurement", metrics, key="fleet_metric")
    shown = cells[cells["metric"] == metric]
    common.chart(charts.fleet_heatmap(shown))
    slow = shown[shown["straggler"]]
    formats = {"value": "{:,.4g}", "vs_median_pct": "{:+.1f}%"}
    if slow.empty:
        st.success(f"No straggler: every GPU is within {dd.STRAGGLER_FRACTION:.0%} of the fleet median.")
    else:
        st.error(f"{len(slow)} straggler(s): more than {dd.STRAGGLER_FRACTION:.0%} below the fleet median.")
        st.dataframe(dd.display_frame(slow[["node", "gpu", "name", "value", "unit", "vs_median_pct"]], formats),
                     hide_index=True, key="fleet_slow", column_config={"vs_median_pct": "vs median"})
    with st.expander("Every GPU"):
        st.dataframe(dd.display_frame(shown[["node", "gpu", "name", "value", "unit", "vs_median_pct", "straggler"]],
                                      formats),
                     hide_index=True, key="fleet_all", column_config={"vs_median_pct": "vs median"})
