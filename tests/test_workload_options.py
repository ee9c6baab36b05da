"""WorkloadOptions: one home for the workload keywords of estimate(), recommend() and the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from advisor.api import estimate
from advisor.commands.estimate import add_workload_args, workload_kwargs
from advisor.errors import EstimateError
from advisor.recommender import recommend
from advisor.workload.options import WorkloadOptions


@pytest.mark.parametrize("func", [estimate, recommend])
def test_public_keywords_take_every_option_with_its_default(func) -> None:
    params = inspect.signature(func).parameters
    for f in dataclasses.fields(WorkloadOptions):
        assert f.name in params, f"{func.__name__} lacks {f.name}"
        assert params[f.name].default == f.default, f"{func.__name__}: {f.name} default differs"


def test_from_preset_spells_the_options_with_the_same_defaults() -> None:
    """from_preset keeps an explicit signature (help and type hints for users); it may not drift from the record."""
    from advisor.workload import from_preset

    params = inspect.signature(from_preset).parameters
    for f in dataclasses.fields(WorkloadOptions):
        if f.name in params:
            assert params[f.name].default == f.default, f"from_preset: {f.name} default differs"
    assert {"batch_size", "precision", "optimizer", "mode", "seq_len", "grad_accum"} <= set(params)


def test_cli_workload_flags_fill_every_option() -> None:
    parser = argparse.ArgumentParser()
    add_workload_args(parser)
    args = parser.parse_args(["--model", "gpt2", "--batch-size", "4", "--grad-accum", "2", "--calibration", "none"])
    kw = workload_kwargs(args)
    assert {k: kw[k] for k in WorkloadOptions.names()} == WorkloadOptions(batch_size=4, grad_accum=2).keywords()


@pytest.mark.parametrize(("change", "message"), [
    ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
    ({"grad_accum": True}, "grad_accum must be a whole number >= 1"),
    ({"precision": "fp99"}, "unknown precision 'fp99'"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
    ({"mode": "serve"}, "unknown mode 'serve'"),
])
def test_validate_names_the_bad_option(change, message) -> None:
    with pytest.raises(EstimateError, match=message) as info:
        WorkloadOptions(**change).validate()
    assert info.value.hint is None or "accepted" in info.value.hint


def test_validate_checks_the_job_counts_in_the_same_pass() -> None:
    with pytest.raises(EstimateError, match="num_gpus"):
        WorkloadOptions(precision="fp99").validate(num_gpus=0)  # the count comes first, as estimate() reports it
    with pytest.raises(EstimateError, match="epochs"):
        WorkloadOptions().validate(epochs=0)
    with pytest.raises(EstimateError, match="quantize_base"):
        WorkloadOptions(quantize_base="int3").validate_quantize_base()
    WorkloadOptions(quantize_base="nf4", lora_rank=8).validate_quantize_base()


def test_builder_kwargs_pass_what_was_given() -> None:
    assert WorkloadOptions().builder_kwargs() == {"precision": "amp-bf16", "optimizer": "adamw", "mode": "train",
                                                  "batch_size": 1}
    kw = WorkloadOptions(batch_size=8, seq_len=512, gradient_checkpointing=True, grad_accum=4).builder_kwargs(
        batch=False)
    assert "batch_size" not in kw and kw["seq_len"] == 512 and kw["gradient_checkpointing"] and kw["grad_accum"] == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        WorkloadOptions().batch_size = 3  # type: ignore[misc]


def test_the_transformer_builder_takes_the_options_or_their_keywords() -> None:
    from advisor.workload.config import arch_from_config
    from advisor.workload.presets import get_preset
    from advisor.workload.transformer import BUILDER_OPTIONS, build_transformer

    assert set(BUILDER_OPTIONS) == set(WorkloadOptions.names()) - {"image_size"}
    arch = arch_from_config(get_preset("gpt2").config, "gpt2")
    opts = WorkloadOptions(batch_size=4, seq_len=256, precision="bf16", gradient_checkpointing=True)
    by_keywords = build_transformer(arch, name="gpt2", batch_size=4, seq_len=256, precision="bf16",
                                    gradient_checkpointing=True)
    by_options = build_transformer(arch, name="gpt2", options=opts)
    assert by_options.to_dict() == by_keywords.to_dict()
    # keywords win over the options they are given with; the rebuilt batch keeps every other option
    assert build_transformer(arch, name="gpt2", options=opts, batch_size=2).to_dict() == \
        by_options.options.rebuild(2).to_dict()
    with pytest.raises(TypeError, match="unexpected keyword argument 'image_size'"):
        build_transformer(arch, name="gpt2", image_size=224)


def test_built_options_share_the_workload_options_defaults_and_checks() -> None:
    """Workload.options (BuiltOptions) holds what a builder built, typed; its options shared with WorkloadOptions
    have the same defaults and the same one count rule."""
    from advisor.workload.options import BuiltOptions, OptionError

    built, asked = BuiltOptions(), WorkloadOptions()
    for name in ("gradient_checkpointing", "grad_accum", "lora_rank", "quantize_base"):
        assert getattr(built, name) == getattr(asked, name), name
    for bad in ({"grad_accum": 0}, {"lora_rank": 1.5}, {"decoder_len": 0}, {"quantized_params": -1},
                {"quantize_base": "fp4"}):
        with pytest.raises(OptionError):
            BuiltOptions(**bad)


def test_built_options_round_trip_through_json_without_rebuild() -> None:
    from advisor.workload import from_preset
    from advisor.workload.options import BuiltOptions

    w = from_preset("llama-2-7b", lora_rank=8, quantize_base="nf4", gradient_checkpointing=True, grad_accum=2)
    doc = w.to_dict()["options"]
    assert "rebuild" not in doc and doc["lora_targets"] == ["q", "k", "v", "o"] and doc["quantized_params"] > 0
    back = BuiltOptions.from_dict(doc)
    assert back == w.options and back.rebuild is None and w.options.rebuild is not None  # rebuild is not data
    for bad in ({**doc, "rebuild": None}, {**doc, "colour": 1}, {**doc, "grad_accum": 0}):
        with pytest.raises(ValueError, match="options: "):
            BuiltOptions.from_dict(bad)


def test_lora_targets_are_one_rule_for_decoders_and_t5() -> None:
    """arch.lora_targets: the family's default (decoders q, k, v, o; T5 q, v) and every linear in one order."""
    from advisor.errors import WorkloadError
    from advisor.workload.arch import LORA_TARGETS
    from advisor.workload.config import arch_from_config
    from advisor.workload.encoder_decoder import build_encoder_decoder
    from advisor.workload.presets import get_preset
    from advisor.workload.transformer import build_transformer

    t5 = arch_from_config({"model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 2,
                           "num_heads": 8, "vocab_size": 32128, "feed_forward_proj": "gated-gelu"}, "t5")
    llama = arch_from_config(get_preset("llama-2-7b").config, "llama")
    for arch, build, default in ((t5, build_encoder_decoder, ("q", "v")), (llama, build_transformer,
                                                                         ("q", "k", "v", "o"))):
        assert build(arch, name="m", lora_rank=8).options.lora_targets == default
        every = build(arch, name="m", lora_rank=8, lora_targets="all-linear").options.lora_targets
        assert every == tuple(t for t in LORA_TARGETS if t in arch.linear_shapes()) and "gate" in every
        with pytest.raises(WorkloadError, match=r"unknown LoRA target\(s\) \['wq'\] for m"):
            build(arch, name="m", lora_rank=8, lora_targets=["wq"])
