"""Host microseconds per dispatched op, forward and backward, of validate's own small modules on this CPU.

``benchmarks/count_eager_ops.py --time`` measures the same for Hugging Face blocks (the source of ``HOST_OP_S`` and
``HOST_BACKWARD_FRACTION``); this runs the zoo's gpt2-tiny and llama-tiny (what validate times) and a tiny
torchvision ViT (hidden 64, 2 and 4 layers, 32 px): one thread, CPU tensors at sizes where compute is negligible,
ops counted with a ``TorchDispatchMode`` in a separate pass, median of 30 timed steps.  It prints the forward and
backward host time per op and their ratio, the figure to hold against ``TRACED_HOST_BACKWARD_FRACTION``, and the
forward's under ``torch.no_grad()`` over the training forward's: whether an inference forward, recording no
autograd graph, costs the host less per op.  On the 2-vCPU dev VM (2026-11-28, three runs) it does not: 0.90-1.06,
median 0.98, so the estimator takes one forward figure for both.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from advisor.probing.kernel_env import dispatch_counter  # the probe's and the tracer's op count


def host_us_per_op(module: Any, x: Any, loss: Callable[[Any], Any], reps: int = 30) -> tuple[float, float, float]:
    """(forward, backward, no-grad forward) host microseconds per dispatched op of ``module`` on ``x``.

    The first two of one training step; the third of the same forward under ``torch.no_grad()`` (what the tracer
    runs an inference workload under), its ops counted there.
    """
    fwd, bwd, free = dispatch_counter(), dispatch_counter(), dispatch_counter()
    with fwd:
        out = loss(module(x))
    with bwd:
        out.backward()
    with torch.no_grad(), free:
        loss(module(x))
    tf, tb, tn = [], [], []
    for _ in range(reps):
        module.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = loss(module(x))
        t1 = time.perf_counter()
        out.backward()
        tb.append(time.perf_counter() - t1)
        tf.append(t1 - t0)
        with torch.no_grad():
            t2 = time.perf_counter()
            loss(module(x))
            tn.append(time.perf_counter() - t2)
    return (statistics.median(tf) / fwd.n * 1e6, statistics.median(tb) / bwd.n * 1e6,
            statistics.median(tn) / free.n * 1e6)


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
    ratios: dict[str, list[float]] = {"backward/forward": [], "no_grad/forward": []}
    for name, module, x in cases:
        f, b, n = host_us_per_op(module, x, lambda out: out.float().sum())
        ratios["backward/forward"].append(b / f)
        ratios["no_grad/forward"].append(n / f)
        print(f"{name:28s} forward {f:5.1f} us/op  backward {b:5.1f} us/op  no_grad forward {n:5.1f} us/op  "
              f"backward/forward {b / f:.2f}  no_grad/forward {n / f:.2f}")
    for what, values in ratios.items():
        print(f"{what}: median {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
