"""advisor.precision: the one table of bytes per element."""

from __future__ import annotations

import pytest

from advisor.errors import WorkloadError
from advisor.precision import ELEMENT_BYTES, activation_bytes, element_bytes
from advisor.probing.kernels import CONV_PRECISIONS, MATMUL_PRECISIONS
from advisor.workload.base import PRECISIONS


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
