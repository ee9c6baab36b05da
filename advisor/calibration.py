"""``calibration="auto"`` resolved at the edge: the newest probe of each card, read from the history store.

The estimator (``advisor.estimator``) does no I/O of its own: the public API (``advisor.estimate``,
``recommend``), the CLI and the dashboard call ``resolve_calibration`` on what the user passed and hand
the estimator data (``StoredProbes`` for ``"auto"``; anything else unchanged).  Lookups are cached for a
few seconds, so a ranking over many cards, or a dashboard rerun, reads the store once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from advisor.errors import AdvisorError
from advisor.estimator.calibrate import StoredProbes, probe_efficiencies

_AUTO_CACHE: dict[str, tuple[float, StoredProbes]] = {}
_AUTO_TTL_S = 5.0
#: The clock the lookup cache's time-to-live is read on (seconds, monotonic); tests replace it.
cache_clock: Callable[[], float] = time.monotonic


def clear_calibration_cache() -> None:
    """Forget cached history-store lookups (they are kept for a few seconds)."""
    _AUTO_CACHE.clear()


def resolve_calibration(calibration: Any) -> Any:
    """What the estimator takes for ``calibration``: ``"auto"`` becomes ``stored_probes()``, the rest is unchanged."""
    if isinstance(calibration, str) and calibration.lower() == "auto":
        return stored_probes()
    return calibration


def _record_efficiencies(record: Any, catalog_id: str) -> dict[str, float] | None:
    try:
        probe = record.result() if hasattr(record, "result") else record
        return probe_efficiencies(probe, catalog_id)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # an old or foreign document: fall back to defaults


def stored_probes() -> StoredProbes:
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
    except AdvisorError as exc:  # an unreadable store: defaults, calibrated stays False, and the problem says why
        latest = {}
        problem = exc.message
    except (ImportError, AttributeError):
        latest = {}
    stored = StoredProbes(latest, problem)
    _AUTO_CACHE[key] = (now, stored)
    return stored


def store_problem() -> str | None:
    """Why the history store could not be read for ``calibration="auto"`` (``None`` when it could, or is absent)."""
    return stored_probes().problem
