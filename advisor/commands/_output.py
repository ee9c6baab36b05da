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


#: Which assumptions move an answer most, by what limits it (first match of each, in this order).
_KEY_ASSUMPTIONS: dict[str, tuple[str, ...]] = {
    "input": ("input:", "step_s is GPU time"),
    "host": ("runtime eager",),
    "communication": ("parallelism",),
}
_ALWAYS = ("job:", "batch_size", "time: roofline", "no probe of this card", "calibrated by", "advice:",
           "amp-* trains", "ranked by")


def key_assumptions(assumptions: Sequence[str], *, limiter: str | None = None, fits: bool = True,
                    limit: int = 5) -> list[str]:
    """The few assumptions that move this answer most: the job, the batch, what sets the pace, calibration.

    Picks, in order, the first assumption matching each of: the job and the batch; the assumption behind the
    limiter (the loader's rate when input-bound, the host's dispatch when host-bound, the parallelism when
    communication-bound); the memory model when it does not fit; the efficiencies, calibration and the rest.
    ``--assumptions`` (and ``--json``) give them all.
    """
    order = [*_ALWAYS[:2], *_KEY_ASSUMPTIONS.get(limiter or "", ()),
             *(() if fits else ("memory is per GPU",)), *_ALWAYS[2:]]
    picked: list[str] = []
    for prefix in order:
        hit = next((a for a in assumptions if a.removeprefix("estimator: ").startswith(prefix) and a not in picked),
                   None)
        if hit is not None:
            picked.append(hit)
        if len(picked) >= limit:
            break
    return picked


def print_assumptions(console: Any, assumptions: Sequence[str], show_all: bool, **why: Any) -> None:
    """All the assumptions (``--assumptions``), or the key ones and how many more there are."""
    if show_all:
        console.print("[bold]assumptions[/bold]")
        shown = list(assumptions)
    else:
        shown = key_assumptions(assumptions, **why)
        console.print(f"[bold]key assumptions[/bold] ({len(assumptions) - len(shown)} more: --assumptions, or --json)")
    for a in shown:
        console.print(f"  - {a}")


def add_assumptions_flag(parser: Any) -> None:
    """Add ``--assumptions`` (print every assumption, not only the key ones)."""
    parser.add_argument("--assumptions", action="store_true",
                        help="print every assumption behind the answer (default: the few that move it most)")


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
