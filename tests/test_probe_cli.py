"""``python -m advisor probe``: JSON, text, bad input, history, --out, --collectives."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.store import HistoryStore
from tests import fakes

ROOT = Path(__file__).resolve().parent.parent


def probe_package():
    # `advisor.probe` as an attribute is the probe() function (the public API); the package is in sys.modules.
    return importlib.import_module("advisor.probing")


@pytest.fixture
def fake_backend(monkeypatch):
    backend = fakes.pcie_downtrained()
    monkeypatch.setattr(probe_package(), "default_backend", lambda: backend)
    return backend


def test_json_document_saved_and_written(fake_backend, capsys, tmp_path) -> None:
    out = tmp_path / "probe.json"
    assert main(["probe", "--kernels", "none", "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # exactly one document on stdout
    assert doc["schema_version"] == 1 and doc["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert {"pcie_gen_low", "pcie_width_low"} <= {v["code"] for v in doc["verdicts"]}
    assert doc["saved"]["id"] >= 1
    assert json.loads(out.read_text())["devices"] == doc["devices"]
    saved = HistoryStore().get_probe(doc["saved"]["id"])
    assert saved.catalog_id == "h100-sxm5-80gb"
    assert fake_backend.closed == 1  # the CLI's own backend is closed


def test_text_tables(fake_backend, capsys) -> None:
    assert main(["probe", "--kernels", "none", "--no-save"]) == 0
    out = capsys.readouterr().out
    for words in ("devices (backend: fake-nvml)", "health", "verdicts", "x8 of max x16", "gen3x8 (max gen5x16)"):
        assert words in out
    assert len(HistoryStore().list_probes()) == 0  # --no-save


def test_text_with_cpu_kernels(capsys, monkeypatch) -> None:
    from advisor.probing.cpu import CpuBackend

    monkeypatch.setattr(probe_package(), "default_backend", lambda: CpuBackend())
    assert main(["probe", "--kernels", "launch,transfer", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "launch" in out and " us" in out and "skipped: no GPU" in out and "launch_overhead_s=" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--device", "99"], "no device 99"),
    (["--kernels", "matmul,gemm"], "unknown kernel 'gemm'"),
    (["--max-memory-fraction", "1.5"], "--max-memory-fraction"),
    (["--max-seconds", "0"], "--max-seconds"),
    (["--max-seconds", "nan"], "--max-seconds must be > 0, got nan"),
    (["--max-memory-fraction", "nan"], "--max-memory-fraction"),
])
def test_bad_input_exits_2(fake_backend, capsys, argv, message) -> None:
    kernels = [] if "--kernels" in argv else ["--kernels", "none"]
    assert main(["probe", "--no-save", *kernels, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "\nhint: " in err and "Traceback" not in err


@pytest.mark.parametrize("document", [
    {"kernels": [], "devices": []},  # no timestamp
    {"kernels": [1], "devices": [1], "timestamp": "t", "host": "h"},  # parts of the wrong shape
    {"kernels": [{"name": "matmul", "measurement": {"times_s": [1.0]}}], "devices": [], "timestamp": "t",
     "host": "h"},  # a measurement without its iteration count
])
def test_a_file_that_is_not_a_probe_result_is_an_error_with_a_hint(capsys, tmp_path, document) -> None:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(document))
    assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--calibration", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: calibration file {str(path)!r} is not a probe result: ") and "\nhint: " in err


def test_a_malformed_probe_document_is_an_advisor_error() -> None:
    from advisor.errors import AdvisorError
    from advisor.probing.results import ProbeDocumentError, ProbeResult

    with pytest.raises(ProbeDocumentError, match="no 'host' key") as exc:
        ProbeResult.from_dict({"timestamp": "t"})
    assert isinstance(exc.value, AdvisorError) and exc.value.message == "not a probe result: no 'host' key"
    assert exc.value.hint and "probe --json" in exc.value.hint


def test_corrupt_store_warns_and_still_prints(fake_backend, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    (tmp_path / "history.sqlite3").write_bytes(b"garbage" * 500)
    assert main(["probe", "--kernels", "none", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["saved"] is None
    assert "warning: result not saved" in captured.err and "corrupt" in captured.err


def test_unwritable_out_is_an_error_but_the_result_is_printed(fake_backend, capsys, tmp_path) -> None:
    assert main(["probe", "--kernels", "none", "--json", "--no-save", "--out", str(tmp_path / "no" / "x.json")]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["devices"] and "cannot write --out" in captured.err


def test_collectives_missing_is_a_clear_error(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "advisor.probing.collectives", None)
    assert main(["probe", "--collectives"]) == 2
    assert "collectives are not available" in capsys.readouterr().err


def test_collectives_are_delegated(monkeypatch) -> None:
    mod = types.ModuleType("advisor.probing.collectives")
    seen = []
    mod.run_collectives = lambda quick: seen.append(quick)  # not rank 0: no report, nothing printed
    monkeypatch.setitem(sys.modules, "advisor.probing.collectives", mod)
    assert main(["probe", "--collectives", "--quick"]) == 0 and seen == [True]


def test_importing_the_probe_loads_neither_torch_nor_pynvml() -> None:
    code = "import advisor.probing, advisor.store, advisor.commands.probe, sys; " \
           "print(sorted(m for m in ('torch', 'pynvml', 'pandas', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_quick_json_probe_on_a_machine_without_a_gpu(tmp_path) -> None:
    """The real thing, in a subprocess: no driver here, so NVML is unavailable and the CPU is probed."""
    import os

    from advisor.errors import ProbeUnavailable
    from advisor.probing.nvml import PynvmlBackend

    try:
        PynvmlBackend().close()
    except ProbeUnavailable:
        pass
    else:
        pytest.skip("an NVIDIA driver is present: this test is about machines without one")
    env = {**os.environ, "GPU_ADVISOR_HOME": str(tmp_path)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "advisor", "probe", "--quick", "--json"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert any(n.startswith("NVML unavailable") for n in doc["notes"])
    assert doc["backend"] == "cpu" and doc["devices"][0]["kind"] == "cpu" and doc["devices"][0]["cpu_cores"] >= 1
    measured = [k for k in doc["kernels"] if k["value"] is not None]
    assert {k["name"] for k in measured} >= {"matmul", "conv2d", "memory_copy", "launch"}
    mm = next(k for k in measured if k["name"] == "matmul")
    m, n, k = (int(x) for x in mm["shape"].split("x"))
    assert mm["work"] == 2 * m * n * k and mm["value"] > 0
    assert doc["efficiencies"]["0"]["launch_overhead_s"] > 0
    assert doc["saved"]["id"] == 1
    assert took < 60  # ~10 s on an idle 2-core machine; generous for a loaded CI box
