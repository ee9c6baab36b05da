"""Activation memory of the analytic transformers, tensor by tensor.

Bytes saved for backward, the largest per-block temporary and the KV cache's peak while generating.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.workload.arch import TransformerArch
from advisor.workload.costs import compute_bytes
from advisor.workload.moe import moe_saved_bytes, moe_shape
from advisor.workload.transformer_ops import CrossEntropy, activation_kernels, cross_entropy, rms_norm_kernels


def loss_transient(logits: float, loss: CrossEntropy, absent_gradients: float) -> float:
    """What the loss's backward holds beyond the workload's other items.

    Its gradients over ``logits`` (``loss.peak``) less ``absent_gradients``, the bytes of parameter gradients not yet
    made when it runs.

    The estimate sums every parameter gradient with the activations and this transient; the loss's backward, the
    step's usual peak, runs before any gradient exists (the previous step's were freed by ``zero_grad``; with
    gradient accumulation they are all there).  The same convention as the tracer's transient: what the step's peak
    holds beyond the weights, all gradients and all activations.
    """
    return logits * loss.peak - absent_gradients


def kv_cache_peak_bytes(arch: TransformerArch, b: int, s: int, gen_len: int, a_b: int) -> float:
    """Peak bytes the KV cache holds while ``b`` sequences of ``s`` prompt tokens generate ``gen_len`` more.

    After the prefill each layer's cache holds views of its projection's output: with a fused q/k/v
    projection (GPT-2's ``c_attn``) the whole q|k|v tensor stays alive until the first ``torch.cat``
    replaces it.  At the end the cache is ``2 x kv_dim`` per position for ``s + gen_len`` positions.  While
    ``torch.cat`` grows a layer's keys (or values) the old and the new tensor live at once: one more
    layer's keys for ``s + gen_len`` positions.
    """
    per_pos = arch.q_dim + 2 * arch.kv_dim if arch.family == "gpt2" else 2 * arch.kv_dim
    prefill = arch.num_layers * b * s * per_pos * a_b
    final = arch.num_layers * b * (s + gen_len) * 2 * arch.kv_dim * a_b
    return float(max(prefill, final) + b * (s + gen_len) * arch.kv_dim * a_b)


def largest_temp(arch: TransformerArch, b: int, s: int, a_b: int, softmax_b: int, flash: bool,
                 infer: bool = False) -> float:
    """The largest per-block temporary: the MLP's intermediate (gated: two) or the eager s x s scores.

    ``infer``: a forward without autograd, where nothing is saved: at a gated MLP's product ``act(gate) * up`` its
    two inputs and its output are live at once (three intermediates), beside the residual and the normed input the
    projections read; a decoder's also beside the layer's input (the model's loop holds it until the layer returns)
    and the model's ``inputs_embeds`` (held to its forward's end), as the traced Hugging Face modules' storage
    timelines show.
    """
    mlp = b * s * arch.intermediate_size * a_b * (3 if infer and arch.gated_mlp else 2 if arch.gated_mlp else 1)
    scores = 0 if flash else b * arch.num_heads * s * s * (a_b + softmax_b)
    hidden = (4 if arch.kind == "decoder" else 2) if infer else 0
    return float(max(mlp, scores) + hidden * b * s * arch.hidden_size * a_b)


@dataclass(frozen=True, slots=True)
class _Tally:
    """What one block of ``arch`` saves for backward, tensor by tensor (``activation_bytes_breakdown``)."""

    arch: TransformerArch
    b: int
    flash: bool
    a_b: int
    amp: bool
    #: LoRA on a frozen base: the adapted linears (None: every weight trains).  A linear whose weight needs no
    #: gradient saves no input (autograd keeps mm's input for the weight's gradient only); an adapter saves its
    #: input (``lora_A``'s)
    adapted: tuple[str, ...] | None = None

    def saving(self, keys: tuple[str, ...]) -> int:
        """How many of the linears ``keys`` save their input."""
        return len(keys) if self.adapted is None else sum(k in self.adapted for k in keys)

    @property
    def res_b(self) -> int:
        """The residual stream's (and norm inputs') bytes: fp32 under amp."""
        return 4 if self.amp else self.a_b

    @property
    def mask(self) -> int:
        """A dropout mask's bytes per element (1: CUDA's bool mask), 0 without dropout."""
        return 1 if self.arch.dropout else 0

    def norm_bytes(self, tokens: int, consumers: int) -> float:
        """A norm's saved tensors.

        A LayerNorm's input, or what an unfused RMSNorm's chain keeps (``RMS_NORMS``: its fp32 input and the weight
        mul's other operand), and its output as saved by the ``consumers`` matmuls reading it that save their input
        (under amp each linear saves its own 16-bit cast of it).
        """
        h = self.arch.hidden_size
        rms = rms_norm_kernels(self.arch.family, self.arch.norm_bias, self.amp, self.a_b)  # as HF writes it
        # a frozen RMSNorm weight (LoRA) keeps only the chain's fp32 input: its mul's other operand is for the weight
        saved = (rms.saved if self.adapted is None else min(rms.saved, 4)) if rms is not None else self.res_b
        n = tokens * h * saved
        return n + tokens * h * self.a_b * (consumers if self.amp else min(consumers, 1))

    def attn_bytes(self, q_len: int, k_len: int, with_norm: bool) -> float:
        """Attention's saved tensors (and its norm's): q, k, v, the output, the softmax or the fused kernel's stats."""
        arch, b, a_b = self.arch, self.b, self.a_b
        t_q, t_k = b * q_len, b * k_len
        n = self.norm_bytes(t_q, min(self.saving(("q", "k", "v")), 1 if arch.fused_qkv else 3)) if with_norm else 0.0
        n += (t_q * arch.q_dim + 2 * t_k * arch.kv_dim) * a_b  # q, k, v
        if self.flash:
            # kernel output (laid out so the out-projection reads it as a view) + logsumexp (fp32);
            # flash dropout regenerates its mask from the RNG state
            n += t_q * arch.q_dim * a_b + b * arch.num_heads * q_len * 4
        else:
            sc = b * arch.num_heads * q_len * k_len
            n += sc * (4 if self.amp else a_b)  # the softmax output (fp32 under amp)
            if self.amp:
                n += sc * a_b  # 16-bit copy of the probabilities saved by the AV matmul
            if arch.dropout:
                n += sc * (1 + a_b)  # dropout mask + dropped probabilities
            n += t_q * arch.q_dim * a_b  # out-projection input (a copy of the transposed AV output)
        return n + t_q * arch.hidden_size * self.mask  # residual dropout mask

    def mlp_bytes(self, tokens: int, with_norm: bool) -> float:
        """The MLP's (or the experts') saved tensors, and its norm's."""
        arch, a_b = self.arch, self.a_b
        if arch.num_experts:  # the norm's output is the router's input: in the MoE block's tally
            n = self.norm_bytes(tokens, 1) - tokens * arch.hidden_size * a_b if with_norm else 0.0
            return n + moe_saved_bytes(moe_shape(arch, tokens, a_b, self.amp, a_b, True, False)) + \
                tokens * arch.hidden_size * self.mask
        n = self.norm_bytes(tokens, self.saving(("gate", "up") if arch.gated_mlp else ("up",))) if with_norm else 0.0
        down_in = self.saving(("down",))  # the down projection's input: kept by nothing else
        routed = tokens
        unfused = activation_kernels(arch.activation, self.amp, a_b)
        if arch.gated_mlp:
            n += routed * arch.intermediate_size * (3 + down_in) * a_b  # gate out (act input), act out, up out, product
        elif unfused is not None:
            n += routed * arch.intermediate_size * (a_b * down_in + unfused.saved)  # fc2 input + the chain's saved
        else:
            n += routed * arch.intermediate_size * (1 + down_in) * a_b  # fc1 out (act input), act out (fc2 input)
        return n + tokens * arch.hidden_size * self.mask

    def layer_bytes(self, tokens: int, s: int, lora_rank: int, lora_targets: tuple[str, ...]) -> float:
        """One block (parallel or sequential), its LoRA adapters' rank-r activations included."""
        if self.arch.parallel_block:
            layer = self.norm_bytes(tokens, 4) + self.attn_bytes(s, s, False) + self.mlp_bytes(tokens, False)
        else:
            layer = self.attn_bytes(s, s, True) + self.mlp_bytes(tokens, True)
        return layer + (float(tokens * lora_rank * self.a_b * len(lora_targets)) if lora_rank else 0.0)


def activation_bytes_breakdown(arch: TransformerArch, b: int, s: int, *, precision: str, attention: str,
                               gradient_checkpointing: bool = False, lora_rank: int = 0,
                               lora_targets: tuple[str, ...] = ()) -> tuple[float, float]:
    """(bytes autograd saves in the forward, largest per-block temporary) for one micro-batch.

    Under checkpointing the temporary includes what a recomputed block saves beyond the head's saved tensors.

    Per block, tensor by tensor (elements of s*b*h unless said):
    norm inputs (residual dtype), norm outputs saved by the next matmul, q, k, v, attention
    output, MLP input/activation tensors, dropout masks (1 byte) when the family uses dropout,
    and either the s x s softmax output (eager) or the logsumexp stats (flash/SDPA).
    """
    flash = attention in ("sdpa", "flash")
    a_b = compute_bytes(precision)
    amp = precision.startswith("amp-")
    t = _Tally(arch, b, flash, a_b, amp, tuple(lora_targets) if lora_rank else None)
    tokens = b * s
    sbh = tokens * arch.hidden_size
    layer = t.layer_bytes(tokens, s, lora_rank, lora_targets)
    # the loss's log_softmax output (and nll_loss's fp32 cast of it) kept until the loss's backward
    head_saved = (tokens * arch.vocab_size * cross_entropy(arch.kind == "decoder", amp, a_b).saved
                  if arch.has_lm_head else 0.0)
    total: float
    recomputed = 0.0
    if gradient_checkpointing:
        # what the forward saves: each block's input and the head's saved tensors (as the traced module counts
        # them); a block recomputed in backward saves its tensors again after the head's are freed, so what it
        # holds beyond them is a temporary of the backward, beside that block's own
        total = arch.num_layers * sbh * t.res_b + head_saved
        recomputed = max(0.0, layer - head_saved)
    else:
        total = arch.num_layers * layer + head_saved
    total += sbh * t.mask  # the embeddings' dropout mask
    if arch.mlm_head:
        # transform: dense input, GELU input, LayerNorm input (fp32 under amp), decoder input
        total += sbh * (3 * a_b + t.res_b)
    elif arch.kind != "encoder":
        total += t.norm_bytes(tokens, 1)  # final norm (its output is the lm head input)
    return float(total), largest_temp(arch, b, s, a_b, 4 if amp else a_b, flash) + recomputed
