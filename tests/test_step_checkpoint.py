"""Gradient checkpointing written by the step tape (advisor.workload.step_tape.Tape.checkpoint), issue 25.

transformers' ``gradient_checkpointing_enable()`` wraps every layer in non-reentrant ``torch.utils.checkpoint``: the
layer's forward saves nothing but its inputs; backward's first node of the layer that needs a saved tensor runs the
layer again and stops once every saved tensor is back (torch's early stop).  The closed form's checkpointed step is
written that way and replayed by the caching-allocator model, as a trace is; here against the traced Hugging Face
modules of benchmarks/conformance.py's panel.
"""

from __future__ import annotations

import pytest

from advisor.estimator.allocator import replay
from advisor.workload.config import arch_from_config
from advisor.workload.eager import CHECKPOINT_DETACHES, eager_ops
from advisor.workload.step_tape import StepSpec, Tape, Tensor
from advisor.workload.step_timeline import timeline
from advisor.workload.transformer import build_transformer

MiB = 2**20


def _region(tape: Tape, w: Tensor):  # type: ignore[no-untyped-def]
    def block(x: Tensor) -> Tensor:
        y = tape.one(2 * MiB, [x, w], saved=[x])  # x @ w: saves its input
        z = tape.one(4 * MiB, [y], saved=[y])  # saves y: the region's last saved tensor
        tape.drop(y)
        out = tape.one(MiB, [z, x])  # the residual add saves nothing
        tape.drop(z)
        return out
    return block


def test_a_checkpointed_region_holds_its_input_and_recomputes_up_to_its_last_saved_tensor() -> None:
    tape = Tape(train=True)
    w = tape.param(MiB, True)
    x = tape.one(MiB, [w])  # allocation 0: the region's input
    out = tape.checkpoint(_region(tape, w), x)
    tape.drop(x)  # the caller's reference: the region still holds x
    # forward: y and z are freed as soon as the region drops them (their nodes saved placeholders)
    assert tape.events == [MiB, 2 * MiB, 4 * MiB, -2, MiB, -3]
    loss = tape.one(4, [out])
    tape.drop(out)
    n = len(tape.events)
    tape.backward(loss)
    back = tape.events[n:]
    # the loss's and the add's gradients (no saved tensor: no recompute yet), then z's node unpacks y: the region
    # runs again, allocating y (9) and stopping before z's kernel (z's input y completes the saved set)
    assert back[:7] == [4, MiB, -6, 4 * MiB, MiB, -7, 2 * MiB]
    assert 4 * MiB not in back[7:]  # z is never recomputed
    # y is released after z's node, and x (allocation 0) once the region's last saving node (y's) has run
    assert back.index(-10) < back.index(-1)
    assert tape.grads == [12]


def test_inference_runs_the_region_as_it_is() -> None:
    tape = Tape(train=False)
    w = tape.param(MiB, True)
    x = tape.one(MiB)
    out = tape.checkpoint(_region(tape, w), x)
    tape.drop(x, out)
    assert tape.events == [MiB, 2 * MiB, 4 * MiB, -2, MiB, -3, -1, -4] and not tape.nodes


_LLAMA = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
          "num_key_value_heads": 2, "intermediate_size": 704, "vocab_size": 1000, "max_position_embeddings": 512,
          "architectures": ["LlamaForCausalLM"]}


def test_checkpointing_keeps_layer_inputs_and_one_layer_not_every_activation() -> None:
    arch = arch_from_config(dict(_LLAMA), "llama")
    peaks = {}
    for ck in (False, True):
        spec = StepSpec(arch, 4, 256, True, True, 2, 4, use_cache=not ck, checkpointing=ck)
        written = timeline(spec)
        assert written is not None
        peaks[ck] = replay(written, "adamw").peak_allocated
    assert peaks[True] < peaks[False]
    w = build_transformer(arch, name="l", batch_size=4, seq_len=256, gradient_checkpointing=True)
    assert w.options.timeline is not None  # the builder's checkpointed step is written, not the fitted share


def test_the_recompute_detaches_each_saved_tensor_needing_a_gradient() -> None:
    kw = {"layers": 4, "attention": "sdpa", "amp": True, "train": True, "causal_lm": True}
    plain = eager_ops(family="llama", **kw)  # type: ignore[arg-type]
    ck = eager_ops(family="llama", gradient_checkpointing=True, **kw)  # type: ignore[arg-type]
    forward_layer = (plain["forward"] - eager_ops(family="llama", **{**kw, "layers": 0})["forward"]) / 4  # type: ignore[arg-type]
    assert ck["backward"] - plain["backward"] == 4 * (forward_layer + CHECKPOINT_DETACHES["llama"])


# -- against the traced Hugging Face modules (torch and transformers: the dev extra) ---------------------------------
@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.benchmark_scripts import load

    return load("conformance")


def _written(harness, model: str):  # type: ignore[no-untyped-def]
    cfg = harness.PANEL[model]
    arch = arch_from_config(dict(cfg), str(cfg["model_type"]))
    spec = StepSpec(arch, harness.BATCH, harness._seq(cfg), True, True, 2, 4, use_cache=False, checkpointing=True)
    written = timeline(spec)
    assert written is not None
    return replay(written, "adamw"), replay(harness.traced(cfg, "train", "amp-bf16", "checkpointing").options
                                            .allocations, "adamw")


@pytest.mark.parametrize("model", ["llama", "gemma", "bert"])
def test_the_written_checkpointed_step_replays_to_the_traced_modules_peaks(harness, model: str) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = _written(harness, model)
    assert ours.peak_allocated == pytest.approx(theirs.peak_allocated, rel=0.01)
    assert ours.peak_reserved == pytest.approx(theirs.peak_reserved, rel=0.01)


def test_gpt2s_checkpointed_step_allocates_what_its_traced_module_does(harness) -> None:  # type: ignore[no-untyped-def]
    """Allocated bytes agree; the reserve does not.

    The fake run sums the tied embedding's two gradients out of place (autograd's input buffer adds in place only
    into a plain tensor; a FakeTensor is a subclass), where the CUDA run adds the second into the first (the step
    tape's rule): one 154 MB allocation more in the trace's backward, which moves where its 823 MB fp32 logits
    find free segments.
    """
    ours, theirs = _written(harness, "gpt2")
    assert ours.peak_allocated == pytest.approx(theirs.peak_allocated, rel=0.005)
