"""Recurrent layers traced for a few time steps and extrapolated to the whole sequence, event for event.

On ATen's path (``advisor.workload.trace_blocks.RecurrentFiling``) a recurrent layer dispatches the same ops at
every time step, forward and backward (~70 per layer-step for an LSTM), so an unrolled trace over 256 steps
dispatches tens of thousands of ops.  Instead the model is traced three times with every recurrent call cut to
``STEPS`` (7, 8, 6) time steps: its input narrowed, its output padded back to the full length (neither recorded:
the rest of the model runs on the shapes it has, and the padded output stands for the layer's output in the storage
timeline, as the input's gradient widened back to the full length stands for the layer's input gradient).  The
three traces are then read as one step generator:

- **the storage timeline**: a layer's time steps are found by the op that multiplies by its hidden-to-hidden weight
  (the same number of times in every step, forward and backward); the events from one such step start to the next
  are one step's, the same between the first and the last few.  The timeline is cut into gaps and runs of steps; each
  allocation keeps its size (affine in the steps where it grows with them: the input projection, the output) and
  its categories (saved, gradient, weight copy), and each free names the allocation it frees by where it was made:
  a gap's, or a step of a run counted from the first step, from the last, relative to its own step, or mirrored
  (backward runs the steps last to first), whichever the traces agree on.  A run's first step or two and last step
  or two may differ from the rest (kept as traced); one sweep's frees in a gap may grow with the steps (a range
  of the steps' allocations).
- **groups** (FLOPs, bytes, elements, GEMM shapes): affine in the steps.

The generator is made from the traces at 7 and 8 steps and must reproduce the one at 6 exactly (every event, size,
category and group figure), or ``extrapolated`` returns ``None`` and the caller traces the model unrolled.  Calls
that are cut must all have one sequence length; a ``PackedSequence`` input, or a model without a recurrent
layer longer than the steps traced, is not cut.

One of the designated torch importers; torch is imported lazily, inside the functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.workload.trace_blocks import patched_forwards
from advisor.workload.trace_rnn_steps import COPY, GRAD, SAVED, Mismatch, RawStep, Template, generate, template

#: The time steps a recurrent call is cut to: the generator is made from the first two, checked on the third.
STEPS = (7, 8, 6)


class NotCut(Exception):
    """A recurrent call the fast path does not cut (e.g. a ``PackedSequence`` input): trace unrolled."""


@dataclass
class Cuts:
    """What cutting the recurrent calls of one traced step recorded."""

    steps: int
    lengths: list[int] = field(default_factory=list)  # the full sequence length of every call cut
    nodes: list[Any] = field(default_factory=list)  # the stand-ins' autograd nodes (kept alive: ids stay unique)


def has_recurrent(module: Any) -> bool:
    """Whether ``module`` holds a recurrent layer (``nn.RNNBase``: RNN, LSTM, GRU)."""
    import torch

    return any(isinstance(m, torch.nn.RNNBase) for m in module.modules())


def _extended(t: Any, dim: int, length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``t``'s shape with ``dim`` at ``length``, and the strides of a dense tensor laid out in ``t``'s dim order."""
    shape = list(t.shape)
    shape[dim] = length
    order = sorted(range(t.dim()), key=lambda d: (t.stride(d), d))
    strides = [0] * t.dim()
    step = 1
    for d in order:
        strides[d] = step
        step *= shape[d]
    return tuple(shape), tuple(strides)


def _cut_call(forward: Callable[..., Any], mod: Any, rec: Any, cuts: Cuts, x: Any, hx: Any = None) -> Any:
    import torch

    if not isinstance(x, torch.Tensor):
        raise NotCut("a PackedSequence input")
    dim = 1 if (mod.batch_first and x.dim() == 3) else 0
    full = int(x.shape[dim])
    if full <= cuts.steps:
        return forward(x, hx)
    cuts.lengths.append(full)
    rec.paused = True
    try:
        short = x.narrow(dim, 0, cuts.steps)
    finally:
        rec.paused = False
    out, h = forward(short, hx)
    rec.paused = True
    try:
        time_major = out.transpose(0, 1) if dim else out
        pad = torch.cat((time_major, time_major.new_empty((full - cuts.steps, *time_major.shape[1:]))), 0)
        pad = pad.transpose(0, 1) if dim else pad
    finally:
        rec.paused = False
    if tuple(pad.stride()) != _extended(out, dim, full)[1]:
        raise NotCut("the output's layout does not extend along time")
    rec.timeline.alias(pad, out)
    todo = [pad.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node is out.grad_fn or id(node) in rec.paused_nodes:
            continue
        rec.paused_nodes.add(id(node))
        cuts.nodes.append(node)
        todo.extend(n for n, _ in node.next_functions)
    if short.grad_fn is not None:
        node = short.grad_fn
        rec.paused_nodes.add(id(node))
        cuts.nodes.append(node)

        def widen(grad_inputs: Any, grad_outputs: Any) -> Any:
            g = grad_outputs[0]
            if g is None or grad_inputs[0] is None:
                return None
            shape, strides = _extended(g, dim, full)
            wide = torch.empty_strided(shape, strides, dtype=g.dtype, device=g.device)
            rec.timeline.alias(wide, g)
            return (wide, *grad_inputs[1:])

        node.register_hook(widen)
    return pad, h


@contextlib.contextmanager
def cut_calls(module: Any, rec: Any, params: dict[str, Any], steps: int) -> Iterator[Cuts]:
    """Every recurrent layer of ``module`` called on ``steps`` time steps of its input while the context is open.

    ``rec`` (a ``trace_record.Recording``) marks each op that multiplies by a layer's hidden-to-hidden weight
    (``params``: the fake parameters by name).
    """
    import torch

    cuts = Cuts(steps)
    rec.marks = []

    def patches() -> Iterator[tuple[Any, Any]]:
        for prefix, mod in module.named_modules():
            if isinstance(mod, torch.nn.RNNBase):
                for attr in mod._flat_weights_names:
                    name = f"{prefix}.{attr}" if prefix else attr
                    if attr.startswith("weight_hh") and name in params:
                        rec.hidden[rec.timeline.lookup(params[name])] = name

                def forward(x: Any, hx: Any = None, _f: Any = mod.forward, _m: Any = mod) -> Any:
                    return _cut_call(_f, _m, rec, cuts, x, hx)

                yield mod, forward

    with patched_forwards(patches()):
        yield cuts


# -- the extrapolated step ------------------------------------------------------------------------------------------

def _affine(a: Any, b: Any, c: Any, ka: int, kb: int, kc: int, k: int) -> Any:
    """The value at ``k`` steps of a figure that is ``a``, ``b``, ``c`` at ``ka``, ``kb``, ``kc`` steps (affine).

    Numbers, or tuples of them (GEMM shapes); ``None`` and other values must be equal.

    Raises:
        Mismatch: not affine (the third does not fit the line through the first two).
    """
    if isinstance(a, tuple) and isinstance(b, tuple) and isinstance(c, tuple) and len(a) == len(b) == len(c):
        return tuple(_affine(x, y, z, ka, kb, kc, k) for x, y, z in zip(a, b, c, strict=True))
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        if not a == b == c:
            raise Mismatch("a figure that should not change")
        return a
    slope = (b - a) / (kb - ka)
    if a + slope * (kc - ka) != c:
        raise Mismatch("a figure not affine in the steps")
    value = a + slope * (k - ka)
    return type(a)(value) if isinstance(a, int) and float(value).is_integer() else value


def _groups_at(results: Sequence[Any], ks: Sequence[int], k: int) -> dict[tuple[str, str], Any]:
    import dataclasses

    ga, gb, gc = (r.groups for r in results)
    if list(ga) != list(gb) or list(ga) != list(gc):
        raise Mismatch("groups")
    out = {}
    for key, g in ga.items():
        fields = {f.name: _affine(getattr(g, f.name), getattr(gb[key], f.name), getattr(gc[key], f.name),
                                  ks[0], ks[1], ks[2], k)
                  for f in dataclasses.fields(g)}
        out[key] = type(g)(**fields)
    return out


def _check(gen: Template, raw: RawStep) -> None:
    """The generator must give ``raw``'s own step, event for event."""
    first = min((aid for kind, aid, _ in raw.events if kind == "a"), default=0)
    events, flags = generate(gen, raw.steps, first)
    want = [(kind, aid, n) for kind, aid, n in raw.events]
    got = [(kind, aid, n if n >= 0 else next(m for k2, a2, m in raw.pre_events if a2 == aid))
           for kind, aid, n in events]
    if got != want or flags != {aid: f for aid, f in raw.flags.items() if f and any(
            kind == "a" and a == aid for kind, a, _ in raw.events)}:
        raise Mismatch("the third trace")


def extrapolated(step: Callable[[int | None], tuple[Any, RawStep | None]]) -> Any:
    """The unrolled step's ``TraceResult`` from ``step(cut)`` at ``STEPS`` time steps, or ``None`` (trace it unrolled).

    ``step(cut)``: ``advisor.workload.trace._traced_step`` with the recurrent calls cut to ``cut`` steps.
    """
    import dataclasses

    from advisor.workload.trace_timeline import StorageTimeline, memory_figures

    raws: list[RawStep] = []
    try:
        for steps in STEPS:
            res, raw = step(steps)
            assert raw is not None
            if not raw.lengths:
                return res if steps == STEPS[0] else None  # no call long enough to cut: that is the whole step
            if len(set(raw.lengths)) != 1 or raw.lengths[0] <= max(STEPS):
                return None
            raws.append(raw)
        full = raws[0].lengths[0]
        made = template(raws[:2])
        _check(made, raws[2])
        if [r.result.gemms for r in raws[1:]] != [raws[0].result.gemms] * 2 or any(
                r.result.uncounted != raws[0].result.uncounted for r in raws):
            raise Mismatch("GEMMs or uncounted ops")
        groups = _groups_at([r.result for r in raws], [r.steps for r in raws], full)
    except (NotCut, Mismatch):
        return None
    base = raws[0]
    first = min((aid for kind, aid, _ in base.events if kind == "a"), default=0)
    events, flags = generate(made, full, first)
    pre_sizes = {aid: n for _, aid, n in base.pre_events}
    timeline = StorageTimeline()
    timeline.events = [*base.pre_events, *((kind, aid, n if n >= 0 else pre_sizes[aid]) for kind, aid, n in events)]
    sizes = {aid: n for kind, aid, n in events if kind == "a"}
    saved = {aid for aid, f in flags.items() if f & SAVED}
    res = base.result
    # (an inference step saves nothing)
    mem = memory_figures(timeline, len(base.pre_events), set(pre_sizes),
                         {aid for aid, f in flags.items() if f & COPY}, {aid for aid, f in flags.items() if f & GRAD},
                         float(sum(sizes[a] for a in saved)), saved, res.param_bytes, res.gradient_bytes)
    step_events = mem.pop("step")
    return dataclasses.replace(res, groups=groups, allocations={**res.allocations, **step_events}, **mem)


__all__ = ["COPY", "GRAD", "SAVED", "Cuts", "NotCut", "RawStep", "cut_calls", "extrapolated", "has_recurrent"]
