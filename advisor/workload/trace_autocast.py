"""CUDA's autocast policy applied on the fake CPU run of ``advisor.workload.trace``.

The trace runs on CPU tensors, so torch applies CPU autocast's op lists, which differ from CUDA's (the device
the estimate is for): CPU casts ``cross_entropy_loss`` to fp32 as a whole (an fp32 copy of the logits, fp32
log-probabilities, an fp32 gradient cast back), CUDA does not cast it and runs its parts by their own policy
(``log_softmax`` with the input's dtype, ``nll_loss`` in fp32); CUDA runs norms, softmax, sums and
transcendental ops in fp32, CPU in the input's dtype.  During the trace the AutocastCPU kernels of these ops
are replaced by CUDA's policy.  Source: aten/src/ATen/autocast_mode.h (AT_FORALL_FP32,
AT_FORALL_FP32_SET_OPT_DTYPE) and autocast_mode.cpp (the AutocastCPU registrations), torch 2.x.

One of the designated torch importers; torch is imported lazily, inside the context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

#: ops CUDA autocast runs in fp32 (inputs cast) that CPU autocast leaves alone (op, overloads)
_CUDA_FP32_OPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("acos", ("default",)), ("asin", ("default",)), ("cosh", ("default",)), ("erfinv", ("default",)),
    ("exp", ("default",)), ("expm1", ("default",)), ("log", ("default",)), ("log10", ("default",)),
    ("log2", ("default",)), ("log1p", ("default",)), ("reciprocal", ("default",)), ("rsqrt", ("default",)),
    ("sinh", ("default",)), ("tan", ("default",)), ("pow", ("Tensor_Scalar", "Tensor_Tensor", "Scalar")),
    ("softplus", ("default",)), ("layer_norm", ("default",)), ("native_layer_norm", ("default",)),
    ("group_norm", ("default",)), ("frobenius_norm", ("dim",)), ("nuclear_norm", ("default", "dim")),
    ("cosine_similarity", ("default",)), ("logsumexp", ("default",)), ("dist", ("default",)),
    ("pdist", ("default",)), ("renorm", ("default",)))
#: ops CUDA autocast gives ``dtype=float32`` when none is asked for (no input copy)
_CUDA_FP32_SET_OPT_DTYPE_OPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prod", ("default", "dim_int")), ("softmax", ("int",)), ("log_softmax", ("int",)),
    ("cumprod", ("default",)), ("cumsum", ("default",)), ("linalg_vector_norm", ("default",)),
    ("linalg_matrix_norm", ("default", "str_ord")), ("sum", ("default", "dim_IntList")))
#: ops CPU autocast casts to fp32 that CUDA autocast passes through
_CPU_ONLY_FP32_OPS: tuple[str, ...] = ("cross_entropy_loss",)


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """While entered, CPU autocast applies CUDA's policy to the ops where the two differ (see above)."""
    import warnings

    import torch
    from torch.utils._pytree import tree_map

    key = torch._C.DispatchKey.AutocastCPU
    no_autocast = torch._C.DispatchKeySet(key)

    def eligible(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64

    def fp32(op: Any) -> Callable[..., Any]:
        def kernel(*args: Any, **kwargs: Any) -> Any:
            with torch._C._ExcludeDispatchKeyGuard(no_autocast):
                args, kwargs = tree_map(lambda t: t.to(torch.float32) if eligible(t) else t, (args, kwargs))
                return op(*args, **kwargs)
        return kernel

    def set_opt_dtype(op: Any) -> Callable[..., Any]:
        index = next(i for i, a in enumerate(op._schema.arguments) if a.name == "dtype")
        kwarg_only = op._schema.arguments[index].kwarg_only

        def kernel(*args: Any, **kwargs: Any) -> Any:
            with torch._C._ExcludeDispatchKeyGuard(no_autocast):
                if args and eligible(args[0]):
                    if kwarg_only or len(args) <= index:
                        kwargs = {**kwargs, "dtype": kwargs.get("dtype") or torch.float32}
                    elif args[index] is None:
                        args = (*args[:index], torch.float32, *args[index + 1:])
                return op(*args, **kwargs)
        return kernel

    def qualified(name: str, overload: str) -> str:
        return name if overload == "default" else f"{name}.{overload}"

    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel": for this trace only
            for ops, policy in ((_CUDA_FP32_OPS, fp32), (_CUDA_FP32_SET_OPT_DTYPE_OPS, set_opt_dtype)):
                for name, overloads in ops:
                    for ov in overloads:
                        op = getattr(getattr(torch.ops.aten, name), ov)
                        lib.impl(qualified(name, ov), policy(op), "AutocastCPU")
            for name in _CPU_ONLY_FP32_OPS:
                lib.impl(name, torch.library.fallthrough_kernel, "AutocastCPU")
        yield
    finally:
        lib._destroy()
