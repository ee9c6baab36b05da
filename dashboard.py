"""gpu-advisor dashboard: ``streamlit run dashboard.py``.

Widgets and layout only: every number shown comes from ``advisor/`` (the catalog, probe,
estimate, recommend and store modules, shaped for charts by ``advisor.dashboard_data``).
Each page works without a GPU; a library piece that is missing or raises becomes a notice
on the page, never a traceback.
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import ModuleType
from typing import TYPE_CHECKING, Any

import streamlit as st

from advisor import dashboard_data as dd
from advisor.errors import AdvisorError
from advisor.units import format_bytes

if TYPE_CHECKING:  # altair and pandas are imported by the pages that draw charts, not on every page
    import altair as alt
    import pandas as pd

#: Upload limit for config.json files (a real HF config is a few KiB).
MAX_UPLOAD_BYTES = 1024 * 1024
#: Live charts: refresh period and how many samples per device they keep.
LIVE_REFRESH_S = 2.0
LIVE_KEEP = 150
DEFAULT_MODEL = "llama-3-8b"

st.set_page_config(page_title="gpu-advisor", page_icon=":material/memory:", layout="wide")


# ---------------------------------------------------------------- plumbing

def _module(name: str) -> ModuleType | None:
    """Import a library part, or None while it is not there (it is being built in parallel)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
            return None
        raise


def _missing(part: str) -> None:
    st.info(f"The {part} part of gpu-advisor is not installed in this build, so this section is empty.",
            icon=":material/construction:")


def _notice(exc: BaseException, what: str) -> None:
    """Show a library failure as a notice: AdvisorError with its hint, anything else by its type."""
    if isinstance(exc, AdvisorError):
        st.warning(f"{what}: {exc.message}" + (f"  \nHint: {exc.hint}" if exc.hint else ""),
                   icon=":material/warning:")
    else:
        st.error(f"{what} failed: {type(exc).__name__}: {exc}", icon=":material/error:")


def _guarded(fn: Callable[[], None]) -> Callable[[], None]:
    """Run a page; a library error becomes a notice instead of a traceback."""

    @functools.wraps(fn)
    def page() -> None:
        try:
            fn()
        except Exception as exc:
            if not isinstance(exc, AdvisorError):  # a bug: keep its traceback in the server's log
                logging.getLogger("gpu-advisor.dashboard").exception("page %s failed", fn.__name__)
            _notice(exc, "This page could not be drawn")

    return page


def _chart(chart: alt.TopLevelMixin) -> None:
    st.altair_chart(chart, width="stretch")


@st.cache_resource
def _probe_lock() -> threading.Lock:
    """One probe at a time, across every browser session of this server."""
    return threading.Lock()


@st.cache_data(show_spinner=False)
def _specs_frame() -> pd.DataFrame:
    from advisor.catalog import load_specs

    return dd.specs_frame(load_specs())


@st.cache_data(show_spinner=False)
def _spec_dicts() -> dict[str, dict[str, Any]]:
    from advisor.catalog import load_specs

    return {s.id: s.to_dict() for s in load_specs()}


# ---------------------------------------------------------------- 1. My machine

def _cpu_figures() -> None:
    """What the host offers when there is no GPU: core count, memory, processor."""
    cols = st.columns(3)
    cols[0].metric("CPU cores", os.cpu_count() or "n/a")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        cols[1].metric("Host memory", format_bytes(total))
    except (ValueError, OSError, AttributeError):
        cols[1].metric("Host memory", "n/a")
    cols[2].metric("Processor", platform.processor() or platform.machine())
    st.caption(f"{platform.system()} {platform.release()} · Python {platform.python_version()}")


@st.cache_resource
def _backends() -> dict[Any, Future[Any]]:
    """Inventory backends being opened or opened, per factory, shared by every session of this server."""
    return {}


@st.cache_resource
def _executor() -> ThreadPoolExecutor:
    # Several workers: a factory that tests (or a user's plugin) swap in must not queue behind a slow one.
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="gpu-advisor-backend")


def _backend_future() -> Future[Any] | None:
    """The default backend, opened in the background: the torch fallback alone takes seconds to import,
    and the page should draw meanwhile.  None when the probe part is not installed."""
    probe_mod = _module("advisor.probe")
    if probe_mod is None or not hasattr(probe_mod, "default_backend"):
        return None
    factory = probe_mod.default_backend
    futures = _backends()
    if factory not in futures:
        futures[factory] = _executor().submit(factory)
    return futures[factory]


def _devices() -> tuple[list[Any] | None, BaseException | None]:
    """Every device the probe's default backend sees (a CPU-only host reports its CPU), or the error.

    ``(None, None)`` while the backend is still being opened.
    """
    future = _backend_future()
    if future is None:
        return [], None
    try:
        backend = future.result(timeout=0.2)
    except FutureTimeout:
        return None, None
    except Exception as exc:  # no driver / no GPU is a notice, not a traceback
        return [], exc
    try:
        return [backend.device_info(i) for i in range(backend.device_count())], None
    except Exception as exc:
        return [], exc


@st.fragment(run_every=0.5)
def _wait_for_backend() -> None:
    """Rerun the page once the backend is open (drawn only while it is not)."""
    future = _backend_future()
    if future is None or future.done():
        st.rerun(scope="app")
    st.caption("Looking for devices (the first visit loads the GPU libraries)…")


def _is_gpu(info: Any) -> bool:
    return getattr(info, "kind", "gpu") != "cpu"


def _health(info: Any) -> list[Any]:
    """Health verdicts of one device from its inventory alone (a probe adds the measured ones)."""
    verdicts_mod = _module("advisor.probe.verdicts")
    if verdicts_mod is None or not hasattr(verdicts_mod, "device_verdicts"):
        return []
    try:
        return list(verdicts_mod.device_verdicts(info))
    except Exception as exc:
        _notice(exc, f"Health checks of device {getattr(info, 'index', '?')}")
        return []


def _device_card(info: Any, verdicts: Any = ()) -> None:
    d = dd.device_summary(info, verdicts)
    with st.container(border=True):
        st.subheader(f"{'GPU' if _is_gpu(info) else 'CPU'} {d['index']}: {d['name']}")
        if d["error"]:
            st.error(f"This device failed: {d['error']}")
            return
        cols = st.columns(4)
        cols[0].metric("Memory", d["memory"])
        cols[1].metric("Temperature", d["temperature"])
        cols[2].metric("Power", d["power"])
        cols[3].metric("SM clock", d["clock"])
        if d["details"]:
            st.caption(" · ".join(d["details"]))
        for verdict in d["verdicts"]:
            level = verdict["level"]
            text = f"**{verdict['check']}**: {verdict['message']}"
            if level == "ok":
                st.success(text, icon=":material/check_circle:")
            elif level == "info":
                st.info(text, icon=":material/info:")
            elif level == "warn":
                st.warning(text, icon=":material/warning:")
            else:
                st.error(text, icon=":material/error:")


@st.fragment(run_every=LIVE_REFRESH_S)
def _live_charts() -> None:
    """Sample every device and redraw; history lives in session_state so it survives reruns."""
    import altair as alt

    devices, exc = _devices()
    devices = [d for d in devices or [] if _is_gpu(d)]
    if exc is not None or not devices:
        return
    history: list[dict[str, Any]] = st.session_state.setdefault("live_samples", [])
    start = st.session_state.setdefault("live_start", time.monotonic())
    now = time.monotonic() - start
    for info in devices:
        history.append(dd.live_sample_row(info, now))
    del history[: max(0, len(history) - LIVE_KEEP * len(devices))]
    frame = dd.live_frame(history)
    if frame.empty:
        st.caption("The devices report no live counters.")
        return
    chart = (alt.Chart(frame).mark_line(point=True)
             .encode(x=alt.X("t_s:Q", title="time since page opened (s)"),
                     y=alt.Y("value:Q", title=None),
                     color=alt.Color("device:N", title="device"),
                     tooltip=["device", "metric", alt.Tooltip("value:Q", format=".1f"), "t_s"])
             .properties(height=150, width=260)
             .facet(facet=alt.Facet("metric:N", title=None), columns=3)
             .resolve_scale(y="independent"))
    _chart(chart)
    st.caption(f"Refreshes every {LIVE_REFRESH_S:.0f} s; keeps the last {LIVE_KEEP} samples per device.")


def _run_probe(quick: bool) -> None:
    probe_mod = _module("advisor.probe")
    if probe_mod is None or not hasattr(probe_mod, "probe"):
        _missing("probe")
        return
    lock = _probe_lock()
    if not lock.acquire(blocking=False):
        st.warning("A probe is already running on this machine; wait for it to finish.")
        return
    try:
        bar = st.progress(0.0, text="Starting the probe…")

        def progress(what: str, fraction: float) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=f"Probing: {what} ({fraction:.0%})")

        future = _backend_future()
        backend = future.result() if future is not None and future.done() and future.exception() is None else None
        with st.spinner("Probing (this measures real kernels)…"):
            result = probe_mod.probe(backend=backend, quick=quick, progress=progress)
        bar.progress(1.0, text="Probe finished")
        st.session_state["probe_result"] = result.to_dict()
        _save_probe(result)
    except Exception as exc:
        _notice(exc, "The probe")
        return
    finally:
        lock.release()
    st.rerun()  # redraw the device cards with the probe's verdicts


def _save_probe(result: Any) -> None:
    """Keep the run in the history store, as the CLI's probe does."""
    if _module("advisor.store") is None:
        return
    try:
        from advisor.store import HistoryStore

        st.session_state["probe_saved_id"] = HistoryStore().save_probe(result)
        _stored_probes.clear()
    except Exception as exc:
        _notice(exc, "Saving the probe to the history store")


def _probe_charts(result: dict[str, Any]) -> None:
    import altair as alt

    kernels = dd.kernel_frame(result)
    if kernels.empty:
        st.caption("This probe result has no kernel measurements.")
        return
    st.subheader("Achieved vs spec")
    table = kernels[["device", "kernel", "precision", "achieved", "spec", "unit", "efficiency_pct"]]
    st.dataframe(table, hide_index=True, column_config={
        "achieved": st.column_config.NumberColumn("achieved", format="%.4g"),
        "spec": st.column_config.NumberColumn("spec peak", format="%.4g"),
        "efficiency_pct": st.column_config.ProgressColumn("% of spec", min_value=0, max_value=100,
                                                          format="%.0f%%"),
    })
    tooltip = ["device", "kernel", "precision", alt.Tooltip("achieved:Q", format=".3g"),
               alt.Tooltip("spec:Q", format=".3g"), "unit"]
    with_spec = kernels.dropna(subset=["efficiency_pct"])
    if not with_spec.empty:
        _chart(alt.Chart(with_spec).mark_bar()
               .encode(x=alt.X("efficiency_pct:Q", title="achieved / spec peak (%)", scale=alt.Scale(domain=[0, 110])),
                       y=alt.Y("label:N", title=None, sort="-x"), color=alt.Color("unit:N", title="unit"),
                       tooltip=tooltip))
    without = kernels[kernels["efficiency_pct"].isna()]
    if not without.empty:
        st.caption("No spec peak for these (the device is not in the catalog, e.g. a CPU): achieved values only.")
        for unit, group in without.groupby("unit"):
            _chart(alt.Chart(group).mark_bar()
                   .encode(x=alt.X("achieved:Q", title=f"achieved ({unit})"), y=alt.Y("label:N", title=None),
                           color=alt.Color("device:N", title="device"), tooltip=tooltip)
                   .properties(height=alt.Step(22)))
    roof = dd.roofline_frame(result, _spec_dicts())
    if roof["lines"].empty:
        st.caption("No roofline: the device is not in the catalog (e.g. a CPU), so there is no spec roof.")
        return
    st.subheader("Roofline")
    lines = (alt.Chart(roof["lines"]).mark_line()
             .encode(x=alt.X("intensity:Q", title="arithmetic intensity (FLOP/byte)", scale=alt.Scale(type="log")),
                     y=alt.Y("tflops:Q", title="throughput (TFLOP/s)", scale=alt.Scale(type="log")),
                     color=alt.Color("roof:N", title="spec roof")))
    layers = [lines]
    if not roof["points"].empty:
        layers.append(alt.Chart(roof["points"]).mark_point(size=90, filled=True, color="black")
                      .encode(x="intensity:Q", y="tflops:Q",
                              tooltip=["kernel", "precision", alt.Tooltip("tflops:Q", format=".1f"),
                                       alt.Tooltip("intensity:Q", format=".1f")]))
    _chart(alt.layer(*layers))


def page_machine() -> None:
    """My machine: devices and their health, live counters, probe with results."""
    st.title("My machine")
    probe_mod = _module("advisor.probe")
    if probe_mod is None or not hasattr(probe_mod, "default_backend"):
        _missing("probe")
        _cpu_figures()
    else:
        devices, exc = _devices()
        gpus = [d for d in devices or [] if _is_gpu(d)]
        if devices is None:
            _wait_for_backend()
        elif gpus:
            probed = (st.session_state.get("probe_result") or {}).get("verdicts")
            for info in gpus:
                _device_card(info, probed if probed is not None else _health(info))
            st.subheader("Live")
            _live_charts()
        else:
            reason = exc.message if isinstance(exc, AdvisorError) else (str(exc) if exc else "no GPU found")
            st.info(f"No GPU visible here ({reason}). Showing this machine's CPU; the probe runs its kernels "
                    "on the CPU.", icon=":material/info:")
            future = _backend_future()
            notes = getattr(future.result(), "notes", ()) if future is not None and exc is None else ()
            if notes:
                st.caption("Why: " + "; ".join(notes))
            cpus = [d for d in devices if not _is_gpu(d)]
            if cpus:
                for info in cpus:
                    _device_card(info, ())
            else:
                _cpu_figures()

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
        st.caption(f"Probe of {result.get('timestamp', '?')} on {result.get('host', '?')}, "
                   f"{'quick' if result.get('quick') else 'full'}, {result.get('elapsed_s') or 0:.1f} s"
                   + (f"; saved to the history store as run #{saved}." if saved else "."))
        _probe_charts(result)
    else:
        st.caption("No probe run in this session yet.")


# ---------------------------------------------------------------- 2. Specs explorer

def page_specs() -> None:
    """Specs explorer: filters, sortable table, side-by-side comparison, scatter charts."""
    import altair as alt

    st.title("Specs explorer")
    frame = _specs_frame()
    with st.sidebar:
        st.header("Filters")
        vendors = st.multiselect("Vendor", sorted(frame["vendor"].unique()), key="spec_vendor")
        segments = st.multiselect("Segment", sorted(frame["segment"].unique()), key="spec_segment")
        max_mem = float(frame["memory_gb"].max()) if not frame.empty else 0.0
        min_mem = st.slider("Minimum memory (GB)", 0.0, max_mem, 0.0, step=1.0, key="spec_min_mem")
        prices = frame["price_usd"].dropna()
        cap = None
        if not prices.empty:
            top = float(prices.max())
            cap = st.slider("Maximum launch price (USD)", 0.0, top, top, step=100.0, key="spec_max_price")
        unpriced = st.checkbox("Include cards without a known price", value=True, key="spec_unpriced")
    shown = dd.filter_specs(frame, vendors=vendors, segments=segments, min_memory_gb=min_mem,
                            max_price_usd=cap, include_unpriced=unpriced)
    st.caption(f"{len(shown)} of {len(frame)} cards. Tensor figures are dense (no sparsity) with FP32 "
               "accumulate. Click a column header to sort.")
    columns = ["name", "vendor", "segment", "architecture", "release_year", "memory_gb", "memory_bandwidth_gbs",
               "fp32_tflops", "bf16_tflops", "fp16_tflops", "fp8_tflops", "tdp_w", "price_usd",
               "cloud_usd_per_hour", "tflops_per_kusd", "tflops_per_w"]
    st.dataframe(shown[columns], hide_index=True, key="spec_table", column_config={
        "name": "Card", "vendor": "Vendor", "segment": "Segment", "architecture": "Architecture",
        "release_year": st.column_config.NumberColumn("Year", format="%d"),
        "memory_gb": st.column_config.NumberColumn("Memory (GB)", format="%.0f"),
        "memory_bandwidth_gbs": st.column_config.NumberColumn("Bandwidth (GB/s)", format="%.0f"),
        "fp32_tflops": st.column_config.NumberColumn("FP32 (TFLOP/s)", format="%.1f"),
        "bf16_tflops": st.column_config.NumberColumn("BF16 (TFLOP/s)", format="%.1f"),
        "fp16_tflops": st.column_config.NumberColumn("FP16 (TFLOP/s)", format="%.1f"),
        "fp8_tflops": st.column_config.NumberColumn("FP8 (TFLOP/s)", format="%.1f"),
        "tdp_w": st.column_config.NumberColumn("Power (W)", format="%.0f"),
        "price_usd": st.column_config.NumberColumn("Launch price (USD)", format="$%.0f"),
        "cloud_usd_per_hour": st.column_config.NumberColumn("Cloud (USD/h)", format="$%.2f"),
        "tflops_per_kusd": st.column_config.NumberColumn("TFLOP/s per $1k", format="%.1f"),
        "tflops_per_w": st.column_config.NumberColumn("TFLOP/s per W", format="%.3f"),
    })

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
    tooltip = ["name", "segment", alt.Tooltip("peak_tflops:Q", title="peak (TFLOP/s)", format=".1f"),
               alt.Tooltip("peak_precision:N", title="precision"),
               alt.Tooltip("memory_bandwidth_gbs:Q", title="bandwidth (GB/s)"),
               alt.Tooltip("memory_gb:Q", title="memory (GB)"), alt.Tooltip("price_usd:Q", title="price (USD)"),
               alt.Tooltip("tdp_w:Q", title="power (W)")]
    color = alt.Color("segment:N", title="segment")
    base = alt.Chart(shown)
    c1, c2 = st.columns(2)
    with c1:
        _chart(base.mark_circle(size=120).encode(
            x=alt.X("memory_bandwidth_gbs:Q", title="memory bandwidth (GB/s)"),
            y=alt.Y("peak_tflops:Q", title="peak tensor TFLOP/s (BF16, else FP16/FP32)"),
            color=color, tooltip=tooltip).properties(title="Throughput vs bandwidth"))
    with c2:
        priced = shown.dropna(subset=["price_usd"])
        if priced.empty:
            st.caption("No card in this selection has a known price.")
        else:
            _chart(alt.Chart(priced).mark_circle(size=120).encode(
                x=alt.X("price_usd:Q", title="launch price (USD)"), y=alt.Y("memory_gb:Q", title="memory (GB)"),
                color=color, tooltip=tooltip).properties(title="Memory vs price"))
    priced = shown.dropna(subset=["tflops_per_kusd"])
    if not priced.empty:
        _chart(alt.Chart(priced).mark_circle(size=120).encode(
            x=alt.X("tflops_per_kusd:Q", title="peak TFLOP/s per 1000 USD of launch price"),
            y=alt.Y("tflops_per_w:Q", title="peak TFLOP/s per watt of board power"),
            color=color, tooltip=[*tooltip, alt.Tooltip("tflops_per_kusd:Q", format=".1f"),
                                  alt.Tooltip("tflops_per_w:Q", format=".3f")],
        ).properties(title="Throughput per dollar and per watt"))


# ---------------------------------------------------------------- 3. Recommender

def _read_upload(upload: Any) -> dict[str, Any]:
    """Parse an uploaded config.json: JSON only, size-limited, must be an object."""
    data = upload.getvalue()
    return dd.parse_config_json(data, name=upload.name, max_bytes=MAX_UPLOAD_BYTES)


@st.cache_data(show_spinner="Ranking cards…", max_entries=64)
def _recommend(model_json: str, options_json: str) -> dict[str, Any]:
    """Cached recommend() plus the memory breakdown of the top cards (keyed by the inputs' JSON)."""
    from advisor.recommend import recommend

    model = json.loads(model_json)
    options = json.loads(options_json)
    rec = recommend(model, **options)
    breakdowns: dict[str, Any] = {}
    estimate_mod = _module("advisor.estimate")
    if estimate_mod is not None and hasattr(estimate_mod, "estimate"):
        workload_opts = {k: v for k, v in options.items() if k not in ("max_gpus", "objective", "budget_usd")}
        for target in dd.breakdown_targets(rec):
            try:
                breakdowns[target["label"]] = estimate_mod.estimate(
                    model, gpu=target["gpu"], num_gpus=target["num_gpus"],
                    **({"parallelism": target["parallelism"]} if target["parallelism"] else {}), **workload_opts)
            except AdvisorError:
                continue  # that card's bar is left out; the ranking still shows it
    return dd.recommendation_view(rec, breakdowns)


def _presets() -> list[str]:
    wl = _module("advisor.workload")
    if wl is None or not hasattr(wl, "list_presets"):
        return [DEFAULT_MODEL]
    names = [p if isinstance(p, str) else getattr(p, "name", str(p)) for p in wl.list_presets()]
    return names or [DEFAULT_MODEL]


def page_recommender() -> None:
    """Recommender: a workload in, ranked cards out, with memory breakdown and cost."""
    import altair as alt
    import pandas as pd

    st.title("Recommender")
    if _module("advisor.recommend") is None:
        _missing("recommend")
        return
    presets = _presets()
    c1, c2 = st.columns([2, 1])
    with c1:
        model_name = st.selectbox("Model preset", presets,
                                  index=presets.index(DEFAULT_MODEL) if DEFAULT_MODEL in presets else 0,
                                  key="rec_model")
    with c2:
        upload = st.file_uploader("…or upload a config.json", type=["json"], key="rec_upload",
                                  max_upload_size=1, help="Hugging Face-style config.json, 1 MB at most; "
                                  "parsed as JSON, never unpickled.")
    model: Any = model_name
    if upload is not None:
        try:
            model = _read_upload(upload)
            st.caption(f"Using the uploaded config {upload.name}.")
        except AdvisorError as exc:
            _notice(exc, "The uploaded config")
            return
    with st.form("rec_form"):
        a, b, c, d = st.columns(4)
        batch = a.number_input("Batch size", 1, 65536, 4, key="rec_batch")
        seq = b.number_input("Sequence length (tokens)", 1, 1_000_000, 2048, key="rec_seq")
        image = c.number_input("Image size (px; vision models)", 16, 4096, 224, key="rec_image")
        precision = d.selectbox("Precision", list(dd.PRECISIONS), index=list(dd.PRECISIONS).index("amp-bf16"),
                                key="rec_precision")
        a, b, c, d = st.columns(4)
        optimizer = a.selectbox("Optimizer", list(dd.OPTIMIZERS), index=list(dd.OPTIMIZERS).index("adamw"),
                                key="rec_optimizer")
        mode = b.selectbox("Mode", ["train", "infer"], key="rec_mode")
        checkpointing = c.checkbox("Gradient checkpointing", value=True, key="rec_ckpt")
        lora = d.checkbox("LoRA fine-tuning", value=True, key="rec_lora")
        a, b, c, d = st.columns(4)
        lora_rank = a.number_input("LoRA rank", 1, 1024, 16, key="rec_lora_rank")
        max_gpus = b.number_input("Max GPUs", 1, 64, 1, key="rec_gpus")
        objective = c.selectbox("Objective", list(dd.OBJECTIVES), key="rec_objective")
        budget = d.number_input("Budget (USD, 0 = none)", 0.0, 10_000_000.0, 0.0, step=500.0, key="rec_budget")
        runtime = a.selectbox("Runtime", ["eager", "graph"], key="rec_runtime",
                              help="eager: plain PyTorch, whose per-op host dispatch can bound small steps; graph: "
                                   "CUDA graphs / torch.compile reduce-overhead / TensorRT / vLLM / llama.cpp")
        st.form_submit_button("Recommend", type="primary")
    options = dd.recommend_options(batch_size=int(batch), seq_len=int(seq), image_size=int(image),
                                   precision=precision, optimizer=optimizer, mode=mode,
                                   gradient_checkpointing=checkpointing, lora_rank=int(lora_rank) if lora else None,
                                   max_gpus=int(max_gpus), objective=objective, budget_usd=budget or None,
                                   model=model, runtime=runtime)
    try:
        view = _recommend(json.dumps(model, sort_keys=True), json.dumps(options, sort_keys=True))
    except Exception as exc:
        _notice(exc, "The recommendation")
        return
    ranked = pd.DataFrame(view["ranked"])
    label = model if isinstance(model, str) else model.get("_name_or_path", upload.name if upload else "config")
    st.subheader(f"Ranked cards for {label}")
    if ranked.empty:
        st.warning("No card fits this workload with these settings; see the rejected cards below.")
        if view.get("partial"):
            st.info(view["partial"])
    else:
        st.dataframe(ranked, hide_index=True, key="rec_table", column_config={
            "memory per GPU (GiB)": st.column_config.NumberColumn(format="%.1f"),
            "headroom (GiB)": st.column_config.NumberColumn(format="%.1f"),
            "step (s)": st.column_config.NumberColumn(format="%.3f"),
            "samples/s": st.column_config.NumberColumn(format="%.1f"),
            "tokens/s": st.column_config.NumberColumn(format="%.0f"),
            "time to train (h)": st.column_config.NumberColumn(format="%.1f"),
            "cost (USD)": st.column_config.NumberColumn(format="$%.0f"),
            "energy (kWh)": st.column_config.NumberColumn(format="%.1f"),
        })
    if view.get("job"):
        st.caption(f"Time to train covers: {view['job'].get('description', '')}.")
    with st.expander("Assumptions"):
        for line in view.get("assumptions", []):
            st.markdown(f"- {line}")
    memory = pd.DataFrame(view["memory"])
    if not memory.empty:
        st.subheader("Memory per card vs capacity")
        bars = (alt.Chart(memory).mark_bar()
                .encode(x=alt.X("gib:Q", title="memory (GiB)", stack="zero"),
                        y=alt.Y("card:N", title=None, sort=list(dict.fromkeys(memory["card"]))),
                        color=alt.Color("category:N", title="category"),
                        tooltip=["card", "category", "label"]))
        caps = (alt.Chart(memory.drop_duplicates("card").dropna(subset=["capacity_gib"]))
                .mark_tick(color="red", thickness=3, size=24)
                .encode(x="capacity_gib:Q", y=alt.Y("card:N", sort=list(dict.fromkeys(memory["card"]))),
                        tooltip=["card", alt.Tooltip("capacity_gib:Q", title="capacity (GiB)", format=".1f")]))
        _chart(alt.layer(bars, caps))
        st.caption("Bars: estimated peak memory by category; red tick: the card's capacity.")
    scatter = pd.DataFrame(view["time_cost"])
    if not scatter.empty:
        st.subheader("Time vs cost")
        _chart(alt.Chart(scatter).mark_circle(size=120)
               .encode(x=alt.X("hours:Q", title="time to train (hours)"),
                       y=alt.Y("cost:Q", title=view.get("cost_title", "cost (USD)")),
                       color=alt.Color("card:N", title="card"), shape=alt.Shape("basis:N", title="cost basis"),
                       tooltip=["card", alt.Tooltip("hours:Q", title="hours", format=".1f"),
                                alt.Tooltip("cost:Q", title="USD", format=",.0f"), "basis"]))
    rejected = pd.DataFrame(view["rejected"])
    st.subheader("Rejected cards")
    if rejected.empty:
        st.caption("No card was rejected.")
    else:
        st.dataframe(rejected, hide_index=True, key="rec_rejected")
    c1, c2 = st.columns(2)
    buf = io.StringIO()
    ranked.to_csv(buf, index=False)
    c1.download_button("Download CSV", buf.getvalue(), file_name="recommendation.csv", mime="text/csv")
    c2.download_button("Download JSON", json.dumps(view["raw"], indent=2), file_name="recommendation.json",
                       mime="application/json")


# ---------------------------------------------------------------- 4. History

@st.cache_data(ttl=10, show_spinner=False)
def _stored_probes(path: str) -> list[dict[str, Any]]:
    """Every stored probe run's document (newest first) with its store id; cached for 10 s per store file."""
    from advisor.store import HistoryStore

    return [{**record.document, "id": record.id} for record in HistoryStore(path).list_probes(limit=500)]


def _probes_from_store() -> list[dict[str, Any]]:
    from advisor.store import default_store_path

    return _stored_probes(str(default_store_path()))


def _stored_probes_or_notice() -> list[dict[str, Any]] | None:
    """The stored probe documents, or ``None`` after showing why they cannot be read."""
    if _module("advisor.store") is None:
        _missing("history store")
        return None
    try:
        return _probes_from_store()
    except Exception as exc:
        _notice(exc, "Reading the history store")
        return None


def page_history() -> None:
    """History: probe runs from the store, trends per device, compare two runs."""
    import altair as alt

    st.title("History")
    probes = _stored_probes_or_notice()
    if probes is None:
        return
    runs = dd.history_runs_frame(probes)
    if runs.empty:
        st.info("No probe runs stored yet. Run one on **My machine** or with `python -m advisor probe`.")
        return
    st.dataframe(runs, hide_index=True, key="hist_runs")
    trend = dd.history_trend_frame(probes)
    if not trend.empty:
        st.subheader("Trends per device")
        _chart(alt.Chart(trend).mark_line(point=True)
               .encode(x=alt.X("time:T", title="probe time"), y=alt.Y("achieved:Q", title="achieved"),
                       color=alt.Color("series:N", title="kernel / precision"), detail="device:N",
                       tooltip=["device", "series", alt.Tooltip("achieved:Q", format=".4g"), "time:T"])
               .properties(height=220)
               .facet(row=alt.Row("unit:N", title="unit"))
               .resolve_scale(y="independent"))
    st.subheader("Compare two runs")
    labels = list(runs["run"])
    c1, c2 = st.columns(2)
    a = c1.selectbox("Run A", labels, index=min(1, len(labels) - 1), key="hist_a")
    b = c2.selectbox("Run B", labels, index=0, key="hist_b")
    cmp = dd.compare_runs(probes[labels.index(a)], probes[labels.index(b)])
    if cmp.empty:
        st.caption("These two runs have no kernel in common.")
    else:
        st.dataframe(cmp, hide_index=True, key="hist_compare", column_config={
            "change_pct": st.column_config.NumberColumn("B vs A (%)", format="%+.1f%%")})


# ---------------------------------------------------------------- 5. Fleet

def _collectives_section(probes: list[dict[str, Any]]) -> None:
    """Bus bandwidth per collective and message size, from the newest stored collectives run."""
    import altair as alt

    coll = dd.collectives_frame(probes)
    if coll.empty:
        return
    st.subheader(f"Collectives: {coll['ranks'].iloc[0]} ranks, {coll['timestamp'].iloc[0]}")
    _chart(alt.Chart(coll).mark_line(point=True)
           .encode(x=alt.X("size_bytes:Q", title="message size (bytes)", scale=alt.Scale(type="log")),
                   y=alt.Y("busbw_gbs:Q", title="bus bandwidth (GB/s)"), color=alt.Color("op:N", title="collective"),
                   tooltip=["op", "size", alt.Tooltip("busbw_gbs:Q", format=".2f"),
                            alt.Tooltip("link_gbs:Q", title="link spec (GB/s)"),
                            alt.Tooltip("fraction_pct:Q", title="% of link", format=".0f")]))
    st.caption("Bus bandwidth as nccl-tests defines it (e.g. all-reduce: algbw x 2(n-1)/n).")


def page_fleet() -> None:
    """Fleet: per-node, per-GPU heatmap of probe results, stragglers highlighted."""
    import altair as alt

    st.title("Fleet")
    probes = _stored_probes_or_notice()
    if probes is None:
        return
    _collectives_section(probes)
    cells = dd.fleet_frame(probes)
    if cells.empty:
        st.info("No fleet results stored yet. Run `torchrun --nproc-per-node N -m advisor probe --collectives` "
                "(or under `srun` across nodes): rank 0 saves one fleet result per run.")
        return
    metrics = list(dict.fromkeys(cells["metric"]))
    metric = st.selectbox("Measurement", metrics, key="fleet_metric")
    shown = cells[cells["metric"] == metric]
    heat = (alt.Chart(shown).mark_rect()
            .encode(x=alt.X("gpu:O", title="GPU index"), y=alt.Y("node:N", title="node"),
                    color=alt.Color("value:Q", title=shown["unit"].iloc[0], scale=alt.Scale(scheme="viridis")),
                    tooltip=["node", "gpu", "name", alt.Tooltip("value:Q", format=".1f"), "unit",
                             alt.Tooltip("vs_median_pct:Q", title="vs fleet median (%)", format="+.1f")]))
    marks = (alt.Chart(shown[shown["straggler"]]).mark_text(text="▼ slow", color="red", fontWeight="bold")
             .encode(x="gpu:O", y="node:N"))
    values = (alt.Chart(shown).mark_text(color="white", fontSize=13)
              .encode(x="gpu:O", y="node:N", text=alt.Text("value:Q", format=".4g")))
    _chart(alt.layer(heat, values, marks).properties(height=max(120, 40 * shown["node"].nunique())))
    slow = shown[shown["straggler"]]
    if slow.empty:
        st.success(f"No straggler: every GPU is within {dd.STRAGGLER_FRACTION:.0%} of the fleet median.")
    else:
        st.error(f"{len(slow)} straggler(s): more than {dd.STRAGGLER_FRACTION:.0%} below the fleet median.")
        st.dataframe(slow[["node", "gpu", "name", "value", "unit", "vs_median_pct"]], hide_index=True,
                     key="fleet_slow")
    with st.expander("Every GPU"):
        st.dataframe(shown[["node", "gpu", "name", "value", "unit", "vs_median_pct", "straggler"]], hide_index=True,
                     key="fleet_all", column_config={
                         "vs_median_pct": st.column_config.NumberColumn("vs median (%)", format="%+.1f")})


# ---------------------------------------------------------------- navigation

PAGES = {
    "machine": ("My machine", ":material/memory:", page_machine),
    "specs": ("Specs explorer", ":material/table_chart:", page_specs),
    "recommend": ("Recommender", ":material/recommend:", page_recommender),
    "history": ("History", ":material/history:", page_history),
    "fleet": ("Fleet", ":material/lan:", page_fleet),
}

_start = st.session_state.get("start_page", "machine")
navigation = st.navigation([
    st.Page(_guarded(fn), title=title, icon=icon, url_path=slug, default=(slug == _start))
    for slug, (title, icon, fn) in PAGES.items()
])
st.sidebar.caption("gpu-advisor · every figure comes from `advisor/` · guide: `docs/dashboard.md`")
navigation.run()


@st.cache_resource
def _prewarm_chart_libraries() -> threading.Thread:
    """Import pandas and altair in the background once the first page is drawn: the pages with charts
    then open without paying for the imports (about 2 s on a 2-core machine)."""
    thread = threading.Thread(target=lambda: [importlib.import_module(m) for m in ("pandas", "altair")],
                              name="gpu-advisor-prewarm", daemon=True)
    thread.start()
    return thread


_prewarm_chart_libraries()
