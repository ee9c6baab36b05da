"""Calibration: a probe of a card replaces the default efficiencies for that card.

``calibration`` may be ``"auto"`` (the latest probe of the card in the history store, if any),
``None`` / ``"none"`` (defaults), a ``ProbeResult``, a path to a probe JSON file
(``probe --json`` output), or a mapping of efficiencies as ``ProbeResult.efficiencies()`` returns
(``matmul_bf16``, ``conv_fp16``, ``memory_bandwidth``, ``h2d_pinned``, ``launch_overhead_s``, ...).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, EstimateError, read_json_object
from advisor.estimate.efficiency import HOST_OP_PER_BARE_OP, HOST_OP_S, ArchEfficiency

_AUTO_CACHE: dict[str, tuple[float, dict[str, Any], str | None]] = {}
_AUTO_TTL_S = 5.0
#: The clock the lookup cache's time-to-live is read on (seconds, monotonic); tests replace it.
cache_clock: Callable[[], float] = time.monotonic


def clear_calibration_cache() -> None:
    """Forget cached history-store lookups (they are kept for a few seconds)."""
    _AUTO_CACHE.clear()


def precision_key(precision: str) -> str:
    """The probe's precision name for an estimate precision (``amp-bf16`` -> ``bf16``)."""
    return precision.removeprefix("amp-")


def _device_index(probe: Any, catalog_id: str) -> int | None:
    devices = getattr(probe, "devices", ()) or ()
    for d in devices:
        if getattr(d, "catalog_id", None) == catalog_id:
            return int(d.index)
    if len(devices) == 1 and getattr(devices[0], "catalog_id", None) is None:
        return int(devices[0].index)
    return None


def _from_probe(probe: Any, catalog_id: str) -> dict[str, float] | None:
    index = _device_index(probe, catalog_id)
    if index is None:
        return None
    return dict(probe.efficiencies(index))


_HINT = "pass a file written by `probe --json --out FILE`, 'auto' or 'none'"


def _from_file(path: Path, catalog_id: str) -> dict[str, float] | None:
    data = read_json_object(path, what="calibration file", hint=_HINT, error=EstimateError,
                            expected="a probe result object")
    if "kernels" in data and "devices" in data:
        from advisor.probe.results import ProbeResult

        try:
            probe = ProbeResult.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimateError(f"calibration file {str(path)!r} is not a probe result: {exc}", hint=_HINT) from exc
        return _from_probe(probe, catalog_id)
    if "efficiencies" in data and isinstance(data["efficiencies"], Mapping):
        return {str(k): float(v) for k, v in data["efficiencies"].items()}
    raise EstimateError(f"calibration file {str(path)!r} is not a probe result",
                        hint="expected the JSON of `probe --json` (devices, kernels)")


def _latest_by_card() -> dict[str, Any]:
    """Efficiencies of the newest saved probe per catalog id, read in one query (empty without a store file)."""
    key = os.environ.get("GPU_ADVISOR_HOME", "")
    now = cache_clock()
    hit = _AUTO_CACHE.get(key)
    if hit is not None and now - hit[0] < _AUTO_TTL_S:
        return hit[1]
    latest: dict[str, Any] = {}
    problem = None
    try:
        from advisor.store import HistoryStore, default_store_path

        path = default_store_path()
        if path.exists():  # estimating never creates the history file
            for record in HistoryStore(path).list_probes(limit=500):  # newest first
                if record.catalog_id and record.catalog_id not in latest:
                    latest[record.catalog_id] = _record_efficiencies(record, record.catalog_id)
    except AdvisorError as exc:  # an unreadable store: defaults, calibrated stays False, and store_problem says why
        latest = {}
        problem = exc.message
    except (ImportError, AttributeError):
        latest = {}
    _AUTO_CACHE[key] = (now, latest, problem)
    return latest


def store_problem() -> str | None:
    """Why the history store could not be read for ``calibration="auto"`` (``None`` when it could, or is absent)."""
    _latest_by_card()
    hit = _AUTO_CACHE.get(os.environ.get("GPU_ADVISOR_HOME", ""))
    return hit[2] if hit is not None else None


def _record_efficiencies(record: Any, catalog_id: str) -> dict[str, float] | None:
    try:
        probe = record.result() if hasattr(record, "result") else record
        return _from_probe(probe, catalog_id)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # an old or foreign document: fall back to defaults


def _from_store(catalog_id: str) -> dict[str, float] | None:
    result: dict[str, float] | None = _latest_by_card().get(catalog_id)
    return result


def load_efficiencies(calibration: Any, catalog_id: str) -> dict[str, float] | None:
    """Measured efficiencies for this card from ``calibration``, or ``None`` (use defaults).

    Raises:
        EstimateError: a calibration file that is missing, unreadable or not a probe result; an
            unknown kind of calibration value.
    """
    if calibration is None or (isinstance(calibration, str) and calibration.lower() in ("none", "off")):
        return None
    if isinstance(calibration, str) and calibration.lower() == "auto":
        return _from_store(catalog_id)
    if isinstance(calibration, (str, os.PathLike)):
        return _from_file(Path(calibration), catalog_id)
    if isinstance(calibration, Mapping):
        return {str(k): float(v) for k, v in calibration.items()}
    if hasattr(calibration, "efficiencies"):
        return _from_probe(calibration, catalog_id)
    raise EstimateError(f"calibration must be 'auto', 'none', a probe JSON path, a ProbeResult or a mapping, "
                        f"got {type(calibration).__name__}")


def apply_efficiencies(eff: ArchEfficiency, measured: Mapping[str, float] | None,
                       precision: str) -> tuple[ArchEfficiency, list[str]]:
    """Replace defaults with measured figures; returns the new figures and what was replaced.

    ``matmul_<p>`` and ``conv_<p>`` are taken for the estimate's precision (``amp-bf16`` -> ``bf16``);
    ``memory_bandwidth`` (device copy), ``h2d_pinned`` whenever present (``conv_tf32`` for fp32: cuDNN's
    TF32 default); the probe's ``host_dispatch_s_per_op`` (or ``host_op_s``) sets the eager host time per
    op; the bare-op ``launch_overhead_s`` less a bare op's CPU dispatch sets the host's launch call per kernel
    and ``kernel_gap_s`` the GPU-side gap per kernel.
    ``sustained_clock_fraction_<p>`` (else ``sustained_clock_fraction``): the SM clock the probe's large GEMMs
    ran at over the device's maximum, replacing the power model's clock; the measured GEMM/conv fractions
    (of the boost-clock peak) are divided by the clock in force, so the calibrated GEMM rate stays the
    measured one.  Fractions outside (0, 1.2] are ignored as implausible.
    """
    if not measured:
        return eff, []
    p = precision_key(precision)
    conv = "tf32" if p == "fp32" else p  # cuDNN runs fp32 convolutions as TF32 by default
    changes: dict[str, float] = {}
    clock = measured.get(f"sustained_clock_fraction_{p}", measured.get("sustained_clock_fraction"))
    if clock is not None and 0 < clock <= 1.2:
        changes["clock"] = float(clock)
    per_clock = changes.get("clock", eff.clock)
    for source, target in ((f"matmul_{p}", "matmul"), (f"conv_{conv}", "conv"), ("memory_bandwidth", "memory"),
                           ("h2d_pinned", "h2d")):
        value = measured.get(source)
        if value is not None and 0 < value <= 1.2:
            changes[target] = float(value) / (per_clock if target in ("matmul", "conv") else 1.0)
    # The probe's bare-op launch figure is NOT a host time per op of a real model (11 us on the H100/H200 hosts,
    # whose models dispatched ~8 us per profiler-counted aten op): it is one bare op's CPU dispatch plus one CUDA
    # launch call, so less the dispatch it gives the launch call's host cost per kernel.  A measured dispatch
    # time of a realistic op sequence on the device (the probe's host_dispatch kernel) covers both.
    host = measured.get("host_dispatch_s_per_op")
    if host is not None and 0 < host < 1e-2:
        changes["host_op_s"] = float(host)
        changes["host_launch_s"] = 0.0
    else:
        host = measured.get("host_op_s")
        if host is not None and 0 < host < 1e-2:
            changes["host_op_s"] = float(host)
        launch = measured.get("launch_overhead_s")
        if launch is not None and 0 < launch < 1e-2:
            changes["host_launch_s"] = max(0.0, float(launch) - HOST_OP_S / HOST_OP_PER_BARE_OP)
    gap = measured.get("kernel_gap_s")
    if gap is not None and 0 <= gap < 1e-2:
        changes["launch_overhead_s"] = float(gap)
    if not changes:
        return eff, []
    return eff.replace(**changes), [f"{k}={v:.3g}" for k, v in changes.items()]
