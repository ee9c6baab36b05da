"""The history and fleet pages' tables: runs over time, two runs compared, collectives, the fleet heatmap.

Stragglers follow the collectives probe's rule (``advisor.probing.collectives.find_stragglers``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from advisor.dashboard_data.tables import round_for_display
from advisor.probing.collectives import STRAGGLER_FRACTION, find_stragglers
from advisor.units import format_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _best_per_kernel(result: Mapping[str, Any]) -> dict[tuple[int, str, str], tuple[float, str, str]]:
    """(device_index, kernel, precision) -> (best value, unit, device name) over a result's sizes."""
    names = {d.get("index"): d.get("name") or f"device {d.get('index')}" for d in result.get("devices", [])}
    best: dict[tuple[int, str, str], tuple[float, str, str]] = {}
    for k in result.get("kernels", []):
        if k.get("value") is None or k.get("skipped") or k.get("error") or k.get("unit") not in ("TFLOP/s", "GB/s"):
            continue
        key = (int(k.get("device_index", 0)), str(k.get("name")), str(k.get("precision") or ""))
        if key not in best or k["value"] > best[key][0]:
            best[key] = (float(k["value"]), k["unit"], names.get(key[0], f"device {key[0]}"))
    return best


def run_label(result: Mapping[str, Any], position: int) -> str:
    """A readable, unique label for one stored run: ``#id 2026-11-23 09:00 host (quick)``."""
    ident = result.get("id", position)
    when = str(result.get("timestamp", "?")).replace("T", " ")[:16]
    depth = "quick" if result.get("quick") else "full"
    return f"#{ident} {when} {result.get('host', '?')} ({depth})"


def history_runs_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per stored probe run: run, time, host, devices, kernels measured, best matmul, best copy."""
    import pandas as pd

    rows = []
    for i, r in enumerate(results):
        best = _best_per_kernel(r)
        matmul = [v for (_, name, _), (v, unit, _) in best.items() if name == "matmul" and unit == "TFLOP/s"]
        copy = [v for (_, name, _), (v, unit, _) in best.items() if name == "memory_copy"]
        rows.append({"run": run_label(r, i), "time": pd.to_datetime(r.get("timestamp"), utc=True, errors="coerce"),
                     "host": r.get("host"),
                     "devices": ", ".join(str(d.get("name") or "?") for d in r.get("devices", [])),
                     "kernels": len(r.get("kernels", [])),
                     "best matmul (TFLOP/s)": max(matmul) if matmul else math.nan,
                     "device copy (GB/s)": max(copy) if copy else math.nan})
    return pd.DataFrame(rows, columns=["run", "time", "host", "devices", "kernels", "best matmul (TFLOP/s)",
                                       "device copy (GB/s)"])


def history_trend_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table of each run's best value per device and kernel: time, device, series, achieved, unit."""
    import pandas as pd

    rows = []
    for r in results:
        when = pd.to_datetime(r.get("timestamp"), utc=True, errors="coerce")
        for (index, name, precision), (value, unit, device) in _best_per_kernel(r).items():
            rows.append({"time": when, "device": f"{r.get('host', '?')} / {index}: {device}",
                         "series": f"{name} {precision}".strip() + f" ({unit})", "achieved": value, "unit": unit})
    return pd.DataFrame(rows, columns=["time", "device", "series", "achieved", "unit"]).sort_values("time")


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Kernels measured in both runs on the same device: device, kernel, precision, A, B, unit, change_pct (B vs A).

    The same device is the same index holding the same device name: a GPU run and a CPU run share index 0 but are
    not one device, and "-100%" between them would be no finding.
    """
    import pandas as pd

    best_a, best_b = _best_per_kernel(a), _best_per_kernel(b)
    rows = []
    for key in sorted(k for k in best_a.keys() & best_b.keys() if best_a[k][2] == best_b[k][2]):
        (va, unit, device), (vb, _, _) = best_a[key], best_b[key]
        rows.append({"device": f"{key[0]}: {device}", "kernel": key[1], "precision": key[2], "A": va, "B": vb,
                     "unit": unit, "change_pct": round_for_display((vb / va - 1) * 100, 1) if va else math.nan})
    return pd.DataFrame(rows, columns=["device", "kernel", "precision", "A", "B", "unit", "change_pct"])


def _collectives_members(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Per-node views of a stored collectives run (``backend == "collectives"``).

    Its devices are the ranks, named ``"host/cuda:N card"``; per-rank kernels (not ``collective_*``, which
    describe the whole group) are mapped to the node and local GPU index.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for d in result.get("devices", []):
        name = str(d.get("name") or "")
        host, _, rest = name.partition("/")
        device, _, card = rest.partition(" ")
        local = int(device.split(":")[1]) if device.split(":")[-1].isdigit() and ":" in device else d.get("index", 0)
        rank = d.get("index", 0)
        node = nodes.setdefault(host or str(result.get("host") or "?"),
                                {"host": host, "timestamp": result.get("timestamp"), "devices": [], "kernels": []})
        node["devices"].append({"index": local, "name": card or name, "kind": d.get("kind", "gpu")})
        node["kernels"] += [{**k, "device_index": local} for k in result.get("kernels", [])
                            if k.get("device_index") == rank and not str(k.get("name", "")).startswith("collective_")]
    return list(nodes.items())


def collectives_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The newest stored collectives run: op, size_bytes, busbw_gbs, link_gbs, fraction_pct, timestamp, ranks.

    Bus bandwidth follows nccl-tests' definitions (the probe computes it); skipped sizes are left out.
    """
    import pandas as pd

    columns = ["op", "size_bytes", "size", "busbw_gbs", "link_gbs", "fraction_pct", "timestamp", "ranks"]
    runs = [r for r in results if r.get("backend") == "collectives"]
    if not runs:
        return pd.DataFrame(columns=columns)
    newest = max(runs, key=lambda r: str(r.get("timestamp", "")))
    rows = []
    for k in newest.get("kernels", []):
        if not str(k.get("name", "")).startswith("collective_") or k.get("value") is None or k.get("skipped"):
            continue
        size = k.get("work")
        frac = k.get("fraction_of_peak")
        rows.append({"op": k["name"].removeprefix("collective_"), "size_bytes": size,
                     "size": format_bytes(size), "busbw_gbs": float(k["value"]), "link_gbs": k.get("spec_peak"),
                     "fraction_pct": math.nan if frac is None else 100 * frac,
                     "timestamp": newest.get("timestamp"), "ranks": len(newest.get("devices", []))})
    return pd.DataFrame(rows, columns=columns)


def _fleet_members(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(node, per-node result) pairs of one stored document: a fleet result's nodes, else the run itself."""
    if result.get("backend") == "collectives":
        return _collectives_members(result)
    for key in ("nodes", "ranks", "members"):
        members = result.get(key)
        if isinstance(members, list) and members and isinstance(members[0], Mapping):
            return [(str(m.get("node") or m.get("host") or f"node {i}"), m) for i, m in enumerate(members)]
    return [(str(result.get("host") or "?"), result)]


def _gpu_indices(result: Mapping[str, Any]) -> set[int]:
    """The device indices of a result's GPUs (a probe on a CPU-only host reports its CPU as a device of kind cpu)."""
    return {int(d.get("index", 0)) for d in result.get("devices", []) if d.get("kind", "gpu") != "cpu"}


def fleet_empty_reason(results: Sequence[Mapping[str, Any]]) -> str:
    """Why the fleet view has no GPU to show, and what to run: for a store where ``fleet_frame`` is empty.

    Three cases: nothing stored; only CPU runs (a probe on a host without a GPU measures its CPU); GPU runs that
    hold no per-GPU measurement (e.g. a collectives run without its per-rank matmul).
    """
    if not results:
        return ("No probe runs stored yet. Run `python -m advisor probe` on each GPU machine with this store "
                "(or `torchrun --nproc-per-node N -m advisor probe --collectives`, under `srun` across nodes): "
                "each GPU then gets a cell here.")
    members = [member for r in results for _, member in _fleet_members(r)]
    if not any(_gpu_indices(m) for m in members):
        hosts = sorted({str(m.get("host") or r.get("host") or "?") for r in results for _, m in _fleet_members(r)})
        return (f"No GPU probes stored: the {len(results)} stored run(s) measured CPUs only ({', '.join(hosts)}), "
                "and the fleet view compares GPUs. Run `python -m advisor probe` on a GPU machine (or "
                "`torchrun --nproc-per-node N -m advisor probe --collectives` across GPU nodes) with this store "
                "(`GPU_ADVISOR_HOME`) to fill it.")
    return ("The stored GPU runs hold no per-GPU measurement (matmul, conv or bandwidth) to compare. Run "
            "`python -m advisor probe` on each GPU machine, or `torchrun --nproc-per-node N -m advisor probe "
            "--collectives`: rank 0 saves one fleet result per run.")


def fleet_frame(results: Sequence[Mapping[str, Any]], fraction: float = STRAGGLER_FRACTION) -> pd.DataFrame:
    """Per-node, per-GPU cells for the fleet heatmap, with stragglers flagged per measurement.

    Uses the newest stored result of each node with a GPU measurement (a fleet document counts for all its
    nodes); CPUs (devices of kind ``cpu``) are left out: ``fleet_empty_reason`` says why a frame is empty.
    A GPU is a straggler for a measurement when it is more than ``fraction`` below the median
    of all GPUs of the same card model for that measurement.

    Columns: node, gpu, name, metric, value, unit, vs_median_pct, straggler.
    """
    import pandas as pd

    latest: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for r in results:
        when = str(r.get("timestamp", ""))
        for node, member in _fleet_members(r):
            gpus = _gpu_indices(member)
            if not any(key[0] in gpus for key in _best_per_kernel(member)):
                continue  # a CPU-only run, or a collectives run without per-rank measurements: no GPU to show
            if node not in latest or when > latest[node][0]:
                latest[node] = (when, member)
    rows = []
    for node, (_, member) in sorted(latest.items()):
        gpus = _gpu_indices(member)
        for (index, name, precision), (value, unit, device) in _best_per_kernel(member).items():
            if index not in gpus:
                continue  # a CPU's figures are not a GPU of the fleet
            if name not in ("matmul", "conv2d", "memory_copy", "memory_read", "memory_write", "h2d_pinned",
                            "d2h_pinned") and unit != "GB/s":
                continue
            rows.append({"node": node, "gpu": index, "name": device,
                         "metric": f"{name} {precision}".strip() + f" ({unit})", "value": value, "unit": unit})
    frame = pd.DataFrame(rows, columns=["node", "gpu", "name", "metric", "value", "unit"])
    frame["vs_median_pct"] = math.nan
    frame["straggler"] = False
    for (_, _), group in frame.groupby(["metric", "name"]):
        slow = set(find_stragglers({str(i): v for i, v in group["value"].items()}, fraction))
        median = statistics.median(group["value"])
        for i in group.index:
            frame.loc[i, "straggler"] = str(i) in slow
            frame.loc[i, "vs_median_pct"] = (frame.loc[i, "value"] / median - 1) * 100 if median else math.nan
    frame["straggler"] = frame["straggler"].astype(bool)
    return frame
