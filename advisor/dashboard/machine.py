"""My machine: devices and their health, live figures (GPUs and the host CPU), probe with results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

from advisor import dashboard_data as dd
from advisor.dashboard import common
from advisor.errors import AdvisorError

if TYPE_CHECKING:  # pragma: no cover
    from advisor.probing.backend import InventoryBackend
    from advisor.probing.watch import Snapshot

#: Live view: refresh period and how many samples per device it keeps.
LIVE_REFRESH_S = 2.0
LIVE_KEEP = 150


@st.fragment(run_every=0.5)
def _wait_for_backend() -> None:
    """Rerun the page once the backend is open (drawn only while it is not)."""
    future = common.backend_future()
    if future is None or future.done():
        st.rerun(scope="app")
    st.caption("Looking for devices (the first visit loads the GPU libraries)…")


def _health(info: Any) -> list[Any]:
    """Health verdicts of one device from its inventory alone (a probe adds the measured ones)."""
    verdicts_mod = common.module("advisor.probing.verdicts")
    if verdicts_mod is None or not hasattr(verdicts_mod, "device_verdicts"):
        return []
    try:
        return list(verdicts_mod.device_verdicts(info))
    except AdvisorError as exc:  # a verdict's catalog lookup failed; a bug reaches the page's boundary
        common.notice(exc, f"Health checks of device {getattr(info, 'index', '?')}")
        return []


def _device_card(info: Any, verdicts: Any = ()) -> None:
    d = dd.device_summary(info, verdicts)
    with st.container(border=True):
        st.subheader(f"{'GPU' if common.is_gpu(info) else 'CPU'} {d['index']}: {d['name']}")
        if d["error"]:
            st.error(f"This device failed: {d['error']}")
            return
        if d["details"]:
            st.caption(" · ".join(d["details"]))
        for verdict in d["verdicts"]:
            text = f"**{verdict['check']}**: {verdict['message']}"
            {"ok": st.success, "info": st.info, "warn": st.warning}.get(verdict["level"], st.error)(text)


def _snapshot_rows(backend: InventoryBackend) -> tuple[Snapshot, list[dict[str, Any]]]:
    """Sample every device and the host CPU; rows against the previous sample of this session."""
    from advisor.probing.watch import device_rows, sample

    previous = st.session_state.get("live_snapshot")
    snap = sample(backend)
    st.session_state["live_snapshot"] = snap
    return snap, device_rows(previous, snap)


@st.fragment(run_every=LIVE_REFRESH_S)
def _live() -> None:
    """Live figures of every device: a table now, and charts of the last samples.

    GPUs are read through the probe backend (NVML on NVIDIA), the host CPU from /proc; the samples are kept
    in session_state across reruns.
    """
    from advisor.probing.watch import display_row, process_rows

    backend = common.ready_backend()
    if backend is None:
        return
    try:
        snap, rows = _snapshot_rows(backend)
    except AdvisorError as exc:
        common.notice(exc, "Reading the live figures")
        return
    shown = [display_row(r) for r in rows]
    cols = st.columns(len(shown)) if len(shown) <= 4 else None
    for i, (row, text) in enumerate(zip(rows, shown, strict=True)):
        box = cols[i] if cols else st.container()
        with box.container(border=True, key=f"live_{i}"):
            st.markdown(f"**{text['device']}**")
            a, b = st.columns(2)
            a.metric("Utilisation", text["util"])
            b.metric("Clock" if row["kind"] == "cpu" else "SM clock", text["clock"].split(" (")[0].split(",")[0])
            st.caption(f"Memory {text['memory']}")
            if row["kind"] == "cpu":
                st.caption(text["extra"])
            else:
                st.caption(f"Power {text['power']} · {text['temp']} · clock events: {text['throttle']}"
                           + (f" · {text['extra']}" if text["extra"] != "–" else ""))
    procs = process_rows(snap)
    if procs:
        import pandas as pd

        frame = pd.DataFrame(procs)
        frame["GPU memory (GiB)"] = frame.pop("used_memory_bytes") / 2**30
        common.table(frame, key="live_procs")
    history: list[dict[str, Any]] = st.session_state.setdefault("live_samples", [])
    # time runs from this session's first sample: a start read after the sample would put it at -0.001 s, which
    # the chart's rounded axis drew from -5 s
    start = st.session_state.setdefault("live_start", snap.t_s)
    for row in rows:
        if not row.get("error"):
            history.append(dd.live_sample_row(row, snap.t_s - start))
    del history[: max(0, len(history) - LIVE_KEEP * len(rows))]
    frame = dd.live_frame(history)
    if not frame.empty:
        from advisor.dashboard import charts

        common.chart(charts.live_lines(frame, gap_s=3 * LIVE_REFRESH_S))
    st.caption(f"Refreshes every {LIVE_REFRESH_S:.0f} s; keeps the last {LIVE_KEEP} samples per device. "
               "The same figures in a terminal: `python -m advisor probe --watch`.")


def _run_probe(quick: bool) -> None:
    probe_mod = common.module("advisor.probing")
    if probe_mod is None or not hasattr(probe_mod, "probe"):
        common.missing("probe")
        return
    lock = common.probe_lock()
    if not lock.acquire(blocking=False):
        st.warning("A probe is already running on this machine; wait for it to finish.")
        return
    try:
        bar = st.progress(0.0, text="Starting the probe…")

        def progress(what: str, fraction: float) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=f"Probing: {what} ({fraction:.0%})")

        with st.spinner("Probing (this measures real kernels)…"):
            result = probe_mod.probe(backend=common.ready_backend(), quick=quick, progress=progress)
        bar.progress(1.0, text="Probe finished")
        st.session_state["probe_result"] = result.to_dict()
        _save_probe(result)
    except AdvisorError as exc:  # a bad setting or no usable device; a kernel's own failure is in its result
        common.notice(exc, "The probe")
        return
    finally:
        lock.release()
    st.rerun()  # redraw the device cards with the probe's verdicts


def _save_probe(result: Any) -> None:
    """Keep the run in the history store, as the CLI's probe does."""
    if common.module("advisor.store") is None:
        return
    try:
        from advisor.dashboard.history import stored_probes
        from advisor.store import HistoryStore

        st.session_state["probe_saved_id"] = HistoryStore().save_probe(result)
        st.session_state.pop("probe_save_error", None)
        stored_probes.clear()
    except AdvisorError as exc:  # StoreError: unwritable directory, corrupt file
        # Kept in the session: the page reruns right after the probe, which would wipe a notice shown now.
        st.session_state["probe_saved_id"] = None
        st.session_state["probe_save_error"] = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")


def _probe_charts(result: dict[str, Any]) -> None:
    from advisor.dashboard import charts

    kernels = dd.kernel_frame(result)
    if kernels.empty:
        st.caption("This probe result has no kernel measurements.")
        return
    st.subheader("Achieved vs spec")
    table = kernels[["device", "kernel", "precision", "achieved", "spec", "unit", "efficiency_pct"]]
    st.dataframe(dd.display_frame(table, {"achieved": "{:.4g}", "spec": "{:.4g}", "efficiency_pct": "{:.0f}%"}),
                 hide_index=True, column_config={"spec": "spec peak", "efficiency_pct": "% of spec"})
    with_spec = kernels.dropna(subset=["efficiency_pct"])
    if not with_spec.empty:
        common.chart(charts.efficiency_bars(with_spec))
    without = kernels[kernels["efficiency_pct"].isna()]
    if not without.empty:
        st.caption("No spec peak for these (the device is not in the catalog, e.g. a CPU): achieved values only.")
        for unit, group in without.groupby("unit"):
            common.chart(charts.achieved_bars(group, str(unit)))
    roof = dd.roofline_frame(result, common.spec_dicts())
    if roof["lines"].empty:
        st.caption("No roofline: the device is not in the catalog (e.g. a CPU), so there is no spec roof.")
        return
    st.subheader("Roofline")
    common.chart(charts.roofline(roof["lines"], roof["points"]))


def page() -> None:
    """My machine: devices and their health, live figures, probe with results."""
    st.title("My machine")
    probe_mod = common.module("advisor.probing")
    if probe_mod is None or not hasattr(probe_mod, "default_backend"):
        common.missing("probe")
    else:
        devices, exc = common.devices()
        gpus = [d for d in devices or [] if common.is_gpu(d)]
        if devices is None:
            _wait_for_backend()
        elif gpus:
            probed = (st.session_state.get("probe_result") or {}).get("verdicts")
            for info in gpus:
                _device_card(info, probed if probed is not None else _health(info))
        else:
            reason = exc.message if isinstance(exc, AdvisorError) else (str(exc) if exc else "no GPU found")
            st.info(f"No GPU visible here ({reason}). Showing this machine's CPU; the probe runs its kernels "
                    "on the CPU.", icon=":material/info:")
            backend = common.ready_backend()
            notes = getattr(backend, "notes", ()) if backend is not None else ()
            if notes:
                st.caption("Why: " + "; ".join(notes))
            for info in devices or []:
                _device_card(info, ())
        if devices is not None:
            st.subheader("Live")
            _live()

    st.subheader("Probe")
    with st.form("probe_form", border=False):
        mode = st.radio("Probe depth", ["quick", "full"], horizontal=True, key="probe_mode",
                        help="quick: small sizes, seconds; full: sizes that reach peak, up to a few minutes")
        run = st.form_submit_button("Run probe", type="primary", icon=":material/speed:")
    if run:
        _run_probe(quick=(mode == "quick"))
    result = st.session_state.get("probe_result")
    if result:
        saved = st.session_state.get("probe_saved_id")
        st.caption(f"Probe of {common.when(result.get('timestamp', '?'))} on {result.get('host', '?')}, "
                   f"{'quick' if result.get('quick') else 'full'}, {result.get('elapsed_s') or 0:.1f} s"
                   + (f"; saved to the history store as run #{saved}." if saved else "."))
        if st.session_state.get("probe_save_error"):
            st.warning("This probe's result is shown but was not saved to the history store: "
                       + st.session_state["probe_save_error"], icon=":material/warning:")
        _probe_charts(result)
    else:
        st.caption("No probe run in this session yet.")
