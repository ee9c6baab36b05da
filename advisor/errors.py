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

