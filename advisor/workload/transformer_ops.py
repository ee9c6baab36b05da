"""The analytic transformer builder's op list: forward groups, their backward counterparts, backward-only groups.

``advisor.workload.transformer`` adds one group per kind of layer op (per repetition, ``count`` layers); a forward
group with backward FLOPs gets its ``.grad`` counterpart, with the GEMM shapes of its input and weight gradients.
"""

from __future__ import annotations

from advisor.workload.base import OpCost


class OpList:
    """Accumulates OpCost groups: forward ops and their backward counterparts."""

    def __init__(self) -> None:
        self.fwd: list[OpCost] = []
        self.bwd: list[OpCost] = []

    def add(self, name: str, kind: str, flops: float, nbytes: float, count: int, *, tc: bool = False,
            min_dim: int | None = None, bwd_flops: float | None = None, bwd_bytes: float | None = None,
            train: bool = True, phase: str = "forward", launches: int = 1,
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
        self.fwd.append(OpCost(name, kind, phase, float(flops) * count, float(nbytes) * count,  # type: ignore[arg-type]
                               count * launches, tc, min_dim, gemms=fwd_gemms, strided_elements=float(strided) * count,
                               tile_flops=tiles[0] * count, block_flops=tiles[1] * count))
        if train and bwd_flops is not None:
            bb = bwd_bytes if bwd_bytes is not None else 2 * nbytes
            per_flop = bwd_flops / flops if flops else 0.0  # the backward's tile work scales as its FLOPs
            self.bwd.append(OpCost(name + ".grad", kind, "backward", float(bwd_flops) * count,  # type: ignore[arg-type]
                                   float(bb) * count, count * (launches * 2 if bwd_launches is None else bwd_launches),
                                   tc, min_dim, gemms=bwd_gemms,
                                   tile_flops=tiles[0] * per_flop * count, block_flops=tiles[1] * per_flop * count))

    def add_index_bound(self, name: str, kind: str, phase: str, nbytes: float, count: int, strided: float,
                        launches: int = 1, runtime: str | None = None) -> None:
        """A group of index-bound kernels in ``phase`` alone: ``strided`` elements per repetition (see ``OpCost``).

        ``runtime``: the one runtime that runs it (``eager``: graph runtimes fuse it away), or every runtime.
        """
        target = self.bwd if phase == "backward" else self.fwd
        target.append(OpCost(name, kind, phase, 0.0, float(nbytes) * count,  # type: ignore[arg-type]
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

    def add_logits_shift(self, elements: float, logits_b: int, upcast: bool) -> None:
        """Hugging Face 4.46's causal-LM loss before the cross-entropy, over ``elements`` logits.

        It shifts the logits by one position (``logits[..., :-1, :].contiguous()``: a copy of a slice, index-bound),
        after upcasting 16-bit logits to fp32 where ``upcast`` (ForCausalLMLoss: an unrolled cast, index-bound);
        their gradients are a fill plus a copy into the slice, and a vectorized cast back.
        """
        if upcast:
            self.add_index_bound("loss.upcast", "elementwise", "forward", elements * 6, 1, elements)
            self.add_index_bound("loss.upcast.grad", "elementwise", "backward", elements * 6, 1, 0.0)
        shifted_b = 4 if upcast else logits_b
        self.add_index_bound("loss.shift", "elementwise", "forward", elements * 2 * shifted_b, 1, elements)
        self.add_index_bound("loss.shift.grad", "elementwise", "backward", elements * 3 * shifted_b, 1, 0.0,
                             launches=2)
