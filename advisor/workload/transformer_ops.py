"""The analytic transformer builder's op list: forward groups, their backward counterparts, backward-only groups.

``advisor.workload.transformer`` adds one group per kind of layer op (per repetition, ``count`` layers); a forward
group with backward FLOPs gets its ``.grad`` counterpart, with the GEMM shapes of its input and weight gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.workload.base import OpCost, OpKind, Phase


@dataclass(frozen=True, slots=True)
class ActivationKernels:
    """An unfused activation per element of its input: kernels, bytes moved, index-bound elements, bytes saved.

    ``saved`` is what autograd keeps beyond the down projection's own input.  Bytes are per element at fp32 /
    plain 16-bit in units of the compute dtype's bytes (``plain``) or in bytes under autocast (``amp``).
    """

    fwd_launches: int
    fwd_bytes: float
    fwd_strided: float
    bwd_launches: int
    bwd_bytes: float
    bwd_strided: float
    saved: float


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
UNFUSED_ACTIVATIONS: dict[str, dict[str, ActivationKernels]] = {
    "gelu_new": {"plain": ActivationKernels(8, 18, 0, 11, 28, 0, 4),
                 "amp": ActivationKernels(10, 76, 3, 15, 118, 2, 14)},
}


def activation_kernels(activation: str, amp: bool, a_b: int) -> ActivationKernels | None:
    """``activation``'s kernels in bytes at this precision, or ``None`` for a fused activation."""
    table = UNFUSED_ACTIVATIONS.get(activation)
    if table is None:
        return None
    if amp:
        return table["amp"]
    k = table["plain"]
    return ActivationKernels(k.fwd_launches, k.fwd_bytes * a_b, k.fwd_strided, k.bwd_launches, k.bwd_bytes * a_b,
                             k.bwd_strided, k.saved * a_b)


class OpList:
    """Accumulates OpCost groups: forward ops and their backward counterparts."""

    def __init__(self) -> None:
        self.fwd: list[OpCost] = []
        self.bwd: list[OpCost] = []

    def add(self, name: str, kind: OpKind, flops: float, nbytes: float, count: int, *, tc: bool = False,
            min_dim: int | None = None, bwd_flops: float | None = None, bwd_bytes: float | None = None,
            train: bool = True, phase: Phase = "forward", launches: int = 1,
            gemm: tuple[int, int, int] | None = None, strided: float = 0.0,
            tiles: tuple[float, float] = (0.0, 0.0), bwd_launches: int | None = None) -> None:
        """Add a group: ``flops``/``bytes`` are per repetition; ``count`` repetitions (layers).

        ``gemm``: (M, N, K) of the forward GEMM Y[M,N] = X[M,K] W[K,N]; its backward runs dX = dY W^T
        (M, K, N) and, when the weight trains (backward FLOPs twice the forward), dW = X^T dY (K, N, M).
        ``strided``: elements per repetition the forward runs on an index-bound path (see ``OpCost``).
        ``tiles``: a fused attention's forward tile and block FLOPs per repetition (``OpCost.tile_flops``,
        ``block_flops``); its backward's are as much larger as its FLOPs.  ``bwd_launches``: the backward's calls per
        repetition (default twice the forward's launches).
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
                               tile_flops=tiles[0] * count, block_flops=tiles[1] * count))
        if train and bwd_flops is not None:
            bb = bwd_bytes if bwd_bytes is not None else 2 * nbytes
            per_flop = bwd_flops / flops if flops else 0.0  # the backward's tile work scales as its FLOPs
            self.bwd.append(OpCost(name + ".grad", kind, "backward", float(bwd_flops) * count,
                                   float(bb) * count, count * (launches * 2 if bwd_launches is None else bwd_launches),
                                   tc, min_dim, gemms=bwd_gemms,
                                   tile_flops=tiles[0] * per_flop * count, block_flops=tiles[1] * per_flop * count))

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

    def add_activation(self, label: str, elements: float, count: int, kernels: ActivationKernels,
                       train: bool) -> None:
        """An unfused activation (``UNFUSED_ACTIVATIONS``) over ``elements`` per repetition."""
        self.add(label, "elementwise", 0, elements * kernels.fwd_bytes, count, train=False,
                 launches=kernels.fwd_launches, strided=elements * kernels.fwd_strided)
        if train:
            self.add_index_bound(label + ".grad", "elementwise", "backward", elements * kernels.bwd_bytes, count,
                                 elements * kernels.bwd_strided, launches=kernels.bwd_launches)

    def add_loss(self, elements: float, upcast: bool, loss_b: int) -> None:
        """The cross-entropy over ``elements`` logits, as transformers 5's losses run it.

        ``upcast``: 16-bit logits cast to fp32 first (ForCausalLMLoss's ``logits.float()``, or autocast's fp32
        policy for log_softmax: an unrolled cast, index-bound; its gradient a vectorized cast back).  The labels are
        shifted (padded), not the logits: no copy of them.  Then log_softmax (read + write) and nll_loss (read)
        forward; nll_loss's backward (a zero-filled gradient, written and scattered into) and log_softmax's (the
        gradient and the saved output read, one written), all in ``loss_b`` bytes.
        """
        if upcast:
            self.add_index_bound("loss.upcast", "elementwise", "forward", elements * 6, 1, elements)
            self.add_index_bound("loss.upcast.grad", "elementwise", "backward", elements * 6, 1, 0.0)
        self.add("loss.cross_entropy", "reduction", 0, elements * 3 * loss_b, 1, bwd_flops=0,
                 bwd_bytes=elements * 5 * loss_b, launches=2, bwd_launches=2)
