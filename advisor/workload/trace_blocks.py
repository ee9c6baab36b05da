"""Module structure the tracer works with: the repeated blocks checkpointing wraps, and recurrent layers.

- ``find_blocks`` / ``checkpointed``: gradient checkpointing as ``validate`` runs it (the children of the
  ``ModuleList``/``Sequential`` with the most parameterised children, each wrapped in non-reentrant
  ``torch.utils.checkpoint``); the tracer runs the same wrappers on fake tensors.
- ``RecurrentFiling``: recurrent layers traced on ATen's per-timestep path (oneDNN off), the path
  ``FlopCounterMode`` counts, and filed as one ``recurrent`` op per module call, as a GPU runs them.

torch is imported inside functions only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def find_blocks(module: Any) -> Any:
    """The repeated blocks of a model: the ``ModuleList``/``Sequential`` with the most parameterised children.

    These are what gradient checkpointing wraps (torchvision ViT: ``encoder.layers``; ResNet: its longest
    stage), in the tracer and in ``validate``'s measured runs.  ``None`` if no container has two.
    """
    import torch

    best, best_n = None, 1
    for m in module.modules():
        if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential)):
            n = sum(1 for c in m.children() if any(True for _ in c.parameters()))
            if n > best_n:
                best, best_n = m, n
    return best


@contextlib.contextmanager
def patched_forwards(patches: Iterable[tuple[Any, Callable[..., Any]]]) -> Iterator[int]:
    """Each ``(module, forward)`` of ``patches`` installed as the module's ``forward`` while the context is open.

    Yields how many were installed.  On exit each module gets back its own ``forward`` attribute, or none (its
    class's method again), even when installing or the body failed.
    """
    saved: list[tuple[Any, Any]] = []
    try:
        for module, forward in patches:
            saved.append((module, module.__dict__.get("forward")))
            module.forward = forward
        yield len(saved)
    finally:
        for module, own in saved:
            if own is None:
                del module.forward
            else:
                module.forward = own


@contextlib.contextmanager
def checkpointed(blocks: Any, on_input: Callable[[Any], Any] | None = None) -> Iterator[int]:
    """Wrap each child of ``blocks`` in ``torch.utils.checkpoint`` (non-reentrant) while the context is open.

    Yields how many blocks were wrapped; ``on_input`` sees every tensor a block is called with (what
    checkpointing keeps for the recompute).  The blocks' own ``forward`` is restored on exit.
    """
    import torch
    import torch.utils.checkpoint as cp

    def checkpointing(original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kw: Any) -> Any:
            if on_input is not None:
                for t in torch.utils._pytree.tree_leaves((args, kw)):
                    if isinstance(t, torch.Tensor):
                        on_input(t)
            return cp.checkpoint(original, *args, use_reentrant=False, **kw)

        return forward

    with patched_forwards((block, checkpointing(block.forward)) for block in blocks.children()) as wrapped:
        yield wrapped


class RecurrentFiling:
    """Recurrent layers traced on ATen's per-timestep path and filed as one op per module call.

    On CPU an LSTM otherwise runs as one oneDNN kernel per layer (``mkldnn_rnn_layer``): torch has no
    FLOP formula for it (FlopCounterMode counts 0) and its fake kernel saves a 0-byte workspace where
    the real one saves an opaque CPU-only buffer.  ATen's path runs the gates as ``mm`` ops that torch
    counts and saves the gate activations for backward as explicit tensors (as GRU always does).

    On a GPU a recurrent layer is one fused (cuDNN) call per layer and direction, not hundreds of
    per-timestep kernels, so ``label(phase)`` names the module whose ops are running (``aten.lstm``):
    in forward while its forward runs; in backward while autograd runs a node its forward created.
    ``calls`` counts the fused calls per label.  Use as a context manager around the traced step.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.calls: dict[str, int] = {}
        self.steps: dict[str, int] = {}  # dependent time steps per label: seq_len x layers x directions
        # per (label, phase): the GEMMs cuDNN runs outside its persistent recurrent kernel (see ``_post``)
        self.gemms: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        self._current: str | None = None
        self._stop: set[int] = set()
        self._nodes: dict[int, tuple[Any, str]] = {}  # id(autograd node) -> (node, label)
        self._handles: list[Any] = []
        self._mkldnn = True

    def __enter__(self) -> RecurrentFiling:
        import torch

        self._handles = [h for m in self.module.modules() if isinstance(m, torch.nn.RNNBase)
                         for h in (m.register_forward_pre_hook(self._pre), m.register_forward_hook(self._post))]
        self._mkldnn = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch._C._set_mkldnn_enabled(self._mkldnn)
        for h in self._handles:
            h.remove()
        self._nodes.clear()

    def label(self, phase: str) -> str | None:
        """The recurrent module the op now running belongs to, or ``None``."""
        if phase == "forward":
            return self._current
        if phase != "backward" or not self._nodes:
            return None
        import torch

        node = torch._C._current_autograd_node()
        entry = self._nodes.get(id(node)) if node is not None else None
        return entry[1] if entry is not None and entry[0] is node else None

    def _pre(self, mod: Any, args: Any) -> None:
        import torch

        self._current = f"aten.{type(mod).__name__.lower()}"
        self._stop = {id(a.grad_fn) for a in torch.utils._pytree.tree_leaves(args)
                      if isinstance(a, torch.Tensor) and a.grad_fn is not None}

    def _post(self, mod: Any, args: Any, out: Any) -> None:
        import torch

        label = self._current or f"aten.{type(mod).__name__.lower()}"
        # the autograd nodes between the module's outputs and its inputs are its backward
        todo: list[Any] = [t.grad_fn for t in torch.utils._pytree.tree_leaves(out)
                if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or id(node) in self._stop or id(node) in self._nodes:
                continue
            if type(node).__name__ == "AccumulateGrad":
                continue
            self._nodes[id(node)] = (node, label)
            todo.extend(n for n, _ in node.next_functions)
        layers = mod.num_layers * (2 if mod.bidirectional else 1)
        self.calls[label] = self.calls.get(label, 0) + layers
        x = args[0] if args else None
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            seq = int(x.batch_sizes.numel())
        elif isinstance(x, torch.Tensor) and x.dim() >= 2:
            seq = int(x.shape[1] if mod.batch_first else x.shape[0])
        else:
            seq = 1 if isinstance(x, torch.Tensor) else 0
        self.steps[label] = self.steps.get(label, 0) + seq * layers
        # cuDNN runs a layer's input projection for all time steps as one GEMM before its persistent recurrent
        # kernel, and in backward the input gradient and both weight gradients as GEMMs after it (Appleyard,
        # "Optimizing Recurrent Neural Networks in cuDNN 5", NVIDIA 2016): (M, N, K) per layer and direction
        tokens = (int(x.data.shape[0]) if isinstance(x, torch.nn.utils.rnn.PackedSequence)
                  else int(x.numel() // x.shape[-1]) if isinstance(x, torch.Tensor) and x.dim() >= 1 else 0)
        gates = {"LSTM": 4, "GRU": 3}.get(type(mod).__name__, 1) * mod.hidden_size
        dirs = 2 if mod.bidirectional else 1
        fwd, bwd = self.gemms.setdefault((label, "forward"), []), self.gemms.setdefault((label, "backward"), [])
        for layer in range(mod.num_layers):
            width = mod.input_size if layer == 0 else (getattr(mod, "proj_size", 0) or mod.hidden_size) * dirs
            for _ in range(dirs):
                fwd.append((tokens, gates, width))
                bwd.extend([(tokens, width, gates), (width, gates, tokens), (mod.hidden_size, gates, tokens)])
        self._current = None
