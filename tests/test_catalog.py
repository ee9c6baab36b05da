"""The specs catalog: every shipped file validates, bad files fail loudly, user overrides work, and
card names (ids, marketing names, the names NVML / amdsmi report) resolve to the right card."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from advisor.catalog import (
    ENV_SPECS_DIR,
    PRECISION_FIELDS,
    SEGMENTS,
    THROUGHPUT_FIELDS,
    GpuSpec,
    find_gpu,
    get_gpu,
    load_spec_file,
    load_specs,
    normalize_name,
    pcie_bandwidth_gbs,
)
from advisor.errors import EstimateError, SpecError, UnknownGpuError

ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = ROOT / "specs"
SPEC_FILES = sorted(SPECS_DIR.glob("*.toml"))
NUMERIC_FIELDS = ("memory_gb", "memory_bandwidth_gbs", *THROUGHPUT_FIELDS, "tdp_w", "tensor_cores", "sm_count",
                  "boost_clock_mhz", "l2_cache_mb", "price_usd", "cloud_usd_per_hour")
# Architectures without FP8 tensor support (FP8 arrived with Ada, Hopper, Blackwell and CDNA 3).
NO_FP8_ARCH = re.compile(r"pascal|volta|turing|ampere|gcn|cdna [12]|rdna [23]", re.IGNORECASE)
# Architectures without BF16 (Volta and Turing tensor cores, Pascal, GCN 5).
NO_BF16_ARCH = re.compile(r"pascal|volta|turing|gcn", re.IGNORECASE)


def _toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for the flat test records (tables last)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for name, table in tables:
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _record(card_id: str = "test-card", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": card_id, "name": f"Test Card {card_id}", "vendor": "nvidia", "segment": "datacenter",
        "architecture": "Hopper", "release_year": 2024, "memory_gb": 64, "memory_type": "HBM3",
        "memory_bandwidth_gbs": 2000.0, "fp32_tflops": 50.0, "bf16_tflops": 400.0, "tdp_w": 500,
        "source": "test fixture", "interconnect": {"pcie_gen": 5, "pcie_lanes": 16},
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _write(directory: Path, data: dict[str, Any], stem: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or data['id']}.toml"
    path.write_text(_toml(data))
    return path


# --- the shipped catalog -------------------------------------------------------------------------

def test_there_are_spec_files() -> None:
    assert len(SPEC_FILES) > 0


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_every_spec_file_loads_and_validates(path: Path) -> None:
    spec = load_spec_file(path)
    assert spec.id == path.stem
    assert spec.source.strip()
    assert spec.segment in SEGMENTS
    # Every figure the card has carries a source: its own, or the record's.
    for name in NUMERIC_FIELDS:
        if getattr(spec, name) is not None:
            assert spec.source_for(name).strip(), f"{path.name}: {name} has no source"
    for key in spec.sources:
        assert key in GpuSpec.__dataclass_fields__ or key == "interconnect", key
    if spec.cloud_usd_per_hour is not None or spec.cloud_rentable is not None:
        assert spec.cloud_price_date and re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", spec.cloud_price_date)
    if spec.cloud_usd_per_hour is not None:
        assert "cloud_usd_per_hour" in spec.sources, f"{path.name}: a cloud price needs its own source"
    if spec.cloud_rentable is False:
        assert "cloud_rentable" in spec.sources, f"{path.name}: 'not rentable' needs its own source"
    assert 2010 <= spec.release_year <= 2030
    json.dumps(spec.to_dict())  # JSON-safe


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_spec_figures_are_plausible(path: Path) -> None:
    """Cheap physics checks that catch sparse-for-dense and unit slips."""
    spec = load_spec_file(path)
    assert 1 <= spec.memory_gb <= 512
    assert 20 <= spec.memory_bandwidth_gbs <= 20_000
    assert 0.1 <= spec.fp32_tflops <= 200
    assert 5 <= spec.tdp_w <= 1500
    if spec.fp8_tflops is not None:
        assert not NO_FP8_ARCH.search(spec.architecture), f"{spec.id}: {spec.architecture} has no FP8"
    if spec.bf16_tflops is not None:
        assert not NO_BF16_ARCH.search(spec.architecture), f"{spec.id}: {spec.architecture} has no BF16"
    if spec.tf32_tflops is not None:
        assert not NO_BF16_ARCH.search(spec.architecture), f"{spec.id}: {spec.architecture} has no TF32"
        assert spec.fp16_tflops is not None and spec.tf32_tflops <= spec.fp16_tflops
    # Tensor-core rates rise (or stay) as precision falls: tf32 <= fp16 <= fp8 <= int4 ...
    ladder = [spec.tf32_tflops, spec.fp16_tflops, spec.fp8_tflops]
    present = [v for v in ladder if v is not None]
    assert present == sorted(present), f"{spec.id}: tensor rates not monotone {ladder}"
    if spec.fp8_tflops is not None and spec.int8_tops is not None:
        assert spec.int8_tops >= spec.fp8_tflops
    if spec.int4_tops is not None and spec.int8_tops is not None:
        assert spec.int4_tops >= spec.int8_tops
    if spec.cloud_usd_per_hour is not None:
        assert 0.05 <= spec.cloud_usd_per_hour <= 20


def test_ids_are_unique_and_match_their_files() -> None:
    ids = [tomllib.loads(p.read_text())["id"] for p in SPEC_FILES]
    assert len(ids) == len(set(ids))
    assert ids == [p.stem for p in SPEC_FILES]


def test_catalog_has_at_least_sixty_cards_over_all_six_segments() -> None:
    specs = load_specs()
    assert len(specs) >= 60, f"only {len(specs)} cards"
    assert {s.segment for s in specs} == set(SEGMENTS)


# Server cards whose rental status no public source settled (2026-11; the A30 got RunPod's 2025-05 rate in 2026-12):
# the V100 PCIe 32GB, MI100, MI250 and MI250X have neither a sourced price nor a checked absence
# (an undated aggregator lists MI100/MI250/MI250X offers).  Remove a card from here when it gets either.
RENTAL_UNRESOLVED = {"v100-pcie-32gb", "mi100", "mi250", "mi250x"}


def test_every_datacenter_card_has_a_cloud_price_or_says_not_rentable() -> None:
    """Rent-versus-buy advice needs a rental figure (or a checked absence) for every server card."""
    server = [s for s in load_specs() if s.segment in ("datacenter", "instinct")]
    unpriced = {s.id for s in server if s.cloud_usd_per_hour is None and s.cloud_rentable is not False}
    assert not unpriced - RENTAL_UNRESOLVED, f"no price, not rentable=false: {unpriced - RENTAL_UNRESOLVED}"
    assert unpriced >= RENTAL_UNRESOLVED, f"now resolved, drop from RENTAL_UNRESOLVED: {RENTAL_UNRESOLVED - unpriced}"


def test_no_two_cards_share_a_lookup_name() -> None:
    owner: dict[str, str] = {}
    for spec in load_specs():
        for label in (spec.id, spec.name, *spec.aliases):
            key = normalize_name(label)
            assert owner.setdefault(key, spec.id) == spec.id, f"{label!r}: {owner[key]} and {spec.id}"


def test_every_name_and_alias_resolves_to_its_own_card() -> None:
    specs = load_specs()
    for spec in specs:
        for label in (spec.id, spec.name, *spec.aliases):
            assert find_gpu(label, specs).id == spec.id, label


def test_known_datasheet_figures() -> None:
    """Spot checks against the vendors' datasheets (dense figures)."""
    h100 = get_gpu("h100-sxm5-80gb")
    assert h100.memory_bandwidth_gbs == 3350 and h100.bf16_tflops == pytest.approx(989.4, rel=0.01)
    assert get_gpu("a100-sxm4-40gb").memory_bandwidth_gbs == 1555
    assert get_gpu("a100-pcie-80gb").memory_bandwidth_gbs == 1935
    assert get_gpu("a100-sxm4-80gb").memory_bandwidth_gbs == 2039
    assert get_gpu("a100-sxm4-80gb").bf16_tflops == 312
    h200 = get_gpu("NVIDIA H200")
    assert (h200.memory_gb, h200.memory_bandwidth_gbs) == (141, 4800)
    assert get_gpu("h100-pcie-80gb").fp16_tflops == pytest.approx(756, rel=0.01)
    assert get_gpu("mi250x").fp16_tflops == 383 and get_gpu("mi250").fp16_tflops == pytest.approx(362.1)
    assert get_gpu("mi300x").bf16_tflops == pytest.approx(1307.4)
    v100 = get_gpu("Tesla V100-SXM2-32GB")
    assert v100.bf16_tflops is None and v100.tf32_tflops is None and v100.fp16_tflops == 125
    t4 = get_gpu("Tesla T4")
    assert t4.bf16_tflops is None and t4.fp8_tflops is None and t4.int8_tops == 130


def test_peak_flops_and_supported_precisions() -> None:
    a100 = get_gpu("a100-sxm4-80gb")
    assert a100.peak_flops("amp-bf16") == pytest.approx(312e12)
    assert a100.peak_flops("fp8") is None and not a100.supports("fp8")
    assert "bf16" in a100.supported_precisions and "fp8" not in a100.supported_precisions
    assert set(get_gpu("h100-sxm5-80gb").supported_precisions) >= {"fp32", "tf32", "bf16", "fp8", "int8"}
    with pytest.raises(EstimateError, match="fp13"):
        a100.peak_flops("fp13")
    assert set(PRECISION_FIELDS) >= {"fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16", "fp8", "int8", "int4"}


def test_interconnect_bandwidths() -> None:
    assert pcie_bandwidth_gbs(4, 16) == pytest.approx(31.5, rel=0.01)
    assert pcie_bandwidth_gbs(5, 16) == pytest.approx(63.0, rel=0.01)
    assert pcie_bandwidth_gbs(None, 16) is None
    h100 = get_gpu("h100-sxm5-80gb").interconnect
    assert h100.peer_gbs == 450 and h100.pcie_gbs == pytest.approx(63.0, rel=0.01)
    mi300x = get_gpu("mi300x").interconnect
    assert mi300x.peer_gbs == 448
    assert get_gpu("l40s").interconnect.peer_gbs == pytest.approx(31.5, rel=0.01)  # PCIe only
    assert get_gpu("gh200-96gb").interconnect.c2c_gbs == 900


# --- bad files -----------------------------------------------------------------------------------

BAD_CASES = {
    "unknown key": (_record(fp42_tflops=1.0), "fp42_tflops"),
    "unknown interconnect key": (_record(interconnect={"warp_drive_gbs": 9.0}), "warp_drive_gbs"),
    "missing required key": (_record(memory_gb=None), "memory_gb"),
    "wrong type": (_record(memory_gb="eighty"), "memory_gb"),
    "bool is not a number": (_record(tdp_w=True), "tdp_w"),
    "wrong type int field": (_record(release_year=2024.5), "release_year"),
    "non-positive number": (_record(fp32_tflops=0), "fp32_tflops"),
    "negative number": (_record(price_usd=-5), "price_usd"),
    "bad segment": (_record(segment="mainframe"), "segment"),
    "bad vendor": (_record(vendor="intel"), "vendor"),
    "empty source": (_record(source="  "), "source"),
    "sources names unknown field": (_record(sources={"fp99_tflops": "x"}), "fp99_tflops"),
    "cloud price without date": (_record(cloud_usd_per_hour=2.0), "cloud_price_date"),
    "rentable flag without date": (_record(cloud_rentable=False), "cloud_price_date"),
    "rentable flag not a bool": (_record(cloud_rentable="no", cloud_price_date="2025-07"), "cloud_rentable"),
    "not rentable yet priced": (_record(cloud_rentable=False, cloud_usd_per_hour=1.0, cloud_price_date="2025-07"),
                                "cloud_rentable"),
    "purchase price without kind and date": (_record(price_usd=1000), "price_kind"),
    "unknown price kind": (_record(price_usd=1000, price_kind="msrp", price_date="2025-01"), "price_kind"),
    "not sold yet priced": (_record(price_usd=1000, price_kind="not sold", price_date="2025-01",
                                    sources={"price_kind": "x"}), "not sold"),
    "price kind without date": (_record(price_kind="list"), "price_date"),
    "price date not a month": (_record(price_usd=1000, price_kind="list", price_date="Jan 2025"), "price_date"),
    "not sold without where it was checked": (_record(price_kind="not sold", price_date="2025-01"),
                                              "sources.price_kind"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_file_error_names_file_and_field(case: str, tmp_path: Path) -> None:
    data, field = BAD_CASES[case]
    _write(tmp_path, data)
    with pytest.raises(SpecError) as exc:
        load_specs(tmp_path, extra_dirs=[])
    assert "test-card.toml" in str(exc.value)
    assert field in str(exc.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('id = "broken"\nname = "unterminated\n')
    with pytest.raises(SpecError, match=r"broken\.toml'?: not valid TOML"):
        load_specs(tmp_path, extra_dirs=[])


def test_id_must_equal_file_stem(tmp_path: Path) -> None:
    _write(tmp_path, _record("card-a"), stem="card-b")
    with pytest.raises(SpecError, match=r"card-b\.toml.*'card-a'.*'card-b'"):
        load_specs(tmp_path, extra_dirs=[])


def test_two_files_with_one_id_in_one_directory(tmp_path: Path) -> None:
    # The stem rule makes a second file with the same id fail first, naming that file and the id.
    _write(tmp_path, _record("same-id"))
    _write(tmp_path, _record("same-id"), stem="another-name")
    with pytest.raises(SpecError) as exc:
        load_specs(tmp_path, extra_dirs=[])
    assert "another-name.toml" in str(exc.value) and "'same-id'" in str(exc.value)


def test_duplicate_id_check_names_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The duplicate-id check itself, with the stem rule lifted so two files can carry one id."""
    import advisor.catalog as catalog

    def without_stem_rule(path: Path) -> GpuSpec:
        spec = catalog.spec_from_mapping(tomllib.loads(path.read_text()), where=path.name)
        return dataclasses.replace(spec, path=str(path))

    _write(tmp_path, _record("same-id"), stem="first")
    _write(tmp_path, _record("same-id"), stem="second")
    monkeypatch.setattr(catalog, "load_spec_file", without_stem_rule)
    with pytest.raises(SpecError) as exc:
        catalog._load_dir(tmp_path)
    message = str(exc.value)
    assert message.startswith("second.toml: duplicate id 'same-id'") and "first.toml" in message


def test_missing_directory_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_specs(tmp_path / "nowhere", extra_dirs=[])


# --- user overrides --------------------------------------------------------------------------------

def test_extra_dir_adds_a_card_and_replaces_a_shipped_one(tmp_path: Path) -> None:
    user = tmp_path / "mine-extra"
    shipped = get_gpu("h100-sxm5-80gb")
    override = tomllib.loads((SPECS_DIR / "h100-sxm5-80gb.toml").read_text())
    override["cloud_usd_per_hour"] = 1.23
    override["cloud_price_date"] = "2026-01"
    _write(user, override)
    _write(user, _record("my-lab-card", segment="workstation"))
    specs = load_specs(extra_dirs=[user])
    by_id = {s.id: s for s in specs}
    assert "my-lab-card" in by_id
    assert by_id["h100-sxm5-80gb"].cloud_usd_per_hour == 1.23 != shipped.cloud_usd_per_hour
    assert len(specs) == len(load_specs()) + 1
    assert find_gpu("NVIDIA H100 80GB HBM3", specs).cloud_usd_per_hour == 1.23
    # get_gpu takes the same directory
    assert get_gpu("my-lab-card", specs_dir=user).name == "Test Card my-lab-card"


def test_env_var_adds_and_replaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "mine-env"
    override = tomllib.loads((SPECS_DIR / "t4.toml").read_text())
    override["cloud_usd_per_hour"] = 0.11
    override["cloud_price_date"] = "2026-02"
    _write(user, override)
    _write(user, _record("env-card"))
    monkeypatch.setenv(ENV_SPECS_DIR, str(user))
    specs = load_specs()
    by_id = {s.id: s for s in specs}
    assert by_id["t4"].cloud_usd_per_hour == 0.11 and "env-card" in by_id
    assert get_gpu("Tesla T4").cloud_usd_per_hour == 0.11
    monkeypatch.delenv(ENV_SPECS_DIR)
    assert get_gpu("Tesla T4").cloud_usd_per_hour != 0.11


def test_bad_user_file_is_reported(tmp_path: Path) -> None:
    user = tmp_path / "mine-bad"
    _write(user, _record("bad-user-card", tdp_w=-1))
    with pytest.raises(SpecError, match=r"bad-user-card\.toml: tdp_w must be > 0"):
        load_specs(extra_dirs=[user])


# --- lookups ---------------------------------------------------------------------------------------

NVML_NAMES = {
    "NVIDIA H100 80GB HBM3": "h100-sxm5-80gb",
    "NVIDIA H100 PCIe": "h100-pcie-80gb",
    "NVIDIA H100 NVL": "h100-nvl-94gb",
    "NVIDIA A100-SXM4-80GB": "a100-sxm4-80gb",
    "NVIDIA A100-SXM4-40GB": "a100-sxm4-40gb",
    "NVIDIA A100-PCIE-40GB": "a100-pcie-40gb",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "Tesla V100-SXM2-32GB": "v100-sxm2-32gb",
    "Tesla V100-SXM2-16GB": "v100-sxm2-16gb",
    "Tesla V100-PCIE-32GB": "v100-pcie-32gb",
    "Tesla P100-SXM2-16GB": "p100-sxm2-16gb",
    "Tesla T4": "t4",
    "NVIDIA A10": "a10",
    "NVIDIA A30": "a30",
    "NVIDIA A40": "a40",
    "NVIDIA L4": "l4",
    "NVIDIA L40": "l40",
    "NVIDIA L40S": "l40s",
    "NVIDIA H200": "h200-sxm-141gb",
    "NVIDIA GH200 480GB": "gh200-96gb",
    "NVIDIA B200": "b200",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "NVIDIA RTX A6000": "rtx-a6000",
    "NVIDIA RTX 6000 Ada Generation": "rtx-6000-ada",
    "AMD Instinct MI300X": "mi300x",
    "AMD Instinct MI250X": "mi250x",
    "AMD Instinct MI250": "mi250",
    "AMD Instinct MI210": "mi210",
    "AMD Radeon RX 7900 XTX": "rx-7900-xtx",
    "AMD Radeon PRO W7900": "radeon-pro-w7900",
}


@pytest.mark.parametrize("name", list(NVML_NAMES))
def test_nvml_names_resolve(name: str) -> None:
    assert get_gpu(name).id == NVML_NAMES[name]


@pytest.mark.parametrize(("name", "expected"), [
    ("nvidia h100 80gb hbm3", "h100-sxm5-80gb"),
    ("NVIDIA  H100   80GB  HBM3", "h100-sxm5-80gb"),
    ("H100-SXM5-80GB", "h100-sxm5-80gb"),
    ("h100_sxm5_80gb", "h100-sxm5-80gb"),
    ("a100 sxm4 80gb", "a100-sxm4-80gb"),
    ("A100SXM480GB", "a100-sxm4-80gb"),
    ("tesla-v100-sxm2-32gb", "v100-sxm2-32gb"),
    ("t4", "t4"),
    ("TESLA T4", "t4"),
    ("rtx 4090", "rtx-4090"),
    ("GeForce RTX 4090", "rtx-4090"),
    ("Radeon RX 7900 XTX", "rx-7900-xtx"),
    ("mi300x", "mi300x"),
    ("Instinct MI300X", "mi300x"),
    ("l40s", "l40s"),
    ("L40", "l40"),
    ("h200", "h200-sxm-141gb"),
    ("gh200", "gh200-96gb"),
])
def test_case_space_hyphen_and_vendor_variants(name: str, expected: str) -> None:
    assert get_gpu(name).id == expected


def test_get_gpu_passes_a_spec_through() -> None:
    spec = get_gpu("t4")
    assert get_gpu(spec) is spec


@pytest.mark.parametrize("name", ["H100", "A100", "nvidia a100", "V100"])
def test_ambiguous_names_list_the_candidates(name: str) -> None:
    with pytest.raises(UnknownGpuError) as exc:
        get_gpu(name)
    assert "ambiguous" in exc.value.message
    key = normalize_name(name)
    candidates = [s.id for s in load_specs() if any(key in normalize_name(lbl) for lbl in (s.id, s.name, *s.aliases))]
    assert len(candidates) >= 2
    for card_id in candidates:
        assert card_id in (exc.value.hint or "")


@pytest.mark.parametrize(("name", "near"), [("NVIDIA Z9000 Ultra", None), ("h100 sxm6", "h100-sxm5-80gb"),
                                            ("mi301x", "mi300x")])
def test_unknown_names_list_the_closest_ids(name: str, near: str | None) -> None:
    with pytest.raises(UnknownGpuError) as exc:
        get_gpu(name)
    assert repr(name) in exc.value.message
    hint = exc.value.hint or ""
    assert "closest catalog ids:" in hint
    listed = hint.split("closest catalog ids:")[1].split(";")[0].split(",")
    assert len([i for i in listed if i.strip()]) == 5
    if near:
        assert near in hint


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_empty_or_non_string_names(bad: Any) -> None:
    with pytest.raises(UnknownGpuError):
        get_gpu(bad)


def test_interconnect_figures_must_be_positive(tmp_path) -> None:
    import tomllib

    from advisor.catalog import default_specs_dir, load_specs
    from advisor.errors import SpecError

    text = (default_specs_dir() / "rtx-4090.toml").read_text().replace("pcie_lanes = 16", "pcie_lanes = 0")
    assert tomllib.loads(text)["interconnect"]["pcie_lanes"] == 0
    (tmp_path / "rtx-4090.toml").write_text(text)
    with pytest.raises(SpecError, match=r"rtx-4090\.toml: interconnect\.pcie_lanes must be > 0"):
        load_specs(tmp_path, extra_dirs=[])
