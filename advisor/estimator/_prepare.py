"""A workload prepared once for many cards: micro-batches, memory parts and op tuples, cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

from advisor.errors import EstimateError
from advisor.estimator.gemm import activation_rows
from advisor.estimator.memory import MemoryParts, memory_parts
from advisor.estimator.ops import PreparedOp, prepare_ops
from advisor.estimator.parallel import ParallelPlan
from advisor.workload.base import Workload
from advisor.workload.transformer import compute_bytes

T = TypeVar("T")


class PreparedWorkload:
    """A workload plus what estimates need from it, cached per micro-batch and plan (card-independent)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._micro: dict[int, Workload] = {workload.batch_size: workload}
        self._parts: dict[tuple[int, ParallelPlan], MemoryParts] = {}
        self._ops: dict[tuple[int, int, bool, str, bool], tuple[PreparedOp, ...]] = {}
        self._priced: dict[tuple[Any, ...], Any] = {}

    def micro(self, batch: int) -> Workload:
        """The workload at per-GPU micro-batch ``batch``."""
        w = self._micro.get(batch)
        if w is None:
            try:
                w = self.workload.with_batch_size(batch)
            except NotImplementedError as exc:
                raise EstimateError(str(exc), hint="estimate it on one GPU, or give a rebuildable workload") from exc
            self._micro[batch] = w
        return w

    def parts(self, batch: int, plan: ParallelPlan) -> MemoryParts:
        """Memory parts at micro-batch ``batch`` under ``plan``."""
        key = (batch, plan)
        p = self._parts.get(key)
        if p is None:
            p = self._parts[key] = memory_parts(self.micro(batch), plan)
        return p

    def ops(self, batch: int, tp: int, decode: bool = False, runtime: str = "eager",
            channels_last: bool = False) -> tuple[PreparedOp, ...]:
        """Prepared op tuples at micro-batch ``batch``, per GPU under tensor parallel ``tp``, for ``runtime``.

        A CNN's convolutions and batch norms run on NCHW tensors unless ``channels_last``.
        """
        key = (batch, tp, decode, runtime, channels_last)
        o = self._ops.get(key)
        if o is None:
            w = self.micro(batch)
            o = self._ops[key] = prepare_ops(w.decode_ops if decode else w.ops, tp, runtime,
                                             align_elems=16 // compute_bytes(w.precision),
                                             nchw=is_nchw_cnn(w) and not channels_last,
                                             training_norms=w.mode == "train", channels_last=channels_last,
                                             rows=activation_rows(w.batch_size, w.seq_len), seq_len=w.seq_len)
        return o


    def priced(self, key: tuple[Any, ...], price: Callable[[], T]) -> T:
        """``price()``, once per ``key``: a step's op times on one card, which every card count of it shares.

        ``key`` names everything ``price`` reads besides this workload: the prepared ops (by identity: they live
        in this object) and the card's rates and efficiencies (frozen records, hashed by value).  Callers must not
        mutate what comes back.
        """
        hit = self._priced.get(key, _MISSING)
        if hit is _MISSING:
            hit = self._priced[key] = price()
        return cast(T, hit)  # the cache holds, per key, what that key's ``price`` returned


_MISSING = object()
_PREPARED: OrderedDict[int, PreparedWorkload] = OrderedDict()


def is_nchw_cnn(w: Workload) -> bool:
    """Whether a workload has convolutions, which run through cuDNN on PyTorch's default NCHW layout.

    Decided by the ops, not by where the workload came from: a preset and the same module traced are one model
    (``estimate(..., channels_last=True)`` says the tensors are NHWC).
    """
    return any(op.kind == "conv" for op in w.ops)


def prepare_workload(workload: Workload | PreparedWorkload) -> PreparedWorkload:
    """The cached ``PreparedWorkload`` of a workload (kept for the last 16 workloads)."""
    if isinstance(workload, PreparedWorkload):
        return workload
    hit = _PREPARED.get(id(workload))
    if hit is not None and hit.workload is workload:
        _PREPARED.move_to_end(id(workload))
        return hit
    prepared = PreparedWorkload(workload)
    _PREPARED[id(workload)] = prepared
    while len(_PREPARED) > 16:
        _PREPARED.popitem(last=False)
    return prepared
