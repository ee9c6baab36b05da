"""What every page shares: library look-ups that degrade to notices, cached catalog reads, the device backend."""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import ModuleType
from typing import TYPE_CHECKING, Any

import streamlit as st

from advisor import dashboard_data as dd
from advisor.errors import AdvisorError

if TYPE_CHECKING:  # altair and pandas are imported by the pages that draw charts, not on every page
    import pandas as pd

    from advisor.dashboard.charts import TopChart
    from advisor.probing.backend import InventoryBackend


def module(name: str) -> ModuleType | None:
    """Import a library part, or None while it is not there (it is being built in parallel)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
            return None
        raise


def missing(part: str) -> None:
    """Say that a library part is absent from this build."""
    st.info(f"The {part} part of gpu-advisor is not installed in this build, so this section is empty.",
            icon=":material/construction:")


def notice(exc: BaseException, what: str) -> None:
    """Show a library failure as a notice: AdvisorError with its hint, anything else by its type.

    Anything else is a bug: its traceback goes to the server's log as well.
    """
    if isinstance(exc, AdvisorError):
        st.warning(f"{what}: {exc.message}" + (f"  \nHint: {exc.hint}" if exc.hint else ""),
                   icon=":material/warning:")
    else:
        logging.getLogger("gpu-advisor.dashboard").error("%s failed", what, exc_info=exc)
        st.error(f"{what} failed: {type(exc).__name__}: {exc}", icon=":material/error:")


def guarded(fn: Callable[[], None]) -> Callable[[], None]:
    """Run a page; a library error becomes a notice instead of a traceback."""

    @functools.wraps(fn)
    def page() -> None:
        try:
            fn()
        except Exception as exc:  # the page's boundary: whatever escaped a page is a notice (a bug is logged too)
            notice(exc, "This page could not be drawn")

    return page


def when(timestamp: object) -> str:
    """An ISO timestamp as people read it: "2026-11-27 10:00 UTC" (unchanged when it is not one)."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return str(timestamp)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def chart(c: TopChart) -> None:
    """Draw an Altair chart at the container's width."""
    st.altair_chart(c, width="stretch")


def table(frame: pd.DataFrame, **kw: Any) -> None:
    """``st.dataframe`` with missing values shown as "–" (not "None"/"NaN") and no negative zero."""
    st.dataframe(dd.display_frame(frame), hide_index=True, **kw)


@st.cache_data(show_spinner=False)
def specs_frame() -> pd.DataFrame:
    """The catalog as the explorer's table (cached per server)."""
    from advisor.catalog import load_specs

    return dd.specs_frame(load_specs())


@st.cache_data(show_spinner=False)
def spec_dicts() -> dict[str, dict[str, Any]]:
    """Every card's spec as a dict, by id."""
    from advisor.catalog import load_specs

    return {s.id: s.to_dict() for s in load_specs()}


# ---------------------------------------------------------------- the device backend

@st.cache_resource
def _backends() -> dict[Any, Future[InventoryBackend]]:
    """Inventory backends being opened or opened, per factory, shared by every session of this server."""
    return {}


@st.cache_resource
def _executor() -> ThreadPoolExecutor:
    # Several workers: a factory that tests (or a user's plugin) swap in must not queue behind a slow one.
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="gpu-advisor-backend")


def backend_future() -> Future[InventoryBackend] | None:
    """The default backend, opened in the background; None when the probe part is not installed.

    The torch fallback alone takes seconds to import, and the page should draw meanwhile.
    """
    probe_mod = module("advisor.probing")
    if probe_mod is None or not hasattr(probe_mod, "default_backend"):
        return None
    factory = probe_mod.default_backend
    futures = _backends()
    if factory not in futures:
        futures[factory] = _executor().submit(factory)
    return futures[factory]


def ready_backend() -> InventoryBackend | None:
    """The opened backend, or None while it opens, when it failed, or without the probe part."""
    future = backend_future()
    if future is None or not future.done() or future.exception() is not None:
        return None
    return future.result()


def devices() -> tuple[list[Any] | None, BaseException | None]:
    """Every device the probe's default backend sees (a CPU-only host reports its CPU), or the error.

    ``(None, None)`` while the backend is still being opened.
    """
    future = backend_future()
    if future is None:
        return [], None
    try:
        backend = future.result(timeout=0.2)
    except FutureTimeout:
        return None, None
    except AdvisorError as exc:  # no driver / no GPU is a notice, not a traceback (a bug reaches the page's boundary)
        return [], exc
    try:
        return [backend.device_info(i) for i in range(backend.device_count())], None
    except AdvisorError as exc:  # a lost GPU (DeviceError), a backend that stopped working (ProbeUnavailable)
        return [], exc


def is_gpu(info: Any) -> bool:
    """A GPU (not the CPU stand-in)."""
    return getattr(info, "kind", "gpu") != "cpu"


@st.cache_resource
def probe_lock() -> threading.Lock:
    """One probe at a time, across every browser session of this server."""
    return threading.Lock()
