"""The dashboard's step-time ranges and evidence (issue 24 item 3) and issue 26's dashboard leftovers.

Ranges in the chart specs and tables, the "within the uncertainty" sentence (the recommendation's own), an upload
that replaces the preset, an upload of a model type with no closed-form model, and the Fleet page on a store that
holds CPU runs only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor import dashboard_data as dd
from advisor.probing.results import DeviceInfo, KernelResult, ProbeResult

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard.py")
TIMEOUT_S = 60
EVIDENCE = {"calibrated", "measured", "literature", "inherited"}


def _app(page: str, *, run: bool = True):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["start_page"] = page
    return at.run() if run else at


def _specs(at) -> list[dict]:
    """Each drawn chart's Vega-Lite spec, its named datasets put back (Streamlit ships them apart, as Arrow)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    specs = []
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        spec["datasets"] = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data).to_dict("records")
                            for d in chart.proto.datasets}
        specs.append(spec)
    return specs


def _range_spec(specs: list[dict], title: str) -> dict:
    return next(s for s in specs if json.dumps(s.get("title", "")).find(title) >= 0)


def _layer(spec: dict, mark: str) -> dict:
    return next(layer for layer in spec["layer"] if layer["mark"]["type"] == mark)


def _rows(spec: dict, layer: dict) -> list[dict]:
    return spec["datasets"][layer["data"]["name"]]


@pytest.fixture
def fresh_cache():
    """The pages' st.cache_data cleared before and after: a test that patches the library must not see old views."""
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


# ---------------------------------------------------------------- ranges: data and chart

def test_every_ranked_row_carries_its_range_and_evidence_and_the_overlap_sentence_is_the_recommendations() -> None:
    from advisor.recommender import recommend

    rec = recommend("llama-3-8b", batch_size=4, seq_len=2048, lora_rank=16, max_gpus=4)
    view = dd.recommendation_view(rec)
    assert len(view["step_ranges"]) == len(rec.rows) == len(view["ranked"])
    for row, record, table in zip(rec.rows, view["step_ranges"], view["ranked"], strict=True):
        assert record["step_s_low"] == row.step_s_low <= record["step_s"] == row.step_s <= record["step_s_high"]
        assert record["step_s_high"] == row.step_s_high and record["evidence"] == row.evidence in EVIDENCE
        assert record["profile"] == row.profile and record["card"] == table["card"]
        assert (table["step low (s)"], table["step high (s)"], table["evidence"]) == (row.step_s_low,
                                                                                     row.step_s_high, row.evidence)
    assert view["uncertainty"] == rec.uncertainty  # the one rule, not a dashboard copy
    points = {p["card"]: p for p in view["time_cost"]}
    best = rec.rows[0]
    assert points[dd.card_label(best.gpu_name, best.num_gpus)]["step_range"] == (
        f"{best.step_s_low:.3g}-{best.step_s_high:.3g} s ({best.evidence})")


def test_the_range_chart_draws_low_to_high_behind_the_estimate_coloured_by_evidence() -> None:
    import pandas as pd

    from advisor.dashboard.charts import PALETTE, step_ranges

    frame = pd.DataFrame([
        {"rank": 2, "card": "B", "segment": "geforce", "step_s": 0.2, "step_s_low": 0.05, "step_s_high": 0.27,
         "evidence": "inherited", "profile": "ada"},
        {"rank": 1, "card": "A", "segment": "datacenter", "step_s": 0.1, "step_s_low": 0.085, "step_s_high": 0.141,
         "evidence": "measured", "profile": "hopper"}])
    spec = step_ranges(frame, "t").to_dict()
    rule, dot, band = _layer(spec, "rule"), _layer(spec, "point"), _layer(spec, "rect")
    assert rule["encoding"]["x"]["field"] == "step_s_low" and rule["encoding"]["x2"]["field"] == "step_s_high"
    assert dot["encoding"]["x"]["field"] == "step_s"
    assert rule["encoding"]["y"]["sort"] == ["A", "B"]  # the best row on top
    colour = rule["encoding"]["color"]
    assert colour["field"] == "evidence" and colour["scale"]["domain"][:4] == list(PALETTE["evidence"])
    tips = {t["field"] for t in rule["encoding"]["tooltip"] if isinstance(t, dict)}
    assert {"evidence", "step_s_low", "step_s_high", "profile"} <= tips
    # the grey band is the best row's range, the one the overlap sentence compares against
    assert band["encoding"]["x"]["field"] == "step_s_low" and band["encoding"]["x2"]["field"] == "step_s_high"
    assert [r["card"] for r in _rows(spec, band)] == ["A"]


def test_fit_view_gives_the_cards_range_and_evidence_when_it_fits() -> None:
    from advisor.recommender import recommend

    rec = recommend("gpt2", batch_size=8, seq_len=1024, gpus=["h100-sxm5-80gb"], max_gpus=1)
    fit = dd.fit_view(rec, "h100-sxm5-80gb")
    row = rec.rows[0]
    assert fit["fits"] and fit["range"] == [dd.step_range_record(row.to_dict())]
    assert f"({row.step_s_low:.3g}-{row.step_s_high:.3g} s ({row.evidence}))" in fit["message"]
    rec = recommend("llama-3-8b", batch_size=4, seq_len=2048, gpus=["rtx-4090"], max_gpus=1)
    assert dd.fit_view(rec, "rtx-4090")["range"] == []  # no step to range when it does not fit


# ---------------------------------------------------------------- ranges: the page

def test_the_recommender_draws_the_ranges_and_says_when_the_top_rows_overlap(
        monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    from advisor.recommendation import Recommendation
    from advisor.recommender import DEFAULT_MAX_GPUS, OBJECTIVES, recommend
    from advisor.workload.options import WorkloadOptions

    at = _app("recommend")
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert {"step low (s)", "step high (s)", "evidence"} <= set(table.columns)
    assert set(table["evidence"]) <= EVIDENCE
    spec = _range_spec(_specs(at), "grey band: the best row's range")
    rule = _layer(spec, "rule")
    rows = _rows(spec, rule)
    assert 1 <= len(rows) <= 12 and all(r["step_s_low"] <= r["step_s"] <= r["step_s_high"] for r in rows)
    assert [r["card"] for r in rows] == list(table["card"])[: len(rows)]
    assert "Step time and its range" in [s.value for s in at.subheader]
    # the page's default job, as the library's defaults give it: the page prints the sentence `recommend` prints
    d = WorkloadOptions()
    rec = recommend("llama-3-8b", batch_size=4, seq_len=2048, lora_rank=16, precision=d.precision,
                    optimizer=d.optimizer, mode="train", gradient_checkpointing=d.gradient_checkpointing,
                    max_gpus=DEFAULT_MAX_GPUS, objective=next(iter(OBJECTIVES)), runtime="eager")
    overlap = [i.value for i in at.info if "within the uncertainty" in i.value]
    assert overlap == ([rec.uncertainty] if rec.uncertainty else [])
    # The sentence on the page is Recommendation.uncertainty's, whatever it says, and absent when it is None.
    import streamlit as st

    st.cache_data.clear()
    monkeypatch.setattr(Recommendation, "uncertainty", property(lambda self: "within the uncertainty: SENTINEL"))
    at = _app("recommend")
    assert [i.value for i in at.info if "within the uncertainty" in i.value] == ["within the uncertainty: SENTINEL"]
    st.cache_data.clear()
    monkeypatch.setattr(Recommendation, "uncertainty", property(lambda self: None))
    at = _app("recommend")
    assert not any("within the uncertainty" in i.value for i in at.info)


# ---------------------------------------------------------------- issue 26: uploads

def test_an_uploaded_config_greys_the_preset_out_and_names_itself(fresh_cache: None) -> None:
    from advisor.workload.presets import get_preset

    config = {**get_preset("llama-3-8b").config, "num_hidden_layers": 4, "_name_or_path": "tiny-llama"}
    at = _app("recommend")
    box = at.selectbox(key="rec_model")
    assert not box.disabled and box.label == "Model preset"
    at.file_uploader(key="rec_upload").upload("config.json", json.dumps(config).encode(), "application/json").run()
    assert not at.exception, [e.value for e in at.exception]
    box = at.selectbox(key="rec_model")
    assert box.disabled and "not used" in box.label
    using = [i.value for i in at.info if i.value.startswith("Costing the uploaded config")]
    assert using and "config.json" in using[0] and "tiny-llama" in using[0] and "model_type llama" in using[0]
    assert any(s.value == "Ranked cards for tiny-llama" for s in at.subheader)
    at.file_uploader(key="rec_upload").clear().run()  # the preset is what is costed again
    assert not at.exception
    box = at.selectbox(key="rec_model")
    assert not box.disabled and box.label == "Model preset" and box.value == "llama-3-8b"
    assert not any(i.value.startswith("Costing the uploaded") for i in at.info)
    assert any(s.value == "Ranked cards for llama-3-8b" for s in at.subheader)


def test_an_upload_with_no_closed_form_model_gets_the_clis_error_and_hint(
        monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    """Issue 26 item 9: a mamba upload without transformers blamed the LoRA / checkpointing boxes."""
    import advisor.workload.hf as hf
    from advisor.errors import WorkloadError
    from advisor.workload import from_config

    def no_transformers() -> None:
        raise ImportError(hf.INSTALL_HINT)

    monkeypatch.setattr(hf, "_transformers", no_transformers)
    mamba = {"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280,
             "state_size": 16}
    with pytest.raises(WorkloadError) as cli:  # what `estimate --model mamba/config.json` says on such a host
        from_config(mamba, batch_size=4, seq_len=2048)
    assert dd.model_inputs(mamba) == frozenset({"seq_len"}) and not dd.has_analytic_model(mamba)
    at = _app("recommend")
    at.file_uploader(key="rec_upload").upload("config.json", json.dumps(mamba).encode(), "application/json").run()
    assert not at.exception, [e.value for e in at.exception]
    keys = {w.key for w in at.checkbox} | {w.key for w in at.number_input}
    assert "rec_seq" in keys and not keys & {"rec_lora", "rec_ckpt", "rec_lora_rank"}
    warnings = [w.value for w in at.warning]
    assert any(cli.value.message in w and f"Hint: {cli.value.hint}" in w for w in warnings), warnings
    assert not any("lora" in w.lower() or "checkpointing" in w for w in warnings)
    # a config that names no size is refused before transformers: the same error as the CLI's, with its hint
    at.file_uploader(key="rec_upload").upload("config.json", b'{"model_type": "mamba"}', "application/json").run()
    assert not at.exception
    assert any("unsupported model_type 'mamba'" in w.value and "Hint: accepted:" in w.value for w in at.warning)


# ---------------------------------------------------------------- issue 26: the fleet on a CPU-only store

def _cpu_probe(host: str = "laptop") -> ProbeResult:
    cpu = DeviceInfo(index=0, kind="cpu", backend="cpu", name="AMD EPYC 7B13", memory_total_bytes=8 * 2**30)
    kernels = (KernelResult(name="matmul", precision="fp32", shape="512x512x512", device_index=0, device="cpu",
                            value=0.05, unit="TFLOP/s"),
               KernelResult(name="memory_copy", precision=None, shape=None, device_index=0, device="cpu",
                            value=9.0, unit="GB/s"))
    return ProbeResult(timestamp="2026-12-07T05:00:00+00:00", host=host, versions={}, devices=(cpu,), kernels=kernels,
                       verdicts=(), backend="cpu")


def test_fleet_leaves_cpus_out_and_says_why_it_is_empty() -> None:
    cpu = _cpu_probe().to_dict()
    assert dd.fleet_frame([cpu]).empty
    reason = dd.fleet_empty_reason([cpu])
    assert reason.startswith("No GPU probes stored") and "laptop" in reason and "python -m advisor probe" in reason
    assert dd.fleet_empty_reason([]).startswith("No probe runs stored")
    gpu = ProbeResult(timestamp="2026-12-07T06:00:00+00:00", host="gpu-box", versions={},
                      devices=(DeviceInfo(index=0, kind="gpu", backend="nvml", name="NVIDIA H100 80GB HBM3",
                                          catalog_id="h100-sxm5-80gb"),),
                      kernels=(KernelResult(name="matmul", precision="bf16", shape="8192", device_index=0,
                                            device="cuda:0", value=700.0, unit="TFLOP/s"),),
                      verdicts=(), backend="nvml").to_dict()
    frame = dd.fleet_frame([cpu, gpu])
    assert list(frame["node"]) == ["gpu-box"] and list(frame["name"]) == ["NVIDIA H100 80GB HBM3"]


def test_the_fleet_page_on_a_cpu_only_store_says_so_and_what_to_run(fresh_cache: None) -> None:
    from advisor.store import HistoryStore

    HistoryStore().save_probe(_cpu_probe())
    at = _app("fleet")
    assert not at.exception, [e.value for e in at.exception]
    infos = [i.value for i in at.info]
    assert any(i.startswith("No GPU probes stored") and "`python -m advisor probe` on a GPU machine" in i
               for i in infos), infos
    assert not at.success and not at.dataframe and not at.get("vega_lite_chart")  # no "every GPU is within 5%"


def test_two_runs_on_different_devices_are_not_compared() -> None:
    """A CPU run and a GPU run both hold a device 0; the History page set them side by side as "-100%"."""
    gpu = ProbeResult(timestamp="2026-12-07T06:00:00+00:00", host="gpu-box", versions={},
                      devices=(DeviceInfo(index=0, kind="gpu", backend="nvml", name="NVIDIA H100 80GB HBM3"),),
                      kernels=(KernelResult(name="matmul", precision="fp32", shape="8192", device_index=0,
                                            device="cuda:0", value=50.0, unit="TFLOP/s"),),
                      verdicts=(), backend="nvml").to_dict()
    assert dd.compare_runs(gpu, _cpu_probe().to_dict()).empty
    assert list(dd.compare_runs(gpu, gpu)["kernel"]) == ["matmul"]


def test_an_inference_job_is_costed_as_time_to_serve() -> None:
    """The ranked table's time column and the time vs cost charts name the job's time (ranking.JOB_TIME_WORDS)."""
    from advisor.dashboard.charts import time_cost
    from advisor.dashboard_data.recommender import recommendation_view
    from advisor.recommender import recommend

    for mode, words in (("infer", "time to serve"), ("train", "time to train")):
        view = recommendation_view(recommend("gpt2", calibration=None, max_gpus=1, mode=mode,
                                             gpus=["h100-sxm5-80gb", "a100-sxm4-80gb"]))
        assert f"{words} (h)" in view["ranked"][0], (mode, list(view["ranked"][0]))
        import pandas as pd

        spec = time_cost(pd.DataFrame(view["time_cost"]), "cloud_usd", "cloud (USD)", "t", time_words=words).to_dict()
        assert f"{words} (hours)" in str(spec)
