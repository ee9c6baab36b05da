"""``specs list | show | compare``: browse the catalog."""

from __future__ import annotations

import argparse
from typing import Any

from advisor.catalog import SEGMENTS, THROUGHPUT_FIELDS, VENDORS, GpuSpec, find_gpu, load_specs
from advisor.commands._output import add_json_flag, add_specs_dir_flag, print_json, stdout_console, table
from advisor.errors import AdvisorError

SORTABLE = ("id", "name", "vendor", "segment", "release_year", "memory_gb", "memory_bandwidth_gbs",
            *THROUGHPUT_FIELDS, "tdp_w", "price_usd", "cloud_usd_per_hour")
COMPARE_FIELDS = ("memory_gb", "memory_bandwidth_gbs", "fp32_tflops", "tf32_tflops", "fp16_tflops",
                  "bf16_tflops", "fp8_tflops", "int8_tops", "tdp_w", "price_usd", "cloud_usd_per_hour")


def add_parser(subparsers: Any) -> None:
    """Register ``specs`` and its sub-commands."""
    p = subparsers.add_parser("specs", help="browse the GPU specs catalog",
                              description="Browse the GPU specs catalog (dense figures, each with its source).")
    sub = p.add_subparsers(dest="specs_command", metavar="SUBCOMMAND", required=True)

    lst = sub.add_parser("list", help="list cards", description="List catalog cards, filtered and sorted.")
    lst.add_argument("--vendor", choices=VENDORS, help="only this vendor")
    lst.add_argument("--segment", choices=SEGMENTS, help="only this segment")
    lst.add_argument("--min-memory-gb", type=float, metavar="GB", help="only cards with at least this much memory")
    lst.add_argument("--sort", default="segment", choices=SORTABLE, metavar="FIELD",
                     help=f"sort by this field (numbers descending); one of: {', '.join(SORTABLE)}")
    add_specs_dir_flag(lst)
    add_json_flag(lst)
    lst.set_defaults(func=run_list)

    show = sub.add_parser("show", help="one card in full",
                          description="Show one card with every figure and its source.")
    show.add_argument("name", help="catalog id, marketing name or NVML name")
    add_specs_dir_flag(show)
    add_json_flag(show)
    show.set_defaults(func=run_show)

    cmp_ = sub.add_parser("compare", help="cards side by side",
                          description="Compare cards side by side, with ratios to the first.")
    cmp_.add_argument("names", nargs="+", metavar="NAME", help="two or more cards")
    add_specs_dir_flag(cmp_)
    add_json_flag(cmp_)
    cmp_.set_defaults(func=run_compare)


def _specs(args: argparse.Namespace) -> tuple[GpuSpec, ...]:
    return load_specs(extra_dirs=args.specs_dir) if args.specs_dir else load_specs()


def _fmt(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def run_list(args: argparse.Namespace) -> int:
    """``specs list``."""
    if args.min_memory_gb is not None and args.min_memory_gb < 0:
        raise AdvisorError(f"--min-memory-gb must be >= 0, got {args.min_memory_gb}")
    cards = [s for s in _specs(args)
             if (args.vendor is None or s.vendor == args.vendor)
             and (args.segment is None or s.segment == args.segment)
             and (args.min_memory_gb is None or s.memory_gb >= args.min_memory_gb)]
    if args.sort != "segment":
        numeric = args.sort not in ("id", "name", "vendor")
        present = [s for s in cards if getattr(s, args.sort) is not None]
        missing = [s for s in cards if getattr(s, args.sort) is None]
        cards = sorted(present, key=lambda s: getattr(s, args.sort), reverse=numeric) + missing
    if args.json:
        print_json({"count": len(cards), "cards": [c.to_dict() for c in cards]})
        return 0
    cols = ("id", "name", "segment", "arch", "year", "mem GB", "BW GB/s", "FP32", "BF16", "FP16", "FP8",
            "TDP W", "price $")
    rows = [(c.id, c.name, c.segment, c.architecture, c.release_year, _fmt(c.memory_gb),
             _fmt(c.memory_bandwidth_gbs), _fmt(c.fp32_tflops), _fmt(c.bf16_tflops), _fmt(c.fp16_tflops),
             _fmt(c.fp8_tflops), _fmt(c.tdp_w), _fmt(c.price_usd)) for c in cards]
    console = stdout_console()
    console.print(table(f"{len(cards)} cards (TFLOP/s dense, FP32 accumulate)", cols, rows,
                        right_align=cols[4:]))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """``specs show NAME``."""
    spec = find_gpu(args.name, _specs(args))
    if args.json:
        print_json(spec.to_dict())
        return 0
    d = spec.to_dict()
    rows = []
    for key, value in d.items():
        if key in ("sources", "source", "aliases", "interconnect") or value is None:
            continue
        rows.append((key, value, spec.sources.get(key, "")))
    for key, value in d["interconnect"].items():
        if value is not None:
            rows.append((f"interconnect.{key}", value, spec.sources.get("interconnect", "")))
    if spec.aliases:
        rows.append(("aliases", ", ".join(spec.aliases), ""))
    console = stdout_console()
    console.print(table(f"{spec.name} ({spec.id})", ("field", "value", "source (if not the record's)"), rows))
    console.print(f"source: {spec.source}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """``specs compare NAME NAME...``."""
    if len(args.names) < 2:
        raise AdvisorError("specs compare needs at least two cards", hint="e.g. specs compare 'RTX 4090' 'A100 80GB'")
    specs = _specs(args)
    cards = [find_gpu(n, specs) for n in args.names]
    base = cards[0]

    def ratio(card: GpuSpec, key: str) -> float | None:
        a, b = getattr(card, key), getattr(base, key)
        return None if a is None or not b else round(a / b, 3)

    if args.json:
        print_json({"base": base.id, "fields": list(COMPARE_FIELDS),
                    "cards": [{"id": c.id, "name": c.name,
                               "values": {k: getattr(c, k) for k in COMPARE_FIELDS},
                               "ratio_to_base": {k: ratio(c, k) for k in COMPARE_FIELDS}} for c in cards]})
        return 0
    cols = ("field", *(c.name for c in cards))
    rows = []
    for key in COMPARE_FIELDS:
        cells: list[str | None] = [_fmt(getattr(base, key))]
        for c in cards[1:]:
            v, r = getattr(c, key), ratio(c, key)
            cells.append(None if v is None else f"{_fmt(v)} (x{r})" if r is not None else _fmt(v))
        rows.append((key, *cells))
    stdout_console().print(table(f"compared to {base.name}", cols, rows, right_align=cols[1:]))
    return 0
