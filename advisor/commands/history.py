"""``history``: what the history store holds, its unreadable rows, and ``--repair`` to export and drop them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from advisor.commands._output import add_json_flag, print_json, stdout_console, table
from advisor.errors import AdvisorError


def add_parser(subparsers: Any) -> None:
    """Register ``history``."""
    p = subparsers.add_parser(
        "history", help="the saved probe and validation runs; check or repair the history store",
        description="List the probe and validation runs saved in the history store ($GPU_ADVISOR_HOME/"
                    "history.sqlite3), with its schema version and every row that cannot be read (a document "
                    "that is not JSON, a BLOB, a wrong type). Such a row is skipped by estimate, recommend and "
                    "validate, with a warning naming it; --repair writes those rows to a JSON file and then "
                    "drops them from the store (nothing else is changed).")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest runs listed per kind (default 20)")
    p.add_argument("--repair", action="store_true",
                   help="export the unreadable rows to a JSON file, then drop them from the store")
    p.add_argument("--export", metavar="FILE",
                   help="with --repair: where the rows go (default history-bad-rows-<time>.json beside the store; "
                        "never overwritten)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``history``: exit 0, or 1 when unreadable rows remain (listed, not repaired)."""
    from advisor.store import HistoryStore, default_store_path

    if args.limit < 1:
        raise AdvisorError(f"--limit must be >= 1, got {args.limit}", hint="e.g. --limit 20")
    if args.export and not args.repair:
        raise AdvisorError("--export goes with --repair", hint="gpu-advisor history --repair --export FILE")
    path = default_store_path()
    if not path.exists():
        if args.json:
            print_json({"path": str(path), "exists": False, "probes": [], "validations": [], "bad_rows": []})
        else:
            print(f"no history store at {path} yet (probe and validate save runs there)", file=sys.stderr)
        return 0
    if args.repair:
        report = HistoryStore(path).repair(args.export)
        if args.json:
            print_json({"path": str(path), **report.to_dict()})
        elif not report.dropped:
            print(f"{path}: every row is readable, nothing to repair", file=sys.stderr)
        else:
            print(f"{path}: exported {len(report.dropped)} unreadable row(s) to {report.export_path}, then dropped "
                  f"them: {', '.join(b.label for b in report.dropped)}", file=sys.stderr)
        return 0
    store = HistoryStore(path, read_only=True)
    probes, _ = store.read_probes(limit=args.limit)
    validations, _ = store.read_validations(limit=args.limit)
    bad = store.bad_rows()
    doc = {"path": str(path), "exists": True, "schema_version": store.schema_version, "counts": store.counts(),
           "probes": [r.to_dict() for r in probes],
           "validations": [{"id": v["id"], "saved_at": v["saved_at"], "device": _device(v.get("device"))}
                           for v in validations],
           "bad_rows": [{"table": b.table, "id": b.id, "problem": b.problem} for b in bad]}
    if args.json:
        print_json(doc)
    else:
        _print(doc)
    if bad:
        print(f"warning: {len(bad)} row(s) cannot be read and are skipped by every command; "
              "`gpu-advisor history --repair` exports them to a file and drops them", file=sys.stderr)
        return 1
    return 0


def _device(device: Any) -> str | None:
    if isinstance(device, dict):
        return str(device.get("catalog_id") or device.get("name") or "?")
    return None if device is None else str(device)


def _print(doc: dict[str, Any]) -> None:
    from rich.markup import escape

    console = stdout_console()
    counts = doc["counts"]
    console.print(escape(f"{doc['path']} (schema version {doc['schema_version']}): {counts['probe_runs']} probe "
                         f"run(s), {counts['validation_runs']} validation run(s)"))
    console.print(table("probe runs (newest first)", ("id", "saved", "host", "devices", "card"),
                        [tuple(escape(str(c)) if c is not None else None for c in
                               (p["id"], p["timestamp"], p["host"], p["device_name"], p["catalog_id"]))
                         for p in doc["probes"]]))
    console.print(table("validation runs (newest first)", ("id", "saved", "device"),
                        [(v["id"], escape(str(v["saved_at"])), escape(str(v["device"]))) for v in doc["validations"]]))
    if doc["bad_rows"]:
        console.print(table("unreadable rows (skipped)", ("table", "id", "problem"),
                            [(b["table"], b["id"], escape(b["problem"])) for b in doc["bad_rows"]]))
