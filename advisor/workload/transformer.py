"""Analytic transformer workloads: exact parameters, FLOPs, bytes and activations in closed form.

No torch here (and none may be imported): this path answers in milliseconds for any size.

Families: decoders ``gpt2``, ``gptj``, ``llama``, ``mistral``, ``qwen2``, ``gemma``, ``mixtral``;
encoder ``bert``; encoder-decoder ``t5`` (handed to ``advisor.workload.encoder_decoder``).

Conventions (also written into every workload's ``assumptions``):
- FLOPs count matrix multiplies only (the ``torch.utils.flop_counter`` / 6ND convention);
  elementwise, norm, softmax and embedding ops carry their bytes and 0 FLOPs.
- Backward of a matmul is 2x its forward FLOPs (input and weight gradients); a frozen weight
  only gets the input gradient (1x).
- Activations saved for backward are tallied tensor by tensor (Korthikanti et al. 2022); for a
  GPT-2 block with dropout at 16-bit this is exactly ``s*b*h*(34 + 5*a*s/h)`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from advisor.errors import WorkloadError
from advisor.precision import NF4_BYTES_PER_WEIGHT, master_bytes
from advisor.workload.arch import DECODERS, FAMILIES, LORA_TARGETS, TransformerArch, analytic_params
from advisor.workload.arch import lora_targets as resolve_lora_targets
from advisor.workload.aten_ops import FUSED_ATTENTION_BACKWARD_WORK
from advisor.workload.base import OpCost, Workload
from advisor.workload.costs import (
    OPTIMIZER_PASS_BYTES,
    check_builder_options,
    check_common,
    compute_bytes,
    optimizer_op,
    optimizer_state_bytes,
    weight_bytes,
)
from advisor.workload.eager import biased_linears, eager_ops
from advisor.workload.options import BuiltOptions, WorkloadOptions, check_count
from advisor.workload.qlora import SOURCE as DEQUANT_SOURCE
from advisor.workload.step_timeline import builder_timeline
from advisor.workload.transformer_blocks import Dtypes, StepOps, StepShape
from advisor.workload.transformer_memory import (
    activation_bytes_breakdown,
    kv_cache_peak_bytes,
    largest_temp,
    loss_transient,
)
from advisor.workload.transformer_ops import cross_entropy, decode_ops

ATTENTIONS = ("eager", "sdpa", "flash")
DEFAULT_GEN_LEN = 128


# ---------------------------------------------------------------------------------------------
# the analytic builder

#: the ``WorkloadOptions`` fields this builder takes as keywords (``image_size`` is a vision option)
BUILDER_OPTIONS = tuple(n for n in WorkloadOptions.names() if n != "image_size")


@dataclass(frozen=True, slots=True)
class _Resolved:
    """The step ``build_transformer`` builds: its options with every default filled, the sizes and the adapters."""

    opts: WorkloadOptions
    step: StepShape
    gen_len: int | None
    params: int
    lora_p: int
    trainable: int
    optimizer: str | None


def build_transformer(
    arch: TransformerArch,
    *,
    name: str,
    source: Literal["preset", "config"] = "preset",
    options: WorkloadOptions | None = None,
    lora_targets: tuple[str, ...] | list[str] | str | None = None,
    attention: str = "sdpa",
    default_seq_len: int = 2048,
    prefill_logits: str = "last",
    repeat_kv: bool | None = None,
    **keywords: Any,
) -> Workload:
    """One step of ``arch`` as a ``Workload``, in closed form (see the module docstring).

    Steps: resolve the options, the dtypes, the op groups (``transformer_blocks.StepOps``), the memory, the
    assumptions.

    Args:
        arch: the transformer's shape.
        name: the workload's name.
        source: where it came from (``preset``, ``config``).
        options: the workload options (default: ``WorkloadOptions()``'s defaults).
        lora_targets: the linear layers LoRA adapts (default q, k, v, o; ``all-linear``).
        attention: the attention implementation (``ATTENTIONS``).
        default_seq_len: the sequence when none is given (capped by a learned position table).
        prefill_logits, repeat_kv: generation's prefill logits (``last`` or ``all``) and transformers' ``repeat_kv``
            (default: as transformers 5 runs ``attention``): ``transformer_blocks.StepShape``'s fields.
        **keywords: any ``BUILDER_OPTIONS`` field (``batch_size``, ``seq_len``, ``mode``, ``precision``, ...),
            over ``options``.

    Raises:
        TypeError: a keyword that is not a ``BUILDER_OPTIONS`` field.
        WorkloadError: a non-positive size, an unknown choice, or an option that does not apply.
    """
    if arch.family == "t5":  # encoder-decoder: its own closed form (advisor.workload.encoder_decoder)
        from advisor.workload.encoder_decoder import build_encoder_decoder

        return build_encoder_decoder(arch, name=name, source=source, options=options, lora_targets=lora_targets,
                                     attention=attention, default_seq_len=default_seq_len, **keywords)
    unexpected = [k for k in keywords if k not in BUILDER_OPTIONS]
    if unexpected:
        raise TypeError(f"build_transformer() got an unexpected keyword argument {unexpected[0]!r}")
    opts = replace(options or WorkloadOptions(), **keywords)
    assumptions: list[str] = [
        "FLOPs count matrix multiplies (incl. attention QK^T and AV) only, as torch.utils.flop_counter does; "
        "elementwise, norm, softmax and embedding ops are costed by bytes moved",
    ]
    r = _resolve(arch, name, opts, lora_targets, attention, default_seq_len, assumptions, prefill_logits, repeat_kv)
    dt = _dtypes(opts.precision, opts.quantize_base, assumptions)
    built = StepOps(arch, r.step, dt)
    built.build()
    assumptions += built.assumptions
    st = r.step
    all_ops: list[OpCost] = list(built.ops.fwd)
    if st.train:
        all_ops += built.ops.bwd + (built.recompute() if st.gradient_checkpointing else [])  # checkpointed blocks
        if r.trainable and r.optimizer:
            all_ops.append(optimizer_op(r.trainable, opts.precision, r.optimizer, _trainable_tensors(arch, st)))
    elif st.causal_lm and r.gen_len:
        all_ops = [replace(op, phase="prefill") for op in all_ops]
    act, transient = _memory(arch, r, dt, attention)
    assumptions += _memory_assumptions(arch, r, attention)
    kv_cache = 0.0
    decode: tuple[OpCost, ...] = ()
    if not st.train and st.causal_lm and r.gen_len:
        kv_cache = kv_cache_peak_bytes(arch, st.b, st.s, r.gen_len, dt.a_b)
        decode = decode_ops(arch, st.b, st.s + r.gen_len / 2, dt.a_b, dt.w_b, st.repeat_kv)
    assumptions += _closing_assumptions(arch, r, dt.a_b)
    return Workload(
        name=name, source=source, family=arch.kind, batch_size=st.b,
        # mode: a str of MODES (check_common refused any other), a Literal only once WorkloadOptions.mode is one
        mode=opts.mode,  # type: ignore[arg-type]
        precision=opts.precision, optimizer=r.optimizer, params=r.params, trainable_params=r.trainable,
        activation_bytes=float(act), transient_bytes=float(transient), ops=tuple(all_ops), seq_len=st.s,
        lora_params=r.lora_p, kv_cache_bytes=kv_cache, decode_ops=decode, gen_len=r.gen_len, tokens_per_sample=st.s,
        input_bytes_per_sample=float(st.s * 8 * (2 if st.train else 1)),
        arch=arch.arch_dict(), eager_ops=_eager(arch, r, dt.amp, attention), assumptions=tuple(assumptions),
        options=_built_options(arch, r, name, source, lora_targets, attention),
    )


def _resolve(arch: TransformerArch, name: str, opts: WorkloadOptions,
             lora_targets: tuple[str, ...] | list[str] | str | None, attention: str, default_seq_len: int,
             assumptions: list[str], prefill_logits: str = "last", repeat_kv: bool | None = None) -> _Resolved:
    """The step's options checked and completed (the defaults it takes said in ``assumptions``)."""
    qb, lora_rank = check_builder_options(name, opts), opts.lora_rank
    if attention not in ATTENTIONS:
        raise WorkloadError(f"unknown attention implementation {attention!r}", f"accepted: {', '.join(ATTENTIONS)}")
    if prefill_logits not in ("last", "all"):
        raise WorkloadError(f"unknown prefill_logits {prefill_logits!r}", "accepted: last, all")
    seq_len = opts.seq_len
    if seq_len is None:
        seq_len = min(default_seq_len, arch.max_position_embeddings or default_seq_len)
        assumptions.append(f"seq_len not given: using {seq_len}")
    s = check_count("seq_len", seq_len)
    if arch.max_position_embeddings and s > arch.max_position_embeddings:
        raise WorkloadError(f"seq_len {s} exceeds {name}'s learned position table ({arch.max_position_embeddings})",
                            f"use seq_len <= {arch.max_position_embeddings}")
    train = opts.mode == "train"
    causal_lm = arch.kind == "decoder"
    gen_len = opts.gen_len
    if gen_len is not None and not (causal_lm and not train):  # its range: checked by WorkloadOptions
        raise WorkloadError("gen_len applies to infer of decoder (causal LM) models only",
                            f"{name} is a {arch.kind} in {opts.mode} mode")
    if causal_lm and not train and gen_len is None:
        gen_len = DEFAULT_GEN_LEN
        assumptions.append(f"gen_len not given: generating {DEFAULT_GEN_LEN} tokens after the prefill")
    targets = resolve_lora_targets(arch, name, lora_rank, lora_targets, assumptions)  # lora_rank: checked by opts
    lora_p = arch.lora_params(lora_rank, targets) if lora_rank else 0
    trainable = (lora_p if lora_rank else arch.params) if train else 0
    step = StepShape(b=opts.batch_size, s=s, train=train, causal_lm=causal_lm, flash=attention in ("sdpa", "flash"),
                     gradient_checkpointing=opts.gradient_checkpointing, lora_rank=lora_rank, targets=targets,
                     quantize_base=qb, last_logit=bool(gen_len) and not train and prefill_logits == "last",
                     repeat_kv=attention == "eager" if repeat_kv is None else repeat_kv)
    return _Resolved(opts=replace(opts, seq_len=s, gen_len=gen_len if (causal_lm and not train) else None),
                     step=step, gen_len=gen_len if (causal_lm and not train) else None, params=arch.params + lora_p,
                     lora_p=lora_p, trainable=trainable, optimizer=opts.optimizer if train else None)


def _dtypes(precision: str, quantize_base: str | None, assumptions: list[str]) -> Dtypes:
    """Bytes per element of the step's tensors at ``precision`` (and a quantized base's weights)."""
    a_b = compute_bytes(precision)
    amp = precision.startswith("amp-")
    # amp: residual stream and norm inputs stay fp32 (fp32 params, layer_norm autocasts to fp32),
    # matmul inputs are saved as 16-bit copies, softmax of eager scores runs in fp32.
    w_b = head_w_b = weight_bytes(precision)  # embeddings, LM head and pooler are never quantized (bitsandbytes / PEFT)
    if quantize_base == "nf4":
        w_b = NF4_BYTES_PER_WEIGHT
        assumptions.append("nf4 base: 4-bit weights + quantization constants (~0.127 bit/weight, double quantization, "
                           "block 64), dequantized to a 16-bit copy before every matmul, in the forward, the "
                           "recompute and the backward (op '.dequant'; advisor.workload.qlora): " + DEQUANT_SOURCE)
    elif quantize_base == "int8":
        w_b = 1.0
    if amp:
        assumptions.append("amp: fp32 master weights, matmuls read 16-bit weight copies; residual stream and "
                           "norm inputs saved in fp32, matmul inputs saved as 16-bit, eager softmax output fp32; "
                           "each linear reading a norm's output casts it to 16 bits (per separate q/k/v or "
                           "gate/up projection), and 16-bit outputs join the fp32 residual in mixed-dtype adds "
                           "(index-bound), as the traced zoo models run")
    # the embedding table's own dtype: autocast leaves the lookup in fp32
    return Dtypes(a_b=a_b, amp=amp, res_b=4 if amp else a_b, softmax_b=4 if amp else a_b, w_b=w_b,
                  head_w_b=head_w_b, emb_b=4 if amp else head_w_b)


def _memory(arch: TransformerArch, r: _Resolved, dt: Dtypes, attention: str) -> tuple[float, float]:
    """(bytes saved for backward, transient bytes) of the step."""
    st, precision = r.step, r.opts.precision
    if st.train:
        act, largest_tmp = activation_bytes_breakdown(arch, st.b, st.s, precision=precision, attention=attention,
                                                      gradient_checkpointing=st.gradient_checkpointing,
                                                      lora_rank=st.lora_rank or 0, lora_targets=st.targets)
    else:
        act, largest_tmp = 0.0, largest_temp(arch, st.b, st.s, dt.a_b, dt.softmax_b, st.flash, infer=True)
    if not arch.has_lm_head:
        return act, largest_tmp
    logits = st.b * (1 if st.last_logit else st.s) * arch.vocab_size
    if st.train:
        # the loss's backward: its gradients over the logits (beside the saved log-probabilities, in
        # activations), before any parameter gradient exists; not at the same time as a block's temporaries
        absent = r.trainable * master_bytes(precision) if r.opts.grad_accum == 1 else 0.0
        return act, max(largest_tmp, loss_transient(logits, cross_entropy(st.causal_lm, dt.amp, dt.a_b), absent))
    # the logits (every position's, or generation's last) in the compute dtype beside the largest block temporary
    return act, largest_tmp + logits * dt.a_b


def _memory_assumptions(arch: TransformerArch, r: _Resolved, attention: str) -> list[str]:
    """What the activations, the transient and the attention's FLOPs assume."""
    st, out = r.step, []
    if st.train:
        out.append(
            "activations: every tensor autograd saves, tallied per block (Korthikanti et al. 2022: "
            "s*b*h*(34 + 5*a*s/h) bytes for a GPT-2 block with dropout at 16-bit)"
            + (", with flash/SDPA attention the s x s scores are not kept (only logsumexp, fp32)" if st.flash else "")
            + ("; gradient checkpointing keeps each block's input (a recomputed block's activations beyond the "
               "head's saved tensors are a temporary of the backward)" if st.gradient_checkpointing else ""))
        out.append("transient: the larger of the largest per-block temporary and what the loss's backward "
                   "holds (the gradients of the log-probabilities and of the logits, in the loss's dtypes) "
                   "beyond the parameter gradients, none of which exists yet when it runs"
                   + (" (but for gradient accumulation)" if r.opts.grad_accum > 1 else "")
                   + ("; checkpointing keeps the head's saved tensors or one recomputed block's "
                      "activations, whichever is larger (they are not live at once)"
                      if st.gradient_checkpointing else ""))
        if st.frozen_base:
            out.append("LoRA: base weights frozen (input gradients only, 1x forward FLOPs in backward); "
                       "adapters trained")
    if st.causal_lm:
        if st.flash:
            out.append(f"attention={attention}: causal masking skips half of QK^T/AV FLOPs (the fused "
                       "kernels compute the diagonal tiles whole: OpCost.tile_flops); backward recomputes "
                       f"the scores ({FUSED_ATTENTION_BACKWARD_WORK:g}x forward)")
        else:
            out.append("attention=eager: the full s x s QK^T and AV are computed and counted, masked or not")
    if arch.num_experts:
        out.append(f"MoE: {arch.experts_per_token} of {arch.num_experts} experts' FLOPs per token; "
                   "all experts' weights held and read")
    return out


def _closing_assumptions(arch: TransformerArch, r: _Resolved, a_b: int) -> list[str]:
    """What inference (generation, its KV cache) and a quantized base assume."""
    st, gen_len, qb, out = r.step, r.gen_len, r.step.quantize_base, []
    if not st.train and arch.has_lm_head:
        if gen_len:
            out.append(f"infer: generation (gen_len={gen_len}); ops are the prefill, a forward over the prompt "
                       + ("with the last position's logits only (transformers' generate() passes logits_to_keep=1; "
                          "vLLM likewise)" if st.last_logit else "with logits at every position (a loop over the "
                          "model's plain forward)")
                       + "; decode_ops are one generated token at the mean context, reading every weight once "
                       "(memory bound)" + ("; grouped keys and values copied to every query head before attention "
                                           "(transformers' repeat_kv), in the prefill and each decode step"
                                           if st.repeat_kv and arch.num_kv_heads < arch.num_heads else ""))
        else:
            out.append("infer: one forward over the whole sequence with logits at every position "
                       "(scoring, evaluation, embeddings, reward models: gen_len=0); no generation, "
                       "no KV cache")
    if not st.train and st.causal_lm and gen_len:
        out.append(
            "KV cache at its peak: the larger of the prefill's cache (the keys and values are views of the "
            "projection's output, so a fused q/k/v projection such as GPT-2's c_attn keeps q alive too) and "
            f"2 x layers x kv_heads x head_dim x (seq_len + gen_len) x batch x {a_b} bytes, plus one layer's "
            "second copy while torch.cat grows it (eager, Hugging Face DynamicCache: each token re-copies the "
            "cache; graph runtimes -- vLLM, TensorRT-LLM, static caches -- do not); the prefill's logits live "
            "until the first generated token's forward ends")
    if qb:
        out.append(f"{qb} base: only the blocks' linear weights are quantized "
                   "(options.quantized_params); embeddings, LM head, norms and biases stay 16-bit "
                   "(bitsandbytes / PEFT default)")
    return out


def _trainable_tensors(arch: TransformerArch, st: Any) -> int:
    """The parameter tensors an optimizer step walks: LoRA's A and B per target and layer, else every one."""
    return 2 * len(st.targets) * arch.num_layers if st.lora_rank else arch.param_tensors()


def _eager(arch: TransformerArch, r: _Resolved, amp: bool, attention: str) -> dict[str, int]:
    """The step's host dispatches per phase in eager mode (``advisor.workload.eager``)."""
    st = r.step
    return eager_ops(
        family=arch.family, layers=arch.num_layers, attention=attention,
        amp=amp, train=st.train, causal_lm=st.causal_lm, lora_targets=len(st.targets) if st.lora_rank else 0,
        experts=arch.num_experts, gradient_checkpointing=st.gradient_checkpointing and st.train,
        trainable_tensors=_trainable_tensors(arch, st) if st.train else 0,
        optimizer=r.optimizer, a_b=compute_bytes(r.opts.precision),
        biased=biased_linears(family=arch.family, qkv_bias=arch.qkv_bias, out_bias=arch.out_bias,
                              mlp_bias=arch.mlp_bias, gated_mlp=arch.gated_mlp))


def _built_options(arch: TransformerArch, r: _Resolved, name: str, source: Literal["preset", "config"],
                   lora_targets: tuple[str, ...] | list[str] | str | None, attention: str) -> BuiltOptions:
    """The workload's options: what was built, and how to build it again at another batch."""
    st = r.step

    def rebuild(new_batch: int) -> Workload:
        return build_transformer(arch, name=name, source=source, options=replace(r.opts, batch_size=new_batch),
                                 lora_targets=lora_targets, attention=attention, repeat_kv=st.repeat_kv,
                                 prefill_logits="all" if r.gen_len and not st.last_logit else "last")

    return BuiltOptions(
        quantized_params=arch.quantizable_params() if st.quantize_base else 0,
        gradient_checkpointing=bool(st.gradient_checkpointing), lora_rank=st.lora_rank,
        lora_targets=tuple(st.targets) if st.lora_rank else None, quantize_base=st.quantize_base,
        grad_accum=r.opts.grad_accum, attention=attention, frozen=st.frozen_base, rebuild=rebuild,
        # the step's allocations in order, for the caching-allocator replay (advisor.workload.step_timeline)
        timeline=builder_timeline(arch, b=st.b, s=st.s, train=st.train, precision=r.opts.precision,
                                  gen_len=r.gen_len, lora=bool(st.lora_rank), flash=st.flash,
                                  checkpointing=st.gradient_checkpointing, quantized=bool(st.quantize_base),
                                  last_logit=st.last_logit, repeat_kv=st.repeat_kv))


__all__ = ["ATTENTIONS", "DECODERS", "DEFAULT_GEN_LEN", "FAMILIES", "LORA_TARGETS", "OPTIMIZER_PASS_BYTES",
           "TransformerArch", "activation_bytes_breakdown", "analytic_params", "build_transformer", "check_common",
           "compute_bytes", "kv_cache_peak_bytes", "optimizer_op", "optimizer_state_bytes", "weight_bytes"]
