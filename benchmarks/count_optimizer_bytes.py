"""Bytes one optimizer step moves per parameter, and its kernel passes, counted from torch's own code as it runs.

torch.optim's default CUDA implementations (``foreach``, since PyTorch 2.0) run the update as a chain of
list-wide ``torch._foreach_*`` ops, each a pass over every parameter.  This script runs one ``step()`` of each
optimizer over fp32 parameters under a ``TorchDispatchMode`` (CPU tensors, ``foreach=True`` as CUDA would pick)
and adds up the bytes of the tensors every op reads and writes, per parameter element.  Its output is the table
``OPTIMIZER_PASS_BYTES`` in ``advisor/workload/transformer.py``.

    .venv/bin/python benchmarks/count_optimizer_bytes.py
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


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
        if not writes and func._schema.name.endswith("_"):  # in-place foreach ops return nothing: the first list
            first = args[0] if args and isinstance(args[0], (list, tuple)) else []
            writes = {id(t): t for t in first if isinstance(t, torch.Tensor)}
        if reads or writes:
            self.passes += 1
            self.bytes += sum(t.numel() * t.element_size() for t in (*reads.values(), *writes.values()))
        return out


def count(name: str, make: type, **kw: object) -> tuple[float, int]:
    params = [torch.nn.Parameter(torch.randn(4096)) for _ in range(4)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = make(params, lr=1e-3, **kw)
    opt.step()  # the first step creates the state
    mode = _Bytes(sum(p.numel() for p in params))
    with mode:
        opt.step()
    return mode.bytes / mode.numel, mode.passes


def main() -> None:
    rows = {"sgd": (torch.optim.SGD, {"foreach": True}),
            "sgd-momentum": (torch.optim.SGD, {"momentum": 0.9, "foreach": True}),
            "adam": (torch.optim.Adam, {"foreach": True}),
            "adamw": (torch.optim.AdamW, {"foreach": True})}
    print(f"torch {torch.__version__}: bytes moved per fp32 parameter in one step (foreach), list-wide ops")
    for name, (cls, kw) in rows.items():
        per, passes = count(name, cls, **kw)
        print(f"  {name:13s} {per:6.1f} B/param  {passes} list-wide ops")


if __name__ == "__main__":
    main()
