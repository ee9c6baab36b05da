"""``advisor.probing.watch`` and ``probe --watch``: CPU counters from fake /proc files, rows from fake devices."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.probing.results import DeviceInfo, ProcessInfo
from advisor.probing.watch import (
    CpuCounters,
    Snapshot,
    busy_pct,
    device_rows,
    display_row,
    json_rows,
    parse_core_mhz,
    process_rows,
    read_cpu_counters,
    sample,
)
from tests import fakes

ROOT = Path(__file__).resolve().parent.parent

STAT_1 = """cpu  100 0 50 800 50 0 0 0 0 0
cpu0 50 0 25 400 25 0 0 0 0 0
cpu1 50 0 25 400 25 0 0 0 0 0
intr 12345
"""
# cpu0 fully busy for 100 jiffies, cpu1 idle for 100.
STAT_2 = """cpu  200 0 50 900 50 0 0 0 0 0
cpu0 150 0 25 400 25 0 0 0 0 0
cpu1 50 0 25 500 25 0 0 0 0 0
"""


def fake_root(tmp_path: Path, stat: str, *, freqs: tuple[int, ...] | None = (2_400_000, 3_100_000),
              cpuinfo: str = "") -> Path:
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/stat").write_text(stat)
    (tmp_path / "proc/loadavg").write_text("1.50 0.75 0.25 2/345 6789\n")
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo)
    for i, khz in enumerate(freqs or ()):
        d = tmp_path / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
    return tmp_path


def test_cpu_counters_from_proc_and_sysfs(tmp_path) -> None:
    c = read_cpu_counters(fake_root(tmp_path, STAT_1))
    assert c.jiffies["cpu"] == (100, 0, 50, 800, 50, 0, 0, 0, 0, 0)
    assert set(c.jiffies) == {"cpu", "cpu0", "cpu1"}
    assert c.load_avg == (1.5, 0.75, 0.25)
    assert c.core_mhz == (2400.0, 3100.0)


def test_core_clocks_fall_back_to_cpuinfo(tmp_path) -> None:
    info = "processor\t: 0\ncpu MHz\t\t: 2095.078\nprocessor\t: 1\ncpu MHz\t\t: 1999.5\n"
    c = read_cpu_counters(fake_root(tmp_path, STAT_1, freqs=None, cpuinfo=info))
    assert c.core_mhz == (2095.078, 1999.5)
    assert parse_core_mhz("model name : x\n") == ()


def test_missing_proc_gives_empty_counters(tmp_path) -> None:
    c = read_cpu_counters(tmp_path)  # no proc/ at all (macOS, a sandbox)
    assert c == CpuCounters()


def test_busy_pct_counts_iowait_as_idle() -> None:
    assert busy_pct((100, 0, 50, 800, 50), (200, 0, 50, 900, 50)) == pytest.approx(50.0)
    assert busy_pct((0, 0, 0, 0, 0), (0, 0, 0, 50, 50)) == 0.0
    assert busy_pct((1, 2, 3, 4), (1, 2, 3, 4)) is None  # no time passed
    assert busy_pct((1,), (2,)) is None


def cpu_device() -> DeviceInfo:
    return DeviceInfo(index=0, kind="cpu", backend="cpu", name="AMD EPYC 7B13", memory_total_bytes=8 * 2**30,
                      memory_used_bytes=2 * 2**30, cpu_cores=2)


def test_cpu_row_has_utilisation_load_and_clocks(tmp_path) -> None:
    first = Snapshot(0.0, (cpu_device(),), read_cpu_counters(fake_root(tmp_path, STAT_1)))
    second = Snapshot(1.0, (cpu_device(),), read_cpu_counters(fake_root(tmp_path, STAT_2)))
    assert device_rows(None, first)[0]["utilization_pct"] is None  # one reading has no rate
    row = device_rows(first, second)[0]
    assert row["utilization_pct"] == pytest.approx(50.0)
    assert row["core_busy_pct"] == pytest.approx((100.0, 0.0))
    assert row["load_avg"] == (1.5, 0.75, 0.25)
    assert row["sm_clock_mhz"] == pytest.approx(2750.0)
    assert row["memory_used_pct"] == pytest.approx(25.0)
    shown = display_row(row)
    assert shown["clock"] == "2750 MHz (2400–3100)"
    assert shown["util"] == "50%"
    assert "load 1.50 0.75 0.25" in shown["extra"] and "2 cores" in shown["extra"]
    assert "cores busy 100 0 %" in shown["extra"]
    assert shown["power"] == "–" and shown["temp"] == "–"  # a CPU reports neither here: a dash, not "None"


def test_gpu_rows_throttle_reasons_and_processes() -> None:
    gpu = fakes.h100(0, utilization_gpu_pct=87, throttle_reasons=("sw_power_cap",), power_draw_w=650.0,
                     sm_clock_mhz=1755, processes=(ProcessInfo(4242, "python", 40 * 2**30),))
    snap = Snapshot(3.0, (gpu, fakes.h100(1)), CpuCounters())
    rows = device_rows(None, snap)
    assert rows[0]["utilization_pct"] == 87.0 and rows[0]["processes"] == 1
    shown = display_row(rows[0])
    assert shown["throttle"] == "sw_power_cap"
    assert shown["power"] == "650 W / 700 W"
    assert shown["clock"] == "1755 MHz / 1980, mem 2619"
    assert shown["temp"] == "31 °C"
    assert display_row(rows[1])["throttle"] == "none"
    assert process_rows(snap) == [{"device": 0, "pid": 4242, "name": "python", "used_memory_bytes": 40 * 2**30}]
    doc = json.loads(json.dumps(json_rows(snap, rows)))
    assert doc["devices"][0]["throttle_reasons"] == ["sw_power_cap"] and doc["processes"][0]["pid"] == 4242


def test_sample_keeps_going_past_a_lost_gpu_and_adds_the_host() -> None:
    backend = fakes.one_gpu_lost()

    class Host:
        def device_info(self, index: int) -> DeviceInfo:
            return cpu_device()

    snap = sample(backend, clock=lambda: 7.0, read_cpu=CpuCounters, host=Host())
    assert [d.kind for d in snap.devices] == ["gpu", "gpu", "cpu"]
    assert snap.devices[1].error == "GPU is lost" and snap.devices[2].index == 2
    rows = device_rows(None, snap)
    assert display_row(rows[1])["extra"] == "FAILED: GPU is lost"


def probe_package():
    return importlib.import_module("advisor.probing")


def test_cli_watch_count_prints_tables(monkeypatch, capsys) -> None:
    backend = fakes.throttling()
    monkeypatch.setattr(probe_package(), "default_backend", lambda: backend)
    monkeypatch.setattr("time.sleep", lambda s: None)
    assert main(["probe", "--watch", "0.5", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("devices at") == 2
    assert "GPU 0" in out and "CPU" in out  # the host CPU is listed next to the GPUs
    assert backend.closed == 1


def test_cli_watch_json_lines(monkeypatch, capsys) -> None:
    monkeypatch.setattr(probe_package(), "default_backend", lambda: fakes.two_h100s())
    monkeypatch.setattr("time.sleep", lambda s: None)
    assert main(["probe", "--watch", "--count", "3", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    assert [d["name"] for d in docs[0]["devices"]][:2] == ["NVIDIA H100 80GB HBM3"] * 2


def test_cli_watch_ctrl_c_exits_zero(monkeypatch, capsys) -> None:
    backend = fakes.two_h100s()
    monkeypatch.setattr(probe_package(), "default_backend", lambda: backend)
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > 1:
            raise KeyboardInterrupt

    monkeypatch.setattr("time.sleep", sleep)
    assert main(["probe", "--watch", "1"]) == 0
    assert calls == [0.25, 1.0] and backend.closed == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["probe", "--watch", "0"], "--watch must be at least"),
    (["probe", "--watch", "1", "--count", "0"], "--count must be >= 1"),
    (["probe", "--watch", "--collectives"], "--watch and --collectives cannot be combined"),
])
def test_cli_watch_bad_input(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "hint:" in err


def test_cli_watch_on_this_machine_subprocess() -> None:
    """The real backend of this machine (the CPU on a CI runner): one refresh, JSON, no traceback."""
    done = subprocess.run([sys.executable, "-m", "advisor", "probe", "--watch", "0.2", "--count", "1", "--json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    cpu = [d for d in doc["devices"] if d["kind"] == "cpu"]
    assert cpu and cpu[0]["memory_total_bytes"]
    if Path("/proc/stat").exists():
        assert cpu[0]["utilization_pct"] is not None and cpu[0]["load_avg"] is not None
