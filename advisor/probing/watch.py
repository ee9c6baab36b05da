"""Live figures of this machine's devices, as ``nvidia-smi``/``nvitop`` show them: samples in, rows out.

Two halves:

- reading: ``sample(backend)`` takes one ``Snapshot`` (each device's ``DeviceInfo`` from the inventory
  backend, NVML on NVIDIA machines, plus the host CPU's counters from ``/proc``); ``read_cpu_counters``
  reads ``/proc/stat``, ``/proc/loadavg`` and the per-core clocks without psutil;
- pure shaping: ``device_rows(previous, current)`` and ``process_rows(current)`` turn snapshots into
  plain records (units in the key names, ``None`` where a device does not report a figure).  CPU
  utilisation is a difference of two ``/proc/stat`` readings, so the first snapshot has none.

The CLI (``python -m advisor probe --watch``) and the dashboard's "My machine" page both draw these rows.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from advisor.errors import AdvisorError, DeviceError
from advisor.probing.results import DeviceInfo

if TYPE_CHECKING:  # pragma: no cover
    from advisor.probing.backend import InventoryBackend

#: The shortest refresh period accepted (NVML's counters move no faster than ~1/6 s anyway).
MIN_INTERVAL_S = 0.1

_GiB = 1024**3


@dataclass(frozen=True, slots=True)
class CpuCounters:
    """One reading of the host CPU's kernel counters (``None``/empty where the file is not there).

    Attributes:
        jiffies: ``/proc/stat`` time per state (user, nice, system, idle, iowait, irq, softirq, steal)
            for ``"cpu"`` (all cores) and ``"cpu0"``, ``"cpu1"``, ...
        load_avg: 1, 5 and 15 minute load averages from ``/proc/loadavg``.
        core_mhz: current clock of each core, in MHz (cpufreq, else ``/proc/cpuinfo``).
    """

    jiffies: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    load_avg: tuple[float, float, float] | None = None
    core_mhz: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every device at one moment: ``t_s`` (monotonic seconds), devices, and the host CPU's counters."""

    t_s: float
    devices: tuple[DeviceInfo, ...]
    cpu: CpuCounters | None = None


def _read(root: Path, relative: str) -> str | None:
    try:
        return (root / relative).read_text(errors="replace")
    except OSError:
        return None


def parse_proc_stat(text: str) -> dict[str, tuple[int, ...]]:
    """``/proc/stat``'s ``cpu``/``cpuN`` lines as ``{name: jiffies per state}``."""
    out: dict[str, tuple[int, ...]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu"):
            try:
                out[name] = tuple(int(x) for x in rest.split())
            except ValueError:
                continue
    return out


def parse_core_mhz(cpuinfo: str) -> tuple[float, ...]:
    """The ``cpu MHz`` lines of ``/proc/cpuinfo`` (x86; other architectures may not have them)."""
    return tuple(float(m) for m in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, flags=re.MULTILINE))


def read_cpu_counters(root: Path = Path("/")) -> CpuCounters:
    """Read the host CPU's counters (Linux ``/proc`` and ``/sys``; empty elsewhere).

    Args:
        root: file-system root to read under (tests pass a directory holding fake ``proc/`` files).
    """
    stat = _read(root, "proc/stat")
    load = _read(root, "proc/loadavg")
    load_avg = None
    if load:
        try:
            one, five, fifteen = (float(x) for x in load.split()[:3])
            load_avg = (one, five, fifteen)
        except ValueError:
            load_avg = None
    mhz: list[float] = []
    cpu_dir = root / "sys/devices/system/cpu"
    try:
        cores = sorted((p for p in cpu_dir.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda p: int(p.name[3:]))
    except OSError:
        cores = []
    for core in cores:
        khz = _read(core, "cpufreq/scaling_cur_freq")
        if khz is None:
            mhz = []
            break
        try:
            mhz.append(int(khz.strip()) / 1000)
        except ValueError:
            mhz = []
            break
    if not mhz:
        mhz = list(parse_core_mhz(_read(root, "proc/cpuinfo") or ""))
    return CpuCounters(jiffies=parse_proc_stat(stat) if stat else {}, load_avg=load_avg, core_mhz=tuple(mhz))


def sample(backend: InventoryBackend, *, clock: Callable[[], float] = time.monotonic,
           read_cpu: Callable[[], CpuCounters] = read_cpu_counters,
           host: InventoryBackend | Literal[False] | None = None) -> Snapshot:
    """One snapshot of every device the backend sees, plus the host CPU.

    Args:
        backend: an inventory backend (``advisor.probing.default_backend()``: NVML, amdsmi, torch or CPU).
        clock: monotonic clock, in seconds.
        read_cpu: reads the host CPU's counters.
        host: the backend that reports the host CPU's memory when ``backend`` is a GPU one
            (default ``CpuBackend``; pass ``False`` to leave the host CPU out).

    A device that fails as a whole becomes ``DeviceInfo(error=...)``; the others are still read.
    """
    devices: list[DeviceInfo] = []
    for index in range(backend.device_count()):
        try:
            devices.append(backend.device_info(index))
        except (DeviceError, AdvisorError) as exc:
            devices.append(DeviceInfo(index=index, backend=getattr(backend, "name", None), error=str(exc)))
    if host is not False and not any(d.kind == "cpu" for d in devices):
        if host is None:
            from advisor.probing.cpu import CpuBackend

            host = CpuBackend()
        try:
            devices.append(dataclasses.replace(host.device_info(0), index=len(devices)))
        except AdvisorError as exc:
            devices.append(DeviceInfo(index=len(devices), kind="cpu", backend="cpu", error=str(exc)))
    return Snapshot(t_s=clock(), devices=tuple(devices), cpu=read_cpu())


def busy_pct(before: Sequence[int], after: Sequence[int]) -> float | None:
    """Percent of time not idle between two ``/proc/stat`` readings of one CPU (``None`` without a change).

    Idle is ``idle`` + ``iowait`` (fields 4 and 5), as ``top`` counts it; ``guest`` time is already
    inside ``user`` and is not counted twice.
    """
    n = min(len(before), len(after), 8)
    if n < 4:
        return None
    total = sum(after[:n]) - sum(before[:n])
    idle = sum(after[3:min(n, 5)]) - sum(before[3:min(n, 5)])
    if total <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * (total - idle) / total))


def _cpu_figures(previous: CpuCounters | None, current: CpuCounters | None) -> dict[str, Any]:
    out: dict[str, Any] = {"utilization_pct": None, "core_busy_pct": None, "load_avg": None,
                           "clock_mhz": None, "clock_min_mhz": None, "clock_max_mhz": None}
    if current is None:
        return out
    out["load_avg"] = current.load_avg
    if current.core_mhz:
        out["clock_mhz"] = sum(current.core_mhz) / len(current.core_mhz)
        out["clock_min_mhz"] = min(current.core_mhz)
        out["clock_max_mhz"] = max(current.core_mhz)
    if previous is not None and previous.jiffies:
        if "cpu" in current.jiffies and "cpu" in previous.jiffies:
            out["utilization_pct"] = busy_pct(previous.jiffies["cpu"], current.jiffies["cpu"])
        cores = sorted((k for k in current.jiffies if k != "cpu" and k in previous.jiffies),
                       key=lambda k: int(k[3:]) if k[3:].isdigit() else 0)
        per_core = [busy_pct(previous.jiffies[k], current.jiffies[k]) for k in cores]
        out["core_busy_pct"] = tuple(per_core) if per_core and all(p is not None for p in per_core) else None
    return out


def device_rows(previous: Snapshot | None, current: Snapshot) -> list[dict[str, Any]]:
    """One record per device: what a live view shows, ``None`` where the device does not report it.

    Keys: index, kind, name, error, utilization_pct, memory_used_bytes, memory_total_bytes,
    memory_used_pct, power_w, power_limit_w, sm_clock_mhz, sm_clock_max_mhz, mem_clock_mhz,
    temperature_c, fan_pct, throttle_reasons (tuple; empty = none active), processes (count), and for
    the CPU: cores, core_busy_pct (tuple), load_avg (1/5/15 min), clock_min_mhz / clock_max_mhz
    (the slowest and fastest core; ``sm_clock_mhz`` holds their mean).
    """
    rows = []
    for d in current.devices:
        total, used = d.memory_total_bytes, d.memory_used_bytes
        row: dict[str, Any] = {
            "index": d.index, "kind": d.kind, "name": d.name or "unknown device", "error": d.error,
            "utilization_pct": None if d.utilization_gpu_pct is None else float(d.utilization_gpu_pct),
            "memory_used_bytes": used, "memory_total_bytes": total,
            "memory_used_pct": 100.0 * used / total if used is not None and total else None,
            "power_w": d.power_draw_w, "power_limit_w": d.power_limit_w,
            "sm_clock_mhz": None if d.sm_clock_mhz is None else float(d.sm_clock_mhz),
            "sm_clock_max_mhz": None if d.sm_clock_max_mhz is None else float(d.sm_clock_max_mhz),
            "mem_clock_mhz": None if d.mem_clock_mhz is None else float(d.mem_clock_mhz),
            "temperature_c": d.temperature_c, "fan_pct": d.fan_pct,
            "throttle_reasons": d.throttle_reasons,
            "processes": None if d.processes is None else len(d.processes),
            "cores": d.cpu_cores, "core_busy_pct": None, "load_avg": None,
            "clock_min_mhz": None, "clock_max_mhz": None,
        }
        if d.kind == "cpu" and not d.error:
            cpu = _cpu_figures(previous.cpu if previous is not None else None, current.cpu)
            row.update(utilization_pct=cpu["utilization_pct"], core_busy_pct=cpu["core_busy_pct"],
                       load_avg=cpu["load_avg"], sm_clock_mhz=cpu["clock_mhz"],
                       clock_min_mhz=cpu["clock_min_mhz"], clock_max_mhz=cpu["clock_max_mhz"])
        rows.append(row)
    return rows


def process_rows(current: Snapshot) -> list[dict[str, Any]]:
    """One record per process holding GPU memory: device (index), pid, name, used_memory_bytes."""
    return [{"device": d.index, "pid": p.pid, "name": p.name, "used_memory_bytes": p.used_memory_bytes}
            for d in current.devices for p in (d.processes or ())]


# ---------------------------------------------------------------- display strings (CLI and dashboard)

def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{unit}"


def display_row(row: Mapping[str, Any]) -> dict[str, str]:
    """Strings for one ``device_rows`` record: device, util, memory, power, clock, temp, throttle, extra.

    Missing figures are "–"; a CPU's clock is its cores' mean with the range, its extra column the
    load averages and core count.
    """
    name = f"{'CPU' if row['kind'] == 'cpu' else 'GPU'} {row['index']}: {row['name']}"
    if row.get("error"):
        return {"device": name, "util": "–", "memory": "–", "power": "–", "clock": "–", "temp": "–",
                "throttle": "–", "extra": f"FAILED: {row['error']}"}
    used, total = row["memory_used_bytes"], row["memory_total_bytes"]
    if total:
        memory = (f"{used / _GiB:,.1f} / {total / _GiB:,.1f} GiB ({row['memory_used_pct']:.0f}%)"
                  if used is not None else f"? / {total / _GiB:,.1f} GiB")
    else:
        memory = "–"
    power = _num(row["power_w"], ".0f", " W")
    if row["power_w"] is not None and row["power_limit_w"]:
        power += f" / {row['power_limit_w']:.0f} W"
    if row["kind"] == "cpu":
        clock = _num(row["sm_clock_mhz"], ".0f", " MHz")
        if row["clock_min_mhz"] is not None and row["clock_max_mhz"] != row["clock_min_mhz"]:
            clock += f" ({row['clock_min_mhz']:.0f}–{row['clock_max_mhz']:.0f})"
        load = row["load_avg"]
        extra = []
        if load is not None:
            extra.append(f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if row["cores"]:
            extra.append(f"{row['cores']} cores")
        busy = row["core_busy_pct"]
        if busy:
            extra.append("cores busy " + " ".join(f"{b:.0f}" for b in busy) + " %")
        throttle = "–"
    else:
        clock = _num(row["sm_clock_mhz"], ".0f", " MHz")
        if row["sm_clock_mhz"] is not None and row["sm_clock_max_mhz"]:
            clock += f" / {row['sm_clock_max_mhz']:.0f}"
        if row["mem_clock_mhz"] is not None:
            clock += f", mem {row['mem_clock_mhz']:.0f}"
        reasons = row["throttle_reasons"]
        throttle = "–" if reasons is None else (", ".join(r for r in reasons) or "none")
        extra = [] if row["processes"] is None else [f"{row['processes']} process(es)"]
        if row["fan_pct"] is not None:
            extra.append(f"fan {row['fan_pct']}%")
    temp = _num(row["temperature_c"], "d" if isinstance(row["temperature_c"], int) else ".0f", " °C")
    return {"device": name, "util": _num(row["utilization_pct"], ".0f", "%"), "memory": memory, "power": power,
            "clock": clock, "temp": temp, "throttle": throttle, "extra": ", ".join(extra) or "–"}


def json_rows(snapshot: Snapshot, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A JSON-safe document of one refresh: t_s, devices (``device_rows``), processes."""
    def clean(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    return {"t_s": snapshot.t_s, "devices": [{k: clean(v) for k, v in r.items()} for r in rows],
            "processes": process_rows(snapshot)}
