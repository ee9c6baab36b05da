"""Traced modules count what PyTorch counts, on odd modules checked against a real CPU step.

Reference, per module, on real tensors (one forward + loss + backward):
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (torch's own formulas). Two ops torch runs on
  CPU have no formula there and would count 0: CPU's fused SDPA kernel (given the formula of the
  CUDA flash kernel it mirrors, as the trace does) and oneDNN's fused LSTM kernel (the reference runs
  with oneDNN off, so the LSTM's gates run as the ``mm`` ops torch counts, as the trace does).
- activations: the unique storages autograd saves for backward (``saved_tensors_hooks``), parameters
  and the example inputs excluded, as in the trace.
The trace must be within 3% (FLOPs) and 20% (activation bytes); today they agree far closer.
One deliberate difference is not exercised here: for a grouped convolution torch's backward formula
counts grad-weight ``groups`` times too high; the trace counts it as the forward (see
``test_depthwise_conv_backward_costs_its_forward_per_gradient`` in test_workload_trace.py).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, flop_registry  # noqa: E402

from advisor.workload import from_module  # noqa: E402

aten = torch.ops.aten


def _raw(op):
    """Torch's registered formula of ``op``, marked as already shape-wrapped for ``custom_mapping``."""

    def formula(*args, **kwargs):
        return flop_registry[op](*args, **kwargs)

    formula._get_raw = True
    return formula


def _reference(module, inputs, loss_fn):
    """FLOPs and saved-activation bytes of one real CPU training step (see the module docstring)."""
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _raw(aten._scaled_dot_product_flash_attention),
               aten._scaled_dot_product_flash_attention_for_cpu_backward:
                   _raw(aten._scaled_dot_product_flash_attention_backward)}
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()}
    skip |= {x.untyped_storage().data_ptr() for x in inputs}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    enabled = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = loss_fn(module(*inputs))
            loss.backward()
    finally:
        torch._C._set_mkldnn_enabled(enabled)
    return counter.get_total_flops(), sum(saved.values())


def _check(module, inputs, loss_fn=None):
    loss_fn = loss_fn or (lambda out: out.float().mean())
    wl = from_module(module, inputs, precision="fp32", optimizer="sgd", loss_fn=loss_fn)
    flops, saved = _reference(module, inputs, loss_fn)
    traced = sum(op.flops for op in wl.ops if op.phase in ("forward", "backward"))
    assert flops > 0 and saved > 0
    assert traced == pytest.approx(flops, rel=0.03), (traced, flops)
    assert wl.activation_bytes == pytest.approx(saved, rel=0.20), (wl.activation_bytes, saved)
    return wl, flops, saved


class ConvBnDrop(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.2),
                                  nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                                  nn.GELU(), nn.Dropout2d(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)


def test_cnn_with_batchnorm_and_dropout():
    torch.manual_seed(0)
    target = torch.randint(0, 10, (8,))
    _check(ConvBnDrop(), (torch.randn(8, 3, 16, 16),), lambda out: F.cross_entropy(out, target))


class RecurrentLM(nn.Module):
    def __init__(self, vocab=50, hidden=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        h, _ = self.lstm(self.emb(tokens))
        h, _ = self.gru(h)
        return self.head(h)


def test_lstm_and_gru_language_model():
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (4, 12))
    wl, _, _ = _check(RecurrentLM(), (tokens,), lambda out: F.cross_entropy(out.flatten(0, 1), tokens.flatten()))
    # the LSTM gates are matmuls torch counts: forward 2 * tokens * 4H * (I + H) per layer
    rnn = {(op.phase, op.name): op for op in wl.ops if op.kind == "recurrent"}
    assert rnn[("forward", "aten.lstm")].flops == 2 * (2 * 48 * 4 * 32 * 64)
    # each recurrent module is one fused call per layer (as cuDNN runs it), not per-timestep kernels
    assert rnn[("forward", "aten.lstm")].count == 2 and rnn[("backward", "aten.gru")].count == 1
    assert not wl.uncounted_ops


class EinsumAttention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        probs = torch.einsum("bqhd,bkhd->bhqk", q, k).mul(q.shape[-1] ** -0.5).softmax(-1)
        mixed = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, s, d)
        fused = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True).transpose(1, 2).reshape(b, s, d)
        return self.out(mixed + fused) + x


def test_einsum_and_sdpa_attention():
    torch.manual_seed(0)
    _check(EinsumAttention(), (torch.randn(4, 16, 32),))


class _ScaledSquare(torch.autograd.Function):
    """y = (x @ w)^2 * s: saves x, w and x @ w; backward written by hand."""

    @staticmethod
    def forward(ctx, x, w, scale):
        xw = x @ w
        ctx.save_for_backward(x, w, xw)
        ctx.scale = scale
        return xw * xw * scale

    @staticmethod
    def backward(ctx, grad):
        x, w, xw = ctx.saved_tensors
        g = grad * 2 * ctx.scale * xw
        return g @ w.t(), x.t() @ g, None


class CustomFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(24, 48)
        self.w = nn.Parameter(torch.randn(48, 40) * 0.1)
        self.head = nn.Linear(40, 5)

    def forward(self, x):
        return self.head(_ScaledSquare.apply(torch.tanh(self.inp(x)), self.w, 0.5))


def test_custom_autograd_function():
    torch.manual_seed(0)
    _check(CustomFunction(), (torch.randn(32, 24),))


class FrozenStem(nn.Module):
    """A frozen conv stem (no weight gradients, no gradient flows into it) under a trained head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 4)
        for p in self.stem.parameters():
            p.requires_grad_(False)

    def forward(self, x, mask):
        y = F.relu(self.mid(self.stem(x) * mask))
        return self.head(y.mean((2, 3)))


def test_frozen_stem_and_inputs_without_grad():
    torch.manual_seed(0)
    module = FrozenStem()
    inputs = (torch.randn(8, 3, 16, 16), torch.rand(8, 16, 16, 16))
    wl, _, _ = _check(module, inputs)
    # backward = the mid conv's grad-weight only (its input needs no grad) + the head: no stem backward
    mid_fwd = 2 * 8 * 16 * 16 * 16 * 16 * 9
    bwd = sum(op.flops for op in wl.ops if op.phase == "backward")
    assert bwd == pytest.approx(mid_fwd + 2 * 2 * 8 * 16 * 4, rel=1e-9)
    assert wl.trainable_params == sum(p.numel() for p in module.parameters() if p.requires_grad)


class CnnLstmEinsum(nn.Module):
    """The issue's example: conv + BN + dropout, an LSTM over the image columns, einsum attention."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.1)
        self.lstm = nn.LSTM(16 * 8, 64, batch_first=True)
        self.qkv = nn.Linear(64, 192)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        y = F.max_pool2d(self.drop(F.relu(self.bn(self.conv(x)))), (2, 1))
        h, _ = self.lstm(y.permute(0, 3, 1, 2).flatten(2))
        q, k, v = self.qkv(h).chunk(3, -1)
        a = torch.einsum("bqd,bkd->bqk", q, k).softmax(-1)
        return self.head(torch.einsum("bqk,bkd->bqd", a, v).mean(1))


def test_cnn_lstm_einsum_module():
    torch.manual_seed(0)
    _check(CnnLstmEinsum(), (torch.randn(16, 3, 16, 16),))
