"""Host microseconds per dispatched op, forward and backward, of validate's own small modules on this CPU.

``benchmarks/count_eager_ops.py --time`` measures the same for Hugging Face blocks (the source of ``HOST_OP_S`` and
``HOST_BACKWARD_FRACTION``); this runs the zoo's gpt2-tiny and llama-tiny (what validate times) and a tiny
torchvision ViT (hidden 64, 2 and 4 layers, 32 px): one thread, CPU tensors at sizes where compute is negligible,
ops counted with a ``TorchDispatchMode`` in a separate pass, median of 30 timed steps.  It prints the forward and
backward host time per op and their ratio, the figure to hold against ``HOST_BACKWARD_FRACTION``.

    .venv/bin/python benchmarks/host_per_op_zoo.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from count_checkpoint_host import DispatchCount  # this script's folder is on sys.path when it runs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def host_us_per_op(module: Any, x: Any, loss: Callable[[Any], Any], reps: int = 30) -> tuple[float, float]:
    """(forward, backward) host microseconds per dispatched op of one training step of ``module`` on ``x``."""
    fwd, bwd = DispatchCount(), DispatchCount()
    with fwd:
        out = loss(module(x))
    with bwd:
        out.backward()
    tf, tb = [], []
    for _ in range(reps):
        module.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = loss(module(x))
        t1 = time.perf_counter()
        out.backward()
        tb.append(time.perf_counter() - t1)
        tf.append(t1 - t0)
    return statistics.median(tf) / fwd.n * 1e6, statistics.median(tb) / bwd.n * 1e6


def main() -> None:
    import torchvision

    from advisor.workload import zoo

    torch.set_num_threads(1)
    cases: list[tuple[str, Any, Any]] = []
    for name in ("gpt2-tiny", "llama-tiny"):
        module, _facts = zoo.build(name, "cpu")
        cases.append((name, module, torch.zeros((2, 8), dtype=torch.long)))
    for layers in (2, 4):
        vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=layers, num_heads=4,
                                                   hidden_dim=64, mlp_dim=128, num_classes=10)
        cases.append((f"torchvision ViT, {layers} layers", vit, torch.randn(2, 3, 32, 32)))
    for name, module, x in cases:
        f, b = host_us_per_op(module, x, lambda out: out.float().sum())
        print(f"{name:28s} forward {f:5.1f} us/op  backward {b:5.1f} us/op  backward/forward {b / f:.2f}")


if __name__ == "__main__":
    main()
