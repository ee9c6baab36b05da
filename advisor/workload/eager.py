"""How many operators PyTorch eager mode dispatches from the host per step, for the analytic transformers.

In eager mode every operator call (a kernel launch, or a view that launches nothing) costs host time:
Python, ``nn.Module.__call__``, the dispatcher, autocast and autograd bookkeeping.  The GPU runs
asynchronously and idles whenever the host falls behind, so a phase takes at least
``dispatched ops x host seconds per op`` (``advisor.estimator.host``).  Small batches, decoding and
small models live in that regime; graph runtimes (CUDA graphs, ``torch.compile(mode="reduce-overhead")``,
TensorRT, vLLM, llama.cpp) do not.

The per-layer counts are MEASURED, not guessed: ``benchmarks/count_eager_ops.py`` runs Hugging Face
transformers 4.46.3's ``BertModel``, ``GPT2LMHeadModel`` and ``LlamaForCausalLM`` (2 and 4 layers,
CPU tensors) under a ``TorchDispatchMode`` and counts every aten call (views included) per layer and
phase; the table below is its output.  Three implementation styles cover the presets: ``bert``
(post-LN encoder, separate q/k/v), ``gpt2`` (pre-LN, fused c_attn, tanh-GELU in Python) and
``llama`` (RMSNorm in Python, rotary embeddings, gated MLP, GQA ``repeat_kv``).  Where the CPU run
cannot stand for CUDA (SDPA *training* with dropout falls back to the math path on CPU, while CUDA
runs one memory-efficient kernel) the figure is derived from the inference count plus the dropout
calls and the eager backward less its attention part, and is marked so.  A family whose linears carry biases its
style's measured module does not (Qwen2's q / k / v), or lack some it has (GPT-J's attention), adds or takes each
bias's own dispatches (``BIAS_FWD``, ``BIAS_BWD``, re-traced by tests/test_eager_bias.py).

Traced modules (``advisor.workload.trace``) need none of this: the tracer sees every dispatched op.
Pure arithmetic, no torch import.
"""

from __future__ import annotations

from advisor.workload.costs import LOOP_KERNELS

SOURCE = ("dispatched aten ops per layer of Hugging Face transformers 4.46.3 eager modules (BertModel, "
          "GPT2LMHeadModel, LlamaForCausalLM), counted by benchmarks/count_eager_ops.py")

#: style -> attention -> per-layer dispatched ops: (forward fp32, forward amp, backward fp32, backward amp,
#: decode fp32, decode amp).  Forward counts are training-mode (dropout active); inference forward uses
#: ``_INFER`` below.  Decode: one generated token with a KV cache.
_PER_LAYER: dict[str, dict[str, tuple[int, int, int, int, int, int]]] = {
    "bert": {"eager": (67, 84, 114, 134, 0, 0),
             "sdpa": (50, 66, 105, 125, 0, 0)},  # derived: see _DERIVED
    "gpt2": {"eager": (68, 78, 94, 106, 55, 71),
             "sdpa": (47, 57, 85, 97, 36, 50)},  # training derived, decode measured
    "llama": {"eager": (97, 112, 160, 182, 95, 112),
              "sdpa": (80, 94, 144, 164, 79, 95)},
}
#: How the SDPA training rows of bert/gpt2 are derived (CPU SDPA with dropout runs the math path):
#: forward = SDPA inference + (eager training - eager inference: the dropout calls) - 1 (attention-probability
#: dropout happens inside the fused kernel); backward = eager backward - 9 (the math attention's batched-matmul
#: gradients, softmax, dropout and scaling backward with their views, less the one fused backward replacing them).
_DERIVED = ("bert", "gpt2")
#: Inference forward per layer (no dropout, no autograd): (fp32, amp).
_INFER: dict[str, dict[str, tuple[int, int]]] = {
    "bert": {"eager": (54, 71), "sdpa": (38, 54)},
    "gpt2": {"eager": (54, 64), "sdpa": (34, 44)},
    "llama": {"eager": (94, 109), "sdpa": (77, 91)},
}
#: Ops outside the blocks (embeddings, final norm, head, loss, masks, rotary tables): forward, backward, decode.
_BASE: dict[str, tuple[int, int, int]] = {"bert": (29, 13, 0), "gpt2": (23, 24, 13), "llama": (48, 35, 40)}

#: Biased linears per layer of the module each style's counts were measured on (BertModel: q, k, v, attention
#: output, intermediate, output; GPT-2: c_attn, attn c_proj, c_fc, mlp c_proj; Llama: none).
MEASURED_BIASED_LINEARS = {"bert": 6, "gpt2": 4, "llama": 0}
#: What a linear's bias adds to its dispatches, traced (a Linear with and without its bias between two others, on
#: torch 2.14): forward, ``addmm`` for ``mm`` and a ``view`` for ``_unsafe_view`` (no more calls) and, under amp,
#: the bias's cast to 16 bits; backward, the bias gradient's ``sum`` over the tokens, its ``view`` and its
#: accumulation's ``detach`` and, under amp, its cast back to the fp32 parameter's dtype.  (amp, plain) each.
BIAS_FWD, BIAS_BWD = (1, 0), (4, 3)
#: A PEFT LoRA adapter on one linear: dropout, A, B, scaling, add (+ views) forward; about 1.5x in backward.
LORA_FWD_PER_TARGET, LORA_BWD_PER_TARGET = 8, 12
#: A Mixtral sparse MoE block's dispatches beyond a dense gated MLP's, per layer: (training forward, backward,
#: inference forward), by precision key (``amp``, ``fp32``, ``16-bit``).  transformers 5 runs the experts through
#: ``grouped_mm`` (advisor.workload.moe): router, sort, gathers, two grouped GEMMs, the weighting and the sum, the same
#: calls whatever the number of experts.  Traced (``MixtralSparseMoeBlock`` and ``LlamaMLP`` between a scale and a
#: linear, views included, torch 2.14 / transformers 5.25): MoE 37 / 72 / 36 at amp, 34 / 69 / 33 in fp32, 36 / 72 /
#: 35 at 16 bits, with 4 or 8 experts alike; the MLP 18 / 44 / 18, 14 / 40 / 14, 14 / 40 / 14.
MOE_DISPATCHES: dict[str, tuple[int, int, int]] = {"amp": (19, 28, 18), "fp32": (20, 29, 19), "16-bit": (22, 32, 21)}
#: A checkpointed layer's recompute (``torch.utils.checkpoint``, non-reentrant: transformers' gradient checkpointing)
#: runs its forward again in backward and hands each tensor it saves to the forward's node through its pack hook,
#: which detaches one that requires a gradient (torch/utils/checkpoint.py, ``_recomputation_hook``): one
#: ``aten.detach`` per such saved tensor, per layer, beyond the forward's calls.  Traced (transformers 5.25, torch
#: 2.14; checkpointed less plain backward, 4 layers): BertForMaskedLM 24, GPT2LMHeadModel 23, Llama / Qwen2 / Gemma
#: ForCausalLM 34, at amp-bf16, bf16 and fp32 alike; with a frozen base (LoRA on q and v, PEFT's default) Llama and
#: Qwen2 26.5 (frozen weights are saved without a gradient, and the first layer's input needs none).
CHECKPOINT_DETACHES: dict[str, float] = {"bert": 24, "gpt2": 23, "llama": 34}
CHECKPOINT_DETACHES_FROZEN: dict[str, float] = {"llama": 26.5}
#: Host dispatch-equivalents (forward ops of ``HOST_OP_S``) per trainable tensor of one optimizer step.
#: torch.optim's foreach Adam/AdamW (the CUDA default since PyTorch 2.0) make ~10 list-wide calls that each walk
#: the tensor list in C++: MEASURED at 20-21 us per tensor on the H200 host, where the AdamW step's GPU-side span
#: (its kernels waiting on the host) was 4.16 ms for bert-base's 200 tensors, 2.95 ms for GPT-2's 148 and 3.24 ms
#: for ViT-B/16's 152 while their bytes needed 1.4-2.1 ms (tests/data/gpu-runs/h200-2026-11-28/profile-ops.json),
#: i.e. 2 op-equivalents; SGD's 1-3 list-wide calls ~1.  Hugging Face's Adafactor loops per tensor in Python
#: (~15 ops each), bitsandbytes' 8-bit Adam launches per tensor (~3).
#: The other implementations (``advisor.optimizers``) in the same units, from the host's CPU time per tensor of each
#: step against a bare op's (``x.add_(1.0)``) in the same run (benchmarks/count_optimizer_bytes.py --time, tiny CPU
#: tensors, 2-vCPU dev VM, 2026-12-07), a forward op being 2.8 bare ops (HOST_OP_PER_BARE_OP,
#: advisor.estimator.efficiency): torch's single-tensor loop 1.1 bare ops per dispatched op on the idle VM (AdamW
#: 11.4 bare ops per tensor for its 10 ops, Adam 10.1 for 9, SGD with momentum 2.2 for 3; 1.4-2.3 under load), so a
#: loop costs its dispatched ops (``costs.LOOP_KERNELS``) x 1.1 / 2.8 op-equivalents per tensor (Hugging Face's
#: AdamW, read in its source: its 7 ops alike); the fused step 0.5-0.7 bare ops per tensor (its ``_init_group``'s
#: Python; one list-wide call), 0.2; DeepLearningExamples' BertAdam its 15 update ops alike plus a
#: ``clip_grad_norm_`` call per tensor, 18-27 bare ops (its Python, timed the same way): (15 x 1.1 + 18) / 2.8.
#: The same script's foreach step, on the CPU's per-tensor fallback, came to 2.6-8 bare ops per tensor (the H200's
#: 2 op-equivalents are 5.6).
_LOOP_BARE_OPS_PER_OP, _BARE_OPS_PER_HOST_OP = 1.1, 2.8  # the latter: advisor.estimator.efficiency's, a layer up
OPTIMIZER_OPS_PER_TENSOR: dict[str | None, float] = {
    None: 0, "sgd": 1, "sgd-momentum": 1, "adam": 2, "adamw": 2, "adafactor": 15, "adamw-8bit": 3,
    "adam-fused": 0.2, "adamw-fused": 0.2,
    **{name: ops * _LOOP_BARE_OPS_PER_OP / _BARE_OPS_PER_HOST_OP for name, (ops, _, _) in LOOP_KERNELS.items()
       if name != "bertadam"},
    "bertadam": (15 * _LOOP_BARE_OPS_PER_OP + 18) / _BARE_OPS_PER_HOST_OP}
#: Host dispatch-equivalents of one optimizer step whatever its tensor count: torch.optim's Adam/AdamW step runs
#: ``_init_group``, groups the tensors by device and dtype, bumps the CPU step counters and builds the
#: bias-correction lists in Python before its first kernel.  MEASURED on the H200 host: the Adam.step span was
#: 0.67 ms for lstm-lm's 7 tensors and 0.75 ms for mnist-cnn's 10 (profile-ops.json, torch.profiler CPU time),
#: i.e. ~0.45 ms once their per-tensor part (2 op-equivalents each) and the profiler's ~5 us per recorded op are
#: taken off: 45 op-equivalents; torch's fused and single-tensor Adam / AdamW run the same ``_init_group``.  SGD's
#: fixed part is not measured (no small SGD step in the profile): 0; Hugging Face's and DLE's loops group nothing: 0.
OPTIMIZER_STEP_OPS: dict[str | None, int] = {"adam": 45, "adamw": 45, "adam-fused": 45, "adamw-fused": 45,
                                             "adam-loop": 45, "adamw-loop": 45}


def optimizer_step_ops(optimizer: str | None, trainable_tensors: int) -> int:
    """Host dispatch-equivalents of one optimizer step: its fixed part plus its per-tensor part."""
    if not trainable_tensors:
        return 0
    per = OPTIMIZER_OPS_PER_TENSOR.get(optimizer, 1)
    return OPTIMIZER_STEP_OPS.get(optimizer, 0) + round(per * trainable_tensors)


def optimizer_eager_ops(optimizer: str | None, trainable_tensors: int) -> dict[str, int]:
    """The optimizer phase's host dispatch-equivalents for a traced workload (its other phases: the traced ops)."""
    n = optimizer_step_ops(optimizer, trainable_tensors)
    return {"optimizer": n} if n else {}


def style_of(family: str) -> str:
    """The implementation style whose counts stand for a model family."""
    if family == "bert":
        return "bert"
    if family in ("gpt2", "gptj"):
        return "gpt2"
    return "llama"


def biased_linears(*, family: str, qkv_bias: bool, out_bias: bool, mlp_bias: bool, gated_mlp: bool) -> int:
    """Linears with a bias in one block of the module (GPT-2's q, k and v are one fused ``c_attn``)."""
    qkv = 1 if family == "gpt2" else 3
    return qkv * qkv_bias + out_bias + (3 if gated_mlp else 2) * mlp_bias


def eager_ops(*, family: str, layers: int, attention: str, amp: bool, train: bool,
              causal_lm: bool, lora_targets: int = 0, experts: int = 0, gradient_checkpointing: bool = False,
              trainable_tensors: int = 0, optimizer: str | None = None,
              biased: int | None = None, a_b: int = 2) -> dict[str, int]:
    """Dispatched ops per phase of one eager step.

    ``forward``/``backward``/``optimizer`` for training, ``prefill`` and per-token ``decode`` for causal-LM
    inference, ``forward`` for other inference.  ``biased``: the module's biased linears per block
    (``biased_linears``; ``None``: as the style's measured module), each beyond or short of the measured module's
    adding or taking its dispatches (``BIAS_FWD``, ``BIAS_BWD``).  ``experts``: a MoE block in place of the MLP
    (``MOE_DISPATCHES``, by ``amp`` and the compute dtype's bytes ``a_b``).
    """
    style = style_of(family)
    more_biases = 0 if biased is None else biased - MEASURED_BIASED_LINEARS[style]
    attn = "eager" if attention == "eager" else "sdpa"
    fwd32, fwd_amp, bwd32, bwd_amp, dec32, dec_amp = _PER_LAYER[style][attn]
    inf32, inf_amp = _INFER[style][attn]
    base_f, base_b, base_d = _BASE[style]
    extra = 0
    if family == "gptj":
        extra += 10  # rotary on q and k (mul, neg, cat, mul, add each), as llama's
    moe_f, moe_b, moe_i = MOE_DISPATCHES["amp" if amp else "fp32" if a_b == 4 else "16-bit"] if experts else (0, 0, 0)
    # a frozen base's biases take no gradient (LoRA: PEFT freezes every base parameter), the measured module's neither
    bias_f = more_biases * BIAS_FWD[not amp]
    bias_b = (-MEASURED_BIASED_LINEARS[style] if lora_targets else more_biases) * BIAS_BWD[not amp]
    fwd_layer = (fwd_amp + moe_f if amp else fwd32 + moe_f) if train else (inf_amp if amp else inf32) + moe_i
    lora_f = LORA_FWD_PER_TARGET * lora_targets
    forward = round(base_f + layers * (fwd_layer + extra + lora_f + bias_f))
    if not train:
        if causal_lm:
            decode = base_d + layers * ((dec_amp if amp else dec32) + moe_i + extra + lora_f + bias_f)
            return {"prefill": forward, "decode": decode}
        return {"forward": forward}
    backward = round(base_b + layers * ((bwd_amp if amp else bwd32) + moe_b + 2 * extra
                                        + LORA_BWD_PER_TARGET * lora_targets + bias_b))
    if gradient_checkpointing:  # each layer's forward again, its saved tensors detached
        detaches = (CHECKPOINT_DETACHES_FROZEN.get(style, CHECKPOINT_DETACHES[style]) if lora_targets
                    else CHECKPOINT_DETACHES[style])
        backward += round(layers * (fwd_layer + extra + lora_f + bias_f + detaches))
    return {"forward": forward, "backward": backward,
            "optimizer": optimizer_step_ops(optimizer, trainable_tensors)}

