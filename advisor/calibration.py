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
from advisor.estimator.calibrate import StoredProbes, check_figures, probe_efficiencies

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


def _record_efficiencies(record: Any, catalog_id: str) -> tuple[dict[str, float] | None, str | None]:
    """(the usable efficiencies a stored probe gives this card, or None; what was wrong with it, or None).

    A document that is not a probe result gives None; figures outside their range are dropped (named in the
    second item), the others kept.
    """
    try:
        probe = record.result() if hasattr(record, "result") else record
        figures = probe_efficiencies(probe, catalog_id)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
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
