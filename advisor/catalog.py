"""The GPU specs catalog: one TOML file per card under ``specs/``, validated on load.

Numbers are dense (no 2:4 structured sparsity).  Tensor-core figures are with FP32
accumulate where a card has two rates (GeForce cards run FP16-accumulate at twice the
FP32-accumulate rate; training accumulates in FP32).

Users add or override cards from a directory of their own spec files, given as
``load_specs(extra_dirs=[...])``, ``--specs-dir`` on the CLI, or the ``GPU_ADVISOR_SPECS``
environment variable (``os.pathsep``-separated).  A user file whose id matches a shipped
card replaces it; duplicate ids inside one directory are an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from advisor.errors import EstimateError, SpecError, UnknownGpuError
from advisor.numbers import show

Segment = Literal["geforce", "workstation", "datacenter", "radeon", "instinct", "edge"]
SEGMENTS: tuple[str, ...] = ("geforce", "workstation", "datacenter", "radeon", "instinct", "edge")
VENDORS: tuple[str, ...] = ("nvidia", "amd")
ENV_SPECS_DIR = "GPU_ADVISOR_SPECS"
#: What a purchase price is: the vendor's list price (MSRP/SEP) at launch, what new cards sell for (street),
#: the second-hand market (used), or ``not sold`` (no per-card sale to end users; no ``price_usd``).
PRICE_KINDS: tuple[str, ...] = ("list", "street", "used", "not sold")
#: Who a cloud price is from (docs/prices.md, "one price basis"): a GPU cloud (Lambda, RunPod Secure Cloud, ...),
#: a marketplace of third-party hosts (RunPod Community Cloud, ...) or a hyperscaler (AWS, Google Cloud, Azure).
CLOUD_PRICE_CLASSES: tuple[str, ...] = ("gpu cloud", "marketplace", "hyperscaler")

#: Throughput fields, in the units their names carry (TFLOP/s, or TOP/s for integers).
THROUGHPUT_FIELDS: tuple[str, ...] = (
    "fp32_tflops",
    "tf32_tflops",
    "fp16_tflops",
    "bf16_tflops",
    "fp8_tflops",
    "int8_tops",
    "int4_tops",
    "fp64_tflops",
    "fp16_vector_tflops",
)

#: Precision names users pass -> the spec field holding that precision's peak.
PRECISION_FIELDS: dict[str, str] = {
    "fp32": "fp32_tflops",
    "tf32": "tf32_tflops",
    "fp16": "fp16_tflops",
    "bf16": "bf16_tflops",
    "amp-fp16": "fp16_tflops",
    "amp-bf16": "bf16_tflops",
    "fp8": "fp8_tflops",
    "int8": "int8_tops",
    "int4": "int4_tops",
}

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

# Words that do not tell cards apart: vendor and brand names.
_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|tesla|quadro|amd|radeon|instinct|ati)\b")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_name(name: str) -> str:
    """Reduce a card name to the form lookups compare.

    Case, spacing, hyphens and vendor words do not matter:
    ``normalize_name("NVIDIA A100-SXM4-80GB") == normalize_name("a100 sxm4 80gb")``.
    """
    lowered = name.lower().replace("_", " ")
    lowered = _VENDOR_WORDS.sub(" ", lowered)
    return _NON_ALNUM.sub("", lowered)


@dataclass(frozen=True, slots=True)
class Interconnect:
    """How a card talks to the host and to its peers (bandwidths in GB/s, both directions summed)."""

    pcie_gen: int | None = None
    pcie_lanes: int | None = None
    nvlink_gbs: float | None = None
    infinity_fabric_gbs: float | None = None
    c2c_gbs: float | None = None
    fabric: str | None = None

    @property
    def pcie_gbs(self) -> float | None:
        """Theoretical one-direction PCIe bandwidth in GB/s (after line encoding)."""
        return pcie_bandwidth_gbs(self.pcie_gen, self.pcie_lanes)

    @property
    def peer_gbs(self) -> float | None:
        """Best one-direction GPU-to-GPU bandwidth in GB/s: NVLink / Infinity Fabric, else PCIe."""
        fabric = self.nvlink_gbs or self.infinity_fabric_gbs
        if fabric:
            return fabric / 2
        return self.pcie_gbs

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, ``None`` where the card has no such link."""
        return dataclasses.asdict(self)


# Per-lane raw rate (GT/s) and line-code efficiency for each PCIe generation.
_PCIE = {1: (2.5, 8 / 10), 2: (5.0, 8 / 10), 3: (8.0, 128 / 130), 4: (16.0, 128 / 130),
         5: (32.0, 128 / 130), 6: (64.0, 242 / 256)}


def pcie_bandwidth_gbs(gen: int | None, lanes: int | None) -> float | None:
    """Theoretical one-direction PCIe bandwidth in GB/s: GT/s x encoding x lanes / 8.

    ``pcie_bandwidth_gbs(4, 16)`` is 31.5 GB/s; ``(5, 16)`` is 63.0 GB/s.
    """
    if not gen or not lanes or gen not in _PCIE:
        return None
    rate, efficiency = _PCIE[gen]
    return rate * efficiency * lanes / 8


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
    "interconnect.pcie_gen": (1, max(_PCIE)),
    "interconnect.pcie_lanes": (1, 32),
    "interconnect.nvlink_gbs": (0.1, 1e6),
    "interconnect.infinity_fabric_gbs": (0.1, 1e6),
    "interconnect.c2c_gbs": (0.1, 1e6),
}


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One card of the catalog. Field names carry their units; absent throughput = unsupported."""

    id: str
    name: str
    vendor: str
    segment: str
    architecture: str
    release_year: int
    memory_gb: float
    memory_type: str
    memory_bandwidth_gbs: float
    fp32_tflops: float
    tdp_w: float
    source: str
    tf32_tflops: float | None = None
    fp16_tflops: float | None = None
    bf16_tflops: float | None = None
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    int4_tops: float | None = None
    fp64_tflops: float | None = None
    fp16_vector_tflops: float | None = None
    aliases: tuple[str, ...] = ()
    tensor_cores: int | None = None
    sm_count: int | None = None
    boost_clock_mhz: float | None = None
    #: Datasheet base clock: the clock NVIDIA guarantees at TDP (the floor of the sustained-clock model).
    base_clock_mhz: float | None = None
    #: Devices software sees per package (2 for an MI250/MI250X: one per GCD).  Every figure in the file is
    #: for the whole package; ``per_device`` gives what one device (what PyTorch calls a GPU) has.
    devices_per_package: int = 1
    l2_cache_mb: float | None = None
    interconnect: Interconnect = field(default_factory=Interconnect)
    price_usd: float | None = None
    #: One of ``PRICE_KINDS``; ``price_date`` (YYYY-MM or YYYY) is when the price was seen / the card checked.
    price_kind: str | None = None
    price_date: str | None = None
    cloud_usd_per_hour: float | None = None
    cloud_price_date: str | None = None
    #: One of ``CLOUD_PRICE_CLASSES``: whose on-demand rate ``cloud_usd_per_hour`` is.
    cloud_price_class: str | None = None
    #: ``False``: no public on-demand offer was found on ``cloud_price_date``; ``None``: not checked.
    cloud_rentable: bool | None = None
    tensor_accumulate: str | None = None
    notes: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    @property
    def memory_bytes(self) -> float:
        """Memory capacity in bytes (vendors' GB are 10^9 bytes, except where noted)."""
        return self.memory_gb * 1e9

    @property
    def memory_bandwidth_bytes_s(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.memory_bandwidth_gbs * 1e9

    def per_device(self) -> GpuSpec:
        """The spec of one device of the package.

        Memory, bandwidth, throughputs, SMs, L2 and TDP divided by ``devices_per_package`` (itself when it is 1).
        Clocks, links and prices stay as they are.
        """
        n = self.devices_per_package
        if n == 1:
            return self
        split = {k: getattr(self, k) / n for k in ("memory_gb", "memory_bandwidth_gbs", "tdp_w", *THROUGHPUT_FIELDS)
                 if getattr(self, k) is not None}
        for k in ("tensor_cores", "sm_count"):
            if getattr(self, k) is not None:
                split[k] = getattr(self, k) // n
        if self.l2_cache_mb is not None:
            split["l2_cache_mb"] = self.l2_cache_mb / n
        return dataclasses.replace(self, **split, devices_per_package=1)

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak in FLOP/s (or OP/s) for a precision name, ``None`` if unsupported.

        Args:
            precision: one of ``PRECISION_FIELDS`` (``fp32``, ``tf32``, ``amp-bf16``, ...).
        """
        key = PRECISION_FIELDS.get(precision)
        if key is None:
            raise EstimateError(f"unknown precision {precision!r}", hint=f"accepted: {', '.join(PRECISION_FIELDS)}")
        value = getattr(self, key)
        return None if value is None else value * 1e12

    def supports(self, precision: str) -> bool:
        """Whether the card has a peak figure for this precision."""
        return self.peak_flops(precision) is not None

    @property
    def supported_precisions(self) -> tuple[str, ...]:
        """The precision names this card supports, in the catalog's order."""
        return tuple(p for p in PRECISION_FIELDS if getattr(self, PRECISION_FIELDS[p]) is not None)

    def source_for(self, field_name: str) -> str:
        """The source of one figure: its own entry in ``sources`` if any, else the record's."""
        return self.sources.get(field_name, self.source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with the keys of DESIGN.md's spec fields."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "path":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Interconnect):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


def default_specs_dir() -> Path:
    """The shipped specs directory: inside the installed package, else the repository's ``specs/``."""
    packaged = Path(__file__).resolve().parent / "specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "specs"


def _check_type(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise SpecError(f"{where}: {key} must be {names}, got {type(value).__name__} {show(value)}")
    if key in SPEC_LIMITS:
        _check_range(where, key, value)


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
    interconnect = dict(data.get("interconnect", {}))
    for key, value in interconnect.items():
        if key not in _INTERCONNECT:
            raise SpecError(f"{where}: unknown key 'interconnect.{key}'",
                            hint=f"accepted: {', '.join(_INTERCONNECT)}")
        _check_type(where, f"interconnect.{key}", value, _INTERCONNECT[key])
    sources = dict(data.get("sources", {}))
    for key, value in sources.items():
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise SpecError(f"{where}: sources names unknown field {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{where}: sources.{key} must be a non-empty string")
    if not data["source"].strip():
        raise SpecError(f"{where}: source must not be empty")
    aliases = data.get("aliases", [])
    if not all(isinstance(a, str) and a.strip() for a in aliases):
        raise SpecError(f"{where}: aliases must be a list of non-empty strings")
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
    kwargs = {k: v for k, v in data.items() if k not in ("interconnect", "sources", "aliases")}
    for key in ("memory_gb", "memory_bandwidth_gbs", "tdp_w", *THROUGHPUT_FIELDS):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])
    return GpuSpec(**kwargs, aliases=tuple(aliases), interconnect=Interconnect(**interconnect),
                   sources=sources, path=where)


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


def load_spec_file(path: Path) -> GpuSpec:
    """Read and validate one spec file; its stem must equal its ``id``."""
    from advisor.files import read_toml

    data = read_toml(path, kind="spec", what="spec file", error=SpecError,
                     hint=f"fix the file, or move it out of {path.parent}; every *.toml file there is read as a card "
                          "(`specs show h100-sxm5-80gb --json` shows every field)")
    spec = spec_from_mapping(data, where=str(path))
    if spec.id != path.stem:
        raise SpecError(f"{path}: id {spec.id!r} must equal the file name stem {path.stem!r}",
                        hint=f"rename the file to {spec.id}.toml, or set id = {path.stem!r}")
    return dataclasses.replace(spec, path=str(path))


def _load_dir(directory: Path) -> dict[str, GpuSpec]:
    if not directory.is_dir():
        raise SpecError(f"specs directory {directory} does not exist or is not a directory",
                        hint="pass a directory of <id>.toml files to --specs-dir (or $GPU_ADVISOR_SPECS)")
    specs: dict[str, GpuSpec] = {}
    for path in sorted(directory.glob("*.toml")):
        spec = load_spec_file(path)
        if spec.id in specs:
            raise SpecError(f"{path.name}: duplicate id {spec.id!r} (also in {Path(specs[spec.id].path or '').name})")
        specs[spec.id] = spec
    return specs


def _env_dirs() -> tuple[Path, ...]:
    raw = os.environ.get(ENV_SPECS_DIR, "")
    return tuple(Path(p) for p in raw.split(os.pathsep) if p)


@functools.cache
def _load_cached(directory: Path, extra_dirs: tuple[Path, ...]) -> tuple[GpuSpec, ...]:
    specs = _load_dir(directory)
    for extra in extra_dirs:
        specs.update(_load_dir(extra))  # a user's card with a shipped id replaces it
    return tuple(sorted(specs.values(), key=lambda s: (SEGMENTS.index(s.segment), s.vendor, s.release_year, s.id)))


def load_specs(directory: str | Path | None = None,
               extra_dirs: Iterable[str | Path] | None = None) -> tuple[GpuSpec, ...]:
    """Load and validate the catalog (cached per set of directories).

    Args:
        directory: the base specs directory; default: the shipped one.
        extra_dirs: users' directories whose cards add to or replace the base ones;
            default: those named in ``$GPU_ADVISOR_SPECS``.

    Raises:
        SpecError: a file is malformed or two files in one directory share an id.
    """
    base = Path(directory) if directory is not None else default_specs_dir()
    extras = tuple(Path(d) for d in extra_dirs) if extra_dirs is not None else _env_dirs()
    return _load_cached(base.resolve(), tuple(p.resolve() for p in extras))


def _index(specs: Sequence[GpuSpec]) -> dict[str, set[str]]:
    index: dict[str, set[str]] = {}
    for spec in specs:
        for label in (spec.id, spec.name, *spec.aliases):
            index.setdefault(normalize_name(label), set()).add(spec.id)
    return index


def closest_ids(name: str, specs: Sequence[GpuSpec] | None = None, n: int = 5) -> list[str]:
    """The catalog ids nearest to ``name``, for error messages."""
    specs = load_specs() if specs is None else specs
    key = normalize_name(name)
    scored: dict[str, float] = {}
    for spec in specs:
        for label in (spec.id, spec.name, *spec.aliases):
            ratio = difflib.SequenceMatcher(None, key, normalize_name(label)).ratio()
            scored[spec.id] = max(scored.get(spec.id, 0.0), ratio)
    return [i for i, _ in sorted(scored.items(), key=lambda kv: -kv[1])[:n]]


def find_gpu(name: str, specs: Sequence[GpuSpec]) -> GpuSpec:
    """Resolve a card name against ``specs`` (see ``get_gpu``)."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownGpuError(f"GPU name must be a non-empty string, got {name!r}")
    by_id = {s.id: s for s in specs}
    key = normalize_name(name)
    index = _index(specs)
    hits = index.get(key)
    if not hits and key:
        # A unique containment match ("h100pcie" in "h100pcie80gb") is accepted.
        hits = {i for label, ids in index.items() if key in label for i in ids}
    if hits and len(hits) == 1:
        return by_id[next(iter(hits))]
    if hits:
        raise UnknownGpuError(f"GPU name {name!r} is ambiguous", hint=f"did you mean one of: {', '.join(sorted(hits))}")
    raise UnknownGpuError(f"unknown GPU {name!r}",
                          hint=f"closest catalog ids: {', '.join(closest_ids(name, specs))}; "
                               "see `python -m advisor specs list`")


def get_gpu(name: str | GpuSpec, specs_dir: str | Path | None = None) -> GpuSpec:
    """Look a card up by catalog id, marketing name or the name NVML reports.

    Case, spaces, hyphens and vendor words (NVIDIA, GeForce, Tesla, Quadro, AMD, Radeon,
    Instinct) do not matter: ``get_gpu("NVIDIA A100-SXM4-80GB").id == "a100-sxm4-80gb"``.

    Raises:
        UnknownGpuError: no card matches, or several do; the message lists the closest ids.
    """
    if isinstance(name, GpuSpec):
        return name
    extra = [specs_dir] if specs_dir is not None else None
    specs = load_specs(extra_dirs=extra) if extra else load_specs()
    return find_gpu(name, specs)
