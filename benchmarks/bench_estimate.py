"""What each estimate path costs: build a workload, one estimate, and the catalog x counts sweep recommend does.

Run: ``.venv/bin/python benchmarks/bench_estimate.py`` (prints milliseconds; not a test).
"""

from __future__ import annotations

import contextlib
import time

from advisor.api import estimate
from advisor.calibration import resolve_calibration
from advisor.catalog import load_specs
from advisor.errors import AdvisorError
from advisor.estimator import build_workload, estimate_workload, prepare_workload
from advisor.workload.options import WorkloadOptions


def timed(label: str, fn, repeat: int = 1) -> object:
    start = time.perf_counter()
    result = None
    for _ in range(repeat):
        result = fn()
    ms = (time.perf_counter() - start) * 1e3 / repeat
    print(f"{label:<60} {ms:9.2f} ms")
    return result


def sweep(workload, specs, max_gpus: int, parallelism: str | None) -> int:
    n = 0
    for spec in specs:
        for count in range(1, max_gpus + 1):
            # precision unsupported / tp not dividing heads raise: recommend lists the reason
            with contextlib.suppress(AdvisorError):
                estimate_workload(workload, spec, num_gpus=count, parallelism=parallelism if count > 1 else None,
                                  calibration=None)
            n += 1
    return n


def main() -> None:
    specs = timed("load_specs (first, parses TOML)", load_specs)
    print(f"{len(specs)} cards")
    for model, kw in (("llama-3-8b", {"batch_size": 8, "seq_len": 2048}),
                      ("llama-3-70b", {"mode": "infer", "precision": "bf16", "batch_size": 8, "seq_len": 2048,
                                       "gen_len": 256}),
                      ("gpt2", {"batch_size": 32, "seq_len": 1024})):
        w = timed(f"{model}: build workload (analytic)", lambda m=model, k=kw: build_workload(m, WorkloadOptions(**k)))
        timed(f"{model}: estimate() one card, end to end", lambda m=model, k=kw: estimate(
            m, "h100-sxm5-80gb", calibration=None, **k), repeat=5)
        prepare_workload(w)
        for par in ("ddp", "zero3", "tp"):
            n = timed(f"{model}: sweep {len(specs)} cards x 1..8 GPUs ({par}), first",
                      lambda w=w, p=par: sweep(w, specs, 8, p))
            timed(f"{model}: same sweep again (micro-batches cached)", lambda w=w, p=par: sweep(w, specs, 8, p))
            print(f"{'':<60} ({n} estimates)")
    cal = build_workload("llama-3-8b", WorkloadOptions(batch_size=8, seq_len=2048))
    timed("llama-3-8b: sweep with calibration='auto' (one history store read, then data)",
          lambda: [estimate_workload(cal, s, calibration=auto) for auto in [resolve_calibration("auto")]
                   for s in specs if s.supports("amp-bf16")])


if __name__ == "__main__":
    main()
