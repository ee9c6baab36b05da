"""``probe``: inventory, health and measured speed of this machine's devices."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from advisor.commands._output import add_json_flag, print_json, stderr_console, stdout_console, table
from advisor.errors import AdvisorError, StoreError
from advisor.probing.kernels import KERNEL_GROUPS

KERNEL_CHOICES = ",".join(KERNEL_GROUPS)


def add_parser(subparsers: Any) -> None:
    """Register ``probe``."""
    p = subparsers.add_parser(
        "probe", help="inventory, health and measured speed of the local GPUs (or the CPU)",
        description="List the devices in this machine with their health (PCIe link, power, clocks, "
                    "throttling, ECC, processes), run timed kernels (matmul, conv2d, memory bandwidth, "
                    "host<->device transfers, launch overhead) and set each result against the card's "
                    "spec. Without a GPU it probes the CPU and says why NVML is unavailable.")
    p.add_argument("--quick", action="store_true", help="fewer sizes and precisions (about 15 s per GPU)")
    p.add_argument("--device", default="all", metavar="N|all", help="device index to probe, or 'all' (default)")
    p.add_argument("--kernels", default=None, metavar="LIST",
                   help=f"comma-separated kernel groups from {KERNEL_CHOICES} (default: all); "
                        "'none' for inventory only")
    p.add_argument("--out", metavar="FILE", help="also write the JSON document to FILE")
    p.add_argument("--no-save", action="store_true", help="do not save the result in the history store")
    p.add_argument("--max-seconds", type=float, metavar="S", help="wall-clock budget; later kernels are skipped")
    p.add_argument("--max-memory-fraction", type=float, default=0.9, metavar="F",
                   help="most of a device's free memory one kernel may use (0..1, default 0.9)")
    p.add_argument("--collectives", action="store_true",
                   help="measure multi-GPU collectives (all-reduce, ...) instead of single-device kernels")
    p.add_argument("--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
                   help="live view instead of a probe: utilisation, memory, power, clocks, clock events and "
                        "processes of every device, refreshed every SECONDS (default 2) until Ctrl-C")
    p.add_argument("--count", type=int, default=None, metavar="N", help="with --watch: stop after N refreshes")
    add_json_flag(p)
    p.set_defaults(func=run_probe)


def _esc(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # Device names, hints and errors may contain [brackets] that rich would read as markup.
    from rich.markup import escape

    return [tuple(escape(c) if isinstance(c, str) else c for c in row) for row in rows]


def _fmt(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value:,.{digits}f}"


def _gib(n: int | None) -> str | None:
    return None if n is None else f"{n / 2**30:,.1f}"


def _inventory_rows(result: Any) -> list[tuple[Any, ...]]:
    rows = []
    for d in result.devices:
        if d.error:
            rows.append((d.index, f"FAILED: {d.error}", *([None] * 8)))
            continue
        pcie = None if d.pcie_gen is None else (f"gen{d.pcie_gen}x{d.pcie_width} "
                                                 f"(max gen{d.pcie_gen_max}x{d.pcie_width_max})")
        power = None if d.power_draw_w is None else (f"{d.power_draw_w:.0f}/{_fmt(d.power_limit_w, 0)}"
                                                     f" (default {_fmt(d.default_power_limit_w, 0)})")
        mem = None if d.memory_total_bytes is None else \
            f"{_gib(d.memory_used_bytes) or '?'}/{_gib(d.memory_total_bytes)}"
        rows.append((d.index, d.name, d.catalog_id, mem, d.compute_capability or d.architecture,
                     d.driver_version, pcie, power, d.temperature_c,
                     d.cpu_cores if d.kind == "cpu" else d.utilization_gpu_pct))
    return rows


def _health_rows(result: Any) -> list[tuple[Any, ...]]:
    rows = []
    for d in result.devices:
        if d.error or d.kind == "cpu":
            continue
        ecc = None if d.ecc_enabled is None else ("on" if d.ecc_enabled else "off")
        procs = None if d.processes is None else ", ".join(f"{p.name or '?'}({p.pid})" for p in d.processes) or "none"
        links = None if d.nvlinks is None else f"{sum(n.active for n in d.nvlinks)}/{len(d.nvlinks)} up"
        rows.append((d.index, ecc, d.ecc_uncorrected_errors, d.retired_pages, d.mig_enabled,
                     None if d.throttle_reasons is None else ", ".join(d.throttle_reasons) or "none",
                     _fmt(d.sm_clock_mhz, 0), _fmt(d.sm_clock_max_mhz, 0), links, procs))
    return rows


def _kernel_rows(result: Any) -> list[tuple[Any, ...]]:
    rows = []
    for k in result.kernels:
        m = k.measurement
        status = (k.skipped and f"skipped: {k.skipped}") or (k.error and f"error: {k.error}")
        if not status and m is not None:
            status = "ok" if m.trustworthy else f"noisy ({m.spread:.0%} IQR)"
        rows.append((k.device_index, k.name, k.precision, k.shape,
                     None if k.value is None else f"{k.value:,.3g} {k.unit}",
                     None if k.fraction_of_peak is None else f"{k.fraction_of_peak:.0%} of {k.spec_peak:,.4g}",
                     status))
    return rows


def _print_text(result: Any) -> None:
    console = stdout_console()
    console.print(table(f"devices (backend: {result.backend})",
                        ("#", "name", "catalog id", "mem GiB used/total", "cc/arch", "driver", "PCIe",
                         "power W now/limit", "temp C", "util % / cores"), _esc(_inventory_rows(result))))
    health = _health_rows(result)
    if health:
        console.print(table("health", ("#", "ECC", "ECC uncorr.", "retired pages", "MIG", "clock events",
                                       "SM MHz", "SM max MHz", "NVLink", "processes"), _esc(health)))
    if result.kernels:
        console.print(table("kernels (median; % of the card's spec peak)",
                            ("#", "kernel", "precision", "shape", "achieved", "of spec", "status"),
                            _esc(_kernel_rows(result)), right_align=("achieved", "of spec")))
    console.print(table("verdicts", ("severity", "#", "finding", "evidence"),
                        _esc([(v.severity, v.device_index, v.message, v.evidence) for v in result.verdicts])))
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    eff = result.efficiencies(result.devices[0].index) if result.devices else {}
    if eff:
        console.print("efficiencies: " + ", ".join(f"{k}={v:.3g}" for k, v in eff.items()))
    console.print(f"took {result.elapsed_s:.1f} s")


def run_probe(args: argparse.Namespace) -> int:
    """``probe``."""
    if args.watch is not None:
        from advisor.commands._watch import run_watch

        return run_watch(args)
    if args.collectives:
        return _run_collectives(args)
    if not 0 < args.max_memory_fraction <= 1:  # NaN fails this too
        raise AdvisorError(f"--max-memory-fraction must be in (0, 1], got {args.max_memory_fraction}",
                           hint="e.g. --max-memory-fraction 0.9 (the default)")
    if args.max_seconds is not None and not args.max_seconds > 0:  # `not > 0`: NaN is no budget either
        raise AdvisorError(f"--max-seconds must be > 0, got {args.max_seconds}",
                           hint="a wall-clock budget in seconds, e.g. --max-seconds 60")
    from advisor.probing import parse_kernels, probe

    kernels: Any = [] if args.kernels is not None and args.kernels.strip().lower() == "none" \
        else parse_kernels(args.kernels)
    result = _run_with_progress(args, kernels, probe)
    doc = result.to_dict()
    warn = stderr_console()
    if not args.no_save:
        try:
            from advisor.store import HistoryStore

            store = HistoryStore()
            run_id = store.save_probe(result)
            doc["saved"] = {"id": run_id, "path": str(store.path)}
        except StoreError as exc:
            warn.print(f"warning: result not saved: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
                       markup=False)
            doc["saved"] = None
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            if args.json:
                print_json(doc)  # the result is not lost
            raise AdvisorError(f"cannot write --out {args.out}: {exc.strerror or exc}",
                               hint="choose a writable path") from exc
    if args.json:
        print_json(doc)
    else:
        _print_text(result)
    return 0


def _run_with_progress(args: argparse.Namespace, kernels: Any, probe: Any) -> Any:
    kw = {"device": args.device, "quick": args.quick, "kernels": kernels, "max_seconds": args.max_seconds,
          "max_memory_fraction": args.max_memory_fraction}
    if not sys.stderr.isatty():
        return probe(**kw)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]probe"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=stderr_console(),
                  transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        return probe(**kw, progress=lambda what, frac: bar.update(task, completed=frac, description=what))


def _run_collectives(args: argparse.Namespace) -> int:
    """``probe --collectives``: every rank probes; rank 0 alone prints (and saves, writes --out)."""
    try:
        from advisor.probing.collectives import run_collectives
    except ImportError as exc:
        raise AdvisorError("collectives are not available in this build",
                           hint=f"advisor.probing.collectives could not be imported: {exc}") from exc
    report = run_collectives(quick=bool(args.quick))
    if report is None:
        return 0  # not rank 0: nothing on stdout
    doc = report.to_dict()
    if not args.no_save:
        try:
            from advisor.store import HistoryStore

            doc["saved_id"] = HistoryStore().save_probe(report.to_probe_result())
        except AdvisorError as exc:
            doc["notes"].append(f"not saved: {exc.message}")
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2)
        except OSError as exc:
            raise AdvisorError(f"cannot write {args.out}: {exc.strerror}", hint="choose a writable path") from exc
    if args.json:
        print_json(doc)
    else:
        _print_collectives(report)
        if "saved_id" in doc:
            print(f"saved to the history store as probe {doc['saved_id']}", file=sys.stderr)
    return 0


def _print_collectives(report: Any) -> None:
    rows = []
    for r in report.results:
        rows.append((r.op, f"{r.size_bytes / 2**20:.3g} MiB", None if r.time_s is None else f"{r.time_s * 1e6:.1f}",
                     None if r.algbw_gbs is None else f"{r.algbw_gbs:.2f}",
                     None if r.busbw_gbs is None else f"{r.busbw_gbs:.2f}",
                     None if r.fraction_of_link is None else f"{r.fraction_of_link:.0%}", r.skipped or ""))
    cols = ("collective", "size/rank", "time us", "algbw GB/s", "busbw GB/s", "of link", "note")
    out = stdout_console()
    out.print(table(f"{report.backend} collectives, {report.world_size} ranks ({report.launcher})", cols, _esc(rows),
                    right_align=cols[1:6]))
    fleet = [(f.rank, f.local_rank, f.hostname, f.device, f.device_name,
              None if f.matmul_tflops is None else f"{f.matmul_tflops:.3g}",
              "STRAGGLER" if f.rank in report.stragglers else "") for f in report.fleet]
    out.print(table("fleet", ("rank", "local", "host", "device", "name", "matmul TFLOP/s", ""), _esc(fleet)))
    for note in report.notes:
        out.print(note, markup=False)
