"""The dashboard: pure table helpers (advisor.dashboard_data) and every page through AppTest."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

from advisor import dashboard_data as dd
from advisor.catalog import get_gpu, load_specs
from advisor.errors import WorkloadError
from advisor.probing.results import DeviceInfo, KernelResult, ProbeResult, Verdict

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard.py")
TIMEOUT_S = 30


def _has(module: str, attr: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


# ---------------------------------------------------------------- fakes

def _h100(index: int = 0, **kw: object) -> DeviceInfo:
    base: dict[str, object] = dict(index=index, kind="gpu", backend="nvml", name="NVIDIA H100 80GB HBM3",
                                   catalog_id="h100-sxm5-80gb", memory_total_bytes=80 * 2**30,
                                   memory_used_bytes=2 * 2**30, temperature_c=41, power_draw_w=110.0,
                                   power_limit_w=700.0, sm_clock_mhz=1980, sm_clock_max_mhz=1980, pcie_gen=5,
                                   pcie_width=16, utilization_gpu_pct=3)
    base.update(kw)
    return DeviceInfo(**base)  # type: ignore[arg-type]


class FakeBackend:
    """Two H100s, the second one lost: the STYLE.md FakeNvml shape."""

    name = "fake"

    def __init__(self, devices: list[DeviceInfo]) -> None:
        self.devices = devices
        self.calls = 0

    def device_count(self) -> int:
        return len(self.devices)

    def device_info(self, index: int) -> DeviceInfo:
        self.calls += 1
        return self.devices[index]


def _kernel(name: str, value: float, unit: str, precision: str | None = None, *, index: int = 0,
            shape: str | None = None, spec: float | None = None) -> KernelResult:
    return KernelResult(name=name, precision=precision, shape=shape, device_index=index, device=f"cuda:{index}",
                        value=value, unit=unit, spec_peak=spec, fraction_of_peak=None if spec is None else value / spec)


def _probe_doc(host: str = "node-a", stamp: str = "2026-11-20T10:00:00+00:00", matmul: float = 700.0,
               copy: float = 3000.0, n_gpus: int = 1) -> dict:
    devices = tuple(_h100(i) for i in range(n_gpus))
    kernels = []
    for i in range(n_gpus):
        kernels += [_kernel("matmul", matmul * 0.5, "TFLOP/s", "bf16", index=i, shape="2048x2048x2048", spec=989.4),
                    _kernel("matmul", matmul, "TFLOP/s", "bf16", index=i, shape="8192x8192x8192", spec=989.4),
                    _kernel("memory_copy", copy, "GB/s", index=i, spec=3350.0),
                    _kernel("launch", 4.0, "us", index=i)]
    return ProbeResult(timestamp=stamp, host=host, versions={}, devices=devices, kernels=tuple(kernels),
                       verdicts=(Verdict("warning", "pcie_downgraded", "running at PCIe 4 x16", "max 5 x16", 0),),
                       backend="fake").to_dict()


# ---------------------------------------------------------------- pure helpers

def test_specs_frame_has_one_row_per_card_and_the_derived_figures() -> None:
    specs = load_specs()
    frame = dd.specs_frame(specs)
    assert len(frame) == len(specs) and frame["id"].is_unique
    row = frame.set_index("id").loc["rtx-4090"]
    assert row["peak_precision"] == "bf16" and row["peak_tflops"] == pytest.approx(165.2)
    assert row["tflops_per_kusd"] == pytest.approx(165.2 / 1599 * 1000)
    assert row["tflops_per_w"] == pytest.approx(165.2 / 450)
    assert row["bytes_per_flop"] == pytest.approx(1008e9 / 165.2e12)
    assert (row["price_note"], row["cloud_note"]) == ("list, 2022-09", "gpu cloud, 2025-07")


def test_filter_specs_by_vendor_segment_memory_and_price() -> None:
    frame = dd.specs_frame(load_specs())
    assert set(dd.filter_specs(frame, segments=["geforce"])["segment"]) == {"geforce"}
    big = dd.filter_specs(frame, min_memory_gb=48)
    assert (big["memory_gb"] >= 48).all() and "rtx-4090" not in set(big["id"])
    cheap = dd.filter_specs(frame, max_price_usd=2000, include_unpriced=False)
    assert (cheap["price_usd"] <= 2000).all() and "rtx-4090" in set(cheap["id"])
    with_unpriced = dd.filter_specs(frame, max_price_usd=2000, include_unpriced=True)
    assert len(with_unpriced) >= len(cheap)
    assert dd.filter_specs(frame, vendors=["nosuchvendor"]).empty


def test_compare_frame_puts_cards_side_by_side_with_units_and_sources() -> None:
    table = dd.compare_frame([get_gpu("rtx-4090"), get_gpu("h100-sxm5-80gb")])
    assert list(table.columns) == [get_gpu("rtx-4090").name, get_gpu("h100-sxm5-80gb").name]
    assert table.loc["Memory bandwidth", get_gpu("rtx-4090").name] == "1,008 GB/s"
    assert table.loc["Source", get_gpu("rtx-4090").name].startswith("NVIDIA Ada")
    assert "PCIe 4 x16" in table.loc["PCIe (one direction)", get_gpu("rtx-4090").name]


def test_parse_config_json_accepts_an_object_and_rejects_everything_else() -> None:
    assert dd.parse_config_json(b'{"hidden_size": 4096}') == {"hidden_size": 4096}
    with pytest.raises(WorkloadError, match="limited to"):
        dd.parse_config_json(b"{" + b" " * 2000 + b"}", max_bytes=1000)
    with pytest.raises(WorkloadError, match="not valid JSON"):
        dd.parse_config_json(b"\x80\x04\x95 pickle bytes".replace(b"\x80\x04\x95", b"cos\nsystem"))
    with pytest.raises(WorkloadError, match="not UTF-8"):
        dd.parse_config_json(b"\x80\x04\x95\x00")
    with pytest.raises(WorkloadError, match="not an object"):
        dd.parse_config_json(b"[1, 2]")


def test_recommend_options_pass_the_size_that_the_model_uses() -> None:
    common = dict(batch_size=4, seq_len=2048, image_size=224, precision="amp-bf16", optimizer="adamw",
                  gradient_checkpointing=False, lora_rank=16, max_gpus=1, objective="time", budget_usd=None)
    llm = dd.recommend_options(model="llama-3-8b", mode="train", **common)
    assert llm["seq_len"] == 2048 and "image_size" not in llm and llm["lora_rank"] == 16
    cnn = dd.recommend_options(model="resnet50", mode="train", **common)
    assert cnn["image_size"] == 224 and "seq_len" not in cnn
    assert "lora_rank" not in cnn and "gradient_checkpointing" not in cnn  # a CNN has no LoRA / checkpointing inputs
    infer = dd.recommend_options(model={"hidden_size": 8}, mode="infer", **common)
    assert "optimizer" not in infer and "lora_rank" not in infer and "budget_usd" not in infer
    assert dd.model_inputs("resnet50") == {"image_size"}
    assert dd.model_inputs("llama-3-8b") == {"seq_len", "lora_rank", "gradient_checkpointing"}
    assert dd.recommend_options(model="llama-3-8b", mode="train", gpus=["rtx-4090"], **common)["gpus"] == ["rtx-4090"]
    assert llm["runtime"] == "eager"
    assert dd.recommend_options(model="llama-3-8b", mode="infer", runtime="graph", **common)["runtime"] == "graph"


def test_device_summary_formats_units_and_keeps_only_its_verdicts() -> None:
    verdicts = [Verdict("warning", "pcie", "link below max", "gen 4", 0), Verdict("ok", "ecc", "fine", "", 1)]
    d = dd.device_summary(_h100(), verdicts)
    assert d["memory"] == "2.0 / 80.0 GiB" and d["temperature"] == "41 °C" and d["power"] == "110 W / 700 W"
    assert [v["check"] for v in d["verdicts"]] == ["pcie"] and d["verdicts"][0]["level"] == "warn"
    lost = dd.device_summary(DeviceInfo(index=2, error="GPU is lost"))
    assert lost["error"] == "GPU is lost" and lost["memory"] == "n/a"


def _watch_row(info: DeviceInfo) -> dict:
    from advisor.probing.watch import Snapshot, device_rows

    return device_rows(None, Snapshot(0.0, (info,)))[0]


def test_live_frame_drops_unreported_counters() -> None:
    rows = [dd.live_sample_row(_watch_row(_h100()), 0.0),
            dd.live_sample_row(_watch_row(_h100(temperature_c=None)), 2.0)]
    frame = dd.live_frame(rows)
    temps = frame[frame["metric"] == "temperature (°C)"]
    assert list(temps["value"]) == [41.0]
    assert set(frame[frame["t_s"] == 2.0]["metric"]) == {label for _, label in dd.LIVE_METRICS} - {"temperature (°C)"}
    mem = frame[(frame["metric"] == "memory used (GiB)") & (frame["t_s"] == 0.0)]
    assert list(mem["value"]) == [2.0]


def test_kernel_frame_keeps_the_best_size_and_its_fraction_of_spec() -> None:
    frame = dd.kernel_frame(_probe_doc(matmul=700.0))
    matmul = frame[frame["kernel"] == "matmul"].iloc[0]
    assert matmul["achieved"] == 700.0 and matmul["efficiency_pct"] == pytest.approx(100 * 700 / 989.4)
    assert "launch" not in set(frame["kernel"])  # per-launch microseconds are not a throughput


def test_matmul_intensity_and_roofline() -> None:
    # 2*n^3 FLOP over 3*n^2 two-byte elements: n/3 FLOP per byte.
    assert dd.matmul_intensity("8192x8192x8192", "bf16") == pytest.approx(8192 / 3)
    assert dd.matmul_intensity(None, "bf16") is None
    specs = {s.id: s.to_dict() for s in load_specs()}
    roof = dd.roofline_frame(_probe_doc(), specs)
    bf16 = roof["lines"][roof["lines"]["roof"] == "bf16 spec"]
    assert bf16["tflops"].max() == pytest.approx(get_gpu("h100-sxm5-80gb").bf16_tflops)
    assert len(roof["points"]) == 2 and roof["points"]["tflops"].max() == 700.0
    cpu_only = {"devices": [{"index": 0, "catalog_id": None}], "kernels": []}
    assert roof["lines"].shape[0] > 0 and dd.roofline_frame(cpu_only, specs)["lines"].empty


def test_history_helpers_and_run_comparison() -> None:
    runs = [_probe_doc(stamp="2026-11-20T10:00:00+00:00", matmul=700.0),
            _probe_doc(stamp="2026-11-21T10:00:00+00:00", matmul=630.0)]
    table = dd.history_runs_frame(runs)
    assert list(table["best matmul (TFLOP/s)"]) == [700.0, 630.0]
    trend = dd.history_trend_frame(runs)
    assert set(trend["series"]) == {"matmul bf16 (TFLOP/s)", "memory_copy (GB/s)"}
    cmp = dd.compare_runs(runs[0], runs[1]).set_index("kernel")
    assert cmp.loc["matmul", "change_pct"] == pytest.approx(-10.0)
    assert cmp.loc["memory_copy", "change_pct"] == pytest.approx(0.0)


def test_the_fleet_page_flags_stragglers_with_the_probes_rule() -> None:
    from advisor.probing.collectives import STRAGGLER_FRACTION, find_stragglers

    assert dd.STRAGGLER_FRACTION == STRAGGLER_FRACTION == 0.05
    assert find_stragglers({"a": 100.0, "b": 99.0, "c": 94.0, "d": 101.0, "e": None, "f": math.nan}) == ["c"]
    assert find_stragglers({"x": None}) == [] and find_stragglers({"x": 1.0, "y": math.nan}) == []


def test_fleet_frame_takes_each_nodes_newest_run_and_flags_the_slow_gpu() -> None:
    old = _probe_doc(host="node-b", stamp="2026-11-01T00:00:00+00:00", matmul=100.0, n_gpus=2)
    docs = [_probe_doc(host="node-a", matmul=700.0, n_gpus=2), _probe_doc(host="node-b", matmul=690.0, n_gpus=2),
            old]
    slow = _probe_doc(host="node-c", matmul=700.0, n_gpus=2)
    slow["kernels"][5]["value"] = 600.0  # node-c GPU 1's big matmul: ~14% below the others
    cells = dd.fleet_frame([*docs, slow])
    matmul = cells[cells["metric"] == "matmul bf16 (TFLOP/s)"]
    assert len(matmul) == 6 and set(matmul["node"]) == {"node-a", "node-b", "node-c"}
    flagged = matmul[matmul["straggler"]]
    assert list(zip(flagged["node"], flagged["gpu"], strict=True)) == [("node-c", 1)]
    assert not cells[cells["metric"] == "memory_copy (GB/s)"]["straggler"].any()


# ---------------------------------------------------------------- AppTest, every page

def _app(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["start_page"] = page
    return at.run()


def _texts(at) -> str:
    parts = [e.value for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "success", "error")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_every_page_renders_without_an_exception() -> None:
    for page, title in [("machine", "My machine"), ("specs", "Specs explorer"), ("recommend", "Recommender"),
                        ("history", "History"), ("fleet", "Fleet")]:
        at = _app(page)
        assert not at.exception, (page, [e.value for e in at.exception])
        assert [t.value for t in at.title] == [title]
        assert not any("could not be drawn" in e.value for e in at.error), page


def test_specs_page_filters_and_compares() -> None:
    at = _app("specs")
    n_all = len(load_specs())
    assert at.multiselect(key="spec_vendor") is not None and at.slider(key="spec_min_mem") is not None
    assert len(at.dataframe[0].value) == n_all
    assert at.multiselect(key="spec_compare").value == [get_gpu("rtx-4090").name, get_gpu("h100-sxm5-80gb").name]
    at.multiselect(key="spec_segment").set_value(["geforce"]).run()
    shown = at.dataframe[0].value
    assert len(shown) == sum(s.segment == "geforce" for s in load_specs()) and set(shown["segment"]) == {"geforce"}
    at.multiselect(key="spec_segment").set_value([]).run()
    at.multiselect(key="spec_compare").set_value([get_gpu("rtx-4090").name, get_gpu("h100-sxm5-80gb").name]).run()
    table = at.dataframe[1].value
    assert list(table.columns) == [get_gpu("rtx-4090").name, get_gpu("h100-sxm5-80gb").name]
    assert len(at.get("vega_lite_chart")) >= 2


def test_machine_page_without_gpu_shows_a_notice_and_the_cpu() -> None:
    at = _app("machine")
    text = _texts(at)
    assert "No GPU" in text or "not installed" in text
    if Path("/proc/stat").exists():  # the CPU's own live figures, not "SM clock n/a"
        metrics = {m.label: m.value for m in at.metric}
        assert metrics.get("Clock", "–").endswith("MHz") and "SM clock" not in metrics
        assert any("load " in c.value and "cores" in c.value for c in at.caption)
        at.run()  # the second sample gives the CPU's utilisation (a difference of two /proc/stat readings)
        assert {m.label: m.value for m in at.metric}["Utilisation"].endswith("%")
    assert at.button[0].label == "Run probe" or any(b.label == "Run probe" for b in at.button)
    assert at.radio(key="probe_mode").options == ["quick", "full"]


@pytest.mark.skipif(not _has("advisor.probing", "default_backend"),
                    reason="advisor.probing.default_backend not built yet")
def test_machine_page_draws_device_cards_and_live_charts_from_a_fake_backend(
        monkeypatch: pytest.MonkeyPatch) -> None:
    probe_mod = importlib.import_module("advisor.probing")  # not `advisor.probe`: that name is the probe() function
    fake = FakeBackend([_h100(0), DeviceInfo(index=1, error="GPU is lost")])
    monkeypatch.setattr(probe_mod, "default_backend", lambda: fake)
    at = _app("machine")
    assert not at.exception
    headers = [s.value for s in at.subheader]
    assert "GPU 0: NVIDIA H100 80GB HBM3" in headers and "GPU 1: unknown device" in headers
    assert any("GPU is lost" in e.value for e in at.error)
    # Live figures: the GPU from the backend, the host CPU from /proc; the lost GPU is skipped.
    assert any(m.label == "Utilisation" and m.value == "3%" for m in at.metric)
    assert any(m.label == "SM clock" and m.value == "1980 MHz / 1980" for m in at.metric)
    assert any("Memory 2.0 / 80.0 GiB (2%)" in c.value for c in at.caption)
    assert any("clock events: –" in c.value and "Power 110 W / 700 W" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) >= 1  # the live chart
    devices = {s["device"] for s in at.session_state["live_samples"]}
    assert "GPU 0: NVIDIA H100 80GB HBM3" in devices and any(d.startswith("CPU 2:") for d in devices)
    # the time axis starts at the first sample (it once began at -5 s: a start read after the sample, rounded)
    assert {s["t_s"] for s in at.session_state["live_samples"]} == {0.0}
    at.run()
    assert min(s["t_s"] for s in at.session_state["live_samples"]) == 0.0
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert chart["spec"]["encoding"]["x"]["scale"] == {"zero": False}



def test_live_lines_break_where_the_refreshes_paused() -> None:
    """A probe run pauses the live view: the line must not join the samples on either side of the pause."""
    import pandas as pd

    from advisor.dashboard.charts import live_lines

    frame = pd.DataFrame([{"t_s": t, "device": "GPU 0: x", "metric": "power (W)", "value": 100.0}
                          for t in (0.0, 2.0, 4.0, 40.0, 42.0)])
    spec = live_lines(frame, gap_s=6.0).to_dict()
    assert spec["spec"]["encoding"]["detail"]["field"] == "run"
    runs = next(iter(spec["datasets"].values()))
    assert [r["run"] for r in runs] == [0, 0, 0, 1, 1]


def test_machine_page_runs_a_probe_once_and_draws_achieved_vs_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    probe_mod = pytest.importorskip("advisor.probing")
    if not hasattr(probe_mod, "probe"):
        pytest.skip("advisor.probing.probe not built yet")
    calls: list[bool] = []

    def fake_probe(quick: bool = False, **_: object) -> ProbeResult:
        calls.append(quick)
        return ProbeResult.from_dict(_probe_doc())

    monkeypatch.setattr(probe_mod, "probe", fake_probe)
    monkeypatch.setattr(probe_mod, "default_backend", lambda: FakeBackend([_h100(0)]))
    at = _app("machine")
    assert "probe_result" not in at.session_state  # nothing probes on page load
    at.button[0].click().run()
    assert calls == [True] and not at.exception
    assert at.session_state["probe_result"]["host"] == "node-a"
    assert "Achieved vs spec" in [s.value for s in at.subheader] and "Roofline" in [s.value for s in at.subheader]
    assert any("pcie_downgraded" in w.value for w in at.warning)  # the probe's verdict on the card


def test_a_failing_library_piece_is_a_notice_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import advisor.catalog
    from advisor.errors import SpecError

    def broken(*_: object, **__: object) -> None:
        raise SpecError("specs/x.toml: fp16_tflops must be > 0", hint="fix the file")

    monkeypatch.setattr(advisor.catalog, "load_specs", broken)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["start_page"] = "specs"
    at.run()
    assert not at.exception
    assert any("fp16_tflops must be > 0" in w.value and "fix the file" in w.value for w in at.warning)


@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_recommender_defaults_to_llama_and_changes_with_the_model() -> None:
    at = _app("recommend")
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="rec_model").value == "llama-3-8b"
    for key in ("rec_batch", "rec_seq", "rec_precision", "rec_optimizer", "rec_mode", "rec_gpus", "rec_objective",
                "rec_budget", "rec_lora", "rec_runtime"):
        assert at.session_state[key] is not None, key
    assert at.file_uploader(key="rec_upload") is not None if hasattr(at, "file_uploader") else True
    before = _texts(at)
    tables = [d.value.to_json() for d in at.dataframe]
    assert len(at.download_button) == 2
    options = at.selectbox(key="rec_model").options
    other = "gpt-j-6b" if "gpt-j-6b" in options else next(o for o in options if "llama" in o and o != "llama-3-8b")
    at.selectbox(key="rec_model").set_value(other).run()
    assert not at.exception
    assert _texts(at) != before and [d.value.to_json() for d in at.dataframe] != tables
    assert any(other in s.value for s in at.subheader)
    # A workload the library refuses is a notice naming the bad value, not a traceback.
    at.selectbox(key="rec_model").set_value("gpt2").run()
    assert not at.exception
    assert any("2048" in w.value and "gpt2" in w.value for w in at.warning)


def _store_with(docs: list[dict]) -> None:
    from advisor.store import HistoryStore

    store = HistoryStore()
    for doc in docs:
        for name in ("save_probe", "add_probe", "record_probe"):
            if hasattr(store, name):
                getattr(store, name)(ProbeResult.from_dict(doc))
                break
        else:
            pytest.skip("HistoryStore has no save method yet")


@pytest.mark.skipif(not _has("advisor.store", "HistoryStore"), reason="advisor.store not built yet")
def test_history_and_fleet_pages_read_the_store() -> None:
    import streamlit as st

    st.cache_data.clear()
    _store_with([_probe_doc(host="node-a", stamp="2026-11-20T10:00:00+00:00", matmul=700.0, n_gpus=2),
                 _probe_doc(host="node-a", stamp="2026-11-21T10:00:00+00:00", matmul=600.0, n_gpus=2),
                 _probe_doc(host="node-b", stamp="2026-11-21T11:00:00+00:00", matmul=700.0, n_gpus=2),
                 *([_collectives_doc()] if _has("advisor.probing.collectives", "CollectivesReport") else [])])
    at = _app("history")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) >= 3
    assert at.selectbox(key="hist_a") is not None and at.selectbox(key="hist_b") is not None
    fleet = _app("fleet")
    assert not fleet.exception
    assert any("straggler" in e.value for e in fleet.error)  # node-a's newest run is 14% slow
    if _has("advisor.probing.collectives", "CollectivesReport"):
        assert any(s.value.startswith("Collectives: 4 ranks") for s in fleet.subheader)
    st.cache_data.clear()


def test_config_upload_size_limit_matches_the_uploader() -> None:
    dashboard_src = (ROOT / "advisor/dashboard/recommender.py").read_text()
    assert "max_upload_size=1" in dashboard_src and "MAX_UPLOAD_BYTES = 1024 * 1024" in dashboard_src
    for banned in ("import pickle", "torch.load(", "pd.read_pickle", "joblib"):
        assert banned not in dashboard_src


def test_streamlit_config_binds_to_localhost() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost" and config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False


def test_dashboard_data_imports_no_streamlit_or_pandas_at_import() -> None:
    import subprocess
    import sys

    code = ("import sys, advisor.dashboard_data; "
            "print(json.dumps([m for m in ('streamlit','pandas','torch') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def _collectives_doc() -> dict:
    from advisor.probing.collectives import CollectiveResult, CollectivesReport, RankInfo

    results = tuple(CollectiveResult(op="all_reduce", size_bytes=size, time_s=size / 100e9, world_size=4,
                                     link_gbs=300.0) for size in (2**20, 2**26))
    fleet = tuple(RankInfo(rank=r, local_rank=r % 2, hostname=f"node-{r // 2}", device=f"cuda:{r % 2}",
                           device_name="NVIDIA H100 80GB HBM3", catalog_id="h100-sxm5-80gb",
                           matmul_tflops=700.0) for r in range(4))
    report = CollectivesReport(backend="nccl", world_size=4, launcher="torchrun", device_kind="cuda",
                               results=results, fleet=fleet, timestamp="2026-11-22T10:00:00+00:00")
    return report.to_probe_result().to_dict()


def test_collectives_frame_reads_busbw_from_a_stored_collectives_run() -> None:
    pytest.importorskip("advisor.probing.collectives")
    doc = _collectives_doc()
    coll = dd.collectives_frame([_probe_doc(), doc])
    assert list(coll["op"]) == ["all_reduce", "all_reduce"] and set(coll["ranks"]) == {4}
    # all-reduce busbw = algbw x 2(n-1)/n = 100 GB/s x 1.5 on 4 ranks
    assert coll["busbw_gbs"].tolist() == pytest.approx([150.0, 150.0])
    assert coll["fraction_pct"].tolist() == pytest.approx([50.0, 50.0])
    assert dd.collectives_frame([_probe_doc()]).empty
    # A collectives run holds no per-GPU kernels: it must not hide the nodes' own newest probes.
    cells = dd.fleet_frame([_probe_doc(host="node-0", stamp="2026-11-20T00:00:00+00:00"), doc])
    assert set(cells["node"]) == {"node-0"}


def test_fleet_frame_maps_per_rank_kernels_of_a_collectives_run_to_nodes_and_gpus() -> None:
    pytest.importorskip("advisor.probing.collectives")
    doc = _collectives_doc()
    doc["kernels"] += [_kernel("matmul", 700.0 if rank != 3 else 600.0, "TFLOP/s", "bf16", index=rank).to_dict()
                       for rank in range(4)]
    cells = dd.fleet_frame([doc])
    assert sorted(zip(cells["node"], cells["gpu"], strict=True)) == [("node-0", 0), ("node-0", 1), ("node-1", 0),
                                                                     ("node-1", 1)]
    assert list(zip(*cells[cells["straggler"]][["node", "gpu"]].values.T, strict=True)) == [("node-1", 1)]


@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_recommender_takes_an_uploaded_config_json_and_refuses_bad_uploads() -> None:
    from advisor.workload.presets import get_preset

    config = {**get_preset("llama-3-8b").config, "num_hidden_layers": 8, "_name_or_path": "my-small-llama"}
    at = _app("recommend")
    llama_table = at.dataframe[0].value.to_json()
    at.file_uploader(key="rec_upload").upload("config.json", json.dumps(config).encode(), "application/json").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("my-small-llama" in s.value for s in at.subheader)
    assert at.dataframe[0].value.to_json() != llama_table  # 8 layers instead of 32: less memory, faster steps
    at.file_uploader(key="rec_upload").upload("config.json", b"\x80\x04\x95pickle", "application/json").run()
    assert not at.exception
    assert any("not UTF-8" in w.value or "not valid JSON" in w.value for w in at.warning)


def test_memory_breakdown_frame_stacks_categories_against_capacity() -> None:
    est = {"gpu": {"id": "rtx-4090", "name": "GeForce RTX 4090"},
           "memory": {"total_bytes": 30 * 2**30, "capacity_bytes": 24e9,
                      "breakdown_bytes": {"weights": 16 * 2**30, "activations": 14 * 2**30, "kv_cache": 0}}}
    frame = dd.memory_breakdown_frame([est, {**est, "memory": {**est["memory"], "capacity_bytes": None}}],
                                      labels=["A", "B"])
    a = frame[frame["card"] == "A"].set_index("category")
    assert a.loc["weights", "gib"] == 16 and a.loc["activations", "gib"] == 14 and a.loc["kv_cache", "gib"] == 0
    assert a["capacity_gib"].iloc[0] == pytest.approx(24e9 / 2**30)
    # Without a capacity in the estimate, the catalog's figure for the card is used.
    b = frame[frame["card"] == "B"]
    assert b["capacity_gib"].iloc[0] == pytest.approx(get_gpu("rtx-4090").memory_bytes / 2**30)


@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_recommendation_view_keeps_every_row_and_reason_in_human_units() -> None:
    from advisor.recommender import recommend

    rec = recommend("llama-3-8b", batch_size=4, seq_len=2048, lora_rank=16, max_gpus=2)
    view = dd.recommendation_view(rec)
    assert len(view["ranked"]) == len(rec.rows) and len(view["rejected"]) == len(rec.rejected)
    top, best = view["ranked"][0], rec.rows[0]
    assert top["rank"] == 1 and top["memory per GPU (GiB)"] == pytest.approx(best.memory_per_gpu_bytes / 2**30)
    assert top["time to train (h)"] == pytest.approx(best.time_to_train_s / 3600)
    assert all(x["reason"] for x in view["rejected"])
    assert len(view["time_cost"]) == len(rec.rows)
    json.dumps(view["raw"])  # the JSON download is the library's own document
    # Rental and purchase are separate columns and separate chart series, never one "cost".
    assert "cost (USD)" not in top
    assert "cloud cost of the job (USD)" in top and "purchase cost of the cards (USD)" in top
    assert {"cloud_usd", "buy_usd"} <= set(view["time_cost"][0])
    # every price says whose and when (docs/prices.md): the table's columns, the charts' hover
    priced = next(r for r in rec.rows if r.cloud_usd_per_hour and r.price_usd)
    row = next(x for x in view["ranked"] if x["rank"] == priced.rank)
    assert row["cloud price"] == f"{priced.cloud_price_class}, {priced.cloud_price_date}"
    assert row["purchase price"] == f"{priced.price_kind}, {priced.price_date}"
    point = next(p for p in view["time_cost"] if p["rank"] == priced.rank)
    assert (point["cloud_usd_price"], point["buy_usd_price"]) == (row["cloud price"], row["purchase price"])
    # The memory bars come from recommend's own rows: no second estimate loop in the dashboard.
    cards = list(dict.fromkeys(m["card"] for m in view["memory"]))
    assert cards[0] == dd.card_label(best.gpu_name, best.num_gpus)
    first = [m for m in view["memory"] if m["card"] == cards[0]]
    assert sum(m["gib"] for m in first) == pytest.approx(best.memory_per_gpu_bytes / 2**30)
    assert view["workload"] == "train, global batch 4, seq 2048, amp-bf16, adamw"


@pytest.mark.skipif(not _has("advisor.recommender", "OBJECTIVES"), reason="advisor.recommend not built yet")
def test_the_recommenders_choices_are_the_librarys() -> None:
    from advisor.recommender import OBJECTIVES
    from advisor.workload.options import OPTIMIZERS, PRECISIONS

    assert dd.PRECISIONS == PRECISIONS and dd.OPTIMIZERS == OPTIMIZERS
    at = _app("recommend")
    assert at.selectbox(key="rec_objective").options == list(OBJECTIVES)  # the library's, not a copy
    assert at.selectbox(key="rec_optimizer").options == list(OPTIMIZERS)  # the variants too (adamw-loop, ...)
    at.selectbox(key="rec_optimizer").set_value("bertadam").run()  # a per-parameter loop prices like the rest
    assert not at.exception


# ---------------------------------------------------------------- issue 16: items 10 and 11

@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_recommender_form_adapts_to_the_model_and_filters_cards() -> None:
    at = _app("recommend")
    keys = {w.key for w in at.number_input} | {w.key for w in at.checkbox}
    assert {"rec_seq", "rec_lora", "rec_ckpt", "rec_lora_rank"} <= keys and "rec_image" not in keys
    at.selectbox(key="rec_model").set_value("mnist-cnn").run()  # a small CNN: traced in a fraction of a second
    assert not at.exception, [e.value for e in at.exception]
    keys = {w.key for w in at.number_input} | {w.key for w in at.checkbox}
    assert "rec_image" in keys and not keys & {"rec_seq", "rec_lora", "rec_ckpt", "rec_lora_rank"}
    wanted = [get_gpu("rtx-4090").name, get_gpu("h100-sxm5-80gb").name]
    at.multiselect(key="rec_cards").set_value(wanted)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    ranked = at.dataframe[0].value
    assert set(ranked["card"].str.replace(r"^\d+x ", "", regex=True)) <= set(wanted) and len(ranked) >= 1


@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_recommender_charts_rent_and_purchase_apart_and_shows_dashes() -> None:
    at = _app("recommend")
    subheaders = [s.value for s in at.subheader]
    assert "Time vs cost" in subheaders and "Memory per card vs capacity" in subheaders
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    titles = json.dumps(specs)
    assert "Renting: cloud cost of this job" in titles and "Buying: purchase price of the cards" in titles
    # the prices' dates lead the table and follow the charts, in the page's words (no --json pointer)
    dated = [c.value for c in at.caption if c.value.startswith("prices: cloud on-demand $/GPU-hour at GPU clouds")]
    assert len(dated) == 2 and all("--json" not in c and "'cloud price'" in c for c in dated)
    assert '"price (kind, date)"' in titles  # and each point's on hover
    for spec in specs:  # rental and purchase never share a y axis
        text = json.dumps(spec)
        assert not ("cloud_usd" in text and "buy_usd" in text)
    # Scatter colours are the app's segment palette (a handful of entries), not one per card.
    scatter = next(s for s in specs if "cloud_usd" in json.dumps(s))
    colors = [layer["encoding"]["color"] for layer in scatter["layer"] if "color" in layer.get("encoding", {})]
    assert colors and colors[0]["field"] == "segment"
    assert colors[0]["scale"]["domain"][:6] == list(charts_palette()["segment"])


def charts_palette() -> dict:
    from advisor.dashboard.charts import PALETTE

    return PALETTE


def test_display_frame_shows_dashes_and_no_negative_zero() -> None:
    import pandas as pd

    frame = pd.DataFrame({"card": ["a", None], "change_pct": [-0.04, 12.0], "price": [None, 3.5]})
    html = dd.display_frame(frame, {"change_pct": "{:+.1f}%", "price": "${:,.2f}"}).to_html()
    assert "None" not in html and "nan" not in html.lower() and "–" in html
    assert "-0.0%" not in html and "+0.0%" in html and "$3.50" in html


def test_compare_runs_never_reports_negative_zero() -> None:
    a, b = _probe_doc(matmul=700.0), _probe_doc(matmul=699.9999)
    cmp = dd.compare_runs(a, b)
    assert (cmp["change_pct"] == 0).any() and not (cmp["change_pct"].astype(str) == "-0.0").any()


def test_one_palette_for_segments_on_every_specs_chart() -> None:
    at = _app("specs")
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    scales = [s["encoding"]["color"]["scale"] for s in specs if s.get("encoding", {}).get("color")]
    assert len(scales) == 3 and all(sc == scales[0] for sc in scales)
    at.multiselect(key="spec_segment").set_value(["geforce"]).run()  # a filter does not shift the colours
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert all(s["encoding"]["color"]["scale"] == scales[0] for s in specs if s.get("encoding", {}).get("color"))
    titles = [s["title"] for s in specs]
    assert all(t["anchor"] == "start" for t in titles)


def test_capacity_tick_is_centred_on_its_bar() -> None:
    import pandas as pd

    from advisor.dashboard.charts import memory_bars

    memory = pd.DataFrame([{"card": "A", "category": "weights", "gib": 10.0, "label": "10 GiB", "capacity_gib": 20.0}])
    spec = memory_bars(memory).to_dict()
    tick = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "tick")
    assert tick["encoding"]["y"]["bandPosition"] == 0.5


@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_fit_view_starts_from_the_card_in_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    probe_mod = importlib.import_module("advisor.probing")
    monkeypatch.setattr(probe_mod, "default_backend", lambda: FakeBackend([_h100(0)]))
    at = _app("recommend")
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="fit_card").value == get_gpu("h100-sxm5-80gb").name
    # the library's defaults (no checkpointing): LoRA at batch 4 x 2048 tokens needs ~96 GiB, so it does not fit, and
    # the page says what would, sized, in the same table as the CLI's (issue 26 item 3)
    assert any(e.value.startswith("H100 SXM5 80GB: does not fit") for e in at.error)
    fit = next(d.value for d in at.dataframe if "change" in d.value.columns)
    assert {"fits", "memory per GPU (GiB)", "step (s)", "settings"} <= set(fit.columns)
    assert fit["fits"].iloc[0].startswith("yes") and "checkpointing" in " ".join(fit["change"])
    assert "fits on no card" not in _texts(at) and "fit_options" not in _texts(at)
    at.checkbox(key="rec_ckpt").check()
    at.button[0].click().run()
    assert not at.exception
    assert any(s.value.startswith("Fits on one H100 SXM5") for s in at.success)
    # the card's step time with its range and evidence (issue 24 item 3), in words and drawn
    assert any(" s (measured))." in s.value or " s (calibrated))." in s.value for s in at.success)
    assert any("Step time on one H100 SXM5 80GB, with its range" in c.proto.spec for c in at.get("vega_lite_chart"))
    # where a step's time goes on that card, with what would help: the page's last table
    times = at.dataframe[-1].value
    assert {"class", "ms", "share", "what would make it faster"} <= set(times.columns) and len(times) >= 3
    at.selectbox(key="fit_card").set_value(get_gpu("rtx-3060").name if _known("rtx-3060") else
                                           get_gpu("rtx-4090").name).run()
    assert not at.exception


def _known(card: str) -> bool:
    try:
        get_gpu(card)
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _has("advisor.recommender", "recommend"), reason="advisor.recommend not built yet")
def test_fit_view_without_a_gpu_names_the_cpu_and_its_ram() -> None:
    at = _app("recommend")  # this test machine has no GPU: the inventory holds only the CPU
    assert not at.exception
    text = _texts(at)
    assert "This machine has no GPU" in text and "RAM" in text
    assert at.selectbox(key="fit_card").value == get_gpu("rtx-4090").name
    assert any(m.value.startswith(("Fits on one", "GeForce RTX 4090")) for m in [*at.success, *at.error])


def test_fit_view_says_what_does_not_fit() -> None:
    from advisor.recommender import recommend

    rec = recommend("llama-3-8b", batch_size=4, seq_len=2048, gpus=["rtx-4090"], max_gpus=1)
    fit = dd.fit_view(rec, "rtx-4090")
    assert fit["fits"] is False and "does not fit" in fit["message"] and fit["needed_bytes"] > fit["usable_bytes"]
    assert fit["memory"] and fit["memory"][0]["card"].endswith("(does not fit)")
    assert fit["time"] == []  # no step to break down


def test_fit_view_breaks_the_step_down_by_op_class_with_the_cards_own_advice() -> None:
    from advisor.recommender import recommend

    rec = recommend("resnet50", batch_size=64, image_size=224, precision="amp-fp16", gpus=["gtx-1080-ti"],
                    max_gpus=1)
    rows = dd.fit_view(rec, "gtx-1080-ti")["time"]
    assert rows and rows[0]["class"] == "conv" and rows == sorted(rows, key=lambda r: -r["ms"])
    assert sum(r["ms"] for r in rows) == pytest.approx(rec.rows[0].step_s * 1e3, rel=0.05)
    assert rows[0]["what would make it faster"] == "a card with tensor cores"  # not channels_last or amp here


def test_dashboard_entry_is_thin_and_the_package_imports_no_streamlit_from_the_library() -> None:
    assert len((ROOT / "dashboard.py").read_text().splitlines()) < 20
    import subprocess
    import sys

    code = "import sys, advisor, advisor.recommender, advisor.probing; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_a_probe_that_cannot_be_saved_keeps_its_result_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.errors import StoreError
    from advisor.store import HistoryStore

    probe_mod = importlib.import_module("advisor.probing")
    monkeypatch.setattr(probe_mod, "probe", lambda **_: ProbeResult.from_dict(_probe_doc()))
    monkeypatch.setattr(probe_mod, "default_backend", lambda: FakeBackend([_h100(0)]))

    def corrupt(self, result):
        raise StoreError("history store /x/history.sqlite is corrupt", hint="move it aside")

    monkeypatch.setattr(HistoryStore, "save_probe", corrupt)
    at = _app("machine")
    at.button[0].click().run()  # the probe reruns the page when done: the warning must survive that
    assert not at.exception
    assert "Achieved vs spec" in [s.value for s in at.subheader]
    assert any("not saved" in w.value and "corrupt" in w.value and "move it aside" in w.value for w in at.warning)


def test_collectives_lines_stay_inside_the_plot() -> None:
    import pandas as pd

    from advisor.dashboard.charts import collectives_lines

    coll = pd.DataFrame({"op": ["broadcast", "broadcast", "all_reduce"], "size_bytes": [2**20, 2**28, 2**28],
                         "size": ["1 MiB", "256 MiB", "256 MiB"], "busbw_gbs": [30.0, 391.0, 160.0],
                         "link_gbs": [450.0] * 3, "fraction_pct": [7.0, 87.0, 36.0]})
    spec = collectives_lines(coll).to_dict()
    assert spec["mark"]["clip"] is True
    assert spec["encoding"]["y"]["scale"]["domain"][1] >= 391.0  # the highest line is below the axis' top
    assert spec["encoding"]["x"]["axis"]["format"] == "~s"


def test_a_notice_of_a_bug_keeps_its_traceback_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from advisor.dashboard import common
    from advisor.errors import StoreError

    def bug() -> None:
        raise KeyError("gpu")

    with caplog.at_level("ERROR", logger="gpu-advisor.dashboard"):
        common.notice(StoreError("corrupt", hint="move it aside"), "Reading the history store")
        assert not caplog.records  # a user's problem: a notice only
        try:
            bug()
        except KeyError as exc:
            common.notice(exc, "The recommendation")
    (record,) = caplog.records
    assert record.getMessage() == "The recommendation failed" and record.exc_info and record.exc_info[0] is KeyError


def test_a_one_bar_memory_chart_keeps_every_category_and_tied_points_share_one_label() -> None:
    """Issue 26 item 9: a single bar clipped its legend to 4 of 7 categories; tied points piled their labels up."""
    import pandas as pd

    from advisor.dashboard.charts import memory_bars, time_cost

    cats = ["weights", "gradients", "optimizer", "activations", "kv_cache", "overhead", "transient"]
    memory = pd.DataFrame([{"card": "A", "category": c, "gib": 1.0, "label": "1 GiB", "capacity_gib": 20.0}
                           for c in cats])
    spec = memory_bars(memory).to_dict()
    assert spec["config"]["legend"]["orient"] == "bottom" and spec["config"]["legend"]["columns"] >= 3
    points = pd.DataFrame([{"rank": i + 1, "card": f"card {i}", "segment": "datacenter", "hours": 0.3,
                            "cloud_usd": 0.5, "buy_usd": 1000.0} for i in range(3)]
                          + [{"rank": 4, "card": "lone", "segment": "geforce", "hours": 2.0, "cloud_usd": 2.0,
                              "buy_usd": 500.0}])
    chart = time_cost(points, "cloud_usd", "cloud (USD)", "t").to_dict()
    datasets = chart["datasets"].values()
    labels = next(d for d in datasets if d and "label" in d[0])
    assert sorted(d["label"] for d in labels) == ["card 0 (+2)", "lone"]


def test_a_wide_spread_of_prices_gets_a_log_axis() -> None:
    """Issue 26 item 9: the specs explorer's memory vs price was squashed by one 30,000-USD point."""
    import pandas as pd

    from advisor.dashboard.charts import spec_scatter

    frame = pd.DataFrame([{"id": c, "name": c, "vendor": "nvidia", "segment": "geforce", "price_usd": p,
                           "memory_gb": m} for c, p, m in (("a", 300.0, 8), ("b", 1600.0, 24), ("c", 40000.0, 141))])
    spec = spec_scatter(frame, "price_usd", "purchase price (USD)", "memory_gb", "memory (GB)", "t").to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    # ticks and grid lines at 1 and 3 x each power of ten, not Vega's mesh at every 2..9 multiple
    assert spec["encoding"]["x"]["axis"]["values"] == [100, 300, 1000, 3000, 10000, 30000, 100000]
    assert spec["encoding"]["y"]["scale"].get("type") != "log"  # 8..141 GB: within 20x, linear
