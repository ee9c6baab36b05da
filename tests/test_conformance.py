"""One model, one price (issue 25): the doors to the same model agree.

Traced presets against the same torch module passed as a module (``estimate(module, example_inputs=...)``):
the estimator decides NCHW transposes, cuDNN's call costs, the loss and the optimizer by the ops a workload has,
never by where it came from, so the two agree within 3% in step time and memory.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from advisor import estimate  # noqa: E402
from advisor.workload import get_preset, zoo  # noqa: E402

_SAME_MODULE = [("resnet50", "train", 16, "amp-bf16", "RTX 3090"), ("resnet50", "infer", 64, "amp-fp16", "RTX 4090"),
                ("vit-b16", "train", 8, "amp-bf16", "H100 SXM5 80GB"),
                ("efficientnet-b0", "train", 16, "fp32", "A100 SXM4 80GB"),
                ("mobilenet-v2", "infer", 32, "bf16", "H100 SXM5 80GB"),
                ("lstm-lm", "train", 16, "fp32", "A100 SXM4 80GB")]


@pytest.mark.parametrize(("preset", "mode", "batch", "precision", "gpu"), _SAME_MODULE,
                         ids=[f"{c[0]}-{c[1]}" for c in _SAME_MODULE])
def test_traced_preset_and_its_module_cost_the_same(preset: str, mode: str, batch: int, precision: str,
                                                    gpu: str) -> None:
    cfg = get_preset(preset).config
    module, facts = zoo.build(cfg["builder"], device="meta")
    with torch.device("meta"):
        x = (torch.empty(batch, facts["channels"], cfg["image_size"], cfg["image_size"]) if facts["input"] == "image"
             else torch.empty(batch, cfg["seq_len"], dtype=torch.long))
    kw = {"gpu": gpu, "precision": precision, "mode": mode, "optimizer": "sgd-momentum"}
    by_name = estimate(preset, batch_size=batch, **kw)
    as_module = estimate(module, example_inputs=(x,), **kw)
    assert as_module.time.step_s == pytest.approx(by_name.time.step_s, rel=0.03)
    assert as_module.memory.total_bytes == pytest.approx(by_name.memory.total_bytes, rel=0.03)


@pytest.mark.parametrize("precision", ["amp-bf16", "bf16", "fp32"])
def test_the_unfused_activation_table_is_what_the_tracer_sees_hugging_faces_gelu_new_do(precision: str) -> None:
    """``UNFUSED_ACTIVATIONS['gelu_new']`` against transformers' NewGELUActivation traced between two linears."""
    activations = pytest.importorskip("transformers.activations")
    from torch import nn

    from advisor.workload.costs import compute_bytes
    from advisor.workload.trace import trace_module
    from advisor.workload.transformer_ops import activation_kernels

    tokens, width = 512, 256

    def traced(act: object) -> tuple[dict[str, list[float]], float]:
        with torch.device("meta"):
            module = nn.Sequential(nn.Linear(32, width), act, nn.Linear(width, 32))
            x = torch.empty(tokens, 32)
        w = trace_module(module, (x,), precision=precision, optimizer=None)
        out: dict[str, list[float]] = {"forward": [0, 0, 0], "backward": [0, 0, 0]}
        for op in w.ops:
            if op.bytes:  # kernels (views move nothing and launch nothing)
                out[op.phase][0] += op.count
                out[op.phase][1] += op.bytes
                out[op.phase][2] += op.strided_elements
        return out, w.activation_bytes

    (with_act, saved), (without, saved0) = traced(activations.NewGELUActivation()), traced(nn.Identity())
    n = tokens * width
    k = activation_kernels("gelu_new", precision.startswith("amp-"), compute_bytes(precision))
    assert k is not None
    for phase, (launches, nbytes, strided) in (("forward", (k.fwd_launches, k.fwd_bytes, k.fwd_strided)),
                                                ("backward", (k.bwd_launches, k.bwd_bytes, k.bwd_strided))):
        d = [a - b for a, b in zip(with_act[phase], without[phase], strict=True)]
        assert d[0] == launches and d[1] / n == pytest.approx(nbytes) and d[2] / n == pytest.approx(strided), phase
    assert (saved - saved0) / n == pytest.approx(k.saved)


def _kernels_traced(make: object, precision: str, x_shape: tuple[int, ...]) -> tuple[dict[str, list[float]], float]:
    """Kernels (calls, bytes, index-bound elements) per phase of ``make()`` traced one training step; the backward's
    reductions across rows apart (``backward-reduce``); and the bytes autograd saves."""
    from advisor.workload.trace import trace_module

    with torch.device("meta"):
        module = make()  # type: ignore[operator]
        x = torch.empty(*x_shape)
    w = trace_module(module, (x,), precision=precision, optimizer=None)
    out: dict[str, list[float]] = {"forward": [0, 0, 0], "backward": [0, 0, 0], "backward-reduce": [0, 0, 0]}
    for op in w.ops:
        if op.bytes:  # kernels (views move nothing and launch nothing)
            key = "backward-reduce" if op.phase == "backward" and op.kind == "reduction" and op.strided_elements \
                else op.phase
            for i, v in enumerate((op.count, op.bytes, op.strided_elements)):
                out[key][i] += v
    return out, w.activation_bytes


_NORM_CLASSES = [("llama", "transformers.models.llama.modeling_llama", "LlamaRMSNorm"),
                 ("llama", "transformers.models.qwen2.modeling_qwen2", "Qwen2RMSNorm"),
                 ("llama", "transformers.models.mistral.modeling_mistral", "MistralRMSNorm"),
                 ("gemma", "transformers.models.gemma.modeling_gemma", "GemmaRMSNorm"),
                 ("t5", "transformers.models.t5.modeling_t5", "T5LayerNorm")]


@pytest.mark.parametrize("precision", ["amp-bf16", "bf16", "fp32"])
@pytest.mark.parametrize(("family", "module_name", "cls"), _NORM_CLASSES, ids=[c[2] for c in _NORM_CLASSES])
def test_the_rms_norm_table_is_what_the_tracer_sees_hugging_faces_norms_do(family: str, module_name: str, cls: str,
                                                                          precision: str) -> None:
    """``RMS_NORMS`` against each family's norm class traced on a residual-like input (less the same without it)."""
    import importlib

    from torch import nn

    from advisor.workload.costs import compute_bytes
    from advisor.workload.transformer_ops import rms_norm_kernels

    norm_cls = getattr(importlib.import_module(module_name), cls)
    tokens, width = 1024, 1024

    class Box(nn.Module):  # the norm reads a stream in the parameters' dtype (fp32 under amp), as a residual is
        def __init__(self, norm: nn.Module) -> None:
            super().__init__()
            self.scale, self.norm, self.out = nn.Parameter(torch.ones(width)), norm, nn.Linear(width, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.norm(x * self.scale))

    (with_norm, saved), (without, saved0) = (_kernels_traced(lambda m=m: Box(m), precision, (tokens, width))
                                             for m in (norm_cls(width), nn.Identity()))
    k = rms_norm_kernels(family, False, precision.startswith("amp-"), compute_bytes(precision))
    assert k is not None
    n = tokens * width
    for phase, (launches, nbytes, strided) in (("forward", (k.fwd_launches, k.fwd_bytes, k.fwd_strided)),
                                                ("backward", (k.bwd_launches, k.bwd_bytes, k.bwd_strided)),
                                                ("backward-reduce", (1, k.reduce_bytes, 1))):
        d = [a - b for a, b in zip(with_norm[phase], without[phase], strict=True)]
        # the per-token (variance, rsqrt) and per-weight kernels launch; their 1/width, 1/tokens of the bytes are
        # left out of the table
        assert d[0] == launches and d[1] / n == pytest.approx(nbytes, abs=0.05) and d[2] / n == pytest.approx(
            strided, abs=0.01), (phase, d[0], d[1] / n, d[2] / n)
    assert (saved - saved0) / n == pytest.approx(k.saved, abs=0.02)


@pytest.mark.parametrize("precision", ["amp-bf16", "bf16", "fp32"])
def test_the_rotary_table_is_what_the_tracer_sees_hugging_faces_rotary_do(precision: str) -> None:
    """``ROTARY`` against transformers' ``apply_rotary_pos_emb`` on q and k projected into SDPA (less without it)."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from torch import nn

    from advisor.workload.costs import compute_bytes
    from advisor.workload.transformer_ops import rotary_kernels

    tokens, heads, d = 256, 4, 64
    width = heads * d

    class Box(nn.Module):
        def __init__(self, rotate: bool) -> None:
            super().__init__()
            self.rotate = rotate
            self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
            # cos / sin in the stream's dtype (fp32 under amp), as LlamaRotaryEmbedding returns them
            self.register_buffer("cos", torch.ones(1, tokens, d))
            self.register_buffer("sin", torch.ones(1, tokens, d))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = (lin(x).view(1, tokens, heads, d).transpose(1, 2) for lin in (self.q, self.k, self.v))
            if self.rotate:
                q, k = llama.apply_rotary_pos_emb(q, k, self.cos, self.sin)
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o(y.transpose(1, 2).reshape(tokens, width))

    (rotated, saved), (plain, saved0) = (_kernels_traced(lambda r=r: Box(r), precision, (tokens, width))
                                         for r in (True, False))
    amp, a_b = precision.startswith("amp-"), compute_bytes(precision)
    k = rotary_kernels(amp, a_b)
    n = 2 * tokens * width  # q and k
    # the table leaves out cos / sin: four muls each way read a (tokens, d) table of the stream's dtype
    tables = 4 * tokens * d * (4 if amp else a_b) / n
    for phase, (launches, nbytes, strided) in (("forward", (k.fwd_launches, k.fwd_bytes, k.fwd_strided)),
                                                ("backward", (k.bwd_launches, k.bwd_bytes, k.bwd_strided))):
        d_ = [a - b for a, b in zip(rotated[phase], plain[phase], strict=True)]
        assert d_[0] == launches and d_[1] / n == pytest.approx(nbytes + tables) and d_[2] / n == pytest.approx(
            strided), (phase, d_[0], d_[1] / n, d_[2] / n)
    assert rotated["backward-reduce"] == plain["backward-reduce"]
    assert (saved - saved0) / n == pytest.approx(k.saved, abs=0.05)


@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    from tests.benchmark_scripts import load

    return load("conformance")


#: Panel rows (model, case) -> the classes outside the bounds, each listed in docs/conformance.md with its reason:
#: the caching allocator's share where advisor.workload.step_timeline does not write the step (T5: the closed form's
#: fitted formula against the trace's replayed timeline; issue 25), or where the fake run allocates what CUDA does
#: not (GPT-2's tied gradients), where the allocated bytes agree.
OPEN: dict[tuple[str, str], set[str]] = {
    # checkpointing: GPT-2's reserve (the written step's replay against the trace's, allocated within 0.1%: the fake
    # run sums the tied embedding's two gradients out of place, CUDA in place); T5's reserve (fitted 0.29 GB, the
    # trace's replayed 0.72 GB; allocated within 2%: no T5 programme on the step tape)
    ("gpt2", "train amp-bf16 checkpointing"): {"peak"},
    ("t5", "train amp-bf16 checkpointing"): {"peak"},
}


@pytest.mark.parametrize("model", ["gpt2", "bert", "llama", "mistral", "qwen2", "gemma", "t5", "mixtral"])
def test_the_closed_form_is_the_hugging_face_module_it_names(harness, model: str) -> None:  # type: ignore[no-untyped-def]
    """benchmarks/conformance.py's panel, every case: each class within its bound but those ``OPEN`` lists; and what
    ``OPEN`` lists is still out (a row back in bounds leaves the list and docs/conformance.md)."""
    for row in harness.run([model], list(harness.CASES)):
        assert row.closed and row.module, (row.case, row.note)
        d, open_ = row.diffs(), OPEN.get((model, row.case), set())
        assert set(row.outside()) <= open_, (row.case, d)
        assert open_ <= set(row.outside()), (row.case, d)
        if (model, row.case) == ("gpt2", "train amp-bf16"):  # the GPT-2 training: gelu_new and the loss
            assert abs(d["step_s"]) <= 0.10, d


_T5_GATED = {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "d_ff": 1024}


@pytest.mark.parametrize("case", ["train amp-bf16", "train fp32", "forward bf16"])
@pytest.mark.parametrize("variant", ["t5", "t5-v1.1"])
def test_the_encoder_decoder_closed_form_is_the_t5_module_cuda_runs(  # type: ignore[no-untyped-def]
        harness, case: str, variant: str) -> None:
    """T5ForConditionalGeneration (relu, tied, rescaled; gated-gelu, untied config) against its closed form.

    Traced as CUDA runs it (``advisor.workload.trace_sdpa``: the relative bias through the memory-efficient kernel,
    its gradient written and summed over the batch), every class within the harness's bounds.
    """
    cfg = dict(harness.PANEL["t5"], **(_T5_GATED if variant == "t5-v1.1" else {}))
    mode, precision = harness.CASES[case]
    closed = harness.closed_form(cfg, mode, precision)
    module = harness.traced(cfg, mode, precision)
    c, m = harness.metrics(closed), harness.metrics(module)
    assert any("position_bias.grad" in op.name for op in closed.ops) == (mode == "train")
    assert any(op.name.startswith("aten._scaled_dot_product_efficient_attention_backward") for op in module.ops) \
        == (mode == "train")
    d = {k: c[k] / m[k] - 1 if m[k] else c[k] for k in harness.BOUNDS}
    outside = {k: v for k, v in d.items() if abs(v) > harness.BOUNDS[k]}
    if mode == "train":  # the loss's backward: its gradients less the parameter gradients not made yet
        assert closed.transient_bytes == pytest.approx(module.transient_bytes, rel=0.01)
    # the gated amp row's peak (-5.1%): the allocated bytes agree, the caching allocator's reserve does not (the
    # closed form's fitted share, 0.43 GB, against the trace's replayed timeline, 0.66 GB: docs/conformance.md)
    allowed = {"peak"} if (variant, case) == ("t5-v1.1", "train amp-bf16") else set()
    assert set(outside) <= allowed and abs(d["peak"]) < 0.06, d


#: The steps beyond one forward / training step (benchmarks/conformance.py's ``STEP_CASES``) checked in CI, on the
#: rows where each differs (Qwen2: its biases; Gemma: its norm, head_dim 256 and one key head; GPT-2: a fused q/k/v
#: and dropout; BERT: post-norm; Mixtral: the experts): generation's prefill and one decode step over a filled
#: DynamicCache, transformers' own gradient checkpointing, and LoRA on a frozen base (PEFT's layer written out)
_STEP_ROWS = [(m, "prefill bf16") for m in ("gpt2", "llama", "qwen2", "gemma", "mixtral")] + \
    [(m, "decode bf16") for m in ("gpt2", "llama", "qwen2", "gemma", "mixtral")] + \
    [(m, "train amp-bf16 checkpointing") for m in ("gpt2", "bert", "llama", "qwen2")] + \
    [(m, "train amp-bf16 lora") for m in ("llama", "qwen2", "gemma")]


@pytest.mark.parametrize(("model", "case"), _STEP_ROWS, ids=[f"{m}-{c.replace(' ', '-')}" for m, c in _STEP_ROWS])
def test_generation_checkpointing_and_lora_follow_the_module(harness, model: str, case: str) -> None:  # type: ignore[no-untyped-def]
    """Each class within its bound but those ``OPEN`` lists, and what it lists still out."""
    (row,) = harness.run([model], [case])
    assert row.closed and row.module, row.note
    d, open_ = row.diffs(), OPEN.get((model, case), set())
    assert set(row.outside()) <= open_, d
    assert open_ <= set(row.outside()), d
    assert abs(d["gemm_flops"]) <= harness.BOUNDS["gemm_flops"], d
    if case == "decode bf16":  # one token: no saved tensors, its memory the cache the prefill left
        assert set(d) == set(harness.DECODE_CLASSES), d


def test_the_prefill_keeps_the_last_logit_and_decode_reads_the_cache(harness) -> None:  # type: ignore[no-untyped-def]
    """generate()'s prefill (logits_to_keep=1) and a decode step: the LM head over one position per sequence, and
    attention over the cache's positions plus the new one, in the traced module as in the closed form."""
    cfg = harness.PANEL["qwen2"]
    seq, b, h, vocab = harness._seq(cfg), harness.BATCH, cfg["hidden_size"], cfg["vocab_size"]
    prefill = harness.closed_form(cfg, "infer", "bf16", "prefill")
    head = [op for op in prefill.ops if op.name == "lm_head"]
    assert head and head[0].flops == 2.0 * b * h * vocab
    traced = harness.traced(cfg, "infer", "bf16", "decode")
    heads, d = cfg["num_attention_heads"], h // cfg["num_attention_heads"]
    attention = sum(op.flops for op in traced.ops if op.kind == "attention")
    assert attention == 4.0 * b * heads * (seq + 1) * d * cfg["num_hidden_layers"]
    assert harness.metrics(harness.closed_form(cfg, "infer", "bf16", "decode"), "decode")["attention_work"] == attention


def test_repeat_kv_prices_the_copies_transformers_4_46_made(harness) -> None:  # type: ignore[no-untyped-def]
    """``repeat_kv=True`` (transformers < 4.48's SDPA, Qwen2's and Mistral's flash attention 2): each decode step
    copies the cache to every query head (index-bound) and attention reads the copies; transformers 5's SDPA does
    neither (enable_gqa), which the traced decode step above confirms. Eager attention copies by default."""
    from advisor.workload.config import arch_from_config
    from advisor.workload.transformer import build_transformer

    cfg = harness.PANEL["qwen2"]
    arch = arch_from_config(dict(cfg), "qwen2")
    kw = {"name": "qwen2", "source": "config", "batch_size": 1, "seq_len": 4096, "mode": "infer",
          "precision": "bf16", "optimizer": None, "gen_len": 64}
    plain, copied = build_transformer(arch, **kw), build_transformer(arch, repeat_kv=True, **kw)
    eager = build_transformer(arch, attention="eager", **kw)
    assert not [op for op in plain.decode_ops if "repeat_kv" in op.name]
    rep = [op for op in copied.decode_ops if "repeat_kv" in op.name]
    ctx, groups = 4096 + 32, cfg["num_attention_heads"] // cfg["num_key_value_heads"]
    expanded = 2.0 * cfg["num_attention_heads"] * 64 * ctx * cfg["num_hidden_layers"]
    assert len(rep) == 1 and rep[0].strided_elements == expanded
    core = [next(op for op in w.decode_ops if op.name.endswith("attn.core")) for w in (plain, copied)]
    assert core[1].bytes == groups * core[0].bytes
    assert [op for op in eager.decode_ops if "repeat_kv" in op.name]
    assert any("repeat_kv" in op.name for op in copied.ops) and not any("repeat_kv" in op.name for op in plain.ops)
