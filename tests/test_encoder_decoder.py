"""The T5 encoder-decoder closed form (advisor.workload.encoder_decoder): its mechanisms, without torch.

Its conformance to transformers' T5ForConditionalGeneration, class by class: tests/test_conformance.py.
"""

from __future__ import annotations

import pytest

from advisor.errors import WorkloadError
from advisor.workload import from_config, from_preset
from advisor.workload.aten_ops import fused_attention_work
from advisor.workload.config import arch_from_config
from advisor.workload.encoder_decoder import build_encoder_decoder

T5_V11 = {"model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 4, "num_heads": 8,
          "vocab_size": 32128, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}


def _ops(w, prefix: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {op.name: op.bytes for op in w.ops if op.name.startswith(prefix)}


def test_the_stacks_run_over_their_own_lengths() -> None:
    arch = arch_from_config(T5_V11, "t5")
    short = build_encoder_decoder(arch, name="t5", batch_size=2, seq_len=512, decoder_len=64)
    long = build_encoder_decoder(arch, name="t5", batch_size=2, seq_len=512, decoder_len=512)
    assert _ops(short, "encoder.layers.") == _ops(long, "encoder.layers.")
    ff_short = next(op for op in short.ops if op.name == "decoder.layers.*.ff.wo")
    ff_long = next(op for op in long.ops if op.name == "decoder.layers.*.ff.wo")
    assert ff_long.flops == pytest.approx(8 * ff_short.flops)
    # cross-attention: decoder queries over the encoder's 512 keys, every tile (no causal skipping with a bias mask)
    cross = next(op for op in short.ops if op.name == "decoder.layers.*.cross.core")
    assert cross.tile_flops == pytest.approx(4 * fused_attention_work(2 * 8, 64, 512, 64, False)[0])
    self_attn = next(op for op in long.ops if op.name == "decoder.layers.*.self.core")
    assert self_attn.tile_flops == pytest.approx(4 * fused_attention_work(2 * 8, 512, 512, 64, False)[0])
    assert short.options.decoder_len == 64 and long.options.decoder_len == 512


def test_the_relative_bias_is_made_a_mask_in_every_block_and_trained_with_the_model() -> None:
    w = from_preset("t5-base", batch_size=8, seq_len=512, precision="amp-bf16")
    heads, s = 12, 512
    bias = heads * s * s
    # encoder: a contiguous fp32 copy of the permuted bias and autocast's 16-bit cast, per block (12 blocks)
    assert _ops(w, "encoder.layers.*.self.bias.contiguous")["encoder.layers.*.self.bias.contiguous"] == 12 * bias * 8
    assert _ops(w, "encoder.layers.*.self.bias.cast")["encoder.layers.*.self.bias.cast"] == 12 * bias * 6
    assert "decoder.layers.*.self.bias.where" in _ops(w, "decoder.")
    grads = [op for op in w.ops if "position_bias.grad" in op.name]
    assert grads and all(op.phase == "backward" for op in grads)
    lora = from_preset("t5-base", batch_size=8, seq_len=512, precision="amp-bf16", lora_rank=8)
    assert not [op for op in lora.ops if "position_bias.grad" in op.name]  # a frozen table needs no gradient
    assert lora.options.lora_targets == ("q", "v") and lora.trainable_params == lora.lora_params
    assert not [op for op in lora.ops if op.name.endswith(".cast") and "bias" not in op.name and "ff" not in op.name]


def test_autocast_sends_the_feed_forward_hidden_to_wo_s_fp32_dtype_and_back() -> None:
    amp = from_preset("t5-base", batch_size=4, seq_len=256, precision="amp-bf16")
    bf16 = from_preset("t5-base", batch_size=4, seq_len=256, precision="bf16")
    el = 12 * 4 * 256 * 3072
    assert _ops(amp, "encoder.layers.*.ff.to_wo_dtype")["encoder.layers.*.ff.to_wo_dtype"] == el * 6
    assert not _ops(bf16, "encoder.layers.*.ff.to_wo_dtype")


def test_gated_gelu_runs_gelu_new_and_the_head_is_tied_whatever_the_config_says() -> None:
    w = from_config(T5_V11, batch_size=2, seq_len=128)
    wi = next(op for op in w.ops if op.name == "encoder.layers.*.ff.wi")
    assert wi.count == 4 * 2  # wi_0 and wi_1
    assert "encoder.layers.*.ff.act" in _ops(w, "encoder.layers.*.ff.act")
    assert not _ops(w, "decoder.rescale")  # an untied config: no d_model ** -0.5 rescale
    tied = from_config({**T5_V11, "tie_word_embeddings": True}, batch_size=2, seq_len=128)
    assert _ops(tied, "decoder.rescale") and tied.params == w.params  # transformers 5 ties the head always


def test_qlora_and_checkpointing_follow_the_blocks() -> None:
    kw = {"batch_size": 2, "seq_len": 256, "lora_rank": 8, "gradient_checkpointing": True}
    w = from_preset("t5-base", quantize_base="nf4", **kw)
    dq = [op for op in w.ops if ".dequant" in op.name]
    assert {op.phase for op in dq} == {"forward", "backward"}
    assert any(op.name.startswith("recompute.encoder.layers.") and ".dequant" in op.name for op in dq)
    assert w.options.quantized_params > 0 and w.eager_ops["backward"] > w.eager_ops["forward"]


def test_options_that_do_not_apply_are_refused() -> None:
    with pytest.raises(WorkloadError, match="gen_len applies to infer of decoder"):
        from_preset("t5-base", mode="infer", gen_len=16)
    with pytest.raises(WorkloadError, match="unknown attention"):
        from_preset("t5-base", attention="paged")
    with pytest.raises(WorkloadError, match="decoder_len"):
        build_encoder_decoder(arch_from_config(T5_V11, "t5"), name="t5", decoder_len=0)
