"""The dispatch hook of a traced step: what each aten op costs, which group it joins, in which order.

``Recording.record`` costs one dispatched op (FLOPs by torch's formula, bytes of its tensors, the elements an
index-bound kernel processes), files it under its group (per phase and op; matmuls and convolutions one by one
with their GEMM dimensions; a recurrent layer's ops under the layer) and keeps the calls in dispatch order;
``recorder_type`` is the ``TorchDispatchMode`` that calls it.  Used by ``advisor.workload.trace``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload.aten_ops import (
    COMPUTE_KINDS,
    NO_KERNEL,
    WINOGRAD_SUFFIX,
    Gemm,
    OpGroup,
    attention_geometry,
    flop_formulas,
    gemm_dims,
    index_bound_elements,
    nbytes,
    op_kind,
    winograd_shaped,
)
from advisor.workload.trace_blocks import RecurrentFiling
from advisor.workload.trace_sdpa import attention_operand_bytes
from advisor.workload.trace_timeline import StorageTimeline

#: Most ops one traced step may dispatch before tracing stops with an error.  A module that loops in Python over its
#: sequence (a state-space scan on Hugging Face's slow path, a hand-written RNN cell) dispatches ops per time step:
#: a Mamba config traced for 14+ minutes without an answer (2-core VM, 2026-12-07).  The tracer follows ~2,400 ops a
#: second there (a 2-layer LSTM LM at seq 256: ~71,000 ops in ~30 s, docs/performance.md), so this bounds a trace at
#: several minutes; every shipped preset and zoo model dispatches far fewer.
TRACE_OP_BUDGET = 1_000_000


def tensors(tree: Any) -> list[Any]:
    """The tensors of an op's arguments or outputs, in ``torch.utils._pytree.tree_flatten``'s order.

    An aten op's arguments and outputs nest only in lists, tuples (``torch.return_types`` included) and keyword
    dicts, so this walks those directly: pytree's generic walk cost ~15% of a trace.
    """
    import torch

    out: list[Any] = []
    _walk(tree, out, torch.Tensor)
    return out


def _walk(x: Any, out: list[Any], tensor: type) -> None:
    if isinstance(x, tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for y in x:
            _walk(y, out, tensor)
    elif isinstance(x, dict):
        for y in x.values():
            _walk(y, out, tensor)


@dataclass(frozen=True, slots=True)
class _OpFacts:
    """What ``Recording.record`` needs of an op overload that is the same at every call (looked up once)."""

    name: str
    foreign: str | None  # ``namespace.name`` of an op outside aten/prims (listed as uncounted)
    formula: Any
    kind: str
    tc: bool
    kernel: bool  # launches a kernel (not a view nor in ``NO_KERNEL``): its tensors' bytes move
    pointwise: bool  # torch's ``pointwise`` tag

    @staticmethod
    def of(func: Any, formulas: tuple[Any, Any]) -> _OpFacts:
        import torch

        packet = func._overloadpacket
        name = packet.__name__
        namespace = getattr(func, "namespace", "aten")
        registry, extra = formulas
        kind, tc = op_kind(name)
        return _OpFacts(name=name, foreign=None if namespace in ("aten", "prims", "prim") else f"{namespace}.{name}",
                        formula=extra.get(name) or registry.get(packet), kind=kind, tc=tc,
                        kernel=not (getattr(func, "is_view", False) or name in NO_KERNEL),
                        pointwise=getattr(torch.Tag, "pointwise", None) in getattr(func, "tags", ()))


@dataclass
class Recording:
    """What the dispatch hook records, op by op (see ``Recording.record``)."""

    timeline: StorageTimeline
    rnn: RecurrentFiling
    phase: str = "forward"
    groups: dict[tuple[str, str], OpGroup] = field(default_factory=dict)
    gemms: list[Gemm] = field(default_factory=list)
    uncounted: dict[str, None] = field(default_factory=dict)
    persistent: set[int | None] = field(default_factory=set)  # parameters and buffers
    weight_copies: set[Any] = field(default_factory=set)  # autocast's 16-bit copies of weights
    formulas: tuple[Any, Any] = field(default_factory=flop_formulas)
    # the dispatched calls in order: (group key, or None for the GEMM record of that index; its weight in its
    # group: FLOPs for matmul-like kinds, else bytes); None once a recurrent layer is traced (its cuDNN calls are
    # not one aten op each)
    calls: list[tuple[tuple[str, str] | None, int, float]] | None = field(default_factory=list)
    dispatched: int = 0
    # the recurrent fast path (``advisor.workload.trace_rnn``): its stand-in ops are not recorded (``paused``, and
    # in backward the autograd nodes in ``paused_nodes``); ``marks`` (when a list) gets (event index, (phase, name))
    # at every op that multiplies by a recurrent layer's hidden-to-hidden weight (``hidden``: alloc id -> name)
    paused: bool = False
    paused_nodes: set[int] = field(default_factory=set)
    marks: list[tuple[int, Any]] | None = None
    hidden: dict[int | None, str] = field(default_factory=dict)
    copy_of: dict[int | None, int | None] = field(default_factory=dict)  # autocast weight copy -> the weight
    _facts: dict[Any, _OpFacts] = field(default_factory=dict)  # per op overload: what does not change per call

    def record(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        """Cost one dispatched op (FLOPs by torch's formula, bytes of its tensors) and track its outputs.

        Raises:
            WorkloadError: the step has dispatched more than ``TRACE_OP_BUDGET`` ops.
        """
        self.dispatched += 1
        if self.dispatched > TRACE_OP_BUDGET:
            raise WorkloadError(
                f"the traced step dispatched more than {TRACE_OP_BUDGET:,} ops ({self.phase}): the module loops in "
                "Python over its sequence (e.g. a recurrent cell or a state-space scan without fused kernels), which "
                "would take many minutes to trace; tracing stopped",
                "estimate it with a shorter seq_len (the cost per step is the same), or a preset / config.json with "
                "a closed form (presets: `estimate --help`)")
        if self.paused or (self.paused_nodes and self.phase == "backward" and self._in_paused_node()):
            return
        facts = self._facts.get(func)
        if facts is None:
            facts = self._facts[func] = _OpFacts.of(func, self.formulas)
        if facts.foreign:
            self.uncounted[facts.foreign] = None
        name, kind, formula = facts.name, facts.kind, facts.formula
        touts = tensors(out)
        flops = 0.0
        if formula is not None:
            flops = float(formula(*args, **kwargs, out_val=out))
        elif kind in ("matmul", "conv", "attention", "recurrent"):
            self.uncounted[f"aten.{name}"] = None  # compute-heavy, but no FLOP formula: listed, not zero
        if formula is None and not touts:
            return  # sym_size, device and the like: no kernel
        start = len(self.timeline.events)
        self.timeline.sweep()  # the frees since the last op happened before this op's outputs were allocated
        moved = strided = 0
        ins: list[Any] = []
        if facts.kernel:
            ins = tensors((args, kwargs))
            read = attention_operand_bytes if kind == "attention" else nbytes  # a broadcast bias: once
            moved = sum(read(t) for t in ins) + sum(nbytes(t) for t in touts)
            strided = index_bound_elements(name, kind, facts.pointwise, args, kwargs, ins, touts)
        rnn_label = self.rnn.label(self.phase)
        if rnn_label is not None:
            if self.marks is not None and ins:
                self._mark(start, ins)
            self._add((self.phase, rnn_label), "recurrent", True, flops, moved, launches=0)  # counted per call
            self.calls = None
        elif kind in ("matmul", "conv"):
            label = f"aten.{name}" + (WINOGRAD_SUFFIX if winograd_shaped(name, func, args, kwargs) else "")
            self.gemms.append(Gemm(self.phase, label, kind, facts.tc, flops, float(moved),
                                   gemm_dims(name, kind, func, args, kwargs, out)))
            if self.calls is not None:
                self.calls.append((None, len(self.gemms) - 1, flops))
        else:  # calls on an index-bound path are grouped apart: they run at another rate
            key = (self.phase, f"aten.{name}[strided]" if strided else f"aten.{name}")
            geometry = attention_geometry(name, func, args, kwargs) if kind == "attention" else None
            g = self._add(key, kind, facts.tc, flops, moved, strided=strided)
            if geometry is not None:  # its head dim: what the tiles' GEMMs run at, per exponential
                g.tile_flops += geometry[0]
                g.block_flops += geometry[1]
                g.min_dim = geometry[2] if g.min_dim is None else min(g.min_dim, geometry[2])
            if self.calls is not None:
                self.calls.append((key, -1, flops if kind in COMPUTE_KINDS else float(moved)))
        track = self.timeline.track
        out_ids = [track(t) for t in touts]
        if name == "_to_copy" and out_ids and track(args[0]) in self.persistent:
            self.weight_copies.add(out_ids[0])
            self.copy_of[out_ids[0]] = track(args[0])

    def _in_paused_node(self) -> bool:
        import torch

        node = torch._C._current_autograd_node()
        return node is not None and id(node) in self.paused_nodes

    def _mark(self, start: int, ins: list[Any]) -> None:
        assert self.marks is not None
        for t in ins:
            aid = self.timeline.lookup(t)
            key = self.hidden.get(aid) or self.hidden.get(self.copy_of.get(aid))
            if key is not None:
                self.marks.append((start, (self.phase, key)))
                return

    def _add(self, key: tuple[str, str], kind: str, tc: bool, flops: float, moved: float, launches: int = 1,
             strided: int = 0) -> OpGroup:
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = OpGroup(kind, tc)
        g.flops += flops
        g.bytes += moved
        g.count += launches
        g.strided_elements += strided
        return g


@functools.cache
def recorder_type() -> type:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map

    class Recorder(TorchDispatchMode):
        def __init__(self, recording: Recording) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            self.recording = recording
            self.cpu_copies: dict[int, tuple[Any, Any]] = {}  # id(meta tensor) -> (it, its fake CPU twin)

        def on_cpu(self, t: Any) -> Any:
            if type(t) is not torch.Tensor or t.device.type != "meta":
                return t
            entry = self.cpu_copies.get(id(t))
            if entry is None or entry[0] is not t:
                twin = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="cpu")
                entry = self.cpu_copies[id(t)] = (t, twin)
            return entry[1]

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if any(type(t) is torch.Tensor and t.device.type == "meta" for t in tensors((args, kwargs))):
                # a meta tensor the loss or module holds (e.g. the targets of a model built on ``meta``):
                # the same shape as a fake CPU tensor, so it meets the fake CPU activations
                args, kwargs = tree_map(self.on_cpu, (args, kwargs))
            out = func(*args, **kwargs)
            self.recording.record(func, args, kwargs, out)
            return out

    return Recorder
