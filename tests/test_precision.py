"""advisor.precision: the one table of bytes per element."""

from __future__ import annotations

import pytest

from advisor.errors import WorkloadError
from advisor.precision import ELEMENT_BYTES, activation_bytes, element_bytes
from advisor.probing.kernels import CONV_PRECISIONS, MATMUL_PRECISIONS
from advisor.workload.options import PRECISIONS


def test_every_precision_name_has_one_entry() -> None:
    assert tuple(ELEMENT_BYTES) == PRECISIONS
    assert set(MATMUL_PRECISIONS) | set(CONV_PRECISIONS) <= set(ELEMENT_BYTES)


@pytest.mark.parametrize(("precision", "element", "activation"),
                         [("fp32", 4, 4), ("tf32", 4, 4), ("amp-bf16", 2, 2), ("fp8", 1, 1), ("int8", 1, 2),
                          ("int4", 0.5, 2)])
def test_weights_and_activations(precision: str, element: float, activation: int) -> None:
    assert element_bytes(precision) == element
    assert activation_bytes(precision) == activation  # int8/int4 quantize weights only


def test_unknown_precision_is_a_workload_error_with_the_accepted_names() -> None:
    with pytest.raises(WorkloadError, match="fp6") as info:
        element_bytes("fp6")
    assert info.value.hint is not None and "amp-bf16" in info.value.hint


def test_nf4_bytes_have_one_home_read_by_the_memory_rule_and_the_builders_dequantization() -> None:
    from advisor.estimator.memory import weight_bytes_per_param
    from advisor.precision import NF4_BYTES_PER_WEIGHT
    from advisor.workload import from_preset

    assert pytest.approx(0.5 + 0.127 / 8, abs=1e-4) == NF4_BYTES_PER_WEIGHT  # QLoRA paper: 0.127 bit of constants
    frozen = weight_bytes_per_param("amp-bf16", trainable=False, mode="train", quantize_base="nf4")
    assert frozen == NF4_BYTES_PER_WEIGHT
    w = from_preset("llama-2-7b", batch_size=1, seq_len=256, lora_rank=8, quantize_base="nf4", precision="amp-bf16")
    dq = next(op for op in w.ops if op.name == "layers.*.mlp.down.dequant")
    weights = 4096 * 11008 * 32
    # the nf4 weight (this one figure) read, its 16-bit copy written, plus the absmax kernels' fp32 constants
    from advisor.workload.qlora import dequant_bytes_per_weight

    assert dq.bytes == pytest.approx(weights * dequant_bytes_per_weight())
    assert 0 < dequant_bytes_per_weight() - (NF4_BYTES_PER_WEIGHT + 2.0) < 0.25
