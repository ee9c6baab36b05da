"""Analytic transformer workloads: exact parameters, FLOPs, bytes and activations in closed form.

No torch here (and none may be imported): this path answers in milliseconds for any size.

Families: decoders ``gpt2``, ``gptj``, ``llama``, ``mistral``, ``qwen2``, ``gemma``, ``mixtral``;
encoder ``bert``; encoder-decoder ``t5``.

Conventions (also written into every workload's ``assumptions``):
- FLOPs count matrix multiplies only (the ``torch.utils.flop_counter`` / 6ND convention);
  elementwise, norm, softmax and embedding ops carry their bytes and 0 FLOPs.
- Backward of a matmul is 2x its forward FLOPs (input and weight gradients); a frozen weight
  only gets the input gradient (1x).
- Activations saved for backward are tallied tensor by tensor (Korthikanti et al. 2022); for a
  GPT-2 block with dropout at 16-bit this is exactly ``s*b*h*(34 + 5*a*s/h)`` bytes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from advisor.errors import WorkloadError
from advisor.precision import NF4_BYTES_PER_WEIGHT, master_bytes
from advisor.workload.arch import DECODERS, FAMILIES, LORA_TARGETS, TransformerArch, analytic_params
from advisor.workload.aten_ops import FUSED_ATTENTION_BACKWARD_WORK, fused_attention_work
from advisor.workload.base import OpCost, Workload
from advisor.workload.costs import (
    OPTIMIZER_PASS_BYTES,
    check_common,
    compute_bytes,
    optimizer_op,
    optimizer_state_bytes,
    weight_bytes,
)
from advisor.workload.eager import eager_ops
from advisor.workload.options import BUILDER_QUANTIZE_BASES, WorkloadOptions, check_count
from advisor.workload.qlora import SOURCE as DEQUANT_SOURCE
from advisor.workload.qlora import add_dequant
from advisor.workload.transformer_memory import (
    activation_bytes_breakdown,
    kv_cache_peak_bytes,
    largest_temp,
    loss_transient,
)
from advisor.workload.transformer_ops import (
    OpList,
    activation_kernels,
    cross_entropy,
    rms_norm_kernels,
    rotary_kernels,
)

ATTENTIONS = ("eager", "sdpa", "flash")
DEFAULT_GEN_LEN = 128


# ---------------------------------------------------------------------------------------------
# the analytic builder

#: the ``WorkloadOptions`` fields this builder takes as keywords (``image_size`` is a vision option)
BUILDER_OPTIONS = tuple(n for n in WorkloadOptions.names() if n != "image_size")


def build_transformer(
    arch: TransformerArch,
    *,
    name: str,
    source: Literal["preset", "config"] = "preset",
    options: WorkloadOptions | None = None,
    lora_targets: tuple[str, ...] | list[str] | str | None = None,
    attention: str = "sdpa",
    default_seq_len: int = 2048,
    **keywords: Any,
) -> Workload:
    """One step of ``arch`` as a ``Workload``, in closed form (see the module docstring).

    Args:
        arch: the transformer's shape.
        name: the workload's name.
        source: where it came from (``preset``, ``config``).
        options: the workload options (default: ``WorkloadOptions()``'s defaults).
        lora_targets: the linear layers LoRA adapts (default q, k, v, o; ``all-linear``).
        attention: the attention implementation (``ATTENTIONS``).
        default_seq_len: the sequence when none is given (capped by a learned position table).
        **keywords: any ``BUILDER_OPTIONS`` field (``batch_size``, ``seq_len``, ``mode``, ``precision``, ...),
            over ``options``.

    Raises:
        TypeError: a keyword that is not a ``BUILDER_OPTIONS`` field.
        WorkloadError: a non-positive size, an unknown choice, or an option that does not apply.
    """
    unexpected = [k for k in keywords if k not in BUILDER_OPTIONS]
    if unexpected:
        raise TypeError(f"build_transformer() got an unexpected keyword argument {unexpected[0]!r}")
    opts = replace(options or WorkloadOptions(), **keywords)
    if opts.image_size is not None:
        raise WorkloadError(f"image_size does not apply to {name} (a transformer)", "use seq_len")
    batch_size, seq_len, mode, precision, optimizer = (opts.batch_size, opts.seq_len, opts.mode, opts.precision,
                                                       opts.optimizer)
    gradient_checkpointing, lora_rank, quantize_base, grad_accum, gen_len = (
        opts.gradient_checkpointing, opts.lora_rank, opts.quantize_base, opts.grad_accum, opts.gen_len)
    check_common(batch_size, mode, precision, optimizer, grad_accum)
    if attention not in ATTENTIONS:
        raise WorkloadError(f"unknown attention implementation {attention!r}", f"accepted: {', '.join(ATTENTIONS)}")
    assumptions: list[str] = [
        "FLOPs count matrix multiplies (incl. attention QK^T and AV) only, as torch.utils.flop_counter does; "
        "elementwise, norm, softmax and embedding ops are costed by bytes moved",
    ]
    if seq_len is None:
        seq_len = min(default_seq_len, arch.max_position_embeddings or default_seq_len)
        assumptions.append(f"seq_len not given: using {seq_len}")
    s = check_count("seq_len", seq_len)
    if arch.max_position_embeddings and s > arch.max_position_embeddings:
        raise WorkloadError(f"seq_len {s} exceeds {name}'s learned position table ({arch.max_position_embeddings})",
                            f"use seq_len <= {arch.max_position_embeddings}")
    b = batch_size
    train = mode == "train"
    causal_lm = arch.kind == "decoder"
    if gen_len is not None and not (causal_lm and not train):  # its range: checked by WorkloadOptions
        raise WorkloadError("gen_len applies to infer of decoder (causal LM) models only",
                            f"{name} is a {arch.kind} in {mode} mode")
    if causal_lm and not train and gen_len is None:
        gen_len = DEFAULT_GEN_LEN
        assumptions.append(f"gen_len not given: generating {DEFAULT_GEN_LEN} tokens after the prefill")
    if quantize_base is not None and quantize_base not in BUILDER_QUANTIZE_BASES:
        raise WorkloadError(f"unknown quantize_base {quantize_base!r}",
                            f"accepted: {', '.join(BUILDER_QUANTIZE_BASES)}")
    if quantize_base and lora_rank is None and train:
        raise WorkloadError("quantize_base needs lora_rank for training (a quantized base is frozen)",
                            "pass lora_rank (QLoRA), or use mode='infer'")
    targets: tuple[str, ...] = ()
    if lora_rank is not None:
        check_count("lora_rank", lora_rank)
        if lora_targets is None:
            targets = ("q", "k", "v", "o")
            assumptions.append("LoRA targets not given: q, k, v, o projections of every block")
        elif lora_targets in ("all", "all-linear"):
            targets = tuple(t for t in LORA_TARGETS if t in arch.linear_shapes())
        else:
            targets = (lora_targets,) if isinstance(lora_targets, str) else tuple(lora_targets)
            bad = [t for t in targets if t not in arch.linear_shapes()]
            if bad:
                raise WorkloadError(f"unknown LoRA target(s) {bad} for {name}",
                                    f"accepted: {', '.join(arch.linear_shapes())} or 'all-linear'")
    params_base = arch.params
    lora_p = arch.lora_params(lora_rank, targets) if lora_rank else 0
    params = params_base + lora_p
    if not train:
        trainable = 0
        optimizer_used = None
    else:
        trainable = lora_p if lora_rank else params_base
        optimizer_used = optimizer
    frozen_base = bool(lora_rank)

    a_b = compute_bytes(precision)
    amp = precision.startswith("amp-")
    # amp: residual stream and norm inputs stay fp32 (fp32 params, layer_norm autocasts to fp32),
    # matmul inputs are saved as 16-bit copies, softmax of eager scores runs in fp32.
    res_b = 4 if amp else a_b
    softmax_b = 4 if amp else a_b
    w_b = weight_bytes(precision)
    head_w_b = w_b  # embeddings, LM head and pooler are never quantized (bitsandbytes / PEFT default)
    emb_b = 4 if amp else head_w_b  # the embedding table's own dtype (autocast leaves the lookup in fp32)
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

    h, heads, kvh, d = arch.hidden_size, arch.num_heads, arch.num_kv_heads, arch.head_dim
    inter = arch.intermediate_size
    v_size = arch.vocab_size
    flash = attention in ("sdpa", "flash")
    ops = OpList()
    shapes = arch.linear_shapes()

    def weight_cast(label: str, weights: float, count: int, launches: int = 1) -> None:
        if amp and train and not frozen_base:
            # autocast casts each fp32 master weight to 16 bits in every forward (a vectorized copy) and its 16-bit
            # gradient back to fp32 (TensorIterator's unrolled casting kernel: index-bound); a frozen LoRA base
            # keeps the builder's own weight bytes
            ops.add(label + ".cast", "elementwise", 0, weights * 6, count, train=False, launches=launches)
            ops.add_index_bound(label + ".cast.grad", "elementwise", "backward", weights * 6, count, weights,
                                launches=launches)

    def linear_group(label: str, tokens: int, keys: tuple[str, ...], count: int, lora: bool = True,
                     multiplier: int = 1, reads: int = 0) -> None:
        fin = shapes[keys[0]][0]
        if reads:  # its input is a norm's output (fp32 under amp), read by ``reads`` separate linears
            ops.add_shared_input(label, tokens * fin, reads, count, amp=amp, grad_bytes=res_b, train=train)
        fout = sum(shapes[k][1] for k in keys)
        fl = 2.0 * tokens * fin * fout
        # each separate linear (q, k, v; gate, up) reads the shared input itself
        activations = (tokens * fin * max(reads, 1) + tokens * fout) * a_b
        nb = activations + fin * fout * w_b * multiplier
        if quantize_base == "nf4":  # QLoRA: dequantize to a 16-bit copy (its own kernel), then a 16-bit matmul
            nb = activations + fin * fout * multiplier * 2.0
            add_dequant(ops, label, fin * fout * multiplier, count, linears=len(keys), train=train)
        # input grad always (unless the very input needs none); weight grad only when trainable
        bwd = fl * (1 if frozen_base else 2)
        ops.add(label, "matmul", fl, nb, count, tc=True, min_dim=min(tokens, fin, fout), bwd_flops=bwd, train=train,
                gemm=(tokens, fout, fin) if multiplier == 1 else None)
        weights_train = train and not frozen_base
        weight_cast(label, fin * fout * multiplier, count, len(keys))
        biased = sum(shapes[k][1] for k in keys if shapes[k][2]) * multiplier
        if weights_train and biased:
            # a bias gradient sums dY over the tokens: a reduction across rows (index-bound, advisor.estimator.time)
            ops.add_index_bound(label + ".bias_grad", "reduction", "backward", tokens * biased * a_b, count,
                                tokens * biased)
        if lora and lora_rank:
            hit = [k for k in keys if k in targets]
            if hit:
                r = lora_rank
                lfl = sum(2.0 * tokens * r * (shapes[k][0] + shapes[k][1]) for k in hit) * multiplier
                lnb = sum((tokens * (shapes[k][0] + 2 * r + shapes[k][1])) * a_b for k in hit) * multiplier
                ops.add(label + ".lora", "matmul", lfl, lnb, count, tc=True, min_dim=r,
                        bwd_flops=2 * lfl, train=train, launches=2 * len(hit))

    def attention_core(label: str, q_len: int, k_len: int, count: int, causal: bool) -> None:
        qk = 2.0 * b * heads * q_len * k_len * d
        frac = 0.5 if (causal and flash) else 1.0
        fl = 2 * qk * frac
        if flash:
            nb = b * (2 * q_len * heads * d + 2 * k_len * kvh * d) * a_b
            ops.add(label, "attention", fl, nb, count, tc=True, min_dim=d,
                    bwd_flops=FUSED_ATTENTION_BACKWARD_WORK * fl, bwd_bytes=2.5 * nb, train=train,
                    tiles=fused_attention_work(b * heads, q_len, k_len, d, causal))
        else:
            scores = b * heads * q_len * k_len
            ops.add(label + ".qk", "matmul", qk, (b * q_len * heads * d + b * k_len * kvh * d + scores) * a_b,
                    count, tc=True, min_dim=min(q_len, d), bwd_flops=2 * qk, train=train)
            ops.add(label + ".softmax", "elementwise", 0, scores * (a_b + softmax_b) * (2 if arch.dropout else 1),
                    count, bwd_flops=0, train=train)
            ops.add(label + ".av", "matmul", qk, (scores + b * k_len * kvh * d + b * q_len * heads * d) * a_b,
                    count, tc=True, min_dim=min(q_len, d), bwd_flops=2 * qk, train=train)

    rms = rms_norm_kernels(arch.family, arch.norm_bias, amp, a_b)

    def norms(label: str, tokens: int, count: int, per: int) -> None:
        """``per`` norms over ``tokens`` (per repetition): read the residual, write the compute dtype's output."""
        fused = tokens * h * (res_b + a_b) * per
        if rms is None:  # LayerNorm: torch's fused kernels
            ops.add(label, "norm", 0, fused, count, bwd_flops=0, train=train)
            return
        # RMSNorm as Hugging Face writes it: a chain of kernels in fp32 (transformer_ops.RMS_NORMS); graph runtimes
        # fuse it into one kernel
        ops.add(label, "norm", 0, fused, count, bwd_flops=0, train=train, runtime="graph")
        ops.add_unfused(label + ".unfused", tokens * h * per, count, rms, train, reduce=not frozen_base,
                        runtime="eager")

    def block(prefix: str, tokens: int, q_len: int, count: int, causal: bool, cross_len: int = 0) -> None:
        nrm = 1 if arch.parallel_block else 2
        norms(f"{prefix}.norm", tokens, count, nrm + (1 if cross_len else 0))
        linear_group(f"{prefix}.attn.qkv", tokens, ("q", "k", "v"), count, reads=1 if arch.fused_qkv else 3)
        attention_core(f"{prefix}.attn.core", q_len, q_len, count, causal)
        linear_group(f"{prefix}.attn.out", tokens, ("o",), count)
        if cross_len:
            linear_group(f"{prefix}.cross.q", tokens, ("q",), count)
            linear_group(f"{prefix}.cross.kv", b * cross_len, ("k", "v"), count)
            attention_core(f"{prefix}.cross.core", q_len, cross_len, count, False)
            linear_group(f"{prefix}.cross.out", tokens, ("o",), count)
        if arch.num_experts:
            e, k = arch.num_experts, arch.experts_per_token
            ops.add(f"{prefix}.moe.router", "matmul", 2.0 * tokens * h * e, (tokens * (h + e)) * a_b + h * e * w_b,
                    count, tc=True, min_dim=min(tokens, e), bwd_flops=4.0 * tokens * h * e, train=train)
            routed = tokens * k
            # each expert's weights are read once; the routed tokens split between experts
            mkeys = ("gate", "up") if arch.gated_mlp else ("up",)
            linear_group(f"{prefix}.moe.experts.in", routed, mkeys, count, multiplier=e)
            mult_tokens = routed
        else:
            mkeys = ("gate", "up") if arch.gated_mlp else ("up",)
            linear_group(f"{prefix}.mlp.in", tokens, mkeys, count, reads=len(mkeys))
            mult_tokens = tokens
        unfused = activation_kernels(arch.activation, amp, a_b)
        if unfused is not None and not arch.gated_mlp:
            ops.add_unfused(f"{prefix}.mlp.act", mult_tokens * inter, count, unfused, train)
        elif arch.gated_mlp:
            # Hugging Face's gated MLP: act_fn(gate) (one fused kernel: read, write), then its product with up (read
            # two, write one), all in the linears' 16-bit output dtype under amp; backward the product's two
            # gradients (read two, write one each) and the activation's (read its gradient and input, write one)
            el = mult_tokens * inter
            ops.add(f"{prefix}.mlp.act", "elementwise", 0, el * 5 * a_b, count, bwd_flops=0, bwd_bytes=el * 9 * a_b,
                    train=train, launches=2, bwd_launches=3)
        else:
            el = mult_tokens * inter
            ops.add(f"{prefix}.mlp.act", "elementwise", 0, el * 2 * a_b, count, bwd_flops=0, train=train)
        if arch.num_experts:
            linear_group(f"{prefix}.moe.experts.down", mult_tokens, ("down",), count, multiplier=arch.num_experts)
        else:
            linear_group(f"{prefix}.mlp.down", tokens, ("down",), count)
        dropout(f"{prefix}.dropout", tokens * h, a_b, count, 2 + (1 if cross_len else 0))
        # two residual adds: the stream (fp32 under amp: mixed dtypes, index-bound) and a linear's output read, the
        # stream written; backward sums the stream's gradient with the branch's (and casts it to 16 bits for the
        # branch under amp)
        ops.add(f"{prefix}.residual", "elementwise", 0, 2 * tokens * h * (a_b + 2 * res_b), count, bwd_flops=0,
                bwd_bytes=2 * tokens * h * (3 * res_b + (res_b + a_b if amp else 0)), train=train,
                strided=2 * tokens * h if amp else 0)
        rotary(prefix, tokens, count)
        kv_cache_cat(prefix, tokens, count)

    def kv_cache_cat(prefix: str, tokens: int, count: int) -> None:
        # a causal LM's forward builds transformers' DynamicCache whenever use_cache is on (the config's default,
        # training included; off with gradient checkpointing in training): each layer torch.cats its keys (fp32
        # under amp after rotary's fp32 muls) and values into the empty cache, a copy along the sequence dimension
        # (index-bound), in the forward only; the cache dies with the model's output
        if not causal_lm or arch.family == "t5" or (train and gradient_checkpointing):
            return
        rotated = not (arch.family == "t5" or arch.max_position_embeddings)
        k_b = 4 if amp and rotated else a_b
        el = tokens * kvh * d
        ops.add_index_bound(f"{prefix}.kv_cache.cat", "elementwise", "forward", 2 * el * (k_b + a_b), count, 2 * el,
                            launches=2, runtime="eager")

    def dropout(label: str, elements: int, elem_b: int, count: int, per: int) -> None:
        """``per`` hidden dropouts over ``elements`` of ``elem_b`` bytes each, in training.

        CUDA's fused ``native_dropout``: the output and a 1-byte mask; backward reads the gradient and the mask.
        """
        if arch.dropout and train:
            nb = elements * per * (2 * elem_b + 1)
            ops.add(label, "elementwise", 0, nb, count, bwd_flops=0, bwd_bytes=nb, launches=per, bwd_launches=per)

    def rotary(prefix: str, tokens: int, count: int) -> None:
        # Hugging Face's rotary embedding of q and k (transformer_ops.ROTARY): index-bound kernels on broadcast or
        # halved operands (advisor.estimator.time.STRIDED_ELEMENTS_PER_SM_CYCLE); graph runtimes fuse them
        if arch.family == "t5" or arch.max_position_embeddings:  # relative bias / a learned position table
            return
        ops.add_unfused(f"{prefix}.rotary", tokens * (heads + kvh) * d, count, rotary_kernels(amp, a_b), train,
                        runtime="eager")

    tokens = b * s
    # prefill of a causal LM only needs the logits of the last position to start generating
    # logits at every position: training, an MLM head, a plain forward (gen_len=0), and the prefill of
    # generation too -- a model's forward over the prompt (the validate zoo's generate(), Hugging Face's
    # before logits_to_keep) computes them all, then samples from the last one
    head_tokens = tokens
    # one lookup per embedding table, reading the rows it gathers (the tracer counts the whole table as read: its
    # convention for every tensor input, not what the gather moves); in backward one embedding_dense_backward per
    # trainable table, reading the output's gradient and writing a gradient the size of the whole table (zero-filled,
    # the gathered rows summed in).  LoRA and QLoRA leave the embeddings frozen, as PEFT does: no embedding backward
    tables = arch.embedding_tables
    table_elements = (v_size + arch.max_position_embeddings + arch.type_vocab_size) * h
    ops.add("embedding", "embedding", 0, tokens * h * (res_b + emb_b) / tables, tables, bwd_flops=0,
            bwd_bytes=(tokens * h * res_b + table_elements * emb_b / tables), train=train and not frozen_base,
            bwd_launches=1)
    dropout("embedding.dropout", tokens * h, res_b, 1, 1)
    if arch.family == "t5":
        block("encoder.layers.*", tokens, s, arch.num_layers, causal=False)
        block("decoder.layers.*", tokens, s, arch.num_decoder_layers, causal=True, cross_len=s)
        assumptions.append("t5: decoder target length = seq_len")
    else:
        block("layers.*", tokens, s, arch.num_layers, causal=causal_lm)
    # the stack's own norm: a decoder's last (ln_f, model.norm), BERT's embedding LayerNorm, T5's encoder and
    # decoder final norms (each counted in analytic_params)
    norms("final_norm", tokens, 2 if arch.family == "t5" else 1, 1)
    if arch.mlm_head:
        # BertForMaskedLM's transform: dense h x h (+ GELU, LayerNorm) before the tied decoder
        fl = 2.0 * tokens * h * h
        ops.add("mlm_head.transform", "matmul", fl, 2 * tokens * h * a_b + h * h * w_b, 1, tc=True,
                min_dim=min(tokens, h), bwd_flops=2 * fl, train=train, gemm=(tokens, h, h))
        weight_cast("mlm_head.transform", h * h, 1)
        ops.add("mlm_head.gelu_norm", "elementwise", 0, tokens * h * (2 * a_b + 2 * res_b), 1, bwd_flops=0,
                train=train)
        assumptions.append("encoder with a masked-LM head (BertForMaskedLM): dense + LayerNorm, then logits over "
                           "the vocabulary at every position (the loss over all of them)")
    if arch.has_lm_head:
        fl = 2.0 * head_tokens * h * v_size
        ops.add("lm_head", "matmul", fl, head_tokens * (h + v_size) * a_b + h * v_size * head_w_b, 1, tc=True,
                min_dim=min(head_tokens, h), bwd_flops=fl * (1 if frozen_base else 2), train=train,
                gemm=(head_tokens, v_size, h))
        weight_cast("lm_head", h * v_size, 1)
        if arch.tie_word_embeddings and train and not frozen_base:
            # the head's weight gradient and the embedding's dense one accumulate into the one tied parameter's .grad
            ops.add_index_bound("lm_head.tied_grad_sum", "elementwise", "backward", 3 * h * v_size * emb_b, 1, 0.0)
        if train:
            ops.add_loss(tokens * v_size, cross_entropy(causal_lm, amp, a_b))
            assumptions.append("loss as transformers 5 computes it: the labels shifted (no copy of the logits), "
                               "a causal LM's 16-bit logits upcast to fp32 first (ForCausalLMLoss's logits.float()), "
                               "then log_softmax in the logits' dtype and nll_loss over every position (in fp32 "
                               "under autocast)")
    elif arch.pooler:
        if train:
            assumptions.append("encoder: the bare model (BertModel, with pooler) and no task head; an MLM head "
                               "(config architectures: BertForMaskedLM) adds a dense h x h and logits over the "
                               "vocabulary at every position")
        fl = 2.0 * b * h * h
        ops.add("pooler", "matmul", fl, (2 * b * h) * a_b + h * h * head_w_b, 1, tc=True, min_dim=min(b, h),
                bwd_flops=2 * fl, train=train, gemm=(b, h, h))
    if train and gradient_checkpointing:
        # checkpointed blocks run their forward again during backward
        recompute = [replace(op, name="recompute." + op.name, phase="backward") for op in ops.fwd
                     if op.name.startswith(("layers.", "encoder.", "decoder."))]
    else:
        recompute = []
    all_ops: list[OpCost] = list(ops.fwd)
    if train:
        all_ops += ops.bwd + recompute
        if trainable and optimizer_used:
            all_ops.append(optimizer_op(trainable, precision, optimizer_used))
    if not train and causal_lm and gen_len:
        all_ops = [replace(op, phase="prefill") for op in all_ops]

    # -- activations ----------------------------------------------------------------------------
    if train:
        act, largest_tmp = activation_bytes_breakdown(arch, b, s, precision=precision, attention=attention,
                                                      gradient_checkpointing=gradient_checkpointing,
                                                      lora_rank=lora_rank or 0, lora_targets=targets)
    else:
        act, largest_tmp = 0.0, largest_temp(arch, b, s, a_b, softmax_b, flash)
    transient = largest_tmp
    if arch.has_lm_head:
        if train:
            # the loss's backward: its gradients over the logits (beside the saved log-probabilities, in
            # activations), before any parameter gradient exists; not at the same time as a block's temporaries
            transient = max(largest_tmp, loss_transient(tokens * v_size, cross_entropy(causal_lm, amp, a_b),
                                                        trainable * master_bytes(precision) if grad_accum == 1
                                                        else 0.0))
        else:
            # the logits of every position (in the compute dtype) beside the largest block temporary
            transient += head_tokens * v_size * a_b
    if train:
        assumptions.append(
            "activations: every tensor autograd saves, tallied per block (Korthikanti et al. 2022: "
            "s*b*h*(34 + 5*a*s/h) bytes for a GPT-2 block with dropout at 16-bit)"
            + (", with flash/SDPA attention the s x s scores are not kept (only logsumexp, fp32)" if flash else "")
            + ("; gradient checkpointing keeps each block's input plus one block's full activations"
               if gradient_checkpointing else ""))
        assumptions.append("transient: the larger of the largest per-block temporary and what the loss's backward "
                           "holds (the gradients of the log-probabilities and of the logits, in the loss's dtypes) "
                           "beyond the parameter gradients, none of which exists yet when it runs"
                           + (" (but for gradient accumulation)" if grad_accum > 1 else "")
                           + ("; checkpointing keeps the head's saved tensors or one recomputed block's "
                              "activations, whichever is larger (they are not live at once)"
                              if gradient_checkpointing else ""))
        if frozen_base:
            assumptions.append("LoRA: base weights frozen (input gradients only, 1x forward FLOPs in backward); "
                               "adapters trained")
    if causal_lm or arch.family == "t5":
        if flash:
            assumptions.append(f"attention={attention}: causal masking skips half of QK^T/AV FLOPs (the fused "
                               "kernels compute the diagonal tiles whole: OpCost.tile_flops); backward recomputes "
                               f"the scores ({FUSED_ATTENTION_BACKWARD_WORK:g}x forward)")
        else:
            assumptions.append("attention=eager: the full s x s QK^T and AV are computed and counted, masked or not")
    if arch.num_experts:
        assumptions.append(f"MoE: {arch.experts_per_token} of {arch.num_experts} experts' FLOPs per token; "
                           "all experts' weights held and read")
    if not train and arch.has_lm_head:
        if gen_len:
            assumptions.append(f"infer: generation (gen_len={gen_len}); ops are the prefill, a forward over the "
                               "prompt with logits at every position (as a model's forward computes them; "
                               "Hugging Face's logits_to_keep=1 would skip all but the last); decode_ops are one "
                               "generated token at the mean context, reading every weight once (memory bound)")
        else:
            assumptions.append("infer: one forward over the whole sequence with logits at every position "
                               "(scoring, evaluation, embeddings, reward models: gen_len=0); no generation, "
                               "no KV cache")

    kv_cache = 0.0
    decode: tuple[OpCost, ...] = ()
    if not train and causal_lm and gen_len:
        kv_cache = kv_cache_peak_bytes(arch, b, s, gen_len, a_b)
        ctx = s + gen_len / 2
        decode = _decode_ops(arch, b, ctx, a_b, w_b)
        assumptions.append(
            "KV cache at its peak: the larger of the prefill's cache (the keys and values are views of the "
            "projection's output, so a fused q/k/v projection such as GPT-2's c_attn keeps q alive too) and "
            f"2 x layers x kv_heads x head_dim x (seq_len + gen_len) x batch x {a_b} bytes, plus one layer's "
            "second copy while torch.cat grows it (eager, Hugging Face DynamicCache: each token re-copies the "
            "cache; graph runtimes -- vLLM, TensorRT-LLM, static caches -- do not); the prefill's logits live "
            "until the first generated token's forward ends")
    if quantize_base:
        assumptions.append(f"{quantize_base} base: only the blocks' linear weights are quantized "
                           "(options['quantized_params']); embeddings, LM head, norms and biases stay 16-bit "
                           "(bitsandbytes / PEFT default)")
    built_options: dict[str, Any] = {
        "quantized_params": arch.quantizable_params() if quantize_base else 0,
        "gradient_checkpointing": bool(gradient_checkpointing), "lora_rank": lora_rank,
        "lora_targets": list(targets) if lora_rank else None, "quantize_base": quantize_base,
        "grad_accum": grad_accum, "attention": attention, "frozen": frozen_base,
    }
    resolved = replace(opts, seq_len=s, gen_len=gen_len if (causal_lm and not train) else None)

    def rebuild(new_batch: int) -> Workload:
        return build_transformer(arch, name=name, source=source, options=replace(resolved, batch_size=new_batch),
                                 lora_targets=lora_targets, attention=attention)

    built_options["rebuild"] = rebuild
    blocks_total = arch.num_layers + arch.num_decoder_layers
    eager = eager_ops(
        family=arch.family, layers=arch.num_layers, decoder_layers=arch.num_decoder_layers, attention=attention,
        amp=amp, train=train, causal_lm=causal_lm, lora_targets=len(targets) if lora_rank else 0,
        experts=arch.num_experts, gradient_checkpointing=gradient_checkpointing and train,
        trainable_tensors=(2 * len(targets) * blocks_total if lora_rank else arch.param_tensors()) if train else 0,
        optimizer=optimizer_used)
    return Workload(
        name=name, source=source, family=arch.kind, batch_size=b,
        # mode: a str of MODES (check_common refused any other), a Literal only once WorkloadOptions.mode is one
        mode=mode,  # type: ignore[arg-type]
        precision=precision, optimizer=optimizer_used, params=params, trainable_params=trainable,
        activation_bytes=float(act), transient_bytes=float(transient), ops=tuple(all_ops), seq_len=s,
        lora_params=lora_p, kv_cache_bytes=kv_cache, decode_ops=decode,
        gen_len=gen_len if (causal_lm and not train) else None, tokens_per_sample=s,
        input_bytes_per_sample=float(s * 8 * (2 if train else 1)),
        arch=arch.arch_dict(), eager_ops=eager, assumptions=tuple(assumptions), options=built_options,
    )


def _decode_ops(arch: TransformerArch, b: int, ctx: float, a_b: int, w_b: float) -> tuple[OpCost, ...]:
    """One generated token at context ``ctx``: every weight read once, KV cache read, tiny matmuls."""
    h = arch.hidden_size
    shapes = arch.linear_shapes()
    experts_read = max(arch.num_experts, 1)
    active = arch.experts_per_token or 1
    attn_w = sum(shapes[k][0] * shapes[k][1] for k in ("q", "k", "v", "o"))
    mlp_w = sum(shapes[k][0] * shapes[k][1] for k in ("gate", "up", "down") if k in shapes)
    L = arch.num_layers
    out = [
        OpCost("decode.layers.*.attn.proj", "matmul", "decode", 2.0 * b * attn_w * L,
               attn_w * w_b * L + b * 6 * h * a_b * L, 4 * L, True, b),
        OpCost("decode.layers.*.attn.core", "attention", "decode", 4.0 * b * arch.num_heads * ctx * arch.head_dim * L,
               2.0 * b * arch.num_kv_heads * arch.head_dim * ctx * a_b * L, L, True, 1),
        OpCost("decode.layers.*.mlp", "matmul", "decode", 2.0 * b * mlp_w * active * L,
               mlp_w * w_b * min(experts_read, max(b * active, 1)) * L, (3 if arch.gated_mlp else 2) * L, True, b),
        OpCost("decode.lm_head", "matmul", "decode", 2.0 * b * h * arch.vocab_size, h * arch.vocab_size * w_b,
               1, True, b),
        OpCost("decode.elementwise", "elementwise", "decode", 0.0, b * h * a_b * 12 * L, 6 * L),
        # transformers' DynamicCache (and the legacy tuple cache) grows k and v by torch.cat each token:
        # the whole cache is read and written again (cache_utils.DynamicCache.update), along the sequence
        # dimension of (batch, heads, seq, head_dim): an inner-dimension cat, index-bound by its elements
        # (advisor.workload.aten_ops.index_bound_elements, as the tracer files the same call)
        OpCost("decode.kv_cache.cat", "elementwise", "decode", 0.0,
               2.0 * 2.0 * b * arch.num_kv_heads * arch.head_dim * ctx * a_b * L, 2 * L, runtime="eager",
               strided_elements=2.0 * b * arch.num_kv_heads * arch.head_dim * ctx * L),
    ]
    return tuple(replace(op, flops=float(op.flops), bytes=float(op.bytes)) for op in out)


__all__ = ["ATTENTIONS", "DECODERS", "DEFAULT_GEN_LEN", "FAMILIES", "LORA_TARGETS", "OPTIMIZER_PASS_BYTES",
           "TransformerArch", "activation_bytes_breakdown", "analytic_params", "build_transformer", "check_common",
           "compute_bytes", "kv_cache_peak_bytes", "optimizer_op", "optimizer_state_bytes", "weight_bytes"]
