"""The storage timeline of a traced step: allocations and frees in order, as the allocator replay takes them.

``advisor.workload.trace`` records every storage the fake run allocates and frees here; its peaks split the
step's memory by category, and ``step_events`` is the event list ``advisor.estimator.allocator.replay`` replays
(a traced workload's ``options.allocations``).

One of the designated torch importers; torch is imported lazily, inside the methods.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any


def _note_death(died: list[int], key: int, _ref: Any) -> None:
    """A weak reference's callback: the storage ``key`` died."""
    died.append(key)


class StorageTimeline:
    """Storage lifetimes of the fake run: ``("a"|"f", alloc id, nbytes)`` events in order.

    A storage is freed between two ops (autograd releasing a node's saved tensors and its incoming gradient
    after the node ran, a Python reference dropped), so every op first records the frees since the last one
    (``sweep``) and then its own outputs (``track``): in that order the timeline's peak is the real step's.
    Frees recorded late, or after the next op's outputs, would count a freed tensor and its successor at once
    (e.g. the fp32 logits, their gradient and its 16-bit cast in the loss's backward under autocast).  A
    storage's death is noted when it happens, by a weak reference to its Python object (which torch keeps alive
    exactly as long as the storage itself), so a sweep costs the frees it records, not a look at every live
    storage (that was quadratic in a step's storages: ~40% of an unrolled LSTM's trace time).
    """

    def __init__(self) -> None:
        # storage cdata -> (alloc id, StorageWeakRef (keeps the cdata from being reused before its free is
        # recorded), weakref.ref to the Python storage (its callback notes the death), nbytes)
        self.live: dict[int, tuple[int, Any, Any, int]] = {}
        self.events: list[tuple[str, int, int]] = []
        self.next_id = 0
        self._died: list[int] = []  # cdata of storages dead since the last sweep
        self._polled: set[int] = set()  # storages no weak reference could be made to: looked at every sweep
        self._silent: set[int] = set()  # storages whose allocation another storage took over (``alias``)
        self.sweeps: list[int] = []  # the index of each sweep's first free in ``events``

    def track(self, t: Any) -> int | None:
        """The alloc id of a tensor's storage (a new one is an allocation); ``None`` for a non-tensor."""
        import torch

        if not isinstance(t, torch.Tensor):
            return None
        storage = t.untyped_storage()
        key = storage._cdata
        entry = self.live.get(key)
        if entry is not None:
            return entry[0]
        self.next_id += 1
        n = int(storage.nbytes())
        self._watch(storage, key, self.next_id, n)
        self.events.append(("a", self.next_id, n))
        return self.next_id

    def _watch(self, storage: Any, key: int, aid: int, n: int) -> None:
        from torch.multiprocessing.reductions import StorageWeakRef

        try:
            death = weakref.ref(storage, functools.partial(_note_death, self._died, key))
        except TypeError:
            death = None
            self._polled.add(key)
        self.live[key] = (aid, StorageWeakRef(storage), death, n)

    def lookup(self, t: Any) -> int | None:
        """The alloc id of a tensor's storage if it is tracked (no allocation is recorded), else ``None``."""
        entry = self.live.get(t.untyped_storage()._cdata)
        return None if entry is None else entry[0]

    def alias(self, t: Any, of: Any) -> None:
        """Record ``t``'s storage as ``of``'s allocation (its free is that allocation's); ``of``'s dies silently.

        For a stand-in tensor the traced step holds in place of another (``advisor.workload.trace_rnn``).
        """
        old = self.live.get(of.untyped_storage()._cdata)
        if old is None:
            return
        self._silent.add(of.untyped_storage()._cdata)
        storage = t.untyped_storage()
        if storage._cdata not in self.live:
            self._watch(storage, storage._cdata, old[0], old[3])

    def sweep(self) -> None:
        """Record the frees of every storage that died since the last sweep."""
        died = self._died[:]
        del self._died[:len(died)]  # in place: the callbacks hold this list
        if self._polled:
            import torch

            expired = torch.Storage._expired  # type: ignore[attr-defined]  # what StorageWeakRef.expired calls
            gone = [k for k in self._polled if expired(k)]
            self._polled.difference_update(gone)
            died.extend(gone)
        # in allocation order, as a look over every live storage (the dict's order) would find them
        if died:
            self.sweeps.append(len(self.events))
        for aid, k in sorted((self.live[k][0], k) for k in set(died) if k in self.live):
            _, _, _, n = self.live.pop(k)
            if k in self._silent:
                self._silent.discard(k)
            else:
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


def memory_figures(timeline: StorageTimeline, first_event: int, fixed_ids: set[Any], copies: set[Any],
                   grad_ids: set[Any], saved_bytes: float, saved_ids: set[Any], param_bytes: float,
                   grad_bytes: float) -> dict[str, Any]:
    """A step's memory by category from its storage timeline (``TraceResult``'s fields, and its ``step`` events).

    ``fixed_ids``: the parameters', buffers' and inputs' alloc ids; ``copies``: autocast's weight copies.
    """
    # replay the timeline: temporaries = live - params/buffers - inputs - gradients - saved activations
    peak, tmp_peak = timeline.peaks(fixed_ids | copies | grad_ids | saved_ids)
    copies_peak = timeline.peak_of(copies)
    # the estimate adds weights + all gradients + all activations + the weight copies + transient: transient is
    # what the step's peak holds beyond them (its temporaries and inputs, less the gradients not yet made and the
    # activations already freed when the peak comes), so the sum is the traced peak itself
    transient = max(0.0, peak - param_bytes - grad_bytes - saved_bytes - copies_peak)
    return {"activation_bytes": saved_bytes, "transient_bytes": transient, "peak_bytes": float(peak),
            "weight_copy_bytes": copies_peak, "temporaries_peak_bytes": float(tmp_peak),
            "step": timeline.step_events(first_event, grad_ids)}
