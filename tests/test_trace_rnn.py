"""Recurrent layers traced for a few steps and extrapolated (``advisor.workload.trace_rnn``) equal the unrolled trace.

Each case traces a small model twice, on the fast path and unrolled (``has_recurrent`` patched off), and compares
everything the workload is built from: every group's FLOPs, bytes, launches and GEMM shapes, the saved bytes, the
storage timeline event for event, and what the allocator replay makes of it.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from advisor.estimator.allocator import replay  # noqa: E402
from advisor.workload import trace, trace_rnn  # noqa: E402
from advisor.workload.zoo import task_loss  # noqa: E402


class _Model(torch.nn.Module):
    def __init__(self, kind: str, layers: int, bidirectional: bool, batch_first: bool, proj: int = 0) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 12)
        extra = {"proj_size": proj} if proj else {}
        self.rnn = getattr(torch.nn, kind)(12, 16, num_layers=layers, bidirectional=bidirectional,
                                           batch_first=batch_first, **extra)
        self.head = torch.nn.Linear((proj or 16) * (2 if bidirectional else 1), 50)
        self.batch_first = batch_first

    def forward(self, tokens: Any) -> Any:
        x = self.embed(tokens if self.batch_first else tokens.t())
        y = self.rnn(x)[0]
        return self.head(y if self.batch_first else y.transpose(0, 1))


def _trace(kind: str, layers: int, bidirectional: bool, batch_first: bool, mode: str, precision: str, seq: int,
           fast: bool, monkeypatch: pytest.MonkeyPatch, proj: int = 0) -> tuple[Any, bool]:
    """(the TraceResult, whether the extrapolation made it)."""
    with torch.device("meta"):
        model = _Model(kind, layers, bidirectional, batch_first, proj)
        tokens = torch.empty(3, seq, dtype=torch.long)
    made = []
    real = trace_rnn.extrapolated

    def spy(step: Any) -> Any:
        out = real(step)
        made.append(out is not None)
        return out

    with monkeypatch.context() as m:
        m.setattr(trace, "extrapolated", spy)
        if not fast:
            m.setattr(trace, "has_recurrent", lambda _module: False)
        res = trace.run_traced(model, (tokens,), {}, mode=mode, precision=precision,
                               loss=task_loss({"input": "tokens"}) if mode == "train" else None, frozen=(),
                               label="rnn")
    return res, any(made)


def _assert_same(fast: Any, unrolled: Any, mode: str) -> None:
    assert fast.groups == unrolled.groups  # FLOPs, bytes, launches, serial steps, GEMM shapes per group
    rnn = [g for (_, name), g in fast.groups.items() if g.kind == "recurrent"]
    assert rnn and all(g.flops > 0 and g.bytes > 0 for g in rnn)
    assert fast.gemms == unrolled.gemms
    assert fast.activation_bytes == unrolled.activation_bytes
    assert (fast.activation_bytes > 0) == (mode == "train")
    assert (fast.peak_bytes, fast.transient_bytes, fast.temporaries_peak_bytes, fast.weight_copy_bytes) == (
        unrolled.peak_bytes, unrolled.transient_bytes, unrolled.temporaries_peak_bytes, unrolled.weight_copy_bytes)
    assert fast.allocations == unrolled.allocations  # the storage timeline, event for event
    opt = "adamw" if mode == "train" else None
    assert replay(fast.allocations, opt) == replay(unrolled.allocations, opt)
    assert fast == unrolled


@pytest.mark.parametrize(("kind", "layers", "bidirectional", "batch_first", "mode", "precision"), [
    ("LSTM", 2, False, True, "train", "fp32"),
    ("LSTM", 1, False, False, "train", "amp-bf16"),
    ("LSTM", 2, False, True, "infer", "bf16"),
    ("GRU", 2, False, True, "train", "fp32"),
    ("GRU", 1, True, True, "infer", "fp32"),
    ("GRU", 2, True, True, "train", "fp32"),
    ("RNN", 1, False, True, "train", "fp16"),
])
def test_a_recurrent_model_extrapolated_equals_it_unrolled(kind: str, layers: int, bidirectional: bool,
                                                           batch_first: bool, mode: str, precision: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fast, made = _trace(kind, layers, bidirectional, batch_first, mode, precision, 11, True, monkeypatch)
    unrolled, _ = _trace(kind, layers, bidirectional, batch_first, mode, precision, 11, False, monkeypatch)
    assert made  # the fast path made it, not a fallback
    _assert_same(fast, unrolled, mode)


def test_an_lstm_with_projections_extrapolated_far_equals_it_unrolled(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, made = _trace("LSTM", 2, False, True, "train", "fp32", 40, True, monkeypatch, proj=8)
    unrolled, _ = _trace("LSTM", 2, False, True, "train", "fp32", 40, False, monkeypatch, proj=8)
    assert made
    _assert_same(fast, unrolled, "train")


class _TwoLengths(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.whole, self.short = torch.nn.GRU(12, 16, batch_first=True), torch.nn.GRU(12, 16, batch_first=True)

    def forward(self, x: Any) -> Any:
        return self.whole(x)[0].sum() + self.short(x[:, ::2])[0].sum()


def test_calls_of_two_lengths_are_traced_unrolled(monkeypatch: pytest.MonkeyPatch) -> None:
    # recurrent calls over 20 and 10 steps: the generator is made for one length, so the step is traced unrolled
    results, made = [], []
    real = trace_rnn.extrapolated
    for fast in (True, False):
        with torch.device("meta"):
            model, x = _TwoLengths(), torch.empty(3, 20, 12)
        with monkeypatch.context() as m:
            m.setattr(trace, "extrapolated", lambda step: made.append(real(step)))
            if not fast:
                m.setattr(trace, "has_recurrent", lambda _module: False)
            results.append(trace.run_traced(model, (x,), {}, mode="train", precision="fp32", loss=None, frozen=(),
                                            label="two"))
    assert made == [None]
    assert results[0] == results[1]


def test_a_short_sequence_is_traced_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 steps: nothing to cut (the trace at STEPS[0] is the whole step)
    fast, _ = _trace("LSTM", 1, False, True, "train", "fp32", 4, True, monkeypatch)
    unrolled, _ = _trace("LSTM", 1, False, True, "train", "fp32", 4, False, monkeypatch)
    _assert_same(fast, unrolled, "train")
