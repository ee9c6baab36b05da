"""validate: the measured-vs-predicted loop, run for real on the CPU with tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from advisor import validate as v
from advisor.errors import AdvisorError, UnknownModelError

ROOT = Path(__file__).resolve().parent.parent


def _mlp_builder(width: int = 256, fail: BaseException | None = None) -> v.Builder:
    """A tiny real model (two Linear layers) and its batch; ``fail`` is raised from the loss (an injected OOM)."""

    def build(case: v.Case, device: Any) -> v.Built:
        import torch
        import torch.nn.functional as F

        from advisor.device import as_device

        dev = as_device(device)
        with torch.device(dev.torch_device):
            model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
            x = (torch.randn(case.batch_size, width, generator=dev.generator(0)) if dev.kind != "meta"
                 else torch.empty(case.batch_size, width))
            y = torch.zeros(case.batch_size, dtype=torch.long)

        def loss(out: Any, inputs: Any) -> Any:
            if fail is not None:
                raise fail
            return F.cross_entropy(out, y)

        return v.Built(model, lambda: (x,), loss)

    return build


def _fixed_predictor(memory: float, step_s: float, fits: bool | None = None) -> v.Predictor:
    def predict(case: v.Case, device: v.DeviceContext) -> v.Prediction:
        return v.Prediction(memory, step_s, fits, source="test predictor")

    return predict


CPU = v.DeviceContext("cpu", "test cpu", memory_method=v.CPU_MEMORY_METHOD,
                      rates={"matmul_fp32_flops": 5e10, "matmul_bf16_flops": 2e10, "memory_copy_bytes_s": 1e10,
                             "op_overhead_s": 5e-6, "memory_bytes": 8e9}, rates_source="test")


def test_relative_error() -> None:
    assert v.relative_error(110.0, 100.0) == pytest.approx(0.10)
    assert v.relative_error(50.0, 100.0) == pytest.approx(-0.5)
    assert v.relative_error(None, 1.0) is None
    assert v.relative_error(1.0, 0.0) is None


def test_rows_measure_real_steps_and_compute_errors() -> None:
    cases = [v.Case("mlp", "train", 32, "fp32", "adam"), v.Case("mlp", "infer", 32, "fp32")]
    report = v.run_validation(cases, CPU, build=_mlp_builder(512), predict=_fixed_predictor(4e6, 1e-3),
                              warmup=1, iters=3)
    assert len(report.rows) == 2
    train, infer = report.rows
    for row in report.rows:
        m = row.measurement
        assert m is not None and not row.oom and row.error_message is None
        assert len(m.step_times_s) == 3 and m.step_s == sorted(m.step_times_s)[1] and m.step_s > 0
        assert row.time_error == pytest.approx(1e-3 / m.step_s - 1)
        assert row.memory_error == pytest.approx(4e6 / m.peak_bytes - 1)
    # Adam on 512x512 + 512x10 fp32 weights: weights + grads + two moments >= 4 x 1.07 MB held at the peak
    params_bytes = (512 * 512 + 512 + 512 * 10 + 10) * 4
    if v.heap_in_use_bytes() is not None:
        assert 4 * params_bytes <= train.measurement.peak_bytes < 64 * 2**20
        assert params_bytes <= infer.measurement.peak_bytes < train.measurement.peak_bytes


def test_measured_memory_grows_with_the_model() -> None:
    if v.heap_in_use_bytes() is None:
        pytest.skip("no glibc mallinfo2 here")
    case = [v.Case("mlp", "train", 8, "fp32", "sgd")]
    small = v.run_validation(case, CPU, build=_mlp_builder(128), predict=_fixed_predictor(1.0, 1.0), iters=1)
    big = v.run_validation(case, CPU, build=_mlp_builder(1024), predict=_fixed_predictor(1.0, 1.0), iters=1)
    big_weights = (1024 * 1024 + 1024 * 10) * 4
    assert big.rows[0].measurement.peak_bytes - small.rows[0].measurement.peak_bytes > 1.5 * big_weights


def test_json_shape_is_designs() -> None:
    report = v.run_validation([v.Case("mlp", "train", 4, "fp32", "sgd")], CPU, build=_mlp_builder(64),
                              predict=_fixed_predictor(1e6, 1e-4), warmup=0, iters=1)
    doc = json.loads(json.dumps(report.to_dict()))
    assert set(doc) >= {"device", "rows", "summary"}
    row = doc["rows"][0]
    assert row["model"] == "mlp"
    assert row["config"] == {"mode": "train", "batch_size": 4, "precision": "fp32", "optimizer": "sgd",
                             "seq_len": None, "image_size": None, "gradient_checkpointing": False}
    assert {"predicted_bytes", "measured_bytes", "error"} <= set(row["memory"])
    assert {"predicted_s", "measured_s", "error"} <= set(row["time"])
    assert row["memory"]["predicted_bytes"] == 1e6 and row["time"]["predicted_s"] == 1e-4
    assert row["oom"] is False
    s = doc["summary"]
    assert s["rows"] == 1 and s["measured"] == 1
    assert s["time"]["median_abs_error"] == pytest.approx(abs(row["time"]["error"]))
    assert doc["device"]["kind"] == "cpu" and doc["device"]["memory_method"] == v.CPU_MEMORY_METHOD


def test_an_oom_is_a_row_and_checked_against_fits() -> None:
    import torch

    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    cases = [v.Case("mlp", "train", 4, "fp32", "sgd")]
    said_no = v.run_validation(cases, CPU, build=_mlp_builder(fail=oom), predict=_fixed_predictor(9e10, 1.0, False))
    row = said_no.rows[0]
    assert row.oom and row.measurement is None and "out of memory" in row.error_message
    assert row.fits_right is True
    said_yes = v.run_validation(cases, CPU, build=_mlp_builder(fail=MemoryError()),
                                predict=_fixed_predictor(1e6, 1.0, True))
    assert said_yes.rows[0].oom and said_yes.rows[0].fits_right is False
    summary = said_yes.summary
    assert summary["oom"] == 1 and summary["fits"] == {"checked": 1, "right": 0}
    assert said_yes.to_dict()["rows"][0]["memory"]["measured_bytes"] is None


def test_other_failures_become_rows_or_propagate() -> None:
    cases = [v.Case("mlp", "train", 4, "fp32", "adamw-8bit")]  # no bitsandbytes: an AdvisorError -> a row
    report = v.run_validation(cases, CPU, build=_mlp_builder(), predict=_fixed_predictor(1.0, 1.0))
    assert report.rows[0].measurement is None and "adamw-8bit" in report.rows[0].error_message
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        v.run_validation([v.Case("mlp", "train", 4, "fp32", "sgd")], CPU, build=_mlp_builder(fail=ZeroDivisionError()),
                         predict=_fixed_predictor(1.0, 1.0))


def test_summary_medians_and_maxima() -> None:
    def row(pred_mem: float, meas_mem: float, pred_s: float, meas_s: float) -> v.ValidationRow:
        return v.ValidationRow("m", v.Case("m", "infer", 1), v.Prediction(pred_mem, pred_s),
                               v.Measurement(meas_mem, meas_s))

    rows = [row(110, 100, 1.0, 1.0), row(80, 100, 1.3, 1.0), row(100, 100, 0.9, 1.0)]
    s = v.summarize(rows, memory_slack_bytes=0)
    assert s["memory"]["median_abs_error"] == pytest.approx(0.10)
    assert s["memory"]["max_abs_error"] == pytest.approx(0.20)
    assert s["memory"]["within_tolerance"] == 1  # only the exact one is within 5%
    assert s["time"]["median_abs_error"] == pytest.approx(0.10)
    assert s["time"]["max_abs_error"] == pytest.approx(0.30)


def test_default_cases() -> None:
    quick = v.default_cases(quick=True)
    assert {c.model for c in quick} == set(v.QUICK_MODELS)
    assert v.default_cases() == quick  # the quick set is the CPU default
    gpu = v.default_cases(cuda=True)
    assert {c.model for c in gpu} == set(v.ZOO_MODELS)
    assert len([c for c in gpu if c.mode == "train"]) >= 12
    assert {c.precision for c in gpu} >= {"fp32", "amp-fp16", "amp-bf16", "bf16"}
    assert len({c.optimizer for c in gpu if c.optimizer}) >= 3
    assert any(c.gradient_checkpointing for c in gpu) and any(c.gen_len for c in gpu)
    with pytest.raises(UnknownModelError, match="'gpt5'"):
        v.default_cases(["gpt5"])


def test_kv_cache_decode_matches_the_full_forward() -> None:
    import torch

    case = v.Case("gpt2-tiny", "infer", 2, "fp32", seq_len=12, gen_len=1)
    for name in ("gpt2-tiny", "llama-tiny"):
        built = v.build_model(v.Case(name, "infer", 2, "fp32", seq_len=12), "cpu")
        model = built.model.eval()
        (idx,) = built.make_inputs()
        with torch.no_grad():
            full = model(idx)[:, -1]
            caches: list[dict[str, Any]] = [{} for _ in model.blocks]
            model(idx[:, :-1], caches=caches)
            step = model(idx[:, -1:], caches=caches)[:, -1]
        torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)
    assert case.config()["gen_len"] == 1


def test_checkpointing_wraps_the_blocks_and_keeps_gradients() -> None:
    import torch

    built = v.build_model(v.Case("gpt2-tiny", "train", 2, "fp32", "sgd", seq_len=16), "cpu")
    (idx,) = built.make_inputs()
    plain = torch.autograd.grad(built.loss(built.model(idx), (idx,)), built.model.wte.weight)[0]
    assert v.enable_checkpointing(built.blocks) == len(built.blocks)
    ckpt = torch.autograd.grad(built.loss(built.model(idx), (idx,)), built.model.wte.weight)[0]
    torch.testing.assert_close(ckpt, plain)


def test_cpu_predictor_is_the_estimator_on_a_cpu_card() -> None:
    case = v.Case("gpt2-tiny", "train", 4, "fp32", "adamw", seq_len=64)
    p = v.default_predictor(case, CPU)
    assert p.source == "estimate(gpu=local-cpu)", p.source
    assert p.calibrated and p.fits is None
    # 2048*128 + 256*128 embeddings + 2 blocks of ~197k: ~0.7 M params -> weights+grads+AdamW ~11 MB
    assert 8e6 < p.memory_bytes < 200e6  # no 450 MiB CUDA context on a CPU
    assert p.step_s > 0 and any("CPU row" in a for a in p.assumptions)
    spec = v.cpu_card(CPU)
    assert spec.fp32_tflops == pytest.approx(0.05) and spec.memory_bandwidth_gbs == pytest.approx(10.0)


def test_trace_predictor_counts_flops_and_saved_tensors() -> None:
    case = v.Case("mlp", "train", 32, "fp32", "adam")
    p = v.trace_predictor(_mlp_builder(256))(case, CPU)
    weights = (256 * 256 + 256 + 256 * 10 + 10) * 4
    assert p.memory_bytes >= 4 * weights + 32 * 256 * 4  # weights, grads, 2 moments, saved activations
    # forward 1x and weight gradients 1x of both matmuls; input gradient 1x only for the second (x needs none)
    flops = 2 * 32 * (256 * 256 * 2 + 256 * 10 * 3)
    assert p.step_s == pytest.approx(flops / 5e10, rel=0.1)


def test_calibration_is_read_back_by_the_estimator(tmp_path: Path) -> None:
    from advisor.api import estimate
    from advisor.catalog import get_gpu
    from advisor.store import HistoryStore

    spec = get_gpu("h100-sxm5-80gb")
    case = v.Case("gpt2", "train", 8, "amp-bf16", "adamw", seq_len=1024)
    predicted = v.estimate_predictor(spec.id, calibration=None)(case, CPU)
    # the card ran 25% slower than predicted: the fitted matmul efficiency is 0.8x the default
    row = v.ValidationRow("gpt2", case, predicted, v.Measurement(None, predicted.step_s * 1.25))
    report = v.ValidationReport(v.DeviceContext("cuda", "NVIDIA H100 80GB HBM3", spec.id), (row,))
    fitted = v.fit_calibration(report, spec)
    assert set(fitted) == {"matmul_bf16"}
    assert fitted["matmul_bf16"]["efficiency"] == pytest.approx(fitted["matmul_bf16"]["default"] * 0.8)
    record = v.calibration_probe(report, spec, fitted)
    store = HistoryStore()
    store.save_probe(record)
    latest = store.latest_probe(spec.id)
    assert latest is not None and latest.result().efficiencies(0) == {
        "matmul_bf16": pytest.approx(fitted["matmul_bf16"]["efficiency"])}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(latest.document))
    kwargs: dict[str, Any] = {"batch_size": 8, "seq_len": 1024, "precision": "amp-bf16", "optimizer": "adamw"}
    calibrated = estimate("gpt2", spec, calibration=str(path), **kwargs)
    default = estimate("gpt2", spec, calibration=None, **kwargs)
    assert calibrated.calibrated and calibrated.time.step_s > default.time.step_s
    from advisor.calibration import clear_calibration_cache

    clear_calibration_cache()
    auto = estimate("gpt2", spec, calibration="auto", **kwargs)  # what later estimates for the card do
    assert auto.calibrated and auto.time.step_s == pytest.approx(calibrated.time.step_s)


def test_cli_validate_quick_json_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_ADVISOR_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "advisor", "validate", "--quick", "--models", "mnist-cnn",
                           "--warmup", "0", "--iters", "1", "--json"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["device"]["kind"] == "cpu"
    assert [r["model"] for r in doc["rows"]] == ["mnist-cnn", "mnist-cnn"]
    for r in doc["rows"]:
        assert r["predictor"] == "estimate(gpu=local-cpu)"
        assert r["memory"]["measured_bytes"] > 0 and r["time"]["measured_s"] > 0
        assert r["time"]["error"] == pytest.approx(r["time"]["predicted_s"] / r["time"]["measured_s"] - 1)
    from advisor.store import HistoryStore

    saved = HistoryStore(tmp_path / "history.sqlite3").list_validations()
    assert [s["id"] for s in saved] == [doc["saved_id"]] and saved[0]["rows"] == doc["rows"]


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.cli import main

    assert main(["validate", "--iters", "0"]) == 2
    assert "--iters must be >= 1" in capsys.readouterr().err
    assert main(["validate", "--models", "nope", "--device", "cpu"]) == 2
    assert "unknown validate model 'nope'" in capsys.readouterr().err


def test_make_optimizer_names() -> None:
    import torch

    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(v.make_optimizer("sgd-momentum", params), torch.optim.SGD)
    assert isinstance(v.make_optimizer("adamw", params), torch.optim.AdamW)
    with pytest.raises(AdvisorError, match="adamw-8bit"):
        v.make_optimizer("adamw-8bit", params)


@pytest.mark.gpu
def test_gpu_rows_measure_reserved_memory_and_cuda_event_time() -> None:
    device = v.local_device()
    assert device.kind == "cuda"
    cases = [v.Case("gpt2-tiny", "train", 8, "amp-bf16", "adamw", seq_len=128),
             v.Case("gpt2-tiny", "infer", 4, "bf16", seq_len=64, gen_len=8)]
    report = v.run_validation(cases, device, warmup=1, iters=3)
    for row in report.rows:
        m = row.measurement
        assert m is not None and m.reserved_bytes >= m.allocated_bytes > 0 and m.peak_bytes == m.reserved_bytes
        assert m.step_s > 0
        if device.catalog_id:
            assert row.prediction.source == f"estimate(gpu={device.catalog_id})"
            assert row.memory_error is not None and row.time_error is not None
    # Nothing left behind, exactly, once cuBLAS workspaces (allocator blocks, not tensors) are released too.
    device.device.empty_cache(workspaces=True)
    assert device.device.allocated_bytes() == 0


def test_noisy_timings_are_marked_with_their_spread() -> None:
    """Issue 26 item 10: validate on a busy CPU swung -69%..+707% between runs and did not say so."""
    from advisor.probing.results import Measurement as ProbeMeasurement
    from advisor.validate.records import Measurement

    steady = Measurement(peak_bytes=1.0, step_s=1.0, step_times_s=(1.0, 1.01, 0.99, 1.0, 1.02))
    busy = Measurement(peak_bytes=1.0, step_s=1.0, step_times_s=(0.5, 1.0, 2.5, 1.0, 4.0))
    assert steady.spread is not None and steady.spread < steady.spread_limit and not steady.noisy
    assert busy.spread > busy.spread_limit and busy.noisy
    # the probe's rule, not a copy of it: its spread, its limit, its "too few repetitions to trust"
    assert busy.spread == ProbeMeasurement(busy.step_times_s, 1).spread
    assert busy.spread_limit == ProbeMeasurement((1.0,), 1).spread_limit
    assert Measurement(peak_bytes=1.0, step_s=1.0, step_times_s=(1.0, 1.0)).noisy  # too few to tell
    assert not Measurement(peak_bytes=1.0, step_s=1.0).noisy  # nothing timed: nothing to judge


def _scripted_steps(durations: list[float]) -> tuple[Any, Any]:
    """A step that takes the next scripted duration on a fake clock, and that clock's device."""
    from advisor.device import CpuDevice

    now = [0.0]
    left = iter(durations)

    def step() -> None:
        now[0] += next(left)

    return step, CpuDevice(lambda: now[0])


def test_timing_repeats_a_spread_round_and_keeps_the_steadiest() -> None:
    noisy, steady = [1.0, 1.0, 5.0, 1.0, 9.0], [2.0, 2.0, 2.02, 1.98, 2.0]
    step, device = _scripted_steps(noisy + steady)
    times, rounds = v.time_until_stable(step, device=device, warmup=0, iters=5, budget_s=1e9)
    assert times == pytest.approx(steady) and rounds == 2
    # never trusted: every allowed round runs, the steadiest is kept and still judged noisy
    rounds_of = [[1.0, 1.0, 5.0, 1.0, 9.0], [1.0, 3.0, 1.0, 2.0, 1.0], [1.0, 1.0, 9.0, 1.0, 9.0],
                 [1.0, 4.0, 1.0, 1.0, 9.0]]
    step, device = _scripted_steps([t for r in rounds_of for t in r])
    times, rounds = v.time_until_stable(step, device=device, warmup=0, iters=5, max_repeats=3, budget_s=1e9)
    assert rounds == 4 and times == pytest.approx(rounds_of[1])
    assert v.Measurement(1.0, 1.0, tuple(times), timing_rounds=rounds).noisy
    # a round too short for the rule is not repeated (more of it cannot be trusted either), and says so
    step, device = _scripted_steps([1.0, 1.0])
    times, rounds = v.time_until_stable(step, device=device, warmup=0, iters=1, budget_s=1e9)
    assert rounds == 1 and v.Measurement(1.0, 1.0, tuple(times)).noisy
    # the time budget stops the repeats: a slow case is not rerun for minutes
    step, device = _scripted_steps(noisy + steady)
    times, rounds = v.time_until_stable(step, device=device, warmup=0, iters=5, budget_s=10.0)
    assert times == pytest.approx(noisy) and rounds == 1


def test_rows_say_how_many_rounds_were_timed() -> None:
    report = v.run_validation([v.Case("mlp", "infer", 8, "fp32")], CPU, build=_mlp_builder(64),
                              predict=_fixed_predictor(1e6, 1e-4), warmup=1, iters=5)
    doc = report.to_dict()["rows"][0]["time"]
    m = report.rows[0].measurement
    assert 1 <= doc["rounds"] == m.timing_rounds <= 1 + v.MAX_REPEATS and len(doc["steps_s"]) == 5
    assert doc["noisy"] == m.noisy and doc["spread"] == m.spread
    assert v.replay(report.to_dict()).rows[0].measurement.timing_rounds == m.timing_rounds
