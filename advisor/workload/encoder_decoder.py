"""T5-style encoder-decoder workloads in closed form, kernel by kernel as transformers 5 runs T5 on a GPU.

``advisor.workload.transformer.build_transformer`` hands a ``t5`` architecture here.  What the module
(``T5ForConditionalGeneration``, transformers 5.25) does, and what is priced for it:

- Two stacks over their own lengths: the encoder over ``seq_len`` tokens, the decoder over ``decoder_len`` (the
  labels' length: transformers shifts the labels right into the decoder's input; default ``seq_len``, as a
  ``model(input_ids, labels=input_ids)`` step feeds it).  One embedding table shared by both stacks (and, tied, the
  LM head).
- Every block: T5's RMSNorm (``T5LayerNorm``: ``transformer_ops.RMS_NORMS['t5']``) before each sub-layer, the
  residual added after a dropout.  Self-attention; in the decoder, cross-attention to the encoder's output, whose
  keys and values each decoder block projects again.  The feed-forward is ``wi``, ReLU, dropout, ``wo`` (t5 v1.0),
  or ``act(wi_0) * wi_1`` (``gated-gelu``, t5 v1.1 / flan: ``gelu_new``, a chain of kernels,
  ``transformer_ops.UNFUSED_ACTIVATIONS``).  ``wo``'s input is cast to ``wo.weight``'s dtype first (the module keeps
  ``wo`` in fp32 for 8-bit inference): under autocast, whose master weights are fp32, the 16-bit activation goes to
  fp32 and autocast casts it back for the matmul: two casts of the d_ff-wide tensor per block.
- Attention is unscaled (``scaling=1.0``) and takes a relative position bias, computed once per stack by the first
  block (``compute_bias``: an embedding of (query, key) buckets, a learned table per stack) and added in every
  block.  transformers 5 runs T5 through SDPA by default (``_supports_sdpa``; flash attention refused): the bias is
  passed as a float ``attn_mask`` (``create_position_bias_mask``: the encoder's permuted bias made contiguous, the
  decoder's merged with the causal mask by ``torch.where``, both per block), which rules out the flash kernel and
  the ``is_causal`` fast path: CUDA runs the memory-efficient (or cuDNN) kernel with an additive bias, every
  query x key tile computed, the decoder's masked half too.  Under autocast SDPA casts the fp32 bias to 16 bits
  (one copy per block).  The bias is a learned parameter, so in training the kernel's backward writes its gradient
  (batch x heads x query x key, summed over the batch) and the stack accumulates it over its blocks
  (``position_bias.grad``).  Cross-attention's bias is a zero tensor made once (no gradient).  (On the CPU torch
  takes its math path for a mask that needs a gradient: a trace of the module there sees two batched matmuls and a
  softmax per block; CUDA's choice is the fused kernel, ``cuda/sdp_utils.cpp``: the efficient kernel's checks
  never look at the mask's gradient.)
- Dropout (``dropout_rate``) on the embeddings, each sub-layer's output, the feed-forward's hidden and the stacks'
  outputs: CUDA's ``native_dropout`` (one kernel, a 1-byte mask saved).
- With the embeddings tied (t5 v1.0: ``tie_word_embeddings``), the decoder's output is rescaled by d_model^-0.5
  before the LM head (``scale_decoder_outputs``); the loss is ``CrossEntropyLoss`` over every decoder position.
- In decoder blocks transformers 5 keeps an ``EncoderDecoderCache`` even in training (``use_cache`` defaults on):
  each block's self and cross keys and values are ``torch.cat`` into it (four copies per block).

Pure arithmetic, no torch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from advisor.errors import WorkloadError
from advisor.precision import NF4_BYTES_PER_WEIGHT, master_bytes
from advisor.workload.arch import TransformerArch
from advisor.workload.aten_ops import FUSED_ATTENTION_BACKWARD_WORK, fused_attention_work
from advisor.workload.base import OpCost, Workload
from advisor.workload.costs import check_builder_options, compute_bytes, optimizer_op, weight_bytes
from advisor.workload.encoder_decoder_step import (
    RELATIVE_BUCKET_KERNELS,
    Step,
    activation,
    dispatches,
    saved_bytes,
    transient_bytes,
)
from advisor.workload.encoder_decoder_step import assumptions as step_assumptions
from advisor.workload.encoder_decoder_step import lora_targets as resolve_lora_targets
from advisor.workload.options import BuiltOptions, WorkloadOptions, check_count
from advisor.workload.qlora import add_dequant
from advisor.workload.transformer_blocks import checkpoint_recompute
from advisor.workload.transformer_ops import OpList, activation_kernels, rms_norm_kernels


def build_encoder_decoder(
    arch: TransformerArch,
    *,
    name: str,
    source: Literal["preset", "config"] = "preset",
    options: WorkloadOptions | None = None,
    lora_targets: tuple[str, ...] | list[str] | str | None = None,
    attention: str = "sdpa",
    default_seq_len: int = 2048,
    decoder_len: int | None = None,
    **keywords: Any,
) -> Workload:
    """One step of a T5-style encoder-decoder as a ``Workload`` (see the module docstring).

    Args:
        arch: the model's shape (family ``t5``).
        name, source, options, lora_targets, default_seq_len, **keywords: as ``build_transformer``.
        attention: ``sdpa`` (transformers 5's default for T5; flash attention takes no bias, eager attention is not
            modelled).
        decoder_len: the decoder's (labels') length; default the encoder's ``seq_len``.

    Raises:
        TypeError: a keyword that is not a builder option.
        WorkloadError: a bad size or choice, or an option that does not apply to an encoder-decoder.
    """
    opts, s, t, quantize, assumptions = _checked(arch, name, options, attention, default_seq_len, decoder_len,
                                                 keywords)
    train = opts.mode == "train"
    targets = resolve_lora_targets(arch, name, opts.lora_rank, lora_targets, assumptions)
    rank = check_count("lora_rank", opts.lora_rank) if opts.lora_rank is not None else 0
    a_b = compute_bytes(opts.precision)
    amp = opts.precision.startswith("amp-")
    w_b = NF4_BYTES_PER_WEIGHT if quantize == "nf4" else 1.0 if quantize == "int8" else weight_bytes(opts.precision)
    st = Step(arch=arch, b=opts.batch_size, enc_len=s, dec_len=t, train=train, amp=amp, a_b=a_b,
               res_b=4 if amp else a_b, w_b=w_b, head_w_b=weight_bytes(opts.precision), bias_b=4 if amp else a_b,
               mask_b=a_b, frozen=bool(rank), lora_rank=rank, targets=targets, nf4=quantize == "nf4",
               checkpointing=train and bool(opts.gradient_checkpointing))
    ops = OpList()
    _embeddings(ops, st)
    for stack in ("encoder", "decoder"):
        _stack(ops, st, stack)
    _head(ops, st)
    recompute = _recompute(ops, st) if st.checkpointing else []
    # transformers 5 ties T5's head to the shared embedding whatever the config says (T5Config.__post_init__ forces
    # tie_word_embeddings; the config's own flag only decides the decoder output's rescale)
    params_base = arch.params - (0 if arch.tie_word_embeddings else arch.vocab_size * arch.hidden_size)
    lora_p = arch.lora_params(rank, targets) if rank else 0
    trainable = (lora_p if rank else params_base) if train else 0
    optimizer = opts.optimizer if train else None
    all_ops = list(ops.fwd) + (ops.bwd + recompute if train else [])
    if train and trainable and optimizer:
        all_ops.append(optimizer_op(trainable, opts.precision, optimizer))
    saved = saved_bytes(st, bool(opts.gradient_checkpointing)) if train else 0.0
    # the parameter gradients not made yet when the loss's backward runs (all there with gradient accumulation)
    absent = trainable * master_bytes(opts.precision) if opts.grad_accum == 1 else 0.0
    transient = transient_bytes(st, absent)
    assumptions += step_assumptions(st, opts, quantize)
    resolved = replace(opts, seq_len=s, gen_len=None)

    def rebuild(new_batch: int) -> Workload:
        return build_encoder_decoder(arch, name=name, source=source, options=replace(resolved, batch_size=new_batch),
                                     lora_targets=lora_targets, attention=attention, decoder_len=decoder_len)

    built_options = BuiltOptions(
        quantized_params=arch.quantizable_params() if quantize else 0,
        gradient_checkpointing=bool(opts.gradient_checkpointing), lora_rank=opts.lora_rank,
        lora_targets=tuple(targets) if rank else None, quantize_base=quantize, grad_accum=opts.grad_accum,
        attention="sdpa", frozen=bool(rank), decoder_len=t, rebuild=rebuild)
    return Workload(
        name=name, source=source, family=arch.kind, batch_size=st.b,
        mode=opts.mode,  # type: ignore[arg-type]
        precision=opts.precision, optimizer=optimizer, params=params_base + lora_p, trainable_params=trainable,
        activation_bytes=float(saved), transient_bytes=float(transient), ops=tuple(all_ops), seq_len=s,
        lora_params=lora_p, tokens_per_sample=s, input_bytes_per_sample=float((s + t) * 8 if train else s * 8),
        arch=arch.arch_dict(), eager_ops=dispatches(st, opts, optimizer, trainable),
        assumptions=tuple(assumptions), options=built_options)


def _recompute(ops: OpList, st: Step) -> list[OpCost]:
    """Checkpointed blocks' forward again in backward, up to their last saved tensor (``checkpoint_recompute``).

    The first block of each stack computes its relative bias too; a block ends in wo, its output dropout (its mask
    saved) and the residual add.
    """
    return checkpoint_recompute(
        ops.fwd, layers=("encoder.layers.", "decoder.layers.", "encoder.relative_bias", "decoder.relative_bias"),
        last_linear=".ff.wo", saves_after=st.arch.dropout,
        last_adds={"encoder.layers.*.residual": 2, "decoder.layers.*.residual": 3})


def _checked(arch: TransformerArch, name: str, options: WorkloadOptions | None, attention: str, default_seq_len: int,
             decoder_len: int | None,
             keywords: dict[str, Any]) -> tuple[WorkloadOptions, int, int, str | None, list[str]]:
    """The options resolved and checked: (options, encoder length, decoder length, quantize_base, assumptions)."""
    unexpected = [k for k in keywords if k not in WorkloadOptions.names()]
    if unexpected:
        raise TypeError(f"build_transformer() got an unexpected keyword argument {unexpected[0]!r}")
    opts = replace(options or WorkloadOptions(), **keywords)
    quantize = check_builder_options(name, opts)
    if attention != "sdpa":
        raise WorkloadError(f"unknown attention implementation {attention!r} for {name} (T5)",
                            "T5 is priced as transformers 5 runs it: SDPA with the relative bias as its mask "
                            "(attention='sdpa'); flash attention takes no bias, eager attention is not modelled")
    if arch.family != "t5":
        raise WorkloadError(f"{name} is a {arch.family}, not an encoder-decoder", "use build_transformer")
    if opts.gen_len is not None:
        raise WorkloadError("gen_len applies to infer of decoder (causal LM) models only",
                            f"{name} is an encoder-decoder in {opts.mode} mode")
    assumptions: list[str] = [
        "FLOPs count matrix multiplies (incl. attention QK^T and AV) only, as torch.utils.flop_counter does; "
        "elementwise, norm, softmax and embedding ops are costed by bytes moved",
    ]
    seq_len = opts.seq_len
    if seq_len is None:
        seq_len = default_seq_len
        assumptions.append(f"seq_len not given: using {seq_len}")
    s = check_count("seq_len", seq_len)
    t = check_count("decoder_len", decoder_len) if decoder_len is not None else s
    return opts, s, t, quantize, assumptions


# -- ops ----------------------------------------------------------------------------------------------------------

def _linear(ops: OpList, st: Step, label: str, tokens: int, keys: tuple[str, ...], count: int, *,
            input_b: int | None = None, reads: int = 1) -> None:
    """The linears ``keys`` (separate layers, one input) over ``tokens``, their casts and LoRA adapters.

    ``input_b``: the input's dtype when it is not the compute dtype (a norm's fp32 output under autocast): each of
    the ``reads`` linears casts it (``OpList.add_shared_input``).
    """
    shapes = st.arch.linear_shapes()
    fin = shapes[keys[0]][0]
    fout = sum(shapes[k][1] for k in keys)
    if reads > 1 or (input_b is not None and input_b != st.a_b):
        ops.add_shared_input(label, tokens * fin, reads, count, amp=st.amp and input_b != st.a_b,
                             grad_bytes=input_b or st.a_b, train=st.train)
    weights = fin * fout
    fl = 2.0 * tokens * fin * fout
    nb = (tokens * fin * reads + tokens * fout) * st.a_b + weights * (2.0 if st.nf4 else st.w_b)
    if st.nf4:
        add_dequant(ops, label, weights, count, linears=len(keys), train=st.train)
    ops.add(label, "matmul", fl, nb, count, tc=True, min_dim=min(tokens, fin, fout),
            bwd_flops=fl * (1 if st.frozen else 2), train=st.train, gemm=(tokens, fout, fin), launches=len(keys))
    if st.amp and st.train and not st.frozen:
        # autocast casts each fp32 master weight to 16 bits every forward, and its gradient back (index-bound)
        ops.add(label + ".cast", "elementwise", 0, weights * 6, count, train=False, launches=len(keys))
        ops.add_index_bound(label + ".cast.grad", "elementwise", "backward", weights * 6, count, weights,
                            launches=len(keys))
    hit = [k for k in keys if k in st.targets]
    if hit:
        r = st.lora_rank
        lfl = sum(2.0 * tokens * r * (shapes[k][0] + shapes[k][1]) for k in hit)
        lnb = sum(tokens * (shapes[k][0] + 2 * r + shapes[k][1]) for k in hit) * st.a_b
        ops.add(label + ".lora", "matmul", lfl, lnb, count, tc=True, min_dim=r, bwd_flops=2 * lfl,
                train=st.train, launches=2 * len(hit))


def _elementwise(ops: OpList, st: Step, label: str, elements: float, count: int, fwd_b: float, bwd_b: float | None,
                 *, strided: bool = False, launches: int = 1) -> None:
    """``elements`` per repetition through one kernel (``fwd_b`` bytes each), its backward ``bwd_b`` (None: none)."""
    ops.add(label, "elementwise", 0, elements * fwd_b, count, bwd_flops=0 if bwd_b is not None else None,
            bwd_bytes=elements * (bwd_b or 0), train=st.train and bwd_b is not None, launches=launches,
            bwd_launches=launches, strided=elements if strided else 0.0)


def _dropout(ops: OpList, st: Step, label: str, elements: float, count: int, x_b: int) -> None:
    """CUDA's ``native_dropout``: x read, the output and a 1-byte mask written.

    Backward reads the gradient and the mask and writes the input's gradient.
    """
    if st.train and st.arch.dropout:
        _elementwise(ops, st, label, elements, count, 2 * x_b + 1, 2 * x_b + 1)


def _norms(ops: OpList, st: Step, label: str, tokens: int, count: int, per: int) -> None:
    rms = rms_norm_kernels("t5", False, st.amp, st.a_b)
    assert rms is not None  # T5LayerNorm is an RMSNorm
    h = st.arch.hidden_size
    ops.add(label, "norm", 0, tokens * h * (st.res_b + st.a_b) * per, count, bwd_flops=0, train=st.train,
            runtime="graph")
    ops.add_unfused(label + ".unfused", tokens * h * per, count, rms, st.train, reduce=not st.frozen,
                    runtime="eager")


def _residual(ops: OpList, st: Step, label: str, tokens: int, count: int, per: int) -> None:
    """``per`` residual adds: the stream (fp32 under autocast) plus a 16-bit sub-layer output.

    Mixed dtypes make the add index-bound; in backward autograd sums the stream's two gradients (the sub-layer's norm
    and the skip).
    """
    el = tokens * st.arch.hidden_size * per
    _elementwise(ops, st, label, el, count, 2 * st.res_b + st.a_b, None, strided=st.amp)
    if st.train:
        ops.add_index_bound(label + ".grad_sum", "elementwise", "backward", el * 3 * st.res_b, count, 0.0,
                            launches=per)


def _attention(ops: OpList, st: Step, label: str, q_tokens: int, q_len: int, k_len: int, count: int, *,
               bias_grad: bool) -> None:
    """Fused SDPA with an additive bias (memory-efficient / cuDNN kernel): every tile computed, the bias read."""
    a = st.arch
    heads, d = a.num_heads, a.head_dim
    bh = st.b * heads
    fl = 4.0 * bh * q_len * k_len * d
    bias = heads * q_len * k_len * st.mask_b
    qkvo = st.b * (2 * q_len + 2 * k_len) * heads * d * st.a_b
    lse = bh * q_len * 4.0
    tiles = fused_attention_work(bh, q_len, k_len, d, False)
    # backward: q, k, v, output and its gradient read, q, k, v gradients written, with the bias and logsumexp
    bwd = 2 * qkvo + bias + lse
    ops.add(label, "attention", fl, qkvo + bias + lse, count, tc=True, min_dim=d,
            bwd_flops=FUSED_ATTENTION_BACKWARD_WORK * fl, bwd_bytes=bwd, train=st.train, tiles=tiles)
    if bias_grad and st.train:
        # the bias's gradient the kernel writes, batch x heads x q x k in the mask's dtype, then summed over the batch
        # (a reduction across rows) back to the bias's shape
        full = st.b * heads * q_len * k_len
        ops.add_index_bound(label + ".position_bias.grad", "elementwise", "backward", full * st.mask_b, count, 0.0)
        ops.add_index_bound(label + ".position_bias.grad_sum", "reduction", "backward",
                            (full + full / st.b) * st.mask_b, count, full)


def _position_bias(ops: OpList, st: Step, label: str, q_len: int, k_len: int, count: int, causal: bool) -> None:
    """Per block, the bias made an SDPA mask (``create_position_bias_mask``).

    The encoder's permuted bias copied contiguous, the decoder's merged with a causal mask (``torch.where``, then
    copied), then cast to 16 bits by autocast; in backward the where's and the casts' gradients and the sum over the
    stack's blocks.
    """
    heads = st.arch.num_heads
    el = heads * q_len * k_len
    copy_b = 2 * st.bias_b
    if causal:  # the causal mask (arange >= arange) and the where, index-bound over broadcast operands
        ops.add_index_bound(label + ".causal_mask", "elementwise", "forward", q_len * k_len, count, q_len * k_len)
        _elementwise(ops, st, label + ".where", el, count, copy_b, None, strided=True)
    _elementwise(ops, st, label + ".contiguous", el, count, copy_b, None, strided=True)
    if st.amp:
        _elementwise(ops, st, label + ".cast", el, count, st.bias_b + st.mask_b, None)
    if st.train and not st.frozen:
        # backward: the cast's and the where's gradients, and the sum of the blocks' gradients of the one bias
        back = (st.mask_b + st.bias_b if st.amp else 0) + (2 * st.bias_b if causal else 0) + 3 * st.bias_b
        ops.add_index_bound(label + ".position_bias.grad", "elementwise", "backward", el * back, count, 0.0,
                            launches=1 + st.amp + causal)


def _feed_forward(ops: OpList, st: Step, prefix: str, tokens: int, count: int) -> None:
    a = st.arch
    f = a.intermediate_size
    el = tokens * f
    norm_out = st.res_b if st.amp else st.a_b
    if a.gated_mlp:
        _linear(ops, st, f"{prefix}.ff.wi", tokens, ("gate", "up"), count, input_b=norm_out, reads=2)
        act = activation_kernels(activation(a), st.amp, st.a_b)
        if act is not None:
            ops.add_unfused(f"{prefix}.ff.act", el, count, act, st.train)
        else:
            _elementwise(ops, st, f"{prefix}.ff.act", el, count, 2 * st.a_b, 3 * st.a_b)
        # act(wi_0) * wi_1: read two, write one; backward both operands' gradients
        _elementwise(ops, st, f"{prefix}.ff.gate_mul", el, count, 3 * st.a_b, 6 * st.a_b)
    else:
        _linear(ops, st, f"{prefix}.ff.wi", tokens, ("up",), count, input_b=norm_out)
        # ReLU: read, write; backward (threshold_backward) reads the gradient and the output, writes one
        _elementwise(ops, st, f"{prefix}.ff.act", el, count, 2 * st.a_b, 3 * st.a_b)
    _dropout(ops, st, f"{prefix}.ff.dropout", el, count, st.a_b)
    if st.amp:
        # hidden.to(wo.weight.dtype): 16-bit -> fp32 (wo's master weight), then autocast's cast back for the matmul
        _elementwise(ops, st, f"{prefix}.ff.to_wo_dtype", el, count, st.a_b + 4, st.a_b + 4)
        _elementwise(ops, st, f"{prefix}.ff.autocast", el, count, 4 + st.a_b, 4 + st.a_b, strided=True)
    _linear(ops, st, f"{prefix}.ff.wo", tokens, ("down",), count)
    _dropout(ops, st, f"{prefix}.ff.out_dropout", tokens * a.hidden_size, count, st.a_b)


def _stack(ops: OpList, st: Step, stack: str) -> None:
    a = st.arch
    decoder = stack == "decoder"
    n = a.num_decoder_layers if decoder else a.num_layers
    q_len = st.dec_len if decoder else st.enc_len
    tokens = st.b * q_len
    prefix = f"{stack}.layers.*"
    norm_out = st.res_b if st.amp else st.a_b
    _norms(ops, st, f"{prefix}.norm", tokens, n, 3 if decoder else 2)
    # self-attention
    _linear(ops, st, f"{prefix}.self.qkv", tokens, ("q", "k", "v"), n, input_b=norm_out, reads=3)
    _position_bias(ops, st, f"{prefix}.self.bias", q_len, q_len, n, causal=decoder)
    # a frozen bias table (LoRA) needs no gradient
    _attention(ops, st, f"{prefix}.self.core", tokens, q_len, q_len, n, bias_grad=not st.frozen)
    _linear(ops, st, f"{prefix}.self.o", tokens, ("o",), n)
    _dropout(ops, st, f"{prefix}.self.dropout", tokens * a.hidden_size, n, st.a_b)
    if decoder:
        h = a.hidden_size
        enc_tokens = st.enc_tokens
        _linear(ops, st, f"{prefix}.cross.q", tokens, ("q",), n, input_b=norm_out)
        # keys and values of the encoder's output (fp32 under autocast), projected again by every block
        _linear(ops, st, f"{prefix}.cross.kv", enc_tokens, ("k", "v"), n, input_b=norm_out, reads=2)
        # its zero bias needs a gradient under checkpointing (T5Attention sets requires_grad when checkpointing)
        _attention(ops, st, f"{prefix}.cross.core", tokens, q_len, st.enc_len, n, bias_grad=st.checkpointing)
        _linear(ops, st, f"{prefix}.cross.o", tokens, ("o",), n)
        _dropout(ops, st, f"{prefix}.cross.dropout", tokens * h, n, st.a_b)
        # EncoderDecoderCache: torch.cat of each block's self and cross keys and values (an inner-dimension cat); none
        # under checkpointing (transformers sets use_cache=False)
        kv = (tokens + enc_tokens) * a.q_dim
        if not st.checkpointing:
            ops.add_index_bound(f"{prefix}.cache.cat", "elementwise", "forward", 2 * kv * 2 * st.a_b, n, 2 * kv,
                                launches=4, runtime="eager")
    _feed_forward(ops, st, prefix, tokens, n)
    _residual(ops, st, f"{prefix}.residual", tokens, n, 3 if decoder else 2)


def _embeddings(ops: OpList, st: Step) -> None:
    """The shared table looked up by each stack, its dropout; the relative bias tables (each stack's first block).

    The table's gradient sums the two stacks' dense embedding gradients and the (always tied) head's.
    """
    a = st.arch
    h, v = a.hidden_size, a.vocab_size
    emb_b = st.bias_b  # the parameters' dtype
    for stack, tokens, length in (("encoder", st.enc_tokens, st.enc_len), ("decoder", st.dec_tokens, st.dec_len)):
        ops.add(f"{stack}.embedding", "embedding", 0, tokens * h * 2 * emb_b, 1, bwd_flops=0,
                bwd_bytes=tokens * h * st.res_b + v * h * emb_b, train=st.train and not st.frozen, bwd_launches=1)
        _dropout(ops, st, f"{stack}.embedding.dropout", tokens * h, 1, emb_b)
        # compute_bias: the (query, key) positions' buckets, then the bias table's lookup (its backward: the bias's)
        el = a.num_heads * length * length
        pairs = length * length
        per_pair, launches = RELATIVE_BUCKET_KERNELS[stack]
        ops.add_index_bound(f"{stack}.relative_bias.buckets", "elementwise", "forward", pairs * per_pair, 1, pairs,
                            launches=launches)
        ops.add(f"{stack}.relative_bias", "embedding", 0, el * emb_b + pairs * 8, 1, train=False)
        if st.train and not st.frozen:
            ops.add_index_bound(f"{stack}.relative_bias.position_bias.grad", "embedding", "backward",
                                el * emb_b + a.relative_attention_num_buckets * a.num_heads * emb_b, 1, 0.0)
    if st.train and not st.frozen:
        # the shared table's gradient: the two stacks' dense embedding gradients (and a tied head's) summed
        ops.add_index_bound("embedding.tied_grad_sum", "elementwise", "backward", 3 * v * h * emb_b * 2, 1, 0.0,
                            launches=2)


def _head(ops: OpList, st: Step) -> None:
    a = st.arch
    h, v = a.hidden_size, a.vocab_size
    for stack, tokens in (("encoder", st.enc_tokens), ("decoder", st.dec_tokens)):
        _norms(ops, st, f"{stack}.final_norm", tokens, 1, 1)
        _dropout(ops, st, f"{stack}.final_dropout", tokens * h, 1, st.res_b)
    d = st.dec_tokens
    if a.tie_word_embeddings:  # scale_decoder_outputs: sequence_output * d_model ** -0.5
        _elementwise(ops, st, "decoder.rescale", d * h, 1, 2 * st.res_b, 2 * st.res_b)
    if st.amp:  # the head reads the fp32 stream: autocast casts it
        ops.add_shared_input("lm_head", d * h, 1, 1, amp=True, grad_bytes=st.res_b, train=st.train)
    fl = 2.0 * d * h * v
    ops.add("lm_head", "matmul", fl, d * (h + v) * st.a_b + h * v * st.head_w_b, 1, tc=True, min_dim=min(d, h),
            bwd_flops=fl * (1 if st.frozen else 2), train=st.train, gemm=(d, v, h))
    if st.amp and st.train and not st.frozen:
        ops.add("lm_head.cast", "elementwise", 0, h * v * 6, 1, train=False)
        ops.add_index_bound("lm_head.cast.grad", "elementwise", "backward", h * v * 6, 1, h * v)
    if st.train:
        _cross_entropy(ops, st, d * v)


def _cross_entropy(ops: OpList, st: Step, logits: float) -> None:
    """``CrossEntropyLoss`` on the head's logits, as CUDA runs it.

    Autocast does not cast ``cross_entropy_loss`` on CUDA: its ``log_softmax`` runs in the logits' dtype (the loss
    passes it explicitly, so the fp32-if-unset policy keeps it), ``nll_loss`` in fp32 (an fp32 copy of the
    log-probabilities, index-bound).  Backward: ``nll_loss_backward`` (a zero-filled gradient written and scattered
    into), the cast back, ``log_softmax``'s backward (the gradient and the saved output read, one written).
    ``advisor.workload.trace_autocast`` applies the same policy to a trace.
    """
    x = st.a_b
    nll_b = 4 if st.amp else x
    ops.add("loss.log_softmax", "reduction", 0, logits * 2 * x, 1, bwd_flops=0, bwd_bytes=logits * 3 * x)
    if st.amp:
        ops.add_index_bound("loss.upcast", "elementwise", "forward", logits * (x + 4), 1, logits)
        ops.add_index_bound("loss.upcast.grad", "elementwise", "backward", logits * (x + 4), 1, 0.0)
    ops.add("loss.nll", "reduction", 0, logits * nll_b, 1, bwd_flops=0, bwd_bytes=logits * 2 * nll_b)
