"""Estimator profiles: one per micro-architecture, as data (``advisor/profiles/<id>.toml``), and the one loader.

Each profile file holds every figure the estimator uses for its family (GEMM / conv / vector / memory
fractions, the library calls' host cost, the attention path, alignment, workspaces, the GeForce clock, the
power model's reference card, ...), each with its evidence and source.  A figure not measured for the family
is taken from another profile *explicitly* (``{ inherit = "<id>", evidence = "inherited", source = "why" }``),
so no figure comes from an implicit default.  Each profile's ``[match]`` names the catalog cards it prices
(``cards``, by id) or a rule on vendor, architecture and segment; every catalog card maps to exactly one
profile (``profile_for``; tests/test_profiles.py).  A card no rule matches (a user's own spec directory, the
host CPU of ``validate``) takes the ``generic`` profile, and its estimate says so.

This module is the only place that knows architecture names: the rest of the estimator reads the figures of
the card's profile.  Pure data: the files are read once (``functools.cache``), never at import.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import SpecError
from advisor.estimator.conv import CONV_FP32_MATHS
from advisor.estimator.efficiency import ArchEfficiency
from advisor.units import MiB

#: Evidence levels, strongest first: ``measured`` on this family (kernel data, a published matmul table, the
#: shared GPU profile), ``literature`` (microbenchmark papers, vendor figures, reports), ``inherited`` (taken
#: from another family's profile).  A probe of the card (``calibrated``) beats all three at run time.
EVIDENCE = ("measured", "literature", "inherited")
#: Figure name -> type of its value.
FIGURES: dict[str, type | tuple[type, ...]] = {
    "matmul": float, "conv": float, "vector": float, "memory": float, "h2d": float,
    "matmul_vector": (float, str), "norm_memory": float, "launch_overhead_us": float, "cuda_context_mib": float,
    "clock_geforce": float, "gemm_clock": float, "power_reference": str, "fused_attention": bool,
    "layout_transposes": bool, "conv_fp32_math": str,
    "attention_upgrade": str, "unaligned_fraction": float, "workspace_mib": float, "unified_memory": bool,
    "fp32_matrix": float, "fp8_matmul": float,
    "conv_forward_ops": float, "conv_backward_ops": float, "recurrent_forward_ops": float,
    "recurrent_backward_ops": float, "embedding_backward_ops": float, "attention_forward_ops": float,
    "attention_backward_ops": float, "attention_inference_ops": float, "gemm_forward_ops": float,
    "gemm_backward_ops": float, "attention_backward_call_us": float, "attention_backward_block_us": float,
}
#: The library-call figures: (call kind, phase) -> figure name (``advisor.estimator.host``).
LIBRARY_FIGURES: dict[tuple[str, str], str] = {
    ("conv", "forward"): "conv_forward_ops", ("conv", "backward"): "conv_backward_ops",
    ("recurrent", "forward"): "recurrent_forward_ops", ("recurrent", "backward"): "recurrent_backward_ops",
    ("embedding", "backward"): "embedding_backward_ops", ("attention", "forward"): "attention_forward_ops",
    ("attention", "backward"): "attention_backward_ops", ("attention", "inference"): "attention_inference_ops",
    ("gemm", "forward"): "gemm_forward_ops", ("gemm", "backward"): "gemm_backward_ops"}
#: Figures that may be inherited *relative to the aligned GEMM* (``relative = true``): the parent's value times
#: this family's aligned GEMM rate over the parent's (``matmul`` x ``gemm_clock``, both fractions of the
#: boost-clock peak), i.e. the parent's ratio to its own aligned GEMMs carried over, not its absolute fraction.
#: An align-1 GEMM is slowed by its scalar loads relative to what the same matrix units reach with vector loads;
#: a family whose aligned GEMMs reach half the parent's would otherwise get an unaligned GEMM nearly as fast as
#: its aligned one.
RELATIVE_FIGURES = ("unaligned_fraction",)
GENERIC_ID = "generic"
_HINT = "each figure is { value = ..., evidence = \"measured|literature|inherited\", source = \"...\" } or " \
        "{ inherit = \"<profile id>\", evidence = \"inherited\", source = \"why it applies\" }"


def default_directory() -> Path:
    """Where the profile files live (inside the package, so they ship in the wheel)."""
    return Path(__file__).resolve().parent.parent / "profiles"


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a profile: its value, how strong its evidence is, and where it comes from."""

    value: Any
    evidence: str
    source: str
    inherited_from: str | None = None
    relative: bool = False  # inherited relative to the aligned GEMM (RELATIVE_FIGURES)


@dataclass(frozen=True, slots=True)
class Profile:
    """The figures of one micro-architecture and the cards they price."""

    id: str
    name: str
    evidence: str
    vendor: str | None
    architectures: tuple[str, ...]
    segments: tuple[str, ...]
    cards: tuple[str, ...]
    figures: Mapping[str, Figure] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """A figure's value (the inherited one resolved)."""
        return self.figures[name].value

    def matches(self, spec: Any) -> bool:
        """Whether the rule (vendor, architecture, segment) takes ``spec``; the ``cards`` list is checked apart."""
        if not self.architectures:
            return False
        if self.vendor and spec.vendor.lower() != self.vendor:
            return False
        if spec.architecture.strip().lower() not in self.architectures:
            return False
        return not self.segments or spec.segment.lower() in self.segments

    def inherited(self) -> list[str]:
        """Names of the figures taken from another profile."""
        return sorted(k for k, f in self.figures.items() if f.inherited_from)


def _raw(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path.name}: not a readable profile: {exc}", hint=_HINT) from exc
    for key in ("id", "name", "evidence", "figures"):
        if key not in data:
            raise SpecError(f"{path.name}: missing {key!r}", hint=_HINT)
    if data["id"] != path.stem:
        raise SpecError(f"{path.name}: id {data['id']!r} is not the file name", hint="name the file <id>.toml")
    if data["evidence"] not in EVIDENCE:
        raise SpecError(f"{path.name}: evidence {data['evidence']!r} is not one of {', '.join(EVIDENCE)}")
    missing = sorted(set(FIGURES) - set(data["figures"]))
    unknown = sorted(set(data["figures"]) - set(FIGURES))
    if missing or unknown:
        raise SpecError(f"{path.name}: " + "; ".join(
            part for part in (f"missing figures {', '.join(missing)}" if missing else "",
                              f"unknown figures {', '.join(unknown)}" if unknown else "") if part),
            hint="every profile states every figure, by value or by an explicit inherit")
    for name, fig in data["figures"].items():
        if not isinstance(fig, dict) or ("value" in fig) == ("inherit" in fig):
            raise SpecError(f"{path.name}: figure {name!r} needs exactly one of value / inherit", hint=_HINT)
        if fig.get("evidence") not in EVIDENCE or not str(fig.get("source", "")).strip():
            raise SpecError(f"{path.name}: figure {name!r} needs an evidence level and a source", hint=_HINT)
        if "inherit" in fig and fig["evidence"] != "inherited":
            raise SpecError(f"{path.name}: figure {name!r} is inherited: its evidence is 'inherited'", hint=_HINT)
        if "relative" in fig and not (name in RELATIVE_FIGURES and "inherit" in fig and fig["relative"] is True):
            raise SpecError(f"{path.name}: figure {name!r}: `relative = true` goes with an inherit, and only on "
                            f"{', '.join(RELATIVE_FIGURES)}", hint=_HINT)
        if "value" in fig:
            kind = FIGURES[name]
            value = fig["value"]
            ok = isinstance(value, kind) and not (kind is float and isinstance(value, bool))
            if not ok and not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
                raise SpecError(f"{path.name}: figure {name!r} = {value!r} is not a {kind}", hint=_HINT)
            if name == "matmul_vector" and isinstance(value, str) and value != "matmul":
                raise SpecError(f"{path.name}: matmul_vector is a fraction or \"matmul\" (the GEMM figure)")
            if name == "conv_fp32_math" and value not in CONV_FP32_MATHS:
                raise SpecError(f"{path.name}: conv_fp32_math {value!r} is not one of {', '.join(CONV_FP32_MATHS)}")
    return data


def _resolve(raw: Mapping[str, dict[str, Any]]) -> dict[str, Profile]:
    resolved: dict[tuple[str, str], Figure] = {}

    def figure(pid: str, name: str, seen: tuple[str, ...] = ()) -> Figure:
        if (pid, name) in resolved:
            return resolved[(pid, name)]
        if pid in seen:
            raise SpecError(f"profiles inherit {name!r} in a cycle: {' -> '.join((*seen, pid))}")
        if pid not in raw:
            raise SpecError(f"{seen[-1]}.toml: figure {name!r} inherits from unknown profile {pid!r}", hint=_HINT)
        fig = raw[pid]["figures"][name]
        if "inherit" in fig:
            parent = figure(fig["inherit"], name, (*seen, pid))
            value = parent.value
            if fig.get("relative"):
                value *= aligned_gemm(pid, seen) / aligned_gemm(fig["inherit"], seen)
            out = Figure(value, "inherited", f"{fig['source']} ({fig['inherit']}: {parent.source})",
                         fig["inherit"], bool(fig.get("relative")))
        else:
            value = fig["value"]
            out = Figure(float(value) if FIGURES[name] is float else value, fig["evidence"], fig["source"])
        resolved[(pid, name)] = out
        return out

    def aligned_gemm(pid: str, seen: tuple[str, ...]) -> float:
        """A family's aligned GEMM rate as a fraction of its boost-clock peak."""
        return float(figure(pid, "matmul", seen).value) * float(figure(pid, "gemm_clock", seen).value)

    out = {}
    for pid, data in raw.items():
        match = data.get("match", {})
        out[pid] = Profile(
            id=pid, name=data["name"], evidence=data["evidence"], vendor=(match.get("vendor") or None),
            architectures=tuple(a.strip().lower() for a in match.get("architectures", ())),
            segments=tuple(s.lower() for s in match.get("segments", ())), cards=tuple(match.get("cards", ())),
            figures={name: figure(pid, name) for name in FIGURES})
    if GENERIC_ID not in out:
        raise SpecError(f"no {GENERIC_ID}.toml profile", hint="the profile directory lacks its fallback")
    return out


@functools.cache
def load_profiles(directory: str | None = None) -> dict[str, Profile]:
    """Every profile by id (``directory``: default ``default_directory()``).

    Raises:
        SpecError: a profile file that is unreadable or incomplete, or an inheritance that does not resolve.
    """
    root = Path(directory) if directory else default_directory()
    raw = {path.stem: _raw(path) for path in sorted(root.glob("*.toml"))}
    return _resolve(raw)


def profile_by_id(name: str) -> Profile:
    """A profile by its id (case-insensitive).

    Raises:
        SpecError: no such profile.
    """
    profiles = load_profiles()
    found = profiles.get(name.strip().lower())
    if found is None:
        raise SpecError(f"no estimator profile {name!r}", hint=f"profiles: {', '.join(sorted(profiles))}")
    return found


def matching_profiles(spec: Any) -> list[Profile]:
    """The profiles that claim ``spec``: those listing its id, else those whose rule takes it."""
    profiles = load_profiles()
    listed = [p for p in profiles.values() if spec.id in p.cards]
    return listed or [p for p in profiles.values() if p.matches(spec)]


def profile_for(spec: Any) -> Profile:
    """The one profile that prices ``spec`` (``generic`` when none claims it).

    Raises:
        SpecError: two profiles claim the card.
    """
    return _profile_for(spec.id, spec.vendor, spec.architecture, spec.segment)


@functools.cache
def _profile_for(card_id: str, vendor: str, architecture: str, segment: str) -> Profile:
    """``profile_for`` by the fields the match rules read (``recommend`` asks once per card and count)."""
    spec = _Card(card_id, vendor, architecture, segment)
    found = matching_profiles(spec)
    if len(found) > 1:
        raise SpecError(f"{spec.id}: claimed by profiles {', '.join(p.id for p in found)}",
                        hint="a card maps to exactly one profile: list it in one profile's cards")
    return found[0] if found else load_profiles()[GENERIC_ID]


@dataclass(frozen=True, slots=True)
class _Card:
    id: str
    vendor: str
    architecture: str
    segment: str


def efficiency_of(profile: Profile) -> ArchEfficiency:
    """The profile's figures as the estimator's ``ArchEfficiency`` (defaults before any probe)."""
    v = profile.value
    vector = v("matmul_vector")
    sources = "; ".join(f"{k}: {profile.figures[k].source}" for k in ("matmul", "conv", "memory"))
    return ArchEfficiency(
        profile.id, matmul=v("matmul"), conv=v("conv"), vector=v("vector"), memory=v("memory"), h2d=v("h2d"),
        launch_overhead_s=v("launch_overhead_us") * 1e-6, cuda_context_bytes=round(v("cuda_context_mib") * MiB),
        source=f"profile {profile.id} ({profile.evidence}): {sources}",
        matmul_vector=None if vector == "matmul" else vector, norm_memory=v("norm_memory"),
        evidence=profile.evidence, fused_attention=v("fused_attention"), layout_transposes=v("layout_transposes"),
        conv_fp32_math=v("conv_fp32_math"),
        unaligned=v("unaligned_fraction"), workspace_bytes=round(v("workspace_mib") * MiB),
        unified_memory=v("unified_memory"), fp32_matrix=v("fp32_matrix"), attention_upgrade=v("attention_upgrade"),
        fp8_matmul=v("fp8_matmul"),
        library_ops=tuple((key, v(name)) for key, name in LIBRARY_FIGURES.items()),
        attention_backward_floor=(v("attention_backward_call_us") * 1e-6, v("attention_backward_block_us") * 1e-6))


@functools.cache
def _efficiency_by_id(pid: str) -> ArchEfficiency:
    return efficiency_of(load_profiles()[pid])


def efficiency_for(spec: Any) -> ArchEfficiency:
    """The default ``ArchEfficiency`` of ``spec``'s profile."""
    return _efficiency_by_id(profile_for(spec).id)


def defaults_for(name: str) -> ArchEfficiency:
    """The default efficiencies of a profile named by id (``"hopper"``, ``"Ampere"``: GA100, ...).

    A card's own come from ``efficiency_for(spec)``.

    Raises:
        SpecError: no such profile.
    """
    return _efficiency_by_id(profile_by_id(name).id)
