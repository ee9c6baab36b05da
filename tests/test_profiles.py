"""Estimator profiles (advisor/profiles/*.toml): one per micro-architecture, every figure sourced, one per card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.catalog import get_gpu, load_specs
from advisor.errors import SpecError
from advisor.estimator import profiles as prof

ROOT = Path(__file__).resolve().parent.parent


def test_every_catalog_card_maps_to_exactly_one_profile_and_none_to_the_fallback() -> None:
    for spec in load_specs():
        found = prof.matching_profiles(spec)
        assert len(found) == 1, (spec.id, [p.id for p in found])
        assert found[0].id != prof.GENERIC_ID, spec.id


def test_every_figure_has_a_value_an_evidence_level_and_a_source() -> None:
    profiles = prof.load_profiles()
    assert {"pascal", "volta", "turing", "ampere", "ampere-ga10x", "ada", "hopper", "blackwell", "blackwell-sm120",
            "cdna1", "cdna2", "cdna3", "gcn5", "rdna2", "rdna3", "jetson-orin"} <= set(profiles)
    for p in profiles.values():
        assert set(p.figures) == set(prof.FIGURES), p.id
        for name, fig in p.figures.items():
            assert fig.evidence in prof.EVIDENCE and fig.source.strip(), (p.id, name)
            assert fig.value is not None, (p.id, name)
            if fig.inherited_from:  # explicit, and the parent exists and states it
                assert fig.evidence == "inherited" and fig.inherited_from in profiles, (p.id, name)
                parent = profiles[fig.inherited_from]
                scale = 1.0
                if fig.relative:  # the parent's ratio to its aligned GEMMs, on this family's aligned GEMMs
                    assert name in prof.RELATIVE_FIGURES, (p.id, name)
                    scale = (p.value("matmul") * p.value("gemm_clock")) / (
                        parent.value("matmul") * parent.value("gemm_clock"))
                expected = parent.value(name) * scale if fig.relative else parent.value(name)
                assert fig.value == (pytest.approx(expected) if fig.relative else expected), (p.id, name)


def test_a_relative_inherit_is_refused_on_other_figures(tmp_path: Path) -> None:
    import shutil

    for path in prof.default_directory().glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "cdna3.toml"
    text = target.read_text().replace('norm_memory = { inherit = "ampere",', 'norm_memory = { inherit = "ampere", '
                                      'relative = true,')
    assert text != target.read_text()
    target.write_text(text)
    with pytest.raises(SpecError, match="relative = true"):
        prof.load_profiles.__wrapped__(str(tmp_path))


def test_no_architecture_name_is_branched_on_outside_the_loader() -> None:
    names = ("hopper", "ampere", "blackwell", "volta", "turing", "pascal", "cdna", "rdna", "orin")
    for path in (ROOT / "advisor" / "estimator").glob("*.py"):
        if path.name == "profiles.py":
            continue
        for line in path.read_text().splitlines():
            code = line.split("#")[0]
            if ("==" in code or " in (" in code or " in {" in code or "frozenset" in code) and any(
                    f'"{n}' in code.lower() for n in names):
                pytest.fail(f"{path.name}: branches on an architecture name: {line.strip()}")


def test_a_profile_file_without_a_figure_is_an_error(tmp_path: Path) -> None:
    for path in prof.default_directory().glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text())
    bad = tmp_path / "hopper.toml"
    bad.write_text("\n".join(line for line in bad.read_text().splitlines() if not line.startswith("conv =")))
    with pytest.raises(SpecError, match="missing figures conv"):
        prof.load_profiles(str(tmp_path))
    bad.write_text(bad.read_text() + '\nconv = { inherit = "nowhere", evidence = "inherited", source = "x" }\n')
    with pytest.raises(SpecError, match="unknown profile 'nowhere'"):
        prof.load_profiles(str(tmp_path))


def test_estimate_json_names_the_profile_its_evidence_and_a_range(capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.cli import main

    assert main(["estimate", "--model", "gpt2", "--gpu", "rtx-5090", "--batch-size", "8", "--seq-len", "512",
                 "--calibration", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["profile"]["id"] == "blackwell-sm120" and out["profile"]["evidence"] == "inherited"
    assert "matmul" in out["profile"]["inherited_figures"]
    t = out["time"]
    assert t["evidence"] == "inherited" and t["step_s_low"] < t["step_s"] < t["step_s_high"]


def test_amd_cards_pay_their_library_calls_and_run_fp32_gemms_on_matrix_cores() -> None:
    from advisor.estimator.profiles import defaults_for

    cdna2 = defaults_for("cdna2")
    assert cdna2.library_call_ops("conv", "forward") == defaults_for("hopper").library_call_ops("conv", "forward") > 0
    assert cdna2.vector_matmul == pytest.approx(2 * cdna2.matmul)  # MI210: 45.3 matrix vs 22.6 vector TFLOP/s
    assert defaults_for("cdna3").fp32_matrix == 1.0  # the catalog's FP32 rate is already CDNA 3's matrix rate
    assert get_gpu("mi250").devices_per_package == 2  # PyTorch sees one die per device (estimate's per_device)


def _fp32_conv_rate(card: str) -> tuple[float, float]:
    """(conv FLOP/s, FP32 vector peak at the sustained clock) of an fp32 workload on ``card`` (one device)."""
    from advisor.estimator import peaks
    from advisor.estimator.power import sustained_clock
    from advisor.estimator.time import card_rates

    spec = get_gpu(card)
    spec = spec.per_device() if spec.devices_per_package > 1 else spec
    tensor_peak, vector_peak, _ = peaks(spec, "fp32")
    eff = prof.efficiency_for(spec).replace(clock=sustained_clock(spec).fraction)
    return card_rates(spec, "fp32", eff, tensor_peak, vector_peak).conv_flops, vector_peak * eff.clock


def test_fp32_convolutions_run_the_math_their_library_is_asked_for() -> None:
    """cuDNN takes PyTorch's allow_tf32 default (TF32 tensor cores); PyTorch's MIOpen descriptor asks for no math mode,
    so MIOpen runs fp32 on CDNA's matrix cores at the FP32 matrix rate, never the MI300X's xf32 (its catalog
    tf32_tflops, 4x its FP32 rate); Radeon cards without an fp32 matrix path run them on the shaders."""
    a100, _ = _fp32_conv_rate("a100-sxm4-80gb")
    spec = get_gpu("a100-sxm4-80gb")
    eff = prof.efficiency_for(spec)
    from advisor.estimator.power import sustained_clock

    assert a100 == pytest.approx(spec.tf32_tflops * 1e12 * sustained_clock(spec).fraction * eff.conv)
    mi300x, held = _fp32_conv_rate("mi300x")
    assert get_gpu("mi300x").tf32_tflops > 3 * get_gpu("mi300x").fp32_tflops
    assert mi300x == pytest.approx(held * prof.efficiency_for(get_gpu("mi300x")).conv)
    mi250x, held = _fp32_conv_rate("mi250x")
    cdna2 = prof.defaults_for("cdna2")
    assert mi250x == pytest.approx(held * cdna2.fp32_matrix * cdna2.conv) and cdna2.fp32_matrix == 2.0
    rx, held = _fp32_conv_rate("rx-7900-xtx")
    assert rx == pytest.approx(held * prof.defaults_for("rdna3").matmul)
    assert {p.value("conv_fp32_math") for p in prof.load_profiles().values() if p.vendor == "amd"} == {"matrix",
                                                                                                        "vector"}


def test_a_conv_fp32_math_outside_its_values_is_refused(tmp_path: Path) -> None:
    for path in prof.default_directory().glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text())
    target = tmp_path / "cdna2.toml"
    text = target.read_text().replace('conv_fp32_math = { value = "matrix"', 'conv_fp32_math = { value = "xf32"')
    assert text != target.read_text()
    target.write_text(text)
    with pytest.raises(SpecError, match="conv_fp32_math 'xf32'"):
        prof.load_profiles.__wrapped__(str(tmp_path))


@pytest.mark.parametrize("card", ["mi300x", "mi250x"])
@pytest.mark.parametrize("with_matmul", [False, True])
def test_a_probe_of_an_amd_card_sets_its_fp32_convolutions_from_its_fp32_conv(card: str, with_matmul: bool) -> None:
    """On ROCm the probe's conv_tf32 kernel runs fp32 math too (MIOpen ignores allow_tf32) and is a fraction of the
    xf32 peak where the catalog lists one: the calibrated fp32 convolution rate is the probe's IEEE fp32 conv, as
    measured, on CDNA 2 (fp32 on the matrix cores) and CDNA 3 alike, whether or not its fp32 matmul is calibrated."""
    from advisor.estimator import peaks
    from advisor.estimator.calibrate import apply_efficiencies
    from advisor.estimator.time import card_rates

    spec = get_gpu(card)
    spec = spec.per_device() if spec.devices_per_package > 1 else spec
    measured = {"conv_fp32": 0.4, "conv_tf32": 0.1, "sustained_clock_fraction": 0.7,
                **({"matmul_fp32": 0.5} if with_matmul else {})}
    eff, _ = apply_efficiencies(prof.efficiency_for(spec), measured, "fp32")
    tensor_peak, vector_peak, _ = peaks(spec, "fp32")
    assert card_rates(spec, "fp32", eff, tensor_peak, vector_peak).conv_flops == pytest.approx(0.4 * vector_peak)
