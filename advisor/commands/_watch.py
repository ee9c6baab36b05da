"""``probe --watch``: a live table of every device, refreshed until Ctrl-C (or ``--count`` refreshes)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from advisor.commands._output import stdout_console, table
from advisor.errors import AdvisorError

if TYPE_CHECKING:  # pragma: no cover
    from advisor.probing.backend import InventoryBackend

COLUMNS = ("device", "util", "memory", "power", "clock", "temp", "clock events", "more")


def check_args(args: argparse.Namespace) -> None:
    """Reject a bad ``--watch``/``--count`` before any device is opened.

    Raises:
        AdvisorError: the period is too short, the count is not positive, or ``--collectives`` was asked too.
    """
    from advisor.probing.watch import MIN_INTERVAL_S

    if args.watch < MIN_INTERVAL_S:
        raise AdvisorError(f"--watch must be at least {MIN_INTERVAL_S} s, got {args.watch:g}",
                           hint="e.g. `--watch 2` refreshes every 2 seconds")
    count = getattr(args, "count", None)
    if count is not None and count < 1:
        raise AdvisorError(f"--count must be >= 1, got {count}", hint="leave it out to refresh until Ctrl-C")
    if getattr(args, "collectives", False):
        raise AdvisorError("--watch and --collectives cannot be combined",
                           hint="--watch shows live counters; run the collectives separately")


def _tables(snapshot: Any, rows: list[dict[str, Any]]) -> list[Any]:
    from rich.markup import escape

    from advisor.probing.watch import display_row, process_rows

    cells = []
    for row in rows:
        d = display_row(row)
        cells.append(tuple(escape(d[k]) for k in ("device", "util", "memory", "power", "clock", "temp", "throttle",
                                                  "extra")))
    out = [table(time.strftime("devices at %H:%M:%S (Ctrl-C to stop)"), COLUMNS, cells,
                 right_align=("util", "power", "temp"))]
    procs = process_rows(snapshot)
    if procs:
        out.append(table("processes", ("GPU", "pid", "name", "GPU memory"),
                         [(p["device"], p["pid"], escape(p["name"] or "?"),
                           "–" if p["used_memory_bytes"] is None else f"{p['used_memory_bytes'] / 2**30:,.2f} GiB")
                          for p in procs]))
    return out


def run_watch(args: argparse.Namespace, *, backend: InventoryBackend | None = None,
              sleep: Callable[[float], None] | None = None) -> int:
    """Refresh every ``args.watch`` seconds, ``args.count`` times (default: until Ctrl-C, which exits 0).

    Text goes to a live terminal view when stdout is a terminal, else one table per refresh;
    ``--json`` prints one JSON document per line per refresh.
    """
    check_args(args)
    sleep = sleep or time.sleep  # looked up now, not at import (tests replace time.sleep)
    from advisor.probing import default_backend
    from advisor.probing.watch import Snapshot, device_rows, json_rows, read_cpu_counters, sample

    own = backend is None
    if backend is None:
        backend = default_backend()
    console = stdout_console()
    live = None
    try:
        if not args.json and sys.stdout.isatty():
            from rich.console import Group
            from rich.live import Live

            live = Live(console=console, auto_refresh=False)
            live.start()
        for note in getattr(backend, "notes", ()):
            print(f"note: {note}", file=sys.stderr)
        # CPU utilisation is a difference of two readings: take the first one now, so that the first
        # refresh already has it.
        previous = Snapshot(t_s=time.monotonic(), devices=(), cpu=read_cpu_counters())
        sleep(min(0.25, args.watch))
        done = 0
        while True:
            snap = sample(backend)
            rows = device_rows(previous, snap)
            if args.json:
                sys.stdout.write(json.dumps(json_rows(snap, rows)) + "\n")
                sys.stdout.flush()
            elif live is not None:
                live.update(Group(*_tables(snap, rows)), refresh=True)
            else:
                for t in _tables(snap, rows):
                    console.print(t)
            previous = snap
            done += 1
            if args.count is not None and done >= args.count:
                return 0
            sleep(args.watch)
    except KeyboardInterrupt:
        return 0  # the way out of a live view, not an error
    finally:
        if live is not None:
            live.stop()
        if own:
            backend.close()
