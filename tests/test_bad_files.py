"""Users' files read defensively (issue 29, items 3, 4 and 9): every bad file is `error:` + `hint:`, never a
traceback, a hang or an unbounded read; bad calibration figures are refused by name, never scale an estimate."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from advisor.cli import main
from advisor.errors import AdvisorError, EstimateError, WorkloadError
from advisor.files import MAX_BYTES, path_state, read_json_object

ROOT = Path(__file__).resolve().parent.parent
H100_PROBE = ROOT / "tests" / "data" / "gpu-runs" / "h100-2026-11-28" / "probe-full.json"
LONG_NAME = "x" * 5000


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GPU_ADVISOR_CACHE_DIR", "off")


def _two_lines(err: str) -> tuple[str, str]:
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    return lines[0], lines[1]


def _bad_file(tmp_path: Path, kind: str) -> Path:
    """A file of one bad kind (named for the message it must produce)."""
    path = tmp_path / f"{kind}.json"
    if kind == "binary":  # e.g. model.safetensors passed as a config
        path.write_bytes(b"\xb8\x01\x00\x00\x00\x00\x00\x00" + os.urandom(256))
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "deep-object":
        path.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    elif kind == "huge":  # sparse: its size, not its bytes, is what is refused
        with open(path, "wb") as fh:
            fh.truncate(200 * 1024 * 1024)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise AssertionError(kind)
    return path


FILE_CASES = [("binary", "not UTF-8 text (byte 0xb8 at offset 0)"), ("deep", "nested too deeply"),
              ("deep-object", "nested too deeply"), ("huge", "200.0 MiB"), ("directory", "is a directory")]


@pytest.mark.parametrize(("flag", "kind", "words"),
                         [("--calibration", k, w) for k, w in FILE_CASES] +
                         # a directory given as --model is read as the config.json inside it (the next test)
                         [("--model", k, w) for k, w in FILE_CASES if k != "directory"])
def test_a_bad_config_or_calibration_file_is_a_clean_error(tmp_path: Path, kind: str, words: str, flag: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad_file(tmp_path, kind)
    argv = ["estimate", "--gpu", "h100-sxm5-80gb", "--model", "gpt2", flag, str(path)]
    assert main(argv) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert words in error and path.name in error and hint
    if kind == "huge":
        assert f"up to {MAX_BYTES['config' if flag == '--model' else 'calibration'] // 2**20}.0 MiB" in error


def test_a_model_directory_without_a_readable_config_json_is_named(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "my-model"
    (model / "config.json").mkdir(parents=True)  # a directory where the file should be
    assert main(["estimate", "--gpu", "h100-sxm5-80gb", "--model", str(model)]) == 2
    error, _ = _two_lines(capsys.readouterr().err)
    assert "config.json" in error and "is a directory" in error


@pytest.mark.parametrize(("kind", "words"), FILE_CASES)
def test_a_bad_replay_file_is_a_clean_error(tmp_path: Path, kind: str, words: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad_file(tmp_path, kind)
    assert main(["validate", "--replay", str(path)]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert words in error and "--replay" in error and "validate --json" in hint


@pytest.mark.parametrize("argv", [
    ["estimate", "--gpu", "h100-sxm5-80gb", "--model", LONG_NAME],
    ["estimate", "--gpu", "h100-sxm5-80gb", "--model", LONG_NAME + ".json"],
    ["estimate", "--gpu", "h100-sxm5-80gb", "--model", "owner/" + LONG_NAME],  # no hub id is that long
    ["estimate", "--gpu", "h100-sxm5-80gb", "--model", "gpt2", "--calibration", LONG_NAME],
    ["validate", "--replay", LONG_NAME],
    ["validate", "--replay", "9" * 5000],
])
def test_a_5000_character_name_is_a_short_clean_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    error, _ = _two_lines(capsys.readouterr().err)
    assert len(error) < 400 and ",00" in error and " characters)" in error


def test_special_files_are_named_and_never_read(tmp_path: Path) -> None:
    # In a subprocess with a timeout: a regression here would block on the FIFO for ever, or read /dev/zero
    # until memory runs out.
    fifo = _bad_file(tmp_path, "fifo")
    script = f"""
import sys
from advisor.cli import main
for argv in (["estimate", "--gpu", "h100-sxm5-80gb", "--model", {str(fifo)!r}],
             ["estimate", "--gpu", "h100-sxm5-80gb", "--model", "gpt2", "--calibration", {str(fifo)!r}],
             ["validate", "--replay", {str(fifo)!r}],
             ["estimate", "--gpu", "h100-sxm5-80gb", "--model", "/dev/zero"],
             ["estimate", "--gpu", "h100-sxm5-80gb", "--model", "gpt2", "--calibration", "/dev/zero"],
             ["validate", "--replay", "/dev/zero"]):
    print("rc", main(argv), file=sys.stderr)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr
    assert err.count("rc 2") == 6 and "Traceback" not in err
    assert err.count("named pipe (FIFO)") == 3 and err.count("device file") == 3


def test_path_state_never_raises(tmp_path: Path) -> None:
    assert path_state(LONG_NAME) == "missing"
    assert path_state(tmp_path / "file" / "below-a-file") == "missing"
    assert path_state(tmp_path) == "dir"
    assert path_state("/dev/zero") == "special"
    assert path_state("") == "missing"


def test_a_file_that_outgrows_its_stat_is_still_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor import files

    path = tmp_path / "c.json"
    path.write_text('{"a": 1}' + " " * 5000)
    monkeypatch.setitem(files.MAX_BYTES, "config", 1000)
    with pytest.raises(WorkloadError, match=r"1,000 bytes"):
        read_json_object(path, kind="config", what="config", hint="h", error=WorkloadError)


# --- spec TOMLs -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "words"), [
    (b'id = "x"\nname = "\xff\xfe"\n', "not UTF-8 text (byte 0xff at offset 17)"),
    (b"a = " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nested too deeply"),
    (b"id = \n", "not valid TOML"),
])
@pytest.mark.parametrize("via", ["--specs-dir", "GPU_ADVISOR_SPECS"])
def test_a_bad_spec_toml_is_a_clean_error_naming_the_file(tmp_path: Path, content: bytes, words: str, via: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x.toml").write_bytes(content)
    if via == "--specs-dir":
        assert main(["specs", "list", "--specs-dir", str(mine)]) == 2
    else:
        monkeypatch.setenv("GPU_ADVISOR_SPECS", str(mine))
        assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb"]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert words in error and str(mine / "x.toml") in error and str(mine) in hint


def test_a_spec_toml_over_its_cap_is_refused_unread(tmp_path: Path) -> None:
    from advisor.catalog import load_spec_file
    from advisor.errors import SpecError

    path = tmp_path / "big.toml"
    with open(path, "wb") as fh:
        fh.truncate(MAX_BYTES["spec"] + 1)
    with pytest.raises(SpecError, match=r"read only up to 1\.0 MiB"):
        load_spec_file(path)


# --- calibration figures ----------------------------------------------------------------------------------------------

GOOD = {"matmul_bf16": 0.77, "memory_bandwidth": 0.9, "h2d_pinned": 0.85, "launch_overhead_s": 1.1e-5,
        "sustained_clock_fraction_bf16": 0.84, "host_dispatch_s_per_op": 8e-6, "kernel_gap_s": 1e-6}
BAD_VALUES: list[Any] = [0, -0.5, 1e-300, 1e300, 1e-9, 5.0, "0.5", True, None, [0.5], {"a": [1, {"b": 2}]},
                         10**400]


def _figure_cases() -> list[tuple[str, Any]]:
    cases = [(key, value) for key in GOOD for value in BAD_VALUES  # no (or a tiny) gap between kernels is real
             if not (key == "kernel_gap_s" and isinstance(value, float) and 0 <= value <= 1e-4)
             and not (key == "kernel_gap_s" and value == 0)]
    return [*cases, ("matmul_bf16", "NaN"), ("memory_bandwidth", "Infinity"), ("host_op_s", "-Infinity")]


def _write_efficiencies(path: Path, figures: dict[str, Any]) -> None:
    text = json.dumps({"efficiencies": figures}, default=str)
    for literal in ("NaN", "Infinity", "-Infinity"):  # JSON's non-standard constants, as Python writes them
        text = text.replace(f'"{literal}"', literal)
    path.write_text(text)


@pytest.mark.parametrize(("key", "value"), _figure_cases())
def test_a_bad_calibration_figure_is_refused_by_name_with_its_range(tmp_path: Path, key: str, value: Any) -> None:
    from advisor.api import estimate

    path = tmp_path / "cal.json"
    _write_efficiencies(path, {**GOOD, key: value})
    with pytest.raises(EstimateError) as info:
        estimate("llama-3-8b", "h100-sxm5-80gb", calibration=str(path))
    message = info.value.message
    assert repr(key) in message and "cal.json" in message
    assert ("not a number" in message or "not a finite number" in message or "outside the accepted range" in message)
    assert ("from" in message and "to" in message) or "finite number" in message  # the accepted range is said
    with pytest.raises(EstimateError, match=key):  # the same figure passed as a mapping
        estimate("llama-3-8b", "h100-sxm5-80gb", calibration={**GOOD, key: json.loads(json.dumps(value))
                                                               if not isinstance(value, str) else value})


@pytest.mark.parametrize(("document", "words"), [
    ({"efficiencies": {}}, "efficiencies object is empty"),
    ({"efficiencies": [1]}, "not a probe result"),
    ({"foo": 1}, "not a probe result"),
    ({"efficiencies": {"matmul_bf16": {"x": [1, {"y": 2}]}}}, "'matmul_bf16' is {'x'"),
])
def test_calibration_files_without_figures_are_refused(tmp_path: Path, document: dict[str, Any], words: str) -> None:
    from advisor.api import estimate

    path = tmp_path / "cal.json"
    path.write_text(json.dumps(document))
    with pytest.raises(EstimateError, match=words.replace("[", r"\[").replace("{", r"\{")):
        estimate("gpt2", "h100-sxm5-80gb", calibration=str(path))


def _mutated_probe(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(json.loads(H100_PROBE.read_text()))
    change(doc)
    return doc


PROBE_CASES = {
    "devices are numbers": (lambda d: d.update(devices=[1, 2]), "not a probe result"),
    "kernels a string": (lambda d: d.update(kernels="x"), "not a probe result"),
    "device index a word": (lambda d: d["devices"][0].update(index="zero"), "not a probe result"),
    "every fraction 1e300": (lambda d: [k.update(fraction_of_peak=1e300) for k in d["kernels"]], "outside"),
    "fractions are words": (lambda d: [k.update(fraction_of_peak="x") for k in d["kernels"]], "not a probe result"),
    "sampled clocks are words": (lambda d: [s.update(sm_clock_mhz="fast") for k in d["kernels"]
                                            for s in k["samples"]], "not a probe result"),
    "max clock of 1 MHz": (lambda d: d["devices"][0].update(sm_clock_max_mhz=1), "sustained_clock_fraction"),
    "max clock of 1e9 MHz": (lambda d: d["devices"][0].update(sm_clock_max_mhz=1e9), "sustained_clock_fraction"),
    "launch of 1e300 us": (lambda d: [k.update(value=1e300) for k in d["kernels"] if k["name"] == "launch"],
                           "launch_overhead_s"),
    "measurement garbage": (lambda d: [k.update(measurement={"times_s": "x"}) for k in d["kernels"]],
                            "not a probe result"),
}


@pytest.mark.parametrize("case", list(PROBE_CASES))
def test_a_damaged_probe_file_is_refused_not_used(tmp_path: Path, case: str) -> None:
    from advisor.api import estimate

    change, words = PROBE_CASES[case]
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(_mutated_probe(change)))
    with pytest.raises(EstimateError, match=words):
        estimate("llama-3-8b", "h100-sxm5-80gb", calibration=str(path))


def test_the_real_probe_calibrates_within_its_ranges() -> None:
    from advisor.api import estimate

    e = estimate("llama-3-8b", "h100-sxm5-80gb", calibration=str(H100_PROBE))
    base = estimate("llama-3-8b", "h100-sxm5-80gb", calibration=None)
    assert e.calibrated and math.isfinite(e.time.step_s)
    assert 0.7 < e.time.step_s / base.time.step_s < 1.3


def test_bad_calibration_on_the_cli_is_error_and_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cal.json"
    _write_efficiencies(path, {**GOOD, "sustained_clock_fraction_bf16": 1e-300})
    assert main(["estimate", "--model", "llama-3-8b", "--gpu", "h100-sxm5-80gb", "--calibration", str(path)]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert "'sustained_clock_fraction_bf16' is 1e-300" in error and "a fraction from 0.1 to 1.2" in error
    assert "probe --json" in hint


# --- transformers classes, the dashboard's upload -----------------------------------------------------------------

def _fake_transformers() -> Any:
    class PreTrainedModel:
        pass

    class OPTForCausalLM(PreTrainedModel):
        pass

    class Trainer:
        pass

    def pipeline(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a config must never reach a transformers function")

    class AutoModel:
        _model_mapping: ClassVar[dict[Any, Any]] = {}

    return types.SimpleNamespace(PreTrainedModel=PreTrainedModel, OPTForCausalLM=OPTForCausalLM, Trainer=Trainer,
                                 pipeline=pipeline, AutoModel=AutoModel, __version__="fake")


@pytest.mark.parametrize(("architectures", "words"), [
    (["pipeline"], "names a transformers function, not a model class"),
    (["Trainer"], "names a transformers type, not a model class"),
    (["os.system"], "is not a model class name"),
    (["__import__"], "is not a model class name"),
    ([{"a": 1}], "is not a model class name"),
    ("OPTForCausalLM", "not a list of model class names"),
])
def test_architectures_names_only_model_classes(architectures: Any, words: str) -> None:
    from advisor.workload.hf import _model_class

    with pytest.raises(WorkloadError, match=words):
        _model_class(_fake_transformers(), {"architectures": architectures}, object())


def test_architectures_takes_a_model_class() -> None:
    from advisor.workload.hf import _model_class

    fake = _fake_transformers()
    assert _model_class(fake, {"architectures": ["NoSuchModel", "OPTForCausalLM"]}, object()) is fake.OPTForCausalLM


def test_streamlit_refuses_uploads_larger_than_the_dashboards_own_cap() -> None:
    from advisor.dashboard.recommender import MAX_UPLOAD_BYTES

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 1024 * 1024 == MAX_UPLOAD_BYTES


def test_the_dashboard_upload_parser_refuses_deep_nesting() -> None:
    import advisor.dashboard_data as dd

    with pytest.raises(WorkloadError, match="nested too deeply"):
        dd.parse_config_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(AdvisorError, match="is empty"):
        dd.parse_config_json(b"  ")
