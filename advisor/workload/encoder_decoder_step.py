"""The T5 step's shapes and widths, and what it holds and dispatches: bytes saved, transient, host calls.

The tallies of ``advisor.workload.encoder_decoder`` (its ops are there), tensor by tensor and call by call as
transformers 5.25's ``T5ForConditionalGeneration`` runs on a GPU.  Pure arithmetic, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.workload.arch import TransformerArch
from advisor.workload.arch import lora_targets as resolve_lora_targets
from advisor.workload.eager import LORA_BWD_PER_TARGET, LORA_FWD_PER_TARGET, optimizer_step_ops
from advisor.workload.options import WorkloadOptions
from advisor.workload.qlora import SOURCE as DEQUANT_SOURCE
from advisor.workload.transformer_memory import loss_transient
from advisor.workload.transformer_ops import activation_kernels, cross_entropy, precision_key, rms_norm_kernels

#: LoRA targets of a T5 block, by the module's names: q, k, v, o of every attention (self and cross) and the
#: feed-forward's wi (``up``; ``gate`` is wi_0 of a gated one) and wo (``down``).  PEFT's default for t5: q, v.
DEFAULT_LORA_TARGETS = ("q", "v")
#: Host dispatches (every aten call, views included) of one block and of the rest of the step (embeddings, bias
#: tables, masks, final norms, head, loss), per phase, as the tracer counts transformers 5.25's
#: ``T5ForConditionalGeneration`` on the kernels CUDA runs (fused SDPA with the bias, ``native_dropout``): the
#: panel's T5 of benchmarks/conformance.py with 1 and 2 encoder / decoder blocks.  (encoder fwd, encoder bwd,
#: decoder fwd, decoder bwd, rest fwd, rest bwd) per precision key; inference forward: (encoder, decoder, rest).
DISPATCHES: dict[str, tuple[int, int, int, int, int, int]] = {
    "amp": (67, 149, 124, 250, 91, 74),
    "fp32": (54, 135, 104, 228, 88, 71),
    "16-bit": (58, 141, 110, 237, 92, 77),
}
INFER_DISPATCHES: dict[str, tuple[int, int, int]] = {"16-bit": (54, 105, 74)}
#: A gated feed-forward's (``gated-gelu``: wi_0, gelu_new, wi_1, the product) dispatches beyond ReLU's, per block:
#: (forward, backward) per precision key, counted as ``DISPATCHES``.
GATED_DISPATCHES: dict[str, tuple[int, int]] = {"amp": (14, 34), "fp32": (12, 29), "16-bit": (12, 29)}
#: ``T5Attention._relative_position_bucket`` per (query, key) pair of one stack: (bytes, kernels), counted from its
#: code on int64 positions.  Encoder (bidirectional): the difference, ``> 0`` to long times the half of the buckets,
#: ``abs``, ``< max_exact``, the log-spaced buckets (to float, div, log, div, mul, to long, add, ``min`` with a
#: ``full_like``), the ``where`` and its add: 240 B.  Decoder (causal): ``-min(rp, zeros_like(rp))`` in place of the
#: sign and ``abs``: 214 B.
RELATIVE_BUCKET_KERNELS: dict[str, tuple[float, int]] = {"encoder": (240.0, 18), "decoder": (214.0, 17)}
#: dropout calls a training forward makes that an inference one does not: per encoder block, decoder block, rest
_DROPOUTS = (3, 4, 4)
#: Checkpointed blocks (traced as ``DISPATCHES``, checkpointed less plain, 2 and 4 blocks a stack): a decoder block's
#: forward fills no cache (-8 calls) and expands the cross-attention's zero bias, which then needs a gradient (+1);
#: each block's recompute runs its forward again but the last residual add (the early stop) and detaches every saved
#: tensor that needs a gradient (``advisor.workload.eager.CHECKPOINT_DETACHES``): 32 per encoder, 54 per decoder block.
CHECKPOINT_DECODER_FORWARD = -7
CHECKPOINT_DETACHES = (32, 54)


@dataclass(frozen=True, slots=True)
class Step:
    """What every op of one step depends on: the shapes and the precision's byte widths."""

    arch: TransformerArch
    b: int
    enc_len: int
    dec_len: int
    train: bool
    amp: bool
    a_b: int  # activations (matmul inputs and outputs)
    res_b: int  # the residual stream and norms (fp32 under autocast)
    w_b: float  # a weight as a matmul reads it
    head_w_b: float  # the LM head's (never quantized)
    bias_b: int  # the relative bias table's dtype (the parameters')
    mask_b: int  # the bias as SDPA reads it (autocast casts it to 16 bits)
    frozen: bool
    lora_rank: int
    targets: tuple[str, ...]
    nf4: bool
    checkpointing: bool = False  # every block checkpointed (transformers' gradient_checkpointing_enable())

    @property
    def enc_tokens(self) -> int:
        return self.b * self.enc_len

    @property
    def dec_tokens(self) -> int:
        return self.b * self.dec_len


def activation(a: TransformerArch) -> str:
    """The feed-forward's activation: the config's, else T5Config's (``gated-gelu`` runs ``gelu_new``)."""
    return a.activation or ("gelu_new" if a.gated_mlp else "relu")


# -- memory and dispatches ----------------------------------------------------------------------------------

def saved_bytes(st: Step, checkpointing: bool) -> float:
    """Bytes autograd saves at the peak, tensor by tensor (see the module docstring for what each op keeps)."""
    a = st.arch
    h, f, inner, heads = a.hidden_size, a.intermediate_size, a.q_dim, a.num_heads
    rms = rms_norm_kernels("t5", False, st.amp, st.a_b)
    assert rms is not None
    cast = st.a_b if st.amp else 0  # a 16-bit cast of a norm's output, saved by each linear reading it
    shared = 0 if st.amp else st.a_b  # without autocast the linears share the norm's output
    mask = 1 if (st.arch.dropout and st.train) else 0

    def norm(tokens: int, readers: int) -> float:
        return tokens * h * (rms.saved + shared + cast * readers)

    def self_attn(tokens: int, length: int) -> float:
        n = norm(tokens, 3) + tokens * 3 * inner * st.a_b  # q, k, v
        n += tokens * inner * st.a_b + tokens * heads * 4  # the kernel's output (o's input) and logsumexp
        n += heads * length * length * st.mask_b  # the bias mask the backward reads
        return n + tokens * h * mask

    def feed_forward(tokens: int) -> float:
        el = tokens * f
        n = norm(tokens, 2 if a.gated_mlp else 1)
        if a.gated_mlp:
            act = activation_kernels(activation(a), st.amp, st.a_b)
            # the activation's own saved tensors (its input, wi_0's output, among them), its output and wi_1's (the
            # product's operands)
            n += el * 2 * st.a_b + el * (act.saved if act is not None else st.a_b)
        else:
            n += el * st.a_b  # ReLU's output
        n += el * mask + el * st.a_b  # dropout mask, wo's (16-bit) input
        return n + tokens * h * mask

    enc, dec = st.enc_tokens, st.dec_tokens
    enc_layer = self_attn(enc, st.enc_len) + feed_forward(enc)
    cross = norm(dec, 1) + dec * inner * st.a_b + enc * 2 * inner * st.a_b + enc * h * (2 * cast)
    cross += dec * inner * st.a_b + dec * heads * 4 + dec * h * mask
    dec_layer = self_attn(dec, st.dec_len) + cross + feed_forward(dec)
    lora = st.lora_rank * st.a_b * (enc * len(st.targets) + dec * 2 * len(st.targets))
    rest = (enc + dec) * h * (rms.saved + mask) * 2  # final norms; embedding and output dropout masks
    rest += enc * h * st.res_b + dec * h * (st.a_b if st.amp else st.res_b)  # encoder output; head's input
    rest += heads * st.dec_len * st.enc_len * st.a_b  # cross-attention's zero bias
    # log_softmax's output (the logits' dtype), and under autocast the fp32 copy nll_loss keeps
    head = dec * a.vocab_size * (st.a_b + (4 if st.amp else 0))
    if checkpointing:
        blocks = a.num_layers * enc * h * st.res_b + a.num_decoder_layers * dec * h * st.res_b
        return float(blocks + rest + lora + max(dec_layer, head))
    return float(a.num_layers * enc_layer + a.num_decoder_layers * dec_layer + lora + rest + head)


def transient_bytes(st: Step, absent_gradients: float) -> float:
    """The largest temporary beside the saved tensors: a block's feed-forward hidden tensors, or the loss's backward.

    In training the loss's backward (``transformer_memory.loss_transient``: ``CrossEntropyLoss`` on the head's logits,
    the gradients it holds at once less ``absent_gradients``, the parameter gradients not made yet); at inference the
    logits of every decoder position.
    """
    a = st.arch
    ff = max(st.enc_tokens, st.dec_tokens) * a.intermediate_size * st.a_b * (3 if a.gated_mlp else 2)
    logits = st.dec_tokens * a.vocab_size
    if st.train:
        return float(max(ff, loss_transient(logits, cross_entropy(False, st.amp, st.a_b), absent_gradients)))
    return float(ff + logits * st.a_b)


def dispatches(st: Step, opts: WorkloadOptions, optimizer: str | None, trainable: int) -> dict[str, int]:
    key = precision_key(st.amp, st.a_b)
    a = st.arch
    enc_f, enc_b, dec_f, dec_b, rest_f, rest_b = DISPATCHES[key]
    gated_f, gated_b = GATED_DISPATCHES[key] if a.gated_mlp else (0, 0)
    enc_f, dec_f, enc_b, dec_b = enc_f + gated_f, dec_f + gated_f, enc_b + gated_b, dec_b + gated_b
    lora_fwd = LORA_FWD_PER_TARGET * len(st.targets)
    lora_bwd = LORA_BWD_PER_TARGET * len(st.targets)
    if st.checkpointing:
        dec_f += CHECKPOINT_DECODER_FORWARD
    # a decoder block has two attentions
    fwd = rest_f + a.num_layers * (enc_f + lora_fwd) + a.num_decoder_layers * (dec_f + 2 * lora_fwd)
    if not st.train:
        if key in INFER_DISPATCHES:
            e, d, r = INFER_DISPATCHES[key]
            e, d = e + gated_f, d + gated_f
        else:  # the training forward less its dropouts
            e, d, r = enc_f - _DROPOUTS[0], dec_f - _DROPOUTS[1], rest_f - _DROPOUTS[2]
        return {"forward": r + a.num_layers * (e + lora_fwd) + a.num_decoder_layers * (d + 2 * lora_fwd)}
    bwd = rest_b + a.num_layers * (enc_b + lora_bwd) + a.num_decoder_layers * (dec_b + 2 * lora_bwd)
    if st.checkpointing:  # the blocks' forward less their last add, the detaches, each stack's relative bias again
        bias = sum(launches + 1 for _, launches in RELATIVE_BUCKET_KERNELS.values())
        bwd += (fwd - rest_f + bias + a.num_layers * (CHECKPOINT_DETACHES[0] - 1)
                + a.num_decoder_layers * (CHECKPOINT_DETACHES[1] - 1))
    tensors = 2 * len(st.targets) * (a.num_layers + 2 * a.num_decoder_layers) if st.targets else a.param_tensors()
    return {"forward": fwd, "backward": bwd, "optimizer": optimizer_step_ops(optimizer, tensors if trainable else 0)}


def lora_targets(arch: TransformerArch, name: str, rank: int | None,
                 given: tuple[str, ...] | list[str] | str | None, assumptions: list[str]) -> tuple[str, ...]:
    """T5's LoRA targets: ``arch.lora_targets`` with PEFT's default for t5 (q and v of every attention)."""
    return resolve_lora_targets(arch, name, rank, given, assumptions, default=DEFAULT_LORA_TARGETS,
                                default_words="q and v of every attention (PEFT's default for t5)")


def assumptions(st: Step, opts: WorkloadOptions, quantize: str | None) -> list[str]:
    out = [f"encoder-decoder (T5, transformers 5): encoder over seq_len={st.enc_len}, decoder over "
           f"{st.dec_len} target tokens (labels shifted right); relative position bias added in every block as "
           "SDPA's float mask (memory-efficient / cuDNN kernel, every tile computed, the bias read; its gradient "
           "written in training), unscaled attention; T5LayerNorm as transformers writes it (fp32 chain); "
           "cross-attention keys and values projected from the encoder's output in every decoder block"]
    if st.amp:
        out.append("amp: the feed-forward's hidden is cast to fp32 (wo.weight's dtype) and back by autocast; "
                   "each linear reading a norm's fp32 output casts it; the bias is cast to 16 bits per block")
    if st.train:
        out.append("activations: every tensor autograd saves, block by block (norms' fp32 inputs, q/k/v, the "
                   "fused kernel's output and logsumexp, the bias mask, dropout masks, ReLU's output, wo's input), "
                   "the loss's fp32 log-probabilities"
                   + ("; checkpointing keeps each block's input plus one block's" if opts.gradient_checkpointing
                      else ""))
    if st.frozen:
        out.append("LoRA: base weights frozen (input gradients only); adapters trained")
    if quantize:
        out.append(f"{quantize} base: only the blocks' linear weights quantized; " + DEQUANT_SOURCE)
    return out
