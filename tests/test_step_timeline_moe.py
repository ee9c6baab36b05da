"""Mixtral's step written on the step tape (advisor.workload.step_timeline_moe) and replayed like a trace (issue 25).

The sparse MoE block as transformers 5 runs it (router, sort, gathers, grouped experts on ``chunk``'s views, the
weighted unpermute), replayed by the caching-allocator rules a traced module's timeline is: its allocated and reserved
peaks are the traced ``MixtralForCausalLM``'s (benchmarks/conformance.py's panel row).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from advisor import estimate
from advisor.estimator.allocator import replay
from advisor.workload.config import arch_from_config
from advisor.workload.step_tape import StepSpec, Tape
from advisor.workload.step_timeline import builder_timeline, timeline

MiB = 2**20


def test_a_chunks_views_share_their_base_and_backward_cats_their_gradients() -> None:
    tape = Tape(train=True)
    w = tape.param(MiB, True)
    base = tape.one(8 * MiB, [w])
    a, b = tape.views(base, (4 * MiB, 4 * MiB))
    assert tape.events == [8 * MiB]  # views: no storage of their own
    out = tape.one(4 * MiB, [a, b], saved=[base])  # e.g. act(gate) * up: the base kept for backward
    tape.drop(base)
    loss = tape.one(4, [out])
    tape.drop(out)
    tape.backward(loss)
    # out's node makes a's and b's gradients (5, 6) and releases the base (0); chunk's node cats them into the base's
    # (7) and frees theirs; the base's node makes w's (8, kept)
    assert tape.events == [8 * MiB, 4 * MiB, 4, -2, 4, 4 * MiB, -4, 4 * MiB, 4 * MiB, -5, -1, 8 * MiB, -6, -7, MiB, -8]
    assert tape.grads == [8]


def _mixtral(**kw: int) -> Any:
    cfg = {"model_type": "mixtral", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 512,
           "num_local_experts": 4, "num_experts_per_tok": 2, **kw}
    return arch_from_config(cfg, "mixtral")


def test_mixtral_is_written_other_moe_families_are_not() -> None:
    kw: dict[str, Any] = {"b": 2, "s": 64, "gen_len": None, "lora": False, "checkpointing": False, "flash": True,
                          "quantized": False}
    for train in (True, False):
        assert builder_timeline(_mixtral(), train=train, precision="amp-bf16", **kw) is not None
    other = dataclasses.replace(_mixtral(), family="llama")  # experts on another family: not written
    assert builder_timeline(other, train=True, precision="amp-bf16", **kw) is None
    ckpt = dict(kw, checkpointing=True)  # checkpointed layers written too (step_tape.Tape.checkpoint)
    assert builder_timeline(_mixtral(), train=True, precision="amp-bf16", **ckpt) is not None


def test_the_experts_weights_are_the_models_parameters() -> None:
    arch = _mixtral()
    for precision, p_b in (("amp-bf16", 4), ("bf16", 2)):
        amp = precision.startswith("amp")
        written = timeline(StepSpec(arch, 2, 64, True, amp, 2, p_b, use_cache=True))
        assert written is not None
        assert sum(n for n, _ in written["params"]) == arch.params * p_b


def test_the_mixtral_preset_replays_its_written_step() -> None:
    est = estimate("mixtral-8x7b", batch_size=1, seq_len=512, mode="train", precision="amp-bf16",
                   gpu="H200 SXM 141GB", calibration="none")
    assert any("caching allocator: reserved beyond allocated from PyTorch's caching-allocator rules" in a
               for a in est.assumptions)


# -- against the traced Hugging Face module (torch and transformers: the dev extra) ----------------------------------
CASES = ["train amp-bf16", "train fp32", "forward bf16"]


@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.benchmark_scripts import load

    return load("conformance")


@pytest.mark.parametrize("case", CASES)
def test_the_written_mixtral_step_replays_to_the_traced_modules_peaks(harness, case: str) -> None:  # type: ignore[no-untyped-def]
    cfg = harness.PANEL["mixtral"]
    mode, precision = harness.CASES[case]
    amp = precision.startswith("amp")
    a_b = 4 if precision == "fp32" else 2
    spec = StepSpec(arch_from_config(dict(cfg), "mixtral"), harness.BATCH, harness._seq(cfg), mode == "train", amp,
                    a_b, 4 if amp else a_b, use_cache=True)
    written = timeline(spec)
    assert written is not None
    optimizer = "adamw" if mode == "train" else None
    cast = precision == "bf16"
    ours = replay(written, optimizer, cast_from_fp32=cast)
    theirs = replay(harness.traced(cfg, mode, precision).options.allocations, optimizer, cast_from_fp32=cast)
    assert ours.peak_allocated == pytest.approx(theirs.peak_allocated, rel=0.005)
    assert ours.peak_reserved == pytest.approx(theirs.peak_reserved, rel=0.01)


def test_a_checkpointed_step_saves_block_inputs_and_the_head_the_recompute_is_a_temporary() -> None:
    """What autograd saves in the forward (the traced module's count): each block's input and the head's tensors.

    A block recomputed in backward saves its tensors again once the head's are freed; a MoE block (bigger than the
    head at a small vocabulary) holds the excess as a temporary of the backward, not as saved bytes.
    """
    from advisor.workload.transformer import build_transformer

    def built(layers: int, ckpt: bool) -> Any:
        return build_transformer(_mixtral(num_hidden_layers=layers, vocab_size=64), name="m", source="config",
                                 batch_size=2, seq_len=256, mode="train", precision="amp-bf16",
                                 gradient_checkpointing=ckpt)

    layer = built(3, False).activation_bytes - built(2, False).activation_bytes  # one block's saved tensors
    block_input = built(3, True).activation_bytes - built(2, True).activation_bytes
    assert block_input == 2 * 256 * 256 * 4  # fp32 under amp
    full, ckpt = built(2, False), built(2, True)
    head = full.activation_bytes - 2 * layer  # the head's saved tensors and the final norm's
    assert layer > head and ckpt.activation_bytes == 2 * block_input + head
    assert ckpt.transient_bytes > full.transient_bytes
