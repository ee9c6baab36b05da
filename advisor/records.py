"""Frozen dataclass records as JSON-safe data: the one field loop every record's ``to_dict`` shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any


def json_fields(record: Any, *, skip: Collection[str] = (),
                convert: Mapping[str, Callable[[Any], Any]] | None = None) -> dict[str, Any]:
    """``record``'s fields in declaration order, JSON-safe.

    A field named in ``convert`` goes through its function (a ``None`` value stays ``None``); any other tuple
    becomes a list and any other mapping a dict; fields named in ``skip`` are left out.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        if f.name in skip:
            continue
        value = getattr(record, f.name)
        fn = convert.get(f.name) if convert else None
        if fn is not None:
            value = None if value is None else fn(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out
