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
The error kinds are ``advisor.store_errors``'s and the rows' reading ``advisor.store_rows``'s (re-exported here).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import StoreError
from advisor.store_errors import (
    BUSY_TIMEOUT_S,
    ENV_HOME,
    StoreCorruptError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreRowWarning,
    StoreSchemaError,
    sqlite_code,
    store_error,
)
from advisor.store_rows import (
    COLUMNS,
    REPAIR_HINT,
    BadRow,
    ProbeRecord,
    RepairReport,
    RowProblem,
    bad_row,
    partition,
    probe_record,
    row_id,
    validation_doc,
    warn_skipped,
)

if TYPE_CHECKING:
    from advisor.probing.results import ProbeResult

__all__ = ["BUSY_TIMEOUT_S", "ENV_HOME", "FILENAME", "SCHEMA_VERSION", "BadRow", "HistoryStore", "ProbeRecord",
           "RepairReport", "StoreCorruptError", "StoreError", "StoreFullError", "StoreLockedError",
           "StoreReadOnlyError", "StoreRowWarning", "StoreSchemaError", "data_dir", "default_store_path",
           "store_error"]

FILENAME = "history.sqlite3"
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
        for table, columns in COLUMNS.items():
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
                if sqlite_code(exc) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
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
            raise store_error(exc, self.path, "read" if self.read_only else "use",
                              busy_timeout_s=BUSY_TIMEOUT_S) from exc
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
        return partition(rows, "probe_runs", probe_record)

    def list_probes(self, catalog_id: str | None = None, limit: int = 50) -> list[ProbeRecord]:
        """Saved probe runs, newest first, optionally only those of one catalog card.

        A row that cannot be read is skipped with a ``StoreRowWarning`` naming it.
        """
        good, bad = self.read_probes(catalog_id, limit)
        warn_skipped(bad, self.path)
        return good

    def get_probe(self, probe_id: int) -> ProbeRecord:
        """One saved run by id.

        Raises:
            StoreError: no run with that id, or its row cannot be read (the message says why).
        """
        with self._connect() as con:
            row = con.execute("SELECT id, timestamp, host, device_name, catalog_id, versions, document "
                              "FROM probe_runs WHERE id = ?", (probe_id,)).fetchone() \
                if self._has_table(con, "probe_runs") and row_id(probe_id) else None
        if row is None:
            raise StoreError(f"no saved probe with id {str(probe_id)[:30]}", hint="`gpu-advisor history` lists them")
        try:
            return probe_record(row)
        except RowProblem as exc:
            raise StoreError(f"saved probe {probe_id} in {self.path} cannot be read: {exc}", hint=REPAIR_HINT) from None

    def latest_probe(self, catalog_id: str | None = None) -> ProbeRecord | None:
        """The newest readable saved run (of one card if ``catalog_id``), or None."""
        good, bad = self.read_probes(catalog_id=catalog_id, limit=50)
        warn_skipped(bad, self.path)
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
        return partition(rows, "validation_runs", validation_doc)

    def list_validations(self, limit: int = 50) -> list[dict[str, Any]]:
        """Saved validation documents, newest first, each with ``id`` and ``saved_at`` added.

        A row that cannot be read is skipped with a ``StoreRowWarning`` naming it.
        """
        good, bad = self.read_validations(limit)
        warn_skipped(bad, self.path)
        return good

    def get_validation(self, validation_id: int) -> dict[str, Any]:
        """One saved validation document by id (with ``id`` and ``saved_at``).

        Raises:
            StoreError: no validation with that id, or its row cannot be read (the message says why).
        """
        with self._connect() as con:
            row = con.execute("SELECT id, timestamp, device, document FROM validation_runs WHERE id = ?",
                              (validation_id,)).fetchone() \
                if self._has_table(con, "validation_runs") and row_id(validation_id) else None
        if row is None:
            raise StoreError(f"no validation {str(validation_id)[:30]} in the history store {self.path}",
                             hint="`gpu-advisor history` lists them")
        try:
            return validation_doc(row)
        except RowProblem as exc:
            raise StoreError(f"saved validation {validation_id} in {self.path} cannot be read: {exc}",
                             hint=REPAIR_HINT) from None

    def bad_rows(self) -> list[BadRow]:
        """Every row of either table that cannot be read, oldest first."""
        bad: list[BadRow] = []
        with self._connect() as con:
            for table, columns in COLUMNS.items():
                if not self._has_table(con, table):
                    continue
                for row in con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"):
                    try:
                        if table == "probe_runs":
                            probe_record(row)
                        else:
                            validation_doc(row)
                    except RowProblem as exc:
                        bad.append(bad_row(table, row, str(exc)))
        return bad

    def counts(self) -> dict[str, int]:
        """Rows per table (bad ones included)."""
        with self._connect() as con:
            return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) if self._has_table(con, t) else 0
                    for t in COLUMNS}

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
