"""The history store's rows read defensively: saved runs as records, and the rows that cannot be read.

One unreadable row (a document that is not JSON, a BLOB, a wrong type) becomes a ``BadRow`` that says why, never
a failure of the whole read.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from advisor.store_errors import StoreRowWarning

_T = TypeVar("_T")

if TYPE_CHECKING:
    from advisor.probing.results import ProbeResult

#: The columns of each table, as they are read.
COLUMNS: dict[str, tuple[str, ...]] = {
    "probe_runs": ("id", "timestamp", "host", "device_name", "catalog_id", "versions", "document"),
    "validation_runs": ("id", "timestamp", "device", "document"),
}
#: What to do about unreadable rows (every message about one ends with it).
REPAIR_HINT = ("`gpu-advisor history` lists unreadable rows; `gpu-advisor history --repair` exports them to a file "
               "and drops them")


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One saved probe run (summary columns; ``result()`` loads the whole ``ProbeResult``)."""

    id: int
    timestamp: str
    host: str
    device_name: str | None
    catalog_id: str | None
    versions: Mapping[str, Any]
    document: Mapping[str, Any]

    def result(self) -> ProbeResult:
        """The saved run as a ``ProbeResult``."""
        from advisor.probing.results import ProbeResult

        return ProbeResult.from_dict(self.document)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (without the full document)."""
        return {"id": self.id, "timestamp": self.timestamp, "host": self.host, "device_name": self.device_name,
                "catalog_id": self.catalog_id, "versions": dict(self.versions)}


@dataclass(frozen=True, slots=True)
class BadRow:
    """A stored row that cannot be read: where it is, why, and its columns as stored (for export).

    ``columns`` is JSON-safe: text stays text, a BLOB becomes ``{"blob_base64": ...}``.
    """

    table: str
    id: int
    problem: str
    columns: Mapping[str, Any]

    @property
    def label(self) -> str:
        """How messages name the row ("probe 3", "validation 7")."""
        return f"{'probe' if self.table == 'probe_runs' else 'validation'} {self.id}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the export file's rows)."""
        return {"table": self.table, "id": self.id, "problem": self.problem, "columns": dict(self.columns)}


class RowProblem(Exception):
    """Why one row cannot be read (becomes a ``BadRow``)."""


def _json_column(value: Any, column: str) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise RowProblem(f"{column} is a {len(value)}-byte BLOB, not UTF-8 text") from None
    if not isinstance(value, str):
        raise RowProblem(f"{column} is {'NULL' if value is None else type(value).__name__ + ' ' + repr(value)[:40]},"
                          " not JSON text")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RowProblem(f"{column} is not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise RowProblem(f"{column} is JSON nested too deeply to read") from None
    except ValueError:  # Python refuses integers of over 4,300 digits (int_max_str_digits)
        raise RowProblem(f"{column} holds a number too long to read") from None


def _object_column(value: Any, column: str) -> dict[str, Any]:
    data = _json_column(value, column)
    if not isinstance(data, dict):
        raise RowProblem(f"{column} holds a JSON {type(data).__name__}, not an object")
    return data


def partition(rows: Sequence[Any], table: str, read: Callable[[Any], _T]) -> tuple[list[_T], list[BadRow]]:
    """The rows ``read`` turns into records, and those it cannot (each a ``BadRow`` saying why)."""
    good: list[_T] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            good.append(read(row))
        except RowProblem as exc:
            bad.append(bad_row(table, row, str(exc)))
    return good, bad


def _text_column(value: Any, column: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RowProblem(f"{column} is {'NULL' if value is None else type(value).__name__ + ' ' + repr(value)[:40]},"
                          " not text")
    return value


def probe_record(row: tuple[Any, ...]) -> ProbeRecord:
    """A ``probe_runs`` row as a ``ProbeRecord``, or ``RowProblem`` saying why it cannot be read."""
    document = _object_column(row[6], "document")
    for key in ("devices", "kernels"):
        if not isinstance(document.get(key), list):
            raise RowProblem(f"document is not a probe result (its {key!r} is not a list)")
    return ProbeRecord(id=int(row[0]), timestamp=str(_text_column(row[1], "timestamp")),
                       host=str(_text_column(row[2], "host")),
                       device_name=_text_column(row[3], "device_name", optional=True),
                       catalog_id=_text_column(row[4], "catalog_id", optional=True),
                       versions=_object_column(row[5], "versions"), document=document)


def validation_doc(row: tuple[Any, ...]) -> dict[str, Any]:
    """``(id, timestamp, device, document)`` as the saved document with ``id`` and ``saved_at``."""
    document = _object_column(row[3], "document")
    return {**document, "id": int(row[0]), "saved_at": _text_column(row[1], "timestamp")}


def bad_row(table: str, row: tuple[Any, ...], problem: str) -> BadRow:
    """A row that cannot be read, its columns kept as stored (BLOBs in base64)."""
    def safe(value: Any) -> Any:
        return {"blob_base64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value

    return BadRow(table, int(row[0]), problem, {c: safe(v) for c, v in zip(COLUMNS[table], row, strict=False)})


def row_id(value: Any) -> bool:
    """Whether ``value`` can be a row id (SQLite's INTEGER is 64-bit: a 5,000-digit id is no row, not an error)."""
    return isinstance(value, int) and 0 < value < 2**63


def warn_skipped(bad: list[BadRow], path: Path) -> None:
    """A ``StoreRowWarning`` for each row skipped (attributed to the caller of the store's method)."""
    for b in bad:
        warnings.warn(f"history store {path}: skipped {b.label}: {b.problem} ({REPAIR_HINT})", StoreRowWarning,
                      stacklevel=3)


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What ``HistoryStore.repair`` did: the rows it dropped and the file it exported them to first."""

    dropped: tuple[BadRow, ...]
    export_path: Path | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {"dropped": [{"table": b.table, "id": b.id, "problem": b.problem} for b in self.dropped],
                "exported_to": None if self.export_path is None else str(self.export_path)}
