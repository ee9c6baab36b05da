"""A sparse MoE block (Mixtral's) in closed form, kernel by kernel as transformers 5 runs it on a GPU.

``MixtralSparseMoeBlock`` (transformers 5.25) routes with ``MixtralTopKRouter``: a linear to one logit per expert,
``softmax(logits.float())``, ``topk`` and the top-k weights renormalized (fp32).  Its experts are two 3-D parameters
(``gate_up_proj``: experts x 2i x h; ``down_proj``: experts x h x i) run by ``integrations.moe``'s default
``grouped_mm`` implementation, with no Python loop over experts:

- the (token, expert) pairs sorted by expert (``sort``), the tokens gathered in that order
  (``hidden_states[perm // top_k]``: S = top_k x tokens rows), the tokens per expert counted (``histc``, ``cumsum``);
- ``_grouped_mm(input.to(weight.dtype), weight, offs)`` for ``gate_up`` then ``down``: not autocast, so the
  experts run in the dtype of the block's input and weights, the residual stream's (fp32 under autocast, whose master
  weights are fp32): CUDA runs fp32 operands through ``_grouped_mm_fallback``, one ``mm`` per expert
  (``aten/src/ATen/native/cuda/GroupedBlas.cpp``), 16-bit ones as one grouped kernel;
- ``act(gate) * up`` on the two halves of ``gate_up``'s output (strided views: index-bound), then ``down``;
- the output weighted by the routing weights (fp32: the product is promoted), put back in token order
  (``weighted_out[inv_perm]``), summed over the top-k (``view(tokens, top_k, h).sum(1)``, fp32) and cast to the
  block input's dtype.

Backward: each grouped GEMM's input and weight gradients; the product's and the activation's gradients and the
chunk's ``cat`` back to one (S, 2i) gradient; the routing weights' gradient (a product and a row sum); the two
gathers' gradients (``new_zeros`` + an accumulating ``index_put``); the sum's gradient expanded and copied
(``clone``); the router's.  As the tracer sees the module (benchmarks/conformance.py's Mixtral row, and
``MixtralSparseMoeBlock`` traced alone).  Pure arithmetic, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.workload.arch import TransformerArch
from advisor.workload.qlora import add_dequant
from advisor.workload.transformer_ops import OpList

#: Routing's small kernels over (token, expert) pairs per forward: softmax, topk, the renormalizing sum and div, the
#: sort, ``perm // top_k``, the routing weights' gather, ``histc``, ``cumsum``, the inverse permutation (``arange``,
#: ``index_put_``); in backward the weights' gather's gradient, topk's ``scatter`` and the softmax's gradient.
ROUTING_LAUNCHES = (11, 3)

#: The block's kernels after the last tensor autograd saves (the unpermute's ``inv_perm``, saved as its index is
#: called, before its kernel runs): a checkpointed block's recompute stops early (torch.utils.checkpoint's
#: ``early_stop``) before them, as the traced module's does (benchmarks/conformance.py's checkpointing case).
AFTER_LAST_SAVE = (".moe.unpermute", ".moe.topk_sum", ".moe.cast")


@dataclass(frozen=True, slots=True)
class MoeBlock:
    """One MoE block's shape and dtypes.

    ``x_b``: bytes of the block's input element (the residual stream's: fp32 under autocast), which the experts run
    in; ``router_b``: the router's matmul dtype (autocast casts its input to 16 bits); ``w_b``: the experts' stored
    weight bytes; ``gated``: ``act(gate) * up`` (Mixtral) or ``act(up)``; ``frozen``: no weight gradients (LoRA).
    """

    tokens: int
    hidden: int
    inter: int
    experts: int
    top_k: int
    x_b: int
    router_b: int
    w_b: float
    amp: bool
    gated: bool
    train: bool
    frozen: bool

    @property
    def pairs(self) -> int:
        """S: the (token, expert) pairs, the rows the experts run."""
        return self.tokens * self.top_k


def moe_shape(arch: TransformerArch, tokens: int, a_b: int, amp: bool, w_b: float, train: bool,
              frozen: bool) -> MoeBlock:
    """The MoE block of ``arch`` over ``tokens``.

    Under autocast the experts run in the fp32 stream's dtype on the fp32 master weights (a frozen LoRA base keeps
    its own weight bytes), the router on autocast's 16-bit cast.
    """
    x_b = 4 if amp else a_b
    return MoeBlock(tokens=tokens, hidden=arch.hidden_size, inter=arch.intermediate_size, experts=arch.num_experts,
                    top_k=arch.experts_per_token or 1, x_b=x_b, router_b=a_b, w_b=4.0 if amp and not frozen else w_b,
                    amp=amp, gated=arch.gated_mlp, train=train, frozen=frozen)


def add_moe_block(ops: OpList, m: MoeBlock, prefix: str, count: int, *, lora: tuple[tuple[str, int, int], ...] = (),
                  lora_rank: int = 0, nf4: bool = False) -> None:
    """The block's router, routing, gathers, grouped GEMMs, activation and the weighted sum (see the module).

    ``lora``: (target, in, out) of each expert linear LoRA adapts, per expert (``lora_rank``); ``nf4``: the experts'
    weights dequantized before each GEMM (QLoRA).
    """
    t, h, i, e, x = m.tokens, m.hidden, m.inter, m.experts, m.x_b
    s = m.pairs
    th, sh = t * h, s * h
    p = f"{prefix}.moe"
    # the router: autocast casts its input (and the cast's gradient back is index-bound); backward sums the block
    # input's two gradients (the router's and the gather's)
    if m.amp:
        ops.add(p + ".router.input_cast", "elementwise", 0, th * (4 + m.router_b), count, train=False)
        if m.train:
            ops.add_index_bound(p + ".router.input_cast.grad", "elementwise", "backward", th * (4 + m.router_b),
                                count, th)
    fl = 2.0 * th * e
    ops.add(p + ".router", "matmul", fl, th * m.router_b + h * e * m.w_b + t * e * m.router_b, count, tc=True,
            min_dim=min(t, e), bwd_flops=2 * fl, train=m.train, gemm=(t, e, h))
    # softmax / topk over tokens x experts and the int64 index arrays of the sort (values, indices, perm // top_k, the
    # inverse permutation): a few bytes per pair
    ops.add(p + ".routing", "elementwise", 0, t * e * 4 * 3 + s * 8 * 6, count, bwd_flops=0,
            bwd_bytes=t * e * 4 * 3 + s * 4 * 2, train=m.train, launches=ROUTING_LAUNCHES[0],
            bwd_launches=ROUTING_LAUNCHES[1])
    if m.train:
        ops.add_index_bound(p + ".input_grad_sum", "elementwise", "backward", th * 3 * x, count, 0.0)
    # the tokens gathered by expert; backward: zeros, then the pairs' gradients accumulated into them
    ops.add(p + ".gather", "elementwise", 0, (th + sh) * x, count, bwd_flops=0, bwd_bytes=(3 * th + sh) * x,
            train=m.train, bwd_launches=2)
    ni = (2 if m.gated else 1) * i
    # fp32 operands: one mm per expert (_grouped_mm_fallback); 16-bit: one grouped kernel
    launches = e if x == 4 else 1
    _grouped(ops, m, p + ".experts.gate_up", h, ni, count, launches, lora, lora_rank, nf4)
    if m.gated:  # act on the gate half, times the up half (strided views of one output); backward adds the cat
        _kernel(ops, m, p + ".act", count, (2 * s * i * x, s * i), (3 * s * i * x, s * i))
        _kernel(ops, m, p + ".gate_mul", count, (3 * s * i * x, s * i), (6 * s * i * x, s * i), bwd_launches=2)
        _kernel(ops, m, p + ".gate_up.cat", count, None, (4 * s * i * x, 2 * s * i))
    else:
        _kernel(ops, m, p + ".act", count, (2 * s * i * x, 0), (3 * s * i * x, 0))
    _grouped(ops, m, p + ".experts.down", i, h, count, launches, lora, lora_rank, nf4)
    # weighted by the fp32 routing weights (the product promoted to fp32); backward: the output's gradient times the
    # weights (fp32, cast to the experts' dtype), and the weights' gradient (a product and a row sum)
    cast = 0 if x == 4 else sh * (4 + x)
    _kernel(ops, m, p + ".weight", count, (sh * (x + 4), sh), (sh * 8 + cast + sh * (8 + x) + sh * 4, sh),
            bwd_launches=3 + (x != 4))
    # back in token order; backward: zeros, then the gradient accumulated in
    _kernel(ops, m, p + ".unpermute", count, (2 * sh * 4, 0), (4 * sh * 4, 0), bwd_launches=2)
    # the sum over the top-k (a reduction across rows); backward: its gradient expanded and copied contiguous
    _kernel(ops, m, p + ".topk_sum", count, (sh * 4 + th * 4, sh), (th * 4 + sh * 4, sh), kind="reduction")
    if x != 4:  # .to(hidden_states.dtype)
        _kernel(ops, m, p + ".cast", count, (th * (4 + x), 0), (th * (4 + x), 0))


def _kernel(ops: OpList, m: MoeBlock, label: str, count: int, fwd: tuple[float, float] | None,
            bwd: tuple[float, float], *, kind: str = "elementwise", bwd_launches: int = 1) -> None:
    """Kernels of one step of the block: (bytes, index-bound elements) per repetition forward and in backward."""
    if fwd is not None:
        ops.add_index_bound(label, "reduction" if kind == "reduction" else "elementwise", "forward", fwd[0], count,
                            fwd[1])
    if m.train:
        ops.add_index_bound(label + ".grad", "elementwise", "backward", bwd[0], count, bwd[1],
                            launches=bwd_launches)


def _grouped(ops: OpList, m: MoeBlock, label: str, fin: int, fout: int, count: int, launches: int,
             lora: tuple[tuple[str, int, int], ...], lora_rank: int, nf4: bool) -> None:
    """One grouped GEMM over the S pairs: every expert's weights read once, its rows split between the experts."""
    s, e, x = m.pairs, m.experts, m.x_b
    fl = 2.0 * s * fin * fout
    weights = e * fin * fout
    nb = s * (fin + fout) * x + weights * (2.0 if nf4 else m.w_b)
    if nf4:
        add_dequant(ops, label, weights, count, linears=1, train=m.train)
    ops.add(label, "matmul", fl, nb, count, tc=True, min_dim=min(max(s // e, 1), fin, fout),
            bwd_flops=fl * (1 if m.frozen else 2), bwd_bytes=nb if m.frozen else 2 * nb, train=m.train,
            launches=launches)
    for _, a, b in lora if lora_rank else ():
        r = lora_rank
        ops.add(label + ".lora", "matmul", 2.0 * s * r * (a + b), s * (a + 2 * r + b) * x, count, tc=True,
                min_dim=r, bwd_flops=4.0 * s * r * (a + b), train=m.train, launches=2)


def moe_saved_bytes(m: MoeBlock) -> float:
    """What the block keeps for backward.

    The router's input, each grouped GEMM's input, ``gate_up``'s output (the activation's and the product's operands
    are views of it), the activation's output and the output the routing weights multiply (the router's softmax
    output and the index arrays: a few bytes per pair).
    """
    s, h, i, x = m.pairs, m.hidden, m.inter, m.x_b
    router_in = m.tokens * h * m.router_b
    ni = (2 if m.gated else 1) * i
    return float(router_in + s * h * x + s * ni * x + (s * i * x if m.gated else 0) + s * i * x + s * h * x
                 + m.tokens * m.experts * 4 + s * 8 * 2)
