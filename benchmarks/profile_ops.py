"""Per-op profile of validate's cases: where a step's time goes (GPU kernels vs the host dispatching them).

    python benchmarks/profile_ops.py --out profile-ops.json [--models gpt2 resnet50] [--steps 3]

For each case validate runs (same models, builder, optimizer, precision and timing: ``advisor.validate``
itself runs the case), ``--steps`` more steps run under ``torch.profiler`` right after the timed ones.
Written per case, the shape of ``tests/data/gpu-runs/h200-2026-11-28/profile-ops.json``: wall time per
profiled step, GPU kernel time per step (wall minus kernels = time the GPU waited for the host), kernel
launches and aten ops per step, and the top 25 kernels and top 30 aten ops by device time.  On a CPU the
kernel figures are empty and the rest still comes out (a dry run of the script).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAUNCH_EVENTS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                 "hipLaunchKernel", "hipExtModuleLaunchKernel")


def _device_us(evt: Any, self_time: bool) -> float:
    names = ("self_device_time_total", "self_cuda_time_total") if self_time else ("device_time_total",
                                                                                    "cuda_time_total")
    for name in names:
        value = getattr(evt, name, None)
        if value is not None:
            return float(value)
    return 0.0


def summarize(prof: Any, steps: int, wall_s: float) -> dict[str, Any]:
    """The per-step figures of one profiled run (``prof``: a finished ``torch.profiler.profile``)."""
    from torch.autograd import DeviceType

    events = prof.key_averages()
    kernels = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
    ops = [e for e in events if e.key.startswith(("aten::", "autograd::", "Optimizer."))]
    launches = sum(e.count for e in events if e.key in LAUNCH_EVENTS)
    kernel_us = sum(_device_us(e, True) for e in kernels)
    return {
        "wall_s_per_step_profiled": wall_s / steps,
        "gpu_kernel_s_per_step": kernel_us / 1e6 / steps,
        "kernel_launches_per_step": launches / steps,
        "aten_ops_per_step": sum(e.count for e in ops if e.key.startswith("aten::")) / steps,
        "top_kernels": [{"name": e.key[:200], "count_per_step": e.count / steps,
                         "ms_per_step": _device_us(e, True) / 1e3 / steps}
                        for e in sorted(kernels, key=lambda e: -_device_us(e, True))[:25]],
        "top_ops": [{"name": e.key[:200], "count_per_step": e.count / steps,
                     "cpu_ms_per_step": e.cpu_time_total / 1e3 / steps,
                     "device_ms_per_step": _device_us(e, False) / 1e3 / steps}
                    for e in sorted(ops, key=lambda e: (-_device_us(e, False), -e.cpu_time_total))[:30]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--models", nargs="+", help="validate models (default: the zoo on a GPU, quick on a CPU)")
    parser.add_argument("--quick", action="store_true", help="validate's quick set")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per case (default 3)")
    parser.add_argument("--iters", type=int, default=3, help="timed (unprofiled) steps per case (default 3)")
    args = parser.parse_args(argv)

    import torch
    import torch.profiler as tp

    from advisor import validate as v

    device = v.local_device(prefer_cuda=True)
    runner = device.runner()
    cases = v.default_cases(args.models, quick=args.quick or device.kind != "cuda", cuda=device.kind == "cuda")
    activities = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if device.kind == "cuda" else [])
    captured: dict[str, Any] = {}
    original = v.time_steps

    def time_then_profile(step: Any, **kw: Any) -> list[float]:
        times = original(step, **kw)  # validate's own timed steps first, untouched
        runner.synchronize()
        with tp.profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            runner.synchronize()
            wall = time.perf_counter() - t0
        captured["profile"] = summarize(prof, args.steps, wall)
        return times

    v.time_steps = time_then_profile  # type: ignore[assignment]  # the one seam: run_case calls it once per case
    out: list[dict[str, Any]] = []
    try:
        for case in cases:
            captured.clear()
            t0 = time.perf_counter()
            row = v.run_case(case, device, build=v.default_builder, predict=v.default_predictor, warmup=2,
                             iters=args.iters)
            profile = captured.get("profile")
            if profile is not None and row.measurement is not None:
                profile["steps_s_unprofiled"] = list(row.measurement.step_times_s)
            out.append({"model": case.model, "case": case.label(), "profile": profile, "row": row.to_dict(),
                        "wall_s": round(time.perf_counter() - t0, 1)})
            print(f"{case.model} {case.label()}: "
                  + ("no profile (" + (row.error_message or "failed") + ")" if profile is None else
                     f"{profile['wall_s_per_step_profiled'] * 1e3:.1f} ms/step wall, "
                     f"{profile['gpu_kernel_s_per_step'] * 1e3:.1f} ms kernels, "
                     f"{profile['kernel_launches_per_step']:.0f} launches, "
                     f"{profile['aten_ops_per_step']:.0f} aten ops"),
                  file=sys.stderr)
    finally:
        v.time_steps = original  # type: ignore[assignment]
    doc = {"device": device.to_dict(), "torch": torch.__version__, "cases": out}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
