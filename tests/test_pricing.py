"""The pricing registry: every op kind is priced by one function, registered in its mechanism's module."""

from __future__ import annotations

import typing

import pytest

from advisor.estimator import ops as _ops  # noqa: F401  (loads every mechanism module's registrations)
from advisor.estimator.ops import prepare_ops, pricing_kind
from advisor.estimator.pricing import PRICING, register
from advisor.workload.base import OpCost, OpKind

#: Where each kind's pricing lives (docs/layout.md's "where do I change X" table says the same).
HOMES = {"matmul": "gemm", "conv": "conv", "attention": "attention", "recurrent": "recurrent", "norm": "norms",
         "optimizer": "optimizer", "optimizer_loop": "optimizer", "elementwise": "index_bound",
         "reduction": "index_bound", "embedding": "index_bound", "communication": "index_bound", "other": "index_bound"}


def test_every_op_kind_is_priced_in_its_mechanism_module() -> None:
    assert set(typing.get_args(OpKind)) == set(PRICING) == set(HOMES)
    for kind, fn in PRICING.items():
        assert fn.__module__ == f"advisor.estimator.{HOMES[kind]}", kind


def test_a_kind_cannot_be_priced_twice() -> None:
    def other(op: typing.Any, rates: typing.Any) -> tuple[float, float, float]:
        return 0.0, 0.0, 0.0

    with pytest.raises(ValueError, match="'matmul' is priced twice"):
        register("matmul")(other)
    assert PRICING["matmul"].__name__ == "price_matmul"


def test_ops_are_filed_under_their_pricing_kind() -> None:
    lstm = OpCost("lstm", "recurrent", "forward", 1e9, 1e6, serial_steps=128)
    steps_of_a_matmul = OpCost("cell", "matmul", "forward", 1e9, 1e6, serial_steps=4)  # dependent steps decide
    odd = OpCost("x", typing.cast(OpKind, "unknown"), "forward", 1.0, 1.0)
    assert [pricing_kind(op) for op in (lstm, steps_of_a_matmul, odd)] == ["recurrent", "recurrent", "other"]
    assert [p.pricing for p in prepare_ops([lstm, odd])] == ["recurrent", "other"]
