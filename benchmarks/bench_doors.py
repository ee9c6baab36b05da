"""What each door costs and how far apart the two doors price a named Hugging Face model at full size (issue 25).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_doors.py [--models gpt2,llama-3-8b] [--no-costs] [--no-diffs]

Costs (``--no-costs`` skips them): for each preset with a Hugging Face architecture, three fresh Python processes,
each ``from_preset(name, batch 8)`` then ``estimate`` on an H100 (calibration none), timed from the interpreter's
start to the answer, with the process's peak RSS (and, first, a process that only imports torch and transformers):
the closed form; the trace door with an empty trace cache (cold:
importing torch and transformers, building the module on the meta device, tracing one training step); the trace
door again on the cache the cold run left (warm: a cache hit imports neither).

Differences (``--no-diffs`` skips them): closed form / traced module - 1 of the H100 step time and peak memory at a
few points per model (``POINTS``: training at amp-bf16 at two batches, with gradient checkpointing, and one bf16
forward over the sequence), the trace cache off. Needs torch and transformers (the ``hf`` / ``dev`` extra).
The figures and the decision they led to: docs/doors.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GPU = "h100-sxm5-80gb"
#: Presets with a Hugging Face architecture (the closed form's families), smallest first.
MODELS = ("gpt2", "gpt2-medium", "bert-base", "bert-large", "t5-base", "qwen2.5-7b", "mistral-7b", "llama-3-8b",
          "mixtral-8x7b")
#: (label, keywords) of the compared points; the sequence is the closed form's default (2048, 1024 for GPT-2,
#: 512 for BERT) unless given.
POINTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("train amp-bf16 b4", {"batch_size": 4, "mode": "train", "precision": "amp-bf16"}),
    ("train amp-bf16 b16", {"batch_size": 16, "mode": "train", "precision": "amp-bf16"}),
    ("train amp-bf16 b8 ckpt", {"batch_size": 8, "mode": "train", "precision": "amp-bf16",
                                "gradient_checkpointing": True}),
    ("forward bf16 b8", {"batch_size": 8, "mode": "infer", "precision": "bf16", "optimizer": None}),
)

_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from advisor import estimate
from advisor.workload import from_preset
w = from_preset(sys.argv[1], batch_size=8, door=sys.argv[2])
e = estimate(w, gpu=sys.argv[3], calibration="none")
print(json.dumps({"seconds": time.perf_counter() - t0, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "torch": "torch" in sys.modules, "step_s": e.time.step_s}))
"""


def _child(model: str, door: str, cache: str) -> dict[str, Any]:
    """One fresh process's seconds (interpreter start to answer) and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPU_ADVISOR_CACHE_DIR": cache}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, model, door, GPU], env=env, capture_output=True, text=True,
                         check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    return result


def costs(models: list[str]) -> list[str]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers"], check=True, capture_output=True)
    print(f"a fresh process importing torch and transformers: {time.perf_counter() - t0:.1f} s", flush=True)
    lines = ["| model | closed s / MiB | trace cold s / MiB | trace warm s / MiB (torch imported) |",
             "|---|---:|---:|---:|"]
    for model in models:
        with tempfile.TemporaryDirectory() as cache:
            closed = _child(model, "closed", cache)
            cold = _child(model, "trace", cache)
            warm = _child(model, "trace", cache)
        lines.append(f"| {model} | {closed['wall_s']:.1f} / {closed['rss_mib']:.0f} | {cold['wall_s']:.1f} / "
                     f"{cold['rss_mib']:.0f} | {warm['wall_s']:.1f} / {warm['rss_mib']:.0f} ({warm['torch']}) |")
        print(lines[-1], flush=True)
    return lines


def diffs(models: list[str]) -> list[str]:
    os.environ["GPU_ADVISOR_CACHE_DIR"] = "off"
    from advisor import estimate
    from advisor.workload import from_preset

    lines = ["| model | point | closed step ms | traced step ms | time closed/traced-1 | closed GiB | traced GiB | "
             "memory closed/traced-1 | trace s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model in models:
        for label, kw in POINTS:
            extra = {"gen_len": 0} if kw["mode"] == "infer" and model not in ("bert-base", "bert-large",
                                                                                 "t5-base") else {}
            closed = estimate(from_preset(model, **kw, **extra), gpu=GPU, calibration="none")
            t0 = time.perf_counter()
            try:
                w = from_preset(model, **kw, **extra, door="trace")
            except Exception as exc:  # a failure is a finding: print it and go on
                lines.append(f"| {model} | {label} | {closed.time.step_s * 1e3:.1f} | {type(exc).__name__}: "
                             f"{str(exc)[:80]} | | | | | |")
                print(lines[-1], flush=True)
                continue
            took = time.perf_counter() - t0
            traced = estimate(w, gpu=GPU, calibration="none")
            ct, tt = closed.time.step_s, traced.time.step_s
            cm, tm = closed.memory.total_bytes, traced.memory.total_bytes
            lines.append(f"| {model} | {label} | {ct * 1e3:.1f} | {tt * 1e3:.1f} | {ct / tt - 1:+.1%} | "
                         f"{cm / 2**30:.2f} | {tm / 2**30:.2f} | {cm / tm - 1:+.1%} | {took:.1f} |")
            print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-costs", action="store_true")
    parser.add_argument("--no-diffs", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    models = args.models.split(",")
    if not args.no_costs:
        costs(models)
    if not args.no_diffs:
        diffs(models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
