"""Users' files read defensively: one place for size caps, special files, encodings and nesting.

Every reader of a file a user names (a config.json, a ``--calibration`` probe JSON, a ``--replay`` run, a spec
TOML in ``--specs-dir`` or ``$GPU_ADVISOR_SPECS``) goes through here, so each failure is the caller's
``AdvisorError`` kind naming the file and what is wrong, never a traceback, a hang or an unbounded read:

- a path too long for the file system, a missing file, no permission: said as such;
- a directory, a named pipe (FIFO: reading it could block forever), a character or block device
  (``/dev/zero``: never ends) or a socket: named as such and not opened;
- more than the kind's cap (``MAX_BYTES``): refused before reading, and never more than cap + 1 bytes read
  (a file that grows while read, or a ``/proc`` file that reports size 0, is still bounded);
- not UTF-8 (e.g. ``model.safetensors`` passed as a config): the byte offset named;
- JSON or TOML that is invalid, or nested too deeply for the parser (``RecursionError``): said as such.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any

from advisor.errors import AdvisorError

MiB = 1024 * 1024
#: The largest file of each kind that is read, in bytes. A Hugging Face config.json is a few kB (a large label
#: map: ~100 kB); a full probe of one GPU ~170 kB and a validate run ~25 kB (tests/data/gpu-runs); a spec TOML
#: ~3 kB.  The caps leave room for many devices and rows and stop a wrong file (a checkpoint, /dev/zero) early.
MAX_BYTES: dict[str, int] = {"config": 4 * MiB, "calibration": 16 * MiB, "replay": 16 * MiB, "spec": 1 * MiB}
#: Longest path looked at (Linux's PATH_MAX); a longer "path" is not a file.
MAX_PATH_CHARS = 4096


def _size(n: int) -> str:
    return f"{n / MiB:,.1f} MiB" if n >= MiB else f"{n:,} bytes"


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path (or a name) as a message shows it: quoted, shortened when very long (5,000 characters stay readable)."""
    text = os.fspath(path)
    return repr(text) if len(text) <= 200 else f"{text[:80]!r}...{text[-40:]!r} ({len(text):,} characters)"


def special_file_kind(mode: int) -> str | None:
    """What a ``st_mode`` is when not a regular file ("a directory", "a named pipe (FIFO)", ...), else None."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), which is not read: reading one waits for a writer, possibly forever"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file, which is not read: a device such as /dev/zero never ends"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def path_state(path: str | os.PathLike[str]) -> str:
    """``"file"``, ``"dir"``, ``"missing"`` or ``"special"`` (FIFO, device, socket, unreachable); never raises.

    A path too long for the file system, or one whose parent is a file, is ``"missing"``.
    """
    text = os.fspath(path)
    if not text or len(text) > MAX_PATH_CHARS or "\0" in text:
        return "missing"
    try:
        mode = os.stat(text).st_mode
    except OSError as exc:
        return "missing" if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP) else "special"
    except ValueError:
        return "missing"
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "special"


def read_bytes(path: str | os.PathLike[str], *, kind: str, what: str, hint: str,
               error: type[AdvisorError] = AdvisorError) -> bytes:
    """The bytes of the regular file at ``path``, at most ``MAX_BYTES[kind]``.

    Args:
        path: the file.
        kind: the cap's key in ``MAX_BYTES`` ("config", "calibration", "replay", "spec").
        what: how the message names the file ("config", "calibration file", "--replay: the run").
        hint: what would be accepted.
        error: the ``AdvisorError`` subclass raised.

    Raises:
        error: the path is too long, missing, unreadable, not a regular file, or larger than the cap.
    """
    text = os.fspath(path)
    cap = MAX_BYTES[kind]
    shown = shown_path(text)
    if len(text) > MAX_PATH_CHARS or "\0" in text:
        why = "it holds a NUL byte" if "\0" in text else f"longer than {MAX_PATH_CHARS:,} characters"
        raise error(f"{what} {shown} is not a usable path ({why})", hint)
    try:
        info = os.stat(text)
    except OSError as exc:
        reason = "it does not exist" if exc.errno == errno.ENOENT else \
            "the path is too long for the file system" if exc.errno == errno.ENAMETOOLONG else exc.strerror or exc
        raise error(f"cannot read {what} {shown}: {reason}", hint) from exc
    special = special_file_kind(info.st_mode)
    if special is not None:
        raise error(f"{what} {shown} is {special}", hint)
    if info.st_size > cap:
        raise error(f"{what} {shown} is {_size(info.st_size)}; a {kind} file is read only up to {_size(cap)}", hint)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it does not wait for a writer
        fd = os.open(text, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if special_file_kind(os.fstat(fh.fileno()).st_mode) is not None:
                raise error(f"{what} {shown} is not a regular file", hint)
            data = fh.read(cap + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {shown}: {exc.strerror or exc}", hint) from exc
    if len(data) > cap:
        raise error(f"{what} {shown} is larger than {_size(cap)}, the most a {kind} file may be", hint)
    return data


def decode_text(data: bytes, *, name: str, hint: str, error: type[AdvisorError] = AdvisorError) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped); ``name`` is how the message names it ("config 'x.json'").

    Raises:
        error: the bytes are not UTF-8 text (the message names the first bad byte and its offset).
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}): is it a "
                    "binary file (weights, an archive)?", hint) from None


def parse_json_object(data: bytes | str, *, name: str, hint: str, error: type[AdvisorError] = AdvisorError,
                      expected: str = "an object") -> dict[str, Any]:
    """The JSON object in ``data`` (bytes are decoded as UTF-8); ``name`` is how messages name it.

    Raises:
        error: not UTF-8, empty, not valid JSON, nested too deeply for the parser, or a JSON value that is not
            an object.
    """
    text = decode_text(data, name=name, hint=hint, error=error) if isinstance(data, bytes) else data
    if not text.strip():
        raise error(f"{name} is empty", hint)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{name} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", hint) from None
    except RecursionError:
        raise error(f"{name} is JSON nested too deeply to read", hint) from None
    except ValueError as exc:  # an integer of more than 4,300 digits (Python's int-from-text limit)
        raise error(f"{name} holds a number too long to read: {str(exc).split(';')[0]}", hint) from None
    if not isinstance(parsed, dict):
        raise error(f"{name} holds a JSON {type(parsed).__name__}, not {expected}", hint)
    return parsed


def read_text(path: str | os.PathLike[str], *, kind: str, what: str, hint: str,
              error: type[AdvisorError] = AdvisorError) -> str:
    """The UTF-8 text of the file at ``path`` (a leading BOM dropped); see ``read_bytes`` for the other checks.

    Raises:
        error: as ``read_bytes``, or the bytes are not UTF-8 text.
    """
    data = read_bytes(path, kind=kind, what=what, hint=hint, error=error)
    return decode_text(data, name=f"{what} {shown_path(path)}", hint=hint, error=error)


def read_json_object(path: str | os.PathLike[str], *, kind: str, what: str, hint: str,
                     error: type[AdvisorError] = AdvisorError, expected: str = "an object") -> dict[str, Any]:
    """The JSON object in the file at ``path``; every way it can fail is ``error`` naming ``what`` and the path.

    Args:
        path: the file.
        kind: the size cap's key in ``MAX_BYTES``.
        what: how the message names the file ("config", "calibration file", "--replay: the run").
        hint: what would be accepted.
        error: the ``AdvisorError`` subclass to raise.
        expected: what the object is, for a JSON value that is not one ("a probe result object").

    Raises:
        error: the file cannot be read (see ``read_bytes``), is empty, not UTF-8, not valid JSON, nested too
            deeply, or holds something other than an object.
    """
    data = read_bytes(path, kind=kind, what=what, hint=hint, error=error)
    return parse_json_object(data, name=f"{what} {shown_path(path)}", hint=hint, error=error, expected=expected)


def read_toml(path: str | os.PathLike[str], *, kind: str, what: str, hint: str,
              error: type[AdvisorError] = AdvisorError) -> dict[str, Any]:
    """The table in the TOML file at ``path`` (read with ``tomllib``).

    Raises:
        error: as ``read_text``, or the text is not valid TOML or nested too deeply.
    """
    import tomllib

    text = read_text(path, kind=kind, what=what, hint=hint, error=error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {shown_path(path)}: not valid TOML: {exc}", hint) from exc
    except RecursionError:
        raise error(f"{what} {shown_path(path)}: TOML nested too deeply to read", hint) from None
    except ValueError as exc:  # an integer of more than 4,300 digits (Python's int-from-text limit)
        raise error(f"{what} {shown_path(path)}: holds a number too long to read: {str(exc).split(';')[0]}",
                    hint) from None
