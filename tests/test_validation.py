"""Issue 29 items 2 and 3: bad numbers in configs, spec files and options are clean errors naming the field,
the value and what is accepted; a figure that still comes out NaN, infinite or negative is a loud bug."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from advisor import estimate, recommend
from advisor.catalog import SPEC_LIMITS, load_specs, spec_from_mapping
from advisor.cli import main
from advisor.errors import EstimateError, SpecError, WorkloadError
from advisor.estimator._checks import EstimateBug, bad_figures
from advisor.numbers import show
from advisor.workload.arch import ARCH_LIMITS
from advisor.workload.options import COUNT_LIMITS, OptionError, WorkloadOptions
from advisor.workload.presets import get_preset

GPU = "h100-sxm5-80gb"
HUGE = 10**4999  # 5,000 digits: str() of it raises ValueError


def _id(value: Any) -> str:
    return show(value)[:30]


def _cfg(preset: str, **changes: Any) -> dict[str, Any]:
    return {**get_preset(preset).config, **changes}


T5 = {"model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8,
      "vocab_size": 32128, "feed_forward_proj": "relu"}


# --- the reproductions of the issue ----------------------------------------------------------------

def test_a_negative_type_vocab_size_is_refused_not_a_negative_model() -> None:
    cfg = _cfg("bert-base", type_vocab_size=-100_000_000)
    with pytest.raises(WorkloadError) as info:
        estimate(cfg, GPU, calibration=None)
    msg = str(info.value)
    assert "type_vocab_size" in msg and "-100000000" in msg and "0 and <= 1,024" in msg
    with pytest.raises(WorkloadError, match="type_vocab_size"):
        recommend(cfg, calibration=None, max_gpus=1)


def test_negative_t5_decoder_layers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {**T5, "num_decoder_layers": -100}
    with pytest.raises(WorkloadError, match=r"num_decoder_layers must be a whole number >= 0 .* got -100"):
        estimate(cfg, GPU, calibration=None)
    with pytest.raises(WorkloadError, match="num_decoder_layers >= 1"):
        estimate({**T5, "num_decoder_layers": 0}, GPU, calibration=None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    code = main(["recommend", "--model", str(path), "--calibration", "none", "--max-gpus", "1", "--json"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err.startswith("error: ") and "num_decoder_layers" in err and "hint: " in err and "Traceback" not in err


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("hidden_size", "4096", "'4096'"),
    ("hidden_size", 4096.0, "4096.0"),
    ("hidden_size", True, "True"),
    ("num_hidden_layers", HUGE, "a 5,000-digit integer"),
    ("vocab_size", -HUGE, "a negative 5,000-digit integer"),
    ("intermediate_size", 10**12, "1000000000000"),
    ("num_attention_heads", 0, "got 0"),
    ("num_key_value_heads", [8], "[8]"),
    ("max_position_embeddings", float("nan"), "nan"),
], ids=_id)
def test_a_config_count_must_be_an_int_in_range(key: str, value: Any, shown: str) -> None:
    with pytest.raises(WorkloadError) as info:
        estimate(_cfg("llama-3-8b", **{key: value}), GPU, calibration=None)
    err = info.value
    assert key in err.message and shown in err.message and "config 'llama" in err.message
    assert err.hint is not None and "accepted: an integer from" in err.hint


@pytest.mark.parametrize(("preset", "changes", "words"), [
    ("gpt2", {"n_embd": 768, "n_head": 7}, ["n_embd 768 is not a multiple of n_head 7"]),
    ("bert-base", {"num_attention_heads": 5}, ["hidden_size 768", "num_attention_heads 5"]),
    ("llama-3-8b", {"num_key_value_heads": 5}, ["num_heads 32", "num_kv_heads 5"]),
    ("llama-3-8b", {"num_key_value_heads": 64}, ["num_heads 32", "num_kv_heads 64"]),
    ("mixtral-8x7b", {"num_experts_per_tok": 9}, ["experts_per_token 9", "num_experts (8)"]),
    ("gpt2", {"tie_word_embeddings": "false"}, ["tie_word_embeddings must be true or false", "'false'"]),
    ("llama-3-8b", {"attention_bias": 1}, ["attention_bias must be true or false"]),
    ("gpt2", {"resid_pdrop": 1.5}, ["resid_pdrop", "1.5", "<= 1"]),
    ("bert-base", {"architectures": "BertForMaskedLM"}, ["architectures must be a list"]),
    ("llama-3-8b", {"model_type": ["llama"]}, ["model_type must be a string"]),
])
def test_config_fields_that_contradict_each_other_or_have_the_wrong_type(preset: str, changes: dict[str, Any],
                                                                       words: list[str]) -> None:
    with pytest.raises(WorkloadError) as info:
        estimate(_cfg(preset, **changes), GPU, calibration=None)
    for word in words:
        assert word in str(info.value)


def test_an_unsupported_model_type_with_an_absurd_number_is_refused_before_transformers() -> None:
    for value in (HUGE, 2**64, float("inf")):
        cfg = {"model_type": "rwkv", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": value}
        with pytest.raises(WorkloadError, match=r"vocab_size = .* is not a number any model has"):
            estimate(cfg, GPU, calibration=None)


def test_a_head_dim_given_need_not_divide_the_hidden_size() -> None:
    """Gemma-7b: hidden 3072, 16 heads of 256 (4096 != 3072) is a real model."""
    cfg = _cfg("llama-3-8b", hidden_size=3072, num_attention_heads=16, num_key_value_heads=16, head_dim=256)
    e = estimate(cfg, GPU, calibration=None, seq_len=128)
    assert e.time.step_s > 0 and e.workload.arch["head_dim"] == 256


def test_every_arch_bound_is_reachable_and_the_largest_model_stays_finite() -> None:
    """The upper bounds themselves give a finite answer (not an overflow): the largest dense llama accepted."""
    hi = {k: v[1] for k, v in ARCH_LIMITS.items()}
    cfg = _cfg("llama-3-8b", num_hidden_layers=hi["num_layers"], hidden_size=hi["hidden_size"],
               num_attention_heads=hi["num_heads"], num_key_value_heads=hi["num_kv_heads"],
               intermediate_size=hi["intermediate_size"], vocab_size=hi["vocab_size"])
    e = estimate(cfg, GPU, calibration=None, seq_len=COUNT_LIMITS["seq_len"][1], batch_size=64, mode="infer",
                 gen_len=0)
    assert not e.memory.fits and 0 < e.time.step_s < float("inf") and bad_figures(e.to_dict()) == []


# --- spec files -----------------------------------------------------------------------------------

def _spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "test-card", "name": "Test Card", "vendor": "nvidia", "segment": "datacenter",
        "architecture": "Hopper", "release_year": 2024, "memory_gb": 64, "memory_type": "HBM3",
        "memory_bandwidth_gbs": 2000.0, "fp32_tflops": 50.0, "bf16_tflops": 400.0, "tdp_w": 500,
        "source": "test fixture", "interconnect": {"pcie_gen": 5, "pcie_lanes": 16}}
    for key, value in changes.items():
        if key.startswith("interconnect."):
            data["interconnect"][key.split(".", 1)[1]] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(("key", "toml_value", "words"), [
    ("memory_gb", "1e308", ["memory_gb = 1e+308 is outside", "0.01 to 100000"]),
    ("bf16_tflops", "5e-324", ["bf16_tflops = 5e-324 is outside"]),
    ("fp32_tflops", "inf", ["fp32_tflops must be a finite number, got inf"]),
    ("memory_bandwidth_gbs", "nan", ["memory_bandwidth_gbs must be a finite number, got nan"]),
    ("memory_bandwidth_gbs", "3.35e12", ["memory_bandwidth_gbs = 3350000000000.0 is outside"]),
    ("tdp_w", "-1", ["tdp_w must be > 0"]),
    ("release_year", "20240", ["release_year = 20240"]),
    ("sm_count", "0", ["sm_count must be > 0"]),
])
def test_a_spec_figure_outside_its_range_names_file_field_value_and_range(key: str, toml_value: str,
                                                                          words: list[str], tmp_path: Path) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in _spec().items() if k != "interconnect" and k != key]
    lines.append(f"{key} = {toml_value}")
    (tmp_path / "test-card.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_specs(tmp_path, extra_dirs=[])
    msg = str(info.value)
    assert "test-card.toml" in msg and "accepted:" in msg and "SPEC_LIMITS" in (info.value.hint or "")
    for word in words:
        assert word in msg


def test_spec_limits_cover_every_number_of_the_shipped_catalog() -> None:
    """Every numeric field has a range, and every shipped card is well inside it."""
    from advisor.catalog import _INTERCONNECT, _OPTIONAL, _REQUIRED

    numeric = {k for k, t in {**_REQUIRED, **_OPTIONAL}.items() if t in (int, (int, float))}
    numeric |= {f"interconnect.{k}" for k, t in _INTERCONNECT.items() if t in (int, (int, float))}
    assert numeric == set(SPEC_LIMITS)
    assert len(load_specs()) > 50


def test_spec_counts_and_relations() -> None:
    with pytest.raises(SpecError, match=r"interconnect\.pcie_gen = 9 is outside"):
        spec_from_mapping(_spec(**{"interconnect.pcie_gen": 9}))
    with pytest.raises(SpecError, match=r"sm_count must be int, got float 1\.5"):
        spec_from_mapping(_spec(sm_count=1.5))
    with pytest.raises(SpecError, match="a 5,000-digit integer"):
        spec_from_mapping(_spec(memory_gb=HUGE))
    with pytest.raises(SpecError, match="base_clock_mhz 2000 is above boost_clock_mhz 1500"):
        spec_from_mapping(_spec(base_clock_mhz=2000, boost_clock_mhz=1500))


# --- workload options -------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("batch_size", HUGE), ("batch_size", 2**40), ("seq_len", 2**40), ("seq_len", 0), ("image_size", 10**9),
    ("lora_rank", 1.0), ("gen_len", -1), ("grad_accum", "2"),
], ids=_id)
def test_an_option_out_of_range_is_one_error_for_estimates_and_builders(name: str, value: Any) -> None:
    with pytest.raises(OptionError) as info:
        WorkloadOptions(**{name: value})
    assert isinstance(info.value, EstimateError) and isinstance(info.value, WorkloadError)
    low, high = COUNT_LIMITS[name]
    assert f"{name} must be a whole number >= {low:,} and <= {high:,}, got {show(value)}" == info.value.message
    with pytest.raises(OptionError, match=name):
        recommend("llama-3-8b", calibration=None, max_gpus=1, **{name: value})


def test_num_gpus_and_epochs_have_ranges_too() -> None:
    with pytest.raises(EstimateError, match="num_gpus must be a whole number >= 1 and <= 131,072"):
        estimate("gpt2", GPU, calibration=None, num_gpus=10**6)
    with pytest.raises(EstimateError, match="epochs must be a finite number > 0"):
        estimate("gpt2", GPU, calibration=None, epochs=float("inf"))


@pytest.mark.parametrize(("name", "value"), [
    ("max_gpus", 0), ("max_gpus", 1025), ("max_gpus", True), ("dataset_samples", 0), ("dataset_samples", True),
    ("dataset_samples", 10**31), ("dataset_samples", 1.5e6),
], ids=_id)
def test_recommends_job_counts_are_checked_by_the_one_count_rule(name: str, value: Any) -> None:
    low, high = COUNT_LIMITS[name]
    with pytest.raises(OptionError) as info:
        recommend("gpt2", calibration=None, **{name: value})
    assert f"{name} must be a whole number >= {low:,} and <= {high:,}, got {show(value)}" == info.value.message


def test_the_cli_refuses_a_huge_sequence_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", "--model", "llama-3-8b", "--gpu", GPU, "--seq-len", str(2**40), "--calibration", "none"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: seq_len must be a whole number") and "16,777,216" in err


# --- the last check on every answer ---------------------------------------------------------------------

def test_an_estimate_with_a_nan_or_negative_figure_is_a_loud_bug() -> None:
    e = estimate("gpt2", GPU, calibration=None)
    with pytest.raises(EstimateBug, match=r"bug in gpu-advisor.*time\.step_s = nan"):
        dataclasses.replace(e, time=dataclasses.replace(e.time, step_s=float("nan")))
    with pytest.raises(EstimateBug, match=r"time\.step_s = 0\.0"):
        dataclasses.replace(e, time=dataclasses.replace(e.time, step_s=0.0))
    weights = {**e.memory.breakdown_bytes, "weights": -1.0}
    with pytest.raises(EstimateBug, match=r"memory\.breakdown_bytes\.weights = -1\.0"):
        dataclasses.replace(e, memory=dataclasses.replace(e.memory, breakdown_bytes=weights))
    # what may be negative: the margin of a workload that does not fit
    dataclasses.replace(e, memory=dataclasses.replace(e.memory, margin_bytes=-5.0))


def test_a_ranked_row_with_an_infinite_figure_is_a_loud_bug() -> None:
    rec = recommend("gpt2", calibration=None, max_gpus=1, gpus=[GPU])
    row = rec.rows[0]
    assert bad_figures(row.to_dict()) == []
    with pytest.raises(EstimateBug, match=r"energy_kwh = inf"):
        dataclasses.replace(row, energy_kwh=float("inf"))


def test_an_infinite_rate_or_job_size_is_refused_found_by_the_fuzz_suite(capsys: pytest.CaptureFixture[str]) -> None:
    """float() of a 400-digit flag is inf: it was taken as a loader rate, and the job's time came out inf."""
    with pytest.raises(SystemExit):
        main(["estimate", "--model", "gpt2", "--gpu", GPU, "--calibration", "none",
              "--loader-samples-per-s", "9" * 400])
    assert "--loader-samples-per-s: must be a finite number > 0" in capsys.readouterr().err
    for name in ("loader_samples_per_s", "total_tokens", "dataset_samples"):
        with pytest.raises(EstimateError, match=f"{name} must be a finite number > 0"):
            estimate("gpt2", GPU, calibration=None, **{name: float("inf")})


def test_a_5000_digit_integer_in_a_file_is_a_clean_error(tmp_path: Path) -> None:
    """json and tomllib refuse integers of more than 4,300 digits with a bare ValueError."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in _spec().items() if k not in ("interconnect", "memory_gb")]
    (tmp_path / "test-card.toml").write_text("\n".join([*lines, "memory_gb = " + "1" * 5000]) + "\n")
    with pytest.raises(SpecError, match=r"test-card\.toml.*number too long"):
        load_specs(tmp_path, extra_dirs=[])
    config = tmp_path / "config.json"
    config.write_text('{"model_type": "gpt2", "n_embd": ' + "7" * 5000 + "}")
    with pytest.raises(WorkloadError, match="number too long"):
        estimate(str(config), GPU, calibration=None)
