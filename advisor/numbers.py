"""Numbers that come from outside (config fields, spec files, workload options), checked in one place.

A count must be a whole number (an ``int``, not a ``bool``, a string or a float) inside a stated range; a
figure must be a finite real inside its range.  Out of range is the caller's ``AdvisorError`` kind, naming the
field, the value and what is accepted.  Upper bounds are physical sanity, not taste: they keep every product
the estimator forms far from float overflow and every loop short (a 5,000-digit integer cannot even be
printed by ``str()``, so values are shown with ``show``).
"""

from __future__ import annotations

import math
from typing import Any

from advisor.errors import AdvisorError

_LONG_INT_DIGITS = 30


def show(value: Any) -> str:
    """``repr(value)``, safe and short for messages: huge integers by their digit count, long text cut."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        digits = int((value.bit_length() - 1) * math.log10(2)) + 1
        digits += abs(value) >= 10**digits  # the estimate from the bit length can be one short
        return f"a {'negative ' if value < 0 else ''}{digits:,}-digit integer"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value):,} items"
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text):,} characters)"


def whole_number(name: str, value: Any, *, minimum: int = 1, maximum: int, error: type[AdvisorError] = AdvisorError,
                 where: str | None = None, hint: str | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) in ``minimum..maximum``, else ``error`` naming it.

    Args:
        name: the field as the user wrote it (``batch_size``, ``num_attention_heads``).
        value: what was given.
        minimum, maximum: the accepted range, inclusive.
        error: the ``AdvisorError`` kind to raise.
        where: what holds the field (``config 'x'``, a spec file's path), prefixed to the message.
        hint: what the field means or how to fix it; the accepted range is always said.

    Raises:
        error: not an int, or out of range.
    """
    ok = isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum
    if ok:
        return int(value)
    prefix = f"{where}: " if where else ""
    accepted = f"accepted: an integer from {minimum:,} to {maximum:,} (not a string, a float or true/false)"
    raise error(f"{prefix}{name} must be a whole number >= {minimum:,} and <= {maximum:,}, got {show(value)}",
                f"{hint}; {accepted}" if hint else accepted)


def real_number(name: str, value: Any, *, minimum: float, maximum: float, above_minimum: bool = False,
                error: type[AdvisorError] = AdvisorError, where: str | None = None, hint: str | None = None) -> float:
    """``float(value)`` if it is a finite int or float (not a bool) in range, else ``error`` naming it.

    Args:
        name, where, hint, error: as for ``whole_number``.
        minimum, maximum: the accepted range (``maximum`` inclusive).
        above_minimum: ``minimum`` itself is refused (a rate or a size must be > 0, not merely >= 0).

    Raises:
        error: not a real number, NaN or infinite, or out of range.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number:
        try:
            x = float(value)
        except OverflowError:  # an int beyond float range
            x = math.inf
        low_ok = x > minimum if above_minimum else x >= minimum
        if math.isfinite(x) and low_ok and x <= maximum:
            return x
    prefix = f"{where}: " if where else ""
    low = f"> {minimum:g}" if above_minimum else f">= {minimum:g}"
    accepted = f"accepted: a finite number {low} and <= {maximum:g}"
    raise error(f"{prefix}{name} must be a finite number {low} and <= {maximum:g}, got {show(value)}",
                f"{hint}; {accepted}" if hint else accepted)
