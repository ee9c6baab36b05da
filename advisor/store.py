"""Probe and validation history: one SQLite file in the user's data directory.

Location: ``$GPU_ADVISOR_HOME/history.sqlite3`` if set, else ``$XDG_DATA_HOME/gpu-advisor/`` or
``~/.local/share/gpu-advisor/``; ``HistoryStore(path)`` overrides it.  WAL journal and a busy
timeout let two probes save at once; an unreadable or corrupt file raises ``StoreError``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import StoreError

if TYPE_CHECKING:
    from advisor.probing.results import ProbeResult

ENV_HOME = "GPU_ADVISOR_HOME"
FILENAME = "history.sqlite3"
BUSY_TIMEOUT_S = 30.0

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


class HistoryStore:
    """The SQLite history file.

    Args:
        path: the database file; ``default_store_path()`` when None.
        clock, sleep: seconds (monotonic) and a pause, for retrying a busy new file until ``BUSY_TIMEOUT_S``
            (parameters so tests can script them).

    Raises:
        StoreError: the file is not a database, is corrupt, or cannot be created.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._clock, self._sleep = clock, sleep
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the history directory {self.path.parent}: {exc}",
                             hint=f"set ${ENV_HOME} to a writable directory") from exc
        self._initialise()

    def _initialise(self) -> None:
        """Switch the file to WAL (persistent) and create the tables, once per store object.

        Two processes opening a new file at the same moment can get SQLITE_BUSY from the journal-mode
        switch or the schema script without the busy handler being consulted, so these are retried
        until ``BUSY_TIMEOUT_S`` has passed.
        """
        deadline = self._clock() + BUSY_TIMEOUT_S
        while True:
            try:
                with self._connect() as con:
                    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()
                    if mode is None:
                        raise sqlite3.DatabaseError("could not set the journal mode")
                    con.executescript(_SCHEMA)
                return
            except StoreError as exc:
                cause = exc.__cause__
                busy = isinstance(cause, sqlite3.OperationalError) and ("locked" in str(cause) or "busy" in str(cause))
                if not busy or self._clock() > deadline:
                    raise
                self._sleep(0.05)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = None
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            with con:  # one transaction: commit on success, roll back on error
                yield con
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"history store {self.path} is unreadable or corrupt: {exc}",
                             hint=f"move the file aside (it will be recreated) or set ${ENV_HOME}") from exc
        finally:
            if con is not None:
                con.close()

    def save_probe(self, result: ProbeResult) -> int:
        """Save one probe run; returns its id."""
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

    @staticmethod
    def _record(row: tuple[Any, ...]) -> ProbeRecord:
        return ProbeRecord(id=row[0], timestamp=row[1], host=row[2], device_name=row[3], catalog_id=row[4],
                           versions=json.loads(row[5]), document=json.loads(row[6]))

    def list_probes(self, catalog_id: str | None = None, limit: int = 50) -> list[ProbeRecord]:
        """Saved probe runs, newest first, optionally only those of one catalog card."""
        if limit < 1:
            raise StoreError(f"limit must be >= 1, got {limit}")
        sql = "SELECT id, timestamp, host, device_name, catalog_id, versions, document FROM probe_runs"
        args: tuple[Any, ...] = ()
        if catalog_id is not None:
            sql += " WHERE catalog_id = ?"
            args = (catalog_id,)
        sql += " ORDER BY timestamp DESC, id DESC LIMIT ?"
        with self._connect() as con:
            return [self._record(r) for r in con.execute(sql, (*args, limit)).fetchall()]

    def get_probe(self, probe_id: int) -> ProbeRecord:
        """One saved run by id.

        Raises:
            StoreError: no run with that id.
        """
        with self._connect() as con:
            row = con.execute("SELECT id, timestamp, host, device_name, catalog_id, versions, document "
                              "FROM probe_runs WHERE id = ?", (probe_id,)).fetchone()
        if row is None:
            raise StoreError(f"no saved probe with id {probe_id}", hint="list them with HistoryStore().list_probes()")
        return self._record(row)

    def latest_probe(self, catalog_id: str | None = None) -> ProbeRecord | None:
        """The newest saved run (of one card if ``catalog_id``), or None."""
        runs = self.list_probes(catalog_id=catalog_id, limit=1)
        return runs[0] if runs else None

    def save_validation(self, document: Mapping[str, Any]) -> int:
        """Save one ``validate --json`` document; returns its id."""
        from datetime import UTC, datetime

        ts = str(document.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds"))
        device = document.get("device")
        with self._connect() as con:
            cur = con.execute("INSERT INTO validation_runs (timestamp, device, document) VALUES (?, ?, ?)",
                              (ts, None if device is None else json.dumps(device) if not isinstance(device, str)
                               else device, json.dumps(dict(document))))
            return int(cur.lastrowid or 0)

    def list_validations(self, limit: int = 50) -> list[dict[str, Any]]:
        """Saved validation documents, newest first, each with ``id`` and ``saved_at`` added."""
        with self._connect() as con:
            rows = con.execute("SELECT id, timestamp, document FROM validation_runs "
                               "ORDER BY timestamp DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [{**json.loads(doc), "id": i, "saved_at": ts} for i, ts, doc in rows]
