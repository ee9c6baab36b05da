"""History: probe runs from the store, trends per device, compare two runs."""

from __future__ import annotations

from typing import Any

import streamlit as st

from advisor import dashboard_data as dd
from advisor.dashboard import common
from advisor.errors import AdvisorError


@st.cache_data(ttl=10, show_spinner=False)
def stored_probes(path: str) -> list[dict[str, Any]]:
    """Every stored probe run's document (newest first) with its store id; cached for 10 s per store file."""
    from advisor.store import HistoryStore

    store = HistoryStore(path, read_only=True)  # a store on read-only media is still shown
    return [{**record.document, "id": record.id} for record in store.list_probes(limit=500)]


def stored_probes_or_notice() -> list[dict[str, Any]] | None:
    """The stored probe documents, or ``None`` after showing why they cannot be read."""
    if common.module("advisor.store") is None:
        common.missing("history store")
        return None
    try:
        from advisor.store import default_store_path

        return stored_probes(str(default_store_path()))
    except (AdvisorError, ValueError) as exc:  # StoreError; a saved document that is not JSON (ValueError)
        common.notice(exc, "Reading the history store")
        return None


def page() -> None:
    """History: probe runs from the store, trends per device, compare two runs."""
    st.title("History")
    probes = stored_probes_or_notice()
    if probes is None:
        return
    runs = dd.history_runs_frame(probes)
    if runs.empty:
        st.info("No probe runs stored yet. Run one on **My machine** or with `python -m advisor probe`.")
        return
    from advisor.dashboard import charts

    common.table(runs, key="hist_runs")
    trend = dd.history_trend_frame(probes)
    if not trend.empty:
        st.subheader("Trends per device")
        common.chart(charts.history_trends(trend))
    st.subheader("Compare two runs")
    labels = list(runs["run"])
    c1, c2 = st.columns(2)
    a = c1.selectbox("Run A", labels, index=min(1, len(labels) - 1), key="hist_a")
    b = c2.selectbox("Run B", labels, index=0, key="hist_b")
    cmp = dd.compare_runs(probes[labels.index(a)], probes[labels.index(b)])
    if cmp.empty:
        st.caption("These two runs have no kernel measured on the same device in common.")
    else:
        st.dataframe(dd.display_frame(cmp, {"A": "{:,.4g}", "B": "{:,.4g}", "change_pct": "{:+.1f}%"}),
                     hide_index=True, key="hist_compare", column_config={"change_pct": "B vs A"})
