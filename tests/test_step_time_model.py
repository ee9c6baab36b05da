"""The step-time mechanisms of issue 13: GEMM tiles/waves/alignment, cuDNN layout and TF32 defaults, the
per-class breakdown, and the advice they lead to."""

from __future__ import annotations

import pytest

from advisor.api import estimate
from advisor.cli import main
from advisor.estimator.gemm import REFERENCE, aligned, common_alignment, gemm_seconds, unaligned_fraction
from advisor.estimator.ops import GROUPS


def test_gemm_reference_shape_runs_at_the_large_shape_rate() -> None:
    m, n, k = REFERENCE
    assert gemm_seconds(m, n, k, rate_flops=1e15, sms=132) == pytest.approx(2 * m * n * k / 1e15)


def test_wave_quantization_one_tile_too_many_costs_a_wave() -> None:
    """132 tiles of 256x128 fill one wave on 132 SMs; one more row of tiles needs a second wave."""
    one_wave = gemm_seconds(256 * 12, 128 * 11, 8192, rate_flops=1e15, sms=132)
    two_waves = gemm_seconds(256 * 12 + 256, 128 * 11, 8192, rate_flops=1e15, sms=132)
    assert two_waves > 1.5 * one_wave


def test_small_gemms_run_below_the_large_shape_rate() -> None:
    m = n = k = 512
    achieved = 2 * m * n * k / gemm_seconds(m, n, k, rate_flops=1e15, sms=132)
    assert achieved < 0.6e15


def test_alignment_rules() -> None:
    assert aligned([(8192, 768, 3072)], 8) and not aligned([(8192, 50257, 768)], 8)
    assert common_alignment([(8192, 50257, 768)], 8) == 1
    assert common_alignment([(8192, 30522, 768)], 8) == 2
    assert unaligned_fraction(0.12, 2) == pytest.approx(2 * unaligned_fraction(0.12, 1))


def test_gpt2_vocabulary_padding_is_advised_and_pays() -> None:
    base = dict(batch_size=16, seq_len=1024, precision="amp-bf16", calibration=None)
    e = estimate("gpt2", "H100 SXM5 80GB", **base)
    advice = [a for a in e.assumptions if a.startswith("advice: pad")]
    assert advice and "50304" in advice[0]
    padded = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50304,
              "n_positions": 1024, "tie_word_embeddings": True}
    faster = estimate(padded, "H100 SXM5 80GB", **base)
    assert faster.time.step_s < 0.82 * e.time.step_s  # about a fifth of the step is the unaligned head
    assert not any(a.startswith("advice: pad") for a in faster.assumptions)


def test_by_class_covers_the_step() -> None:
    e = estimate("llama-3-8b", "H100 SXM5 80GB", batch_size=8, seq_len=2048, precision="amp-bf16",
                 calibration=None, lora_rank=16)
    by_class = e.time.to_dict()["by_class"]
    assert set(by_class) == {*GROUPS, "host (exposed)"}
    assert sum(by_class.values()) == pytest.approx(e.time.step_s, rel=0.02)
    assert max(by_class, key=lambda c: by_class[c]) == "gemm"


def test_the_breakdown_advises_only_changes_that_apply_to_the_card_and_workload() -> None:
    def advice(model: object, gpu: str, precision: str, **kw: object) -> dict[str, str]:
        return estimate(model, gpu, batch_size=8, precision=precision, calibration=None, **kw).time.to_dict()[
            "class_advice"]

    pascal = advice("resnet50", "gtx-1080-ti", "amp-fp16", image_size=224)
    assert "channels_last" not in pascal["conv"] and "amp" not in pascal["conv"]  # no tensor cores, no transposes
    assert pascal["conv"] == "a card with tensor cores"
    a100_fp32 = advice("resnet50", "a100-sxm4-80gb", "fp32", image_size=224)
    assert "channels_last" in a100_fp32["conv"] and "amp" in a100_fp32["conv"]
    nhwc = advice("resnet50", "a100-sxm4-80gb", "amp-fp16", image_size=224, channels_last=True)
    assert "channels_last" not in nhwc["conv"] and "amp" not in nhwc["conv"]
    gpt2 = advice("gpt2", "h100-sxm5-80gb", "bf16", seq_len=1024)
    assert "padded" in gpt2["gemm"]  # the 50257-entry vocabulary
    assert "head dim" in gpt2["attention"]  # fused already: what its tiles and exponentials cost
    assert "amp" in advice("gpt2", "a100-sxm4-80gb", "fp32", seq_len=1024)["attention"]
    from advisor.workload import load_workload

    eager = load_workload("gpt2", batch_size=8, seq_len=1024, precision="bf16", attention="eager")
    assert "fused kernel" in advice(eager, "a100-sxm4-80gb", "bf16")["attention"]
    assert "padded" not in advice("llama-2-7b", "h100-sxm5-80gb", "bf16", seq_len=512)["gemm"]  # all aligned


def test_channels_last_skips_the_cudnn_transposes() -> None:
    kw = dict(batch_size=256, image_size=224, precision="amp-fp16", optimizer="sgd-momentum", calibration=None)
    nchw = estimate("resnet50", "A100 SXM4 80GB", **kw)
    nhwc = estimate("resnet50", "A100 SXM4 80GB", channels_last=True, **kw)
    assert nhwc.time.step_s < 0.8 * nchw.time.step_s
    assert any("transposes NCHW" in a for a in nchw.assumptions)
    assert not any("transposes NCHW" in a for a in nhwc.assumptions)


def test_fp32_convolutions_run_as_tf32_where_the_card_has_it() -> None:
    """cuDNN's default (allow_tf32=True): an fp32 ResNet-50 costs its convs like a tf32 one on an A100."""
    kw = dict(batch_size=128, image_size=224, optimizer="sgd-momentum", calibration=None)
    fp32 = estimate("resnet50", "A100 SXM4 80GB", precision="fp32", **kw).time.to_dict()["by_class"]["conv"]
    tf32 = estimate("resnet50", "A100 SXM4 80GB", precision="tf32", **kw).time.to_dict()["by_class"]["conv"]
    assert fp32 == pytest.approx(tf32, rel=0.05)
    v100 = estimate("resnet50", "V100 SXM2 16GB", precision="fp32", **kw).time.to_dict()["by_class"]["conv"]
    assert v100 > 3 * fp32  # no TF32 on Volta: the FP32 units


def test_estimate_breakdown_cli(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["estimate", "--model", "gpt2", "--gpu", "A100 SXM4 80GB", "--batch-size", "8", "--seq-len", "512",
               "--breakdown", "--calibration", "none"])
    out = capsys.readouterr().out
    assert rc == 0 and "step time by op class" in out and "gemm" in out and "padded to multiples of 8" in out


def test_host_time_is_not_the_gpu_probes_bare_launch() -> None:
    """An 11 us bare-op launch (the H100/H200 probes) must not turn into ~31 us of host per op: it is one bare
    op's CPU dispatch (~3.6 us) plus one CUDA launch call, so it sets the launch call only (~7.5 us per kernel)."""
    kw = dict(batch_size=16, seq_len=512, precision="amp-bf16")
    e = estimate("bert-base", "H100 SXM5 80GB", calibration={"matmul_bf16": 0.78, "launch_overhead_s": 11e-6}, **kw)
    assert not any(c.startswith("host_op_s") for c in e.calibrated_figures)
    (launch,) = [c for c in e.calibrated_figures if c.startswith("host_launch_s")]
    assert 7e-6 < float(launch.split("=")[1]) < 8e-6
    without = estimate("bert-base", "H100 SXM5 80GB", calibration={"matmul_bf16": 0.78}, **kw)
    assert e.time.host_s >= without.time.host_s
    measured = estimate("bert-base", "H100 SXM5 80GB", calibration={"host_dispatch_s_per_op": 30e-6}, **kw)
    assert measured.time.host_s > e.time.host_s  # a measured dispatch time of a realistic op mix does set it


def test_a_probed_backward_cost_per_op_replaces_the_fraction() -> None:
    """The probe's host_backward kernel (the autograd engine's cost per op on that host) sets the backward's host
    time per op; without it a backward op costs the module's share of a forward op."""
    kw = dict(batch_size=16, seq_len=512, precision="amp-bf16")
    fwd_only = estimate("bert-base", "H100 SXM5 80GB", calibration={"host_dispatch_s_per_op": 8e-6}, **kw)
    slow = estimate("bert-base", "H100 SXM5 80GB",
                    calibration={"host_dispatch_s_per_op": 8e-6, "host_backward_s_per_op": 16e-6}, **kw)
    assert "host_backward_op_s=1.6e-05" in slow.calibrated_figures
    assert "8.0 us per op forward, 16.0 us backward" in " ".join(slow.assumptions)
    assert "8.0 us per op forward, 4.4 us backward" in " ".join(fwd_only.assumptions)  # Hugging Face's 0.55
    assert slow.time.host_s > fwd_only.time.host_s
    alone = estimate("bert-base", "H100 SXM5 80GB", calibration={"host_backward_s_per_op": 16e-6}, **kw)
    assert not any(c.startswith("host_backward") for c in alone.calibrated_figures)  # only with its forward


def test_recurrent_time_steps_run_one_after_another() -> None:
    """A small LSTM over 512 steps costs at least 512 dependent step latencies per layer, whatever its FLOPs."""
    import torch

    from advisor.estimator.recurrent import RECURRENT_STEP_S
    from advisor.workload import from_module

    lstm = torch.nn.LSTM(16, 16, num_layers=2, batch_first=True)
    wl = from_module(lstm, (torch.empty(4, 512, 16),), mode="infer", precision="fp32",
                     loss_fn=lambda out: out[0].sum())
    steps = [op.serial_steps for op in wl.ops if op.kind == "recurrent"]
    assert steps == [512 * 2]
    e = estimate(wl, "H100 SXM5 80GB", calibration=None, runtime="graph")
    assert e.time.step_s >= 512 * 2 * RECURRENT_STEP_S


def test_cudnn_recurrent_layers_add_their_gemms_to_the_dependent_steps() -> None:
    """cuDNN runs a layer's input projection (forward) and its input and weight gradients (backward) as GEMMs
    beside the persistent kernel: the traced op carries them, and they add to the steps' latency."""
    import torch

    from advisor.estimator.recurrent import RECURRENT_STEP_S
    from advisor.workload import from_module

    lstm = torch.nn.LSTM(32, 64, num_layers=2, batch_first=True)
    wl = from_module(lstm, (torch.empty(8, 100, 32),), mode="train", precision="fp32",
                     loss_fn=lambda out: out[0].sum(), optimizer="sgd")
    fwd = next(op for op in wl.ops if op.kind == "recurrent" and op.phase == "forward")
    bwd = next(op for op in wl.ops if op.kind == "recurrent" and op.phase == "backward")
    assert fwd.gemms == ((800, 256, 32), (800, 256, 64))  # tokens x 4 gates x hidden, K = each layer's input
    assert len(bwd.gemms) == 6 and (64, 256, 800) in bwd.gemms  # dX, dW_ih, dW_hh per layer
    small = estimate(wl, "H100 SXM5 80GB", calibration=None, runtime="graph")
    big = estimate(wl.with_batch_size(512), "H100 SXM5 80GB", calibration=None, runtime="graph")
    floor = 2 * 100 * 2 * RECURRENT_STEP_S  # forward + backward, 100 steps x 2 layers each
    assert floor < small.time.step_s < big.time.step_s  # the GEMMs grow with the batch, the steps do not


def test_3x3_stride_1_fp32_convolutions_on_cuda_cores_take_winograd() -> None:
    """cuDNN's Winograd algorithms (2.25x fewer multiplies) where convolutions run on CUDA cores: fp32 on a V100;
    not where they run as implicit GEMMs on tensor cores (TF32 on an A100, 16-bit anywhere)."""
    import torch

    from advisor.estimator.conv import WINOGRAD_MULTIPLY_REDUCTION
    from advisor.estimator.ops import CONV_3X3, op_class
    from advisor.workload import from_module

    net = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, stride=2, padding=1),
                              torch.nn.Conv2d(64, 64, 1))
    wl = from_module(net, (torch.empty(8, 64, 32, 32),), mode="train", precision="fp32")
    marked = {o.name.split("[")[0] for o in wl.ops if op_class(o) == CONV_3X3}
    assert marked == {"aten.convolution.3x3", "aten.convolution_backward.3x3"}  # stride 2 and 1x1 are not
    kw = dict(batch_size=128, image_size=224, optimizer="sgd-momentum", calibration=None)
    v100 = estimate("resnet50", "V100 SXM2 16GB", precision="fp32", **kw)
    assert any("Winograd" in n for n in v100.assumptions)
    for gpu, precision in (("A100 SXM4 80GB", "fp32"), ("V100 SXM2 16GB", "amp-fp16")):
        assert not any("Winograd" in n for n in estimate("resnet50", gpu, precision=precision, **kw).assumptions)
    from advisor.catalog import get_gpu
    from advisor.estimator import profiles
    from advisor.estimator.time import card_rates

    volta = card_rates(get_gpu("V100 SXM2 16GB"), "fp32", profiles.defaults_for("Volta"), 125e12, 15.7e12)
    ampere = card_rates(get_gpu("A100 SXM4 80GB"), "fp32", profiles.defaults_for("Ampere"), 312e12, 19.5e12)
    assert volta.winograd_factor == WINOGRAD_MULTIPLY_REDUCTION and ampere.winograd_factor == 1.0
