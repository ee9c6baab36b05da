"""The storage timeline of a traced step: allocations and frees in order, as the allocator replay takes them.

``advisor.workload.trace`` records every storage the fake run allocates and frees here; its peaks split the
step's memory by category, and ``step_events`` is the event list ``advisor.estimator.allocator.replay`` replays
(a traced workload's ``options['allocations']``).

One of the designated torch importers; torch is imported lazily, inside the methods.
"""

from __future__ import annotations

from typing import Any


class StorageTimeline:
    """Storage lifetimes of the fake run: ``("a"|"f", alloc id, nbytes)`` events in order.

    A storage is freed between two ops (autograd releasing a node's saved tensors and its incoming gradient
    after the node ran, a Python reference dropped), so every op first records the frees since the last one
    (``sweep``, over every live storage) and then its own outputs (``track``): in that order the timeline's
    peak is the real step's.  Frees recorded late, or after the next op's outputs, would count a freed
    tensor and its successor at once (e.g. the fp32 logits, their gradient and its 16-bit cast in the
    loss's backward under autocast).
    """

    def __init__(self) -> None:
        self.live: dict[int, tuple[int, Any, int]] = {}  # storage cdata -> (alloc id, weakref, nbytes)
        self.events: list[tuple[str, int, int]] = []
        self.next_id = 0

    def track(self, t: Any) -> int | None:
        """The alloc id of a tensor's storage (a new one is an allocation); ``None`` for a non-tensor."""
        import torch
        from torch.multiprocessing.reductions import StorageWeakRef

        if not isinstance(t, torch.Tensor):
            return None
        ref = StorageWeakRef(t.untyped_storage())
        entry = self.live.get(ref.cdata)
        if entry is not None:
            return entry[0]
        self.next_id += 1
        n = int(t.untyped_storage().nbytes())
        self.live[ref.cdata] = (self.next_id, ref, n)
        self.events.append(("a", self.next_id, n))
        return self.next_id

    def sweep(self) -> None:
        """Record the frees of every storage that died since the last sweep."""
        import torch

        expired = torch.Storage._expired  # type: ignore[attr-defined]  # what StorageWeakRef.expired calls
        for k in [k for k in self.live if expired(k)]:
            aid, _, n = self.live.pop(k)
            self.events.append(("f", aid, n))

    def peaks(self, categorised: set[Any]) -> tuple[float, float]:
        """``(peak of all live bytes, peak of the bytes outside ``categorised`` alloc ids)``."""
        total = other_peak = peak = cat_live = 0.0
        for kind, aid, n in self.events:
            sign = 1 if kind == "a" else -1
            total += sign * n
            if aid in categorised:
                cat_live += sign * n
            peak = max(peak, total)
            other_peak = max(other_peak, total - cat_live)
        return peak, other_peak

    def step_events(self, start: int, grads: set[Any]) -> dict[str, list[int]]:
        """The events from ``start`` on as ``advisor.estimator.allocator.replay`` takes them.

        ``n >= 0`` allocates ``n`` bytes, ``-(i + 1)`` frees the ``i``-th of these allocations; ``grads``: the
        gradients' indexes.
        """
        index: dict[int, int] = {}
        out: list[int] = []
        for kind, aid, n in self.events[start:]:
            if kind == "a":
                index[aid] = len(index)
                out.append(int(n))
            elif aid in index:
                out.append(-index[aid] - 1)
        return {"step": out, "grads": sorted(index[g] for g in grads if g in index)}

    def peak_of(self, ids: set[Any]) -> float:
        """Peak of the bytes of the ``ids`` alloc ids live at once."""
        live = peak = 0.0
        for kind, aid, n in self.events:
            if aid in ids:
                live += n if kind == "a" else -n
                peak = max(peak, live)
        return peak
