"""Bytes one optimizer step moves per parameter, its kernels and its host cost, counted from torch's code as it runs.

torch.optim's default CUDA implementations (``foreach``, since PyTorch 2.0) run the update as a chain of
list-wide ``torch._foreach_*`` ops, each a pass over every parameter; ``fused=True`` runs one kernel pass;
``foreach=False`` (``_single_tensor_*``) loops over the parameters in Python, one kernel per update line per
parameter.  This script runs one ``step()`` of each under a ``TorchDispatchMode`` and prints:

- bytes read + written per fp32 parameter element and the list-wide passes (foreach, fused: CPU tensors, as CUDA
  would pick; ``OPTIMIZER_PASS_BYTES`` / ``FUSED_PASS_BYTES`` in ``advisor/workload/costs.py``);
- per parameter of the loop (meta tensors: an op touching one is a device kernel unless it is a view, an op on the
  CPU step counter is host-only): dispatched ops, kernels and bytes (``LOOP_KERNELS``); and of
  ``torch.nn.utils.clip_grad_norm_`` on one tensor (``foreach=False``: torch 1.x's only path), which
  DeepLearningExamples' ``BertAdam`` calls per parameter;
- with ``--time``: the host's CPU time per parameter tensor of each implementation's step (tiny CPU tensors, so
  only the host counts) and of a bare op (``x.add_(1.0)``), in bare ops (``advisor.workload.eager``).

    .venv/bin/python benchmarks/count_optimizer_bytes.py [--time]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _written(func, args) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """The tensors an op writes in place: every argument its schema marks as written (``Tensor(a!)``)."""
    out: list[torch.Tensor] = []
    for arg, value in zip(func._schema.arguments, args, strict=False):
        if arg.alias_info is not None and arg.alias_info.is_write:
            out += [t for t in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(t, torch.Tensor)]
    return out


class _Bytes(TorchDispatchMode):
    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.bytes, self.passes = numel, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        ins, _ = tree_flatten((args, kwargs))
        outs, _ = tree_flatten(out)
        reads = {id(t): t for t in ins if isinstance(t, torch.Tensor) and t.numel() > 1}
        writes = {id(t): t for t in outs if isinstance(t, torch.Tensor) and t.numel() > 1}
        writes.update({id(t): t for t in _written(func, args) if t.numel() > 1})  # in-place: the mutated lists
        if reads or writes:
            self.passes += 1
            self.bytes += sum(t.numel() * t.element_size() for t in (*reads.values(), *writes.values()))
        return out


class _Kernels(TorchDispatchMode):
    """Dispatched ops, device kernels (an op on a meta tensor that is not a view) and their bytes (meta tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = self.kernels = self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if func.namespace == "profiler":  # record_function markers: not operators
            return out
        self.ops += 1
        ins, _ = tree_flatten((args, kwargs))
        outs, _ = tree_flatten(out)
        tensors = [t for t in (*ins, *outs) if isinstance(t, torch.Tensor)]
        if any(t.device.type == "meta" for t in tensors) and not func.is_view:
            self.kernels += 1
            reads = {id(t): t for t in ins if isinstance(t, torch.Tensor) and t.numel() > 1}
            writes = {id(t): t for t in outs if isinstance(t, torch.Tensor) and t.numel() > 1}
            writes.update({id(t): t for t in _written(func, args) if t.numel() > 1})
            self.bytes += sum(t.numel() * t.element_size() for t in (*reads.values(), *writes.values()))
        return out


def _params(n: int, numel: int, device: str) -> list[torch.nn.Parameter]:
    params = [torch.nn.Parameter(torch.randn(numel, device=device)) for _ in range(n)]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def count(name: str, make: type, **kw: object) -> tuple[float, int]:
    params = _params(4, 4096, "cpu")
    opt = make(params, lr=1e-3, **kw)
    opt.step()  # the first step creates the state
    mode = _Bytes(sum(p.numel() for p in params))
    with mode:
        opt.step()
    return mode.bytes / mode.numel, mode.passes


def loop_counts(make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]) -> tuple[float, float, float, int]:
    """Per parameter of a loop step: dispatched ops, kernels, bytes per element; and the ops of the step's own part."""
    numel, counts = 4096, []
    for n in (2, 4):
        opt = make(_params(n, numel, "meta"))
        opt.step()
        mode = _Kernels()
        with mode:
            opt.step()
        counts.append((mode.ops, mode.kernels, mode.bytes))
    (o2, k2, b2), (o4, k4, b4) = counts
    return (o4 - o2) / 2, (k4 - k2) / 2, (b4 - b2) / 2 / numel, o2 - 2 * (o4 - o2) // 2


def clip_counts() -> tuple[int, int, float]:
    """``clip_grad_norm_`` on one tensor (``foreach=False``): dispatched ops, kernels, bytes per element."""
    (p,) = _params(1, 4096, "meta")
    mode = _Kernels()
    with mode:
        torch.nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=False, foreach=False)
    return mode.ops, mode.kernels, mode.bytes / p.numel()


def _best(fn: Callable[[], object], reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def host_times() -> None:
    """CPU time per tensor of each implementation's step, and of a clip call, in bare ops of the same run."""
    torch.set_num_threads(1)
    x = torch.zeros(4)

    def bare() -> None:
        for _ in range(4000):
            x.add_(1.0)

    rows = {"foreach": {"foreach": True}, "fused": {"fused": True}, "loop": {"foreach": False}}
    (q,) = _params(1, 4, "cpu")
    for _ in range(3):  # interleaved with the bare op, so that a loaded machine moves both
        t_bare = _best(bare) / 4000
        per = {}
        for name, kw in rows.items():
            steps = []
            for n in (100, 400):
                opt = torch.optim.AdamW(_params(n, 4, "cpu"), **kw)  # type: ignore[arg-type]
                opt.step()
                steps.append(_best(opt.step))
            per[name] = (steps[1] - steps[0]) / 300  # per tensor, the step's fixed part taken off
        clip = _best(lambda: [torch.nn.utils.clip_grad_norm_(q, 1.0, foreach=False) for _ in range(500)]) / 500
        print(f"  bare op {t_bare * 1e6:.2f} us; AdamW per tensor: "
              + ", ".join(f"{k} {v * 1e6:.2f} us = {v / t_bare:.2f} bare" for k, v in per.items())
              + f"; clip_grad_norm_ per call {clip * 1e6:.2f} us = {clip / t_bare:.2f} bare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", action="store_true", help="also time the host side per tensor (CPU)")
    args = parser.parse_args()
    rows = {"sgd": (torch.optim.SGD, {"foreach": True}),
            "sgd-momentum": (torch.optim.SGD, {"momentum": 0.9, "foreach": True}),
            "adam": (torch.optim.Adam, {"foreach": True}),
            "adamw": (torch.optim.AdamW, {"foreach": True}),
            "adam-fused": (torch.optim.Adam, {"fused": True}),
            "adamw-fused": (torch.optim.AdamW, {"fused": True})}
    print(f"torch {torch.__version__}: bytes moved per fp32 parameter in one step, list-wide ops")
    for name, (cls, kw) in rows.items():
        per, passes = count(name, cls, **kw)
        print(f"  {name:13s} {per:6.1f} B/param  {passes} list-wide ops")
    loops: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
        "sgd-loop": lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=False),
        "sgd-momentum-loop": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=False),
        "adam-loop": lambda ps: torch.optim.Adam(ps, foreach=False),
        "adamw-loop": lambda ps: torch.optim.AdamW(ps, foreach=False)}
    print("per parameter of the single-tensor loop (foreach=False): dispatched ops, kernels, bytes per fp32 element")
    for name, make in loops.items():
        ops, kernels, per, fixed = loop_counts(make)
        print(f"  {name:18s} {ops:4.0f} ops  {kernels:4.0f} kernels  {per:6.1f} B/param  (+{fixed} ops per step)")
    ops, kernels, per = clip_counts()
    print(f"clip_grad_norm_ on one tensor (foreach=False): {ops} ops, {kernels} kernels, {per:.1f} B/param")
    if args.time:
        print("host CPU time (tiny CPU tensors, 1 thread):")
        host_times()


if __name__ == "__main__":
    main()
