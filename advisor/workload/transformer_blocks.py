"""The closed-form transformer's op builders: one step's op groups, layer by layer.

``advisor.workload.transformer.build_transformer`` resolves the options and the dtypes, then ``StepOps.build`` adds
the embedding, the blocks, the final norm and the heads to an ``OpList`` (forward groups and their backward
counterparts), each group as Hugging Face's module runs it (docs/conformance.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from advisor.workload.arch import TransformerArch
from advisor.workload.aten_ops import FUSED_ATTENTION_BACKWARD_WORK, fused_attention_work
from advisor.workload.base import OpCost
from advisor.workload.moe import AFTER_LAST_SAVE, add_moe_block, moe_shape
from advisor.workload.qlora import add_dequant
from advisor.workload.transformer_ops import (
    OpList,
    activation_kernels,
    cross_entropy,
    rms_norm_kernels,
    rotary_kernels,
)


def checkpoint_recompute(fwd: Sequence[OpCost], *, layers: tuple[str, ...], last_linear: str, saves_after: bool,
                         last_adds: Mapping[str, int], after_last_save: tuple[str, ...] = ()) -> list[OpCost]:
    """What checkpointed layers run again in backward: each one's forward up to the last tensor autograd saves.

    torch.utils.checkpoint, non-reentrant, as transformers' ``gradient_checkpointing_enable()`` and the tracer run it
    (and ``advisor.workload.step_tape.Tape.checkpoint`` writes it): the recompute stops early once every saved tensor
    is back, and an op's inputs are saved before its kernel runs, its outputs after.  So a layer's last linear (named
    ``*last_linear``), which saves only its input and weight, runs again only if an op after it saves a tensor
    (``saves_after``: a dropout's mask, a post-norm's statistics); the residual add that ends a block saves nothing
    and never runs again (``last_adds``: a residual group's name -> its adds per block, the last left out).

    ``layers``: the name prefixes of the ops the checkpointed layers run (T5's first block computes its stack's
    relative position bias too); ``after_last_save``: name suffixes of other ops after a block's last saved tensor
    (a MoE block's unpermute and what follows it).
    """
    out = []
    for op in fwd:
        if not op.name.startswith(layers):
            continue
        if (not saves_after and op.kind == "matmul" and op.name.endswith(last_linear)) \
                or op.name.endswith(after_last_save):
            continue
        per = last_adds.get(op.name)
        if per:  # the block's last add is not run again
            op = replace(op, bytes=op.bytes * (per - 1) / per, strided_elements=op.strided_elements * (per - 1) / per)
        out.append(replace(op, name="recompute." + op.name, phase="backward"))
    return out


@dataclass(frozen=True, slots=True)
class Dtypes:
    """Bytes per element of one step's tensors.

    ``a_b``: compute (16-bit copies under amp); ``res_b``: the residual stream and norm inputs (fp32 under amp);
    ``softmax_b``: eager attention's probabilities; ``w_b``: a block linear's weight (quantized: its bytes);
    ``head_w_b``: embeddings, LM head and pooler (never quantized); ``emb_b``: the embedding table's own dtype.
    """

    a_b: int
    amp: bool
    res_b: int
    softmax_b: int
    w_b: float
    head_w_b: float
    emb_b: float


@dataclass(frozen=True, slots=True)
class StepShape:
    """What the op builders need of a resolved step: its sizes, mode and the adapters on it."""

    b: int
    s: int
    train: bool
    causal_lm: bool
    flash: bool
    gradient_checkpointing: bool
    lora_rank: int | None
    targets: tuple[str, ...]
    quantize_base: str | None
    #: generation's prefill: logits at the last position only (``build_transformer(prefill_logits="last")``, the
    #: default: ``generate()`` passes ``logits_to_keep=1``, vLLM samples from the last; ``"all"``: a loop over the
    #: model's plain forward, as the validate zoo's ``generate()``)
    last_logit: bool = False
    #: grouped keys and values copied to every query head before attention (transformers' ``repeat_kv``).  Default
    #: as transformers 5 runs the attention implementation: eager copies; SDPA (``enable_gqa``, or one query packed
    #: per key head) and flash do not; transformers < 4.48 copied for SDPA, and for Qwen2's and Mistral's flash too
    repeat_kv: bool = False

    @property
    def frozen_base(self) -> bool:
        """LoRA / QLoRA: the base weights frozen (input gradients only)."""
        return bool(self.lora_rank)


@dataclass
class StepOps:
    """One step's op groups of ``arch`` (``build``), with the assumptions they add."""

    arch: TransformerArch
    step: StepShape
    dt: Dtypes
    ops: OpList = field(default_factory=OpList)
    assumptions: list[str] = field(default_factory=list)

    def build(self) -> None:
        """The embedding, the blocks, the stack's final norm and the heads, in the module's order."""
        arch, st, dt = self.arch, self.step, self.dt
        tokens, h = st.b * st.s, arch.hidden_size
        # one lookup per embedding table, reading the rows it gathers (the tracer counts the whole table as read:
        # its convention for every tensor input, not what the gather moves); in backward one
        # embedding_dense_backward per trainable table, reading the output's gradient and writing a gradient the
        # size of the whole table (zero-filled, the gathered rows summed in).  LoRA and QLoRA leave the embeddings
        # frozen, as PEFT does: no embedding backward
        tables = arch.embedding_tables
        table_elements = (arch.vocab_size + arch.max_position_embeddings + arch.type_vocab_size) * h
        self.ops.add("embedding", "embedding", 0, tokens * h * (dt.res_b + dt.emb_b) / tables, tables, bwd_flops=0,
                     bwd_bytes=(tokens * h * dt.res_b + table_elements * dt.emb_b / tables),
                     train=st.train and not st.frozen_base, bwd_launches=1)
        self.dropout("embedding.dropout", tokens * h, dt.res_b, 1, 1)
        self.block("layers.*", tokens, st.s, arch.num_layers, causal=st.causal_lm)
        # the stack's own norm: a decoder's last (ln_f, model.norm), BERT's embedding LayerNorm (counted in
        # analytic_params)
        self.norms("final_norm", tokens, 1, 1)
        self.heads(tokens)

    def recompute(self) -> list[OpCost]:
        """What a checkpointed block runs again in backward (``checkpoint_recompute``).

        A pre-norm block without hidden dropout (Llama's) ends in the down projection and the residual add: neither
        runs again.  A block ending in a dropout (its mask saved: GPT-2), a norm (BERT's post-norm: its adds come
        before it) or a parallel block's saved tensors recomputes all but its last add; a MoE block
        (``advisor.workload.moe``) all up to its unpermute.
        """
        arch = self.arch
        saves_after = bool(arch.dropout or arch.parallel_block or arch.family == "bert" or arch.num_experts)
        return checkpoint_recompute(self.ops.fwd, layers=("layers.", "encoder.", "decoder."), last_linear=".mlp.down",
                                    saves_after=saves_after, after_last_save=AFTER_LAST_SAVE,
                                    last_adds={} if arch.family == "bert" else {"layers.*.residual": 2})

    def heads(self, tokens: int) -> None:
        """An MLM head's transform, the LM head and its loss, or a bare encoder's pooler."""
        arch, st, dt, ops = self.arch, self.step, self.dt, self.ops
        h, v_size = arch.hidden_size, arch.vocab_size
        if arch.mlm_head:
            # BertForMaskedLM's transform: dense h x h (+ GELU, LayerNorm) before the tied decoder
            fl = 2.0 * tokens * h * h
            ops.add("mlm_head.transform", "matmul", fl, 2 * tokens * h * dt.a_b + h * h * dt.w_b, 1, tc=True,
                    min_dim=min(tokens, h), bwd_flops=2 * fl, train=st.train, gemm=(tokens, h, h))
            self.weight_cast("mlm_head.transform", h * h, 1)
            ops.add("mlm_head.gelu_norm", "elementwise", 0, tokens * h * (2 * dt.a_b + 2 * dt.res_b), 1,
                    bwd_flops=0, train=st.train)
            self.assumptions.append("encoder with a masked-LM head (BertForMaskedLM): dense + LayerNorm, then "
                                    "logits over the vocabulary at every position (the loss over all of them)")
        if arch.has_lm_head:
            # logits at every position: training, an MLM head, a plain forward (gen_len=0); generation's prefill
            # computes the last position's alone (transformers >= 4.45 generate() passes logits_to_keep=1, vLLM
            # samples from the last) unless the decoding loop runs the plain forward (prefill_logits="all": the
            # validate zoo's generate())
            tokens = st.b if st.last_logit else tokens
            fl = 2.0 * tokens * h * v_size
            nb = tokens * (h + v_size) * dt.a_b + h * v_size * dt.head_w_b
            ops.add("lm_head", "matmul", fl, nb, 1, tc=True, min_dim=min(tokens, h),
                    bwd_flops=fl * (1 if st.frozen_base else 2), bwd_bytes=nb if st.frozen_base else None,
                    bwd_launches=1 if st.frozen_base else None, train=st.train, gemm=(tokens, v_size, h))
            self.weight_cast("lm_head", h * v_size, 1)
            if arch.tie_word_embeddings and st.train and not st.frozen_base:
                # the head's weight gradient and the embedding's dense one accumulate into the tied parameter's .grad
                ops.add_index_bound("lm_head.tied_grad_sum", "elementwise", "backward", 3 * h * v_size * dt.emb_b, 1,
                                    0.0)
            if st.train:
                ops.add_loss(tokens * v_size, cross_entropy(st.causal_lm, dt.amp, dt.a_b))
                self.assumptions.append(
                    "loss as transformers 5 computes it: the labels shifted (no copy of the logits), a causal LM's "
                    "16-bit logits upcast to fp32 first (ForCausalLMLoss's logits.float()), then log_softmax in the "
                    "logits' dtype and nll_loss over every position (in fp32 under autocast)")
        elif arch.pooler:
            if st.train:
                self.assumptions.append(
                    "encoder: the bare model (BertModel, with pooler) and no task head; an MLM head (config "
                    "architectures: BertForMaskedLM) adds a dense h x h and logits over the vocabulary at every "
                    "position")
            fl = 2.0 * st.b * h * h
            ops.add("pooler", "matmul", fl, (2 * st.b * h) * dt.a_b + h * h * dt.head_w_b, 1, tc=True,
                    min_dim=min(st.b, h), bwd_flops=2 * fl, train=st.train, gemm=(st.b, h, h))

    def weight_cast(self, label: str, weights: float, count: int, launches: int = 1) -> None:
        """Autocast's casts of a trainable fp32 master weight (under amp)."""
        if self.dt.amp and self.step.train and not self.step.frozen_base:
            # autocast casts each fp32 master weight to 16 bits in every forward (a vectorized copy) and its 16-bit
            # gradient back to fp32 (TensorIterator's unrolled casting kernel: index-bound); a frozen LoRA base
            # keeps the builder's own weight bytes
            self.ops.add(label + ".cast", "elementwise", 0, weights * 6, count, train=False, launches=launches)
            self.ops.add_index_bound(label + ".cast.grad", "elementwise", "backward", weights * 6, count, weights,
                                     launches=launches)

    def linear_group(self, label: str, tokens: int, keys: tuple[str, ...], count: int, lora: bool = True,
                     multiplier: int = 1, reads: int = 0) -> None:
        """The linears ``keys`` over ``tokens`` (``multiplier`` experts' weights), their casts, bias and LoRA."""
        st, dt, ops = self.step, self.dt, self.ops
        shapes = self.arch.linear_shapes()
        fin = shapes[keys[0]][0]
        if reads:  # its input is a norm's output (fp32 under amp), read by ``reads`` separate linears
            ops.add_shared_input(label, tokens * fin, reads, count, amp=dt.amp, grad_bytes=dt.res_b, train=st.train)
        fout = sum(shapes[k][1] for k in keys)
        fl = 2.0 * tokens * fin * fout
        # each separate linear (q, k, v; gate, up) reads the shared input itself
        activations = (tokens * fin * max(reads, 1) + tokens * fout) * dt.a_b
        nb = activations + fin * fout * dt.w_b * multiplier
        if st.quantize_base == "nf4":  # QLoRA: dequantize to a 16-bit copy (its own kernel), then a 16-bit matmul
            nb = activations + fin * fout * multiplier * 2.0
            add_dequant(ops, label, fin * fout * multiplier, count, linears=len(keys), train=st.train)
        # input grad always (unless the very input needs none); weight grad only when trainable
        bwd = fl * (1 if st.frozen_base else 2)
        # a frozen weight's backward is the input gradient's GEMM alone: one call moving what the forward moves
        ops.add(label, "matmul", fl, nb, count, tc=True, min_dim=min(tokens, fin, fout), bwd_flops=bwd,
                bwd_bytes=nb if st.frozen_base else None, bwd_launches=1 if st.frozen_base else None,
                train=st.train, gemm=(tokens, fout, fin) if multiplier == 1 else None)
        self.weight_cast(label, fin * fout * multiplier, count, len(keys))
        biased = sum(shapes[k][1] for k in keys if shapes[k][2]) * multiplier
        if st.train and not st.frozen_base and biased:
            # a bias gradient sums dY over the tokens: a reduction across rows (index-bound, advisor.estimator.time)
            ops.add_index_bound(label + ".bias_grad", "reduction", "backward", tokens * biased * dt.a_b, count,
                                tokens * biased)
        hit = [k for k in keys if k in st.targets] if lora and st.lora_rank else []
        if hit and st.lora_rank:
            r = st.lora_rank
            lfl = sum(2.0 * tokens * r * (shapes[k][0] + shapes[k][1]) for k in hit) * multiplier
            lnb = sum((tokens * (shapes[k][0] + 2 * r + shapes[k][1])) * dt.a_b for k in hit) * multiplier
            ops.add(label + ".lora", "matmul", lfl, lnb, count, tc=True, min_dim=r, bwd_flops=2 * lfl,
                    train=st.train, launches=2 * len(hit))
            # PEFT's lora.Linear: result + lora_B(lora_A(x)) * scaling, a mul and an add on the output (the mul's
            # gradient in backward); lora_A reads x itself: under amp its own 16-bit cast of a norm's fp32 output (the
            # cast's gradient back: index-bound), and x's gradient takes one more sum, in x's dtype
            fin_el = tokens * sum(shapes[k][0] for k in hit) * multiplier
            fout_el = tokens * sum(shapes[k][1] for k in hit) * multiplier
            cast, x_b = dt.amp and reads > 0, dt.res_b if reads else dt.a_b
            ops.add_index_bound(label + ".lora.scale_add", "elementwise", "forward",
                                fout_el * 5 * dt.a_b + (fin_el * 6 if cast else 0), count, 0.0,
                                launches=len(hit) * (3 if cast else 2))
            if st.train:
                ops.add_index_bound(label + ".lora.scale_add.grad", "elementwise", "backward",
                                    fout_el * 2 * dt.a_b + fin_el * 3 * x_b + (fin_el * 6 if cast else 0), count,
                                    fin_el if cast else 0.0, launches=len(hit) * (3 if cast else 2))

    def attention_core(self, label: str, q_len: int, k_len: int, count: int, causal: bool) -> None:
        """Attention over ``q_len`` x ``k_len``: one fused kernel (SDPA, flash) or eager's matmuls and softmax."""
        arch, st, dt, ops = self.arch, self.step, self.dt, self.ops
        b, heads, kvh, d = st.b, arch.num_heads, arch.num_kv_heads, arch.head_dim
        if st.repeat_kv and kvh < heads:
            # repeat_kv: keys and values expanded to every query head (a broadcast copy: index-bound) and attention
            # reads the copies; backward sums each copy's gradient back over its group
            el = 2.0 * b * k_len * heads * d
            ops.add(label + ".repeat_kv", "elementwise", 0, el * dt.a_b * (1 + kvh / heads), count, bwd_flops=0,
                    bwd_bytes=el * dt.a_b * (1 + kvh / heads), train=st.train, launches=2, bwd_launches=2,
                    strided=el, runtime="eager")
            kvh = heads
        qk = 2.0 * b * heads * q_len * k_len * d
        fl = 2 * qk * (0.5 if (causal and st.flash) else 1.0)
        if st.flash:
            nb = b * (2 * q_len * heads * d + 2 * k_len * kvh * d) * dt.a_b
            ops.add(label, "attention", fl, nb, count, tc=True, min_dim=d,
                    bwd_flops=FUSED_ATTENTION_BACKWARD_WORK * fl, bwd_bytes=2.5 * nb, train=st.train,
                    tiles=fused_attention_work(b * heads, q_len, k_len, d, causal))
            return
        scores = b * heads * q_len * k_len
        ops.add(label + ".qk", "matmul", qk, (b * q_len * heads * d + b * k_len * kvh * d + scores) * dt.a_b,
                count, tc=True, min_dim=min(q_len, d), bwd_flops=2 * qk, train=st.train)
        ops.add(label + ".softmax", "elementwise", 0, scores * (dt.a_b + dt.softmax_b) * (2 if arch.dropout else 1),
                count, bwd_flops=0, train=st.train)
        ops.add(label + ".av", "matmul", qk, (scores + b * k_len * kvh * d + b * q_len * heads * d) * dt.a_b,
                count, tc=True, min_dim=min(q_len, d), bwd_flops=2 * qk, train=st.train)

    def norms(self, label: str, tokens: int, count: int, per: int) -> None:
        """``per`` norms over ``tokens`` (per repetition): read the residual, write the compute dtype's output."""
        arch, st, dt = self.arch, self.step, self.dt
        h = arch.hidden_size
        fused = tokens * h * (dt.res_b + dt.a_b) * per
        rms = rms_norm_kernels(arch.family, arch.norm_bias, dt.amp, dt.a_b)
        if rms is None:  # LayerNorm: torch's fused kernels
            self.ops.add(label, "norm", 0, fused, count, bwd_flops=0, train=st.train)
            return
        # RMSNorm as Hugging Face writes it: a chain of kernels in fp32 (transformer_ops.RMS_NORMS); graph runtimes
        # fuse it into one kernel
        self.ops.add(label, "norm", 0, fused, count, bwd_flops=0, train=st.train, runtime="graph")
        if st.frozen_base:  # a frozen weight: its mul's backward gives the input's gradient alone (no grad * x)
            rms = replace(rms, bwd_bytes=rms.bwd_bytes - 3 * (rms.saved - 4), bwd_launches=rms.bwd_launches - 1)
        self.ops.add_unfused(label + ".unfused", tokens * h * per, count, rms, st.train, reduce=not st.frozen_base,
                             runtime="eager")

    def block(self, prefix: str, tokens: int, q_len: int, count: int, causal: bool) -> None:
        """``count`` blocks: norms, attention, the MLP or the experts, dropout, residuals."""
        arch, st, dt = self.arch, self.step, self.dt
        h = arch.hidden_size
        self.norms(f"{prefix}.norm", tokens, count, 1 if arch.parallel_block else 2)
        self.linear_group(f"{prefix}.attn.qkv", tokens, ("q", "k", "v"), count, reads=1 if arch.fused_qkv else 3)
        self.attention_core(f"{prefix}.attn.core", q_len, q_len, count, causal)
        self.linear_group(f"{prefix}.attn.out", tokens, ("o",), count)
        self.mlp(prefix, tokens, count)
        self.dropout(f"{prefix}.dropout", tokens * h, dt.a_b, count, 2)
        # two residual adds: the stream (fp32 under amp: mixed dtypes, index-bound) and a linear's output read, the
        # stream written; backward sums the stream's gradient with the branch's (and casts it to 16 bits for the
        # branch under amp)
        self.ops.add(f"{prefix}.residual", "elementwise", 0, 2 * tokens * h * (dt.a_b + 2 * dt.res_b), count,
                     bwd_flops=0, bwd_bytes=2 * tokens * h * (3 * dt.res_b + (dt.res_b + dt.a_b if dt.amp else 0)),
                     train=st.train, strided=2 * tokens * h if dt.amp else 0)
        self.rotary(prefix, tokens, count)
        self.kv_cache_cat(prefix, tokens, count)

    def mlp(self, prefix: str, tokens: int, count: int) -> None:
        """The MLP (or a MoE's router and experts, ``advisor.workload.moe``): in-projection(s), activation, down."""
        arch, st, dt, ops = self.arch, self.step, self.dt, self.ops
        if arch.num_experts:
            shapes = arch.linear_shapes()
            add_moe_block(ops, moe_shape(arch, tokens, dt.a_b, dt.amp, dt.w_b, st.train, st.frozen_base), prefix,
                          count, lora=tuple((k, *shapes[k][:2]) for k in ("gate", "up", "down") if k in st.targets),
                          lora_rank=st.lora_rank or 0, nf4=st.quantize_base == "nf4")
            return
        mkeys = ("gate", "up") if arch.gated_mlp else ("up",)
        self.linear_group(f"{prefix}.mlp.in", tokens, mkeys, count, reads=len(mkeys))
        el = tokens * arch.intermediate_size
        unfused = activation_kernels(arch.activation, dt.amp, dt.a_b)
        if unfused is not None and not arch.gated_mlp:
            ops.add_unfused(f"{prefix}.mlp.act", el, count, unfused, st.train)
        elif arch.gated_mlp:
            # Hugging Face's gated MLP: act_fn(gate) (one fused kernel: read, write), then its product with up (read
            # two, write one), all in the linears' 16-bit output dtype under amp; backward the product's two
            # gradients (read two, write one each) and the activation's (read its gradient and input, write one)
            ops.add(f"{prefix}.mlp.act", "elementwise", 0, el * 5 * dt.a_b, count, bwd_flops=0,
                    bwd_bytes=el * 9 * dt.a_b, train=st.train, launches=2, bwd_launches=3)
        else:
            ops.add(f"{prefix}.mlp.act", "elementwise", 0, el * 2 * dt.a_b, count, bwd_flops=0, train=st.train)
        self.linear_group(f"{prefix}.mlp.down", tokens, ("down",), count)

    def kv_cache_cat(self, prefix: str, tokens: int, count: int) -> None:
        """The KV cache a causal LM's forward fills (transformers' DynamicCache, see below)."""
        arch, st, dt = self.arch, self.step, self.dt
        # a causal LM's forward builds transformers' DynamicCache whenever use_cache is on (the config's default,
        # training included; off with gradient checkpointing in training): each layer torch.cats its keys (fp32
        # under amp after rotary's fp32 muls) and values into the empty cache, a copy along the sequence dimension
        # (index-bound), in the forward only; the cache dies with the model's output
        if not st.causal_lm or (st.train and st.gradient_checkpointing):
            return
        k_b = 4 if dt.amp and self.rotated else dt.a_b
        el = tokens * arch.num_kv_heads * arch.head_dim
        self.ops.add_index_bound(f"{prefix}.kv_cache.cat", "elementwise", "forward", 2 * el * (k_b + dt.a_b), count,
                                 2 * el, launches=2, runtime="eager")

    def dropout(self, label: str, elements: int, elem_b: int, count: int, per: int) -> None:
        """``per`` hidden dropouts over ``elements`` of ``elem_b`` bytes each, in training.

        CUDA's fused ``native_dropout``: the output and a 1-byte mask; backward reads the gradient and the mask.
        """
        if self.arch.dropout and self.step.train:
            nb = elements * per * (2 * elem_b + 1)
            self.ops.add(label, "elementwise", 0, nb, count, bwd_flops=0, bwd_bytes=nb, launches=per,
                         bwd_launches=per)

    @property
    def rotated(self) -> bool:
        """Rotary position embedding on q and k (not a learned position table)."""
        return not self.arch.max_position_embeddings

    def rotary(self, prefix: str, tokens: int, count: int) -> None:
        """Hugging Face's rotary embedding of q and k (``transformer_ops.ROTARY``)."""
        # index-bound kernels on broadcast or halved operands
        # (advisor.estimator.index_bound.STRIDED_ELEMENTS_PER_SM_CYCLE); graph runtimes fuse them
        if not self.rotated:
            return
        arch = self.arch
        self.ops.add_unfused(f"{prefix}.rotary", tokens * (arch.num_heads + arch.num_kv_heads) * arch.head_dim, count,
                             rotary_kernels(self.dt.amp, self.dt.a_b), self.step.train, runtime="eager")
