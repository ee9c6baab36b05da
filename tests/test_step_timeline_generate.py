"""Generation's step on the tape (``advisor.workload.step_generate``), as transformers 5's ``generate()`` runs it.

The prefill with ``logits_to_keep=1`` against the traced Hugging Face module (benchmarks/conformance.py's "prefill
bf16" case), step for step: its own allocated peak and its replay without the model's fp32 construction (which
otherwise sets the peak of these four-layer modules and would hide the step); then the decode steps' cache growth
as the closed form prices it; and which generating steps are written.
"""

from __future__ import annotations

import pytest

from advisor import estimate
from advisor.estimator.allocator import replay
from advisor.workload.arch import TransformerArch
from advisor.workload.config import arch_from_config
from advisor.workload.step_generate import generate
from advisor.workload.step_tape import Program, StepSpec, Tape
from advisor.workload.step_timeline import PROGRAMS, timeline
from advisor.workload.transformer import build_transformer
from advisor.workload.transformer_memory import kv_cache_peak_bytes

_LLAMA = {"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 3, "num_attention_heads": 8,
          "num_key_value_heads": 2, "intermediate_size": 1408, "vocab_size": 32000, "max_position_embeddings": 8192}


def _step_peak(events: list[int]) -> int:
    """The step's own allocated peak (its allocations live at once, parameters and inputs apart)."""
    live: dict[int, int] = {}
    now = peak = count = 0
    for e in events:
        if e >= 0:
            live[count] = e
            count += 1
            now += e
            peak = max(peak, now)
        else:
            now -= live.pop(-e - 1)
    return peak


def _spec(arch: TransformerArch, b: int, s: int, gen_len: int, a_b: int = 2) -> StepSpec:
    return StepSpec(arch, b, s, False, False, a_b, a_b, use_cache=True, logits_to_keep=1, gen_len=gen_len)


def test_the_head_runs_over_the_last_position_and_generate_copies_its_logits_to_fp32() -> None:
    arch = arch_from_config(dict(_LLAMA), "llama")
    b, s, v = 4, 256, arch.vocab_size
    sizes = [e for e in timeline(_spec(arch, b, s, 8))["step"] if e >= 0]  # type: ignore[index]
    assert b * v * 2 in sizes and b * v * 4 in sizes  # the last position's bf16 logits, next_token_logits in fp32
    assert not [n for n in sizes if n >= b * s * v]  # no logits at every position
    full = timeline(StepSpec(arch, b, s, False, False, 2, 2, use_cache=True))  # gen_len=0: a forward, every position
    assert b * s * v * 2 in full["step"]  # type: ignore[index]


def test_the_decode_steps_grow_every_layers_keys_and_values_as_the_closed_form_prices_them() -> None:
    arch = arch_from_config(dict(_LLAMA), "llama")
    b, s, g = 2, 64, 4096  # a long generation: the grown cache sets the peak
    step = timeline(_spec(arch, b, s, g))["step"]  # type: ignore[index]
    per_token = b * arch.kv_dim * 2  # one layer's keys (or values), one position, bf16
    # the steps before the last grow the cache to s + g - 1 positions, the last to s + g
    for positions in (s + g - 1, s + g):
        assert len([e for e in step if e == per_token * positions]) == 2 * arch.num_layers
    # the final cache, the last layer's old values beside their grown copy, next_token_logits
    final = 2 * arch.num_layers * per_token * (s + g)
    assert _step_peak(step) == final + per_token * (s + g - 1) + b * arch.vocab_size * 4
    # the closed form's KV item: the final cache plus one layer's keys for seq_len + gen_len positions
    assert kv_cache_peak_bytes(arch, b, s, g, 2) == final + per_token * (s + g)


class _Tiny(Program):
    """A programme outside ``PROGRAMS``: an embedding, one linear, the head (``generate`` needs only ``forward``)."""

    def forward(self):  # type: ignore[no-untyped-def]
        tape, sp, hd, v = self.tape, self.spec, self.arch.hidden_size, self.arch.vocab_size
        table = tape.param(v * hd * sp.p_b, True)
        x = tape.one(sp.tokens * hd * sp.a_b, [table])
        k, val = self.kv_update(tape.one(sp.tokens * self.arch.kv_dim * sp.a_b, [x]),
                                tape.one(sp.tokens * self.arch.kv_dim * sp.a_b, [x]), sp.a_b)
        tape.drop(k, val)
        logits = self.head(x, sp.a_b, (table, None), hd, v)
        tape.drop(x)
        return logits


def test_generate_is_family_independent() -> None:
    """Any programme whose forward ends in ``Program.head`` is generated the same way (Mixtral's, once written)."""
    arch = arch_from_config(dict(_LLAMA, num_hidden_layers=1), "llama")
    b, s, g = 2, 32, 16
    spec = _spec(arch, b, s, g)
    steps = generate(_Tiny(Tape(False), spec))["step"]
    sizes = [e for e in steps if e >= 0]
    assert sizes[-5:] == [b * arch.vocab_size * 4, *(b * (s + g - 1) * arch.kv_dim * 2 for _ in range(2)),
                          *(b * (s + g) * arch.kv_dim * 2 for _ in range(2))]
    assert b * arch.vocab_size * 2 in sizes


def test_which_generating_steps_the_builder_writes() -> None:
    arch = arch_from_config(dict(_LLAMA), "llama")
    kw = {"name": "x", "batch_size": 2, "seq_len": 128, "mode": "infer", "precision": "bf16", "gen_len": 32}
    assert build_transformer(arch, **kw).options.timeline is not None  # generate()'s
    # a loop over the plain forward (validate's zoo GPT-2 caches views of its fused projection) and transformers
    # < 4.48's repeat_kv copies keep the fitted share
    assert build_transformer(arch, prefill_logits="all", **kw).options.timeline is None
    assert build_transformer(arch, repeat_kv=True, **kw).options.timeline is None
    est = estimate(build_transformer(arch, **kw), gpu="H100 SXM5 80GB", calibration="none")
    assert any("caching-allocator rules" in a for a in est.assumptions)
    assert set(PROGRAMS) >= {"llama", "mistral", "qwen2", "gemma", "gpt2"}


# -- against the traced Hugging Face modules (torch and transformers: the dev extra) ---------------------------------
@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.benchmark_scripts import load

    return load("conformance")


@pytest.mark.parametrize(("model", "step"), [("llama", "prefill"), ("qwen2", "prefill"), ("gemma", "prefill"),
                                             ("gpt2", "prefill"), ("llama", "full"), ("gemma", "full")])
def test_the_written_step_is_the_traced_modules_step(harness, model: str, step: str) -> None:  # type: ignore[no-untyped-def]
    """The written step's own peak and its replay (without the fp32 construction) against the traced module's.

    ``prefill``: generate()'s prefill (``logits_to_keep=1``, the cache filled) and the closed form's two generated
    tokens; ``full``: one forward over the sequence (every position's logits).  Both hold each decoder layer's input
    until the layer returns and a Llama-style model's ``inputs_embeds`` to its forward's end, as the module does.
    """
    cfg = harness.PANEL[model]
    closed = harness.closed_form(cfg, "infer", "bf16", step)
    written = closed.options.timeline()
    traced = harness.traced(cfg, "infer", "bf16", step).options.allocations
    assert _step_peak(written["step"]) == pytest.approx(_step_peak(traced["step"]), rel=0.002)
    ours, theirs = (replay(a, None, cast_from_fp32=False) for a in (written, traced))
    assert ours.peak_allocated == pytest.approx(theirs.peak_allocated, rel=0.002)
    assert ours.peak_reserved == pytest.approx(theirs.peak_reserved, rel=0.01)
