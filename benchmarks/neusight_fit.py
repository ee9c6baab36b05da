"""Fit per-architecture kernel efficiencies on NeuSight's TRAIN split only (the test split is never read here).

Reads the train files listed in ``benchmarks/neusight_eval.py`` (P4, P100-PCIe, T4, V100-PCIe, A100-PCIe-40GB;
PyTorch 2.1, fp32) and prints, per card and per architecture:

* ``memory``: achieved DRAM bandwidth of PyTorch's elementwise kernels as a fraction of the spec bandwidth, the
  slope of measured = a + bytes / bandwidth over ops moving >= 16 MiB (the intercept ``a`` is the harness's host
  lead and the kernel's fixed latency, which this data cannot tell apart);
* ``matmul_vector``: fp32 GEMMs on the CUDA cores (``nn.Linear``, TF32 off, as PyTorch defaults) as a fraction of
  the FP32 peak at the card's sustained clock, the value that makes the estimator's tile/wave model
  (``advisor.estimator.gemm.gemm_seconds``) match the median compute-bound row (kernel time >= 3x the harness's
  lead, large GEMMs: smallest dimension >= 512);
* ``norm_memory``: the bandwidth layer norm reaches relative to the elementwise kernels (same slope fit), and
  ``softmax_vs_elementwise`` the same for softmax (reported only: the estimator's softmax ops are not a class of
  their own).

Per architecture the median over its cards is taken; a power-limited card (``advisor.estimator.power``) whose
GEMM rate falls with size is reported but left out of the GEMM figure (the clock, not the kernel, sets it).
The figures printed here are the `measured` memory / matmul_vector / norm_memory figures of the profiles
(``advisor/profiles/{pascal,turing,volta,ampere}.toml``).

``--simt`` also searches the SIMT tile model's two free figures (``advisor.estimator.gemm.SIMT_SM_AREA``: output
elements of tiles one SM runs at once; ``SIMT_K_OVERHEAD``: a tile's fixed cost in elements of K) on a fixed
random 4,000-row subset of the train ``nn.Linear`` rows (P4 left out), refitting ``matmul_vector`` per card for
each pair, and prints the median |error| and signed median of each.

``--alignment`` compares the large fp32 ``nn.Linear`` rows with an odd N or K against those whose N and K are
multiples of 4: cuBLAS's SIMT sgemm kernels lose nothing off the 16-byte grid (medians within 2.1% on every card).

    .venv/bin/python benchmarks/neusight_fit.py [--data DIR] [--simt] [--alignment]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import neusight_eval as ne  # noqa: E402

from advisor.catalog import get_gpu  # noqa: E402
from advisor.estimator import gemm  # noqa: E402
from advisor.estimator.gemm import gemm_seconds  # noqa: E402
from advisor.estimator.power import power_limited, sustained_clock  # noqa: E402
from advisor.estimator.profiles import profile_for  # noqa: E402

BIG_BYTES = 16 * 2**20


_slope = ne.relative_least_squares


def fit(rows: list[ne.Row]) -> dict[str, dict[str, float]]:
    """Per train card: memory, matmul_vector, norm/softmax bandwidth ratios, and whether it is power-limited."""
    train = [r for r in rows if r.split == "train"]
    harness = ne.fit_harness(train)
    out: dict[str, dict[str, float]] = {}
    for dev in ne.TRAIN_DEVICES:
        spec = get_gpu(ne.DEVICES[dev])
        bw = spec.memory_bandwidth_bytes_s
        clock = sustained_clock(spec).fraction
        mine = [r for r in train if r.device == dev]
        bws = {}
        for cls in ("elementwise", "layernorm", "softmax"):
            pts = [(ne.op_cost(r).bytes, r.latency_s) for r in mine
                   if r.op_class == cls and ne.op_cost(r).bytes >= BIG_BYTES]
            if len(pts) >= 3:
                bws[cls] = 1.0 / _slope(pts)[1] / bw
        lead = harness[(dev, "linear")].lead_s
        ratios = []
        for r in mine:
            if r.op != "linear":
                continue
            b, m, n, k = r.dims
            gm, gn, gk = b * m, k, n
            kernel = r.latency_s - lead
            if min(gm, gn, gk) < 512 or kernel < 3 * lead:
                continue
            at_peak = gemm_seconds(gm, gn, gk, rate_flops=spec.fp32_tflops * 1e12 * clock, sms=spec.sm_count,
                                   simt=True)
            ratios.append(at_peak / kernel)
        out[dev] = {"arch": profile_for(spec).id, "memory": bws.get("elementwise", 0.0),
                    "matmul_vector": statistics.median(ratios) if ratios else 0.0, "gemm_rows": len(ratios),
                    "norm_vs_elementwise": bws.get("layernorm", 0.0) / bws["elementwise"] if bws else 0.0,
                    "softmax_vs_elementwise": bws.get("softmax", 0.0) / bws["elementwise"] if bws else 0.0,
                    "power_limited": power_limited(spec), "clock": clock}
    return out


def by_arch(cards: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median per architecture (power-limited cards left out of the GEMM figure when the arch has another)."""
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for c in cards.values():
        groups[str(c["arch"])].append(c)
    out = {}
    for arch, cs in groups.items():
        full = [c for c in cs if not c["power_limited"]] or cs
        out[arch] = {"memory": round(statistics.median(c["memory"] for c in cs), 2),
                     "matmul_vector": round(statistics.median(c["matmul_vector"] for c in full), 2),
                     "norm_memory": round(statistics.median(c["norm_vs_elementwise"] for c in cs), 2)}
    return out


def alignment_split(rows: list[ne.Row]) -> dict[str, tuple[float, int, float, int]]:
    """Per train card: median TFLOP/s of large fp32 GEMMs with an odd N or K, and on the 16-byte grid.

    On the grid: N and K multiples of 4 (16 bytes at fp32, what tensor-core kernels need); each with its row count.
    cuBLAS's SIMT sgemm kernels have no alignment requirement; this is the check that they lose nothing off the grid
    (``advisor.estimator.gemm.SIMT_SOURCE``).  Same rows as ``fit``'s GEMM figure: smallest dimension >= 512, kernel
    time >= 3x the harness's lead (the lead taken off).
    """
    train = [r for r in rows if r.split == "train"]
    harness = ne.fit_harness(train)
    out = {}
    for dev in ne.TRAIN_DEVICES:
        lead = harness[(dev, "linear")].lead_s
        odd, grid = [], []
        for r in train:
            if r.device != dev or r.op != "linear":
                continue
            b, m, n, k = r.dims
            kernel = r.latency_s - lead
            if min(b * m, n, k) < 512 or kernel < 3 * lead:
                continue
            rate = 2.0 * b * m * n * k / kernel / 1e12
            if n % 2 or k % 2:
                odd.append(rate)
            elif n % 4 == 0 and k % 4 == 0:
                grid.append(rate)
        if odd and grid:
            out[dev] = (statistics.median(odd), len(odd), statistics.median(grid), len(grid))
    return out


SIMT_GRID = ((1024, 0), (2048, 0), (4096, 0), (4096, 16), (8192, 0), (8192, 16), (16384, 16), (16384, 32),
             (16384, 128))


def simt_search(rows: list[ne.Row]) -> list[tuple[int, int, float, float]]:
    """(SM area, K overhead, median |error|, signed median) over a fixed train subset, per ``SIMT_GRID`` pair."""
    train = [r for r in rows if r.split == "train"]
    harness = ne.fit_harness(train)
    linear = [r for r in train if r.op == "linear" and r.device != "Tesla P4"]
    subset = random.Random(0).sample(linear, min(4000, len(linear)))
    saved = gemm.SIMT_SM_AREA, gemm.SIMT_K_OVERHEAD
    out = []
    try:
        for area, kov in SIMT_GRID:
            gemm.SIMT_SM_AREA, gemm.SIMT_K_OVERHEAD = area, kov
            errs = []
            for dev in ne.TRAIN_DEVICES:
                if dev == "Tesla P4":
                    continue
                spec = get_gpu(ne.DEVICES[dev])
                rate = spec.fp32_tflops * 1e12 * sustained_clock(spec).fraction
                bw = ne.rates_for(dev).memory_bytes_s
                h = harness[(dev, "linear")]

                def kernel(r: ne.Row, eff: float, spec: object = spec, rate: float = rate, bw: float = bw) -> float:
                    b, m, n, k = r.dims
                    tc = gemm_seconds(b * m, k, n, rate_flops=rate * eff, sms=spec.sm_count, simt=True)  # type: ignore[attr-defined]
                    return max(tc, ne.op_cost(r).bytes / bw)

                mine = [r for r in subset if r.device == dev]
                big = [r for r in mine if min(r.dims[0] * r.dims[1], r.dims[2], r.dims[3]) >= 512
                       and r.latency_s - h.lead_s > 3 * h.lead_s]
                eff = statistics.median(kernel(r, 1.0) / (r.latency_s - h.lead_s) for r in big)
                errs += [max(h.floor_s, h.lead_s + kernel(r, eff)) / r.latency_s - 1 for r in mine]
            out.append((area, kov, statistics.median(abs(e) for e in errs), statistics.median(errs)))
    finally:
        gemm.SIMT_SM_AREA, gemm.SIMT_K_OVERHEAD = saved
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="NeuSight's dataset folder (default: from the clone at $NEUSIGHT_REPO)")
    ap.add_argument("--simt", action="store_true", help="also search the SIMT tile model's SM area and K overhead")
    ap.add_argument("--alignment", action="store_true",
                    help="also compare large fp32 GEMMs off the 16-byte grid (odd N or K) with those on it")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data if args.data is not None else ne.extract_from_mirror(Path(tmp))
        rows = ne.load_rows(data, ("train",))
    if not rows:
        print("error: no NeuSight train rows found\nhint: pass NeuSight's dataset folder with --data", file=sys.stderr)
        return 2
    cards = fit(rows)
    print("card                     arch     memory  matmul_vector (rows)  norm/elem  softmax/elem  clock  "
          "power-limited")
    for dev, c in cards.items():
        print(f"{dev:24s} {c['arch']:8s} {c['memory']:6.3f}  {c['matmul_vector']:6.3f} ({c['gemm_rows']:4d})       "
              f"{c['norm_vs_elementwise']:6.2f}     {c['softmax_vs_elementwise']:6.2f}     {c['clock']:.2f}   "
              f"{'yes' if c['power_limited'] else 'no'}")
    print("per architecture (median of its cards):")
    for arch, f in by_arch(cards).items():
        print(f"  {arch:8s} memory {f['memory']:.2f}  matmul_vector {f['matmul_vector']:.2f}  "
              f"norm_memory {f['norm_memory']:.2f}")
    if args.alignment:
        print("fp32 nn.Linear, smallest dimension >= 512: median TFLOP/s with an odd N or K vs N and K multiples of 4")
        for dev, (odd, n_odd, grid, n_grid) in alignment_split(rows).items():
            print(f"  {dev:24s} odd {odd:6.2f} ({n_odd:4d})  on the grid {grid:6.2f} ({n_grid:4d})  "
                  f"ratio {odd / grid:.3f}")
    if args.simt:
        print("SIMT tile model (train nn.Linear subset): SM area, K overhead -> median |error|, signed median")
        for area, kov, med, signed in simt_search(rows):
            print(f"  {area:6d} {kov:4d}  {med:6.1%}  {signed:+6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
