"""`validate --calibrate`: card efficiencies fitted from measured steps, saved as a probe-like record."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

from advisor.validate.records import ValidationReport

#: Models whose step time is mostly convolutions (fitted as ``conv_<precision>``; the rest as ``matmul_``).
CONV_MODELS = ("resnet50", "mnist-cnn")


def fit_calibration(report: ValidationReport, spec: Any) -> dict[str, dict[str, Any]]:
    """Per-card efficiencies fitted from measured step times.

    Rows must have been predicted *uncalibrated* (``calibration=None``), i.e. with the default efficiency
    ``e`` of the card's architecture.  Step time is taken as inversely proportional to the efficiency, so
    the fitted efficiency of a group (``matmul_<precision>``, or ``conv_<precision>`` for CNNs) is
    ``e x median(predicted_s / measured_s)`` over its rows, kept within (0, 1.2].

    Returns:
        ``{key: {"efficiency", "default", "rows", "ratio"}}``.
    """
    from advisor.estimator.calibrate import precision_key
    from advisor.estimator.power import sustained_clock
    from advisor.estimator.profiles import efficiency_for

    eff = efficiency_for(spec)
    clock = sustained_clock(spec).fraction  # a probe's fractions are of the boost-clock peak; the profile's at this
    groups: dict[str, list[float]] = {}
    for r in report.rows:
        if r.time_error is None or r.measurement is None or not r.prediction.step_s:
            continue
        kind = "conv" if r.model in CONV_MODELS else "matmul"
        key = f"{kind}_{precision_key(r.case.precision)}"
        groups.setdefault(key, []).append(r.prediction.step_s / r.measurement.step_s)
    out: dict[str, dict[str, Any]] = {}
    for key, ratios in sorted(groups.items()):
        base = (eff.conv if key.startswith("conv") else eff.matmul) * clock
        ratio = statistics.median(ratios)
        out[key] = {"efficiency": min(max(base * ratio, 1e-3), 1.2), "default": base, "rows": len(ratios),
                    "ratio": ratio}
    return out


def calibration_probe(report: ValidationReport, spec: Any, fitted: Mapping[str, Mapping[str, Any]]) -> Any:
    """A probe-like record (``ProbeResult``) carrying the fitted efficiencies, for the history store.

    ``estimate(..., calibration="auto")`` reads the newest probe of a card from the store and takes
    ``matmul_<p>`` / ``conv_<p>`` from ``ProbeResult.efficiencies()``, so saving this makes later
    estimates for this card calibrated by the validation.
    """
    import socket

    from advisor.probing.results import DeviceInfo, KernelResult, ProbeResult

    kernels = []
    for key, fit in fitted.items():
        kind, precision = key.split("_", 1)
        peak = spec.peak_flops(precision) if precision in ("fp32", "tf32", "fp16", "bf16", "fp8") else None
        if not peak:
            continue
        kernels.append(KernelResult(
            name="conv2d" if kind == "conv" else "matmul", precision=precision, device_index=0, device="cuda",
            value=fit["efficiency"] * peak / 1e12, unit="TFLOP/s", spec_peak=peak / 1e12,
            fraction_of_peak=fit["efficiency"], shape="end-to-end steps",
            notes=(f"fitted by validate --calibrate from {fit['rows']} measured steps: default "
                   f"{fit['default']:.3g} x median(predicted/measured) {fit['ratio']:.3g}",)))
    dev = report.device
    device = DeviceInfo(index=0, kind="gpu", backend="validate", name=dev.name, catalog_id=spec.id)
    return ProbeResult(timestamp=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), host=socket.gethostname(),
                       versions={"torch": dev.torch_version, "driver": dev.driver}, devices=(device,),
                       kernels=tuple(kernels), backend="validate",
                       notes=("calibration record written by `validate --calibrate` (not a kernel probe)",))
