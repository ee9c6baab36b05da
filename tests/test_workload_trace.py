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
    assert amp.options.traced_memory_bytes.weight_copies == 2 * (amp.params - not_cast)


def test_meta_device_llama_traces_and_matches_analytic_params():
    with torch.device("meta"):
        module = zoo.TinyLlama(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=344)
    tokens = torch.empty(2, 32, dtype=torch.long, device="meta")
    wl = load_workload(module, example_inputs=(tokens, tokens), precision="amp-bf16")
    analytic = from_config(module.config, batch_size=2, seq_len=32, precision="amp-bf16", attention="sdpa")
    assert wl.params == analytic.params
    assert wl.trainable_params == wl.params and not wl.uncounted_ops
    assert wl.options.traced_memory_bytes.gradients == 4 * wl.params
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
    assert frozen.options.traced_memory_bytes.gradients == 4 * head
    assert _traced_fwd_bwd_flops(frozen) < _traced_fwd_bwd_flops(full)


def test_preset_trace_scales_linearly_in_batch():
    wl = from_preset("mnist-cnn", batch_size=16, precision="fp32")
    module, facts = zoo.build("mnist-cnn", device="cpu")
    loss = zoo.task_loss(facts)  # the presets train with their task's loss (cross-entropy over the classes)
    direct = from_module(module, (torch.empty(16, 1, 28, 28),), precision="fp32", step_loss=loss)
    assert wl.flops_per_step == pytest.approx(direct.flops_per_step, rel=1e-9)
    assert wl.bytes_per_step == pytest.approx(direct.bytes_per_step, rel=1e-6)
    assert wl.activation_bytes == pytest.approx(direct.activation_bytes, rel=1e-6)
    assert wl.with_batch_size(32).flops_per_step == pytest.approx(2 * wl.flops_per_step, rel=0.01)
    resized = from_module(module, (torch.empty(2, 1, 28, 28),), precision="fp32", batch_size=16, step_loss=loss)
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


def test_traced_presets_train_with_their_tasks_cross_entropy():
    """A preset's step is its task's loss, as validate and users train it: the LSTM language model's
    cross-entropy over its 1000-word vocabulary at every position saves the (tokens x vocab) fp32 log-softmax
    for backward, which the sum of the output's means (the default for a bare module) does not."""
    wl = from_preset("lstm-lm", batch_size=8, seq_len=20, precision="fp32")
    module, _facts = zoo.build("lstm-lm", device="cpu")
    bare = from_module(module, (torch.zeros(8, 20, dtype=torch.long),), precision="fp32")
    loss_ops = {"aten._log_softmax", "aten.nll_loss_forward", "aten._log_softmax_backward_data",
                "aten.nll_loss_backward"}
    assert loss_ops <= {op.name for op in wl.ops} and not loss_ops & {op.name for op in bare.ops}
    assert wl.activation_bytes - bare.activation_bytes == pytest.approx(8 * 20 * 1000 * 4, abs=64)
    mnist = from_preset("mnist-cnn", batch_size=8, precision="fp32")
    assert loss_ops <= {op.name for op in mnist.ops}
    assert "loss: cross-entropy over the vocabulary at every position" in " ".join(wl.assumptions)
    assert "loss: cross-entropy over the classes" in " ".join(mnist.assumptions)
    assert not any(a.startswith("loss:") for a in from_preset("mnist-cnn", mode="infer").assumptions)


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


def test_a_step_past_the_op_budget_stops_with_a_clear_error(monkeypatch):
    """A module looping in Python over its sequence stops at TRACE_OP_BUDGET ops, not after many minutes."""
    from advisor.workload import trace_record

    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            h = torch.zeros_like(x[:, 0])
            for t in range(x.shape[1]):  # one step at a time, as a slow-path state-space scan does
                h = torch.tanh(self.lin(x[:, t]) + h)
            return h.sum()

    monkeypatch.setattr(trace_record, "TRACE_OP_BUDGET", 200)
    with pytest.raises(WorkloadError, match="dispatched more than 200 ops") as err:
        from_module(Scan(), (torch.randn(2, 64, 4),))
    assert "seq_len" in err.value.hint
    monkeypatch.setattr(trace_record, "TRACE_OP_BUDGET", 100_000)
    assert from_module(Scan(), (torch.randn(2, 64, 4),)).ops  # the same module under the budget traces


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


# --- GEMM shapes (min_dim): per op, from the GEMM view, bucketed by class, scaled with the batch -----------


def _gemm_groups(wl, kind=None, phase=None):
    return [op for op in wl.ops if op.kind in ("matmul", "conv") and (kind is None or op.kind == kind)
            and (phase is None or op.phase == phase)]


def test_gemm_dims_of_matmul_ops_are_m_n_k():
    from advisor.workload.aten_ops import gemm_dims as _gemm_dims

    aten = torch.ops.aten
    with torch.device("meta"):
        x, w, bias = torch.empty(300, 96), torch.empty(96, 200), torch.empty(200)
        a3, b3 = torch.empty(3, 40, 96), torch.empty(3, 96, 24)
        cases = [
            ("mm", aten.mm.default, (x, w), (300, 200, 96)),
            ("addmm", aten.addmm.default, (bias, x, w), (300, 200, 96)),  # the bias is not an operand
            ("bmm", aten.bmm.default, (a3, b3), (40, 24, 96)),
            ("baddbmm", aten.baddbmm.default, (torch.empty(3, 40, 24), a3, b3), (40, 24, 96)),
            ("linear", aten.linear.default, (a3, torch.empty(24, 96)), (120, 24, 96)),
            # CPU's linear on a 3-D input: bmm with the weight expanded over the batch = one folded GEMM
            ("bmm", aten.bmm.default, (a3, torch.empty(96, 24).expand(3, 96, 24)), (120, 24, 96)),
        ]
        for name, func, args, want in cases:
            out = func(*args)
            assert _gemm_dims(name, "matmul", func, args, {}, out) == want, name


def test_matmul_min_dim_is_min_of_m_n_k():
    for rows, fin, fout in [(40, 96, 200), (300, 96, 200), (300, 500, 24)]:
        wl = from_module(torch.nn.Linear(fin, fout), (torch.empty(rows, fin),), precision="fp32", optimizer="sgd")
        fwd = _gemm_groups(wl, phase="forward")
        assert [op.min_dim for op in fwd] == [min(rows, fin, fout)]
        assert fwd[0].count == 1 and fwd[0].flops == 2 * rows * fin * fout
        # backward: grad-weight only (the input needs no gradient): fout x rows @ rows x fin, the same dims
        bwd = _gemm_groups(wl, phase="backward")
        assert [(op.count, op.min_dim) for op in bwd] == [(1, min(rows, fin, fout))]


def test_1x1_conv_min_dim_is_its_channels_not_its_kernel():
    conv = torch.nn.Conv2d(256, 256, 1, bias=False)
    x = torch.empty(2, 256, 56, 56).requires_grad_(False)
    wl = from_module(conv, (x,), precision="amp-fp16", optimizer="sgd")
    groups = _gemm_groups(wl, kind="conv")
    assert {op.phase for op in groups} == {"forward", "backward"}
    assert all(op.min_dim == 256 for op in groups)  # M = 2*56*56, N = C_out = 256, K = 256*1*1
    # plain GEMM views are grouped by their exact (M, N, K), which the estimator prices by tiles and waves
    assert [op.name for op in groups] == ["aten.convolution[6272x256x256]",
                                          "aten.convolution_backward[6272x256x256]"]
    assert [op.gemms for op in groups] == [((6272, 256, 256),), ((6272, 256, 256),)]


def test_depthwise_conv_k_is_the_kernel_area():
    """groups=C: K = C_in * R * S / groups = 9 (real: depthwise convs are memory-bound)."""
    module = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
    wl = from_module(module, (torch.empty(2, 32, 16, 16),), mode="infer", precision="fp32")
    (op,) = _gemm_groups(wl)
    assert op.min_dim == 9 and op.name == "aten.convolution[512x32x9]"
    dense = from_module(torch.nn.Conv2d(32, 32, 3, padding=1), (torch.empty(2, 32, 16, 16),), mode="infer")
    assert [o.min_dim for o in _gemm_groups(dense)] == [32]  # N = C_out = 32 < K = 288 < M = 512


def test_different_shapes_are_bucketed_not_lumped():
    module = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1, groups=64), torch.nn.Conv2d(64, 512, 1))
    wl = from_module(module, (torch.empty(4, 64, 28, 28),), mode="infer", precision="bf16")
    assert sorted((op.name, op.min_dim, op.count) for op in _gemm_groups(wl)) == [
        ("aten.convolution[3136x512x64]", 64, 1), ("aten.convolution[3136x64x9]", 9, 1)]


def test_resnet50_convs_have_their_real_min_dim():
    """Every ResNet-50 conv has >= 64 channels on both sides except the stem (C_in 3, but K = 3*7*7 = 147),
    and M = 64 x 7 x 7 at the smallest feature map: no conv group has min_dim < 64 at batch 64."""
    wl = from_preset("resnet50", batch_size=64, precision="amp-fp16", optimizer="sgd-momentum")
    convs = _gemm_groups(wl, kind="conv")
    assert sum(op.count for op in convs if op.phase == "forward") == 53
    assert sum(op.count for op in convs if op.phase == "backward") == 53
    assert min(op.min_dim for op in convs) == 64
    assert {op.min_dim for op in convs} >= {64, 128, 256, 512}
    # classifier 2048 -> 1000 at batch 64: M = 64
    (fc,) = _gemm_groups(wl, kind="matmul", phase="forward")
    assert fc.min_dim == 64


def test_scaled_preset_grows_batch_dims():
    small = from_preset("resnet50", batch_size=2, precision="amp-fp16", optimizer="sgd-momentum")
    big = small.with_batch_size(256)
    fc = lambda wl: [(op.phase, op.count, op.min_dim) for op in _gemm_groups(wl, kind="matmul")]  # noqa: E731
    # forward addmm; backward grad-input and grad-weight mm (one group per exact shape): M or K is the batch
    assert fc(small) == [("forward", 1, 2), ("backward", 1, 2), ("backward", 1, 2)]
    assert fc(big) == [("forward", 1, 256), ("backward", 1, 256), ("backward", 1, 256)]  # min(256, 1000, 2048)
    assert sum(op.flops for op in _gemm_groups(big, kind="matmul")) == pytest.approx(
        128 * sum(op.flops for op in _gemm_groups(small, kind="matmul")))


def test_scaled_preset_ops_match_a_direct_trace():
    """Scaling the two small traces op by op gives the groups, counts and min_dims a direct trace gives."""
    for batch in (16, 100):
        wl = from_preset("mnist-cnn", batch_size=batch, precision="fp32", optimizer="sgd")
        direct = from_module(zoo.mnist_cnn(), (torch.empty(batch, 1, 28, 28),), precision="fp32", optimizer="sgd")
        key = lambda w: sorted((op.phase, op.name, op.count, op.min_dim) for op in _gemm_groups(w))  # noqa: E731
        assert key(wl) == key(direct)
        flops = lambda w: {(op.phase, op.name): op.flops for op in _gemm_groups(w)}  # noqa: E731
        assert flops(wl) == pytest.approx(flops(direct), rel=1e-9)


class _Blocks(torch.nn.Module):
    """A stem, four repeated residual MLP blocks (what checkpointing wraps) and a head."""

    def __init__(self, dim=32):
        super().__init__()
        self.stem = torch.nn.Linear(16, dim)
        self.blocks = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 4 * dim),
                                                                torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))
                                            for _ in range(4)])
        self.head = torch.nn.Linear(dim, 10)

    def forward(self, x):
        return self.head(self.blocks(torch.relu(self.stem(x))))


def test_gradient_checkpointing_of_a_traced_module_matches_a_real_checkpointed_run():
    from advisor.workload.trace_blocks import checkpointed, find_blocks

    torch.manual_seed(0)
    module, x = _Blocks(), torch.randn(64, 16)
    plain = from_module(module, (x,), precision="fp32", optimizer="sgd")
    wl = from_module(module, (x,), precision="fp32", optimizer="sgd", gradient_checkpointing=True)
    assert wl.gradient_checkpointing and not plain.gradient_checkpointing
    assert "forward" not in module.blocks[0].__dict__  # the module is left as it was
    # the real run: validate's blocks, torch.utils.checkpoint; kept = what autograd saves outside the
    # blocks + the blocks' inputs (checkpointing's own hooks take over inside the blocks)
    kept: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in module.parameters()} | {x.untyped_storage().data_ptr()}

    def keep(t):
        if t.untyped_storage().data_ptr() not in params:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with checkpointed(find_blocks(module), on_input=keep) as n_blocks, FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            out = module(x).mean()
        out.backward()
    assert n_blocks == 4
    traced_flops = _traced_fwd_bwd_flops(wl)
    assert traced_flops == pytest.approx(counter.get_total_flops(), rel=1e-9)
    assert traced_flops > _traced_fwd_bwd_flops(plain)  # the recompute: backward runs the blocks' forward again
    assert wl.activation_bytes == pytest.approx(sum(kept.values()), rel=0.02)
    assert wl.activation_bytes < plain.activation_bytes / 3
    # one block's activations are recomputed in backward: transient, not kept
    assert wl.transient_bytes > plain.transient_bytes


@pytest.mark.slow  # traces torchvision's ViT-B/16 twice on fake tensors (~3-5 s on 2 cores)
def test_vit_preset_models_gradient_checkpointing():
    plain = from_preset("vit-b16", batch_size=8, precision="amp-bf16")
    ckpt = from_preset("vit-b16", batch_size=8, precision="amp-bf16", gradient_checkpointing=True)
    assert ckpt.gradient_checkpointing and any("checkpointing" in a for a in ckpt.assumptions)
    assert ckpt.activation_bytes < plain.activation_bytes / 4
    fwd = sum(op.flops for op in plain.ops if op.phase == "forward")
    extra = sum(op.flops for op in ckpt.ops if op.phase == "backward") - sum(
        op.flops for op in plain.ops if op.phase == "backward")
    # torch stops the recompute once the tensors backward needs exist again (each MLP's last linear
    # is not rerun): between half and all of one more forward
    assert 0.5 * fwd < extra < fwd
    assert ckpt.with_batch_size(16).gradient_checkpointing


def test_checkpointing_a_module_without_repeated_blocks_is_a_clear_error():
    module = torch.nn.Linear(8, 4)
    with pytest.raises(WorkloadError, match="no repeated blocks"):
        from_module(module, (torch.randn(2, 8),), gradient_checkpointing=True)


def test_a_meta_built_model_with_meta_targets_traces_with_a_step_loss():
    """What validate's trace predictor hands over: model, inputs and loss targets all on ``meta``."""
    import torch.nn.functional as F

    from advisor.workload.trace import trace_module

    with torch.device("meta"):
        module = _Blocks()
        x, target = torch.empty(8, 16), torch.empty(8, dtype=torch.long)
    meta = trace_module(module, (x,), precision="fp32", optimizer="sgd",
                        step_loss=lambda out, inputs: F.cross_entropy(out, target) + inputs[0].mean() * 0)
    torch.manual_seed(0)
    real_module, real_target = _Blocks(), torch.randint(0, 10, (8,))
    cpu = from_module(real_module, (torch.randn(8, 16),), precision="fp32", optimizer="sgd",
                      loss_fn=lambda out: F.cross_entropy(out, real_target))
    assert _traced_fwd_bwd_flops(meta) == _traced_fwd_bwd_flops(cpu) > 0
    assert meta.activation_bytes == pytest.approx(cpu.activation_bytes, rel=0.05)
    ckpt = trace_module(module, (x,), precision="fp32", optimizer="sgd", gradient_checkpointing=True,
                        checkpoint_blocks=module.blocks, step_loss=lambda out, _inputs: F.cross_entropy(out, target))
    assert ckpt.gradient_checkpointing and ckpt.activation_bytes < meta.activation_bytes


def test_preset_allocations_scale_to_a_direct_trace():
    """The step's allocations of a preset, scaled from the two traced batches, are a direct trace's at that batch
    (what advisor.estimator.allocator replays)."""
    from advisor.workload.trace import trace_module

    preset = from_preset("mnist-cnn", batch_size=48, precision="fp32", optimizer="sgd")
    module, facts = zoo.build("mnist-cnn", device="meta")
    with torch.device("meta"):
        x = torch.empty(48, 1, 28, 28)
    direct = trace_module(module, (x,), precision="fp32", optimizer="sgd", step_loss=zoo.task_loss(facts))
    scaled, traced = preset.options.allocations, direct.options.allocations
    assert scaled["params"] == traced["params"] and scaled["grads"] == traced["grads"]
    assert scaled["step"] == traced["step"] and scaled["inputs"] == traced["inputs"] == [48 * 28 * 28 * 4]


def test_cuda_autocast_policy_is_undone_when_the_traced_module_fails():
    from advisor.workload.trace import trace_module

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(x).reshape(3, -1)  # 4 x 8 elements: no shape with 3 rows

    with pytest.raises(WorkloadError, match="tracing Broken"):
        trace_module(Broken(), (torch.randn(4, 8),), precision="amp-bf16", optimizer="sgd")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast's own policy again
        assert torch.softmax(torch.nn.functional.linear(torch.randn(2, 8), torch.randn(4, 8)), -1).dtype == \
            torch.bfloat16
