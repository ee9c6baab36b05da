"""Calibration: a probe of a card replaces the default efficiencies for that card.

``calibration`` may be ``None`` / ``"none"`` (defaults), a ``ProbeResult``, a mapping of efficiencies as
``ProbeResult.efficiencies()`` returns (``matmul_bf16``, ``conv_fp16``, ``memory_bandwidth``, ``h2d_pinned``,
``launch_overhead_s``, ...), a ``CalibrationFile`` (a probe JSON file, ``probe --json`` output) or ``StoredProbes``
(the public API's ``"auto"``: the newest probe of each card in the history store).  Files and the store are read
at the edge, by ``advisor.calibration.resolve_calibration``: nothing here reads a file or imports the probe.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import EstimateError
from advisor.estimator.efficiency import HOST_OP_PER_BARE_OP, HOST_OP_S, ArchEfficiency


def precision_key(precision: str) -> str:
    """The probe's precision name for an estimate precision (``amp-bf16`` -> ``bf16``)."""
    return precision.removeprefix("amp-")


def _device_index(probe: Any, catalog_id: str) -> int | None:
    devices: Sequence[Any] = getattr(probe, "devices", ()) or ()  # a ProbeResult's, or a duck-typed probe's
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


#: The hint of every error about a calibration file (the edge's reading and the figures' check here).
FILE_HINT = "pass a file written by `probe --json --out FILE`, 'auto' or 'none'"
#: What a probe document that does not parse raises (``ProbeResult.from_dict`` at the edge, ``efficiencies()`` here).
PROBE_DOCUMENT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError)

#: The accepted range (inclusive) of each calibration figure the estimator reads; one home for these bounds.
#: Fractions of the spec peak: a probe's int8 matmul measured 0.067 on an H100 (tests/data/gpu-runs) and its fp32
#: convolution 1.05 (cuDNN runs it as TF32: ``conv_fp32`` is read only where MIOpen runs fp32 math); below 1 % of
#: peak a figure is a failed measurement and would slow every estimate 100-fold, above 1.2 it beats the spec sheet.
#: The sustained SM clock under load is at least a card's idle clock (~0.1-0.2 of its maximum).  Host seconds per op
#: or launch: 8-11 us on the H100/H200 hosts; 0.1 us to 0.5 ms covers a fast host to a small ARM board.  The GPU-side
#: gap between kernels: 0 to 100 us.
FRACTION_RANGE = (0.01, 1.2)
CLOCK_RANGE = (0.1, 1.2)
HOST_S_RANGE = (1e-7, 5e-4)
GAP_S_RANGE = (0.0, 1e-4)
_HOST_KEYS = ("host_dispatch_s_per_op", "host_backward_s_per_op", "host_op_s", "launch_overhead_s")


def figure_range(key: str) -> tuple[float, float] | None:
    """The accepted (low, high) of a calibration figure, or None for a figure the estimator does not read."""
    if key.startswith("sustained_clock_fraction"):
        return CLOCK_RANGE
    if (key.startswith(("matmul_", "conv_")) and key != "conv_fp32") or key in ("memory_bandwidth", "h2d_pinned"):
        return FRACTION_RANGE
    if key in _HOST_KEYS:
        return HOST_S_RANGE
    if key == "kernel_gap_s":
        return GAP_S_RANGE
    return None


def _range_text(key: str, bounds: tuple[float, float]) -> str:
    unit = " s" if key.endswith("_s") or key in _HOST_KEYS else ""
    kind = "seconds" if unit else "a fraction"
    return f"{kind} from {bounds[0]:g}{unit} to {bounds[1]:g}{unit}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({type(value).__name__}, {len(text):,} characters)"


def check_figures(figures: Mapping[Any, Any], where: str, *, strict: bool = True) -> tuple[dict[str, float], list[str]]:
    """Calibration figures as floats, each a finite number inside its ``figure_range``.

    Args:
        figures: name -> value, as a probe's ``efficiencies()`` or a calibration file gives them.
        where: how messages name the source ("calibration file 'p.json'").
        strict: raise on the first bad figure (a file or a mapping the user passed); else drop it and say why
            in the returned problems (a stored probe of ``calibration="auto"``, which must not stop an estimate).

    Raises:
        EstimateError: (``strict``) a figure that is not a number (a string, a bool, null, a list, an object), not
            finite, too large for a float, or outside its range; the message names the figure, its value and the
            accepted range.
    """
    out: dict[str, float] = {}
    problems: list[str] = []
    for key, value in figures.items():
        name = str(key)
        bounds = figure_range(name)
        accepted = _range_text(name, bounds) if bounds else "a finite number"
        problem = None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f"{name!r} is {_shown(value)}, not a number"
        else:
            try:
                number = float(value)
            except OverflowError:
                number = None
            if number is None or not math.isfinite(number):
                problem = f"{name!r} is {_shown(value)}, not a finite number"
            elif bounds is not None and not bounds[0] <= number <= bounds[1]:
                problem = f"{name!r} is {number:g}, outside the accepted range"
            else:
                out[name] = number
        if problem is None:
            continue
        if strict:
            raise EstimateError(f"{where}: {problem} ({accepted})",
                                hint=f"{name} must be {accepted}; a probe of the card (`probe --json --out FILE`) "
                                     "writes these figures, or use --calibration none")
        problems.append(f"{problem} ({accepted}): not used")
    return out, problems


@dataclass(frozen=True, slots=True)
class CalibrationFile:
    """A calibration file as the edge read it (``advisor.calibration.read_calibration_file``): data, no I/O left.

    ``name`` is the path as messages name it; ``probe`` the probe document (a ``ProbeResult``), or ``efficiencies``
    the bare ``{"efficiencies": {...}}`` form.  Its figures are checked here, for the card estimated.
    """

    name: str
    probe: Any = None
    efficiencies: Mapping[str, Any] | None = None

    @property
    def where(self) -> str:
        """How messages name the file."""
        return f"calibration file {self.name!r}"


def _file_figures(calibration: CalibrationFile, catalog_id: str) -> dict[str, float] | None:
    """The checked figures a calibration file gives card ``catalog_id``; a malformed probe is an ``EstimateError``."""
    where = calibration.where
    if calibration.probe is None:
        return check_figures(calibration.efficiencies or {}, where)[0]
    try:
        figures = probe_efficiencies(calibration.probe, catalog_id)
    except PROBE_DOCUMENT_ERRORS as exc:
        raise EstimateError(f"{where} is not a probe result: {type(exc).__name__}: {str(exc)[:120]}",
                            hint=FILE_HINT) from exc
    return None if figures is None else check_figures(figures, where)[0]


@dataclass(frozen=True, slots=True)
class StoredProbes:
    """``calibration="auto"`` as data: the newest stored probe's efficiencies of each card.

    The edge (``advisor.calibration.resolve_calibration``) reads the history store and hands the estimator
    this; the estimator looks its card up with no I/O.  ``problem`` says why the store could not be read
    (then ``by_card`` is empty and every card keeps the default efficiencies); ``skipped`` names the rows that
    could not be read and were passed over ("probe 3 (document is not JSON ...)").
    """

    by_card: Mapping[str, Mapping[str, float] | None]
    problem: str | None = None
    skipped: tuple[str, ...] = ()


def load_efficiencies(calibration: Any, catalog_id: str) -> dict[str, float] | None:
    """Measured efficiencies for this card from ``calibration``, or ``None`` (use defaults).

    Raises:
        EstimateError: a probe file whose device list is malformed; a figure that is not a finite number inside its
            ``figure_range`` (file, mapping or probe); a path or ``"auto"`` not resolved at the edge; an unknown kind
            of calibration value.
    """
    if calibration is None or (isinstance(calibration, str) and calibration.lower() in ("none", "off")):
        return None
    if isinstance(calibration, StoredProbes):  # checked when read (advisor.calibration): bad figures dropped there
        found = calibration.by_card.get(catalog_id)
        return None if found is None else check_figures(found, "stored probe", strict=False)[0]
    if isinstance(calibration, str) and calibration.lower() == "auto":
        raise EstimateError("calibration='auto' reads the history store, which the estimator itself never does",
                            hint="resolve it at the edge first: advisor.calibration.resolve_calibration('auto')")
    if isinstance(calibration, CalibrationFile):
        return _file_figures(calibration, catalog_id)
    if isinstance(calibration, (str, os.PathLike)):
        raise EstimateError(f"calibration file {str(calibration)!r} is read at the edge, which the estimator itself "
                            "never does", hint="resolve it first: advisor.calibration.resolve_calibration(path)")
    if isinstance(calibration, Mapping):
        return check_figures(calibration, "calibration mapping")[0]
    if hasattr(calibration, "efficiencies"):
        figures = probe_efficiencies(calibration, catalog_id)
        return None if figures is None else check_figures(figures, "calibration probe")[0]
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
    ``memory_bandwidth`` (device copy), ``h2d_pinned`` whenever present (``conv_tf32`` for fp32 where the profile's
    ``conv_fp32_math`` is cuDNN's TF32 default, else ``conv_fp32``); the probe's ``host_dispatch_s_per_op`` (or
    ``host_op_s``) sets the eager host time per forward op and its ``host_backward_s_per_op`` the backward's; the
    bare-op ``launch_overhead_s`` less a bare op's CPU dispatch sets the host's launch call per kernel and
    ``kernel_gap_s`` the GPU-side gap per kernel.
    ``sustained_clock_fraction_<p>`` (else ``sustained_clock_fraction``): the SM clock the probe's large GEMMs
    ran at over the device's maximum, replacing the power model's clock; the measured GEMM/conv fractions
    (of the boost-clock peak) are divided by the clock in force, so the calibrated GEMM rate stays the
    measured one.  ``measured`` is what ``load_efficiencies`` returns: every figure inside its ``figure_range``.
    """
    if not measured:
        return eff, []
    p = precision_key(precision)
    # cuDNN runs fp32 convolutions as TF32 by default; MIOpen runs them as fp32 (conv.fp32_conv_rate), on CDNA's
    # matrix cores at fp32_matrix x the vector peak the probe's fraction is of
    conv = "tf32" if p == "fp32" and eff.conv_fp32_math == "tf32" else p
    conv_scale = eff.fp32_matrix if p == "fp32" and eff.conv_fp32_math == "matrix" else 1.0
    changes: dict[str, float] = {}
    clock = measured.get(f"sustained_clock_fraction_{p}", measured.get("sustained_clock_fraction"))
    if clock is not None:
        changes["clock"] = float(clock)
    per_clock = changes.get("clock", eff.clock)
    for source, target in ((f"matmul_{p}", "matmul"), (f"conv_{conv}", "conv"), ("memory_bandwidth", "memory"),
                           ("h2d_pinned", "h2d")):
        value = measured.get(source)
        if value is not None:
            changes[target] = float(value) / (per_clock if target in ("matmul", "conv") else 1.0)
    if "conv" in changes and "matmul" not in changes:  # a calibrated matmul resets fp32_matrix (replace)
        changes["conv"] /= conv_scale
    # The probe's bare-op launch figure is NOT a host time per op of a real model (11 us on the H100/H200 hosts,
    # whose models dispatched ~8 us per profiler-counted aten op): it is one bare op's CPU dispatch plus one CUDA
    # launch call, so less the dispatch it gives the launch call's host cost per kernel.  The probe's host_dispatch
    # kernel (a training forward of validate's gpt2-tiny on the device, per aten op as the tracer counts them)
    # covers both; its host_backward kernel sets the backward's cost per op.
    host = measured.get("host_dispatch_s_per_op")
    if host is not None:
        changes["host_op_s"] = float(host)
        changes["host_launch_s"] = 0.0
        backward = measured.get("host_backward_s_per_op")
        if backward is not None:
            changes["host_backward_op_s"] = float(backward)
    else:
        host = measured.get("host_op_s")
        if host is not None:
            changes["host_op_s"] = float(host)
        launch = measured.get("launch_overhead_s")
        if launch is not None:
            changes["host_launch_s"] = max(0.0, float(launch) - HOST_OP_S / HOST_OP_PER_BARE_OP)
    gap = measured.get("kernel_gap_s")
    if gap is not None:
        changes["launch_overhead_s"] = float(gap)
    if not changes:
        return eff, []
    return eff.replace(**changes), [f"{k}={v:.3g}" for k, v in changes.items()]
