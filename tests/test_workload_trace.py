"""Traced workloads: fake-tensor tracing checked against real CPU runs, and against the analytic path."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from advisor.errors import WorkloadError  # noqa: E402
from advisor.workload import from_config, from_module, from_preset, load_workload, zoo  # noqa: E402
from advisor.workload.presets import PRESETS  # noqa: E402

MODULE_PRESETS = [p for p in PRESETS.values() if p.kind == "module"]


def _tiny_gpt(attention: str = "eager"):
    torch.manual_seed(0)
    return zoo.TinyGPT(vocab_size=1000, n_positions=64, hidden=128, layers=2, heads=4, attention=attention)


def _tokens(batch: int = 4, seq: int = 64):
    torch.manual_seed(1)
    return torch.randint(0, 1000, (batch, seq)), torch.randint(0, 1000, (batch, seq))


def _real_run(module, inputs):
    """FLOPs (FlopCounterMode) and unique bytes autograd saves (saved_tensors_hooks) on a real CPU step."""
    param_storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_storages and not (t.dtype == torch.long and t.shape == inputs[0].shape):
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = module(*inputs)
            loss = out if out.numel() == 1 else out.float().mean()
        loss.backward()
    return counter.get_total_flops(), sum(saved.values())


def _traced_fwd_bwd_flops(wl):
    return sum(op.flops for op in wl.ops if op.phase in ("forward", "backward"))


@pytest.mark.parametrize("preset", MODULE_PRESETS, ids=lambda p: p.name)
def test_module_preset_params_are_exact(preset):
    module, _ = zoo.build(preset.config["builder"], device="meta")
    assert sum(p.numel() for p in module.parameters()) == preset.published_params


def test_vgg16_transfer_trains_the_head_only():
    module, facts = zoo.build("vgg16-transfer", device="meta")
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable == 25088 * 256 + 256 + 256 * 10 + 10
    assert facts["frozen_prefixes"] == ("0.",)


@pytest.mark.parametrize("model", ["gpt", "cnn"])
def test_traced_flops_and_saved_bytes_match_a_real_cpu_run(model):
    if model == "gpt":
        module, inputs = _tiny_gpt(), _tokens()
    else:
        torch.manual_seed(0)
        module, inputs = zoo.mnist_cnn(), (torch.randn(8, 1, 28, 28),)
    wl = from_module(module, inputs, precision="fp32", optimizer="sgd")
    flops, saved_bytes = _real_run(module, inputs)
    assert _traced_fwd_bwd_flops(wl) == flops
    # tolerance 2%: the real run and the trace may differ in tiny bookkeeping tensors (e.g. int64 indices)
    assert wl.activation_bytes == pytest.approx(saved_bytes, rel=0.02)
    assert wl.params == sum(p.numel() for p in module.parameters())


def test_analytic_and_traced_agree_on_a_gpt2_style_model():
    module, inputs = _tiny_gpt("eager"), _tokens(4, 64)
    traced = from_module(module, inputs, precision="fp32")
    analytic = from_config(module.config, batch_size=4, seq_len=64, precision="fp32", attention="eager")
    assert traced.params == analytic.params == 532_992
    assert traced.flops_per_step == pytest.approx(analytic.flops_per_step, rel=0.03)
    assert traced.activation_bytes == pytest.approx(analytic.activation_bytes, rel=0.10)
    # with SDPA the trace counts the whole causal QK^T/AV (FlopCounterMode's convention); the analytic
    # path skips the masked half: the difference is exactly that half
    sdpa = from_module(_tiny_gpt("sdpa"), inputs, precision="fp32")
    analytic_sdpa = from_config(module.config, batch_size=4, seq_len=64, precision="fp32", attention="sdpa")
    full_fwd = 2 * 2 * 2 * 4 * 64 * 64 * 128  # layers x (QK^T, AV) x 2 * b * s * s * h
    assert sdpa.flops_per_step - analytic_sdpa.flops_per_step == pytest.approx((1 + 2.5) * full_fwd / 2)
    assert sdpa.activation_bytes == pytest.approx(analytic_sdpa.activation_bytes, rel=0.10)
    # amp: fp32 residual stream and norm inputs, 16-bit matmul inputs; autocast's weight copies are not activations
    amp = from_module(_tiny_gpt("sdpa"), inputs, precision="amp-bf16")
    analytic_amp = from_config(module.config, batch_size=4, seq_len=64, precision="amp-bf16", attention="sdpa")
    assert amp.activation_bytes == pytest.approx(analytic_amp.activation_bytes, rel=0.10)
    not_cast = 64 * 128 + 2 * 2 * 2 * 128 + 2 * 128  # position table and LayerNorm params stay fp32
    assert amp.options["traced_memory_bytes"]["weight_copies"] == 2 * (amp.params - not_cast)


def test_meta_device_llama_traces_and_matches_analytic_params():
    with torch.device("meta"):
        module = zoo.TinyLlama(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=344)
    tokens = torch.empty(2, 32, dtype=torch.long, device="meta")
    wl = load_workload(module, example_inputs=(tokens, tokens), precision="amp-bf16")
    analytic = from_config(module.config, batch_size=2, seq_len=32, precision="amp-bf16", attention="sdpa")
    assert wl.params == analytic.params
    assert wl.trainable_params == wl.params and not wl.uncounted_ops
    assert wl.options["traced_memory_bytes"]["gradients"] == 4 * wl.params
    # GQA + SwiGLU + unfused RMSNorm under amp (each of q/k/v and gate/up saves its own 16-bit input cast)
    assert wl.activation_bytes == pytest.approx(analytic.activation_bytes, rel=0.10)
    not_attention = lambda w: sum(op.flops for op in w.ops  # noqa: E731
                                  if "attention" not in op.name and ".attn.core" not in op.name
                                  and op.phase != "optimizer")
    assert not_attention(wl) == pytest.approx(not_attention(analytic), rel=1e-9)


def test_frozen_layers_count_only_trainable_params():
    torch.manual_seed(0)
    module = zoo.mnist_cnn()
    x = torch.randn(4, 1, 28, 28)
    full = from_module(module, (x,), precision="fp32")
    frozen = from_module(module, (x,), precision="fp32", frozen=("0.", "3.", "6."))
    head = 576 * 64 + 64 + 64 * 10 + 10
    assert frozen.trainable_params == head and full.trainable_params == 93_322
    opt = lambda wl: next(op for op in wl.ops if op.phase == "optimizer")  # noqa: E731
    assert opt(frozen).bytes == pytest.approx(opt(full).bytes * head / 93_322)
    assert frozen.options["traced_memory_bytes"]["gradients"] == 4 * head
    assert _traced_fwd_bwd_flops(frozen) < _traced_fwd_bwd_flops(full)


def test_preset_trace_scales_linearly_in_batch():
    wl = from_preset("mnist-cnn", batch_size=16, precision="fp32")
    module = zoo.mnist_cnn()
    direct = from_module(module, (torch.empty(16, 1, 28, 28),), precision="fp32")
    assert wl.flops_per_step == pytest.approx(direct.flops_per_step, rel=1e-9)
    assert wl.bytes_per_step == pytest.approx(direct.bytes_per_step, rel=1e-6)
    assert wl.activation_bytes == pytest.approx(direct.activation_bytes, rel=1e-6)
    assert wl.with_batch_size(32).flops_per_step == pytest.approx(2 * wl.flops_per_step, rel=0.01)
    resized = from_module(module, (torch.empty(2, 1, 28, 28),), precision="fp32", batch_size=16)
    assert resized.batch_size == 16 and resized.flops_per_step == direct.flops_per_step
    assert direct.with_batch_size(16) is direct and direct.with_batch_size(4).batch_size == 4
    with pytest.raises(WorkloadError):
        from_preset("mnist-cnn", image_size=0)
    with pytest.raises(WorkloadError, match="seq_len"):
        from_preset("resnet50", seq_len=128)


def test_lstm_preset_counts_recurrent_flops():
    wl = from_preset("lstm-lm", batch_size=8, precision="fp32")
    assert wl.params == 389_096 and wl.family == "rnn" and not wl.uncounted_ops
    # forward: LSTM 2 * tokens * 4H(I + H) + head 2 * tokens * H * V
    tokens = 8 * 20
    fwd = sum(op.flops for op in wl.ops if op.phase == "forward")
    assert fwd == 2 * tokens * (4 * 128 * 256 + 128 * 1000)


def test_data_dependent_ops_are_a_clear_error():
    class Picky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            y = self.lin(x)
            return y[y > 0].sum()

    with pytest.raises(WorkloadError, match="data-dependent"):
        from_module(Picky(), (torch.randn(2, 4),))


def test_inputs_that_do_not_fit_are_wrapped():
    with pytest.raises(WorkloadError, match="tracing Sequential") as err:
        from_module(zoo.mnist_cnn(), (torch.randn(2, 3, 28, 28),))
    assert "example_inputs" in err.value.hint
    with pytest.raises(WorkloadError, match="example_inputs"):
        load_workload(zoo.mnist_cnn())
    with pytest.raises(WorkloadError, match="lora_rank"):
        from_module(zoo.mnist_cnn(), (torch.randn(2, 1, 28, 28),), lora_rank=8)


def test_infer_trace_has_no_activations_or_optimizer():
    wl = from_module(_tiny_gpt(), (_tokens(2, 32)[0],), mode="infer", precision="bf16")
    assert wl.activation_bytes == 0 and wl.trainable_params == 0 and wl.optimizer is None
    assert all(op.phase == "forward" for op in wl.ops) and wl.transient_bytes > 0


def test_depthwise_conv_backward_costs_its_forward_per_gradient():
    """torch's flop formula ignores groups for grad-weight; the tracer counts it as the forward conv's cost."""
    module = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
    wl = from_module(module, (torch.empty(2, 32, 16, 16),), precision="fp32", optimizer="sgd")
    fwd = sum(op.flops for op in wl.ops if op.phase == "forward")
    bwd = sum(op.flops for op in wl.ops if op.phase == "backward")
    assert fwd == 2 * 2 * 32 * 16 * 16 * 9  # 2 FLOPs x batch x channels x pixels x 3x3 (one input channel each)
    assert bwd == fwd  # grad-weight only: the input needs no gradient (torch's formula says 32x this)
