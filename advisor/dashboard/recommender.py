"""Recommender: a workload in, ranked cards out (memory per card, time vs cost); does it fit on my card."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import streamlit as st

from advisor import dashboard_data as dd
from advisor.dashboard import common
from advisor.errors import AdvisorError
from advisor.ranking import JOB_TIME_WORDS

if TYPE_CHECKING:
    import pandas as pd

#: Upload limit for config.json files (a real HF config is a few KiB).
MAX_UPLOAD_BYTES = 1024 * 1024
DEFAULT_MODEL = "llama-3-8b"
#: How many ranked rows the step-range chart shows (the best first; the table has them all).
RANGE_ROWS = 12
FORMATS = {"memory per GPU (GiB)": "{:,.1f}", "headroom (GiB)": "{:,.1f}", "step (s)": "{:.3g}",
           "step low (s)": "{:.3g}", "step high (s)": "{:.3g}",
           "samples/s": "{:,.0f}", "GPU alone (samples/s)": "{:,.0f}", "tokens/s": "{:,.0f}",
           **{f"{words} (h)": "{:,.3g}" for words in JOB_TIME_WORDS.values()},
           "cloud cost of the job (USD)": "${:,.2f}", "purchase cost of the cards (USD)": "${:,.0f}",
           "break-even (h)": "{:,.0f}", "energy (kWh)": "{:,.3g}"}


def _page_words(line: str) -> str:
    """A ``recommend`` summary line as the page says it: its per-card pointer names this page's columns."""
    head, sep, _ = line.partition(" (per card: --json rows'")
    return f"{head} (per card: the table's 'cloud price' and 'purchase price' columns; hover a chart's point)" if sep \
        else line


def _read_upload(upload: Any) -> dict[str, Any]:
    """Parse an uploaded config.json: JSON only, size-limited, must be an object."""
    return dd.parse_config_json(upload.getvalue(), name=upload.name, max_bytes=MAX_UPLOAD_BYTES)


@st.cache_data(show_spinner="Ranking cards…", max_entries=64)
def _recommend(model_json: str, options_json: str) -> dict[str, Any]:
    """Cached ``recommend()`` shaped for the page (keyed by the inputs' JSON).

    The memory bars come with its rows.
    """
    from advisor.recommender import recommend

    return dd.recommendation_view(recommend(json.loads(model_json), **json.loads(options_json)))


@st.cache_data(show_spinner="Checking the card…", max_entries=64)
def _fit(model_json: str, options_json: str, card: str) -> dict[str, Any]:
    """Does the workload fit on one ``card``: ``recommend`` restricted to it, at one GPU."""
    from advisor.recommender import recommend

    options = {**json.loads(options_json), "gpus": [card], "max_gpus": 1}
    options.pop("budget_usd", None)
    return dd.fit_view(recommend(json.loads(model_json), **options), card)


def _config_words(config: dict[str, Any]) -> str:
    """``model_type llama; my-small-llama``: what an uploaded config says it is."""
    words = [f"model_type {config['model_type']}" if isinstance(config.get("model_type"), str) else "no model_type"]
    if isinstance(config.get("_name_or_path"), str) and config["_name_or_path"]:
        words.append(config["_name_or_path"])
    if not dd.has_analytic_model(config):
        words.append("no closed-form model: built with transformers and traced, so LoRA and checkpointing do not "
                     "apply")
    return "; ".join(words)


def _presets() -> list[str]:
    wl = common.module("advisor.workload")
    if wl is None or not hasattr(wl, "list_presets"):
        return [DEFAULT_MODEL]
    names = [p if isinstance(p, str) else getattr(p, "name", str(p)) for p in wl.list_presets()]
    return names or [DEFAULT_MODEL]


def _my_card() -> tuple[str | None, Any]:
    """The catalogued card in this machine, and the CPU device when there is no GPU.

    The card is the first GPU the probe's inventory finds with a catalog id.
    """
    devices, _ = common.devices()
    for info in devices or []:
        if common.is_gpu(info) and getattr(info, "catalog_id", None):
            return info.catalog_id, None
    cpu = next((d for d in devices or [] if not common.is_gpu(d)), None)
    return None, cpu


def _form(model: Any) -> dict[str, Any]:
    """The workload form; only the inputs that mean something for this model are shown."""
    from advisor.ranking import TIE_BREAKS
    from advisor.recommender import DEFAULT_MAX_GPUS, OBJECTIVES
    from advisor.workload.options import WorkloadOptions

    defaults = WorkloadOptions()  # the library's defaults, as the CLI's and the API's (docs/dashboard.md)

    inputs = dd.model_inputs(model)
    specs = common.specs_frame()
    if st.session_state.get("rec_form_model") != model:  # a new model starts from its own image size
        st.session_state["rec_form_model"] = model
        st.session_state["rec_image"] = dd.default_image_size(model)
    with st.form("rec_form"):
        a, b, c, d = st.columns(4)
        batch = a.number_input("Batch size", 1, 65536, 32 if "image_size" in inputs else 4, key="rec_batch")
        seq = image = None
        if "seq_len" in inputs:
            seq = b.number_input("Sequence length (tokens)", 1, 1_000_000, 2048, key="rec_seq")
        else:
            image = b.number_input("Image size (px)", 16, 4096, key="rec_image")
        precision = c.selectbox("Precision", list(dd.PRECISIONS), index=list(dd.PRECISIONS).index(defaults.precision),
                                key="rec_precision")
        mode = d.selectbox("Mode", ["train", "infer"], key="rec_mode")
        a, b, c, d = st.columns(4)
        optimizers: list[str] = list(dd.OPTIMIZERS)
        optimizer = a.selectbox("Optimizer (training)", optimizers,
                                index=optimizers.index(defaults.optimizer or optimizers[0]), key="rec_optimizer")
        checkpointing, lora, lora_rank = False, False, 16
        if "gradient_checkpointing" in inputs:
            checkpointing = b.checkbox("Gradient checkpointing", value=defaults.gradient_checkpointing,
                                       key="rec_ckpt")
            lora = c.checkbox("LoRA fine-tuning", value=True, key="rec_lora")
            lora_rank = d.number_input("LoRA rank", 1, 1024, 16, key="rec_lora_rank")
        a, b, c, d = st.columns(4)
        max_gpus = a.number_input("Max GPUs", 1, 64, DEFAULT_MAX_GPUS, key="rec_gpus")
        objective = b.selectbox("Objective", list(OBJECTIVES), key="rec_objective",
                                help="what to rank by (recommend's objectives; rental and purchase cost apart where "
                                     "the library offers both)")
        budget = c.number_input("Budget (USD, 0 = none)", 0.0, 10_000_000.0, 0.0, step=500.0, key="rec_budget")
        loader = d.number_input("Data loader (samples/s, 0 = assumed)", 0.0, 1e9, 0.0, step=100.0, key="rec_loader",
                                help="what your input pipeline delivers (whole host); 0 uses the stated assumption "
                                     "(vision presets: CPU JPEG decode, 150 images/s per core x 8 cores per GPU)")
        a, b, c, d = st.columns(4)
        runtime = a.selectbox("Runtime", ["eager", "graph"], key="rec_runtime",
                              help="eager: plain PyTorch, whose per-op host dispatch can bound small steps; graph: "
                                   "CUDA graphs / torch.compile reduce-overhead / TensorRT / vLLM / llama.cpp")
        then = b.selectbox("Ties ranked by", ["default", *TIE_BREAKS], key="rec_then",
                           help="what orders cards that tie on the objective (e.g. all capped by the same data "
                                "loader); default: the GPUs' own speed for time, time for the other objectives")
        cards = st.multiselect("Only these cards (empty = every card in the catalog)", list(specs["name"]),
                               key="rec_cards")
        st.form_submit_button("Recommend", type="primary")
    return dd.recommend_options(batch_size=int(batch), seq_len=None if seq is None else int(seq),
                                image_size=None if image is None else int(image), precision=precision,
                                optimizer=optimizer or optimizers[0], mode=mode, gradient_checkpointing=checkpointing,
                                lora_rank=int(lora_rank) if lora else None, max_gpus=int(max_gpus),
                                objective=objective, budget_usd=budget or None, model=model, runtime=runtime,
                                loader_samples_per_s=loader or None, then=None if then == "default" else then,
                                gpus=[dict(zip(specs["name"], specs["id"], strict=True))[n] for n in cards])


def _memory_chart(records: list[dict[str, Any]], title: str, caption: str) -> None:
    import pandas as pd

    from advisor.dashboard import charts

    memory = pd.DataFrame(records)
    if memory.empty:
        return
    st.subheader(title)
    common.chart(charts.memory_bars(memory))
    st.caption(caption)


def _cost_charts(view: dict[str, Any]) -> None:
    """Time vs cost, with rental and purchase on separate charts (never on one axis)."""
    import pandas as pd

    from advisor.dashboard import charts

    points = pd.DataFrame(view["time_cost"])
    if points.empty:
        return
    st.subheader("Time vs cost")
    st.caption(f"Colour: segment; the best {charts.TOP_LABELS} rows are labelled, hover any point for its card. "
               "Renting and buying are different decisions, so they are charted apart.")
    c1, c2 = st.columns(2)
    for col, key, title, axis in (
            (c1, "cloud_usd", "Renting: cloud cost of this job", "cloud cost of the job (USD)"),
            (c2, "buy_usd", "Buying: purchase price of the cards", "purchase price (USD)")):
        with col:
            if points[key].notna().any():
                common.chart(charts.time_cost(points, key, axis, title,
                                              time_words=view["job"].get("time_words") or "time to train"))
            else:
                st.caption(f"{title}: no ranked card has this price in the catalog.")
    prices = [_page_words(line) for line in view.get("summary", []) if line.startswith("prices:")]
    if prices:  # the ranking's own dating line, under the charts as above the table
        st.caption(prices[0])


FIT_FORMATS = {"memory per GPU (GiB)": "{:,.1f}", "step (s)": "{:.3g}", "samples/s": "{:,.3g}",
               "cloud (USD/h)": "${:,.2f}", "to buy (USD)": "${:,.0f}"}


def _range_chart(records: list[dict[str, Any]], title: str) -> None:
    """Step time with its low..high range per row, coloured by the evidence it rests on."""
    import pandas as pd

    from advisor.dashboard import charts
    from advisor.estimator.uncertainty import RANGE_SOURCE

    ranges = pd.DataFrame(records)
    if ranges.empty:
        return
    common.chart(charts.step_ranges(ranges, title))
    st.caption("Line: the step time's likely range, low .. high; dot: the estimate; colour: the evidence behind the "
               "card's figures (calibrated: a probe of this card, narrowest; measured: its architecture's profile "
               "rests on measurements; literature / inherited: published figures or a related architecture's, "
               f"widest). The range is the {RANGE_SOURCE}.")


def _fit_options_table(records: list[dict[str, Any]], key: str) -> None:
    """What would make it fit, smallest change first: the same table as the CLI's."""
    import pandas as pd

    if not records:
        return
    st.markdown("**What would make it fit** (smallest change first)")
    st.dataframe(dd.display_frame(pd.DataFrame(records), FIT_FORMATS), hide_index=True, key=key)
    st.caption("Each row is the estimator's own estimate with the changes applied; 'settings' are the matching "
               "`estimate` / `recommend` options.")


def _fit_section(model: Any, model_json: str, options: dict[str, Any]) -> None:
    """Does it fit on my card: starts from the card in this machine (the probe's inventory)."""
    st.subheader("Does it fit on my card?")
    specs = common.specs_frame()
    ids = list(specs["id"])
    mine, cpu = _my_card()
    if mine:
        st.caption("Starting from the card in this machine (the probe's inventory); pick another to compare.")
    elif cpu is not None:
        total = getattr(cpu, "memory_total_bytes", None)
        from advisor.units import format_bytes

        st.caption(f"This machine has no GPU (CPU: {getattr(cpu, 'name', None) or 'unknown'}, "
                   f"{format_bytes(total) if total else 'unknown'} of RAM); pick a card.")
    default = ids.index(mine) if mine in ids else (ids.index("rtx-4090") if "rtx-4090" in ids else 0)
    name = st.selectbox("Card", list(specs["name"]), index=default, key="fit_card")
    card = ids[list(specs["name"]).index(name)]
    try:
        fit = _fit(model_json, json.dumps({k: v for k, v in options.items() if k != "gpus"}, sort_keys=True), card)
    except AdvisorError as exc:
        common.notice(exc, "The fit check")
        return
    if fit["fits"]:
        st.success(fit["message"], icon=":material/check_circle:")
    elif fit["fits"] is False:
        st.error(fit["message"], icon=":material/block:")
    else:
        st.warning(fit["message"], icon=":material/warning:")
    if cpu is not None and not mine and fit["needed_bytes"] and getattr(cpu, "memory_total_bytes", None):
        from advisor.units import format_bytes

        need, ram = fit["needed_bytes"], cpu.memory_total_bytes
        st.caption(f"On this machine's CPU the same job would need about {format_bytes(need)} of RAM; it has "
                   f"{format_bytes(ram)} ({'enough' if need <= ram else 'not enough'}).")
    _fit_options_table(fit.get("options", []), "fit_options")
    _memory_chart(fit["memory"], f"Memory on one {fit['card']}", "Bars: estimated peak memory by category; "
                  "red tick: usable memory of the card.")
    _range_chart(fit.get("range", []), f"Step time on one {fit['card']}, with its range")
    if fit.get("time"):
        import pandas as pd

        st.markdown(f"**Where a step's time goes on one {fit['card']}**")
        st.dataframe(dd.display_frame(pd.DataFrame(fit["time"]), {"ms": "{:.2f}", "share": "{:.0%}"}),
                     hide_index=True, key="fit_time")
        st.caption("Estimated time per op class (the host's exposed dispatch time included) and what would make "
                   "each class faster on this card: the same table as `estimate --breakdown`.")


def _model_choice() -> tuple[Any, str] | None:
    """The model to cost, a preset or an uploaded config, and its label; ``None`` when the upload is bad."""
    presets = _presets()
    # The uploader's value is known before it is drawn: while a file is uploaded, the preset box is greyed out and
    # says so, so that only one model looks chosen.
    uploaded = st.session_state.get("rec_upload") is not None
    c1, c2 = st.columns([2, 1])
    with c1:
        model_name = st.selectbox("Model preset (not used: the uploaded config is costed)" if uploaded
                                  else "Model preset", presets,
                                  index=presets.index(DEFAULT_MODEL) if DEFAULT_MODEL in presets else 0,
                                  key="rec_model", disabled=uploaded,
                                  help="remove the uploaded file (its x) to pick a preset again" if uploaded
                                  else None)
    with c2:
        upload = st.file_uploader("…or upload a config.json", type=["json"], key="rec_upload",
                                  max_upload_size=1, help="Hugging Face-style config.json, 1 MB at most; "
                                  "parsed as JSON, never unpickled.")
    if upload is None:
        return model_name, model_name
    try:
        model = _read_upload(upload)
    except AdvisorError as exc:
        common.notice(exc, "The uploaded config")
        return None
    st.info(f"Costing the uploaded config **{upload.name}** ({_config_words(model)}), not a preset. "
            "Remove the file to go back to the presets.", icon=":material/upload_file:")
    name = model.get("_name_or_path")
    return model, name if isinstance(name, str) and name else upload.name


def _ranked_table(view: dict[str, Any], ranked: pd.DataFrame, label: str) -> None:
    """What decides the ranking (a tie, the cheapest cards, the prices' dates), then the ranked table."""
    st.subheader(f"Ranked cards for {label}")
    st.caption(view["workload"])
    tie = view.get("tie")
    for line in view.get("summary", []):  # what decides the ranking leads it
        if tie is not None and line == tie.get("message"):
            st.info(line, icon=":material/balance:")
        else:
            st.caption(_page_words(line))
    if view.get("uncertainty"):  # the recommendation's own sentence, as `recommend` prints it
        st.info(view["uncertainty"], icon=":material/straighten:")
    if ranked.empty:
        st.warning("No card fits this workload with these settings; see the rejected cards below.")
        if view.get("partial"):
            st.info(view["partial"])
        _fit_options_table(view.get("fit_options", []), "rec_fit_options")
    else:
        st.dataframe(dd.display_frame(ranked, FORMATS), hide_index=True, key="rec_table")
    if view.get("job"):
        words = view["job"].get("time_words") or "time to train"
        st.caption(f"{words[0].upper()}{words[1:]} covers: {view['job'].get('description', '')}.")


def _rejected_and_downloads(view: dict[str, Any], ranked: pd.DataFrame) -> None:
    import pandas as pd

    rejected = pd.DataFrame(view["rejected"])
    st.subheader("Rejected cards")
    if rejected.empty:
        st.caption("No card was rejected.")
    else:
        st.dataframe(dd.display_frame(rejected), hide_index=True, key="rec_rejected")
    c1, c2 = st.columns(2)
    buf = io.StringIO()
    ranked.to_csv(buf, index=False)
    c1.download_button("Download CSV", buf.getvalue(), file_name="recommendation.csv", mime="text/csv")
    c2.download_button("Download JSON", json.dumps(view["raw"], indent=2), file_name="recommendation.json",
                       mime="application/json")


def page() -> None:
    """Recommender: a workload in, ranked cards out, with memory breakdown and cost."""
    import pandas as pd

    st.title("Recommender")
    if common.module("advisor.recommender") is None:
        common.missing("recommend")
        return
    choice = _model_choice()
    if choice is None:
        return
    model, label = choice
    options = _form(model)
    model_json = json.dumps(model, sort_keys=True)
    try:
        view = _recommend(model_json, json.dumps(options, sort_keys=True))
    except AdvisorError as exc:  # anything else is a bug: the page's guard shows and logs it
        common.notice(exc, "The recommendation")
        return
    ranked = pd.DataFrame(view["ranked"])
    _ranked_table(view, ranked, label)
    with st.expander("Assumptions"):
        for line in view.get("assumptions", []):
            st.markdown(f"- {line}")
    if not ranked.empty:
        shown = min(RANGE_ROWS, len(ranked))
        st.subheader("Step time and its range")
        rows = f"The best {shown} of {len(ranked)} rows" if shown < len(ranked) else "Every ranked row"
        _range_chart(view["step_ranges"][:RANGE_ROWS], f"{rows}; grey band: the best row's range")
    _memory_chart(view["memory"], "Memory per card vs capacity",
                  "Bars: estimated peak memory per GPU by category; red tick: the card's usable memory.")
    _cost_charts(view)
    _rejected_and_downloads(view, ranked)
    _fit_section(model, model_json, options)
