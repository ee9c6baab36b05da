"""Calibration: a probe of a card replaces the default efficiencies for that card.

``calibration`` may be ``None`` / ``"none"`` (defaults), a ``ProbeResult``, a path to a probe JSON file
(``probe --json`` output, read when asked), a mapping of efficiencies as ``ProbeResult.efficiencies()``
returns (``matmul_bf16``, ``conv_fp16``, ``memory_bandwidth``, ``h2d_pinned``, ``launch_overhead_s``, ...)
or ``StoredProbes``: the public API's ``"auto"`` (the newest probe of each card in the history store),
read by ``advisor.calibration`` at the edge.  Nothing here reads the store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import EstimateError, read_json_object
from advisor.estimator.efficiency import HOST_OP_PER_BARE_OP, HOST_OP_S, ArchEfficiency


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


def probe_efficiencies(probe: Any, catalog_id: str) -> dict[str, float] | None:
    """The efficiencies a probe measured on its device of card ``catalog_id`` (``None``: no such device)."""
    index = _device_index(probe, catalog_id)
    if index is None:
        return None
    return dict(probe.efficiencies(index))


_HINT = "pass a file written by `probe --json --out FILE`, 'auto' or 'none'"


def _from_file(path: Path, catalog_id: str) -> dict[str, float] | None:
    data = read_json_object(path, what="calibration file", hint=_HINT, error=EstimateError,
                            expected="a probe result object")
    if "kernels" in data and "devices" in data:
        from advisor.probing.results import ProbeResult

        try:
            probe = ProbeResult.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimateError(f"calibration file {str(path)!r} is not a probe result: {exc}", hint=_HINT) from exc
        return probe_efficiencies(probe, catalog_id)
    if "efficiencies" in data and isinstance(data["efficiencies"], Mapping):
        return _numbers(data["efficiencies"], f"calibration file {str(path)!r}")
    raise EstimateError(f"calibration file {str(path)!r} is not a probe result",
                        hint="expected the JSON of `probe --json` (devices, kernels)")


def _numbers(figures: Mapping[Any, Any], what: str) -> dict[str, float]:
    """Efficiency figures as floats, or an ``EstimateError`` naming the first figure that is not a number."""
    out: dict[str, float] = {}
    for k, v in figures.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise EstimateError(f"{what}: efficiency {str(k)!r} is {v!r}, not a number",
                                hint="efficiencies are fractions of the spec peak (e.g. matmul_bf16: 0.78) or "
                                     "seconds (launch_overhead_s)") from None
    return out


@dataclass(frozen=True, slots=True)
class StoredProbes:
    """``calibration="auto"`` as data: the newest stored probe's efficiencies of each card.

    The edge (``advisor.calibration.resolve_calibration``) reads the history store and hands the estimator
    this; the estimator looks its card up with no I/O.  ``problem`` says why the store could not be read
    (then ``by_card`` is empty and every card keeps the default efficiencies).
    """

    by_card: Mapping[str, Mapping[str, float] | None]
    problem: str | None = None


def load_efficiencies(calibration: Any, catalog_id: str) -> dict[str, float] | None:
    """Measured efficiencies for this card from ``calibration``, or ``None`` (use defaults).

    Raises:
        EstimateError: a calibration file that is missing, unreadable or not a probe result; an
            unknown kind of calibration value.
    """
    if calibration is None or (isinstance(calibration, str) and calibration.lower() in ("none", "off")):
        return None
    if isinstance(calibration, StoredProbes):
        found = calibration.by_card.get(catalog_id)
        return None if found is None else dict(found)
    if isinstance(calibration, str) and calibration.lower() == "auto":
        raise EstimateError("calibration='auto' reads the history store, which the estimator itself never does",
                            hint="resolve it at the edge first: advisor.calibration.resolve_calibration('auto')")
    if isinstance(calibration, (str, os.PathLike)):
        return _from_file(Path(calibration), catalog_id)
    if isinstance(calibration, Mapping):
        return _numbers(calibration, "calibration mapping")
    if hasattr(calibration, "efficiencies"):
        return probe_efficiencies(calibration, catalog_id)
    raise EstimateError(f"calibration must be 'auto', 'none', a probe JSON path, a ProbeResult or a mapping, "
                        f"got {type(calibration).__name__}")


def uncalibrated_note(calibration: Any) -> str | None:
    """The assumption an estimate states when ``calibration`` was asked for but changed nothing on its card."""
    if calibration is None or calibration == "none":
        return None
    problem = calibration.problem if isinstance(calibration, StoredProbes) else None
    return (f"the history store could not be read ({problem}): default efficiencies" if problem
            else "no probe of this card found: default efficiencies")


def apply_efficiencies(eff: ArchEfficiency, measured: Mapping[str, float] | None,
                       precision: str) -> tuple[ArchEfficiency, list[str]]:
    """Replace defaults with measured figures; returns the new figures and what was replaced.

    ``matmul_<p>`` and ``conv_<p>`` are taken for the estimate's precision (``amp-bf16`` -> ``bf16``);
    ``memory_bandwidth`` (device copy), ``h2d_pinned`` whenever present (``conv_tf32`` for fp32: cuDNN's
    TF32 default); the probe's ``host_dispatch_s_per_op`` (or ``host_op_s``) sets the eager host time per
    forward op and its ``host_backward_s_per_op`` the backward's; the bare-op ``launch_overhead_s`` less a bare
    op's CPU dispatch sets the host's launch call per kernel and ``kernel_gap_s`` the GPU-side gap per kernel.
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
    # launch call, so less the dispatch it gives the launch call's host cost per kernel.  The probe's host_dispatch
    # kernel (a training forward of validate's gpt2-tiny on the device, per aten op as the tracer counts them)
    # covers both; its host_backward kernel sets the backward's cost per op.
    host = measured.get("host_dispatch_s_per_op")
    if host is not None and 0 < host < 1e-2:
        changes["host_op_s"] = float(host)
        changes["host_launch_s"] = 0.0
        backward = measured.get("host_backward_s_per_op")
        if backward is not None and 0 < backward < 1e-2:
            changes["host_backward_op_s"] = float(backward)
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
