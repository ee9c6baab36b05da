"""Shared CLI output: one JSON document on stdout, rich tables, messages on stderr."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: report them as null rather than emitting invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def print_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(_clean(document), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def stdout_console() -> Any:
    """A rich console on stdout (imported lazily: rich costs ~50 ms)."""
    from rich.console import Console

    # Piped output (files, CI logs) has no terminal width: give tables room instead of 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def stderr_console() -> Any:
    """A rich console on stderr, for progress and notes that must not pollute stdout."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          right_align: Sequence[str] = ()) -> Any:
    """A rich ``Table`` with the given columns; cells are str()-ed, ``None`` shown as '-'."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col, justify="right" if col in right_align else "left", overflow="fold")
    for row in rows:
        t.add_row(*("-" if cell is None else str(cell) for cell in row))
    return t


def add_json_flag(parser: Any) -> None:
    """Add the ``--json`` flag every command has."""
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else")


def add_specs_dir_flag(parser: Any) -> None:
    """Add ``--specs-dir`` (users' own spec files, adding to or replacing shipped cards)."""
    parser.add_argument("--specs-dir", action="append", metavar="DIR",
                        help="directory of your own spec TOML files (repeatable; "
                             "also $GPU_ADVISOR_SPECS); same-id cards replace shipped ones")


def fit_table(advice: Any) -> Any:
    """The table of ``advisor.advice.FitAdvice`` options (what would make a workload fit), smallest change first."""
    from advisor.units import format_seconds, format_usd

    return table("what would make it fit (smallest change first; single changes, then combinations)",
                 ("change", "how", "GiB/GPU", "fits", "step", "samples/s", "cloud $/h", "buy $"),
                 [(o.change, o.how, f"{o.memory_per_gpu_bytes / 1024**3:,.1f}",
                   ("yes" if o.fits else "no") + (" (more cards than --max-gpus)" if o.beyond_max_gpus else ""),
                   format_seconds(o.step_s), f"{o.effective_samples_per_s:,.0f}" if o.effective_samples_per_s >= 100
                   else f"{o.effective_samples_per_s:.3g}",
                   None if o.cloud_usd_per_hour is None else format_usd(o.cloud_usd_per_hour),
                   None if o.price_usd is None else format_usd(o.price_usd)) for o in advice.options],
                 right_align=("GiB/GPU", "step", "samples/s", "cloud $/h", "buy $"))


@contextlib.contextmanager
def tracing_spinner() -> Iterator[None]:
    """A spinner on stderr while a model is traced (``advisor.workload.tracecache``); stdout stays clean."""
    from advisor.workload.tracecache import set_progress

    console = stderr_console()
    set_progress(lambda message: console.status(message, spinner="dots"))
    try:
        yield
    finally:
        set_progress(None)
