"""What went wrong with the history store: its error kinds, each with its own hint, from SQLite's code or errno."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from advisor.errors import StoreError

ENV_HOME = "GPU_ADVISOR_HOME"
BUSY_TIMEOUT_S = 30.0


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


def sqlite_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of an error (``None`` for an error that is not SQLite's)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF  # the primary code (extended codes add high bits)


def _writable(path: Path) -> bool:
    """Whether ``path`` (a file, or its nearest existing directory when absent) can be written by this user."""
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK)


def store_error(exc: BaseException, path: Path, doing: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> StoreError:
    """The ``StoreError`` kind that says what went wrong with the store at ``path`` (SQLite's code or errno).

    Only a corrupt file is told to move aside: a store that is read-only, full, locked or of a newer schema is
    healthy and keeps its history.

    Args:
        exc: the ``sqlite3.Error`` or ``OSError``.
        path: the store file.
        doing: what was being done, for the message ("read", "write", "open").
        busy_timeout_s: how long a locked store was waited for (the message says it).
    """
    code = sqlite_code(exc)
    err = getattr(exc, "errno", None)
    where = f"history store {path}"
    other = f"or set ${ENV_HOME} to another directory"
    if code == sqlite3.SQLITE_FULL or err in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"cannot {doing} the {where}: the disk is full ({exc})",
                              hint=f"free space on that disk, {other}; the store itself is intact, do not delete it")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreLockedError(f"the {where} is locked by another process (waited {busy_timeout_s:g} s): {exc}",
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
