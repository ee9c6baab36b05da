"""The MoE block's closed form (``advisor.workload.moe``) against transformers 5's ``MixtralSparseMoeBlock`` traced.

The block between a scale and a linear, less the same without it: its bytes per phase, the bytes autograd saves and
its dispatches beyond a dense gated MLP's (``eager.MOE_DISPATCHES``), at each precision and with 4 and 8 experts.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from advisor.workload.arch import TransformerArch  # noqa: E402
from advisor.workload.eager import MOE_DISPATCHES  # noqa: E402
from advisor.workload.moe import add_moe_block, moe_saved_bytes, moe_shape  # noqa: E402
from advisor.workload.transformer_ops import OpList  # noqa: E402

TOKENS, WIDTH, INTER = 2048, 512, 1408


def _traced(block: Any, precision: str, mode: str) -> tuple[collections.Counter[str], collections.Counter[str], float]:
    from torch import nn

    from advisor.workload.trace import trace_module

    class Box(nn.Module):  # the block reads a stream in the parameters' dtype (fp32 under amp), as after a norm
        def __init__(self) -> None:
            super().__init__()
            self.scale, self.block, self.out = nn.Parameter(torch.ones(WIDTH)), block, nn.Linear(WIDTH, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * self.scale
            return self.out(self.block(y) if self.block is not None else y)

    with torch.device("meta"):
        module, x = Box(), torch.empty(1, TOKENS, WIDTH)
    w = trace_module(module, (x,), precision=precision, mode=mode, optimizer=None)
    nbytes: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for op in w.ops:
        nbytes[op.phase] += op.bytes
        calls[op.phase] += op.count
    return nbytes, calls, w.activation_bytes


def _config(experts: int) -> Any:
    from transformers import MixtralConfig

    config = MixtralConfig(hidden_size=WIDTH, intermediate_size=INTER, num_local_experts=experts,
                           num_experts_per_tok=2, num_attention_heads=8, num_key_value_heads=2)
    config._experts_implementation = "grouped_mm"  # what a model's __init__ sets (transformers 5's default)
    return config


@pytest.mark.parametrize(("precision", "mode", "experts"), [("amp-bf16", "train", 4), ("fp32", "train", 8),
                                                            ("bf16", "train", 4), ("bf16", "infer", 8)])
def test_the_moe_block_is_what_the_tracer_sees_mixtral_run(precision: str, mode: str, experts: int) -> None:
    from transformers.models.llama.modeling_llama import LlamaMLP
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    from advisor.workload.costs import compute_bytes, weight_bytes

    config = _config(experts)
    from transformers import LlamaConfig

    with torch.device("meta"):
        moe, mlp = MixtralSparseMoeBlock(config), LlamaMLP(LlamaConfig(hidden_size=WIDTH, intermediate_size=INTER))
    (b1, c1, s1), (b0, _, s0), (_, cm, _) = (_traced(m, precision, mode) for m in (moe, None, mlp))
    arch = TransformerArch("mixtral", num_layers=1, hidden_size=WIDTH, num_heads=8, num_kv_heads=2, head_dim=64,
                           intermediate_size=INTER, vocab_size=1000, tie_word_embeddings=False, gated_mlp=True,
                           num_experts=experts,
                           experts_per_token=2)
    a_b, amp, train = compute_bytes(precision), precision.startswith("amp-"), mode == "train"
    ops = OpList()
    block = moe_shape(arch, TOKENS, a_b, amp, weight_bytes(precision), train, False)
    add_moe_block(ops, block, "layers.*", 1)
    # in backward the tracer counts each new_zeros' input as read (the pairs' fp32 output and the gathered input) and
    # the top-k sum's gradient at its expanded size: the kernels read less
    pairs = 2 * TOKENS * WIDTH
    unread = pairs * (4 + block.x_b) + (pairs - TOKENS * WIDTH) * 4 if train else 0
    for phase, closed, extra in (("forward", ops.fwd, 0), ("backward", ops.bwd, unread)):
        assert sum(op.bytes for op in closed) + extra == pytest.approx(b1[phase] - b0[phase], rel=0.01), phase
    if train:
        assert moe_saved_bytes(block) == pytest.approx(s1 - s0, rel=0.01)
    key = "amp" if amp else "fp32" if a_b == 4 else "16-bit"
    fwd, bwd, infer = MOE_DISPATCHES[key]
    assert c1["forward"] - cm["forward"] == (fwd if train else infer)
    if train:
        assert c1["backward"] - cm["backward"] == bwd
