"""The exceptions gpu-advisor raises.

Every failure a user can cause or meet (a bad name, a malformed file, a missing driver)
is an ``AdvisorError``; the CLI turns it into ``error: ...`` / ``hint: ...`` and a
non-zero exit.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AdvisorError(Exception):
    """Base class of every error gpu-advisor raises on purpose.

    Args:
        message: what went wrong, naming the bad value.
        hint: what would be accepted or how to fix it (optional).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class SpecError(AdvisorError):
    """A spec file is malformed: unknown or missing key, wrong type, bad number, duplicate id."""


class UnknownGpuError(AdvisorError):
    """A card name matches no catalog entry, or more than one."""


class UnknownModelError(AdvisorError):
    """A model name matches no preset."""


class WorkloadError(AdvisorError):
    """A workload cannot be built: bad config, bad sizes, untraceable module."""


class EstimateError(AdvisorError):
    """An estimate cannot be made: unsupported precision, bad option combination."""


class ProbeUnavailable(AdvisorError):
    """A probe backend cannot run: driver or library missing, or no such device."""


class DeviceError(AdvisorError):
    """One device failed while being queried or measured (lost, not supported, no permission)."""


class StoreError(AdvisorError):
    """The history store cannot be read or written (corrupt file, bad path)."""


def read_json_object(path: object, *, what: str, hint: str, error: type[AdvisorError] = AdvisorError,
                     expected: str = "an object") -> dict:  # type: ignore[type-arg]
    """The JSON object in the file at ``path``; every way it can fail is ``error`` naming ``what`` and the path.

    Args:
        path: the file (``str`` or ``Path``).
        what: how the message names the file ("config", "calibration file", "--replay:").
        hint: what would be accepted.
        error: the ``AdvisorError`` subclass to raise.
        expected: what the object is, for a JSON value that is not one ("a probe result object").

    Raises:
        error: the file cannot be read, is empty, is not valid JSON, or holds something other than an object.
    """
    import json
    from pathlib import Path

    p = Path(str(path))
    try:
        text = p.read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {str(p)!r}: {exc.strerror}", hint) from exc
    if not text.strip():
        raise error(f"{what} {str(p)!r} is empty", hint)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {str(p)!r} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    hint) from exc
    if not isinstance(data, dict):
        raise error(f"{what} {str(p)!r} holds a JSON {type(data).__name__}, not {expected}", hint)
    return data
