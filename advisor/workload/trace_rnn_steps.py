"""The step generator of ``advisor.workload.trace_rnn``: a traced step's storage timeline as gaps and runs of steps.

``template`` reads two traces of a step whose recurrent calls were cut to different numbers of time steps
(``RawStep``s) as one generator (``Template``): the events cut at each run of step marks into gaps and runs of
steps, every allocation with its size (affine in the steps) and categories, every free naming the allocation it
frees by where it was made, as both traces agree; ``generate`` writes the step's events at any number of steps.
``Mismatch``: the traces do not fit one generator.  Plain Python: no torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: An allocation's categories in ``RawStep.flags``: saved for backward, autocast's weight copy, a gradient.
SAVED, COPY, GRAD = 1, 2, 4
#: The (first, last) occurrences of a run of steps that may each differ from the rest, tried in this order.
_ENDS = ((1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2))


@dataclass
class RawStep:
    """One traced step with its recurrent calls cut, as the generator reads it."""

    steps: int  # the time steps every cut call ran
    lengths: list[int]  # the full sequence length of each call cut
    pre_events: list[tuple[str, int, int]]  # the parameters', buffers' and inputs' allocations
    events: list[tuple[str, int, int]]  # the step's events
    flags: dict[int, int]  # alloc id -> SAVED | COPY | GRAD
    marks: list[tuple[int, Any]]  # (index into events, (phase, hidden weight)) at each recurrent step's op
    result: Any  # its TraceResult
    sweeps: set[int] = field(default_factory=set)  # indexes into events where a sweep's frees start


class Mismatch(Exception):
    """The traces do not fit one generator."""


@dataclass
class _Segments:
    """A step's events cut into gaps and runs of steps: ``parts`` in order, each ('gap', i) or ('run', r)."""

    parts: list[tuple[str, int]]
    gaps: list[list[int]]  # event indexes of each gap
    runs: list[list[list[int]]]  # per run, per occurrence (1..n), event indexes


def _runs(raw: RawStep) -> list[tuple[Any, list[int]]]:
    """``raw``'s step marks in runs of one (phase, hidden weight): (key, event indexes)."""
    runs: list[tuple[Any, list[int]]] = []
    for index, key in raw.marks:
        if runs and runs[-1][0] == key:
            runs[-1][1].append(index)
        else:
            runs.append((key, [index]))
    return runs


def _segments(raw: RawStep, per_step: dict[int, int]) -> _Segments:
    """Cut ``raw``'s events at the runs that are cut (``per_step``: run index -> marks per time step)."""
    segs = _Segments([], [], [])
    at = 0
    for r, (_key, marks) in enumerate(_runs(raw)):
        per = per_step.get(r)
        if per is None:
            continue
        if len(marks) % per:
            raise Mismatch("marks per step")
        starts = marks[::per]
        if starts[0] < at or len(starts) < 3:
            raise Mismatch("runs overlap, or too few steps")
        segs.parts.append(("gap", len(segs.gaps)))
        segs.gaps.append(list(range(at, starts[0])))
        segs.parts.append(("run", len(segs.runs)))
        segs.runs.append([list(range(a, b)) for a, b in itertools.pairwise(starts)])
        at = starts[-1]
    segs.parts.append(("gap", len(segs.gaps)))
    segs.gaps.append(list(range(at, len(raw.events))))
    return segs


def _addresses(raw: RawStep, segs: _Segments) -> dict[int, tuple[Any, ...]]:
    """Alloc id -> where it is made: ('gap', i, j) or ('run', r, occurrence, j) (j: the segment's j-th allocation)."""
    where: dict[int, tuple[Any, ...]] = {}
    for i, idx in enumerate(segs.gaps):
        j = 0
        for e in idx:
            kind, aid, _ = raw.events[e]
            if kind == "a":
                where[aid] = ("gap", i, j)
                j += 1
    for r, occs in enumerate(segs.runs):
        for o, idx in enumerate(occs, start=1):
            j = 0
            for e in idx:
                kind, aid, _ = raw.events[e]
                if kind == "a":
                    where[aid] = ("run", r, o, j)
                    j += 1
    return where


def _reps(target: tuple[Any, ...], o: int, k: int) -> list[tuple[Any, ...]]:
    """The ways a free made at occurrence ``o`` (0: in a gap) of a ``k``-step trace can name ``target``."""
    if target[0] != "run":
        return [target]
    _, r, o2, j = target
    out = [("abs", r, o2, j), ("end", r, k - o2, j)]
    if o:
        out += [("rel", r, o2 - o, j), ("mirror", r, o2 + o - k, j)]
    return out


def _resolve(rep: tuple[Any, ...], o: int, k: int) -> tuple[Any, ...]:
    if rep[0] in ("gap", "pre"):
        return rep
    how, r, v, j = rep
    o2 = {"abs": v, "end": k - v, "rel": o + v, "mirror": v + k - o}[how]
    return ("run", r, o2, j)


@dataclass
class Template:
    """The generator: per segment, its events (alloc: ('a', size at k0, size slope, flags); free: ('f', reps))."""

    parts: list[tuple[str, int]]
    gaps: list[list[tuple[Any, ...]]]
    heads: list[list[list[tuple[Any, ...]]]]  # per run: its first occurrence or two, each as traced
    middle: list[list[tuple[Any, ...]]]  # per run: every occurrence between the heads and the tails
    tails: list[list[list[tuple[Any, ...]]]]  # per run: its last occurrences that differ, each as traced
    k0: int
    occurrences: list[int]  # per run: its occurrences at k0 steps (one more per step)


def _describe(raw: RawStep, segs: _Segments, where: dict[int, tuple[Any, ...]], idx: list[int],
              o: int) -> list[tuple[Any, ...]]:
    """A segment's events: ('a', size, flags) or ('f', candidate names of the allocation freed)."""
    out: list[tuple[Any, ...]] = []
    for e in idx:
        kind, aid, n = raw.events[e]
        if kind == "a":
            out.append(("a", n, raw.flags.get(aid, 0)))
            continue
        target = where.get(aid, ("pre", aid))
        if o:
            out.append(("f", tuple(_reps(target, o, raw.steps))))
        elif out and out[-1][0] == "F" and e not in raw.sweeps:  # one sweep's frees: in allocation order
            if aid < out[-1][2]:
                raise Mismatch("frees out of order")
            out[-1][1].append(target)
            out[-1] = ("F", out[-1][1], aid)
        else:
            out.append(("F", [target], aid))
    return [("F", ev[1], [len(occs) for occs in segs.runs]) if ev[0] == "F" else ev for ev in out]


def _batch(instances: Sequence[tuple[list[tuple[Any, ...]], list[int], int]]) -> tuple[Any, ...]:
    """One sweep's frees in a gap as ``('F', fixed names, ranges)``.

    The fixed names are the same allocations at every number of steps; a range (run, j, first, last counted from
    the end) names the j-th allocation of a run of steps' occurrences freed together (their number grows with the
    steps).
    """
    (ta, na, ka), (tb, nb, kb) = instances[0], instances[-1]
    fixed_a = sorted((t for t in ta if t[0] != "run"), key=str)
    if fixed_a != sorted((t for t in tb if t[0] != "run"), key=str):
        raise Mismatch("a gap's frees")
    fixed: list[tuple[Any, ...]] = list(fixed_a)
    ranges = []
    groups: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for targets, side in ((ta, 0), (tb, 1)):
        for t in targets:
            if t[0] == "run":
                groups.setdefault((t[1], t[3]), ([], []))[side].append(t[2])
    for (r, j), (oa, ob) in groups.items():
        oa.sort()
        ob.sort()
        if oa and ob and oa == list(range(oa[0], oa[-1] + 1)) and ob == list(range(ob[0], ob[-1] + 1)) \
                and oa[0] == ob[0] and na[r] - oa[-1] == nb[r] - ob[-1] and len(oa) != len(ob):
            ranges.append((r, j, oa[0], na[r] - oa[-1]))
            continue
        if len(oa) != len(ob):
            raise Mismatch("a gap's frees")
        for o2a, o2b in zip(oa, ob, strict=True):
            reps = set(_reps(("run", r, o2a, j), 0, ka)) & set(_reps(("run", r, o2b, j), 0, kb))
            if not reps:
                raise Mismatch("a gap's free")
            fixed.append(sorted(reps)[0])
    return ("F", fixed, ranges)


def _merge(seqs: Sequence[tuple[list[tuple[Any, ...]], int]], k0: int) -> list[tuple[Any, ...]]:
    """One segment's template from its instances ``(events, steps of their trace)``; sizes affine in the steps."""
    first, _ = seqs[0]
    if any(len(s) != len(first) for s, _ in seqs):
        raise Mismatch("segment length")
    out: list[tuple[Any, ...]] = []
    for i, ev in enumerate(first):
        if ev[0] == "F":
            if any(s[i][0] != "F" for s, _ in seqs):
                raise Mismatch("free")
            out.append(_batch([(s[i][1], s[i][2], k) for s, k in seqs]))
        elif ev[0] == "a":
            sizes = {(k, s[i][1]) for s, k in seqs}
            if any(s[i][0] != "a" or s[i][2] != ev[2] for s, _ in seqs):
                raise Mismatch("allocation")
            by_k = dict(sizes)
            if len(by_k) != len(sizes):
                raise Mismatch("size within a trace")
            ks = sorted(by_k)
            slope = 0
            if len(ks) > 1:
                d_size, d_k = by_k[ks[-1]] - by_k[ks[0]], ks[-1] - ks[0]
                if d_size % d_k:
                    raise Mismatch("size not affine")
                slope = d_size // d_k
            out.append(("a", by_k[ks[0]] + slope * (k0 - ks[0]), slope, ev[2]))
        else:
            common = set(ev[1])
            for s, _ in seqs:
                if s[i][0] != "f":
                    raise Mismatch("free")
                common &= set(s[i][1])
            if not common:
                raise Mismatch("free target")
            out.append(("f", next(rep for rep in ev[1] if rep in common)))
    return out


def template(raws: Sequence[RawStep]) -> Template:
    """The generator the traces ``raws`` (at two numbers of steps) agree on."""
    (ra, rb), (ka, kb) = ([_runs(raw) for raw in raws], [raw.steps for raw in raws])
    if [key for key, _ in ra] != [key for key, _ in rb]:
        raise Mismatch("runs")
    # the runs that are cut: their marks grow by the same number per time step (a first step's backward may
    # have none: no gradient for a zero initial state)
    per_step: dict[int, int] = {}
    for r, ((_, ma), (_, mb)) in enumerate(zip(ra, rb, strict=True)):
        grow, rest = divmod(len(mb) - len(ma), kb - ka)
        if rest or grow < 0:
            raise Mismatch("marks per step")
        if grow:
            per_step[r] = grow
    k0 = raws[0].steps
    views = []
    for raw in raws:
        segs = _segments(raw, per_step)
        views.append((raw, segs, _addresses(raw, segs)))
    segs0 = views[0][1]
    if any(v[1].parts != segs0.parts for v in views):
        raise Mismatch("segments")
    gaps = [_merge([(_describe(raw, s, w, s.gaps[i], 0), raw.steps) for raw, s, w in views], k0)
            for i in range(len(segs0.gaps))]
    heads, middle, tails = [], [], []
    for r in range(len(segs0.runs)):
        # the first steps or the last ones may differ (no gradient for the initial state, autocast's weight casts,
        # a buffer a later step adds to, another layer's tensor freed at a step from the end): each traced as it
        # came; the steps between them are the one template
        for h, tl in _ENDS:
            try:
                head = [_merge([(_describe(raw, s, w, s.runs[r][o - 1], o), raw.steps) for raw, s, w in views], k0)
                        for o in range(1, h + 1)]
                tail = [_merge([(_describe(raw, s, w, s.runs[r][len(s.runs[r]) - e - 1], len(s.runs[r]) - e),
                                 raw.steps) for raw, s, w in views], k0) for e in reversed(range(tl))]
                body = _merge([(_describe(raw, s, w, s.runs[r][o - 1], o), raw.steps)
                               for raw, s, w in views for o in range(h + 1, len(s.runs[r]) - tl + 1)], k0)
                break
            except Mismatch:
                if (h, tl) == _ENDS[-1]:
                    raise
        heads.append(head)
        middle.append(body)
        tails.append(tail)
    return Template(segs0.parts, gaps, heads, middle, tails, k0, [len(occs) for occs in segs0.runs])


def _made(made: dict[tuple[Any, ...], tuple[int, int]], name: tuple[Any, ...]) -> tuple[int, int]:
    """(alloc id, size) of the allocation ``name`` names (size -1: made before the step, a parameter or input)."""
    if name[0] == "pre":
        return name[1], -1
    got = made.get(name)
    if got is None:
        raise Mismatch("a free of an allocation not made")
    return got


def generate(t: Template, k: int, first_id: int) -> tuple[list[tuple[str, int, int]], dict[int, int]]:
    """The step's events at ``k`` steps per cut call, alloc ids from ``first_id``; and their flags."""
    events: list[tuple[str, int, int]] = []
    flags: dict[int, int] = {}
    made: dict[tuple[Any, ...], tuple[int, int]] = {}  # address -> (alloc id, size)
    next_id = first_id

    def emit(evs: list[tuple[Any, ...]], at: tuple[Any, ...], o: int) -> None:
        nonlocal next_id
        j = 0
        for ev in evs:
            if ev[0] == "a":
                size = ev[1] + ev[2] * (k - t.k0)
                made[(*at, j)] = (next_id, size)
                if ev[3]:
                    flags[next_id] = ev[3]
                events.append(("a", next_id, size))
                next_id += 1
                j += 1
            elif ev[0] == "F":
                names = [_resolve(rep, 0, k) for rep in ev[1]]
                names += [("run", r, o2, j) for r, j, lo, hi in ev[2]
                          for o2 in range(lo, t.occurrences[r] + k - t.k0 - hi + 1)]
                for aid, size in sorted(_made(made, name) for name in names):
                    events.append(("f", aid, size))
            else:
                aid, size = _made(made, _resolve(ev[1], o, k))
                events.append(("f", aid, size))

    for kind, i in t.parts:
        if kind == "gap":
            emit(t.gaps[i], ("gap", i), 0)
        else:
            for o, head in enumerate(t.heads[i], start=1):
                emit(head, ("run", i, o), o)
            n = t.occurrences[i] + k - t.k0
            for o in range(len(t.heads[i]) + 1, n - len(t.tails[i]) + 1):
                emit(t.middle[i], ("run", i, o), o)
            for o, tail in enumerate(t.tails[i], start=n - len(t.tails[i]) + 1):
                emit(tail, ("run", i, o), o)
    return events, flags
