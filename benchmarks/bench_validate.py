"""What each path of ``validate`` (and the collectives probe) costs on this machine.

Run: ``.venv/bin/python benchmarks/bench_validate.py`` (CPU is enough; a GPU is used when torch sees one).
Prints one line per path: wall time, and what it did.  Not a test: nothing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    print(f"{time.perf_counter() - t0:9.3f} s  {label}", flush=True)
    return out


def main() -> None:
    code = "import sys, advisor.validate, advisor.probing.collectives; print('torch' in sys.modules)"
    out = timed("import advisor.validate + collectives in a fresh interpreter (must not import torch)",
                lambda: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True))
    print(f"{'':12}torch imported: {out.stdout.strip()}")
    timed("import torch", lambda: __import__("torch"))

    from advisor import validate as v

    device = timed("local_device(): CPU rates measured (matmul fp32/bf16, copy, op overhead)", v.local_device)
    print(f"{'':12}{device.kind} {device.name}: {dict(device.rates)}")
    cases = v.default_cases(quick=True, cuda=device.kind == "cuda")
    first = cases[0]
    timed(f"first optimizer (imports torch._dynamo once per process): {first.model}",
          lambda: v.make_optimizer("adam", list(v.build_model(first, "cpu").model.parameters())))
    seen: set[str] = set()
    for case in cases:
        if case.model in seen:
            continue
        seen.add(case.model)
        timed(f"build_model on meta: {case.model}", lambda case=case: v.build_model(case, "meta"))
        timed(f"trace_predictor: {case.model} {case.label()}", lambda case=case: v.trace_predictor()(case, device))
        p = timed(f"default_predictor (estimate): {case.model} {case.label()}",
                  lambda case=case: v.default_predictor(case, device))
        print(f"{'':12}{p.source}: {p.memory_bytes / 2**20:.1f} MiB, {p.step_s * 1e3:.2f} ms")
        row = timed(f"run_case (2 warm-up + 5 timed + 1 heap-sampled step): {case.model} {case.label()}",
                    lambda case=case: v.run_case(case, device, build=v.default_builder,
                                                 predict=v.default_predictor))
        m = row.measurement
        if m is not None:
            print(f"{'':12}measured {m.peak_bytes and m.peak_bytes / 2**20:.1f} MiB, {m.step_s * 1e3:.2f} ms/step")

    # the cost of sampling the heap after every op (the CPU memory measurement)
    import torch

    case = v.Case("gpt2-tiny", "train", 8, "fp32", "adamw", seq_len=64)
    built = v.build_model(case, "cpu")
    opt = torch.optim.AdamW(built.model.parameters())
    (idx,) = built.make_inputs()

    def step() -> None:
        opt.zero_grad()
        built.loss(built.model(idx), (idx,)).backward()
        opt.step()

    step()
    plain = timed("gpt2-tiny step, plain", step)
    del plain
    with v.heap_peak_mode():
        timed("gpt2-tiny step under the heap-peak dispatch mode (mallinfo2 after every op)", step)

    from advisor.probing.collectives import DistEnv, run_collectives

    timed("collectives, single process (gloo, world 1, quick sizes)",
          lambda: run_collectives(quick=True, env=DistEnv(0, 1, 0, False), backend="gloo"))
    timed("torchrun --nproc-per-node 2 -m advisor probe --collectives --quick --json --no-save",
          lambda: subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "-m",
                                  "advisor", "probe", "--collectives", "--quick", "--json", "--no-save"],
                                 capture_output=True, text=True, cwd=ROOT, check=True))


if __name__ == "__main__":
    main()
