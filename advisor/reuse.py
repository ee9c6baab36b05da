"""What a repeated ``recommend()`` request reuses: the workload built once, and the estimates made of it.

A preset or config built in this process is built once per (what names the model, build options); a workload
object keeps its estimates per (card, count, strategy, calibration), so the dashboard re-ranking the same job by
another objective, budget or filter re-prices nothing, and a long-lived process keeps one calibration's worth.
Pure: no torch, no printing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from advisor.catalog import GpuSpec
from advisor.errors import AdvisorError
from advisor.workload.base import Workload

#: Workloads (and built requests) kept, the most recently used last.
REUSE_SIZE = 8
#: Presets and config files/dicts built in this process, per (what names the model, build options): the same
#: request gets the same workload object, so ``reused`` finds its estimates.
_BUILT: OrderedDict[tuple[Any, ...], Workload] = OrderedDict()
#: The last workloads recommend was given, each with its memoized copy (``_memoize_rebuild``) and the estimates
#: made of it: a repeated request for the same workload object (the trace cache hands the same one back within a
#: process; the dashboard re-ranks by another objective, budget or filter) reuses the estimator's preparation
#: (``advisor.estimator.prepare_workload``, per workload object) and re-prices no (card, count) pair it priced.
_REUSE: OrderedDict[int, tuple[Workload, Workload, dict[tuple[Any, ...], Any]]] = OrderedDict()


def build_workload(model: Any, **kwargs: Any) -> Workload:
    """``advisor.workload.load_workload(model, **kwargs)``, the same object for the same request."""
    from advisor.workload import load_workload

    key = _build_key(model, kwargs)
    if key is None:
        return load_workload(model, **kwargs)
    hit = _BUILT.get(key)
    if hit is None:
        hit = _BUILT[key] = load_workload(model, **kwargs)
        while len(_BUILT) > REUSE_SIZE:
            _BUILT.popitem(last=False)
    return hit


def _build_key(model: Any, kwargs: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What a build depends on, or ``None`` (a module, a Hub id, unhashable options).

    A preset: its name (a fixed definition); a config file: its path and its state on disk; a config dict: its JSON.
    """
    try:
        options = tuple(sorted(kwargs.items()))
        if isinstance(model, Mapping):
            key: tuple[Any, ...] = ("config", json.dumps(model, sort_keys=True), options)
        elif isinstance(model, (str, Path)) and Path(model).is_file():
            st = Path(model).stat()
            key = ("file", str(Path(model).resolve()), st.st_mtime_ns, st.st_size, options)
        elif isinstance(model, str):
            from advisor.workload.presets import resolve_preset

            key = ("preset", resolve_preset(model), options)
        else:
            return None
        hash(key)
    except (AdvisorError, TypeError, ValueError, OSError):
        return None
    return key


def reused(workload: Workload) -> tuple[Workload, dict[tuple[Any, ...], Any]]:
    """(the memoized workload, its estimates so far) for a workload object, kept for the last few."""
    hit = _REUSE.get(id(workload))
    if hit is not None and hit[0] is workload:
        _REUSE.move_to_end(id(workload))
        return hit[1], hit[2]
    entry: tuple[Workload, Workload, dict[tuple[Any, ...], Any]] = (workload, _memoize_rebuild(workload), {})
    _REUSE[id(workload)] = entry
    while len(_REUSE) > REUSE_SIZE:
        _REUSE.popitem(last=False)
    return entry[1], entry[2]


def _memoize_rebuild(workload: Workload) -> Workload:
    """Make ``with_batch_size`` cached, so each distinct per-GPU micro-batch is built once."""
    rebuild = workload.options.rebuild
    if rebuild is None:
        return workload

    @functools.cache
    def rebuild_cached(batch_size: int) -> Workload:
        built: Workload = rebuild(batch_size)
        return dataclasses.replace(built, options=built.options.with_rebuild(rebuild_cached))

    return dataclasses.replace(workload, options=workload.options.with_rebuild(rebuild_cached))


def kept_for(estimates: dict[tuple[Any, ...], Any], calibration: Any) -> dict[tuple[Any, ...], Any] | None:
    """``estimates`` to keep this request's in, or ``None`` when its calibration is not one to key them by.

    Only none or the store's (``StoredProbes``: replaced when the store is re-read, every few seconds); a new one
    drops what was priced under the old, so a long-lived process (the dashboard) keeps one calibration's worth.
    """
    from advisor.estimator import StoredProbes

    if calibration is not None and not isinstance(calibration, StoredProbes):
        return None
    if estimates.get(("calibration",), (None, None))[1] is not calibration:
        estimates.clear()
        estimates[("calibration",)] = (None, calibration)
    return estimates


def priced(kept: dict[tuple[Any, ...], Any] | None, estimate_workload: Callable[..., Any], workload: Any,
           spec: GpuSpec, n: int, strategy: str | None, calibration: Any, extra: Mapping[str, Any]) -> Any:
    """``estimate_workload(...)`` for one (card, count, strategy), from ``kept`` when it was made before.

    ``kept`` is ``None`` (nothing kept) unless every input is immutable or held by identity: the card (the
    catalog's own record), no calibration or the store's (``StoredProbes``, re-read after a few seconds), plain
    runtime options.
    """
    if kept is None:
        return estimate_workload(workload, spec, num_gpus=n, parallelism=strategy, calibration=calibration, **extra)
    key = (id(spec), n, strategy, id(calibration), id(estimate_workload), tuple(sorted(extra.items())))
    hit = kept.get(key)
    if hit is not None and hit[0] is spec and hit[1] is calibration and hit[2] is estimate_workload:
        if isinstance(hit[3], AdvisorError):
            raise hit[3]
        return hit[3]
    try:
        result = estimate_workload(workload, spec, num_gpus=n, parallelism=strategy, calibration=calibration, **extra)
    except AdvisorError as exc:
        kept[key] = (spec, calibration, estimate_workload, exc)
        raise
    kept[key] = (spec, calibration, estimate_workload, result)
    return result
