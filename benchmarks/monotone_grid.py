"""Cliffs in step time: where one more sample, or a longer sequence, makes the estimated step faster.

    python benchmarks/monotone_grid.py                      # the full grid, a summary and the worst cases
    python benchmarks/monotone_grid.py --json out.json      # every violation to a file
    python benchmarks/monotone_grid.py --presets gpt2 --cards a100-sxm4-80gb,gtx-1080

A step never gets cheaper when the work grows: one more sample, or a longer sequence, adds FLOPs and bytes to
every op, so a faster estimate is a pricing cliff (an alignment rule, a tile count, a kernel switch priced
inconsistently), not physics.  The grid is issue 29's: the LLM presets (``PRESETS``) x every catalog card x
train, infer (one forward over the sequence, ``gen_len`` 0) and generation (``GEN_LEN`` tokens after the prefill)
x every precision the card runs x batch 1-64 at each of ``BATCH_SEQ_LENS``, plus sequence-length sweeps
(``SEQ_LENS``) at each of ``SEQ_BATCHES``.  A violation is a step that ends ``TOLERANCE`` or more below its
neighbour's with less work.  Estimates are the spec sheet's (no calibration), on one GPU, eager runtime.
tests/test_monotone.py runs ``sweep`` on a sample of this grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRESETS: tuple[str, ...] = ("gpt-j-6b", "llama-3-8b", "gpt2")
#: (mode, gen_len): a training step, a scoring forward (no generation) and a generation request.
SCENARIOS: tuple[tuple[str, int | None], ...] = (("train", None), ("infer", 0), ("infer", 128))
GEN_LEN = 128
BATCHES: tuple[int, ...] = tuple(range(1, 65))
#: Sequence lengths of the batch sweeps: one token (decode-like GEMMs, M = batch) and one off every 16-byte grid.
BATCH_SEQ_LENS: tuple[int, ...] = (1, 100)
#: Sequence lengths of the sequence sweeps: every length to 17, then both sides of each power of two (the
#: fused-attention blocks and the 16-byte grid) up to 8192 and a few lengths between (lengths past a model's
#: positions are refused and skipped).
SEQ_LENS: tuple[int, ...] = tuple(sorted({*range(1, 18), *(2**e + d for e in range(5, 14) for d in (-1, 0, 1)),
                                          100, 200, 300, 1000, 3000}))
SEQ_BATCHES: tuple[int, ...] = (1, 3)
TOLERANCE = 0.03


@dataclass(frozen=True, slots=True)
class Violation:
    """One step that got faster with more work: ``after_s`` is ``drop`` below ``before_s``."""

    preset: str
    card: str
    mode: str
    gen_len: int | None
    precision: str
    axis: str  # "batch" or "seq_len": what grew
    fixed: int  # the other one's value
    before: int
    after: int
    before_s: float
    after_s: float

    @property
    def drop(self) -> float:
        """How much faster the larger step is, as a fraction of the smaller's time."""
        return 1.0 - self.after_s / self.before_s


def _precisions(mode: str) -> tuple[str, ...]:
    from advisor.workload.options import PRECISIONS

    # fp8 / int8 / int4 are inference (and quantized fine-tuning) precisions: training refuses them
    return PRECISIONS if mode == "infer" else tuple(p for p in PRECISIONS if p not in ("fp8", "int8", "int4"))


def _series(preset: str, cards: Sequence[object], mode: str, gen_len: int | None, precision: str, axis: str,
            fixed: int, points: Sequence[int]) -> Iterator[tuple[str, list[tuple[int, float]]]]:
    """Per card, (point, step seconds) along ``axis`` (points the workload or card refuses are skipped)."""
    from advisor.errors import AdvisorError
    from advisor.estimator import build_workload, estimate_workload, prepare_workload
    from advisor.workload.options import WorkloadOptions

    opt = None if mode == "infer" else "adamw"
    per_card: dict[str, list[tuple[int, float]]] = {getattr(c, "id"): [] for c in cards}  # noqa: B009
    if axis == "batch":
        try:
            w = build_workload(preset, WorkloadOptions(batch_size=1, seq_len=fixed, precision=precision, mode=mode,
                                                       optimizer=opt, gen_len=gen_len))
        except AdvisorError:
            return
        prep = prepare_workload(w)
        jobs: Iterable[tuple[int, object]] = ((b, prep) for b in points)
    else:
        def _built() -> Iterator[tuple[int, object]]:
            for s in points:
                try:
                    yield s, prepare_workload(build_workload(preset, WorkloadOptions(
                        batch_size=fixed, seq_len=s, precision=precision, mode=mode, optimizer=opt,
                        gen_len=gen_len)))
                except AdvisorError:
                    continue
        jobs = _built()
    for x, prep in jobs:
        for card in cards:
            try:
                e = estimate_workload(prep, card, batch_size=x if axis == "batch" else fixed,  # type: ignore[arg-type]
                                      calibration=None)
            except AdvisorError:
                continue
            per_card[getattr(card, "id")].append((x, e.time.step_s))  # noqa: B009
    yield from per_card.items()


def violations_of(series: Sequence[tuple[int, float]], tolerance: float = TOLERANCE) -> list[tuple[int, int, float,
                                                                                                     float]]:
    """(before, after, before_s, after_s) of each neighbour pair whose larger point runs ``tolerance`` faster."""
    return [(a, b, ta, tb) for (a, ta), (b, tb) in itertools.pairwise(series)
            if tb < ta * (1.0 - tolerance)]


def sweep(presets: Sequence[str] = PRESETS, cards: Sequence[object] | None = None,
          scenarios: Sequence[tuple[str, int | None]] = SCENARIOS, precisions: Sequence[str] | None = None,
          batches: Sequence[int] = BATCHES, batch_seq_lens: Sequence[int] = BATCH_SEQ_LENS,
          seq_lens: Sequence[int] = SEQ_LENS, seq_batches: Sequence[int] = SEQ_BATCHES,
          tolerance: float = TOLERANCE) -> tuple[int, list[Violation]]:
    """(estimates made, violations) over the grid (``cards``: ``GpuSpec`` objects, default the catalog)."""
    from advisor.catalog import load_specs

    cards = list(load_specs()) if cards is None else list(cards)
    count = 0
    found: list[Violation] = []
    for preset in presets:
        for mode, gen_len in scenarios:
            for precision in precisions or _precisions(mode):
                if precision not in _precisions(mode):
                    continue
                plan = [("batch", s, batches) for s in batch_seq_lens] + [("seq_len", b, seq_lens)
                                                                        for b in seq_batches]
                for axis, fixed, points in plan:
                    for card, series in _series(preset, cards, mode, gen_len, precision, axis, fixed, points):
                        count += len(series)
                        found += [Violation(preset, card, mode, gen_len, precision, axis, fixed, a, b, ta, tb)
                                  for a, b, ta, tb in violations_of(series, tolerance)]
    return count, found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grid; print the count of estimates and violations, by mechanism-revealing keys, and the worst."""
    from advisor.catalog import get_gpu, load_specs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--cards", default="", help="comma-separated card ids (default: the whole catalog)")
    parser.add_argument("--precisions", default="", help="comma-separated (default: every one the mode takes)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--worst", type=int, default=15, help="how many of the worst violations to print")
    parser.add_argument("--json", type=Path, help="write every violation to this file")
    args = parser.parse_args(argv)
    cards = [get_gpu(c) for c in args.cards.split(",")] if args.cards else list(load_specs())
    start = time.perf_counter()
    count, found = sweep(args.presets.split(","), cards,
                         precisions=args.precisions.split(",") if args.precisions else None,
                         tolerance=args.tolerance)
    took = time.perf_counter() - start
    print(f"{count} estimates in {took:.0f} s; {len(found)} steps at least {args.tolerance:.0%} faster than their "
          f"neighbour with less work")
    for key in ("axis", "preset", "mode", "precision", "card"):
        tally = Counter(str(getattr(v, key)) for v in found)
        if tally:
            print(f"  by {key}: " + ", ".join(f"{k} {n}" for k, n in tally.most_common(12)))
    for v in sorted(found, key=lambda v: -v.drop)[:args.worst]:
        print(f"  {v.drop:6.1%} {v.preset} {v.card} {v.mode} gen_len={v.gen_len} {v.precision} {v.axis} "
              f"{v.before}->{v.after} (other {v.fixed}): {v.before_s:.4g} s -> {v.after_s:.4g} s")
    if args.json:
        args.json.write_text(json.dumps({"estimates": count, "tolerance": args.tolerance,
                                         "violations": [asdict(v) | {"drop": v.drop} for v in found]}, indent=1))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
