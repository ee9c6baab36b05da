"""ATen ops as the tracer costs them: kind of each op, FLOP formulas, GEMM dimensions, grouping.

Matmul and convolution ops are recorded one by one (``Gemm``), each with the dimensions of its
GEMM view: ``M, N, K`` of the two matrix operands for the matmul family (``addmm``'s first
argument is the bias), and the implicit GEMM of a convolution, ``M = batch x output pixels,
N = C_out, K = C_in x kernel area / groups`` (``convolution_backward`` adds the grad-input GEMM
``batch x input pixels, C_in, C_out x kernel area / groups`` when it computes one).  An op's
``min_dim`` is the smallest of these.  Ops are then grouped per (phase, op, power-of-two class
of ``min_dim``), so a 1x1 convolution on 256 channels is not lumped with a depthwise one; the
group's ``min_dim`` is the smallest within its class and its name carries the class
(``aten.convolution[min_dim>=256]``; ``>=1024`` is the top class).

FLOPs are ``torch.utils.flop_counter``'s registered formulas (what ``FlopCounterMode`` counts),
with two additions (``flop_formulas``): CPU's fused attention kernel, which has no formula of its
own, takes the CUDA flash kernel's; and a convolution's backward counts grad-weight as its forward
(torch's formula ignores ``groups`` there: a depthwise conv comes out C times too high).

An elementwise op whose operands TensorIterator cannot walk as one dense, equally laid-out array (a broadcast
or non-contiguous operand, a dtype cast) runs on its index-computing paths rather than the vectorized one; such
calls are grouped apart (``aten.mul[strided]``) with their output elements (``index_bound_elements``), and so
are reductions that keep the innermost dimension (a bias gradient's sum over the batch): the estimator prices
them by elements (``advisor.estimator.index_bound.STRIDED_ELEMENTS_PER_SM_CYCLE``).  Ops that launch no kernel
(``NO_KERNEL``) move no bytes.

The index-bound rule and the kernel-less ops live in ``advisor.workload.aten_strided``.  torch is imported
inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.workload.aten_strided import MAX_POOLS, NO_KERNEL, index_bound_elements

#: aten op name -> (OpCost kind, runs on tensor cores); every op not named here is elementwise.
#: The recurrent kernels (oneDNN / cuDNN / fused cells) have no torch FLOP formula: where they are
#: traced they are listed as uncounted (the tracer runs recurrent layers on ATen's path instead).
KINDS: dict[str, tuple[str, bool]] = {}
for _name in ("mm", "addmm", "bmm", "baddbmm", "_addmm_activation", "matmul", "linear", "addbmm", "addmv", "mv",
              "dot", "_int_mm", "_scaled_mm", "_grouped_mm"):
    KINDS[_name] = ("matmul", True)
for _name in ("convolution", "convolution_backward", "_convolution", "cudnn_convolution", "mkldnn_convolution",
              "_slow_conv2d_forward", "_slow_conv2d_backward", "conv2d", "conv1d", "conv3d"):
    KINDS[_name] = ("conv", True)
for _name in ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
              "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_flash_attention_backward",
              "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
              "_flash_attention_forward", "_flash_attention_backward", "_efficient_attention_forward",
              "_efficient_attention_backward"):
    KINDS[_name] = ("attention", True)
for _name in ("native_layer_norm", "native_layer_norm_backward", "native_batch_norm", "native_batch_norm_backward",
              "_native_batch_norm_legit", "_native_batch_norm_legit_functional", "_native_batch_norm_legit_no_training",
              "native_group_norm", "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
              "batch_norm_backward", "_batch_norm_with_update", "_batch_norm_no_update"):
    KINDS[_name] = ("norm", False)
for _name in ("embedding", "embedding_dense_backward", "index_select", "gather"):
    KINDS[_name] = ("embedding", False)
for _name in ("sum", "mean", "amax", "amin", "max", "min", "_softmax", "_log_softmax", "_softmax_backward_data",
              "_log_softmax_backward_data", "nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward",
              "nll_loss2d_backward", "logsumexp", "var_mean", "norm", "max_pool2d_with_indices",
              "max_pool2d_with_indices_backward", "avg_pool2d", "avg_pool2d_backward", "_adaptive_avg_pool2d",
              "_adaptive_avg_pool2d_backward", "mkldnn_max_pool2d"):
    KINDS[_name] = ("reduction", False)
for _name in ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell",
              "_cudnn_rnn", "_cudnn_rnn_backward"):
    KINDS[_name] = ("recurrent", True)


@dataclass
class OpGroup:
    """Ops of one (phase, label) group as they accumulate: FLOPs, bytes moved, launches, smallest GEMM dim."""

    kind: str
    tc: bool
    flops: float = 0.0
    bytes: float = 0.0
    count: int = 0
    min_dim: int | None = None
    gemms: tuple[tuple[int, int, int], ...] | None = None  # exact GEMM shapes when every op of the group has them
    serial_steps: int = 0  # dependent time steps of a recurrent group (each waits for the one before)
    strided_elements: float = 0.0  # elements its calls run on an index-bound path (``index_bound_elements``)
    tile_flops: float = 0.0  # a fused attention's tile and block FLOPs (``fused_attention_work``), over its calls
    block_flops: float = 0.0


#: Ops whose GEMM view is one plain 2-D GEMM per call (batched matmuls run all batches in one kernel and are
#: priced by ``min_dim`` instead).
_PLAIN_GEMMS = ("linear", "mm", "addmm", "_addmm_activation", "convolution", "convolution_backward", "matmul")


def gemm_shapes(name: str, dims: Sequence[int]) -> tuple[tuple[int, int, int], ...] | None:
    """The (M, N, K) triples of a record's GEMM view(s), when it is a plain GEMM (see ``_PLAIN_GEMMS``)."""
    if label_op(name) not in _PLAIN_GEMMS or not dims or len(dims) % 3:
        return None
    return tuple((int(dims[i]), int(dims[i + 1]), int(dims[i + 2])) for i in range(0, len(dims), 3))


@dataclass(frozen=True, slots=True)
class Gemm:
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


def gemm_dims(name: str, kind: str, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
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


#: Fused attention kernels (FlashAttention-2, cuDNN's fused attention, the memory-efficient kernel) walk the score
#: matrix in (query block x key block) tiles, one thread block per query block and (batch, head): a tile is
#: computed whole even where the sequence ends inside it (ViT-B/16's 197 tokens fill two 128-row blocks, 256 x 256
#: tiles of work for 197 x 197 scores: 1.69x), a causal kernel skips the tiles above the diagonal but computes the
#: diagonal ones whole ((n + 1) / 2n of the n x n tiles, not half), and each thread block pays a fixed cost
#: (loading its query block, rescaling and writing its output and log-sum-exp) on top of its tiles
#: (``advisor.estimator.attention.FUSED_ATTENTION_BLOCK_TILES``).  128 rows is FlashAttention-2's forward block at head
#: dim <= 128 (flash_fwd_launch_template.h) and the larger side of the H200 profile's cuDNN kernels
#: (``..._64x128x64``, ``..._64x64x64``).
FUSED_ATTENTION_BLOCK = 128
#: A fused backward recomputes the scores and runs five tile GEMMs to the forward's two (torch's FLOP formula).
FUSED_ATTENTION_BACKWARD_WORK = 2.5


def fused_attention_work(batch_heads: float, q_len: int, k_len: int, head_dim: int,
                         causal: bool) -> tuple[float, float]:
    """``(tile FLOPs, block FLOPs)`` of a fused attention kernel's forward (see ``FUSED_ATTENTION_BLOCK``).

    A tile's FLOPs are ``4 x head_dim x block^2`` (the QK^T and PV products of one block pair): the first figure
    counts them over the tiles the kernel computes, the second one tile's worth per query block (the unit of each
    thread block's fixed cost), for ``batch_heads`` (batch x query heads) score matrices.  ``causal``: torch's
    ``is_causal`` (query ``i`` sees keys ``0..i``).  (0, 0) for a single query (decoding: split-key kernels bound
    by the bytes of the cache, priced by those).
    """
    if q_len <= 1 or k_len < 1:
        return 0.0, 0.0
    t = FUSED_ATTENTION_BLOCK
    nq, nk = -(-q_len // t), -(-k_len // t)
    # query block i computes key blocks 0..i (at most nk): closed form, so a huge sequence costs no loop
    tiles = (nq * (nq + 1) // 2 if nq <= nk else nk * (nk + 1) // 2 + (nq - nk) * nk) if causal else nq * nk
    tile = 4.0 * head_dim * t * t * batch_heads
    return tile * tiles, tile * nq


#: Fused attention ops the tracer sees with ``query`` and ``key`` as (..., seq, head_dim) (batch and heads leading)
#: and an ``is_causal`` argument: forward and backward (their work ``FUSED_ATTENTION_BACKWARD_WORK`` times the
#: forward's).
_SDPA_OPS = {f"_scaled_dot_product_{impl}": 1.0 for impl in ("flash_attention", "efficient_attention",
                                                             "cudnn_attention", "flash_attention_for_cpu")}
_SDPA_OPS.update({name + "_backward": FUSED_ATTENTION_BACKWARD_WORK for name in list(_SDPA_OPS)})


def attention_geometry(name: str, func: Any, args: Sequence[Any],
                       kwargs: Mapping[str, Any]) -> tuple[float, float, int] | None:
    """``(tile FLOPs, block FLOPs, head dim)`` of a traced fused attention call.

    The FLOPs are ``fused_attention_work``'s (times ``FUSED_ATTENTION_BACKWARD_WORK`` for a backward); an explicit
    mask (``attn_mask`` / ``attn_bias``) skips no tiles.  None for other ops.
    """
    scale = _SDPA_OPS.get(name)
    if scale is None:
        return None
    try:
        q, k = _arg(func, args, kwargs, "query", None), _arg(func, args, kwargs, "key", None)
        batch_heads, (s_q, d) = _prod(q.shape[:-2]), (int(x) for x in q.shape[-2:])  # (..., seq, head dim)
        s_k = int(k.shape[-2])
        causal = bool(_arg(func, args, kwargs, "is_causal", False))
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    tiles, blocks = fused_attention_work(batch_heads, s_q, s_k, d, causal)
    return scale * tiles, scale * blocks, d


#: Name suffix of a convolution record cuDNN may run with its Winograd algorithms: 2-D, 3x3 filters, stride 1,
#: dilation 1, one group, not transposed (``winograd_shaped``); ``advisor.estimator.time`` prices it.
WINOGRAD_SUFFIX = ".3x3"


def label_op(label: str) -> str:
    """The aten op a trace record or group label names.

    ``aten.mul[strided]`` -> ``mul``; ``aten.convolution.3x3[min_dim>=64]`` -> ``convolution``.
    """
    return label.removeprefix("aten.").split("[")[0].split(".")[0]


def winograd_label(label: str) -> bool:
    """Whether a trace group label carries ``WINOGRAD_SUFFIX``."""
    return label.split("[")[0].endswith(WINOGRAD_SUFFIX)


def winograd_shaped(name: str, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether a traced convolution (forward or backward) is in the domain of cuDNN's Winograd algorithms."""
    if name not in ("convolution", "convolution_backward"):
        return False
    try:
        w = args[2] if name == "convolution_backward" else args[1]
        if tuple(int(d) for d in w.shape[2:]) != (3, 3):
            return False
        stride = _arg(func, args, kwargs, "stride", (1,))
        dilation = _arg(func, args, kwargs, "dilation", (1,))
        return (all(int(v) == 1 for v in (*stride, *dilation)) and int(_arg(func, args, kwargs, "groups", 1)) == 1
                and not _arg(func, args, kwargs, "transposed", False))
    except (AttributeError, IndexError, TypeError, ValueError):
        return False


_BUCKET_TOP = 1024


def _bucket(min_dim: int) -> int:
    """Power-of-two class of a ``min_dim`` (2**floor(log2)); everything >= 1024 is one class."""
    return _BUCKET_TOP if min_dim >= _BUCKET_TOP else 1 << (max(1, min_dim).bit_length() - 1)


def bucket_label(name: str, min_dim: int | None, dims: Sequence[int] | None) -> str:
    """The group label ``bucketed`` files a matmul/convolution record under: its exact GEMM shape, else its class."""
    shapes = gemm_shapes(name, dims) if dims is not None else None
    if shapes is not None:
        return f"{name}[{','.join('x'.join(map(str, g)) for g in shapes)}]"
    return name if min_dim is None else f"{name}[min_dim>={_bucket(min_dim)}]"


def bucketed(records: Sequence[tuple[Any, ...]]) -> dict[tuple[str, str], OpGroup]:
    """Group (phase, name, kind, tc, flops, bytes, min_dim[, dims]) records.

    Per (phase, name, GEMM shape) where the record is a plain GEMM of known shape (the estimator prices its tiles,
    waves and alignment), else per (phase, name, min_dim class).
    """
    out: dict[tuple[str, str], OpGroup] = {}
    for phase, name, kind, tc, flops, nbytes, md, *rest in records:
        shapes = gemm_shapes(name, rest[0]) if rest else None
        label = bucket_label(name, md, rest[0] if rest else None)
        g = out.get((phase, label))
        if g is None:
            g = out[(phase, label)] = OpGroup(kind, tc, gemms=shapes)
        g.flops += flops
        g.bytes += nbytes
        g.count += 1
        if md is not None:
            g.min_dim = md if g.min_dim is None else min(g.min_dim, md)
    return out


def merged(groups: Mapping[tuple[str, str], OpGroup], gemm_groups: Mapping[tuple[str, str], OpGroup]
            ) -> dict[tuple[str, str], OpGroup]:
    """All groups, forward before backward (order of appearance within a phase)."""
    order = {"forward": 0, "backward": 1}
    items = sorted([*groups.items(), *gemm_groups.items()], key=lambda kv: order.get(kv[0][0], 2))
    return dict(items)



#: Kinds whose calls share their group's time by FLOPs (the rest by bytes) in ``call_order``.
COMPUTE_KINDS = ("matmul", "conv", "attention", "recurrent")


def call_order(calls: Sequence[tuple[tuple[str, str] | None, int, float]] | None,
               gemm_keys: Sequence[tuple[str, str]], ops: Sequence[Any]) -> tuple[tuple[int, float], ...]:
    """The traced calls in dispatch order as ``(index into ops, share of that op's time)``.

    ``calls``: ``advisor.workload.trace_record.Recording.calls``; ``gemm_keys``: the (phase, label) each GEMM
    record was grouped under.  A call's share is its weight over its group's (equal shares where the group's
    weights are all zero: views).  Empty when there is no order to give (a recurrent layer traced) or a call's
    group is not among ``ops`` (``OpCost``s).
    """
    if not calls:
        return ()
    index = {(op.phase, op.name): i for i, op in enumerate(ops)}
    keyed = [(gemm_keys[g] if key is None else key, weight) for key, g, weight in calls]
    totals: dict[tuple[str, str], list[float]] = {}
    for key, weight in keyed:
        t = totals.setdefault(key, [0.0, 0])
        t[0] += weight
        t[1] += 1
    if any(key not in index for key in totals):
        return ()
    return tuple((index[key], weight / totals[key][0] if totals[key][0] else 1.0 / totals[key][1])
                 for key, weight in keyed)


def nbytes(t: Any) -> int:
    """Bytes of a tensor's elements (not of its storage)."""
    return int(t.numel()) * int(t.element_size())


def op_kind(name: str) -> tuple[str, bool]:
    """``(kind, runs on tensor cores)`` of an aten op by its overload-packet name; elementwise by default."""
    return KINDS.get(name, ("elementwise", False))


def flop_formulas() -> tuple[Mapping[Any, Callable[..., Any]], dict[str, Callable[..., Any]]]:
    """``(torch's registry by op packet, this module's formulas by op name)``; a name here wins."""
    import torch
    from torch.utils.flop_counter import conv_flop_count, flop_registry

    aten = torch.ops.aten

    def conv_backward(grad_out: Any, x: Any, w: Any, *rest: Any, out_val: Any = None, **kw: Any) -> int:
        # Each of grad-input and grad-weight costs what the forward convolution costs (output_mask
        # says which are computed: none for an input that needs no grad).
        transposed, output_mask = rest[4], rest[7]
        fwd = conv_flop_count(list(x.shape), list(w.shape), list(grad_out.shape), bool(transposed))
        return int(fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1]))))

    def grouped_mm(a: Any, b: Any, *rest: Any, out_val: Any = None, **kw: Any) -> int:
        # one GEMM per group of rows (MoE experts: transformers 5's grouped experts): each row of a 2-D ``a`` meets
        # one group's matrix, so the FLOPs do not depend on the (data-dependent) offsets; 2-D x 2-D (the weight
        # gradient) splits the contraction between the groups
        if a.dim() == 2 and b.dim() == 2:
            return 2 * int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1])
        return 2 * int(out_val.numel()) * int(a.shape[-1])

    extra = {
        "_grouped_mm": grouped_mm,
        # CPU's fused attention has the same arguments as the CUDA flash kernel but no registered formula
        "_scaled_dot_product_flash_attention_for_cpu": flop_registry[aten._scaled_dot_product_flash_attention],
        "_scaled_dot_product_flash_attention_for_cpu_backward":
            flop_registry[aten._scaled_dot_product_flash_attention_backward],
        "convolution_backward": conv_backward,
    }
    return flop_registry, extra


__all__ = ["MAX_POOLS", "NO_KERNEL", "index_bound_elements"]  # from advisor.workload.aten_strided, as before
