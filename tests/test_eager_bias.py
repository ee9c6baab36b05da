"""The eager dispatch table's per-biased-linear term (``advisor.workload.eager``) against the tracer.

A linear's bias changes what it dispatches (its cast under amp; its gradient's reduction, view, accumulation and
cast back in backward): the closed form counts it per biased linear of the module, so that a family with biases its
style's measured module lacks (Qwen2's q / k / v) or without those it has (GPT-J's attention) follows the module.
"""

from __future__ import annotations

import collections

import pytest

from advisor.workload.arch import TransformerArch
from advisor.workload.config import arch_from_config
from advisor.workload.eager import BIAS_BWD, BIAS_FWD, MEASURED_BIASED_LINEARS, biased_linears, eager_ops, style_of


def _biased(arch: TransformerArch) -> int:
    return biased_linears(family=arch.family, qkv_bias=arch.qkv_bias, out_bias=arch.out_bias,
                          mlp_bias=arch.mlp_bias, gated_mlp=arch.gated_mlp)


@pytest.mark.parametrize("precision", ["amp-bf16", "bf16", "fp32"])
def test_a_biased_linear_dispatches_what_the_table_says(precision: str) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from advisor.workload.trace import trace_module

    def dispatched(bias: bool) -> collections.Counter[str]:
        with torch.device("meta"):
            module = nn.Sequential(nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=bias),
                                   nn.Linear(64, 64, bias=False))
            x = torch.empty(4, 16, 64)
        out: collections.Counter[str] = collections.Counter()
        for op in trace_module(module, (x,), precision=precision, optimizer=None).ops:
            out[op.phase] += op.count
        return out

    with_bias, without = dispatched(True), dispatched(False)
    plain = not precision.startswith("amp-")
    assert with_bias["forward"] - without["forward"] == BIAS_FWD[plain]
    assert with_bias["backward"] - without["backward"] == BIAS_BWD[plain]


@pytest.mark.parametrize(("cfg", "expected"), [
    ({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100, "n_positions": 64}, 4),
    ({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 64}, 6),
    ({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 128, "vocab_size": 100}, 0),
    ({"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 128, "vocab_size": 100}, 3),
])
def test_biased_linears_per_block_are_the_modules(cfg: dict[str, object], expected: int) -> None:
    """The styles' own modules count as measured (no term); Qwen2 adds its three q / k / v biases."""
    arch = arch_from_config(cfg, str(cfg["model_type"]))
    assert _biased(arch) == expected
    if cfg["model_type"] != "qwen2":
        assert MEASURED_BIASED_LINEARS[style_of(arch.family)] == expected


def test_qwen2s_biases_add_their_dispatches_per_layer() -> None:
    kw = {"family": "qwen2", "layers": 4, "attention": "sdpa", "causal_lm": True}
    for amp in (True, False):
        base, biased = eager_ops(amp=amp, train=True, **kw), eager_ops(amp=amp, train=True, biased=3, **kw)
        assert biased["forward"] - base["forward"] == 4 * 3 * BIAS_FWD[not amp]
        assert biased["backward"] - base["backward"] == 4 * 3 * BIAS_BWD[not amp]
