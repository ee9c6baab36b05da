"""Index-bound kernels: which traced calls leave TensorIterator's vectorized path, and how they are priced.

The rule (``advisor.workload.aten_ops.index_bound_elements``) is checked on real CPU tensors of the shapes and
layouts the trace sees; the rates (``STRIDED_ELEMENTS_PER_SM_CYCLE``, ``COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE``,
``MAX_POOL_ELEMENTS_PER_SM_CYCLE``, ``LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE``)
are reproduced from the committed H200 profile by benchmarks/strided_rates.py, the script they come from.
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest

torch = pytest.importorskip("torch")

from advisor import estimate  # noqa: E402
from advisor.catalog import get_gpu  # noqa: E402
from advisor.estimator import profiles  # noqa: E402
from advisor.estimator.attention import ATTENTION_BACKWARD_RATE, FUSED_ATTENTION_BLOCK_TILES  # noqa: E402
from advisor.estimator.conv import LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE  # noqa: E402
from advisor.estimator.gemm import unaligned_fraction  # noqa: E402
from advisor.estimator.index_bound import (  # noqa: E402
    COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE,
    MAX_POOL_ELEMENTS_PER_SM_CYCLE,
    STRIDED_ELEMENTS_PER_SM_CYCLE,
)
from advisor.estimator.ops import prepare_ops  # noqa: E402
from advisor.estimator.optimizer import FOREACH_BANDWIDTH_FRACTION  # noqa: E402
from advisor.estimator.time import card_rates, ops_time_detail  # noqa: E402
from advisor.workload.aten_ops import index_bound_elements  # noqa: E402
from advisor.workload.base import OpCost  # noqa: E402
from tests import benchmark_scripts  # noqa: E402


def _elements(name: str, out: object, *ins: object, pointwise: bool = True, kind: str = "elementwise",
              args: tuple = (), kwargs: dict | None = None) -> int:
    tensors = [t for t in ins if isinstance(t, torch.Tensor)]
    return index_bound_elements(name, kind, pointwise, args, kwargs or {}, tensors, [out])


def test_broadcast_and_non_contiguous_operands_leave_the_vectorized_path() -> None:
    x, rms = torch.empty(4, 8, 16), torch.empty(4, 8, 1)
    assert _elements("mul", x * rms, x, rms) == 4 * 8 * 16  # RMSNorm's x * rsqrt(mean): a broadcast operand
    assert _elements("mul", x * x, x, x) == 0  # same shape, same layout: vectorized
    assert _elements("mul", x * 2.0, x, torch.tensor(2.0)) == 0  # a one-element tensor is a scalar
    t = x.transpose(1, 2)
    assert _elements("add", t + t.contiguous(), t, t.contiguous()) == 4 * 8 * 16  # layouts differ
    half = x[..., 8:]
    assert _elements("neg", -half, half) == 4 * 8 * 8  # RoPE's rotate_half: a slice of the last dimension


def test_channels_last_tensors_stay_vectorized() -> None:
    x = torch.empty(2, 8, 5, 5).to(memory_format=torch.channels_last)
    assert _elements("relu", torch.relu(x), x) == 0  # every operand dense in the same order


def test_casts_run_the_unrolled_path_except_fp32_to_16_bit() -> None:
    x32, x16 = torch.empty(64, 32), torch.empty(64, 32, dtype=torch.bfloat16)
    assert _elements("_to_copy", x16.float(), x16, pointwise=False) == 64 * 32
    assert _elements("_to_copy", x32.bfloat16(), x32, pointwise=False) == 0  # bfloat16_copy_kernel_cuda
    assert _elements("add", x16 + x32, x16, x32) == 64 * 32  # mixed dtypes: dynamic casting


def test_cat_along_an_inner_dimension_interleaves() -> None:
    a = torch.empty(4, 8, 16)
    assert _elements("cat", torch.cat([a, a], -1), a, a, pointwise=False, args=([a, a], -1)) == 4 * 8 * 32
    assert _elements("cat", torch.cat([a, a], 0), a, a, pointwise=False, args=([a, a], 0)) == 0  # two blocks
    # BERT's q/k/v gradients, permuted views stacked along dim 0: CatArrayBatchedCopy gathers them element by element
    g = torch.empty(2, 16, 4, 8).permute(0, 2, 1, 3)
    out = torch.stack([g, g, g])
    assert _elements("stack", out, g, g, g, pointwise=False, args=([g, g, g],)) == out.numel()


def test_column_reductions_count_their_input_elements() -> None:
    g = torch.empty(512, 64)
    assert _elements("sum", g.sum(0), g, kind="reduction", pointwise=False) == 512 * 64  # a bias gradient
    assert _elements("sum", g.sum(-1, keepdim=True), g, kind="reduction", pointwise=False) == 0  # along rows


def test_nchw_max_pooling_counts_its_threads_channels_last_does_not() -> None:
    x = torch.empty(2, 8, 12, 12)
    y, idx = torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1])
    assert _elements("max_pool2d_with_indices", y, x, pointwise=False, kind="reduction") == y.numel()  # per output
    gx = torch.ops.aten.max_pool2d_with_indices_backward(y, x, [3, 3], [2, 2], [1, 1], [1, 1], False, idx)
    assert _elements("max_pool2d_with_indices_backward", gx, y, x, idx, pointwise=False,
                     kind="reduction") == x.numel()  # per input element
    xl = x.to(memory_format=torch.channels_last)
    yl, _ = torch.ops.aten.max_pool2d_with_indices(xl, [3, 3], [2, 2], [1, 1])
    assert yl.stride()[1] == 1  # the output keeps the input's layout: the NHWC kernels, priced by bytes
    assert _elements("max_pool2d_with_indices", yl, xl, pointwise=False, kind="reduction") == 0


def test_nchw_pools_are_priced_by_threads_unless_run_channels_last() -> None:
    spec = get_gpu("h200-sxm-141gb")
    rates = card_rates(spec, "fp32", profiles.defaults_for("Hopper"), 67e12, 67e12)
    cycles = spec.sm_count * spec.boost_clock_mhz * 1e6
    n = 1e8
    pool = OpCost("aten.max_pool2d_with_indices_backward[strided]", "reduction", "backward", 0.0, 8 * n,
                  strided_elements=n)
    t = {cl: ops_time_detail(prepare_ops([pool], channels_last=cl), rates).per_op[0] for cl in (False, True)}
    assert t[False] == pytest.approx(n / (cycles * MAX_POOL_ELEMENTS_PER_SM_CYCLE[
        "max_pool2d_with_indices_backward"]), rel=1e-3)
    assert t[True] == pytest.approx(8 * n / rates.memory_bytes_s, rel=1e-3)  # NHWC kernels: its bytes
    assert t[True] < t[False] / 2


def test_cudnn_layout_transposes_take_the_slower_of_bytes_and_elements() -> None:
    spec = get_gpu("h200-sxm-141gb")
    eff = profiles.defaults_for("Hopper")
    cycles = spec.sm_count * spec.boost_clock_mhz * 1e6
    n = 1e9  # elements of the conv call's tensors
    seconds = {}
    for precision, size in (("amp-fp16", 2), ("fp32", 4)):
        rates = card_rates(spec, precision, eff, 989e12, 67e12)
        conv = OpCost("aten.convolution", "conv", "forward", 1.0, n * size, tensor_core=True)
        plain, nchw = (ops_time_detail(prepare_ops([conv], align_elems=16 // size, nchw=x), rates).per_op[0]
                       for x in (False, True))
        seconds[precision] = nchw - plain
        assert seconds[precision] >= n * size / rates.memory_bytes_s * (1 - 1e-9)  # never faster than its bytes
    # fp16 tensors are element-bound: the same elements take as long as at fp32 (the H200 profile: 6.25 vs 7.28 ms)
    assert seconds["amp-fp16"] == pytest.approx(n / (cycles * LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE), rel=1e-3)
    assert seconds["amp-fp16"] > 0.8 * seconds["fp32"]


def test_ops_outside_tensor_iterator_are_priced_by_bytes() -> None:
    grad = torch.empty(4, 8, 16)
    out = torch.zeros(3, 4, 8, 16)  # select_backward: a fill and one contiguous slice copy
    assert _elements("select_backward", out, grad, pointwise=False) == 0


def test_the_trace_groups_index_bound_calls_apart_and_skips_kernel_less_views() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(32))
            self.lin = torch.nn.Linear(32, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w
            return self.lin(x)  # 3-D input: mm, then _unsafe_view back to 3-D

    w = estimate(Block(), "h200-sxm-141gb", example_inputs=(torch.randn(4, 16, 32),), mode="train",
                 precision="fp32").workload
    strided = [o for o in w.ops if o.name.endswith("[strided]")]
    assert any(o.name == "aten.mul[strided]" and o.strided_elements >= 4 * 16 * 32 for o in strided)
    assert all(o.strided_elements == 0 for o in w.ops if not o.name.endswith("[strided]")
               and o.kind != "reduction")
    assert all(o.bytes == 0 for o in w.ops if "_unsafe_view" in o.name)  # a view: no kernel, no bytes


def test_strided_elements_are_priced_per_sm_cycle_at_the_boost_clock() -> None:
    spec = get_gpu("h200-sxm-141gb")
    eff = dataclasses.replace(profiles.defaults_for("Hopper"), clock=0.5)
    rates = card_rates(spec, "bf16", eff, 989e12, 67e12)
    per_s = spec.sm_count * spec.boost_clock_mhz * 1e6 * STRIDED_ELEMENTS_PER_SM_CYCLE
    assert rates.strided_elements_s == pytest.approx(per_s)  # not slowed by the GEMM's power-capped clock
    align1 = profiles.defaults_for("hopper").unaligned
    assert rates.unaligned_flops == pytest.approx(989e12 * unaligned_fraction(align1))  # nor align-1 GEMMs
    n = 1e9
    ew = OpCost("aten.mul[strided]", "elementwise", "forward", 0.0, 4 * n, strided_elements=n)
    red = OpCost("aten.sum[strided]", "reduction", "backward", 0.0, 2 * n, strided_elements=n)
    plain = OpCost("aten.mul", "elementwise", "forward", 0.0, 4 * n)
    details = [ops_time_detail(prepare_ops([op]), rates) for op in (ew, red, plain)]
    t = [sum(d.phases) - d.launch_s for d in details]
    assert t[0] == pytest.approx(n / per_s, rel=1e-3)  # 4 GB would take ~1 ms at the bandwidth: elements win
    assert t[1] == pytest.approx(n / (spec.sm_count * spec.boost_clock_mhz * 1e6
                                          * COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE), rel=1e-3)
    assert t[2] < t[0] / 2  # the same bytes, vectorized
    serial = card_rates(spec, "bf16", eff, 989e12, 67e12, serial_host=True)
    assert serial.strided_elements_s == 0.0  # the host's own CPU: bytes only


def test_the_rates_are_what_the_h200_profile_measured() -> None:
    measured = benchmark_scripts.load("strided_rates").rates(
        benchmark_scripts.BENCHMARKS.parent / "tests/data/gpu-runs/h200-2026-11-28/profile-ops.json",
        benchmark_scripts.BENCHMARKS.parent / "tests/data/gpu-runs/h200-2026-11-28/probe-full.json")
    assert len(measured["elementwise"]) >= 8 and len(measured["reduction"]) >= 5
    assert statistics.median(measured["elementwise"]) == pytest.approx(STRIDED_ELEMENTS_PER_SM_CYCLE, abs=0.05)
    assert statistics.median(measured["reduction"]) == pytest.approx(COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE, abs=0.1)
    assert len(measured["layout_transpose"]) == 2  # ResNet-50 b128 at fp16 and fp32
    assert statistics.median(measured["layout_transpose"]) == pytest.approx(LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE,
                                                                            abs=0.05)
    for name, rate in MAX_POOL_ELEMENTS_PER_SM_CYCLE.items():  # ResNet-50 fp16 + fp32 and mnist-cnn
        assert len(measured[name]) == 3 and statistics.median(measured[name]) == pytest.approx(rate, abs=0.01)


def test_fused_attention_tile_costs_are_what_the_h200_profile_measured() -> None:
    fit = benchmark_scripts.load("strided_rates").attention_tiles(
        benchmark_scripts.BENCHMARKS.parent / "tests/data/gpu-runs/h200-2026-11-28/profile-ops.json",
        benchmark_scripts.BENCHMARKS.parent / "tests/data/gpu-runs/h200-2026-11-28/probe-full.json")
    # ViT s197, GPT-2 s1024 (amp, bf16), llama-small s2048 forward; the same and BERT s512 backward
    assert len(fit["forward"]) == 4 and len(fit["backward"]) == 5
    assert fit["block_tiles"] == pytest.approx(FUSED_ATTENTION_BLOCK_TILES, abs=0.05)
    # the forwards within 3% of the tile model (GEMMs at the probe's rate, then the exponentials): nothing else fitted
    assert all(0.97 < r < 1.03 for r in fit["forward"])
    assert statistics.median(fit["backward"]) == pytest.approx(ATTENTION_BACKWARD_RATE, abs=0.01)


def test_foreach_optimizer_bandwidth_is_what_the_h200_profile_measured() -> None:
    measured = benchmark_scripts.load("strided_rates").foreach_fractions(
        benchmark_scripts.BENCHMARKS.parent / "tests/data/gpu-runs/h200-2026-11-28/profile-ops.json",
        benchmark_scripts.BENCHMARKS.parent / "tests/data/gpu-runs/h200-2026-11-28/probe-full.json")
    assert len(measured[4]) == 6 and len(measured[2]) == 2  # fp32 states (amp, fp32), bf16 states
    for state, fraction in FOREACH_BANDWIDTH_FRACTION.items():
        assert statistics.median(measured[state]) == pytest.approx(fraction, abs=0.01)
    rates = card_rates(get_gpu("h200-sxm-141gb"), "bf16", profiles.defaults_for("Hopper"), 989e12, 67e12)
    opt = OpCost("optimizer.adamw", "optimizer", "optimizer", 14e9, 40e9, count=9)  # 1 G bf16 params
    t = ops_time_detail(prepare_ops([opt]), rates).per_op[0]
    assert t == pytest.approx(40e9 / (rates.memory_bytes_s * FOREACH_BANDWIDTH_FRACTION[2]), rel=1e-6)


def test_analytic_llama_lists_hugging_faces_unfused_rmsnorm_and_rotary_in_eager_only() -> None:
    from advisor.workload import load_workload

    llama = load_workload("llama-2-7b", batch_size=1, seq_len=512, precision="bf16")
    unfused = [op for op in llama.ops if ".norm.unfused" in op.name or ".rotary" in op.name]
    assert {op.phase for op in unfused} == {"forward", "backward"} and all(op.runtime == "eager" for op in unfused)
    fwd = [op for op in unfused if op.phase == "forward" and op.name.startswith("layers.")]
    tokens, h, layers = 512, 4096, 32  # 2 RMSNorms x 3 elements + 4.5 per rotated q and k element (MHA: 2 h)
    assert sum(op.strided_elements for op in fwd) == pytest.approx(tokens * layers * (2 * 3 * h + 4.5 * 2 * h))
    gpt2 = load_workload("gpt2", batch_size=1, seq_len=512)  # LayerNorm with bias, learned positions: none
    assert not any(".norm.unfused" in op.name or ".rotary" in op.name for op in gpt2.ops)
    eager = estimate("llama-2-7b", "a100-sxm4-80gb", batch_size=1, seq_len=512, mode="infer", gen_len=0,
                     precision="fp16", calibration="none")
    graph = estimate("llama-2-7b", "a100-sxm4-80gb", batch_size=1, seq_len=512, mode="infer", gen_len=0,
                     precision="fp16", calibration="none", runtime="graph")
    assert eager.time.by_class_s["elementwise"] > graph.time.by_class_s["elementwise"] * 1.5  # fused in graphs


def test_a_cnn_estimate_states_the_pooling_rule_unless_run_channels_last() -> None:
    kw = dict(batch_size=256, mode="train", precision="fp32", optimizer="sgd", image_size=28)
    nchw = estimate("mnist-cnn", "h200-sxm-141gb", calibration="none", **kw)
    nhwc = estimate("mnist-cnn", "h200-sxm-141gb", calibration="none", channels_last=True, **kw)
    assert any("NCHW max pooling" in a for a in nchw.assumptions)
    assert not any("NCHW max pooling" in a for a in nhwc.assumptions)
    pools = [o for o in nchw.workload.ops if "max_pool2d" in o.name]
    assert len(pools) == 2 and all(o.strided_elements for o in pools)


def test_analytic_decode_prices_hugging_faces_kv_cache_cat_by_its_elements() -> None:
    """DynamicCache grows k and v by torch.cat along the sequence dimension every token: an inner-dimension cat, as
    the tracer files the same call (the zoo's traced decode), so the analytic presets price it by its elements."""
    w = estimate("llama-2-7b", "A100 SXM4 80GB", mode="infer", batch_size=16, seq_len=512, gen_len=512,
                 precision="fp16", calibration="none").workload
    (cat,) = [o for o in w.decode_ops if o.name == "decode.kv_cache.cat"]
    assert cat.strided_elements == pytest.approx(cat.bytes / 2 / 2)  # k and v, read and written, 2 bytes each
    a = torch.empty(2, 4, 6, 8)
    grown = torch.cat([a, a[:, :, :1]], 2)
    assert _elements("cat", grown, a, a[:, :, :1], pointwise=False, args=([a, a[:, :, :1]], 2)) == grown.numel()


def test_analytic_presets_list_autocasts_activation_casts_and_hugging_faces_loss_copies() -> None:
    """As the tracer sees validate's zoo GPT-2 / Llama run under autocast, and as transformers 5's loss reads."""
    kw = dict(mode="train", batch_size=4, seq_len=512, optimizer="adamw", calibration="none")

    def ops(model: str, precision: str) -> dict[str, OpCost]:
        return {o.name: o for o in estimate(model, "h200-sxm-141gb", precision=precision, **kw).workload.ops}

    gpt2, llama = ops("gpt2", "amp-bf16"), ops("llama-2-7b", "amp-bf16")
    tokens, h = 4 * 512, 768
    # GPT-2's fused c_attn casts the normed input once; Llama's separate q, k, v three times, and sums 3 gradients
    assert gpt2["layers.*.attn.qkv.input_cast"].count == 12 and "layers.*.attn.qkv.input_grad_sum" not in gpt2
    assert llama["layers.*.attn.qkv.input_cast"].count == 3 * 32 and llama["layers.*.attn.qkv.input_grad_sum"].bytes
    assert gpt2["layers.*.attn.qkv.input_cast.grad"].strided_elements == pytest.approx(12 * tokens * h)
    assert gpt2["layers.*.residual"].strided_elements == pytest.approx(12 * 2 * tokens * h)  # fp32 + bf16
    assert not ops("gpt2", "bf16")["layers.*.residual"].strided_elements  # one dtype: vectorized
    # the loss as transformers 5 runs it: ForCausalLMLoss upcasts 16-bit logits (GPT-2's too), shifts the labels
    # (no copy of the logits)
    assert gpt2["loss.upcast"].strided_elements == pytest.approx(tokens * 50257) and "loss.shift" not in gpt2
    assert llama["loss.upcast"].strided_elements == pytest.approx(tokens * 32000)
    # GPT-2's gelu_new runs unfused: 10 kernels forward per layer under autocast, 3 of them index-bound
    assert gpt2["layers.*.mlp.act"].count == 12 * 10
    assert gpt2["layers.*.mlp.act"].strided_elements == pytest.approx(12 * 3 * tokens * 4 * h)
    infer = estimate("gpt2", "h200-sxm-141gb", precision="amp-bf16", mode="infer", batch_size=4, seq_len=512,
                     gen_len=0, calibration="none").workload.ops
    assert not any(o.name.startswith("loss.") for o in infer)  # no loss without training


def test_16_bit_fused_attention_backward_runs_below_the_forwards_rate() -> None:
    fwd = OpCost("aten.sdpa", "attention", "forward", 1e12, 1e6, tensor_core=True)
    bwd = OpCost("aten.sdpa_backward", "attention", "backward", 2.5e12, 2.5e6, tensor_core=True)

    def ratio(gpu: str, arch: str, precision: str) -> float:
        rates = card_rates(get_gpu(gpu), precision, profiles.defaults_for(arch), 989e12, 67e12)
        t = [ops_time_detail(prepare_ops([op]), rates).per_op[0] for op in (fwd, bwd)]
        return t[1] / t[0]

    assert ratio("h200-sxm-141gb", "Hopper", "bf16") == pytest.approx(2.5 / ATTENTION_BACKWARD_RATE, rel=1e-3)
    assert ratio("h200-sxm-141gb", "Hopper", "fp32") == pytest.approx(2.5, rel=1e-3)  # memory-efficient kernel
    assert ratio("gtx-1080-ti", "Pascal", "fp16") == pytest.approx(2.5, rel=1e-3)  # no flash / cuDNN attention
