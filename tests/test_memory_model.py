"""Peak memory: decode (prefill logits, KV cache at its peak), BERT's MLM head, checkpointing, gen_len=0, the
caching-allocator term, and the property on the shared GPU rows (never under-promise by more than 5% / 512 MiB).
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from advisor import validate as v
from advisor.api import estimate
from advisor.errors import WorkloadError
from advisor.estimator.memory import (
    ALLOCATOR_ACTIVATIONS,
    ALLOCATOR_SEGMENTS_BYTES,
    ALLOCATOR_STATIC,
    ALLOCATOR_TRANSIENT,
)
from advisor.validate.predictors import estimate_case
from advisor.workload.config import arch_from_config
from advisor.workload.transformer import build_transformer, kv_cache_peak_bytes

MiB = 2**20
RUNS = Path(__file__).parent / "data" / "gpu-runs"
CARDS = ("h100-2026-11-28", "h200-2026-11-28")

BERT_BASE = {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12,
             "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}


# --------------------------------------------------------------------------------------------- the GPU rows

def _rows() -> list[tuple[str, v.ValidationRow]]:
    out = []
    for card in CARDS:
        for part in ("a", "b"):
            doc = json.loads((RUNS / card / f"validate-{part}.json").read_text())
            out += [(card, r) for r in v.replay(doc, calibration=None).rows]
    return out


_REPLAYED: list[tuple[str, v.ValidationRow]] = []


def _replayed() -> list[tuple[str, v.ValidationRow]]:
    if not _REPLAYED:
        _REPLAYED.extend(_rows())
    return _REPLAYED


#: Rows the estimator still under-predicts (both cards).  Empty since validate traces the zoo module with its
#: own loss (cross-entropy over fp32 logits): the seven traced rows that came out 6-22% low now hold.  strict:
#: a row that breaks the property again must be listed here, with its reason.
STILL_UNDER: set[tuple[str, str]] = set()


def _row_ids() -> list[tuple[str, str, str]]:
    ids = []
    for card in CARDS:
        for part in ("a", "b"):
            doc = json.loads((RUNS / card / f"validate-{part}.json").read_text())
            for r in doc["rows"]:
                c = r["config"]
                case = v.Case(r["model"], c["mode"], c["batch_size"], c["precision"], c["optimizer"],
                              seq_len=c["seq_len"], image_size=c["image_size"],
                              gradient_checkpointing=c["gradient_checkpointing"], gen_len=c.get("gen_len"))
                ids.append((card, r["model"], case.label()))
    return ids


def _params() -> list[object]:
    out = []
    for card, model, label in _row_ids():
        marks = [pytest.mark.xfail(strict=True, reason="traced allocated bytes too low")] \
            if (model, label) in STILL_UNDER else []
        out.append(pytest.param(card, model, label, marks=marks, id=f"{card[:4]}-{model}-{label}"))
    return out


@pytest.mark.parametrize(("card", "model", "label"), _params())
def test_never_under_promises_on_the_shared_gpu_rows(card, model, label) -> None:
    """predicted >= measured max_memory_reserved x 0.95, or within 512 MiB of it."""
    row = next(r for c, r in _replayed() if c == card and r.case.model == model and r.case.label() == label)
    predicted, measured = row.prediction.memory_bytes, row.measurement.peak_bytes
    assert predicted is not None and measured is not None
    assert predicted >= 0.95 * measured or measured - predicted <= 512 * MiB, (
        f"{model} {label}: predicted {predicted / MiB:.0f} MiB, measured {measured / MiB:.0f} MiB reserved")


def test_decode_row_is_within_ten_percent_on_both_cards() -> None:
    rows = [r for _, r in _replayed() if r.case.gen_len]
    assert len(rows) == 2
    for r in rows:  # was -57%: the prefill's logits at every prompt position were missing
        assert abs(r.memory_error) <= 0.10


# --------------------------------------------------------------------------------------------- the CPU heap

def _heap_peak(step, before=lambda: None) -> int:
    """Peak C-heap bytes in use beyond the start while ``step()`` runs, sampled after every aten op (as validate
    measures a CPU row); the lower of two runs (the first may grow the heap's arenas), ``before()`` each."""
    from torch.utils._python_dispatch import TorchDispatchMode

    heap = v.heap_in_use_bytes
    if heap() is None:
        pytest.skip("this C library has no mallinfo2: the CPU heap cannot be measured")

    class Peak(TorchDispatchMode):
        def __init__(self, base: int) -> None:
            super().__init__()
            self.base, self.peak = base, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.peak = max(self.peak, (heap() or 0) - self.base)
            return out

    peaks = []
    for _ in range(2):
        before()
        gc.collect()
        with Peak(heap() or 0) as mode:
            step()
        peaks.append(mode.peak)
    return min(peaks)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "amp-bf16"])
def test_traced_training_peak_is_the_real_cpu_steps(precision) -> None:
    """The fake run's peak (frees recorded before the next op allocates) is the real CPU step's heap peak, for
    fp32, bf16 and autocast: validate's gpt2-tiny shape at b8 s128, forward + cross-entropy + backward.  Before
    the frees were ordered (and every storage swept after every op) amp-bf16 came out 30-47% high here.  Both
    runs use CUDA's autocast policy (see advisor.workload.trace): the trace always does, the real step here too."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from advisor.validate.records import _autocast
    from advisor.workload import zoo
    from advisor.workload.trace import trace_module
    from advisor.workload.trace_autocast import cuda_autocast_policy

    b, s = 8, 128
    tokens = torch.zeros((b, s), dtype=torch.long)
    meta, _ = zoo.build("gpt2-tiny", "meta")
    traced = trace_module(meta, (tokens,), precision=precision, optimizer="adamw", mode="train",
                          loss_fn=lambda out: F.cross_entropy(out.flatten(0, 1), tokens.flatten()))
    t = traced.options.traced_memory_bytes
    assert t is not None
    predicted = t.peak_without_optimizer - t.parameters - tokens.numel() * 8

    torch.manual_seed(0)
    model, _ = zoo.build("gpt2-tiny", "cpu")
    if precision == "bf16":
        model = model.to(torch.bfloat16)

    def zero_grad() -> None:
        for p in model.parameters():
            p.grad = None

    def step() -> None:
        with cuda_autocast_policy(), _autocast(precision, "cpu"):
            loss = F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
        loss.backward()

    measured = _heap_peak(step, zero_grad)
    assert measured == pytest.approx(predicted, rel=0.03), (precision, measured / MiB, predicted / MiB)


def test_cuda_autocast_policy_on_cpu_tensors() -> None:
    """While entered, CPU autocast runs CUDA's policy: cross-entropy's log-softmax in the logits' dtype and nll_loss
    in fp32, softmax / layer_norm / sum in fp32; CPU's own policy is back after it."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from advisor.workload.trace_autocast import cuda_autocast_policy

    x, w, t = torch.randn(16, 8), torch.randn(32, 8, requires_grad=True), torch.zeros(16, dtype=torch.long)
    seen = []

    from torch.utils._python_dispatch import TorchDispatchMode

    class Dtypes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            seen.append((func.__name__.split(".")[0], getattr(out, "dtype", None)))
            return out

    with cuda_autocast_policy(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = F.linear(x, w)
        with Dtypes():
            F.cross_entropy(logits, t)
        assert F.softmax(logits, -1).dtype == torch.float32
        assert F.layer_norm(logits, (32,)).dtype == torch.float32 and logits.sum().dtype == torch.float32
    assert ("_log_softmax", torch.bfloat16) in seen and ("_to_copy", torch.float32) in seen
    with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU's policy again
        logits = F.linear(x, w)
        assert F.softmax(logits, -1).dtype == torch.bfloat16 and F.cross_entropy(logits, t).dtype == torch.float32


# --------------------------------------------------------------------------------------------- decode

def _gpt_cfg(vocab: int, hidden: int, layers: int, heads: int) -> dict[str, object]:
    return {"model_type": "gpt2", "n_layer": layers, "n_embd": hidden, "n_head": heads, "vocab_size": vocab,
            "n_positions": 256, "resid_pdrop": 0.0}


def test_kv_cache_peak_counts_fused_qkv_views_and_the_cat_copy() -> None:
    gpt = arch_from_config(_gpt_cfg(50257, 768, 12, 12))
    b, s, g = 8, 512, 64
    # after the prefill each layer keeps c_attn's whole q|k|v output (k and v are views of it)
    prefill = 12 * b * s * 3 * 768 * 2
    final = 12 * b * (s + g) * 2 * 768 * 2
    assert prefill > final
    assert kv_cache_peak_bytes(gpt, b, s, g, 2) == prefill + b * (s + g) * 768 * 2
    # a long generation: the final cache is the larger
    assert kv_cache_peak_bytes(gpt, b, s, 4 * s, 2) == 12 * b * 5 * s * 2 * 768 * 2 + b * 5 * s * 768 * 2


def test_decode_memory_matches_the_zoo_generate_on_the_cpu() -> None:
    """The zoo's generate() run on the CPU: its peak beyond the weights is the KV cache at its peak plus the
    prefill's logits (at every prompt position), as the analytic model says."""
    torch = pytest.importorskip("torch")

    from advisor.workload import zoo

    vocab, hidden, layers, heads, b, s, g = 8192, 128, 2, 4, 4, 128, 8
    model = zoo.TinyGPT(vocab_size=vocab, hidden=hidden, layers=layers, heads=heads, n_positions=256).eval()
    wl = build_transformer(arch_from_config(_gpt_cfg(vocab, hidden, layers, heads)), name="tiny", batch_size=b,
                           seq_len=s, mode="infer", precision="fp32", optimizer=None, gen_len=g,
                           attention="eager", prefill_logits="all")  # the zoo's generate(): a plain forward
    predicted = wl.kv_cache_bytes + wl.transient_bytes
    tokens = torch.zeros(b, s, dtype=torch.long)
    with torch.inference_mode():
        measured = _heap_peak(lambda: model.generate(tokens, g))
    logits = b * s * vocab * 4
    assert measured > logits  # the prefill's logits are there: every prompt position
    assert 0.85 <= measured / predicted <= 1.2


def test_gen_len_zero_is_one_forward_with_logits_everywhere() -> None:
    arch = arch_from_config(_gpt_cfg(50257, 768, 12, 12))
    fwd = build_transformer(arch, name="gpt2", batch_size=8, seq_len=256, mode="infer", precision="bf16",
                            optimizer=None, gen_len=0)
    gen = build_transformer(arch, name="gpt2", batch_size=8, seq_len=256, mode="infer", precision="bf16",
                            optimizer=None, gen_len=32)
    dflt = build_transformer(arch, name="gpt2", batch_size=8, seq_len=256, mode="infer", precision="bf16",
                             optimizer=None)
    assert fwd.kv_cache_bytes == 0 and not fwd.decode_ops and fwd.gen_len == 0
    assert any("gen_len=0" in a and "every position" in a for a in fwd.assumptions)
    assert all(op.phase != "prefill" for op in fwd.ops)
    head = next(op for op in fwd.ops if op.name == "lm_head")
    assert head.flops == 2.0 * 8 * 256 * 768 * 50257
    assert fwd.transient_bytes >= 8 * 256 * 50257 * 2
    assert gen.kv_cache_bytes > 0 and gen.decode_ops and any("generation (gen_len=32)" in a for a in gen.assumptions)
    assert dflt.gen_len == 128 and any("gen_len not given" in a for a in dflt.assumptions)
    with pytest.raises(WorkloadError, match="whole number >= 0"):
        build_transformer(arch, name="gpt2", batch_size=8, seq_len=256, mode="infer", precision="bf16",
                          optimizer=None, gen_len=-1)
    e = estimate(dict(_gpt_cfg(50257, 768, 12, 12)), "h100-sxm5-80gb", calibration=None, batch_size=8,
                 seq_len=256, mode="infer", precision="bf16", gen_len=0)
    assert e.memory.breakdown_bytes["kv_cache"] == 0


def test_cli_gen_len_zero_and_its_help(capsys) -> None:
    from advisor.cli import main

    assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--mode", "infer", "--gen-len", "0",
                 "--seq-len", "512", "--json", "--calibration", "none"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory"]["breakdown_bytes"]["kv_cache"] == 0
    with pytest.raises(SystemExit) as exc:
        main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--mode", "infer", "--gen-len", "-2"])
    assert exc.value.code != 0 and "must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["estimate", "--help"])
    assert "default 128: generation" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------------------------- BERT's MLM head

def test_bert_masked_lm_config_counts_hugging_faces_parameters() -> None:
    """BertModel (with pooler) of bert-base-uncased has 109,482,240 parameters; BertForMaskedLM 109,514,298
    (no pooler; the head's dense + LayerNorm + the decoder's bias, its weight tied) -- as Hugging Face counts."""
    assert arch_from_config(BERT_BASE).params == 109_482_240
    mlm = arch_from_config({**BERT_BASE, "architectures": ["BertForMaskedLM"]})
    assert mlm.mlm_head and not mlm.pooler and mlm.params == 109_514_298


def test_bert_mlm_head_carries_logits_in_time_and_memory() -> None:
    bare = arch_from_config(BERT_BASE)
    mlm = arch_from_config({**BERT_BASE, "architectures": ["BertForMaskedLM"]})
    kw = dict(name="bert", batch_size=32, seq_len=512, mode="train", precision="amp-bf16", optimizer="adamw")
    a, m = build_transformer(bare, **kw), build_transformer(mlm, **kw)
    tokens, v_size, h = 32 * 512, 30522, 768
    fwd_head = 2.0 * tokens * h * (h + v_size) - 2.0 * 32 * h * h  # MLM head in, pooler out
    assert sum(op.flops for op in m.ops if op.phase == "forward") - \
        sum(op.flops for op in a.ops if op.phase == "forward") == pytest.approx(fwd_head)
    # CrossEntropyLoss on the 16-bit logits: log_softmax keeps its 16-bit output, nll_loss (fp32 under autocast) its
    # fp32 cast of it; the loss's backward peaks at nll_loss's fp32 gradient (the saved fp32 copy is freed before
    # the cast back is allocated: the traced timeline), before any parameter gradient (fp32 under amp) exists
    assert m.activation_bytes - a.activation_bytes >= tokens * v_size * (2 + 4)
    assert m.transient_bytes == tokens * v_size * 4 - m.trainable_params * 4
    ck = build_transformer(mlm, gradient_checkpointing=True, **kw)
    inputs = 12 * tokens * h * 4  # each block's input, fp32 residual stream under amp
    head_saved = tokens * v_size * (2 + 4)
    transform = tokens * h * (3 * 2 + 4)
    embedding_dropout_mask = tokens * h
    assert ck.activation_bytes == pytest.approx(inputs + head_saved + transform + embedding_dropout_mask)
    assert any("BertForMaskedLM" in x for x in m.assumptions)


def test_validate_predicts_bert_with_its_mlm_head() -> None:
    # validate's training rows are the traced zoo module; its other rows use an HF-style config, which must
    # carry the zoo BERT's MLM head
    case = v.Case("bert-base", "infer", 32, "amp-bf16", None, seq_len=512)
    config, _ = v.estimator_model(case)
    assert config["architectures"] == ["BertForMaskedLM"]


# --------------------------------------------------------------------------------------------- the allocator

def test_allocator_is_named_in_the_overhead_and_follows_its_formula() -> None:
    """A step with no written timeline (here LoRA: advisor.workload.step_timeline) takes the fitted formula."""
    kw = {"calibration": None, "seq_len": 1024, "precision": "amp-bf16", "lora_rank": 8}
    e = estimate("gpt2", "h100-sxm5-80gb", batch_size=8, **kw)
    detail = e.memory.overhead_detail_bytes
    assert "allocator" in detail and "allocator_fragmentation" not in detail
    w = e.workload
    from advisor.estimator.memory import memory_parts
    from advisor.estimator.parallel import resolve_plan

    parts = memory_parts(w, resolve_plan(None, 1))
    expected = (ALLOCATOR_SEGMENTS_BYTES + ALLOCATOR_STATIC * (parts.static_bytes + parts.kv_cache)
                + ALLOCATOR_ACTIVATIONS * parts.activations + ALLOCATOR_TRANSIENT * parts.transient)
    assert detail["allocator"] == pytest.approx(expected)
    assert any("caching allocator" in a for a in e.assumptions)
    # it grows with the batch (per-step temporaries and activations), as reserved - allocated does
    e2 = estimate("gpt2", "h100-sxm5-80gb", batch_size=16, **kw)
    assert e2.memory.overhead_detail_bytes["allocator"] > 1.5 * detail["allocator"] - ALLOCATOR_SEGMENTS_BYTES


def test_allocator_replay_reproduces_the_reserved_gap_of_the_h200_rows() -> None:
    """The traced rows' allocations replayed through the caching allocator's rules: the allocator's share (the
    replayed reserved peak beyond the breakdown's other items) against the measured max_memory_reserved -
    max_memory_allocated of the H200 rows, row by row within 1.5% of the reserved bytes at the median; in all
    within 10% of the measured gaps.  The one row without a traced step (gpt2 decode,
    an analytic workload) keeps the fitted formula."""
    import statistics

    off, predicted, measured = [], 0.0, 0.0
    for card, r in _replayed():
        if card != "h200-2026-11-28":
            continue
        e = estimate_case(r.case, "h200-sxm-141gb", calibration=None)
        if e.workload.options.allocations is None:
            assert r.case.gen_len
            continue
        gap = r.measurement.reserved_bytes - r.measurement.allocated_bytes
        alloc = e.memory.overhead_detail_bytes["allocator"]
        off.append(abs(alloc - gap) / r.measurement.reserved_bytes)
        predicted, measured = predicted + alloc, measured + gap
    assert len(off) == 36
    assert statistics.median(off) <= 0.015
    assert predicted == pytest.approx(measured, rel=0.10)


def test_near_limit_pair_brackets_the_estimators_limit() -> None:
    pair = v.near_limit_cases("h100-sxm5-80gb")
    assert [c.batch_size for c in pair] == [pair[0].batch_size, pair[0].batch_size + 1]
    fits = []
    for case in pair:
        model, kwargs = v.estimator_model(case)
        kwargs.update(batch_size=case.batch_size, precision=case.precision, mode=case.mode,
                      optimizer=case.optimizer)
        fits.append(estimate(model, "h100-sxm5-80gb", calibration=None, **kwargs).memory.fits)
    assert fits == [True, False]
    gpu = v.default_cases(["gpt2"], cuda=True, card="h100-sxm5-80gb")
    assert gpu[-2:] == pair
    assert v.default_cases(["gpt2"], cuda=True) == gpu[:-2]  # no card: no pair
    assert not any(c.batch_size > 32 for c in v.default_cases(["gpt2"], card="h100-sxm5-80gb"))  # CPU: none


@pytest.mark.parametrize("card", CARDS)
def test_memory_replay_ratchet(card) -> None:
    """Where the shared runs stand (calibration none): median |error| 0.7% on both cards (18% before the traced
    timeline recorded frees in order, autocast followed CUDA's policy and the caching allocator was replayed).
    Seven rows more than 10% low, all by less than 512 MiB: lstm-lm (cuDNN's fused LSTM: its weight buffer,
    workspace and reserve space, which the CPU trace does not run), mnist-cnn and resnet50 inference (cuDNN
    convolution workspaces) -- see docs/accuracy.md."""
    import statistics

    errors = [r.memory_error for c, r in _replayed() if c == card and r.memory_error is not None]
    assert len(errors) == 37  # every row has a prediction (vit-b16 with checkpointing included)
    assert statistics.median(abs(e) for e in errors) <= 0.01
    assert sum(e < -0.10 for e in errors) <= 7
    assert sum(abs(e) <= 0.05 for e in errors) >= 27


def test_a_16_bit_model_built_in_fp32_says_so_and_a_loaded_one_does_not() -> None:
    """The replay's fp32 build + cast of a 16-bit model is an assumption the estimate states (its reserve can be a
    whole fp32 copy); generation's step is loaded in its dtype (no build, no note), amp keeps fp32 weights (no cast)."""
    def noted(**kw: object) -> bool:
        est = estimate("llama-3-8b", "h100-sxm", calibration=None, batch_size=2, seq_len=512, **kw)
        return any("built in fp32 and cast" in a for a in est.assumptions)

    assert noted(mode="infer", precision="bf16", gen_len=0)
    assert not noted(mode="infer", precision="bf16", gen_len=16)
    assert not noted(mode="train", precision="amp-bf16")
