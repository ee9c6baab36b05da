"""What a spec file may hold: every field's type and accepted range, and the checks that build a ``GpuSpec``.

``spec_from_mapping`` validates a parsed TOML mapping field by field (unknown, missing, type, range, the
interconnect and sources tables, prices with their kind and date) and names the file and field of every problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, cast

from advisor.errors import SpecError
from advisor.gpu_spec import (
    CLOUD_PRICE_CLASSES,
    PCIE_LANE_RATES,
    PRICE_KINDS,
    SEGMENTS,
    THROUGHPUT_FIELDS,
    VENDORS,
    GpuSpec,
    Interconnect,
)
from advisor.numbers import show

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "name": str,
    "vendor": str,
    "segment": str,
    "architecture": str,
    "release_year": int,
    "memory_gb": (int, float),
    "memory_type": str,
    "memory_bandwidth_gbs": (int, float),
    "fp32_tflops": (int, float),
    "tdp_w": (int, float),
    "source": str,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    **{name: (int, float) for name in THROUGHPUT_FIELDS if name != "fp32_tflops"},
    "aliases": list,
    "tensor_cores": int,
    "sm_count": int,
    "boost_clock_mhz": (int, float),
    "base_clock_mhz": (int, float),
    "devices_per_package": int,
    "l2_cache_mb": (int, float),
    "interconnect": dict,
    "price_usd": (int, float),
    "price_kind": str,
    "price_date": str,
    "cloud_usd_per_hour": (int, float),
    "cloud_price_date": str,
    "cloud_price_class": str,
    "cloud_rentable": bool,
    "tensor_accumulate": str,
    "notes": str,
    "sources": dict,
}
_INTERCONNECT: dict[str, type | tuple[type, ...]] = {
    "pcie_gen": int,
    "pcie_lanes": int,
    "nvlink_gbs": (int, float),
    "infinity_fabric_gbs": (int, float),
    "c2c_gbs": (int, float),
    "fabric": str,
}

#: The accepted range (inclusive) of every number a spec file may hold, in the units its name carries: the one
#: table of spec bounds.  Wide of any real card both ways (today's span: 8-256 GB, 68-8,000 GB/s, 0.09-4,500
#: TFLOPS, 15-1,000 W), they refuse typos of units (bytes/s for GB/s, FLOP/s for TFLOPS), zero, negatives, NaN,
#: infinity and 1e308 or 5e-324, so every figure the estimator derives from a card stays finite and positive.
SPEC_LIMITS: dict[str, tuple[float, float]] = {
    "release_year": (1990, 2100),
    "memory_gb": (0.01, 1e5),  # 10 MB .. 100 TB
    "memory_bandwidth_gbs": (0.1, 1e6),  # 100 MB/s .. 1 PB/s
    **{name: (1e-6, 1e6) for name in THROUGHPUT_FIELDS},  # 1 MFLOP/s .. 1 EFLOP/s (TFLOPS or TOPS)
    "tdp_w": (1, 1e5),
    "tensor_cores": (1, 1e6),
    "sm_count": (1, 1e5),
    "boost_clock_mhz": (10, 1e5),
    "base_clock_mhz": (10, 1e5),
    "devices_per_package": (1, 64),
    "l2_cache_mb": (1e-3, 1e5),
    "price_usd": (0.01, 1e9),
    "cloud_usd_per_hour": (1e-4, 1e5),
    "interconnect.pcie_gen": (1, max(PCIE_LANE_RATES)),
    "interconnect.pcie_lanes": (1, 32),
    "interconnect.nvlink_gbs": (0.1, 1e6),
    "interconnect.infinity_fabric_gbs": (0.1, 1e6),
    "interconnect.c2c_gbs": (0.1, 1e6),
}


def _check_type(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise SpecError(f"{where}: {key} must be {names}, got {type(value).__name__} {show(value)}")
    if key in SPEC_LIMITS:
        _check_range(where, key, cast("int | float", value))


def _check_range(where: str, key: str, value: int | float) -> None:
    """``value`` inside ``SPEC_LIMITS[key]``, else a ``SpecError`` naming the file, the field, the value and range."""
    low, high = SPEC_LIMITS[key]
    if isinstance(value, float) and not math.isfinite(value):
        problem = f"must be a finite number, got {value!r}"
    elif value <= 0:
        problem = f"must be > 0, got {show(value)}"
    elif not low <= value <= high:
        problem = f"= {show(value)} is outside the accepted range"
    else:
        return
    raise SpecError(f"{where}: {key} {problem} (accepted: {low:g} to {high:g})",
                    hint="the accepted ranges are catalog.SPEC_LIMITS, in the units the field's name carries "
                         "(GB, GB/s, TFLOPS, W, MHz, USD); check for a unit slip (bytes for GB, FLOPS for TFLOPS)")


def spec_from_mapping(data: Mapping[str, Any], where: str = "<spec>") -> GpuSpec:
    """Build a ``GpuSpec`` from a parsed TOML mapping, validating every key.

    Raises:
        SpecError: unknown key, missing required key, wrong type, non-positive number,
            bad segment or vendor; the message names ``where`` and the field.
    """
    _check_fields(where, data)
    interconnect = dict(data.get("interconnect", {}))
    sources = dict(data.get("sources", {}))
    aliases = data.get("aliases", [])
    _check_tables(where, data, interconnect, sources, aliases)
    _check_together(where, data)
    kwargs = {k: v for k, v in data.items() if k not in ("interconnect", "sources", "aliases")}
    for key in ("memory_gb", "memory_bandwidth_gbs", "tdp_w", *THROUGHPUT_FIELDS):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])
    return GpuSpec(**kwargs, aliases=tuple(aliases), interconnect=Interconnect(**interconnect),
                   sources=sources, path=where)


def _check_fields(where: str, data: Mapping[str, Any]) -> None:
    """Every key known, every required one there, each of its type and range; segment, vendor and id well-formed."""
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        accepted = ", ".join(sorted({*_REQUIRED, *_OPTIONAL}))
        raise SpecError(f"{where}: unknown key {unknown[0]!r}", hint=f"accepted keys: {accepted}")
    for key, expected in _REQUIRED.items():
        if key not in data:
            raise SpecError(f"{where}: missing required key {key!r}")
        _check_type(where, key, data[key], expected)
    for key, value in data.items():
        if key in _OPTIONAL:
            _check_type(where, key, value, _OPTIONAL[key])
    if data["segment"] not in SEGMENTS:
        raise SpecError(f"{where}: segment must be one of {', '.join(SEGMENTS)}, got {data['segment']!r}")
    if data["vendor"] not in VENDORS:
        raise SpecError(f"{where}: vendor must be one of {', '.join(VENDORS)}, got {data['vendor']!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", data["id"]):
        raise SpecError(f"{where}: id must be lowercase letters, digits, '.' and '-', got {data['id']!r}")


def _check_tables(where: str, data: Mapping[str, Any], interconnect: Mapping[str, Any], sources: Mapping[str, Any],
                  aliases: Any) -> None:
    """The interconnect table's keys and types; every source names a field and says something; the aliases."""
    for key, value in interconnect.items():
        if key not in _INTERCONNECT:
            raise SpecError(f"{where}: unknown key 'interconnect.{key}'",
                            hint=f"accepted: {', '.join(_INTERCONNECT)}")
        _check_type(where, f"interconnect.{key}", value, _INTERCONNECT[key])
    for key, value in sources.items():
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise SpecError(f"{where}: sources names unknown field {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{where}: sources.{key} must be a non-empty string")
    if not data["source"].strip():
        raise SpecError(f"{where}: source must not be empty")
    if not all(isinstance(a, str) and a.strip() for a in aliases):
        raise SpecError(f"{where}: aliases must be a list of non-empty strings")


def _check_together(where: str, data: Mapping[str, Any]) -> None:
    """Fields that go together: prices with their dates, a split package with its notes, base clock <= boost."""
    if "cloud_usd_per_hour" in data and "cloud_price_date" not in data:
        raise SpecError(f"{where}: cloud_usd_per_hour needs cloud_price_date (prices change)")
    if "cloud_rentable" in data and "cloud_price_date" not in data:
        raise SpecError(f"{where}: cloud_rentable needs cloud_price_date (the date it was checked)")
    if data.get("cloud_price_class", CLOUD_PRICE_CLASSES[0]) not in CLOUD_PRICE_CLASSES:
        raise SpecError(f"{where}: cloud_price_class must be one of {', '.join(CLOUD_PRICE_CLASSES)}, "
                        f"got {data['cloud_price_class']!r}")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])(-\d{2})?", data.get("cloud_price_date", "2000-01")):
        raise SpecError(f"{where}: cloud_price_date must be YYYY-MM or YYYY-MM-DD, got {data['cloud_price_date']!r}")
    if data.get("devices_per_package", 1) > 1 and "notes" not in data:
        raise SpecError(f"{where}: devices_per_package > 1 needs notes saying how the package splits")
    if data.get("base_clock_mhz", 0) > data.get("boost_clock_mhz", math.inf):
        raise SpecError(f"{where}: base_clock_mhz {data['base_clock_mhz']:g} is above boost_clock_mhz "
                        f"{data['boost_clock_mhz']:g}", hint="the base clock is the guaranteed floor, the boost the "
                        "maximum: base <= boost")
    _check_price(where, data)
    if data.get("cloud_rentable") is False and "cloud_usd_per_hour" in data:
        raise SpecError(f"{where}: cloud_rentable = false contradicts cloud_usd_per_hour")


def _check_price(where: str, data: Mapping[str, Any]) -> None:
    """A purchase price comes with its kind and date; ``not sold`` has a date and no price."""
    kind, date = data.get("price_kind"), data.get("price_date")
    if "price_usd" in data and (kind is None or date is None):
        raise SpecError(f"{where}: price_usd needs price_kind and price_date (prices change)",
                        hint=f"price_kind: one of {', '.join(PRICE_KINDS)}; price_date: YYYY-MM")
    if kind is not None and kind not in PRICE_KINDS:
        raise SpecError(f"{where}: price_kind must be one of {', '.join(PRICE_KINDS)}, got {kind!r}")
    if kind == "not sold" and "price_usd" in data:
        raise SpecError(f"{where}: price_kind = 'not sold' contradicts price_usd")
    if (kind is None) != (date is None):
        raise SpecError(f"{where}: price_kind and price_date go together")
    if date is not None and not re.fullmatch(r"\d{4}(-(0[1-9]|1[0-2]))?", date):
        raise SpecError(f"{where}: price_date must be YYYY-MM or YYYY, got {date!r}")
    if kind == "not sold" and "price_kind" not in data.get("sources", {}):
        raise SpecError(f"{where}: price_kind = 'not sold' needs sources.price_kind (where that was checked)")
