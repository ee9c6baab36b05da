"""What each workload path costs: analytic presets, traced presets, traced modules.

Run: ``.venv/bin/python benchmarks/bench_workload.py [--quick]``. Prints one line per path
(median of repeats, wall clock). Targets (issue 4): llama-3-70b analytic <= 10 ms; GPT-2-small
training step (batch 8 x 1024) traced <= 3 s on a 2-core CPU; a preset CNN traced once per shape.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds of ``fn`` (also records process CPU seconds in ``_time.cpu_s``)."""
    times, cpu, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    _time.cpu_s = statistics.median(cpu)  # type: ignore[attr-defined]
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the slow traced presets")
    args = parser.parse_args()

    from advisor.workload import from_module, from_preset

    for name, kw in [("llama-3-70b", {"batch_size": 4, "seq_len": 4096}),
                     ("llama-3.1-405b", {"batch_size": 1, "seq_len": 8192}),
                     ("mixtral-8x7b", {"mode": "infer", "seq_len": 2048}),
                     ("gpt2", {"batch_size": 8, "seq_len": 1024})]:
        from_preset(name, **kw)  # warm imports
        t, wl = _time(lambda name=name, kw=kw: from_preset(name, **kw), 50)
        print(f"analytic  {name:16s} {kw}: {t * 1e3:8.3f} ms  ({wl.flops_per_step / 1e12:.1f} TFLOP/step)")

    t0 = time.perf_counter()
    import torch

    from advisor.workload import zoo

    print(f"import torch + zoo: {time.perf_counter() - t0:.2f} s")
    tokens = torch.empty(8, 1024, dtype=torch.long, device="meta")
    for attention in ("eager", "sdpa"):
        with torch.device("meta"):
            gpt = zoo.TinyGPT(attention=attention)  # GPT-2 small: 124,439,808 params
        for precision in ("fp32", "amp-bf16"):
            t, wl = _time(lambda gpt=gpt, p=precision: from_module(gpt, (tokens, tokens), precision=p), 3)
            print(f"traced    GPT-2 small {attention:5s} {precision:8s} train 8x1024: {t:6.2f} s wall, "
                  f"{_time.cpu_s:6.2f} s CPU  "  # type: ignore[attr-defined]
                  f"({wl.params:,} params, {wl.flops_per_step / 1e12:.2f} TFLOP, "
                  f"activations {wl.activation_bytes / 2**30:.2f} GiB)")
    presets = ["mnist-cnn", "lstm-lm"] if args.quick else ["mnist-cnn", "lstm-lm", "resnet50", "vit-b16"]
    for name in presets:
        t0 = time.perf_counter()
        from_preset(name, batch_size=32)
        first = time.perf_counter() - t0
        t, _ = _time(lambda name=name: from_preset(name, batch_size=256), 5)
        print(f"traced preset {name:12s}: first {first:6.2f} s (two fake traces), then {t * 1e3:7.2f} ms "
              "per batch size (cached)")


if __name__ == "__main__":
    main()
