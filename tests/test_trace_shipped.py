"""The traces shipped with the package (issue 28, item 1): current, complete, used, and never trusted blindly."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from advisor.workload import from_preset, trace_presets, trace_shipped, trace_zoo
from advisor.workload.trace_shipped import DATA_DIR, MANIFEST, MODES, TRACE_PRECISIONS
from tests.benchmark_scripts import load

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "regenerate them: python benchmarks/ship_traces.py (see advisor/workload/trace_shipped.py)"


def _manifest() -> dict:
    return json.loads((DATA_DIR / MANIFEST).read_text())


def test_shipped_traces_are_of_this_tracer_and_torch() -> None:
    manifest = _manifest()
    assert manifest["format"] == trace_shipped.FORMAT, REGENERATE
    assert manifest["code"] == trace_shipped.tracer_fingerprint(), \
        f"the tracer or the zoo changed since the shipped traces were made: {REGENERATE}"
    torch_version = trace_shipped._version("torch")
    assert trace_shipped._release(manifest["torch"]) == trace_shipped._release(torch_version), \
        f"made with torch {manifest['torch']}, this is torch {torch_version}: {REGENERATE}"
    assert trace_shipped._usable(DATA_DIR)


def test_every_traced_preset_ships_every_mode_and_trace_precision() -> None:
    entries = _manifest()["entries"]
    want = {trace_shipped.entry_name(b, img, seq, mode, prec)
            for _preset, b, img, seq in trace_shipped.default_shapes() for mode in MODES for prec in TRACE_PRECISIONS}
    want |= {trace_shipped.zoo_entry_name(*case) for case in load("ship_traces").zoo_cases()}
    want |= {trace_shipped.zoo_decode_entry_name(*case) for case in load("ship_traces").zoo_decode_cases()}
    assert set(entries) == want, REGENERATE
    assert {p.name for p in DATA_DIR.glob("*.json.gz")} == want
    total = sum(p.stat().st_size for p in DATA_DIR.glob("*.json.gz"))
    assert total < 5e6, f"the shipped set is {total / 1e6:.1f} MB"
    for name, digest in entries.items():
        assert trace_shipped.hashlib.sha256(gzip.decompress((DATA_DIR / name).read_bytes())).hexdigest() == digest


@pytest.mark.parametrize(("builder", "size", "mode", "precision"), [
    ("mnist-cnn", 28, "train", "amp-bf16"), ("mnist-cnn", 28, "infer", "fp32"), ("mnist-cnn", 28, "train", "fp16"),
    ("lstm-lm", 20, "train", "amp-fp16")])
def test_a_fresh_trace_gives_the_shipped_bytes(builder: str, size: int, mode: str, precision: str) -> None:
    # the fingerprint says the code is the same; this says the same code still traces to the same numbers
    img, seq = (size, None) if builder == "mnist-cnn" else (None, size)
    name = trace_shipped.entry_name(builder, img, seq, mode, precision)
    _data, digest = trace_shipped.encode(trace_presets.trace_pair(builder, img, seq, mode, precision))
    assert digest == _manifest()["entries"][name], REGENERATE


def test_a_fresh_zoo_trace_gives_the_shipped_bytes_and_workload(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.workload.zoo import TRANSFORMERS

    # the case with the fewest layers, not checkpointed: one trace of ~10-30 s on the loaded 2-core VM
    case = min(load("ship_traces").zoo_cases(), key=lambda c: (c[4], TRANSFORMERS[c[0]]["layers"], c[1] * c[2]))
    fresh = trace_zoo.zoo_trace(*case)
    assert trace_shipped.encode_zoo(fresh)[1] == _manifest()["entries"][trace_shipped.zoo_entry_name(*case)], \
        REGENERATE
    model, batch, seq, precision, ckpt = case
    shipped = trace_zoo.zoo_workload(model, batch, seq, precision, "adamw", ckpt)
    monkeypatch.setattr(trace_shipped, "shipped_zoo_trace", lambda *a, **k: None)
    monkeypatch.setattr(trace_zoo, "zoo_trace", lambda *a: fresh)
    traced = trace_zoo.zoo_workload(model, batch, seq, precision, "adamw", ckpt)
    assert traced.ops == shipped.ops and traced.calls == shipped.calls and traced.family == shipped.family
    assert traced.options == shipped.options  # rebuild is not compared


def test_a_fresh_count_of_a_decoding_loop_gives_the_shipped_one() -> None:
    from advisor.validate.records import _autocast

    model, precision = load("ship_traces").zoo_decode_cases()[0]
    fresh = trace_zoo.zoo_decode_count(model, precision, lambda: _autocast(precision, "cpu"))
    assert trace_shipped.shipped_zoo_decode_ops(model, precision) == fresh, REGENERATE


def test_replaying_the_shared_runs_traces_no_zoo_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # each zoo row of the shared runs, as validate's predictor builds it, comes from the shipped set
    from advisor.validate import predictors
    from advisor.validate.replay import case_from_row

    def no_trace(*args: object) -> None:
        raise AssertionError(f"traced {args}: not shipped ({REGENERATE})")

    monkeypatch.setenv("GPU_ADVISOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(trace_zoo, "zoo_trace", no_trace)
    monkeypatch.setattr(trace_zoo, "zoo_decode_count", no_trace)
    predictors._zoo_workload.cache_clear()
    predictors._zoo_decode_ops.cache_clear()
    built = 0
    try:
        for path in sorted((ROOT / "tests" / "data" / "gpu-runs").glob("*/validate-*.json")):
            for row in json.loads(path.read_text())["rows"]:
                case = case_from_row(row["model"], row["config"])
                if case.model in predictors.TRANSFORMERS and (case.mode == "train" or case.gen_len):
                    predictors.estimator_model(case)
                    built += 1
    finally:
        predictors._zoo_workload.cache_clear()
        predictors._zoo_decode_ops.cache_clear()
    assert built >= 21


def test_shipped_pair_round_trips_exactly() -> None:
    pair = trace_shipped.shipped_trace("mnist-cnn", 28, None, "train", "amp-bf16")
    assert pair is not None
    again = trace_shipped._from_document(json.loads(json.dumps(trace_shipped._document(pair))))
    assert again[0] == pair[0] and again[1] == pair[1] and again[2] == pair[2]


def _counting_traces(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    real = trace_presets.trace_pair

    def counting(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(trace_presets, "trace_pair", counting)
    trace_presets._traces.cache_clear()
    return calls


def test_shipped_shapes_are_not_traced_others_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_ADVISOR_CACHE_DIR", "off")
    calls = _counting_traces(monkeypatch)
    try:
        shipped = from_preset("mnist-cnn", batch_size=48, precision="tf32", optimizer="sgd")  # tf32 traces as fp32
        from_preset("mnist-cnn", batch_size=7, mode="infer", precision="int8")
        assert calls == []
        from_preset("lstm-lm", batch_size=48, seq_len=6, precision="tf32", optimizer="sgd")
        assert calls == [("lstm-lm", None, 6, "train", "fp32", False)]
        from_preset("mnist-cnn", batch_size=48, precision="tf32", optimizer="sgd", gradient_checkpointing=False)
        assert len(calls) == 1
        # the same workload as a fresh trace makes, figure for figure
        monkeypatch.setattr(trace_shipped, "shipped_trace", lambda *a, **k: None)
        trace_presets._traces.cache_clear()
        trace_presets._preset_ops.cache_clear()
        fresh = from_preset("mnist-cnn", batch_size=48, precision="tf32", optimizer="sgd")
        assert len(calls) == 2
        assert fresh.ops == shipped.ops and fresh.calls == shipped.calls
        assert fresh.activation_bytes == shipped.activation_bytes and fresh.options == shipped.options
        assert fresh.options.allocations == shipped.options.allocations
    finally:
        trace_presets._traces.cache_clear()
        trace_presets._preset_ops.cache_clear()


def test_stale_or_damaged_shipped_traces_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "traces"
    shutil.copytree(DATA_DIR, copy)
    args = ("mnist-cnn", 28, None, "train", "amp-bf16")
    assert trace_shipped.shipped_trace(*args, directory=copy) is not None
    name = trace_shipped.entry_name(*args)
    doc = json.loads(gzip.decompress((copy / name).read_bytes()))
    doc["traces"][0]["groups"][0][2]["flops"] *= 1000  # an edited figure: the checksum no longer matches
    (copy / name).write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert trace_shipped.shipped_trace(*args, directory=copy) is None
    (copy / name).write_bytes(b"not gzip")
    assert trace_shipped.shipped_trace(*args, directory=copy) is None
    # another tracer (or another torch release): nothing of the set is used
    other = ("mnist-cnn", 28, None, "infer", "fp32")
    assert trace_shipped.shipped_trace(*other, directory=copy) is not None
    for fn in (trace_shipped._manifest, trace_shipped._usable):
        fn.cache_clear()
    monkeypatch.setattr(trace_shipped, "tracer_fingerprint", lambda: "another tracer")
    assert trace_shipped.shipped_trace(*other, directory=copy) is None
    monkeypatch.undo()
    for fn in (trace_shipped._manifest, trace_shipped._usable):
        fn.cache_clear()
    monkeypatch.setattr(trace_shipped, "_version", lambda name: "1.13.0")
    assert trace_shipped.shipped_trace(*other, directory=copy) is None
    monkeypatch.undo()
    for fn in (trace_shipped._manifest, trace_shipped._usable):
        fn.cache_clear()


def test_a_figure_that_is_not_finite_and_non_negative_is_refused() -> None:
    pair = trace_shipped.shipped_trace("mnist-cnn", 28, None, "infer", "fp32")
    assert pair is not None
    for bad in (float("nan"), float("inf"), -1.0, "12", None, [1]):
        doc = trace_shipped.trace_to_json(pair[0])
        doc["activation_bytes"] = bad
        with pytest.raises(ValueError, match="activation_bytes"):
            trace_shipped.trace_from_json(doc)
    doc = trace_shipped.trace_to_json(pair[0])
    doc["gemms"][0][4] = float("nan")
    with pytest.raises(ValueError, match="flops"):
        trace_shipped.trace_from_json(doc)


def test_the_wheel_carries_the_shipped_traces() -> None:
    # hatch packs every file under the listed packages that git does not ignore
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert any(DATA_DIR.resolve().is_relative_to((ROOT / pkg).resolve()) for pkg in wheel["packages"])
    ignored = subprocess.run(["git", "check-ignore", "-q", str(DATA_DIR / MANIFEST)], cwd=ROOT)
    assert ignored.returncode == 1  # not ignored


@pytest.mark.slow  # ~3 s: a fresh interpreter
def test_first_cli_run_of_a_shipped_preset_does_not_import_torch(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_ADVISOR_CACHE_DIR": str(tmp_path / "empty-cache"), "GPU_ADVISOR_HOME": str(tmp_path)}
    code = ("import sys; from advisor.cli import main; "
            "rc = main(['estimate', '--model', 'resnet50', '--gpu', 'a100-sxm4-80gb', '--batch-size', '64', "
            "'--calibration', 'none', '--json']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "NO-TORCH" in run.stderr.split()
    assert json.loads(run.stdout)["time"]["step_s"] > 0
