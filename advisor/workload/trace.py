"""Trace any ``torch.nn.Module`` on fake tensors: FLOPs, bytes and memory by category per step.

The module runs under ``torch._subclasses.fake_tensor.FakeTensorMode`` (no real memory, no GPU;
modules built on the ``meta`` device work too) with a ``TorchDispatchMode`` that records every
aten op: FLOPs from ``torch.utils.flop_counter``'s registered formulas, bytes read + written
(sizes of tensor inputs and outputs; views move nothing), and storage lifetimes (allocation when
a new storage appears, free when its weak reference expires). Tensors packed by autograd
(``saved_tensors_hooks``) are the activations; ``.grad`` storages the gradients; the rest that
lives and dies inside the step the temporaries.

Matmul and convolution ops are recorded one by one (``_Gemm``), each with the dimensions of its
GEMM view: ``M, N, K`` of the two matrix operands for the matmul family (``addmm``'s first
argument is the bias), and the implicit GEMM of a convolution, ``M = batch x output pixels,
N = C_out, K = C_in x kernel area / groups`` (``convolution_backward`` adds the grad-input GEMM
``batch x input pixels, C_in, C_out x kernel area / groups`` when it computes one).  An op's
``min_dim`` is the smallest of these.  Ops are then grouped per (phase, op, power-of-two class
of ``min_dim``), so a 1x1 convolution on 256 channels is not lumped with a depthwise one; the
group's ``min_dim`` is the smallest within its class and its name carries the class
(``aten.convolution[min_dim>=256]``; ``>=1024`` is the top class).

This module is one of the designated torch importers; torch is still imported lazily, inside
functions, so importing ``advisor.workload`` stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload.base import OpCost, Workload
from advisor.workload.transformer import check_common, optimizer_op, optimizer_state_bytes

_KINDS: dict[str, tuple[str, bool]] = {}
for _n in ("mm", "addmm", "bmm", "baddbmm", "_addmm_activation", "matmul", "linear", "addbmm", "addmv", "mv",
           "dot", "_int_mm", "_scaled_mm"):
    _KINDS[_n] = ("matmul", True)
for _n in ("convolution", "convolution_backward", "_convolution", "cudnn_convolution", "mkldnn_convolution",
           "_slow_conv2d_forward", "_slow_conv2d_backward", "conv2d", "conv1d", "conv3d"):
    _KINDS[_n] = ("conv", True)
for _n in ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
           "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
           "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_flash_attention_backward",
           "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
           "_flash_attention_forward", "_flash_attention_backward", "_efficient_attention_forward",
           "_efficient_attention_backward"):
    _KINDS[_n] = ("attention", True)
for _n in ("native_layer_norm", "native_layer_norm_backward", "native_batch_norm", "native_batch_norm_backward",
           "_native_batch_norm_legit", "_native_batch_norm_legit_functional", "_native_batch_norm_legit_no_training",
           "native_group_norm", "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
           "batch_norm_backward", "_batch_norm_with_update", "_batch_norm_no_update"):
    _KINDS[_n] = ("norm", False)
for _n in ("embedding", "embedding_dense_backward", "index_select", "gather"):
    _KINDS[_n] = ("embedding", False)
for _n in ("sum", "mean", "amax", "amin", "max", "min", "_softmax", "_log_softmax", "_softmax_backward_data",
           "_log_softmax_backward_data", "nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward",
           "nll_loss2d_backward", "logsumexp", "var_mean", "norm", "max_pool2d_with_indices",
           "max_pool2d_with_indices_backward", "avg_pool2d", "avg_pool2d_backward", "_adaptive_avg_pool2d",
           "_adaptive_avg_pool2d_backward", "mkldnn_max_pool2d"):
    _KINDS[_n] = ("reduction", False)
for _n in ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell",
           "_cudnn_rnn", "_cudnn_rnn_backward"):
    _KINDS[_n] = ("recurrent", True)

# Compute-heavy ops that torch.utils.flop_counter has no formula for: costed here instead.
_RNN_OPS = ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_thnn_fused_lstm_cell")


@dataclass
class _Group:
    kind: str
    tc: bool
    flops: float = 0.0
    bytes: float = 0.0
    count: int = 0
    min_dim: int | None = None


@dataclass(frozen=True, slots=True)
class _Gemm:
    """One matmul/convolution op as traced: costs and the dimensions of its GEMM view(s)."""

    phase: str
    name: str
    kind: str
    tc: bool
    flops: float
    bytes: float
    dims: tuple[int, ...]  # M, N, K (and the grad-input GEMM's for convolution_backward); () if unknown


_OPERANDS = {"addmm": (1, 2), "_addmm_activation": (1, 2), "baddbmm": (1, 2), "addbmm": (1, 2), "addmv": (1, 2)}


def _arg(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any], arg_name: str, default: Any) -> Any:
    """An op argument by its schema name (positional or keyword)."""
    if arg_name in kwargs:
        return kwargs[arg_name]
    for i, a in enumerate(getattr(getattr(func, "_schema", None), "arguments", ())):
        if a.name == arg_name:
            return args[i] if i < len(args) else default
    return default


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _gemm_dims(name: str, kind: str, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
               out: Any) -> tuple[int, ...]:
    """``(M, N, K)`` of a matmul/convolution op's GEMM view (see the module docstring); () if unknown."""
    try:
        if kind == "matmul":
            if name == "linear":
                x, w = args[0], args[1]
                return (_prod(x.shape[:-1]), int(w.shape[0]), int(x.shape[-1]))
            i, j = _OPERANDS.get(name, (0, 1))
            a, b = args[i], args[j]
            if name == "matmul" and a.dim() > 2 and b.dim() <= 2:
                m = _prod(a.shape[:-1])  # folded into one mm
            else:
                m = int(a.shape[-2]) if a.dim() >= 2 else 1
            n = int(b.shape[-1]) if b.dim() >= 2 else 1
            if a.dim() == 3 and b.dim() == 3 and int(a.shape[0]) > 1:
                # a weight expanded over the batch (CPU's linear on 3-D inputs): really one folded GEMM
                if int(b.stride(0)) == 0 and int(a.stride(0)) != 0:
                    m *= int(a.shape[0])
                elif int(a.stride(0)) == 0 and int(b.stride(0)) != 0:
                    n *= int(b.shape[0])
            return (m, n, int(a.shape[-1]))
        groups = max(1, int(_arg(func, args, kwargs, "groups", 1)))
        if name == "convolution_backward":
            y, x, w = args[0], args[1], args[2]
        else:
            x, w = args[0], args[1]
            y = out[0] if isinstance(out, (tuple, list)) else out
        if x.dim() != w.dim() or y.dim() != w.dim():
            return ()
        area = _prod(w.shape[2:])
        n_batch, c_in, c_out = int(x.shape[0]), int(x.shape[1]), int(y.shape[1])
        dims: tuple[int, ...] = (n_batch * _prod(y.shape[2:]), c_out, max(1, c_in * area // groups))
        if name == "convolution_backward":
            mask = _arg(func, args, kwargs, "output_mask", (True, True, True))
            if mask[0]:  # grad-input: batch x input pixels, C_in, C_out x kernel area / groups
                dims += (n_batch * _prod(x.shape[2:]), c_in, max(1, c_out * area // groups))
        return dims
    except (AttributeError, IndexError, TypeError, ValueError):
        return ()


_BUCKET_TOP = 1024


def _bucket(min_dim: int) -> int:
    """Power-of-two class of a ``min_dim`` (2**floor(log2)); everything >= 1024 is one class."""
    return _BUCKET_TOP if min_dim >= _BUCKET_TOP else 1 << (max(1, min_dim).bit_length() - 1)


def _bucketed(records: Sequence[tuple[str, str, str, bool, float, float, int | None]]
              ) -> dict[tuple[str, str], _Group]:
    """Group (phase, name, kind, tc, flops, bytes, min_dim) records per (phase, name, min_dim class)."""
    out: dict[tuple[str, str], _Group] = {}
    for phase, name, kind, tc, flops, nbytes, md in records:
        label = name if md is None else f"{name}[min_dim>={_bucket(md)}]"
        g = out.get((phase, label))
        if g is None:
            g = out[(phase, label)] = _Group(kind, tc)
        g.flops += flops
        g.bytes += nbytes
        g.count += 1
        if md is not None:
            g.min_dim = md if g.min_dim is None else min(g.min_dim, md)
    return out


def _merged(groups: Mapping[tuple[str, str], _Group], gemm_groups: Mapping[tuple[str, str], _Group]
            ) -> dict[tuple[str, str], _Group]:
    """All groups, forward before backward (order of appearance within a phase)."""
    order = {"forward": 0, "backward": 1}
    items = sorted([*groups.items(), *gemm_groups.items()], key=lambda kv: order.get(kv[0][0], 2))
    return dict(items)


@dataclass(frozen=True)
class TraceResult:
    """What one traced step recorded (before the optimizer, which is costed analytically).

    ``groups``: the non-GEMM ops per (phase, op); ``gemms``: every matmul/convolution op in order.
    """

    groups: dict[tuple[str, str], _Group]
    params: int
    trainable_params: int
    param_bytes: int
    activation_bytes: float
    transient_bytes: float
    gradient_bytes: float
    peak_bytes: float
    input_bytes: float
    uncounted: tuple[str, ...]
    weight_copy_bytes: float = 0.0
    gemms: tuple[_Gemm, ...] = ()

    def all_groups(self) -> dict[tuple[str, str], _Group]:
        """Non-GEMM groups plus the GEMM records bucketed by ``min_dim`` class, at the traced batch."""
        return _merged(self.groups, _bucketed([(r.phase, r.name, r.kind, r.tc, r.flops, r.bytes,
                                                min(r.dims) if r.dims else None) for r in self.gemms]))


def _dtype_for(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def _nbytes(t: Any) -> int:
    return int(t.numel()) * int(t.element_size())


def _rnn_flops(name: str, args: Sequence[Any]) -> float:
    """LSTM FLOPs: 2 * tokens * 4H * (I + H) per layer forward; backward 2x (matches nn.Linear's convention)."""
    try:
        if name == "_thnn_fused_lstm_cell":
            gates = args[0]
            return float(gates.numel())  # elementwise cell; the matmuls are separate mm ops
        x = args[0]  # (batch, seq, input) or (seq, batch, input)
        w_ih = args[1]  # (4H, I)
        w_hh = args[2]
        tokens = x.shape[0] * x.shape[1]
        fwd = 2.0 * tokens * (w_ih.shape[0] * w_ih.shape[1] + w_hh.shape[0] * w_hh.shape[1])
        return fwd * (2 if name.endswith("backward") else 1)
    except (AttributeError, IndexError, TypeError):
        return 0.0


@contextlib.contextmanager
def _aten_rnn(module: Any, rnn: dict[str, Any]) -> Iterator[None]:
    """Trace recurrent layers on ATen's per-timestep path (oneDNN off), the path FlopCounterMode counts.

    On CPU an LSTM otherwise runs as one oneDNN kernel per layer (``mkldnn_rnn_layer``): torch has no
    FLOP formula for it (FlopCounterMode counts 0) and its fake kernel saves a 0-byte workspace where
    the real one saves an opaque CPU-only buffer.  ATen's path runs the gates as ``mm`` ops that torch
    counts and saves the gate activations for backward as explicit tensors (as GRU always does).

    On a GPU a recurrent layer is one fused (cuDNN) call, not hundreds of per-timestep kernels, so
    the ops each RNN module runs are filed as one ``recurrent`` group per module (``rnn['label']``
    while its forward runs; in backward, the autograd nodes its forward created, ``rnn['nodes']``).
    """
    import torch

    def pre(mod: Any, args: Any) -> None:
        rnn["label"] = f"aten.{type(mod).__name__.lower()}"
        rnn["stop"] = {id(a.grad_fn) for a in torch.utils._pytree.tree_leaves(args)
                       if isinstance(a, torch.Tensor) and a.grad_fn is not None}

    def post(mod: Any, args: Any, out: Any) -> None:
        # the autograd nodes between the module's outputs and its inputs are its backward
        todo = [t.grad_fn for t in torch.utils._pytree.tree_leaves(out)
                if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or id(node) in rnn["stop"] or id(node) in rnn["nodes"]:
                continue
            if type(node).__name__ == "AccumulateGrad":
                continue
            rnn["nodes"][id(node)] = (node, rnn["label"])
            todo.extend(n for n, _ in node.next_functions)
        calls = rnn["calls"]
        calls[rnn["label"]] = calls.get(rnn["label"], 0) + mod.num_layers * (2 if mod.bidirectional else 1)
        rnn["label"] = None

    handles = [h for m in module.modules() if isinstance(m, torch.nn.RNNBase)
               for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    enabled = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(enabled)
        for h in handles:
            h.remove()


def find_blocks(module: Any) -> Any:
    """The repeated blocks of a model: the ``ModuleList``/``Sequential`` with the most parameterised children.

    These are what gradient checkpointing wraps (torchvision ViT: ``encoder.layers``; ResNet: the
    longest stage), here and in ``validate``'s measured runs.  ``None`` if no container has two.
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
def checkpointed(blocks: Any, on_input: Callable[[Any], None] | None = None) -> Iterator[int]:
    """Wrap each child of ``blocks`` in ``torch.utils.checkpoint`` (non-reentrant) while the context is open.

    Yields how many blocks were wrapped; ``on_input`` sees every tensor a block is called with (what
    checkpointing keeps for the recompute).  The blocks' own ``forward`` is restored on exit.
    """
    import torch
    import torch.utils.checkpoint as cp

    wrapped: list[tuple[Any, Any]] = []
    for block in blocks.children():
        own = block.__dict__.get("forward")
        original = block.forward

        def forward(*args: Any, _f: Callable[..., Any] = original, **kw: Any) -> Any:
            if on_input is not None:
                for t in torch.utils._pytree.tree_leaves((args, kw)):
                    if isinstance(t, torch.Tensor):
                        on_input(t)
            return cp.checkpoint(_f, *args, use_reentrant=False, **kw)

        block.forward = forward
        wrapped.append((block, own))
    try:
        yield len(wrapped)
    finally:
        for block, own in wrapped:
            if own is None:
                del block.forward
            else:
                block.forward = own


def _run_traced(module: Any, inputs: tuple[Any, ...], kwargs: Mapping[str, Any], *, mode: str, precision: str,
                loss_fn: Callable[[Any], Any] | None, frozen: tuple[str, ...], label: str,
                checkpoint: bool = False) -> TraceResult:
    import torch
    from torch._subclasses.fake_tensor import (
        DataDependentOutputException,
        DynamicOutputShapeException,
        FakeTensorMode,
    )
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.nn.utils.stateless import _reparametrize_module
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten, tree_map
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    # CPU's fused attention has the same arguments as the CUDA flash kernel but no registered formula
    extra_formulas = {
        "_scaled_dot_product_flash_attention_for_cpu": flop_registry[aten._scaled_dot_product_flash_attention],
        "_scaled_dot_product_flash_attention_for_cpu_backward":
            flop_registry[aten._scaled_dot_product_flash_attention_backward],
    }
    from torch.utils.flop_counter import conv_flop_count

    def conv_backward(grad_out: Any, x: Any, w: Any, *rest: Any, out_val: Any = None, **kw: Any) -> int:
        # Each of grad-input and grad-weight costs what the forward convolution costs. torch's own
        # formula ignores ``groups`` for grad-weight (a depthwise conv comes out C times too high).
        transposed, output_mask = rest[4], rest[7]
        fwd = conv_flop_count(list(x.shape), list(w.shape), list(grad_out.shape), bool(transposed))
        return int(fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1]))))

    extra_formulas["convolution_backward"] = conv_backward
    train = mode == "train"
    amp = precision.startswith("amp-")
    pdtype = _dtype_for(precision)
    # real tensors the module or loss_fn holds as constants (e.g. targets in a closure) are faked on use
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    state: dict[str, Any] = {"phase": "forward"}
    live: dict[int, tuple[int, Any, int]] = {}  # cdata -> (alloc id, weakref, nbytes)
    events: list[tuple[str, int, int]] = []  # ("a"|"f", alloc id, nbytes)
    next_id = [0]
    groups: dict[tuple[str, str], _Group] = {}
    gemms: list[_Gemm] = []
    uncounted: dict[str, None] = {}
    rnn: dict[str, Any] = {"label": None, "stop": set(), "nodes": {}, "calls": {}}  # see _aten_rnn

    def track(t: Any) -> int | None:
        if not isinstance(t, torch.Tensor):
            return None
        ref = StorageWeakRef(t.untyped_storage())
        entry = live.get(ref.cdata)
        if entry is not None:
            return entry[0]
        next_id[0] += 1
        n = int(t.untyped_storage().nbytes())
        live[ref.cdata] = (next_id[0], ref, n)
        young.append(ref.cdata)
        events.append(("a", next_id[0], n))
        return next_id[0]

    young: list[int] = []  # cdata of storages allocated since the last full sweep
    ops_seen = [0]

    def sweep(full: bool = False) -> None:
        # Short-lived storages are checked after every op; all of them every 32 ops (checking
        # every live storage after every op costs more than the fake dispatch itself).
        ops_seen[0] += 1
        if full or ops_seen[0] % 32 == 0:
            keys: Any = list(live)
            young.clear()
        else:
            keys = young
        dead = [k for k in keys if k in live and live[k][1].expired()]
        for k in dead:
            aid, _, n = live.pop(k)
            events.append(("f", aid, n))
        if not full and keys is young:
            young[:] = [k for k in young if k in live][-256:]

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            packet = func._overloadpacket
            name = packet.__name__
            namespace = getattr(func, "namespace", "aten")
            if namespace not in ("aten", "prims", "prim"):
                uncounted[f"{namespace}.{name}"] = None
            flops = 0.0
            formula = extra_formulas.get(name) or flop_registry.get(packet)
            kind, tc = _KINDS.get(name, ("elementwise", False))
            outs, _ = tree_flatten(out)
            if formula is not None:
                flops = float(formula(*args, **kwargs, out_val=out))
            elif name in _RNN_OPS:
                flops = _rnn_flops(name, args)
            elif kind in ("matmul", "conv", "attention", "recurrent"):
                uncounted[f"aten.{name}"] = None  # compute-heavy, but no FLOP formula: listed, not zero
            if formula is None and not any(isinstance(t, torch.Tensor) for t in outs):
                return out  # sym_size, device and the like: no kernel
            is_view = bool(getattr(func, "is_view", False)) or name in ("detach", "alias", "lift_fresh")
            moved = 0
            if not is_view:
                ins, _ = tree_flatten((args, kwargs))
                moved = sum(_nbytes(t) for t in ins if isinstance(t, torch.Tensor))
                moved += sum(_nbytes(t) for t in outs if isinstance(t, torch.Tensor))
            rnn_label = rnn["label"] if state["phase"] == "forward" else None
            if state["phase"] == "backward" and rnn["nodes"]:
                node = torch._C._current_autograd_node()
                entry = rnn["nodes"].get(id(node)) if node is not None else None
                rnn_label = entry[1] if entry is not None and entry[0] is node else None
            if rnn_label is not None:
                key = (state["phase"], rnn_label)
                g = groups.get(key)
                if g is None:
                    # one fused (cuDNN) call per layer and direction: counted after the run
                    g = groups[key] = _Group("recurrent", True)
                g.flops += flops
                g.bytes += moved
            elif kind in ("matmul", "conv"):
                gemms.append(_Gemm(state["phase"], f"aten.{name}", kind, tc, flops, float(moved),
                                   _gemm_dims(name, kind, func, args, kwargs, out)))
            else:
                key = (state["phase"], f"aten.{name}")
                g = groups.get(key)
                if g is None:
                    g = groups[key] = _Group(kind, tc)
                g.flops += flops
                g.bytes += moved
                g.count += 1
            out_ids = tree_map(track, out)
            if name == "_to_copy" and isinstance(args[0], torch.Tensor) and track(args[0]) in persistent:
                weight_copies.add(out_ids)  # autocast's 16-bit copy of a weight
            sweep()
            return out

    def fake_like(t: Any, requires_grad: bool, dtype: Any = None) -> Any:
        dt = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
        return torch.empty_strided(tuple(t.shape), tuple(t.stride()) if t.is_contiguous() else
                                   torch.empty(tuple(t.shape)).stride(), dtype=dt,
                                   device="cpu").requires_grad_(requires_grad)

    was_training = getattr(module, "training", False)
    module.train(train)
    params_in: dict[str, Any] = dict(module.named_parameters())
    buffers_in: dict[str, Any] = dict(module.named_buffers())
    saved: dict[int, int] = {}  # alloc id -> nbytes, activations packed by autograd (not params)
    persistent: set[int | None] = set()
    weight_copies: set[Any] = set()
    try:
        with fake_mode:
            fparams = {n: fake_like(p, train and p.requires_grad and not n.startswith(frozen), pdtype)
                       for n, p in params_in.items()}
            fbuffers = {n: fake_like(b, False, pdtype if b.is_floating_point() else None)
                        for n, b in buffers_in.items()}
            finputs = tuple(fake_like(x, False, pdtype if (not amp and x.is_floating_point()) else None)
                            if isinstance(x, torch.Tensor) else x for x in inputs)
            fkwargs = {k: fake_like(v, False) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        persistent.update(track(t) for t in (*fparams.values(), *fbuffers.values()))
        input_ids = {track(t) for t in (*finputs, *fkwargs.values()) if isinstance(t, torch.Tensor)}
        param_bytes = sum(n for kind, aid, n in events if aid in persistent)
        input_bytes = float(sum(_nbytes(t) for t in (*finputs, *fkwargs.values()) if isinstance(t, torch.Tensor)))

        def pack(t: Any) -> Any:
            aid = track(t)
            if aid is not None and aid not in persistent and aid not in input_ids and aid not in weight_copies:
                saved[aid] = int(t.untyped_storage().nbytes())
            return t

        device_type = "cpu"
        autocast = (torch.autocast(device_type, dtype=_dtype_for(precision.removeprefix("amp-")))
                    if amp else torch.autocast(device_type, enabled=False))
        grad_ctx = torch.enable_grad() if train else torch.no_grad()
        blocks = find_blocks(module) if checkpoint and train else None
        if checkpoint and train and blocks is None:
            raise WorkloadError(f"{label}: no repeated blocks found to checkpoint",
                                "gradient checkpointing wraps the children of the ModuleList/Sequential with the "
                                "most parameterised children; the module has none with two")
        ckpt = checkpointed(blocks, on_input=pack) if blocks is not None else contextlib.nullcontext()
        # the fake parameters stay in place through backward: a checkpointed block recomputes there
        swapped = _reparametrize_module(module, {**fparams, **fbuffers}, tie_weights=True)
        with fake_mode, Recorder(), grad_ctx, _aten_rnn(module, rnn), ckpt, swapped:
            try:
                with autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    out = module(*finputs, **fkwargs)
                    loss = None
                    if train:
                        if loss_fn is not None:
                            loss = loss_fn(out)
                        elif isinstance(out, torch.Tensor) and out.numel() == 1:
                            loss = out
                        else:
                            leaves = [t for t in tree_flatten(out)[0]
                                      if isinstance(t, torch.Tensor) and t.is_floating_point()]
                            if not leaves:
                                raise WorkloadError(f"{label}: the module's output has no float tensor to "
                                                    "differentiate", "pass loss_fn=")
                            loss = sum(t.float().mean() for t in leaves)
                del out
                if train and loss is not None:
                    if not loss.requires_grad:
                        raise WorkloadError(f"{label}: nothing to train (no parameter requires grad)",
                                            "use mode='infer', or unfreeze some parameters")
                    state["phase"] = "backward"
                    loss.backward()
                    del loss
                sweep(full=True)
            except (DataDependentOutputException, DynamicOutputShapeException) as exc:
                raise WorkloadError(
                    f"{label}: a data-dependent op ({exc.func if hasattr(exc, 'func') else exc}) cannot be "
                    "traced on fake tensors (e.g. nonzero, .item(), boolean-mask indexing)",
                    "make the shapes independent of the values, or estimate from a preset/config") from exc
            except WorkloadError:
                raise
            except Exception as exc:
                raise WorkloadError(f"tracing {label} ({state['phase']}) failed: {type(exc).__name__}: {exc}",
                                    "check that example_inputs fit the module (batch dimension first)") from exc
        grad_ids = set()
        grad_bytes = 0
        for p in fparams.values():
            if p.grad is not None:
                aid = track(p.grad)
                grad_ids.add(aid)
                grad_bytes += _nbytes(p.grad)
    finally:
        module.train(was_training)

    rnn["nodes"].clear()
    for (_phase, label), g in groups.items():
        if label in rnn["calls"]:
            g.count = rnn["calls"][label]
    # replay the timeline: temporaries = live - params/buffers - inputs - gradients - saved activations
    total = tmp_peak = peak = 0.0
    cat_live = 0.0
    fixed = persistent | input_ids | weight_copies
    copy_bytes = 0.0
    copy_live = 0.0
    for kind, aid, n in events:
        if aid in weight_copies:
            copy_live += n if kind == "a" else -n
            copy_bytes = max(copy_bytes, copy_live)
    for kind, aid, n in events:
        sign = 1 if kind == "a" else -1
        total += sign * n
        if aid in fixed or aid in grad_ids or aid in saved:
            cat_live += sign * n
        peak = max(peak, total)
        tmp_peak = max(tmp_peak, total - cat_live)
    n_params = sum(p.numel() for p in params_in.values())
    n_train = sum(p.numel() for n, p in params_in.items() if p.requires_grad and not n.startswith(frozen))
    return TraceResult(groups=groups, params=int(n_params), trainable_params=int(n_train) if train else 0,
                       param_bytes=int(param_bytes), activation_bytes=float(sum(saved.values())) if train else 0.0,
                       transient_bytes=float(tmp_peak), gradient_bytes=float(grad_bytes), peak_bytes=float(peak),
                       input_bytes=input_bytes, uncounted=tuple(uncounted), weight_copy_bytes=copy_bytes,
                       gemms=tuple(gemms))


def _ops_from(groups: Mapping[tuple[str, str], _Group], mode: str, precision: str) -> list[OpCost]:
    ops = []
    for (phase, name), g in groups.items():
        ops.append(OpCost(name=name, kind=g.kind, phase=phase, flops=g.flops, bytes=g.bytes,  # type: ignore[arg-type]
                          count=g.count, tensor_core=g.tc and precision not in ("fp32",), min_dim=g.min_dim))
    return ops


def _common_assumptions(precision: str, optimizer: str | None, mode: str, checkpoint: bool = False) -> list[str]:
    out = ["traced on fake tensors (FakeTensorMode, CPU dispatch): FLOPs from torch.utils.flop_counter formulas "
           "(matmul/conv/attention); other ops costed by bytes of their tensor inputs and outputs (views: 0)",
           "activations: unique storages autograd saves for backward (saved_tensors_hooks), parameters excluded"
           + ("; autocast's 16-bit weight copies (held through the forward, 2 bytes/param) are not activations: "
              "see options['traced_memory_bytes']['weight_copies']" if precision.startswith("amp-") else ""),
           "transient: peak of the step's other short-lived storages (replayed storage lifetimes)"]
    if checkpoint:
        out.append("gradient checkpointing traced as torch.utils.checkpoint (non-reentrant) runs it on the children of "
                   "the ModuleList/Sequential with the most parameterised children (as validate does): activations = "
                   "the blocks' inputs + what the layers outside the blocks save; transient includes one block's "
                   "activations recomputed in backward; backward includes that recompute (one more forward of the "
                   "blocks)")
    if mode == "train" and optimizer:
        out.append(f"optimizer step ({optimizer}) costed analytically: reads/writes params, grads and "
                   f"{optimizer_state_bytes(optimizer):g} bytes of state per trainable parameter")
    if precision == "amp-fp16":
        out.append("amp-fp16 traced with CPU autocast at float16 (same dtypes as CUDA autocast for matmuls)")
    return out


def trace_module(
    module: Any,
    example_inputs: Any,
    *,
    mode: str = "train",
    precision: str = "fp32",
    optimizer: str | None = "adamw",
    loss_fn: Callable[[Any], Any] | None = None,
    example_kwargs: Mapping[str, Any] | None = None,
    frozen: Sequence[str] = (),
    name: str | None = None,
    family: str | None = None,
    gradient_checkpointing: bool = False,
    grad_accum: int = 1,
    seq_len: int | None = None,
    image_size: int | None = None,
    **unsupported: Any,
) -> Workload:
    """Trace one step of ``module`` on ``example_inputs`` (batch dimension first) into a ``Workload``.

    Args:
        module: any ``torch.nn.Module`` (real, or built on the ``meta`` device).
        example_inputs: a tensor or tuple of positional inputs; only shapes and dtypes are used.
        mode: ``train`` (forward + loss + backward; optimizer costed analytically) or ``infer``.
        precision: ``fp32``/``tf32`` (fp32), ``bf16``/``fp16`` (params cast), ``amp-*`` (autocast).
        optimizer: optimizer name (train only).
        loss_fn: ``output -> scalar``; default: the output if scalar, else the sum of the means of its
            float tensors.
        example_kwargs: keyword inputs.
        frozen: parameter-name prefixes to freeze (in addition to ``requires_grad=False`` ones).

    Raises:
        WorkloadError: bad sizes, an op that depends on tensor values, or the module's own error
            (wrapped, naming what was traced).
    """
    label = name or type(module).__name__
    batch_override = unsupported.pop("batch_size", None)
    if unsupported:
        bad = ", ".join(f"{k}={v!r}" for k, v in unsupported.items() if v not in (None, False))
        if bad:
            raise WorkloadError(f"option(s) {bad} are not supported for a traced module ({label})",
                                "LoRA/QLoRA/attention/gen_len options apply to presets and configs")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (
        tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,))
    first = next((x for x in (*inputs, *(example_kwargs or {}).values()) if hasattr(x, "shape")), None)
    if first is None or len(first.shape) == 0:
        raise WorkloadError(f"example_inputs of {label} need a tensor with a batch dimension first")
    batch = int(first.shape[0])
    if batch_override is not None and batch_override != batch:
        # the batch dimension of the example inputs is a shape only: take the one asked for
        check_common(batch_override, mode, precision, optimizer if mode == "train" else None, grad_accum)
        import torch

        with torch.device("meta"):
            inputs = tuple(torch.empty((batch_override, *x.shape[1:]), dtype=x.dtype) if hasattr(x, "shape") else x
                           for x in inputs)
        batch = batch_override
    check_common(batch, mode, precision, optimizer if mode == "train" else None, grad_accum)
    for x in inputs:
        if hasattr(x, "shape") and any(int(d) <= 0 for d in x.shape):
            raise WorkloadError(f"example input of shape {tuple(x.shape)} has a zero-size dimension")
    ckpt = bool(gradient_checkpointing) and mode == "train"
    res = _run_traced(module, inputs, dict(example_kwargs or {}), mode=mode, precision=precision, loss_fn=loss_fn,
                      frozen=tuple(frozen), label=label, checkpoint=ckpt)
    ops = _ops_from(res.all_groups(), mode, precision)
    opt = optimizer if mode == "train" else None
    if opt and res.trainable_params:
        ops.append(optimizer_op(res.trainable_params, precision, opt))

    def rebuild(new_batch: int) -> Workload:
        import torch

        if not isinstance(new_batch, int) or new_batch <= 0:
            raise WorkloadError(f"batch_size must be a positive integer, got {new_batch!r}")
        with torch.device("meta"):
            new_inputs = tuple(torch.empty((new_batch, *x.shape[1:]), dtype=x.dtype) if hasattr(x, "shape") else x
                               for x in inputs)
        return trace_module(module, new_inputs, mode=mode, precision=precision, optimizer=optimizer,
                            loss_fn=loss_fn, example_kwargs=example_kwargs, frozen=frozen, name=name, family=family,
                            gradient_checkpointing=gradient_checkpointing, grad_accum=grad_accum, seq_len=seq_len,
                            image_size=image_size)

    return Workload(
        name=label, source="module", family=family or _guess_family(module), mode=mode,  # type: ignore[arg-type]
        batch_size=batch, precision=precision, optimizer=opt, params=res.params,
        trainable_params=res.trainable_params, activation_bytes=res.activation_bytes,
        transient_bytes=res.transient_bytes, ops=tuple(ops), seq_len=seq_len, image_size=image_size,
        tokens_per_sample=seq_len, input_bytes_per_sample=res.input_bytes / batch,
        uncounted_ops=res.uncounted, assumptions=tuple(_common_assumptions(precision, opt, mode, ckpt)),
        options={"gradient_checkpointing": ckpt, "grad_accum": grad_accum, "frozen": bool(frozen) or
                 res.trainable_params < res.params, "rebuild": rebuild,
                 "traced_memory_bytes": {"parameters": res.param_bytes, "gradients": res.gradient_bytes,
                                         "activations": res.activation_bytes, "temporaries": res.transient_bytes,
                                         "weight_copies": res.weight_copy_bytes,
                                         "peak_without_optimizer": res.peak_bytes}},
    )


def _guess_family(module: Any) -> str:
    names = {type(m).__name__ for m in module.modules()}
    if names & {"LSTM", "GRU", "RNN"}:
        return "rnn"
    if any("Conv" in n for n in names):
        return "vit" if "VisionTransformer" in names else "cnn"
    if "config" in dir(module) and isinstance(getattr(module, "config", None), dict):
        return "decoder"
    return "mlp"


# ---------------------------------------------------------------------------------------------
# presets: traced once per shape at two small batches, then scaled linearly
#
# Costs are linear in the batch size (fixed weight traffic + per-sample work), so two traces give
# them at any batch.  GEMM shapes are not fixed: M = batch x rows grows with the batch, so a
# matmul's ``min_dim`` class at batch 2 says little about batch 256.  Hence the GEMM ops are kept
# one by one: the i-th op of a (phase, op) in the batch-2 trace is the i-th of the batch-4 trace
# (the same module takes the same op sequence), its FLOPs and bytes are scaled linearly, each
# GEMM dimension that differs between the two traces is scaled linearly too (it grows with the
# batch; one that does not is a weight dimension and stays), and only then are the ops bucketed by
# ``min_dim`` class, at the batch asked for (cached per preset shape and batch).  Where the two
# traces took different kernels (different non-GEMM ops, or a different number of a matmul op),
# those ops fall back to one group per (phase, kind) scaled as totals, as before; a fallen-back
# GEMM group takes the smallest ``min_dim`` of the batch-4 trace (conservative).

_TRACE_BATCHES = (2, 4)  # batch 1 takes special kernel paths in places (addmm vs mm on squeezed shapes)


def _by_kind(groups: Mapping[tuple[str, str], _Group]) -> dict[tuple[str, str], _Group]:
    out: dict[tuple[str, str], _Group] = {}
    for (phase, _name), g in groups.items():
        m = out.setdefault((phase, f"{g.kind} ops"), _Group(g.kind, g.tc))
        m.flops += g.flops
        m.bytes += g.bytes
        m.count += g.count
        m.tc = m.tc or g.tc
        if g.min_dim is not None:
            m.min_dim = g.min_dim if m.min_dim is None else min(m.min_dim, g.min_dim)
    return out


@functools.lru_cache(maxsize=64)
def _preset_trace(builder: str, image_size: int | None, seq_len: int | None, mode: str,
                  precision: str, checkpoint: bool = False) -> tuple[TraceResult, TraceResult, dict[str, Any]]:
    import torch

    from advisor.workload import zoo

    module, facts = zoo.build(builder, device="meta")
    results = []
    for b in _TRACE_BATCHES:
        with torch.device("meta"):
            if facts["input"] == "image":
                x = torch.empty(b, facts["channels"], image_size, image_size)  # type: ignore[arg-type]
            else:
                x = torch.empty(b, seq_len, dtype=torch.long)  # type: ignore[arg-type]
        loss_fn = None
        results.append(_run_traced(module, (x,), {}, mode=mode, precision=precision, loss_fn=loss_fn,
                                   frozen=tuple(facts["frozen_prefixes"]), label=builder, checkpoint=checkpoint))
    return results[0], results[1], facts


def _lin(v1: float, v2: float, b: int) -> float:
    b1, b2 = _TRACE_BATCHES
    slope = (v2 - v1) / (b2 - b1)
    return max(0.0, v1 + slope * (b - b1))


def _scaled_dim(d1: int, d2: int, b: int) -> int:
    return d1 if d1 == d2 else max(1, round(_lin(d1, d2, b)))


@functools.lru_cache(maxsize=256)
def _preset_ops(builder: str, image_size: int | None, seq_len: int | None, mode: str, precision: str,
                batch: int, checkpoint: bool = False) -> tuple[OpCost, ...]:
    """The traced ops (no optimizer) of a preset shape at ``batch`` (see the section comment)."""
    r1, r2, _facts = _preset_trace(builder, image_size, seq_len, mode, precision, checkpoint)
    groups1, groups2 = r1.groups, r2.groups
    if groups1.keys() != groups2.keys():
        # the two batches took different kernels (e.g. addmm vs mm + add): scale per (phase, kind)
        groups1, groups2 = _by_kind(groups1), _by_kind(groups2)
    scaled: dict[tuple[str, str], _Group] = {}
    for key, g1 in groups1.items():
        g2 = groups2.get(key, g1)
        scaled[key] = _Group(g1.kind, g1.tc, flops=_lin(g1.flops, g2.flops, batch),
                             bytes=_lin(g1.bytes, g2.bytes, batch), count=g1.count)
    seqs: dict[tuple[str, str], tuple[list[_Gemm], list[_Gemm]]] = {}
    for i, res in enumerate((r1, r2)):
        for r in res.gemms:
            seqs.setdefault((r.phase, r.name), ([], []))[i].append(r)
    records: list[tuple[str, str, str, bool, float, float, int | None]] = []
    fallback: dict[tuple[str, str], list[_Group]] = {}
    for (phase, name), (s1, s2) in seqs.items():
        if len(s1) == len(s2) and all(len(a.dims) == len(b.dims) for a, b in zip(s1, s2, strict=True)):
            for a, b in zip(s1, s2, strict=True):
                dims = [_scaled_dim(d1, d2, batch) for d1, d2 in zip(a.dims, b.dims, strict=True)]
                records.append((phase, name, a.kind, a.tc, _lin(a.flops, b.flops, batch),
                                _lin(a.bytes, b.bytes, batch), min(dims) if dims else None))
            continue
        for i, part in enumerate((s1, s2)):
            for r in part:
                gs = fallback.setdefault((phase, f"{r.kind} ops"), [_Group(r.kind, r.tc), _Group(r.kind, r.tc)])
                g = gs[i]
                g.flops += r.flops
                g.bytes += r.bytes
                g.count += 1
                if i == 1 and r.dims:
                    g.min_dim = min(r.dims) if g.min_dim is None else min(g.min_dim, *r.dims)
    for key, (g1, g2) in fallback.items():
        scaled[key] = _Group(g1.kind, g1.tc, flops=_lin(g1.flops, g2.flops, batch),
                             bytes=_lin(g1.bytes, g2.bytes, batch), count=g1.count or g2.count,
                             min_dim=g2.min_dim)
    merged = _merged(scaled, _bucketed(records))
    return tuple(OpCost(name=name, kind=g.kind, phase=phase, flops=g.flops, bytes=g.bytes,  # type: ignore[arg-type]
                        count=g.count, tensor_core=g.tc and precision != "fp32", min_dim=g.min_dim)
                 for (phase, name), g in merged.items())


def preset_workload(preset: Any, *, batch_size: int, seq_len: int | None, image_size: int | None, mode: str,
                    precision: str, optimizer: str | None, gradient_checkpointing: bool = False,
                    grad_accum: int = 1) -> Workload:
    """A traced preset at any batch size (two fake traces per shape, cached, scaled linearly).

    See the comment above ``_TRACE_BATCHES`` for how matmul/convolution shapes (``min_dim``) are
    scaled to ``batch_size`` before the ops are grouped.
    """
    check_common(batch_size, mode, precision, optimizer if mode == "train" else None, grad_accum)
    ckpt = bool(gradient_checkpointing) and mode == "train"
    cfg = preset.config
    assumptions: list[str] = []
    if preset.family == "rnn":
        seq = seq_len if seq_len is not None else cfg["seq_len"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            raise WorkloadError(f"seq_len must be a positive integer, got {seq!r}")
        img = None
    else:
        img = image_size if image_size is not None else cfg["image_size"]
        if not isinstance(img, int) or isinstance(img, bool) or img <= 0:
            raise WorkloadError(f"image_size must be a positive integer, got {img!r}")
        if preset.name == "mnist-cnn" and img < 28:
            raise WorkloadError(f"image_size {img} is too small for mnist-cnn", "use image_size >= 28")
        if preset.family == "vit" and img != 224:
            raise WorkloadError(f"{preset.name} takes 224x224 images only, got image_size {img}")
        seq = None
    r1, r2, _facts = _preset_trace(cfg["builder"], img, seq, mode, precision, ckpt)
    ops = list(_preset_ops(cfg["builder"], img, seq, mode, precision, batch_size, ckpt))
    opt = optimizer if mode == "train" else None
    if opt and r1.trainable_params:
        ops.append(optimizer_op(r1.trainable_params, precision, opt))
    assumptions += _common_assumptions(precision, opt, mode, ckpt)
    assumptions.append(f"traced at batch {_TRACE_BATCHES[0]} and {_TRACE_BATCHES[1]} and scaled linearly in the "
                       "batch size (fixed weight traffic + per-sample costs); matmul/conv ops scaled one by "
                       "one (GEMM dims that grow with the batch scaled with it) and grouped by min(M, N, K) class "
                       "at this batch")
    if preset.name == "vgg16-transfer" and mode == "train":
        assumptions.append("vgg16-transfer: conv base frozen (no weight gradients, no optimizer state); "
                           "backward stops at the head")

    def rebuild(new_batch: int) -> Workload:
        return preset_workload(preset, batch_size=new_batch, seq_len=seq_len, image_size=image_size, mode=mode,
                               precision=precision, optimizer=optimizer, gradient_checkpointing=gradient_checkpointing,
                               grad_accum=grad_accum)

    return Workload(
        name=preset.name, source="preset", family=preset.family, mode=mode, batch_size=batch_size,  # type: ignore[arg-type]
        precision=precision, optimizer=opt, params=r1.params, trainable_params=r1.trainable_params,
        activation_bytes=_lin(r1.activation_bytes, r2.activation_bytes, batch_size),
        transient_bytes=_lin(r1.transient_bytes, r2.transient_bytes, batch_size), ops=tuple(ops),
        seq_len=seq, image_size=img, tokens_per_sample=seq,
        input_bytes_per_sample=(r2.input_bytes - r1.input_bytes) / (_TRACE_BATCHES[1] - _TRACE_BATCHES[0]),
        uncounted_ops=r1.uncounted, assumptions=tuple(assumptions),
        options={"gradient_checkpointing": ckpt, "grad_accum": grad_accum,
                 "frozen": r1.trainable_params < r1.params and mode == "train", "rebuild": rebuild},
    )
