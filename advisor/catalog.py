"""The GPU specs catalog: one TOML file per card under ``specs/``, validated on load, and cards looked up by name.

The record of one card is ``advisor.gpu_spec.GpuSpec`` and the checks of a spec file are ``advisor.spec_schema``'s;
both are re-exported here, the catalog's one import for its callers.

Users add or override cards from a directory of their own spec files, given as
``load_specs(extra_dirs=[...])``, ``--specs-dir`` on the CLI, or the ``GPU_ADVISOR_SPECS``
environment variable (``os.pathsep``-separated).  A user file whose id matches a shipped
card replaces it; duplicate ids inside one directory are an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from advisor.errors import SpecError, UnknownGpuError
from advisor.gpu_spec import (
    CLOUD_PRICE_CLASSES,
    PRECISION_FIELDS,
    PRICE_KINDS,
    SEGMENTS,
    THROUGHPUT_FIELDS,
    VENDORS,
    GpuSpec,
    Interconnect,
    Segment,
    pcie_bandwidth_gbs,
)
from advisor.spec_schema import _INTERCONNECT as _INTERCONNECT
from advisor.spec_schema import _OPTIONAL as _OPTIONAL
from advisor.spec_schema import _REQUIRED as _REQUIRED
from advisor.spec_schema import SPEC_LIMITS, spec_from_mapping

__all__ = ["CLOUD_PRICE_CLASSES", "ENV_SPECS_DIR", "PRECISION_FIELDS", "PRICE_KINDS", "SEGMENTS", "SPEC_LIMITS",
           "THROUGHPUT_FIELDS", "VENDORS", "GpuSpec", "Interconnect", "Segment", "closest_ids", "default_specs_dir",
           "find_gpu", "get_gpu", "load_spec_file", "load_specs", "normalize_name", "pcie_bandwidth_gbs",
           "spec_from_mapping"]

ENV_SPECS_DIR = "GPU_ADVISOR_SPECS"

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


def default_specs_dir() -> Path:
    """The shipped specs directory: inside the installed package, else the repository's ``specs/``."""
    packaged = Path(__file__).resolve().parent / "specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "specs"


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
