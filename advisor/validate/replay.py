"""`validate --replay`: a saved run's measurements, predicted anew with the current estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from advisor.errors import AdvisorError
from advisor.validate.predictors import cpu_calibration, cpu_card, estimate_predictor
from advisor.validate.records import (
    Case,
    DeviceContext,
    Measurement,
    Prediction,
    Predictor,
    ValidationReport,
    ValidationRow,
)


def case_from_row(model: str, config: Mapping[str, Any]) -> Case:
    """The :class:`Case` a saved row's ``config`` describes (the inverse of :meth:`Case.config`).

    Raises:
        AdvisorError: the config lacks a field a case needs, or holds a value of the wrong type.
    """
    try:
        return Case(model=str(model), mode=str(config["mode"]), batch_size=int(config["batch_size"]),
                    precision=str(config.get("precision") or "fp32"), optimizer=config.get("optimizer"),
                    seq_len=config.get("seq_len"), image_size=config.get("image_size"),
                    gradient_checkpointing=bool(config.get("gradient_checkpointing", False)),
                    gen_len=config.get("gen_len"))
    except (KeyError, TypeError, ValueError) as exc:
        raise AdvisorError(f"validate row {model!r}: its config is not a validate case ({exc})",
                           hint="replay takes the JSON that `validate --json` writes") from exc


def _measurement_from_row(row: Mapping[str, Any]) -> Measurement | None:
    mem, tim = row.get("memory") or {}, row.get("time") or {}
    if tim.get("measured_s") is None:
        return None
    return Measurement(peak_bytes=mem.get("measured_bytes"), step_s=float(tim["measured_s"]),
                       step_times_s=tuple(float(s) for s in tim.get("steps_s") or ()),
                       allocated_bytes=mem.get("allocated_bytes"), reserved_bytes=mem.get("reserved_bytes"),
                       nvml_used_bytes=mem.get("nvml_used_bytes"), timing_rounds=int(tim.get("rounds") or 1),
                       profile={k: v for k, v in row["profile"].items() if k != "predicted_by_class_s"}
                       if isinstance(row.get("profile"), Mapping) else None)


def device_from_dict(data: Mapping[str, Any]) -> DeviceContext:
    """The :class:`DeviceContext` of a saved run's ``device`` object."""
    return DeviceContext(kind=str(data.get("kind", "cuda")), name=str(data.get("name", "?")),
                         catalog_id=data.get("catalog_id"), torch_version=data.get("torch_version"),
                         driver=data.get("driver"), memory_method=str(data.get("memory_method", "")),
                         rates={str(k): float(v) for k, v in (data.get("rates") or {}).items()},
                         rates_source=data.get("rates_source"))


def replay(doc: Mapping[str, Any], *, calibration: Any = "auto", predict: Predictor | None = None,
           notes: Sequence[str] = ()) -> ValidationReport:
    """Re-predict the measured rows of a saved validate run with the current estimator.

    The measurements are kept as they were; only the predictions are made anew, so a run taken before an
    upgrade can be re-scored after it.  A GPU run is predicted for its own catalog card with
    ``calibration`` (``"auto"``: the card's newest stored probe; ``None``/``"none"``: the spec sheet only;
    a probe JSON path or ``ProbeResult``: that probe).  A CPU run is predicted for the CPU pseudo-card of the
    rates it recorded.

    Raises:
        AdvisorError: the document is not a validate run, or a GPU run names no catalog card.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rows"), list) or \
            not isinstance(doc.get("device"), Mapping):
        raise AdvisorError("not a validate run: expected an object with 'device' and 'rows'",
                           hint="replay takes the JSON that `validate --json` writes (or a saved validation id)")
    device = device_from_dict(doc["device"])
    if predict is None:
        if device.kind == "cuda":
            if not device.catalog_id:
                raise AdvisorError(f"the run's device {device.name!r} is not a catalog card: nothing to predict for",
                                   hint="add the card to a specs directory (--specs-dir) and set its catalog_id")
            from advisor.calibration import resolve_calibration
            from advisor.estimator.calibrate import load_efficiencies

            # read once (a bad calibration file fails here, not per row; a probe file is not parsed per row);
            # where it holds nothing for this card the original value stays, so the estimate still says so
            given = resolve_calibration(calibration)
            resolved = load_efficiencies(given, device.catalog_id)
            predict = estimate_predictor(device.catalog_id, calibration=given if resolved is None else resolved)
        else:
            predict = estimate_predictor(cpu_card(device), calibration=cpu_calibration(device), cpu=True)
    rows = []
    predicted: dict[Case, Prediction] = {}  # rows of one case (repeated measurements) are predicted once
    for raw in doc["rows"]:
        case = case_from_row(raw.get("model", "?"), raw.get("config") or {})
        measurement = _measurement_from_row(raw)
        prediction = predicted.get(case)
        if prediction is None:
            try:
                prediction = predict(case, device)
            except AdvisorError as exc:
                prediction = Prediction(None, None, source=f"estimate failed: {exc.message}")
            predicted[case] = prediction
        rows.append(ValidationRow(case.model, case, prediction, measurement, oom=bool(raw.get("oom")),
                                  error_message=raw.get("error_message")))
    return ValidationReport(device, tuple(rows), created_at=str(doc.get("created_at", "")),
                            notes=(*notes, f"replayed with the current estimator (calibration: {calibration!s})"))
