"""Mixtral's step written tensor by tensor on the step tape, as transformers 5 runs it (``step_timeline``'s programme).

``MixtralDecoderLayer`` is Mistral's (``step_timeline``'s Llama-style programme: RMSNorm, rotary q and k, SDPA)
with the dense MLP replaced by ``MixtralSparseMoeBlock`` (transformers 5.25), whose kernels ``advisor.workload.moe``
prices:

- ``MixtralTopKRouter``: a linear to one logit per expert (autocast's 16-bit operands under amp), the logits cast to
  fp32, ``softmax`` (its output saved), ``topk`` (its indices saved), the top-k weights divided by their sum;
- ``integrations.moe.grouped_mm_experts_forward``: the (token, expert) pairs sorted by expert, ``perm // top_k``,
  the tokens gathered in that order (``hidden_states[perm // top_k]``: S = top_k x tokens rows, in the block input's
  dtype: fp32 under amp, since ``grouped_mm`` is not autocast and the master weights are fp32) and the routing
  weights (``sample_weights[perm]``), ``histc`` / ``cumsum`` for the offsets; ``grouped_mm`` to ``gate_up`` (S x 2i,
  its input and the 3-D weight saved), ``act(gate) * up`` on ``chunk``'s two views of it, ``grouped_mm`` to ``down``;
  the product with the fp32 routing weights (promoted to fp32, both operands saved), put back in token order
  (``weighted_out[inv_perm]``), summed over the top-k (fp32) and cast to the block input's dtype.

Backward is the tape's: each node's input gradients (the gathers' ``new_zeros`` + ``index_put``, the sum's expanded
gradient copied, ``chunk``'s ``cat``), the 3-D weights' gradients kept.  Against the traced ``MixtralForCausalLM``
(benchmarks/conformance.py's panel row; tests/test_step_timeline_moe.py) the replayed allocated and reserved peaks
agree within 0.1% in training (amp-bf16, fp32) and a bf16 forward.  Pure Python, no torch.
"""

from __future__ import annotations

from advisor.workload.step_tape import Program, Tensor


class SparseMoe(Program):
    """The sparse MoE block as a programme's MLP (``step_timeline``'s Mixtral: this before its Llama-style base)."""

    def mlp_weights(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        """The router (experts x h) and the experts' two 3-D parameters (``gate_up_proj``, ``down_proj``)."""
        arch, tape, p_b = self.arch, self.tape, self.spec.p_b
        h, i, e = arch.hidden_size, arch.intermediate_size, arch.num_experts
        return {"router": (tape.param(e * h * p_b, True), None),
                "gate_up": (tape.param(e * 2 * i * h * p_b, True), None),
                "down": (tape.param(e * h * i * p_b, True), None)}

    def route(self, h: Tensor, h_b: int, router: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``MixtralTopKRouter``: (its logits, the renormalized top-k weights (fp32), their expert indices (int64))."""
        tape, sp, arch = self.tape, self.spec, self.arch
        t, e, k = sp.tokens, arch.num_experts, arch.experts_per_token
        logits = self.linear(h, h_b, (router, None), arch.hidden_size, e)
        l32 = tape.one(t * e * 4, [logits]) if sp.a_b != 4 else logits
        probs = tape.one(t * e * 4, [l32], save_out=True)
        if l32 is not logits:
            tape.drop(l32)
        top, idx = tape.op((t * k * 4, t * k * 8), [probs], save_out=(1,))
        total = tape.one(t * 4, [top])
        # ``top /= total``: in place, its original saved (a clone) beside the divisor
        weights = tape.one(t * k * 4, [top, total], saved=[top, total])
        tape.drop(top, total, probs)
        return logits, weights, idx

    def mlp(self, h: Tensor, h_b: int, ws: dict[str, tuple[Tensor, Tensor | None]]) -> Tensor:
        """``MixtralSparseMoeBlock`` over the tokens (see the module).

        ``grouped_mm_experts_forward``'s locals (the gathered tokens, the sorted ids, the offsets, the experts'
        output, the permutations, the weighted output) live until it returns, the router's outputs until the block's
        forward does: without autograd (a forward) nothing else holds them.
        """
        arch, tape, sp = self.arch, self.tape, self.spec
        t, hd, i, k = sp.tokens, arch.hidden_size, arch.intermediate_size, arch.experts_per_token
        s = t * k
        routed = self.route(h, h_b, ws["router"][0])
        weights = routed[1]
        ids, perm = tape.op((s * 8, s * 8))  # sort: the expert ids in order, the permutation
        rows = tape.one(s * 8)  # perm // top_k
        # a gather's backward: zeros of its input's size, the gradient put (``index_put``, out of place) into them
        picked = tape.one(s * hd * h_b, [h], saved=[rows], temps=(t * hd * h_b,))
        tape.drop(rows)
        w_g = tape.one(s * 4, [weights], saved=[perm], temps=(t * k * 4,))
        counts = [tape.one(n) for n in (s * 4, arch.num_experts * 4, arch.num_experts * 4)]  # int ids, histc, cumsum
        # grouped_mm's backward makes the weight's gradient, then the input's
        gate_up = tape.one(s * 2 * i * h_b, [ws["gate_up"][0], picked], saved=[picked, ws["gate_up"][0]])
        gate, up = tape.views(gate_up, (s * i * h_b, s * i * h_b))
        act = tape.one(s * i * h_b, [gate], saved=[gate_up])
        prod = tape.one(s * i * h_b, [act, up], saved=[act, gate_up])
        tape.drop(act, gate_up)
        out = tape.one(s * hd * h_b, [ws["down"][0], prod], saved=[prod, ws["down"][0]])
        tape.drop(prod)
        # the product with the fp32 weights, promoted; backward: both operands' gradients through fp32 products
        weighted = tape.one(s * hd * 4, [out, w_g], saved=[out, w_g],
                            temps=(s * hd * 4,) * (1 if h_b == 4 else 2))
        inv, ar = tape.one(s * 8), tape.one(s * 8)  # empty_like(perm), arange: inv_perm[perm] = arange
        tape.drop(ar)
        back = tape.one(s * hd * 4, [weighted], saved=[inv], temps=(s * hd * 4,))
        tape.drop(weighted)
        summed = tape.one(t * hd * 4, [back])
        result = summed if h_b == 4 else tape.one(t * hd * h_b, [summed])
        tape.drop(picked, w_g, ids, perm, *counts, out, inv, back, *((summed,) if result is not summed else ()))
        tape.drop(*routed)
        return result
