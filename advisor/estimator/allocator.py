"""PyTorch's CUDA caching allocator replayed on a traced step: the bytes it reserves beyond those allocated.

``torch.cuda.max_memory_reserved`` (what a training job really holds) exceeds ``max_memory_allocated`` because
the caching allocator keeps freed blocks in the segments it got from ``cudaMalloc`` and serves later requests
from them only where a free block is large enough.  The rules replayed here are those of
c10/cuda/CUDACachingAllocator.cpp (PyTorch 2.x, default settings: no ``max_split_size_mb``, no expandable
segments; PyTorch docs, "CUDA semantics: memory management"):

- a request is rounded up to a multiple of 512 B; requests up to 1 MiB are served from the small pool,
  larger ones from the large pool;
- a pool serves the smallest free block that is large enough (best fit; ties by address);
- with none, a new segment is reserved: 2 MiB for a small request, 20 MiB for one under 10 MiB, else the
  request rounded up to a multiple of 2 MiB;
- a block larger than the request is split when what remains is at least 512 B (small pool) or more than
  1 MiB (large pool); otherwise the whole block is handed out (and counted as allocated);
- a freed block merges with free neighbours of its own segment; segments are never merged nor returned.

What is replayed (``replay``): the process's cuBLAS workspaces, the model's parameters (built in fp32 and
cast one by one for 16-bit models, as ``module.to(dtype)`` does), the inputs, then ``STEPS`` training steps:
``zero_grad(set_to_none=True)`` frees the gradients, the traced forward and backward allocate and free in
the order the fake run recorded, and the optimizer (torch's foreach implementation on CUDA) allocates its
state in the first step and its per-step temporaries (Adam's ``_foreach_sqrt`` of the second moments).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.optimizers import algorithm, implementation
from advisor.units import MiB

MIN_BLOCK = 512
SMALL_SIZE = 1 * MiB
SMALL_BUFFER = 2 * MiB
LARGE_BUFFER = 20 * MiB
MIN_LARGE_ALLOC = 10 * MiB
ROUND_LARGE = 2 * MiB
#: Steps replayed: the first allocates the optimizer state; the later ones run with the cache it left.
STEPS = 3


class _Block:
    __slots__ = ("addr", "free", "next", "prev", "size", "small")

    def __init__(self, addr: int, size: int, small: bool) -> None:
        self.addr, self.size, self.small = addr, size, small
        self.free = False
        self.prev: _Block | None = None
        self.next: _Block | None = None


def round_size(n: int) -> int:
    """A request's size as the allocator hands it out (a multiple of 512 B)."""
    return MIN_BLOCK if n < MIN_BLOCK else -(-n // MIN_BLOCK) * MIN_BLOCK


def segment_size(size: int) -> int:
    """The ``cudaMalloc`` a rounded request of ``size`` bytes makes when no cached block serves it."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-size // ROUND_LARGE) * ROUND_LARGE


class CachingAllocator:
    """The allocator's block bookkeeping (one stream): ``malloc``/``free`` and the peaks of both counters."""

    def __init__(self) -> None:
        self.pools: dict[bool, list[tuple[int, int]]] = {True: [], False: []}  # small? -> sorted (size, addr)
        self.blocks: dict[int, _Block] = {}  # addr -> free block
        self.next_addr = 0
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def malloc(self, nbytes: int) -> _Block:
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        i = bisect.bisect_left(pool, (size, -1))
        if i < len(pool):
            _, addr = pool.pop(i)
            block = self.blocks.pop(addr)
        else:
            seg = segment_size(size)
            block = _Block(self.next_addr, seg, small)
            self.next_addr += seg
            self.reserved += seg
            self.peak_reserved = max(self.peak_reserved, self.reserved)
        rest = block.size - size
        if (rest >= MIN_BLOCK) if small else (rest > SMALL_SIZE):
            tail = _Block(block.addr + size, rest, small)
            tail.prev, tail.next = block, block.next
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            self._insert(tail)
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def free(self, block: _Block) -> None:
        self.allocated -= block.size
        for other in (block.prev, block.next):
            if other is not None and other.free:
                self._remove(other)
                if other is block.prev:
                    other.size += block.size
                    other.next = block.next
                    if block.next is not None:
                        block.next.prev = other
                    block = other
                else:
                    block.size += other.size
                    block.next = other.next
                    if other.next is not None:
                        other.next.prev = block
        self._insert(block)

    def _insert(self, block: _Block) -> None:
        block.free = True
        self.blocks[block.addr] = block
        bisect.insort(self.pools[block.small], (block.size, block.addr))

    def _remove(self, block: _Block) -> None:
        pool = self.pools[block.small]
        del pool[bisect.bisect_left(pool, (block.size, block.addr))]
        del self.blocks[block.addr]


def _micro_step(sim: CachingAllocator, events: Sequence[int], grad_idx: Sequence[int],
                accumulated: set[int] | None) -> list[_Block]:
    """One forward + backward: its events in order, the gradients it keeps returned.

    ``accumulated``: gradients added in place into those kept, freed as soon as made.  The step's other locals (loss,
    outputs) die with it.
    """
    live: dict[int, _Block] = {}
    count = 0
    for e in events:
        if e >= 0:
            block = sim.malloc(e)
            if accumulated is not None and count in accumulated:
                sim.free(block)
            else:
                live[count] = block
            count += 1
        elif (freed := live.pop(-e - 1, None)) is not None:
            sim.free(freed)
    grads = [live.pop(i) for i in grad_idx if i in live]
    for block in live.values():
        sim.free(block)
    return grads


@dataclass(frozen=True)
class Replay:
    """Peaks of one replayed run (bytes)."""

    peak_allocated: int
    peak_reserved: int

    @property
    def gap(self) -> int:
        """What the allocator reserves beyond the bytes allocated at their peaks.

        ``max_memory_reserved - max_memory_allocated``.
        """
        return max(0, self.peak_reserved - self.peak_allocated)


#: Optimizer state tensors per trainable parameter (each the parameter's size) and per-step temporaries (foreach:
#: a list-wide temporary per parameter at once; a fused step none; a per-parameter loop its temporaries one
#: parameter at a time, freed before the next).
_STATE = {"adam": 2, "adamw": 2, "sgd-momentum": 1, "sgd": 0}
_TEMPS = {"adam": 1, "adamw": 1, "sgd-momentum": 0, "sgd": 0}


def supports(optimizer: str | None) -> bool:
    """Whether ``replay`` knows the optimizer's allocations (``None``: inference, no optimizer)."""
    return optimizer is None or (algorithm(optimizer) in _STATE and implementation(optimizer) != "library")


def replay(allocations: Mapping[str, Any], optimizer: str | None, *, workspaces: Sequence[int] = (),
           cast_from_fp32: bool = False, steps: int = STEPS, accumulate: int = 1) -> Replay:
    """Replay a step's allocations, a trace's or the closed-form builder's (the same form).

    A trace's are ``advisor.workload.trace``'s ``options.allocations``; the builder's come from
    ``advisor.workload.step_timeline`` (``options.timeline``).

    Args:
        allocations: ``params`` (``[nbytes, trainable]`` per parameter/buffer), ``inputs`` (nbytes),
            ``step`` (the forward + backward in order: ``n >= 0`` allocates ``n`` bytes, ``-(i + 1)`` frees the
            ``i``-th allocation of the step) and ``grads`` (indexes of the step's allocations that are
            gradients: they live until the next step's ``zero_grad``); ``loaded_in_dtype`` (optional): the
            parameters are loaded in their own dtype (``cast_from_fp32`` does not apply).
        optimizer: the optimizer (``None``: an inference step, no gradients, no optimizer).
        workspaces: the process's library workspaces (allocated first, held throughout).
        cast_from_fp32: the parameters are built in fp32 and cast one by one (a 16-bit model).
        steps: steps replayed.
        accumulate: micro-steps per optimizer step (gradient accumulation).  After the first, each gradient is added
            in place into the one kept (``AccumulateGrad``) and freed as soon as it is made; one such micro-step is
            replayed per optimizer step (a third repeats the second's allocations).
    """
    if not supports(optimizer):
        raise ValueError(f"no allocation model for optimizer {optimizer!r}")
    sim = CachingAllocator()
    for n in workspaces:
        sim.malloc(int(n))
    params = [(int(n), bool(t)) for n, t in allocations["params"]]
    # a step whose parameters are read from a checkpoint in their own dtype (``loaded_in_dtype``) is never cast
    if cast_from_fp32 and not allocations.get("loaded_in_dtype"):
        # the whole model is built in fp32, then ``module.to(dtype)`` casts it tensor by tensor
        built = [sim.malloc(2 * n) for n, _ in params]
        for (n, _), block in zip(params, built, strict=True):
            sim.malloc(n)
            sim.free(block)
    else:
        for n, _ in params:
            sim.malloc(n)
    for n in allocations["inputs"]:
        sim.malloc(int(n))
    events = [int(e) for e in allocations["step"]]
    grad_idx = [int(i) for i in allocations.get("grads", ())]
    trainable = [n for n, t in params if t]
    grads: list[_Block] = []
    for step in range(steps if optimizer else 1):
        for g in grads:
            sim.free(g)
        grads = _micro_step(sim, events, grad_idx, None)
        for _ in range(1, min(accumulate, 2) if optimizer else 1):
            _micro_step(sim, events, grad_idx, set(grad_idx))
        if optimizer:
            _optimizer_step(sim, trainable, optimizer, first=step == 0)
    return Replay(sim.peak_allocated, sim.peak_reserved)


def _optimizer_step(sim: CachingAllocator, trainable: list[int], optimizer: str, first: bool) -> None:
    """The optimizer's allocations in one step: its state the first time, then its temporaries (``_TEMPS``)."""
    algo, impl = algorithm(optimizer), implementation(optimizer)
    if first:
        for n in trainable:
            for _ in range(_STATE[algo]):
                sim.malloc(n)
    temps = 0 if impl == "fused" else _TEMPS[algo]
    if impl == "loop":
        for n in trainable:
            blocks = [sim.malloc(n) for _ in range(temps)]
            for block in blocks:
                sim.free(block)
        return
    for _ in range(temps):
        blocks = [sim.malloc(n) for n in trainable]
        for block in blocks:
            sim.free(block)


def cast_notes(precision: str, allocations: Mapping[str, Any]) -> list[str]:
    """The replay's assumption for a 16-bit model not loaded in its dtype (``replay``'s ``cast_from_fp32``)."""
    if precision not in ("fp16", "bf16") or allocations.get("loaded_in_dtype"):
        return []
    return [f"a {precision} model is taken as built in fp32 and cast (model.to(dtype), as building from a config "
            "does): the freed fp32 copy's segments stay reserved; loading it in its dtype (from_pretrained("
            "torch_dtype=...), or torch.set_default_dtype before building) avoids that"]
