"""``recommend``: which cards, and how many, for a workload, ranked by time, cost or energy."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from advisor.catalog import SEGMENTS, VENDORS
from advisor.commands._output import (
    add_assumptions_flag,
    add_json_flag,
    add_specs_dir_flag,
    fit_table,
    print_assumptions,
    print_json,
    stderr_console,
    stdout_console,
    table,
    tracing_spinner,
)
from advisor.commands.estimate import (
    _positive_float,
    _positive_int,
    add_workload_args,
    ignored_flags,
    workload_kwargs,
)
from advisor.errors import AdvisorError
from advisor.ranking import TIE_BREAKS
from advisor.recommender import DEFAULT_MAX_GPUS, OBJECTIVE_ALIASES, OBJECTIVES  # light: no torch, no pandas

if TYPE_CHECKING:
    from advisor.recommendation import Candidate


def add_parser(subparsers: Any) -> None:
    """Register ``recommend``."""
    p = subparsers.add_parser(
        "recommend", help="rank cards and card counts for a workload",
        description="Rank every catalog card (and your own) at 1, 2, 4, ... up to --max-gpus cards by the job's "
                    "time (to train, or to serve with --mode infer), cost or energy; every rejected card x count "
                    "says why. Exits 1 when no card qualifies (the best partial answer is still printed).")
    add_workload_args(p)
    p.add_argument("--max-gpus", type=_positive_int, default=DEFAULT_MAX_GPUS, metavar="N",
                   help=f"largest card count considered (powers of two up to N, plus N; default {DEFAULT_MAX_GPUS})")
    p.add_argument("--budget-usd", type=_positive_float, metavar="X",
                   help="drop candidates that cost more than this: the job at cloud rates (the cards' price "
                        "with --objective cost-buy)")
    p.add_argument("--objective", choices=(*OBJECTIVES, *OBJECTIVE_ALIASES), default="time", metavar="OBJ",
                   help="time: the job's time (to train, or to serve with --mode infer) at the effective rate "
                        "(default); cost-cloud: $ for this job at "
                        "on-demand rates; cost-buy: purchase price of the cards; energy: kWh of the job "
                        "('cost' is the deprecated name of cost-cloud)")
    p.add_argument("--then", choices=TIE_BREAKS, metavar="T",
                   help="what orders rows that tie on the objective, e.g. every card capped by the same data "
                        "loader: gpu-speed (the GPUs' own rate; the default for --objective time), time (the "
                        "default for the others), cost-cloud, cost-buy or energy")
    p.add_argument("--vendor", choices=VENDORS, help="only this vendor")
    p.add_argument("--segment", choices=SEGMENTS, help="only this segment")
    p.add_argument("--gpus", nargs="+", metavar="G", help="only these cards (names or ids)")
    p.add_argument("--top", type=_positive_int, default=15, metavar="K", help="rows shown (default 15)")
    p.add_argument("--show-rejected", action="store_true", help="also list rejected cards and why")
    add_specs_dir_flag(p)
    add_assumptions_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _gib(n: float) -> str:
    return f"{n / 1024**3:,.1f}"


_LIMITERS = {"host": "host dispatch", "input": "input", "communication": "communication"}


def _samples(rate: float) -> str:
    """Samples per second as a reader wants it: thousands separated, three significant digits below 100."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def _limiter(name: str | None) -> str | None:
    return None if name is None else _LIMITERS.get(name, name)


def run(args: argparse.Namespace) -> int:
    """``recommend``."""
    from advisor.recommender import RecommendRequest, recommend_request

    kwargs = workload_kwargs(args)
    specs_dir = args.specs_dir[0] if args.specs_dir else None
    if args.specs_dir and len(args.specs_dir) > 1:
        raise AdvisorError("recommend takes one --specs-dir", hint="put your spec files in one directory")
    with tracing_spinner():
        rec = recommend_request(RecommendRequest(
            model=args.model, max_gpus=args.max_gpus, objective=args.objective, budget_usd=args.budget_usd,
            vendor=args.vendor, segment=args.segment, gpus=args.gpus, specs_dir=specs_dir, then=args.then, **kwargs))
    for warning in ignored_flags(args, num_gpus=1 if args.max_gpus == 1 else None):
        stderr_console().print(warning, markup=False)
    if args.objective in OBJECTIVE_ALIASES:
        stderr_console().print(f"note: --objective {args.objective} is deprecated; it means "
                               f"{OBJECTIVE_ALIASES[args.objective]} (use cost-buy for the cards' price)")
    # Exit 1 when no card qualifies: the answer (and its best partial answer) is still printed.
    status = 0 if rec.rows else 1
    if args.json:
        print_json(rec.to_dict())
        return status
    console = stdout_console()
    w = rec.workload
    shape = f"seq {w['seq_len']}" if w.get("seq_len") else f"image {w['image_size']}" if w.get("image_size") else ""
    console.print(f"[bold]{rec.model}[/bold] {w['mode']}, global batch {w['batch_size']} {shape}, "
                  f"{w['precision']}; ranked by [bold]{rec.objective}[/bold]; job: {rec.job['description']}")
    for line in rec.summary:  # what decides (a tie and what would break it), the cheapest cards, price dates
        console.print(f"[bold]>[/bold] {line}")
    # what decides leads: time, what limits it and the costs, then the card's detail
    time_words = rec.job["time_words"]  # "time to train", or "time to serve" for an inference job
    cols = ("#", "card", "GPUs", time_words, "limited by", "cloud $", "buy $", "GiB/GPU (free)", "step",
            "samples/s (GPU alone)", "break-even", "energy")
    rows = [_row(r, args) for r in rec.rows[: args.top]]
    if rows:
        console.print(table(f"{len(rec.rows)} candidates (top {min(args.top, len(rec.rows))})", cols, rows,
                            right_align=("#", "GPUs", "GiB/GPU (free)", "step", "samples/s (GPU alone)",
                                         time_words, "cloud $", "buy $", "break-even", "energy")))
    else:
        console.print("[red]no card qualifies[/red]")
    starved = sum(r.input_bound for r in rec.rows[: args.top])
    if starved:
        console.print(f"{starved} of these are input-bound: the data loader (--loader-samples-per-s, or the stated "
                      f"CPU-decode rate) or the host->device copies set their pace, and {time_words} runs at it; "
                      "`estimate ... --json` gives time.input_advice")
    if rec.uncertainty:
        console.print(rec.uncertainty)
    if rec.partial:
        console.print(f"[bold]best partial answer:[/bold] {rec.partial}")
    if rec.fit_options is not None and rec.fit_options.options:
        console.print(fit_table(rec.fit_options))
    by_code: dict[str, int] = {}
    for x in rec.rejected:
        code = "not_sold" if x.code == "no_price" and _not_sold(x.gpu_id, args) else x.code
        by_code[code] = by_code.get(code, 0) + 1
    if by_code:
        console.print("rejected: " + ", ".join(f"{n} {code.replace('_', ' ')}" for code, n in sorted(by_code.items()))
                      + ("" if args.show_rejected else " (--show-rejected lists them)"))
    if args.show_rejected and rec.rejected:
        console.print(table("rejected", ("card", "GPUs", "why"),
                            [(x.gpu_name, x.num_gpus, x.reason) for x in rec.rejected]))
    best = rec.best
    print_assumptions(console, rec.assumptions, args.assumptions, limiter=best.limiter if best else None,
                      fits=best is not None)
    return status


def _row(r: Candidate, args: argparse.Namespace) -> tuple[Any, ...]:
    """One ranked row's cells, in the table's column order."""
    from advisor.units import format_energy, format_hours, format_seconds

    frac = r.headroom_fraction
    card = r.gpu_name + (f" ({r.precision})" if r.precision else "")
    return (r.rank, card, f"{r.num_gpus} {r.parallelism}" if r.parallelism else r.num_gpus,
            format_seconds(r.time_to_train_s), _limiter(r.limiter),
            _cloud_cell(r.gpu_id, r.cost_cloud_usd, args),
            _buy_cell(r.cost_buy_usd, r.price_kind),
            _gib(r.memory_per_gpu_bytes) + ("" if frac is None else f" ({100 * frac:.0f}%)"),
            format_seconds(r.step_s),
            _samples(r.effective_samples_per_s) + (f" ({_samples(r.samples_per_s)})"
                                                   if r.samples_per_s > r.effective_samples_per_s else ""),
            None if r.break_even_hours is None else format_hours(r.break_even_hours),
            format_energy(r.energy_kwh))


def _buy_cell(cost: float | None, price_kind: str | None) -> str:
    """The purchase cell: the cards' price, "not sold" (the catalog says nobody sells it) or "no price" (none found)."""
    from advisor.units import format_usd

    if cost is not None:
        return format_usd(cost)
    return "not sold" if price_kind == "not sold" else "no price"


def _not_sold(gpu_id: str, args: Any) -> bool:
    """Whether the catalog says the card is not sold (a ``no_price`` rejection of ``cost-buy`` then says so)."""
    from advisor.catalog import get_gpu

    specs_dir = args.specs_dir[0] if getattr(args, "specs_dir", None) else None
    return get_gpu(gpu_id, specs_dir=specs_dir).price_kind == "not sold"


def _cloud_cell(gpu_id: str, cost: float | None, args: Any) -> str:
    """The cloud-cost cell: the cost, "not rentable" or "no price".

    "not rentable" where the catalog says no public on-demand offer exists, "no price" where nobody has
    found one yet.
    """
    from advisor.catalog import get_gpu
    from advisor.units import format_usd

    if cost is not None:
        return format_usd(cost)
    rentable = get_gpu(gpu_id, specs_dir=getattr(args, "specs_dir", None)).cloud_rentable
    return "not rentable" if rentable is False else "no price"
