"""Host time activation checkpointing adds per op, measured on this machine's CPU, in forward-op units.

Non-reentrant ``torch.utils.checkpoint`` (what validate and Hugging Face's ``gradient_checkpointing_enable`` use)
routes every tensor a checkpointed block saves through Python pack/unpack hooks, and in backward re-runs the
block's Python forward under its recompute machinery.  On a GPU this is host time: it is what a host-bound step
pays for checkpointing beyond the recomputed kernels.  The script builds tiny-width versions of the zoo's
transformer shapes (compute negligible: what is timed is the host), runs forward+backward with and without
checkpointing of every block, counts the dispatched aten ops of each (``TorchDispatchMode``) and prints

- ``forward``: host seconds per op of a checkpointed forward / of a plain forward;
- ``recompute``: the extra backward host seconds per recomputed op / a plain forward op's.

Its output is ``CHECKPOINT_FORWARD_FACTOR`` and ``CHECKPOINT_RECOMPUTE_OPS`` in ``advisor/estimator/host.py``.

    .venv/bin/python benchmarks/count_checkpoint_host.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint as cp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from advisor.probing.kernel_env import dispatch_counter  # the probe's and the tracer's op count


def _checkpoint(blocks: torch.nn.Module) -> None:
    for block in blocks.children():
        original = block.forward

        def forward(*args: Any, _f: Callable[..., Any] = original, **kwargs: Any) -> Any:
            return cp.checkpoint(_f, *args, use_reentrant=False, **kwargs)

        block.forward = forward  # type: ignore[method-assign]


def _best(fn: Callable[[], Any], reps: int = 7, n: int = 20) -> float:
    for _ in range(3):
        fn()
    runs = []
    for _ in range(reps):
        t = time.thread_time()  # CPU time of this thread: steadier than the wall clock on a busy machine
        for _ in range(n):
            fn()
        runs.append((time.thread_time() - t) / n)
    return min(runs)


def _ops(fn: Callable[[], Any]) -> int:
    mode = dispatch_counter()
    with mode:
        fn()
    return mode.n


def measure(name: str, make: Callable[[], tuple[torch.nn.Module, torch.nn.Module, Callable[[torch.nn.Module], Any]]]
            ) -> tuple[float, float]:
    plain, ckpt, loss_of = make()
    forward = {m: (lambda m=m: loss_of(m)) for m in (plain, ckpt)}
    train = {m: (lambda m=m: loss_of(m).backward()) for m in (plain, ckpt)}
    f_plain, f_ckpt = _best(forward[plain]), _best(forward[ckpt])
    t_plain, t_ckpt = _best(train[plain]), _best(train[ckpt])
    n_f_plain, n_f_ckpt = _ops(forward[plain]), _ops(forward[ckpt])
    n_plain, n_ckpt = _ops(train[plain]), _ops(train[ckpt])
    per_fwd = f_plain / n_f_plain
    forward_factor = (f_ckpt / n_f_ckpt) / per_fwd
    recomputed = (n_ckpt - n_f_ckpt) - (n_plain - n_f_plain)
    extra_backward = (t_ckpt - f_ckpt) - (t_plain - f_plain)
    recompute_ops = extra_backward / recomputed / per_fwd
    print(f"{name:10s} forward {per_fwd * 1e6:5.1f} us/op plain, x{forward_factor:.2f} checkpointed; "
          f"{recomputed} recomputed ops cost {extra_backward * 1e3:.2f} ms = {recompute_ops:.2f} forward ops each")
    return forward_factor, recompute_ops


def _vit() -> tuple[torch.nn.Module, torch.nn.Module, Callable[[torch.nn.Module], Any]]:
    import torchvision

    def build() -> torch.nn.Module:
        return torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=12, num_heads=2,
                                                    hidden_dim=8, mlp_dim=16, num_classes=10)

    plain, ckpt = build(), build()
    _checkpoint(ckpt.encoder.layers)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    return plain, ckpt, lambda m: torch.nn.functional.cross_entropy(m(x), y)


def _gpt() -> tuple[torch.nn.Module, torch.nn.Module, Callable[[torch.nn.Module], Any]]:
    from advisor.workload.zoo import transformer

    def build() -> torch.nn.Module:
        return transformer("gpt2", vocab_size=64, n_positions=16, hidden=8, layers=12, heads=2)

    plain, ckpt = build(), build()
    _checkpoint(ckpt.h)
    ids = torch.randint(0, 64, (2, 16))
    return plain, ckpt, lambda m: torch.nn.functional.cross_entropy(m(ids).flatten(0, 1), ids.flatten())


if __name__ == "__main__":
    torch.set_num_threads(1)
    results = [measure("vit", _vit), measure("gpt", _gpt)]
    print(f"median: forward x{statistics.median(r[0] for r in results):.2f}, "
          f"recompute {statistics.median(r[1] for r in results):.2f} forward ops per recomputed op")
