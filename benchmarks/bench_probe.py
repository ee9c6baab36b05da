"""What the probe costs here: import, inventory only, each kernel group, and a whole ``probe --quick``.

Run: ``.venv/bin/python benchmarks/bench_probe.py [--full]``.  Prints wall-clock seconds per path;
on a machine without a GPU everything runs on the CPU backend.  Nothing is saved to the history store.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(label: str, fn) -> object:
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<44s} {time.perf_counter() - t0:8.2f} s")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also time the full (non-quick) probe")
    parser.add_argument("--sweep", action="store_true",
                        help="GPU only: compare the probe's best bf16 matmul with a wider brute-force sweep "
                             "(issue 3 target: within 3%%)")
    args = parser.parse_args()
    if args.sweep:
        return sweep()

    cmd = [sys.executable, "-c", "import advisor.probing"]
    timed("import advisor.probing (fresh interpreter)", lambda: subprocess.run(cmd, check=True, cwd=ROOT))
    cli = [sys.executable, "-m", "advisor", "probe", "--quick", "--json", "--no-save"]
    timed("python -m advisor probe --quick --json", lambda: subprocess.run(cli, check=True, cwd=ROOT,
                                                                          stdout=subprocess.DEVNULL))

    from advisor.probing import KERNEL_GROUPS, default_backend, probe

    backend = timed("default_backend()", default_backend)
    print(f"  backend: {backend.name}; notes: {list(backend.notes)}")
    timed("probe(kernels=[]) inventory only", lambda: probe(backend=backend, kernels=[]))
    timed("  (first kernel: torch import + warm-up)", lambda: probe(backend=backend, kernels="launch"))
    for group in KERNEL_GROUPS:
        r = timed(f"probe(quick, kernels={group!r})", lambda g=group: probe(backend=backend, quick=True, kernels=g))
        for k in r.kernels:
            if k.ok:
                m = k.measurement
                print(f"    {k.name:<13s} {k.precision or '':<5s} {k.shape:<36s} {k.value:10.4g} {k.unit:<8s}"
                      f" iters={m.iterations:<6d} spread={m.spread:.1%}{'' if m.trustworthy else '  (noisy)'}")
    r = timed("probe(quick=True) all groups", lambda: probe(backend=backend, quick=True))
    print(f"  efficiencies: {r.efficiencies(r.devices[0].index)}")
    if args.full:
        timed("probe(quick=False) all groups", lambda: probe(backend=backend, quick=False))
    backend.close()
    return 0


def sweep() -> int:
    """bf16 matmul: the probe's sizes vs every square size 1024..16384 step 1024 plus transformer shapes."""
    import torch

    from advisor.catalog import get_gpu
    from advisor.probing import kernels as K

    if not torch.cuda.is_available():
        print("--sweep needs a CUDA GPU")
        return 1
    name = torch.cuda.get_device_name(0)
    try:
        spec = get_gpu(name)
    except Exception:
        spec = None
    from advisor.device import CudaDevice

    env = K.cuda_env(CudaDevice(0), spec=spec, quick=False)
    K.warm_device(env, 2.0)
    probe_best = max((K.run_matmul(env, "bf16", *s) for s in K.GPU_MATMUL_SHAPES), key=lambda r: r.value or 0)
    wide = [(n, n, n) for n in range(1024, 16385, 1024)] + [(m, n, k) for m in (2048, 4096, 8192, 16384)
                                                           for n, k in ((11008, 4096), (4096, 11008), (14336, 4096))]
    wide_best = max((K.run_matmul(env, "bf16", *s) for s in wide), key=lambda r: r.value or 0)
    print(f"{name}: probe best {probe_best.value:.1f} TFLOP/s at {probe_best.shape}; "
          f"sweep best {wide_best.value:.1f} at {wide_best.shape}; "
          f"probe/sweep = {probe_best.value / wide_best.value:.3f}"
          + (f"; sweep = {wide_best.fraction_of_peak:.1%} of spec" if wide_best.fraction_of_peak else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
