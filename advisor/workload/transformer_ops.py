"""The analytic transformer builder's op list: forward groups, their backward counterparts, backward-only groups.

``advisor.workload.transformer`` adds one group per kind of layer op (per repetition, ``count`` layers); a forward
group with backward FLOPs gets its ``.grad`` counterpart, with the GEMM shapes of its input and weight gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from advisor.workload.arch import TransformerArch
from advisor.workload.base import OpCost, OpKind, Phase


@dataclass(frozen=True, slots=True)
class UnfusedKernels:
    """A chain of elementwise kernels Hugging Face writes out, per element it runs on.

    Kernels, bytes, index-bound elements (``OpCost.strided_elements``) and bytes autograd saves, forward and backward.

    ``saved`` is what autograd keeps beyond the tensors the closed form tallies elsewhere (an activation: beyond the
    down projection's input).  ``reduce_bytes``: a backward reduction across rows (a norm's weight gradient, one
    index-bound call; 0: none).  Kernels over one value per token (a norm's variance and its rsqrt: 1/hidden of the
    elements) launch but their bytes are left out.
    """

    fwd_launches: int
    fwd_bytes: float
    fwd_strided: float
    bwd_launches: int
    bwd_bytes: float
    bwd_strided: float
    saved: float
    reduce_bytes: float = 0.0


#: Which of a chain's counts applies: ``16-bit`` (the module cast to fp16 / bf16), ``fp32`` (and tf32), ``amp``
#: (fp32 parameters and residual under autocast).
PRECISION_KEYS = ("16-bit", "fp32", "amp")

#: Activations Hugging Face writes as a chain of elementwise kernels (the rest run one fused kernel).
#: ``gelu_new`` (``transformers.activations.NewGELUActivation``, GPT-2's and GPT-J's default):
#: ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))``: 8 kernels forward (0.5*x, pow, the scalar
#: mul, +, the scalar mul, tanh, 1+, *), 11 backward; autograd keeps pow's input, tanh's output and both operands of
#: the last mul (4 tensors).  Under CUDA autocast ``pow`` is on the fp32 list: x is cast up (an index-bound cast),
#: the chain runs in fp32, its adds / muls with the 16-bit ``0.5*x`` mix dtypes (index-bound), three of the four
#: saved tensors are fp32 and the fp32 result is cast back to 16 bits for the down projection: 10 kernels forward,
#: 15 backward (the gradients cast back), 14 saved bytes per element.  Counted from the formula by the tracer (a
#: [4096, 1024] activation between two linears, less the same without it); tests/test_conformance.py re-traces it
#: against this table.
UNFUSED_ACTIVATIONS: dict[str, dict[str, UnfusedKernels]] = {
    "gelu_new": {"16-bit": UnfusedKernels(8, 36, 0, 11, 56, 0, 8),
                 "fp32": UnfusedKernels(8, 72, 0, 11, 112, 0, 16),
                 "amp": UnfusedKernels(10, 76, 3, 15, 118, 2, 14)},
}

#: RMSNorm as Hugging Face writes it, per normalized element, by the model_type's norm class.  Llama's (Mistral's,
#: Qwen2's, Mixtral's: copies): ``x.to(float32)``, ``pow(2)``, ``mean(-1)``, ``x * rsqrt(var + eps)`` (a broadcast
#: mul), ``.to(input_dtype)``, ``weight * x``: the chain runs in fp32 whatever the precision.  At 16 bits the casts
#: in (unrolled: index-bound) and out are kernels of their own and the weight's mul is 16-bit (36 B forward); in
#: fp32 or under autocast, whose residual stream is fp32, the casts are no-ops (28 B).  Gemma's multiplies by
#: ``1 + weight`` in fp32 before its cast back (40 B at 16 bits).  T5's ``T5LayerNorm`` multiplies its 16-bit input by
#: the fp32 rsqrt (34 B at 16 bits).  Backward: the muls' and pow's gradients, the mean's (a broadcast div), the sum
#: of the variance's gradient per row, their add, the casts back; the weight gradient sums ``grad * x`` across rows
#: (``reduce_bytes``).  Autograd keeps the fp32 input and the weight's other operand.  Counted by the tracer (the
#: norm on a [512, 256] input, less the same without it); tests/test_conformance.py re-traces each class.
RMS_NORMS: dict[str, dict[str, UnfusedKernels]] = {
    "llama": {"16-bit": UnfusedKernels(8, 36, 3, 15, 94, 4, 6, 2),
              "fp32": UnfusedKernels(6, 28, 2, 13, 92, 3, 8, 4),
              "amp": UnfusedKernels(6, 28, 2, 13, 92, 3, 8, 4)},
    "gemma": {"16-bit": UnfusedKernels(10, 40, 3, 16, 104, 4, 8, 4),
              "fp32": UnfusedKernels(7, 28, 2, 13, 92, 3, 8, 4),
              "amp": UnfusedKernels(7, 28, 2, 13, 92, 3, 8, 4)},
    "t5": {"16-bit": UnfusedKernels(8, 34, 3, 16, 92, 5, 8, 2),
           "fp32": UnfusedKernels(6, 28, 2, 13, 92, 3, 8, 4),
           "amp": UnfusedKernels(6, 28, 2, 13, 92, 3, 8, 4)},
}
#: the norm class of the families whose own differs from Llama's
RMS_NORM_OF = {"gemma": "gemma", "t5": "t5"}

#: Rotary position embedding as Hugging Face applies it (``apply_rotary_pos_emb``) to q and k, per rotated element
#: (of q and k together): ``q * cos + rotate_half(q) * sin``, ``rotate_half`` a neg of one half and a cat: 5 kernels
#: per tensor forward, all index-bound (broadcast cos / sin, the halves' strides); backward the two muls, the neg,
#: two zero-filled slice_backward copies and their adds.  Under autocast cos / sin are fp32 (the residual's dtype):
#: the muls write fp32, the adds run in fp32 and SDPA casts q and k back to 16 bits (a kernel each, and their
#: gradients cast up again in backward).  The cos / sin reads (one table per sequence, broadcast over batch and heads)
#: are left out.  Counted by the tracer (the panel's Llama of benchmarks/conformance.py with and without
#: ``apply_rotary_pos_emb``, and q, k, v projections into SDPA likewise); tests/test_conformance.py re-traces it.
ROTARY: dict[str, UnfusedKernels] = {
    "16-bit": UnfusedKernels(10, 20, 4.5, 16, 32, 4.5, 0),
    "fp32": UnfusedKernels(10, 40, 4.5, 16, 64, 4.5, 0),
    "amp": UnfusedKernels(12, 36, 4.5, 22, 58, 5.5, 0),
}


def precision_key(amp: bool, a_b: float) -> str:
    """The ``PRECISION_KEYS`` entry of a precision: autocast, or the compute dtype's width.

    8-bit compute (fp8) counts as 16-bit: torch runs no elementwise arithmetic in 8 bits.
    """
    return "amp" if amp else "fp32" if a_b >= 4 else "16-bit"


def activation_kernels(activation: str, amp: bool, a_b: int) -> UnfusedKernels | None:
    """``activation``'s kernels in bytes at this precision, or ``None`` for a fused activation."""
    table = UNFUSED_ACTIVATIONS.get(activation)
    return None if table is None else table[precision_key(amp, a_b)]


def rms_norm_kernels(family: str, norm_bias: bool, amp: bool, a_b: int) -> UnfusedKernels | None:
    """The family's RMSNorm kernels at this precision, or ``None`` for a LayerNorm (``norm_bias``: one fused kernel)."""
    if norm_bias:
        return None
    return RMS_NORMS[RMS_NORM_OF.get(family, "llama")][precision_key(amp, a_b)]


def rotary_kernels(amp: bool, a_b: int) -> UnfusedKernels:
    """Rotary embedding's kernels at this precision."""
    return ROTARY[precision_key(amp, a_b)]


class OpList:
    """Accumulates OpCost groups: forward ops and their backward counterparts."""

    def __init__(self) -> None:
        self.fwd: list[OpCost] = []
        self.bwd: list[OpCost] = []

    def add(self, name: str, kind: OpKind, flops: float, nbytes: float, count: int, *, tc: bool = False,
            min_dim: int | None = None, bwd_flops: float | None = None, bwd_bytes: float | None = None,
            train: bool = True, phase: Phase = "forward", launches: int = 1,
            gemm: tuple[int, int, int] | None = None, strided: float = 0.0,
            tiles: tuple[float, float] = (0.0, 0.0), bwd_launches: int | None = None,
            runtime: str | None = None) -> None:
        """Add a group: ``flops``/``bytes`` are per repetition; ``count`` repetitions (layers).

        ``gemm``: (M, N, K) of the forward GEMM Y[M,N] = X[M,K] W[K,N]; its backward runs dX = dY W^T
        (M, K, N) and, when the weight trains (backward FLOPs twice the forward), dW = X^T dY (K, N, M).
        ``strided``: elements per repetition the forward runs on an index-bound path (see ``OpCost``).
        ``tiles``: a fused attention's forward tile and block FLOPs per repetition (``OpCost.tile_flops``,
        ``block_flops``); its backward's are as much larger as its FLOPs.  ``bwd_launches``: the backward's calls per
        repetition (default twice the forward's launches).  ``runtime``: the one runtime that runs it, or every one.
        """
        fwd_gemms = bwd_gemms = None
        if gemm is not None:
            m, n, k = gemm
            fwd_gemms = (gemm,)
            if bwd_flops is not None and flops:
                ratio = bwd_flops / flops
                bwd_gemms = ((m, k, n), (k, n, m)) if ratio > 1.5 else ((m, k, n),) if ratio > 0.5 else None
        self.fwd.append(OpCost(name, kind, phase, float(flops) * count, float(nbytes) * count,
                               count * launches, tc, min_dim, gemms=fwd_gemms, strided_elements=float(strided) * count,
                               tile_flops=tiles[0] * count, block_flops=tiles[1] * count, runtime=runtime))
        if train and bwd_flops is not None:
            bb = bwd_bytes if bwd_bytes is not None else 2 * nbytes
            per_flop = bwd_flops / flops if flops else 0.0  # the backward's tile work scales as its FLOPs
            self.bwd.append(OpCost(name + ".grad", kind, "backward", float(bwd_flops) * count,
                                   float(bb) * count, count * (launches * 2 if bwd_launches is None else bwd_launches),
                                   tc, min_dim, gemms=bwd_gemms,
                                   tile_flops=tiles[0] * per_flop * count, block_flops=tiles[1] * per_flop * count,
                                   runtime=runtime))

    def add_index_bound(self, name: str, kind: OpKind, phase: Phase, nbytes: float, count: int, strided: float,
                        launches: int = 1, runtime: str | None = None) -> None:
        """A group of index-bound kernels in ``phase`` alone: ``strided`` elements per repetition (see ``OpCost``).

        ``runtime``: the one runtime that runs it (``eager``: graph runtimes fuse it away), or every runtime.
        """
        target = self.bwd if phase == "backward" else self.fwd
        target.append(OpCost(name, kind, phase, 0.0, float(nbytes) * count,
                             count * launches, runtime=runtime, strided_elements=float(strided) * count))

    def add_shared_input(self, label: str, elements: float, reads: int, count: int, *, amp: bool, grad_bytes: int,
                         train: bool) -> None:
        """A norm's output that ``reads`` separate linears read (q, k and v; gate and up), ``elements`` of it.

        Under amp each linear casts it to 16 bits (autocast caches casts of weights only): a vectorized fp32 -> 16-bit
        copy forward, and the cast's gradient back to fp32 in backward (TensorIterator's unrolled casting kernel:
        index-bound).  In backward autograd sums the reads' gradients (``reads - 1`` adds of ``grad_bytes``
        elements), whatever the precision.  As the tracer sees validate's zoo GPT-2 and Llama run.
        """
        if amp:
            self.add(label + ".input_cast", "elementwise", 0, elements * 6 * reads, count, train=False,
                     launches=reads)
            if train:
                self.add_index_bound(label + ".input_cast.grad", "elementwise", "backward", elements * 6 * reads,
                                     count, elements * reads, launches=reads)
        if train and reads > 1:
            self.add_index_bound(label + ".input_grad_sum", "elementwise", "backward",
                                 elements * 3 * grad_bytes * (reads - 1), count, 0.0, launches=reads - 1)

    def add_unfused(self, label: str, elements: float, count: int, kernels: UnfusedKernels, train: bool, *,
                    reduce: bool = True, runtime: str | None = None) -> None:
        """An unfused chain (``UNFUSED_ACTIVATIONS``, ``RMS_NORMS``, ``ROTARY``) over ``elements`` per repetition.

        ``reduce``: its backward reduction across rows runs (a norm's weight gradient: not for a frozen weight).
        ``runtime``: the one runtime that runs it as these kernels (``eager``: graph runtimes fuse it), or every one.
        """
        self.add_index_bound(label, "elementwise", "forward", elements * kernels.fwd_bytes, count,
                             elements * kernels.fwd_strided, launches=kernels.fwd_launches, runtime=runtime)
        if train:
            self.add_index_bound(label + ".grad", "elementwise", "backward", elements * kernels.bwd_bytes, count,
                                 elements * kernels.bwd_strided, launches=kernels.bwd_launches, runtime=runtime)
            if reduce and kernels.reduce_bytes:
                # a reduction across rows (index-bound, advisor.estimator.time)
                self.add_index_bound(label + ".weight_grad", "reduction", "backward", elements * kernels.reduce_bytes,
                                     count, elements, runtime=runtime)

    def add_loss(self, elements: float, loss: CrossEntropy) -> None:
        """The cross-entropy over ``elements`` logits, as ``loss`` (``cross_entropy``) runs it.

        The labels are shifted (padded), not the logits: no copy of them.  The casts up (16-bit -> fp32) are unrolled
        (index-bound), their gradients vectorized casts back.
        """
        for cast, label in ((loss.upcast, "loss.upcast"), (loss.nll_cast, "loss.nll_cast")):
            if cast:
                self.add_index_bound(label, "elementwise", "forward", elements * cast, 1, elements)
                self.add_index_bound(label + ".grad", "elementwise", "backward", elements * cast, 1, 0.0)
        self.add("loss.cross_entropy", "reduction", 0, elements * (2 * loss.log_softmax_b + loss.nll_b), 1,
                 bwd_flops=0, bwd_bytes=elements * (2 * loss.nll_b + 3 * loss.log_softmax_b), launches=2,
                 bwd_launches=2)


@dataclass(frozen=True, slots=True)
class CrossEntropy:
    """The cross-entropy's dtypes per logit (bytes of an element): its casts, log_softmax's and nll_loss's.

    ``upcast``, ``nll_cast``: bytes a cast moves per logit (0: none) before log_softmax and before nll_loss.
    """

    logits_b: int
    upcast: int
    log_softmax_b: int
    nll_cast: int
    nll_b: int

    @property
    def saved(self) -> float:
        """Bytes per logit kept to the loss's backward: log_softmax's output (and nll_loss's fp32 cast of it)."""
        return float(self.log_softmax_b + (self.nll_b if self.nll_cast else 0))

    @property
    def peak(self) -> float:
        """Bytes per logit the loss's backward holds at once beyond what it saved (its gradients, in their dtypes).

        nll_loss's gradient, then log_softmax's beside it; where nll_loss ran on an fp32 copy (``nll_cast``), that
        saved copy is freed once nll_loss's backward has run, before the cast back and log_softmax's gradient are
        allocated (the traced timeline of BERT's and T5's loss under amp: nll_loss's gradient is the peak).
        """
        ls, nll = self.log_softmax_b, self.nll_b
        if self.nll_cast:
            return float(max(nll, ls, 2 * ls - nll))
        return float(max(nll + ls, 2 * ls))


def cross_entropy(causal_lm: bool, amp: bool, a_b: int) -> CrossEntropy:
    """The cross-entropy of 16-bit or fp32 logits (``a_b`` bytes), as transformers 5's models run it on CUDA.

    A causal LM's ``ForCausalLMLoss`` upcasts the logits to fp32 (``logits.float()``) before ``cross_entropy``; an
    encoder's head (``BertForMaskedLM``) hands its logits to ``CrossEntropyLoss`` as they are.  ``cross_entropy``
    runs ``log_softmax`` with the input's dtype given explicitly, so autocast leaves it in that dtype; ``nll_loss``
    is on autocast's fp32 list: under amp a 16-bit log_softmax output is cast up for it (and nll_loss keeps that fp32
    copy for backward beside log_softmax's output).  Forward: log_softmax reads and writes, nll_loss reads;
    backward: nll_loss's (a zero-filled gradient; the tracer counts its input read too: 2 words), log_softmax's (the
    gradient and the saved output read, one written).  As the tracer sees GPT-2, Llama and BERT run
    (benchmarks/conformance.py).
    """
    upcast = causal_lm and a_b < 4
    ls_b = 4 if upcast else a_b
    nll_b = 4 if amp else ls_b
    return CrossEntropy(logits_b=a_b, upcast=(a_b + 4) if upcast else 0, log_softmax_b=ls_b,
                        nll_cast=(ls_b + nll_b) if nll_b != ls_b else 0, nll_b=nll_b)


def decode_ops(arch: TransformerArch, b: int, ctx: float, a_b: int, w_b: float,
               repeat_kv: bool = False) -> tuple[OpCost, ...]:
    """One generated token at context ``ctx``: every weight read once, KV cache read, tiny matmuls.

    ``repeat_kv``: the attention implementation copies the cached keys and values to every query head first
    (transformers' ``repeat_kv``: a broadcast copy, index-bound by its elements) and attends over the copies.
    """
    h = arch.hidden_size
    shapes = arch.linear_shapes()
    experts_read = max(arch.num_experts, 1)
    active = arch.experts_per_token or 1
    attn_w = sum(shapes[k][0] * shapes[k][1] for k in ("q", "k", "v", "o"))
    mlp_w = sum(shapes[k][0] * shapes[k][1] for k in ("gate", "up", "down") if k in shapes)
    L = arch.num_layers
    kv_el = 2.0 * b * arch.num_kv_heads * arch.head_dim * ctx  # one layer's cached keys and values
    repeated = 2.0 * b * arch.num_heads * arch.head_dim * ctx if repeat_kv and arch.num_kv_heads < arch.num_heads \
        else 0.0
    out = [
        OpCost("decode.layers.*.attn.proj", "matmul", "decode", 2.0 * b * attn_w * L,
               attn_w * w_b * L + b * 6 * h * a_b * L, 4 * L, True, b),
        OpCost("decode.layers.*.attn.core", "attention", "decode", 4.0 * b * arch.num_heads * ctx * arch.head_dim * L,
               (repeated or kv_el) * a_b * L, L, True, 1),
        OpCost("decode.layers.*.mlp", "matmul", "decode", 2.0 * b * mlp_w * active * L,
               mlp_w * w_b * min(experts_read, max(b * active, 1)) * L, (3 if arch.gated_mlp else 2) * L, True, b),
        OpCost("decode.lm_head", "matmul", "decode", 2.0 * b * h * arch.vocab_size, h * arch.vocab_size * w_b,
               1, True, b),
        OpCost("decode.elementwise", "elementwise", "decode", 0.0, b * h * a_b * 12 * L, 6 * L),
        # transformers' DynamicCache (and the legacy tuple cache) grows k and v by torch.cat each token:
        # the whole cache is read and written again (cache_utils.DynamicCache.update), along the sequence
        # dimension of (batch, heads, seq, head_dim): an inner-dimension cat, index-bound by its elements
        # (advisor.workload.aten_ops.index_bound_elements, as the tracer files the same call)
        OpCost("decode.kv_cache.cat", "elementwise", "decode", 0.0, 2.0 * kv_el * a_b * L, 2 * L, runtime="eager",
               strided_elements=kv_el * L),
    ]
    if repeated:
        out.append(OpCost("decode.layers.*.attn.repeat_kv", "elementwise", "decode", 0.0,
                          (repeated + kv_el) * a_b * L, 2 * L, runtime="eager", strided_elements=repeated * L))
    return tuple(replace(op, flops=float(op.flops), bytes=float(op.bytes)) for op in out)
