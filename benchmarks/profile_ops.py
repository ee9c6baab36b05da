"""Per-op profile of validate's cases: where a step's time goes (GPU kernels vs the host dispatching them).

    python benchmarks/profile_ops.py --out profile-ops.json [--models gpt2 resnet50] [--steps 3] [--new-first OLD.json]

For each case validate runs (same models, builder, optimizer, precision and timing: ``advisor.validate``
itself runs the case, as ``validate --profile`` does), ``--steps`` more steps run under ``torch.profiler``
right after the timed ones (``advisor.profiling``: time per op class as the estimator classes it).
Written per case, the shape of ``tests/data/gpu-runs/h200-2026-11-28/profile-ops.json``: wall time per
profiled step, GPU kernel time per step (wall minus kernels = time the GPU waited for the host), kernel
launches and aten ops per step, and the top 25 kernels and top 30 aten ops by device time.  The file is
rewritten after every case; ``--new-first`` runs the cases an earlier profile lacks first (a GPU lease may end
before the rest).  On a CPU the kernel figures are empty and the rest still comes out (a dry run of the script).
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

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--models", nargs="+", help="validate models (default: the zoo on a GPU, quick on a CPU)")
    parser.add_argument("--quick", action="store_true", help="validate's quick set")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per case (default 3)")
    parser.add_argument("--iters", type=int, default=3, help="timed (unprofiled) steps per case (default 3)")
    parser.add_argument("--new-first", metavar="PROFILE.json",
                        help="run the cases this earlier profile lacks first (a GPU lease may end before the rest)")
    args = parser.parse_args(argv)

    import torch

    from advisor import validate as v

    device = v.local_device(prefer_cuda=True)
    cases = v.default_cases(args.models, quick=args.quick or device.kind != "cuda", cuda=device.kind == "cuda")
    if args.new_first:
        seen = {(c["model"], c["case"]) for c in json.loads(Path(args.new_first).read_text())["cases"]}
        cases = sorted(cases, key=lambda c: (c.model, c.label()) in seen)  # stable: the zoo's order otherwise
    out: list[dict[str, Any]] = []
    doc = {"device": device.to_dict(), "torch": torch.__version__, "cases": out}
    for case in cases:
        t0 = time.perf_counter()
        # validate's own run of the case; --steps more steps under torch.profiler after the timed ones
        row = v.run_case(case, device, build=v.default_builder, predict=v.default_predictor, warmup=2,
                         iters=args.iters, profile=args.steps)
        m = row.measurement
        profile = None if m is None or m.profile is None else {**m.profile,
                                                               "steps_s_unprofiled": list(m.step_times_s)}
        out.append({"model": case.model, "case": case.label(), "profile": profile, "row": row.to_dict(),
                    "wall_s": round(time.perf_counter() - t0, 1)})
        print(f"{case.model} {case.label()}: "
              + ("no profile (" + (row.error_message or "failed") + ")" if profile is None else
                 f"{profile['wall_s_per_step_profiled'] * 1e3:.1f} ms/step wall, "
                 f"{profile['gpu_kernel_s_per_step'] * 1e3:.1f} ms kernels, "
                 f"{profile['kernel_launches_per_step']:.0f} launches, "
                 f"{profile['aten_ops_per_step']:.0f} aten ops"),
              file=sys.stderr)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")  # after every case: a timeout keeps the rest
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
