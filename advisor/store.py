"""Probe and validation history: one SQLite file in the user's data directory.

Location: ``$GPU_ADVISOR_HOME/history.sqlite3`` if set, else ``$XDG_DATA_HOME/gpu-advisor/`` or
``~/.local/share/gpu-advisor/``; ``HistoryStore(path)`` overrides it.  WAL journal and a busy
timeout let two probes save at once.  The file carries a schema version (``PRAGMA user_version``): an
unversioned file of the same tables is stamped, a newer version is refused (never rewritten).  Failures are
``StoreError`` kinds that say what happened (read-only, disk full, locked, corrupt, schema), each with its
own hint.  One unreadable row (a document that is not JSON, a BLOB, a wrong type) is skipped with a
``StoreRowWarning`` naming it, never a failure of the whole read; ``bad_rows()`` lists them and ``repair()``
exports and drops them (``gpu-advisor history --repair``).  ``HistoryStore(path, read_only=True)`` reads a
store on read-only media or in a directory that is not writable (``mode=ro``, else ``immutable=1``).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from advisor.errors import StoreError

_T = TypeVar("_T")

if TYPE_CHECKING:
    from advisor.probing.results import ProbeResult

ENV_HOME = "GPU_ADVISOR_HOME"
FILENAME = "history.sqlite3"
BUSY_TIMEOUT_S = 30.0
#: The schema this code reads and writes (``PRAGMA user_version``); 0 is the unversioned file of the same tables.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS probe_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    host TEXT NOT NULL,
    device_name TEXT,
    catalog_id TEXT,
    versions TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS probe_runs_catalog ON probe_runs (catalog_id, timestamp);
CREATE TABLE IF NOT EXISTS validation_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    device TEXT,
    document TEXT NOT NULL
);
"""
_COLUMNS: dict[str, tuple[str, ...]] = {
    "probe_runs": ("id", "timestamp", "host", "device_name", "catalog_id", "versions", "document"),
    "validation_runs": ("id", "timestamp", "device", "document"),
}
_REPAIR = "`gpu-advisor history` lists unreadable rows; `gpu-advisor history --repair` exports them to a file and " \
          "drops them"


class StoreReadOnlyError(StoreError):
    """The store (its file, its directory or the disk) cannot be written; reading it still works."""


class StoreFullError(StoreError):
    """The disk holding the store is full (the store itself is intact)."""


class StoreLockedError(StoreError):
    """Another process held the store's lock longer than the busy timeout."""


class StoreCorruptError(StoreError):
    """The file is not an SQLite database, or its pages are damaged."""


class StoreSchemaError(StoreError):
    """The file's schema is newer than this code, or its tables are not the store's."""


class StoreRowWarning(UserWarning):
    """One stored row could not be read and was skipped (the warning names it)."""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF  # the primary code (extended codes add high bits)


def _writable(path: Path) -> bool:
    """Whether ``path`` (a file, or its nearest existing directory when absent) can be written by this user."""
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK)


def store_error(exc: BaseException, path: Path, doing: str) -> StoreError:
    """The ``StoreError`` kind that says what went wrong with the store at ``path`` (SQLite's code or errno).

    Only a corrupt file is told to move aside: a store that is read-only, full, locked or of a newer schema is
    healthy and keeps its history.

    Args:
        exc: the ``sqlite3.Error`` or ``OSError``.
        path: the store file.
        doing: what was being done, for the message ("read", "write", "open").
    """
    code = _code(exc)
    err = getattr(exc, "errno", None)
    where = f"history store {path}"
    other = f"or set ${ENV_HOME} to another directory"
    if code == sqlite3.SQLITE_FULL or err in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"cannot {doing} the {where}: the disk is full ({exc})",
                              hint=f"free space on that disk, {other}; the store itself is intact, do not delete it")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreLockedError(f"the {where} is locked by another process (waited {BUSY_TIMEOUT_S:g} s): {exc}",
                                hint="wait for the other gpu-advisor (probe, validate, dashboard) to finish and "
                                     f"retry; `fuser {path}` names it. The file is healthy: do not move it")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreCorruptError(f"the {where} is corrupt or not an SQLite database: {exc}",
                                 hint=f"move the file aside (a new one is created; `sqlite3 {path} .recover` may "
                                      f"save its rows), {other}")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH) or \
            err in (errno.EROFS, errno.EACCES, errno.EPERM) or \
            (code == sqlite3.SQLITE_CANTOPEN and path.is_file() and not _writable(path.parent)):
        return StoreReadOnlyError(f"cannot {doing} the {where}: it is read-only ({exc})",
                                  hint="estimates still read it; to save runs make the file and its directory "
                                       f"writable, {other}")
    if code == sqlite3.SQLITE_CANTOPEN:
        if path.is_dir():
            return StoreError(f"the {where} is a directory, not a file", hint=f"remove or rename it, {other}")
        return StoreReadOnlyError(f"cannot open the {where}: {exc} (the file, or its directory for the -wal and "
                                  "-shm journal files, is not writable or not reachable)",
                                  hint=f"check the permissions of {path.parent} and the disk it is on, {other}")
    if code == sqlite3.SQLITE_IOERR or isinstance(exc, OSError):
        return StoreError(f"cannot {doing} the {where}: input/output error ({exc})",
                          hint=f"check the disk (dmesg, free space), {other}; the file was not changed on purpose")
    return StoreError(f"cannot {doing} the {where}: {exc}", hint=f"{other}; `gpu-advisor history` checks it")


def data_dir() -> Path:
    """The user's gpu-advisor data directory (not created here)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "gpu-advisor"


def default_store_path() -> Path:
    """Where the history file lives by default."""
    return data_dir() / FILENAME


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


class _RowProblem(Exception):
    """Why one row cannot be read (internal: becomes a ``BadRow``)."""


def _json_column(value: Any, column: str) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _RowProblem(f"{column} is a {len(value)}-byte BLOB, not UTF-8 text") from None
    if not isinstance(value, str):
        raise _RowProblem(f"{column} is {'NULL' if value is None else type(value).__name__ + ' ' + repr(value)[:40]},"
                          " not JSON text")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise _RowProblem(f"{column} is not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise _RowProblem(f"{column} is JSON nested too deeply to read") from None
    except ValueError:  # Python refuses integers of over 4,300 digits (int_max_str_digits)
        raise _RowProblem(f"{column} holds a number too long to read") from None


def _object_column(value: Any, column: str) -> dict[str, Any]:
    data = _json_column(value, column)
    if not isinstance(data, dict):
        raise _RowProblem(f"{column} holds a JSON {type(data).__name__}, not an object")
    return data


def _partition(rows: Sequence[Any], table: str, read: Callable[[Any], _T]) -> tuple[list[_T], list[BadRow]]:
    """The rows ``read`` turns into records, and those it cannot (each a ``BadRow`` saying why)."""
    good: list[_T] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            good.append(read(row))
        except _RowProblem as exc:
            bad.append(_bad_row(table, row, str(exc)))
    return good, bad


def _text_column(value: Any, column: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _RowProblem(f"{column} is {'NULL' if value is None else type(value).__name__ + ' ' + repr(value)[:40]},"
                          " not text")
    return value


def _probe_record(row: tuple[Any, ...]) -> ProbeRecord:
    document = _object_column(row[6], "document")
    for key in ("devices", "kernels"):
        if not isinstance(document.get(key), list):
            raise _RowProblem(f"document is not a probe result (its {key!r} is not a list)")
    return ProbeRecord(id=int(row[0]), timestamp=str(_text_column(row[1], "timestamp")),
                       host=str(_text_column(row[2], "host")),
                       device_name=_text_column(row[3], "device_name", optional=True),
                       catalog_id=_text_column(row[4], "catalog_id", optional=True),
                       versions=_object_column(row[5], "versions"), document=document)


def _validation_doc(row: tuple[Any, ...]) -> dict[str, Any]:
    """``(id, timestamp, device, document)`` as the saved document with ``id`` and ``saved_at``."""
    document = _object_column(row[3], "document")
    return {**document, "id": int(row[0]), "saved_at": _text_column(row[1], "timestamp")}


def _bad_row(table: str, row: tuple[Any, ...], problem: str) -> BadRow:
    def safe(value: Any) -> Any:
        return {"blob_base64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value

    return BadRow(table, int(row[0]), problem, {c: safe(v) for c, v in zip(_COLUMNS[table], row, strict=False)})


def _row_id(value: Any) -> bool:
    """Whether ``value`` can be a row id (SQLite's INTEGER is 64-bit: a 5,000-digit id is no row, not an error)."""
    return isinstance(value, int) and 0 < value < 2**63


def _warn_skipped(bad: list[BadRow], path: Path) -> None:
    for b in bad:
        warnings.warn(f"history store {path}: skipped {b.label}: {b.problem} ({_REPAIR})", StoreRowWarning,
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


class HistoryStore:
    """The SQLite history file.

    Args:
        path: the database file; ``default_store_path()`` when None.
        read_only: only read (never create, migrate or write): opened ``mode=ro``, or ``immutable=1`` where the
            directory or disk is read-only (then rows still in an un-checkpointed WAL are not seen).  Writing
            through such a store raises ``StoreReadOnlyError``.
        clock, sleep: seconds (monotonic) and a pause, for retrying a busy new file until ``BUSY_TIMEOUT_S``
            (parameters so tests can script them).

    Raises:
        StoreError: one of its kinds: ``StoreCorruptError`` (not a database, damaged), ``StoreSchemaError``
            (newer schema, foreign tables), ``StoreReadOnlyError``, ``StoreFullError``, ``StoreLockedError``;
            a plain ``StoreError`` when the file or its directory cannot be created, or is missing (read-only).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.read_only = read_only
        self._immutable = False
        self._clock, self._sleep = clock, sleep
        if read_only:
            if not self.path.is_file():
                raise StoreError(f"no history store at {self.path}" + (" (it is a directory)" if self.path.is_dir()
                                                                       else ""),
                                 hint="probe or validate save runs there; or set $GPU_ADVISOR_HOME")
            with self._connect() as con:
                self._check_schema(con)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the history directory {self.path.parent}: {exc.strerror or exc}"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFullError(message, hint=f"free space on that disk, or set ${ENV_HOME} to a directory "
                                                   "on another") from exc
            kind = StoreReadOnlyError if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else StoreError
            raise kind(message, hint=f"set ${ENV_HOME} to a writable directory") from exc
        self._initialise()

    @property
    def schema_version(self) -> int:
        """The file's ``PRAGMA user_version``."""
        with self._connect() as con:
            return int(con.execute("PRAGMA user_version").fetchone()[0])

    def _check_schema(self, con: sqlite3.Connection) -> None:
        """Refuse a newer schema, and tables that lack the columns this code reads."""
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"history store {self.path} has schema version {version}; this gpu-advisor reads versions up to "
                f"{SCHEMA_VERSION}",
                hint=f"a newer gpu-advisor wrote it: upgrade (pip install -U gpu-advisor), or set ${ENV_HOME} to "
                     "another directory for this version. The file is left as it is")
        for table, columns in _COLUMNS.items():
            have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in have]
            if have and missing:
                raise StoreSchemaError(
                    f"history store {self.path}: its {table} table lacks {', '.join(missing)}, so it is not a "
                    f"gpu-advisor history this version knows (schema version {version})",
                    hint=f"set ${ENV_HOME} to another directory to start a new history; this file is left as it is")

    def _initialise(self) -> None:
        """Check the schema version, switch the file to WAL (persistent), create the tables and stamp the version.

        Version 0 (a file from before versioning, or a new one) has the same tables: it is stamped. Two
        processes opening a new file at the same moment can get SQLITE_BUSY from the journal-mode
        switch or the schema script without the busy handler being consulted, so these are retried
        until ``BUSY_TIMEOUT_S`` has passed.
        """
        deadline = self._clock() + BUSY_TIMEOUT_S
        while True:
            try:
                with self._connect() as con:
                    self._check_schema(con)
                    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()
                    if mode is None:
                        raise sqlite3.DatabaseError("could not set the journal mode")
                    con.executescript(_SCHEMA)
                    self._check_schema(con)
                    if int(con.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
                        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            except StoreError as exc:
                cause = exc.__cause__
                busy = isinstance(cause, sqlite3.OperationalError) and ("locked" in str(cause) or "busy" in str(cause))
                if not busy or self._clock() > deadline:
                    raise
                self._sleep(0.05)

    def _open(self) -> sqlite3.Connection:
        """A connection: read-write, or read-only (``mode=ro``, falling back to ``immutable=1``)."""
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        uri = self.path.resolve().as_uri()
        if not self._immutable:
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL index now
                return con
            except sqlite3.Error as exc:
                con.close()
                if _code(exc) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
                    raise
                self._immutable = True  # the directory cannot hold the -shm file: read the file as it is
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=BUSY_TIMEOUT_S)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = None
        try:
            con = self._open()
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            with con:  # one transaction: commit on success, roll back on error
                yield con
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, "read" if self.read_only else "use") from exc
        finally:
            if con is not None:
                con.close()

    def _writing(self) -> None:
        if self.read_only:
            raise StoreReadOnlyError(f"history store {self.path} was opened read-only",
                                     hint="open it with HistoryStore(path) to save runs")

    def save_probe(self, result: ProbeResult) -> int:
        """Save one probe run; returns its id."""
        self._writing()
        doc = result.to_dict()
        gpus = [d for d in result.devices if d.error is None] or list(result.devices)
        first = gpus[0] if gpus else None
        names = sorted({d.name for d in gpus if d.name})
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO probe_runs (timestamp, host, device_name, catalog_id, versions, document) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (result.timestamp, result.host, ", ".join(names) or None, first.catalog_id if first else None,
                 json.dumps(dict(result.versions)), json.dumps(doc)))
            return int(cur.lastrowid or 0)

    def _has_table(self, con: sqlite3.Connection, table: str) -> bool:
        return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() \
            is not None

    def read_probes(self, catalog_id: str | None = None, limit: int = 50) -> tuple[list[ProbeRecord], list[BadRow]]:
        """Saved probe runs, newest first (optionally of one card), and the rows among them that cannot be read.

        ``limit`` counts rows read, bad ones included.
        """
        if not isinstance(limit, int) or limit < 1:
            raise StoreError(f"limit must be an integer >= 1, got {limit!r}")
        sql = "SELECT id, timestamp, host, device_name, catalog_id, versions, document FROM probe_runs"
        args: tuple[Any, ...] = ()
        if catalog_id is not None:
            sql += " WHERE catalog_id = ?"
            args = (catalog_id,)
        sql += " ORDER BY timestamp DESC, id DESC LIMIT ?"
        with self._connect() as con:
            rows = con.execute(sql, (*args, limit)).fetchall() if self._has_table(con, "probe_runs") else []
        return _partition(rows, "probe_runs", _probe_record)

    def list_probes(self, catalog_id: str | None = None, limit: int = 50) -> list[ProbeRecord]:
        """Saved probe runs, newest first, optionally only those of one catalog card.

        A row that cannot be read is skipped with a ``StoreRowWarning`` naming it.
        """
        good, bad = self.read_probes(catalog_id, limit)
        _warn_skipped(bad, self.path)
        return good

    def get_probe(self, probe_id: int) -> ProbeRecord:
        """One saved run by id.

        Raises:
            StoreError: no run with that id, or its row cannot be read (the message says why).
        """
        with self._connect() as con:
            row = con.execute("SELECT id, timestamp, host, device_name, catalog_id, versions, document "
                              "FROM probe_runs WHERE id = ?", (probe_id,)).fetchone() \
                if self._has_table(con, "probe_runs") and _row_id(probe_id) else None
        if row is None:
            raise StoreError(f"no saved probe with id {str(probe_id)[:30]}", hint="`gpu-advisor history` lists them")
        try:
            return _probe_record(row)
        except _RowProblem as exc:
            raise StoreError(f"saved probe {probe_id} in {self.path} cannot be read: {exc}", hint=_REPAIR) from None

    def latest_probe(self, catalog_id: str | None = None) -> ProbeRecord | None:
        """The newest readable saved run (of one card if ``catalog_id``), or None."""
        good, bad = self.read_probes(catalog_id=catalog_id, limit=50)
        _warn_skipped(bad, self.path)
        return good[0] if good else None

    def save_validation(self, document: Mapping[str, Any]) -> int:
        """Save one ``validate --json`` document; returns its id."""
        from datetime import UTC, datetime

        self._writing()
        ts = str(document.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds"))
        device = document.get("device")
        with self._connect() as con:
            cur = con.execute("INSERT INTO validation_runs (timestamp, device, document) VALUES (?, ?, ?)",
                              (ts, None if device is None else json.dumps(device) if not isinstance(device, str)
                               else device, json.dumps(dict(document))))
            return int(cur.lastrowid or 0)

    def read_validations(self, limit: int = 50) -> tuple[list[dict[str, Any]], list[BadRow]]:
        """Saved validation documents, newest first (each with ``id`` and ``saved_at``), and the unreadable rows."""
        with self._connect() as con:
            rows = con.execute("SELECT id, timestamp, device, document FROM validation_runs "
                               "ORDER BY timestamp DESC, id DESC LIMIT ?", (limit,)).fetchall() \
                if self._has_table(con, "validation_runs") else []
        return _partition(rows, "validation_runs", _validation_doc)

    def list_validations(self, limit: int = 50) -> list[dict[str, Any]]:
        """Saved validation documents, newest first, each with ``id`` and ``saved_at`` added.

        A row that cannot be read is skipped with a ``StoreRowWarning`` naming it.
        """
        good, bad = self.read_validations(limit)
        _warn_skipped(bad, self.path)
        return good

    def get_validation(self, validation_id: int) -> dict[str, Any]:
        """One saved validation document by id (with ``id`` and ``saved_at``).

        Raises:
            StoreError: no validation with that id, or its row cannot be read (the message says why).
        """
        with self._connect() as con:
            row = con.execute("SELECT id, timestamp, device, document FROM validation_runs WHERE id = ?",
                              (validation_id,)).fetchone() \
                if self._has_table(con, "validation_runs") and _row_id(validation_id) else None
        if row is None:
            raise StoreError(f"no validation {str(validation_id)[:30]} in the history store {self.path}",
                             hint="`gpu-advisor history` lists them")
        try:
            return _validation_doc(row)
        except _RowProblem as exc:
            raise StoreError(f"saved validation {validation_id} in {self.path} cannot be read: {exc}",
                             hint=_REPAIR) from None

    def bad_rows(self) -> list[BadRow]:
        """Every row of either table that cannot be read, oldest first."""
        bad: list[BadRow] = []
        with self._connect() as con:
            for table, columns in _COLUMNS.items():
                if not self._has_table(con, table):
                    continue
                for row in con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"):
                    try:
                        if table == "probe_runs":
                            _probe_record(row)
                        else:
                            _validation_doc(row)
                    except _RowProblem as exc:
                        bad.append(_bad_row(table, row, str(exc)))
        return bad

    def counts(self) -> dict[str, int]:
        """Rows per table (bad ones included)."""
        with self._connect() as con:
            return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) if self._has_table(con, t) else 0
                    for t in _COLUMNS}

    def repair(self, export_path: str | os.PathLike[str] | None = None) -> RepairReport:
        """Export every unreadable row to a JSON file, then drop those rows (nothing else is touched).

        Args:
            export_path: where the rows go first; default ``history-bad-rows-<UTC time>.json`` beside the store.
                Nothing is dropped unless the export was written.

        Raises:
            StoreError: the export cannot be written, or the store cannot be (read-only, full, locked...).
        """
        self._writing()
        bad = self.bad_rows()
        if not bad:
            return RepairReport((), None)
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        target = Path(export_path) if export_path is not None else \
            self.path.parent / f"history-bad-rows-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
        doc = {"store": str(self.path), "exported_at": now.isoformat(timespec="seconds"),
               "schema_version": SCHEMA_VERSION, "rows": [b.to_dict() for b in bad]}
        try:
            with open(target, "x", encoding="utf-8") as fh:  # never overwrite an earlier export
                json.dump(doc, fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            error = store_error(exc, target, "write the export")
            raise type(error)(f"cannot write the export {target}: {exc.strerror or exc}; nothing was dropped",
                              hint="choose another file with --export" if isinstance(exc, FileExistsError)
                              else error.hint) from exc
        with self._connect() as con:
            for b in bad:
                con.execute(f"DELETE FROM {b.table} WHERE id = ?", (b.id,))
        return RepairReport(tuple(bad), target)
