"""Calibration resolved at the edge: ``"auto"`` (the newest probe of each card in the history store) and files.

The estimator (``advisor.estimator``) does no I/O of its own: the public API (``advisor.estimate``,
``recommend``), the CLI and the dashboard call ``resolve_calibration`` on what the user passed and hand
the estimator data (``StoredProbes`` for ``"auto"``, ``CalibrationFile`` for a probe JSON path; anything else
unchanged).  Store lookups are cached for a few seconds, so a ranking over many cards, or a dashboard rerun,
reads the store once; a file is read once per call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, EstimateError
from advisor.estimator.calibrate import (
    FILE_HINT,
    PROBE_DOCUMENT_ERRORS,
    CalibrationFile,
    StoredProbes,
    check_figures,
    probe_efficiencies,
)

_AUTO_CACHE: dict[str, tuple[float, StoredProbes]] = {}
_AUTO_TTL_S = 5.0
#: The clock the lookup cache's time-to-live is read on (seconds, monotonic); tests replace it.
cache_clock: Callable[[], float] = time.monotonic


def clear_calibration_cache() -> None:
    """Forget cached history-store lookups (they are kept for a few seconds)."""
    _AUTO_CACHE.clear()


def resolve_calibration(calibration: Any) -> Any:
    """What the estimator takes for ``calibration``.

    ``"auto"`` becomes ``stored_probes()``, a path (other than ``"none"`` / ``"off"``) the ``CalibrationFile`` read
    from it; the rest is unchanged.

    Raises:
        EstimateError: a calibration file that is missing, unreadable or not a probe result.
    """
    if isinstance(calibration, str) and calibration.lower() == "auto":
        return stored_probes()
    if isinstance(calibration, os.PathLike) or (isinstance(calibration, str)
                                                and calibration.lower() not in ("none", "off")):
        return read_calibration_file(Path(calibration))
    return calibration


def read_calibration_file(path: Path) -> CalibrationFile:
    """A probe JSON file (``probe --json`` output, or ``{"efficiencies": {...}}``) as the estimator takes it.

    Raises:
        EstimateError: the file is missing, unreadable, not JSON, not a probe result, or its efficiencies are empty.
    """
    from advisor.files import read_json_object
    from advisor.probing.results import ProbeResult

    where = CalibrationFile(str(path)).where
    data = read_json_object(path, kind="calibration", what="calibration file", hint=FILE_HINT, error=EstimateError,
                            expected="a probe result object")
    if "kernels" in data and "devices" in data:
        try:
            return CalibrationFile(str(path), probe=ProbeResult.from_dict(data))
        except PROBE_DOCUMENT_ERRORS as exc:
            raise EstimateError(f"{where} is not a probe result: {type(exc).__name__}: {str(exc)[:120]}",
                                hint=FILE_HINT) from exc
    if "efficiencies" in data and isinstance(data["efficiencies"], Mapping):
        if not data["efficiencies"]:
            raise EstimateError(f"{where}: its efficiencies object is empty", hint=FILE_HINT)
        return CalibrationFile(str(path), efficiencies=data["efficiencies"])
    raise EstimateError(f"{where} is not a probe result",
                        hint="expected the JSON of `probe --json` (devices, kernels)")


def _record_efficiencies(record: Any, catalog_id: str) -> tuple[dict[str, float] | None, str | None]:
    """(the usable efficiencies a stored probe gives this card, or None; what was wrong with it, or None).

    A document that is not a probe result gives None; figures outside their range are dropped (named in the
    second item), the others kept.
    """
    try:
        probe = record.result() if hasattr(record, "result") else record
        figures = probe_efficiencies(probe, catalog_id)
    except PROBE_DOCUMENT_ERRORS as exc:
        return None, f"document is not a probe result ({type(exc).__name__}: {str(exc)[:80]})"
    if figures is None:
        return None, None
    kept, problems = check_figures(figures, f"probe {getattr(record, 'id', '?')}", strict=False)
    return kept, "; ".join(problems) or None


def stored_probes() -> StoredProbes:
    """Efficiencies of the newest readable saved probe per catalog id, read in one query (empty without a store).

    The store is opened read-only (a store on read-only media or in a directory that is not writable still
    calibrates).  A row that cannot be read, or whose document is not a probe result, is skipped and named in
    ``StoredProbes.skipped``; the card's next-newest probe is taken instead.
    """
    key = os.environ.get("GPU_ADVISOR_HOME", "")
    now = cache_clock()
    hit = _AUTO_CACHE.get(key)
    if hit is not None and now - hit[0] < _AUTO_TTL_S:
        return hit[1]
    latest: dict[str, Any] = {}
    skipped: list[str] = []
    problem = None
    try:
        from advisor.store import HistoryStore, default_store_path

        path = default_store_path()
        if path.exists():  # estimating never creates the history file
            records, bad = HistoryStore(path, read_only=True).read_probes(limit=500)  # newest first
            skipped = [f"{b.label} ({b.problem})" for b in bad]
            for record in records:
                if record.catalog_id and record.catalog_id not in latest:
                    figures, why = _record_efficiencies(record, record.catalog_id)
                    if why is not None:
                        skipped.append(f"probe {record.id} ({why})")
                    if figures is not None or why is None:
                        latest[record.catalog_id] = figures
    except AdvisorError as exc:  # an unreadable store: defaults, calibrated stays False, and the problem says why
        latest, skipped = {}, []
        problem = exc.message
    except ImportError:
        latest = {}
    stored = StoredProbes(latest, problem, tuple(skipped))
    _AUTO_CACHE[key] = (now, stored)
    return stored


def skipped_rows_warning(calibration: Any) -> str | None:
    """The warning the CLI prints when ``calibration="auto"`` skipped unreadable history rows (None: none skipped)."""
    skipped = getattr(calibration, "skipped", ())
    if not skipped:
        return None
    return (f"warning: skipped {len(skipped)} unreadable row{'s' if len(skipped) > 1 else ''} of the history store: "
            f"{'; '.join(skipped)}. `gpu-advisor history --repair` exports and drops "
            f"{'them' if len(skipped) > 1 else 'it'}")


def store_problem() -> str | None:
    """Why the history store could not be read for ``calibration="auto"`` (``None`` when it could, or is absent)."""
    return stored_probes().problem
