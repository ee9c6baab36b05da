"""Write purchase (and cloud) prices from a CSV into specs/*.toml, keeping every other line as it is.

    python benchmarks/refresh_prices.py PRICES.csv [--specs DIR] [--dry-run]

The CSV is the record of where each price came from (one row per card; docs/prices.md has the format):

    id,price_usd,price_kind,price_date,source[,cloud_usd_per_hour,cloud_price_date,cloud_price_class,cloud_source]

``price_kind`` is ``list`` (vendor MSRP / SEP at launch), ``street`` (what new cards sell for), ``used``
(second-hand market) or ``not sold`` (no per-card sale to end users; ``price_usd`` empty).  ``price_date`` is
``YYYY-MM`` (or ``YYYY``).  ``cloud_price_class`` is ``gpu cloud``, ``marketplace`` or ``hyperscaler`` (whose
on-demand per-GPU-hour rate it is).  Empty cells leave a field as it is; a price without its source (``source``,
``cloud_source``) or a cloud price without its class is refused.  No network: fetch the public pages yourself,
write what they say into the CSV with the page and its date, then run this.  Every file it writes is read back
through the catalog's validator; a card that fails is restored and named, and the run exits 1.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The CSV columns written as top-level fields of a spec file (each also a column of the CSV).
PRICE_COLUMNS = ("price_usd", "price_kind", "price_date")
CLOUD_COLUMNS = ("cloud_usd_per_hour", "cloud_price_date", "cloud_price_class")
NUMBERS = {"price_usd", "cloud_usd_per_hour"}
_TABLE = re.compile(r"^\s*\[")


def _string(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(field: str, text: str) -> str:
    """A top-level field's value as TOML: prices as numbers, the rest as strings."""
    if field in NUMBERS:
        value = float(text)
        return str(int(value)) if value.is_integer() else repr(value)
    return _string(text)


def _set_key(lines: list[str], start: int, end: int, key: str, rendered: str | None, anchor: str) -> list[str]:
    """Set (or, ``rendered`` None, remove) ``key = ...`` in ``lines[start:end]``; new keys go before ``anchor``."""
    pattern = re.compile(rf"^{re.escape(key)}\s*=")
    for i in range(start, end):
        if pattern.match(lines[i]):
            if rendered is None:
                return lines[:i] + lines[i + 1:]
            return [*lines[:i], f"{key} = {rendered}\n", *lines[i + 1:]]
    if rendered is None:
        return lines
    at = next((i for i in range(start, end) if re.match(rf"^{re.escape(anchor)}\s*=", lines[i])), end)
    return [*lines[:at], f"{key} = {rendered}\n", *lines[at:]]


def _top_level_end(lines: Sequence[str]) -> int:
    return next((i for i, line in enumerate(lines) if _TABLE.match(line)), len(lines))


def _sources_span(lines: list[str]) -> tuple[list[str], int, int]:
    """The ``[sources]`` table's line span, adding the table at the end when the file has none."""
    start = next((i for i, line in enumerate(lines) if line.strip() == "[sources]"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines = [*lines, "\n"]
        lines = [*lines, "[sources]\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if _TABLE.match(lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return lines, start + 1, end


def apply_row(text: str, row: Mapping[str, str]) -> str:
    """The spec file's text with the row's prices written in (other lines untouched)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    kind = (row.get("price_kind") or "").strip()
    cell = {k: (row.get(k) or "").strip() for k in ("price_usd", "source", "cloud_usd_per_hour", "cloud_source",
                                                       "cloud_price_class")}
    if cell["price_usd"] and not cell["source"]:
        raise ValueError("price_usd without a source (the page and the date it was read)")
    if cell["cloud_usd_per_hour"] and not (cell["cloud_source"] and cell["cloud_price_class"]):
        raise ValueError("cloud_usd_per_hour needs cloud_source and cloud_price_class")
    updates: dict[str, str | None] = {}
    for field in PRICE_COLUMNS + CLOUD_COLUMNS:
        cell = (row.get(field) or "").strip()
        if cell:
            updates[field] = _toml_value(field, cell)
    if kind == "not sold":
        updates["price_usd"] = None  # a card that is not sold has no price
    for field, rendered in updates.items():
        lines = _set_key(lines, 0, _top_level_end(lines), field, rendered, anchor="source")
    sources = {"price_usd": (row.get("source") or "").strip(),
               "cloud_usd_per_hour": (row.get("cloud_source") or "").strip()}
    # a "not sold" card records where that was checked under price_kind; a priced one under price_usd
    if kind == "not sold" and sources["price_usd"]:
        sources = {"price_kind": sources["price_usd"], "price_usd": "",
                   "cloud_usd_per_hour": sources["cloud_usd_per_hour"]}
    for field, source in sources.items():
        if not source and not (field == "price_usd" and kind == "not sold"):
            continue
        lines, start, end = _sources_span(lines)
        lines = _set_key(lines, start, end, field, _string(source) if source else None, anchor="")
    return "".join(lines)


def refresh(csv_path: Path, specs_dir: Path, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Apply every CSV row to ``specs_dir``; returns (cards changed, errors)."""
    from advisor.catalog import load_spec_file
    from advisor.errors import SpecError

    changed: list[str] = []
    errors: list[str] = []
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        card = (row.get("id") or "").strip()
        path = specs_dir / f"{card}.toml"
        if not path.is_file():
            errors.append(f"{card}: no such spec file {path}")
            continue
        before = path.read_text(encoding="utf-8")
        try:
            after = apply_row(before, row)
        except ValueError as exc:
            errors.append(f"{card}: {exc}")
            continue
        if after == before:
            continue
        path.write_text(after, encoding="utf-8")
        try:
            load_spec_file(path)
        except SpecError as exc:
            path.write_text(before, encoding="utf-8")
            errors.append(f"{card}: {exc.message}")
            continue
        if dry_run:
            path.write_text(before, encoding="utf-8")
        changed.append(card)
    return changed, errors


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``refresh_prices.py PRICES.csv [--specs DIR] [--dry-run]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="the prices (columns: see docs/prices.md)")
    parser.add_argument("--specs", type=Path, default=ROOT / "specs", help="spec directory (default: specs/)")
    parser.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    args = parser.parse_args(argv)
    changed, errors = refresh(args.csv, args.specs, args.dry_run)
    print(f"{'would change' if args.dry_run else 'changed'} {len(changed)} card(s): {', '.join(changed) or '-'}")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
