"""Eager PyTorch's storage lifetimes, written out: a step's allocations and frees in order (``Tape``).

``advisor.workload.step_timeline`` writes a closed-form transformer's step on a ``Tape`` op by op, as the Hugging Face
module runs it; the tape derives the frees the way eager PyTorch and autograd make them:

- a tensor is freed when its last Python reference is dropped (``Tape.drop``) and no autograd node has saved it;
- a node's saved tensors are released when the node runs in backward (``retain_graph=False``);
- backward visits the nodes in reverse order of creation; a node allocates the gradient of each input that needs one
  (added in place into a gradient already there: the new one is freed), then frees its outputs' gradients;
- a trainable parameter's first gradient is kept (``AccumulateGrad`` steals it) until the next step's ``zero_grad``;
- a checkpointed region (``Tape.checkpoint``: ``torch.utils.checkpoint``, non-reentrant, as transformers' gradient
  checkpointing runs it) holds its inputs, its nodes save nothing; backward's first node of the region that needs a
  saved tensor runs the region again, stopping once every saved tensor is back (torch's early stop).

``Tape.allocations`` is the tracer's form of a step (``params``, ``inputs``, ``step``, ``grads``), which
``advisor.estimator.allocator.replay`` replays.  Pure Python, no torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.workload.arch import TransformerArch
from advisor.workload.transformer_ops import cross_entropy


@dataclass(eq=False, slots=True)
class Tensor:
    """One storage of the step (``index``: its allocation; ``None``: a parameter or an input, held throughout)."""

    nbytes: int
    index: int | None = None
    refs: int = 1
    grad: int | None = None
    requires_grad: bool = False
    trainable: bool = False


@dataclass(eq=False, slots=True)
class _Node:
    """An autograd node: its differentiable inputs, outputs and saved tensors, and its backward's temporaries."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    saved: tuple[Tensor, ...]
    temps: tuple[int, ...]
    frame: _Frame | None = None  # the checkpointed region whose recompute gives back its saved tensors
    packed: int = 0  # how many tensors it saved there (``saved`` is empty until the recompute)


@dataclass(eq=False, slots=True)
class _Frame:
    """A checkpointed region (torch's ``_CheckpointFrame``): the function, the inputs it holds, what it saved."""

    fn: Callable[..., Any]
    args: tuple[Tensor, ...]
    scope: Callable[[], contextlib.AbstractContextManager[Any]] | None
    slots: list[_Node] = field(default_factory=list)  # per tensor packed in the forward, in order: its node
    live: int = 0  # its nodes with packed tensors that backward has not run yet (they hold the frame)
    recomputed: bool = False


@dataclass
class Tape:
    """Records the step's storages as eager PyTorch allocates and frees them (``train``: autograd saves)."""

    train: bool
    events: list[int] = field(default_factory=list)
    count: int = 0
    nodes: list[_Node] = field(default_factory=list)
    grads: list[int] = field(default_factory=list)
    params: list[tuple[int, bool]] = field(default_factory=list)
    _frame: _Frame | None = None  # the checkpointed region whose forward is being written
    _recompute: _Frame | None = None  # the region being recomputed in backward
    _packed: int = 0  # tensors the recompute has packed so far
    _stopped: bool = False  # the recompute stopped early: the rest of the region runs no kernel

    def param(self, nbytes: float, trainable: bool) -> Tensor:
        """A parameter (allocated before the step; a recompute reads the same ones)."""
        if self._recompute is None:
            self.params.append((int(nbytes), trainable))
        return Tensor(int(nbytes), None, 1, None, trainable and self.train, trainable and self.train)

    def _alloc(self, nbytes: float) -> int:
        self.events.append(int(nbytes))
        self.count += 1
        return self.count - 1

    def _free(self, index: int) -> None:
        self.events.append(-index - 1)

    def op(self, outs: Sequence[float], ins: Sequence[Tensor] = (), saved: Sequence[Tensor] = (),
           save_out: bool | Sequence[int] = False, temps: Sequence[float] = (), grad: bool = True) -> list[Tensor]:
        """One op: its outputs allocated (each held by the caller); under autograd a node saving ``saved``.

        ``ins``: the inputs gradients flow to (those that require one); ``save_out``: the node saves its outputs too
        (all, or those at these indexes); ``temps``: what its backward allocates beside the input gradients;
        ``grad``: its outputs are differentiable.
        """
        if self._stopped:  # past the recompute's early stop: no kernel runs
            return [Tensor(int(n)) for n in outs]
        diff = tuple(t for t in ins if t.requires_grad)
        node = self.train and grad and bool(diff)
        # an op's inputs are saved before its kernel runs, its outputs after
        if node and self._recompute is not None and self._pack(saved):
            return [Tensor(int(n)) for n in outs]
        out = [Tensor(int(n), self._alloc(n)) for n in outs]
        if not node:
            return out
        for t in out:
            t.requires_grad = True
        kept_out = out if save_out is True else [out[i] for i in save_out] if save_out else []
        keep = (*saved, *kept_out)
        if self._recompute is not None:
            self._pack(kept_out)
        elif self._frame is not None:  # saved as placeholders: nothing held until the recompute
            n = _Node(diff, tuple(out), (), tuple(int(x) for x in temps), self._frame, len(keep))
            self._frame.slots += [n] * len(keep)
            self._frame.live += bool(keep)
            self.nodes.append(n)
        else:
            for t in keep:
                t.refs += 1
            self.nodes.append(_Node(diff, tuple(out), keep, tuple(int(x) for x in temps)))
        return out

    def _pack(self, tensors: Sequence[Tensor]) -> bool:
        """The recompute saves ``tensors`` into its forward's nodes, in order; ``True``: every one is back (stop)."""
        frame = self._recompute
        assert frame is not None
        for t in tensors:
            node = frame.slots[self._packed]
            self._packed += 1
            t.refs += 1
            node.saved = (*node.saved, t)
            if self._packed == len(frame.slots):
                self._stopped = True
                return True
        return False

    def checkpoint(self, fn: Callable[..., Any], *args: Tensor,
                   scope: Callable[[], contextlib.AbstractContextManager[Any]] | None = None) -> Any:
        """``torch.utils.checkpoint(fn, *args, use_reentrant=False)``: ``fn(*args)``, its saved tensors not held.

        The region holds ``args`` (``fn`` borrows them: the caller drops its own references) until backward has run
        every node of it that saved a tensor.  ``scope``: entered around the recompute (autocast re-entered, with its
        own weight cache).  Outside training (no autograd) ``fn`` just runs.
        """
        if not self.train or self._frame is not None or self._recompute is not None:
            return fn(*args)
        frame = _Frame(fn, args, scope)
        for t in args:
            t.refs += 1
        self._frame = frame
        try:
            out = fn(*args)
        finally:
            self._frame = None
        if not frame.live:  # nothing saved: no node holds the region
            self.drop(*args)
        return out

    def _recompute_frame(self, frame: _Frame) -> None:
        """The region's forward run again, each tensor it saves handed to its node, until the last is back."""
        frame.recomputed = True
        self._recompute, self._packed, self._stopped = frame, 0, False
        for t in frame.args:  # the recompute's own references to the inputs
            t.refs += 1
        with frame.scope() if frame.scope else contextlib.nullcontext():
            out = frame.fn(*frame.args)
            self.drop(*((out,) if isinstance(out, Tensor) else out))
        self.drop(*frame.args)
        self._recompute, self._stopped = None, False

    def views(self, base: Tensor, parts: Sequence[int]) -> list[Tensor]:
        """Views of ``base`` with no storage of their own (``base.chunk``): whoever saves one saves ``base``.

        Under autograd their node (``SplitBackward``) makes ``base``'s gradient (the ``cat`` of the views' gradients)
        and frees theirs; a recompute makes no node (the forward's is the one backward runs).
        """
        views = [Tensor(int(n), None, 1, None, base.requires_grad) for n in parts]
        if self.train and base.requires_grad and self._recompute is None:
            self.nodes.append(_Node((base,), tuple(views), (), ()))
        return views

    def one(self, nbytes: float, ins: Sequence[Tensor] = (), saved: Sequence[Tensor] = (), save_out: bool = False,
            temps: Sequence[float] = ()) -> Tensor:
        """``op`` with one output."""
        return self.op((nbytes,), ins, saved, save_out, temps)[0]

    def drop(self, *tensors: Tensor) -> None:
        """The caller's references dropped: a tensor nothing else holds is freed."""
        for t in tensors:
            self._release(t)

    def _release(self, t: Tensor) -> None:
        t.refs -= 1
        if t.refs == 0 and t.index is not None:
            self._free(t.index)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``: the nodes in reverse order, gradients made, accumulated and freed."""
        loss.grad = self._alloc(loss.nbytes)
        for node in reversed(self.nodes):
            if all(t.grad is None for t in node.outputs):
                continue
            if node.frame is not None and node.packed and not node.frame.recomputed:
                self._recompute_frame(node.frame)
            temps = [self._alloc(n) for n in node.temps]
            for t in node.inputs:
                g = self._alloc(t.nbytes)
                if t.grad is None:
                    t.grad = g
                    if t.trainable:
                        self.grads.append(g)
                else:  # accumulated in place into the gradient already there
                    self._free(g)
            for g in temps:
                self._free(g)
            for t in node.outputs:
                if t.grad is not None:
                    self._free(t.grad)
                    t.grad = None
            for t in node.saved:
                self._release(t)
            if node.frame is not None and node.packed:
                node.frame.live -= 1
                if not node.frame.live:  # its last saved tensor released: the region and its inputs go
                    self.drop(*node.frame.args)
        self.nodes.clear()

    def allocations(self, inputs: Sequence[float]) -> dict[str, Any]:
        """The step in ``advisor.estimator.allocator.replay``'s form."""
        return {"params": [[n, int(t)] for n, t in self.params], "inputs": [int(n) for n in inputs],
                "step": list(self.events), "grads": sorted(self.grads)}


@dataclass(frozen=True, slots=True)
class StepSpec:
    """What one step's programme needs: the sizes, the dtypes' bytes and what trains."""

    arch: TransformerArch
    b: int
    s: int
    train: bool
    amp: bool
    a_b: int  # compute dtype (16-bit copies under amp)
    p_b: int  # parameters' dtype (fp32 masters under amp)
    use_cache: bool  # a causal LM's forward fills transformers' DynamicCache
    checkpointing: bool = False  # each layer checkpointed (transformers' gradient_checkpointing_enable())
    #: the positions the LM head computes logits for (transformers' ``logits_to_keep``; 0: every position)
    logits_to_keep: int = 0
    #: tokens generated after the forward (``advisor.workload.step_generate``; 0: the forward alone)
    gen_len: int = 0

    @property
    def res_b(self) -> int:
        """The residual stream's bytes per element (fp32 under amp)."""
        return 4 if self.amp else self.a_b

    @property
    def tokens(self) -> int:
        return self.b * self.s

    @property
    def head_tokens(self) -> int:
        """The positions the LM head runs over: ``logits_to_keep`` per sequence, or every position."""
        return self.b * min(self.logits_to_keep, self.s) if self.logits_to_keep else self.tokens


class Program:
    """What every decoder's programme shares: parameters, linears (autocast's casts under amp), the causal LM loss."""

    def __init__(self, tape: Tape, spec: StepSpec) -> None:
        self.tape, self.spec, self.arch = tape, spec, spec.arch
        self.copies: list[Tensor] = []  # autocast's cached weight casts, held until the forward ends
        self.cache: list[Tensor] = []  # the DynamicCache's keys and values

    def weight(self, n_in: int, n_out: int, bias: bool) -> tuple[Tensor, Tensor | None]:
        p_b = self.spec.p_b
        return (self.tape.param(n_in * n_out * p_b, True),
                self.tape.param(n_out * p_b, True) if bias else None)

    def cast_weight(self, w: Tensor) -> Tensor:
        """Autocast's 16-bit copy of an fp32 weight.

        Cached in training (a weight that requires a gradient) until the autocast region ends, made per use otherwise.
        """
        wc = self.tape.one(w.nbytes // 2, [w])
        if self.spec.train:
            self.copies.append(wc)
            wc.refs += 1
        return wc

    def linear(self, x: Tensor, x_b: int, w: tuple[Tensor, Tensor | None], n_in: int, n_out: int,
               tokens: int | None = None) -> Tensor:
        """``x @ W (+ b)`` over the tokens; under amp the weight, the bias and an fp32 input cast to 16 bits.

        ``tokens``: over that many rows of ``x`` (a view of its last positions), not every token.
        """
        tape, sp = self.tape, self.spec
        rows = sp.tokens if tokens is None else tokens
        weight, bias = w
        if not sp.amp:
            return tape.one(rows * n_out * sp.a_b, [x, weight] + ([bias] if bias else []), saved=[x, weight])
        wc = self.cast_weight(weight)
        bc = [self.cast_weight(bias)] if bias else []
        xc = tape.one(rows * n_in * 2, [x]) if x_b == 4 else x
        y = tape.one(rows * n_out * sp.a_b, [xc, wc, *bc], saved=[xc, wc])
        tape.drop(*(t for t in (xc,) if t is not x), wc, *bc)
        return y

    def layer(self, fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
        """One layer of the stack (``fn`` borrows ``args``).

        Checkpointed under ``StepSpec.checkpointing``, as transformers' ``GradientCheckpointingLayer`` runs it after
        ``gradient_checkpointing_enable()`` (non-reentrant ``torch.utils.checkpoint``).
        """
        if not self.spec.checkpointing:
            return fn(*args)
        out: Tensor = self.tape.checkpoint(fn, *args, scope=self._recompute_scope)
        return out

    def stack(self, block: Callable[..., Tensor], x: Tensor, *args: Tensor) -> Tensor:
        """The model's loop over its layers (each a ``layer``): the loop holds a layer's input until it returns."""
        for _ in range(self.arch.num_layers):
            y = self.layer(block, x, *args)
            self.tape.drop(x)
            x = y
        return x

    @contextlib.contextmanager
    def _recompute_scope(self) -> Iterator[None]:
        """The recompute re-enters autocast: weights cast again into its own cache, cleared when it ends."""
        outer, self.copies = self.copies, []
        try:
            yield
        finally:
            self.end_forward()
            self.copies = outer

    def head(self, h: Tensor, h_b: int, w: tuple[Tensor, Tensor | None], n_in: int, n_out: int) -> Tensor:
        """The LM head: ``lm_head(hidden_states[:, -logits_to_keep:, :])``, as transformers 5's causal LMs run it.

        The slice is a view (the matmul reads it strided); the logits come in the dtype the linear returns; every
        position without ``logits_to_keep``.
        """
        return self.linear(h, h_b, w, n_in, n_out, tokens=self.spec.head_tokens)

    def end_forward(self) -> None:
        """The autocast region ends: its weight cache cleared."""
        self.tape.drop(*self.copies)
        self.copies.clear()

    def kv_update(self, k: Tensor, v: Tensor, k_b: int) -> tuple[Tensor, Tensor]:
        """``DynamicCache.update`` on an empty cache: ``torch.cat`` copies the keys and values, the cache holds them."""
        tape, sp = self.tape, self.spec
        if not sp.use_cache:
            return k, v
        kc = tape.one(sp.tokens * self.arch.kv_dim * k_b, [k])
        vc = tape.one(sp.tokens * self.arch.kv_dim * sp.a_b, [v])
        tape.drop(k, v)
        for t in (kc, vc):
            t.refs += 1
            self.cache.append(t)
        return kc, vc

    def attention(self, q: Tensor, k: Tensor, v: Tensor, *, q_b: int, k_b: int) -> Tensor:
        """SDPA's fused kernel: its output and logsumexp saved; backward's fp32 dq accumulator.

        ``q_b``, ``k_b``: q's and k's bytes per element (fp32 ones are cast to 16 bits under amp).
        """
        tape, sp, arch = self.tape, self.spec, self.arch
        q16 = tape.one(sp.tokens * arch.q_dim * 2, [q]) if sp.amp and q_b == 4 else q
        k16 = tape.one(sp.tokens * arch.kv_dim * 2, [k]) if sp.amp and k_b == 4 else k
        lse = sp.b * arch.num_heads * sp.s * 4
        o, stats = tape.op((sp.tokens * arch.q_dim * sp.a_b, lse), [q16, k16, v], saved=[q16, k16, v],
                           save_out=True, temps=(sp.tokens * arch.q_dim * 4,))
        tape.drop(stats, *(c for c, t in ((q16, q), (k16, k)) if c is not t))
        return o

    def loss(self, logits: Tensor) -> Tensor:
        """The causal LM loss as transformers 5's ``ForCausalLMLoss`` runs it.

        fp32 logits, log_softmax, nll_loss; the logits dropped after.
        """
        tape, sp = self.tape, self.spec
        el = sp.tokens * self.arch.vocab_size
        ce = cross_entropy(True, sp.amp, sp.a_b)
        x = tape.one(el * 4, [logits]) if ce.upcast else logits
        ls = tape.one(el * ce.log_softmax_b, [x], save_out=True)
        nll_in = tape.one(el * ce.nll_b, [ls]) if ce.nll_cast else ls
        loss = tape.one(4, [nll_in], saved=[nll_in])
        tape.drop(*{id(t): t for t in (x, ls, nll_in, logits)}.values())
        return loss
