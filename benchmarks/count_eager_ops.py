"""Count (and time) the operators PyTorch eager dispatches per transformer layer.

The source of ``advisor/workload/eager.py``'s table and of ``advisor.estimator.efficiency.HOST_OP_S``.

Needs Hugging Face ``transformers`` (not a dependency of gpu-advisor; install it beside, e.g.
``pip install --target /tmp/tf transformers==4.46.3`` and run with ``PYTHONPATH=/tmp/tf``).

    python benchmarks/count_eager_ops.py            # per-layer dispatched ops, every style / attention / precision
    python benchmarks/count_eager_ops.py --time     # plus host microseconds per dispatched op (tiny widths, 1 thread)

Method: build ``BertModel``, ``GPT2LMHeadModel`` and ``LlamaForCausalLM`` at hidden 64 with 2 and 4
layers; run one step (train: forward + backward; infer: forward under no_grad; decode: one token
with a KV cache) on CPU tensors under a ``TorchDispatchMode`` that counts every aten call, views
included (each costs host time; views launch no kernel).  Per layer = (count at 4 - count at 2) / 2;
base = count at 2 - 2 x per layer.  "amp" runs under CPU autocast (bf16), which casts the same
weights and activations CUDA autocast does.  Caveat: SDPA *training* with dropout falls back to the
math path on CPU, so those rows overcount what CUDA runs (one fused kernel); eager.py derives them.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from typing import Any


def _model(kind: str, layers: int, attn: str) -> tuple[Any, bool]:
    import transformers as T

    if kind == "bert":
        return T.BertModel(T.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers,
                                        num_attention_heads=4, intermediate_size=128,
                                        attn_implementation=attn)), False
    if kind == "gpt2":
        return T.GPT2LMHeadModel(T.GPT2Config(vocab_size=100, n_embd=64, n_layer=layers, n_head=4,
                                              attn_implementation=attn)), True
    return T.LlamaForCausalLM(T.LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers,
                                            num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                                            attn_implementation=attn)), True


def _counter() -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n: collections.Counter[tuple[str, str]] = collections.Counter()
            self.phase = "forward"

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            name = func._overloadpacket.__name__
            view = bool(getattr(func, "is_view", False)) or name in ("detach", "alias", "lift_fresh", "_unsafe_view")
            self.n[(self.phase, "view" if view else "kernel")] += 1
            return out

    return Count()


def _step(kind: str, layers: int, attn: str, amp: bool, mode: str, counter: Any = None) -> tuple[float, float]:
    """One step; returns (forward seconds, backward seconds)."""
    import contextlib

    import torch

    model, lm = _model(kind, layers, attn)
    model.train(mode == "train")
    ids = torch.randint(0, 100, (1, 8))
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
    count = counter if counter is not None else contextlib.nullcontext()
    if mode == "decode":
        with torch.no_grad():
            past = model(ids, use_cache=True).past_key_values
            t0 = time.perf_counter()
            with count, cast:
                model(ids[:, -1:], past_key_values=past, use_cache=True)
            return time.perf_counter() - t0, 0.0
    if mode == "infer":
        t0 = time.perf_counter()
        with torch.no_grad(), count, cast:
            model(ids)
        return time.perf_counter() - t0, 0.0
    t0 = time.perf_counter()
    with count:
        with cast:
            out = model(ids, labels=ids) if lm else model(ids)
            loss = out.loss if lm else out.last_hidden_state.float().mean()
        t1 = time.perf_counter()
        if counter is not None:
            counter.phase = "backward"
        loss.backward()
    return t1 - t0, time.perf_counter() - t1


def per_layer(kind: str, attn: str, amp: bool, mode: str) -> dict[str, tuple[float, float]]:
    """{phase: (dispatched ops per layer, base)}."""
    counts = {}
    for layers in (2, 4):
        c = _counter()
        _step(kind, layers, attn, amp, mode, c)
        counts[layers] = c.n
    out = {}
    for phase in ("forward", "backward"):
        n2 = counts[2][(phase, "kernel")] + counts[2][(phase, "view")]
        n4 = counts[4][(phase, "kernel")] + counts[4][(phase, "view")]
        if n4:
            per = (n4 - n2) / 2
            out[phase] = (per, n2 - 2 * per)
    return out


def host_us_per_op(kind: str, attn: str, amp: bool, mode: str, reps: int = 25) -> dict[str, float]:
    """Host microseconds per dispatched op: (time at 6 layers - time at 2) / 4 / ops per layer."""
    import torch

    torch.set_num_threads(1)
    times = {}
    for layers in (2, 6):
        runs = [_step(kind, layers, attn, amp, mode) for _ in range(reps)][5:]
        times[layers] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    ops = per_layer(kind, attn, amp, mode)
    out = {}
    for i, phase in enumerate(("forward", "backward")):
        if phase in ops:
            out[phase] = (times[6][i] - times[2][i]) / 4 / ops[phase][0] * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", action="store_true", help="also time host microseconds per op (fp32 rows)")
    args = parser.parse_args()
    import transformers

    print(f"transformers {transformers.__version__}: dispatched aten ops per layer (base outside the blocks)")
    for kind in ("bert", "gpt2", "llama"):
        for attn in ("eager", "sdpa"):
            for amp in (False, True):
                for mode in ("train", "infer", "decode"):
                    if mode == "decode" and kind == "bert":
                        continue
                    res = per_layer(kind, attn, amp, mode)
                    cells = "; ".join(f"{ph} {per:g}/layer (base {base:g})" for ph, (per, base) in res.items())
                    line = f"{kind:5} {attn:5} {'amp' if amp else 'fp32':4} {mode:6} {cells}"
                    if args.time and not amp:
                        us = host_us_per_op(kind, attn, amp, mode)
                        line += " | host " + ", ".join(f"{ph} {v:.1f} us/op" for ph, v in us.items())
                    print(line)


if __name__ == "__main__":
    main()
