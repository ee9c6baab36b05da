"""The dashboard's navigation: one page per module, started by ``streamlit run dashboard.py``."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

import streamlit as st

from advisor.dashboard import common

#: slug -> (title, icon, module holding ``page()``).
PAGES = {
    "machine": ("My machine", ":material/memory:", "advisor.dashboard.machine"),
    "specs": ("Specs explorer", ":material/table_chart:", "advisor.dashboard.specs"),
    "recommend": ("Recommender", ":material/recommend:", "advisor.dashboard.recommender"),
    "history": ("History", ":material/history:", "advisor.dashboard.history"),
    "fleet": ("Fleet", ":material/lan:", "advisor.dashboard.fleet"),
}


def _page(module_name: str) -> Callable[[], None]:
    def page() -> None:
        importlib.import_module(module_name).page()

    page.__name__ = module_name.rsplit(".", 1)[1]
    return common.guarded(page)


@st.cache_resource
def _prewarm_chart_libraries() -> threading.Thread:
    """Import pandas and altair in the background once the first page is drawn.

    The pages with charts then open without paying for the imports (about 2 s on a 2-core machine).
    """
    thread = threading.Thread(target=lambda: [importlib.import_module(m) for m in ("pandas", "altair")],
                              name="gpu-advisor-prewarm", daemon=True)
    thread.start()
    return thread


def run() -> None:
    """Draw the page the URL (or ``session_state["start_page"]``) asks for."""
    st.set_page_config(page_title="gpu-advisor", page_icon=":material/memory:", layout="wide")
    start = st.session_state.get("start_page", "machine")
    navigation = st.navigation([
        st.Page(_page(module), title=title, icon=icon, url_path=slug, default=(slug == start))
        for slug, (title, icon, module) in PAGES.items()
    ])
    st.sidebar.caption("gpu-advisor · every figure comes from `advisor/` · guide: `docs/dashboard.md`")
    navigation.run()
    _prewarm_chart_libraries()
