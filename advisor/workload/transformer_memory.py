"""Activation memory of the analytic transformers, tensor by tensor.

Bytes saved for backward, the largest per-block temporary and the KV cache's peak while generating.
"""

from __future__ import annotations

from advisor.workload.arch import TransformerArch
from advisor.workload.costs import compute_bytes
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


def largest_temp(arch: TransformerArch, b: int, s: int, a_b: int, softmax_b: int, flash: bool) -> float:
    """The largest per-block temporary: the MLP's intermediate (gated: two) or the eager s x s scores."""
    mlp = b * s * arch.intermediate_size * a_b * (2 if arch.gated_mlp else 1)
    scores = 0 if flash else b * arch.num_heads * s * s * (a_b + softmax_b)
    return float(max(mlp, scores))


def activation_bytes_breakdown(arch: TransformerArch, b: int, s: int, *, precision: str, attention: str,
                               gradient_checkpointing: bool = False, lora_rank: int = 0,
                               lora_targets: tuple[str, ...] = ()) -> tuple[float, float]:
    """(bytes saved for backward at the peak, largest per-block temporary) for one micro-batch.

    Per block, tensor by tensor (elements of s*b*h unless said):
    norm inputs (residual dtype), norm outputs saved by the next matmul, q, k, v, attention
    output, MLP input/activation tensors, dropout masks (1 byte) when the family uses dropout,
    and either the s x s softmax output (eager) or the logsumexp stats (flash/SDPA).
    """
    flash = attention in ("sdpa", "flash")
    a_b = compute_bytes(precision)
    amp = precision.startswith("amp-")
    res_b = 4 if amp else a_b
    softmax_b = 4 if amp else a_b
    h, heads = arch.hidden_size, arch.num_heads
    inter = arch.intermediate_size
    sbh = s * b * h
    mask = 1 if arch.dropout else 0

    rms = rms_norm_kernels(arch.family, arch.norm_bias, amp, a_b)  # RMSNorm / T5 norm as HF writes it (unfused)

    def norm_bytes(tokens: int, consumers: int) -> float:
        """A norm's saved tensors.

        A LayerNorm's input, or what an unfused RMSNorm's chain keeps (``RMS_NORMS``: its fp32 input and the weight
        mul's other operand), and its output as saved by the matmuls reading it (under amp each linear saves its own
        16-bit cast of it).
        """
        n = tokens * h * (rms.saved if rms is not None else res_b)
        return n + tokens * h * a_b * (consumers if amp else 1)

    def attn_bytes(q_len: int, k_len: int, with_norm: bool) -> float:
        t_q, t_k = b * q_len, b * k_len
        n = 0.0
        if with_norm:
            n += norm_bytes(t_q, 1 if arch.fused_qkv else 3)
        n += (t_q * arch.q_dim + 2 * t_k * arch.kv_dim) * a_b  # q, k, v
        if flash:
            # kernel output (laid out so the out-projection reads it as a view) + logsumexp (fp32);
            # flash dropout regenerates its mask from the RNG state
            n += t_q * arch.q_dim * a_b + b * heads * q_len * 4
        else:
            sc = b * heads * q_len * k_len
            n += sc * softmax_b
            if amp:
                n += sc * a_b  # 16-bit copy of the probabilities saved by the AV matmul
            if arch.dropout:
                n += sc * (1 + a_b)  # dropout mask + dropped probabilities
            n += t_q * arch.q_dim * a_b  # out-projection input (a copy of the transposed AV output)
        n += t_q * h * mask  # residual dropout mask
        return n

    def mlp_bytes(tokens: int, with_norm: bool) -> float:
        n = 0.0
        if with_norm:
            n += norm_bytes(tokens, 2 if arch.gated_mlp else 1)
        routed = tokens * (arch.experts_per_token or 1)
        unfused = activation_kernels(arch.activation, amp, a_b)
        if arch.gated_mlp:
            n += routed * inter * 4 * a_b  # gate out (act input), act out, up out, product (down input)
        elif unfused is not None:
            n += routed * inter * (a_b + unfused.saved)  # fc2 input + the unfused chain's saved tensors
        else:
            n += routed * inter * 2 * a_b  # fc1 out (act input), act out (fc2 input)
        if arch.num_experts:
            n += tokens * arch.num_experts * 4 + routed * h * a_b  # router logits, gathered expert inputs
        n += tokens * h * mask
        return n

    def lora_bytes(tokens: int) -> float:
        return float(tokens * lora_rank * a_b * len(lora_targets)) if lora_rank else 0.0

    tokens = b * s
    if arch.parallel_block:
        layer = norm_bytes(tokens, 4) + attn_bytes(s, s, False) + mlp_bytes(tokens, False)
    else:
        layer = attn_bytes(s, s, True) + mlp_bytes(tokens, True)
    layer += lora_bytes(tokens)
    n_layers = arch.num_layers
    # the loss's log_softmax output (and nll_loss's fp32 cast of it) kept until the loss's backward
    head_saved = (tokens * arch.vocab_size * cross_entropy(arch.kind == "decoder", amp, a_b).saved
                  if arch.has_lm_head else 0.0)
    total: float
    if arch.family == "t5":
        dec_layer = layer + attn_bytes(s, s, True)
        if gradient_checkpointing:
            total = (arch.num_layers + arch.num_decoder_layers) * sbh * res_b + max(dec_layer, head_saved)
        else:
            total = arch.num_layers * layer + arch.num_decoder_layers * dec_layer + head_saved
    elif gradient_checkpointing:
        # each block's input, plus whichever is larger: the head's saved tensors (through the loss's
        # backward) or one block's full activations while it is recomputed (after the head's are freed)
        total = n_layers * sbh * res_b + max(layer, head_saved)
    else:
        total = n_layers * layer + head_saved
    total += tokens * h * mask  # the embeddings' dropout mask
    if arch.mlm_head:
        # transform: dense input, GELU input, LayerNorm input (fp32 under amp), decoder input
        total += tokens * h * (3 * a_b + res_b)
    elif arch.kind != "encoder":
        total += norm_bytes(tokens, 1)  # final norm (its output is the lm head input)
    largest = largest_temp(arch, b, s, a_b, softmax_b, flash)
    return float(total), largest
