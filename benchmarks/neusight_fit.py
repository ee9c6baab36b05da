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

``--simt`` also searches the SIMT tile model's free figures (``advisor.estimator.gemm``: ``SIMT_SATURATION_WARPS``,
resident warps per 64 FP32 lanes that keep an SM busy; ``SIMT_LDS_EXPOSED``, the shared-memory time left beside the
multiply-adds; ``SIMT_K_OVERHEAD``, a tile's fixed cost in elements of K; ``SPLIT_K_DEPTH`` and
``SIMT_SPLIT_CTAS_PER_SM``, when cuBLAS splits K) on fixed random 4,000-row subsets of the train ``nn.Linear`` and
``torch.bmm`` rows (P4 left out), refitting ``matmul_vector`` per card and op for each set, and prints the median
|error| and signed median of each, with the model's H100 SGEMM at 1024^3 over its 4096^3 rate (the shared probe:
0.736).  ``--kernels`` prints, from the rows' kernel names and grids, the per-SM rate each sgemm kernel sustains
(SMs holding >= 4 CTAs) and one CTA alone on an SM reaches: the evidence for ``SIMT_LDS_EXPOSED`` and
``SIMT_SATURATION_WARPS``.

``--alignment`` compares the large fp32 ``nn.Linear`` rows with an odd N or K against those whose N and K are
multiples of 4: cuBLAS's SIMT sgemm kernels lose nothing off the 16-byte grid (medians within 2.1% on every card).

    .venv/bin/python benchmarks/neusight_fit.py [--data DIR] [--simt] [--kernels] [--alignment]
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import re
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
from advisor.estimator.gemm import fp32_lanes, gemm_seconds  # noqa: E402
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
            at_peak = gemm_seconds(gm, gn, gk, rate_flops=spec.fp32_tflops * 1e12 * clock, sms=spec.sm_count or 0,
                                   simt=True, lanes=fp32_lanes(spec))
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


#: (SIMT_SATURATION_WARPS, SIMT_LDS_EXPOSED, SIMT_K_OVERHEAD, SPLIT_K_DEPTH, SIMT_SPLIT_CTAS_PER_SM) sets searched by
#: ``--simt`` (the first is the model's).
SIMT_GRID: tuple[tuple[float, ...], ...] = (
    (6.0, 0.3, 16, 2.0, 8), (3.0, 0.3, 16, 2.0, 8), (10.0, 0.3, 16, 2.0, 8), (1e-9, 0.3, 16, 2.0, 8),
    (6.0, 0.15, 16, 2.0, 8), (6.0, 0.6, 16, 2.0, 8), (6.0, 0.3, 0, 2.0, 8), (6.0, 0.3, 64, 2.0, 8),
    (6.0, 0.3, 16, 1.0, 8), (6.0, 0.3, 16, 0.0, 8), (6.0, 0.3, 16, 2.0, 2), (6.0, 0.3, 16, 2.0, 10**9))
SIMT_FIGURES = ("SIMT_SATURATION_WARPS", "SIMT_LDS_EXPOSED", "SIMT_K_OVERHEAD", "SPLIT_K_DEPTH",
                "SIMT_SPLIT_CTAS_PER_SM")


def _gemm_dims(r: ne.Row) -> tuple[int, int, int, int]:
    """(M, N, K, batch) of a NeuSight linear / bmm row: nn.Linear(N, K) on (B, M, N); bmm (B, M, N) x (B, N, K)."""
    b, m, n, k = r.dims
    return (b * m, k, n, 1) if r.op == "linear" else (m, k, n, b)


def simt_search(rows: list[ne.Row]) -> list[tuple[tuple[float, ...], dict[str, tuple[float, float]], float]]:
    """Per ``SIMT_GRID`` set: median |error| and signed median per op on fixed train subsets; H100 1024^3 / 4096^3.

    ``matmul_vector`` is refitted per card and op on the subset's large rows (smallest dimension >= 512, kernel time
    >= 3x the harness's lead), as ``fit`` does.
    """
    train = [r for r in rows if r.split == "train"]
    harness = ne.fit_harness(train)
    subsets = {op: random.Random(0).sample(sel, min(4000, len(sel)))
               for op in ("linear", "bmm")
               for sel in [[r for r in train if r.op == op and r.device != "Tesla P4"]]}
    saved = tuple(getattr(gemm, f) for f in SIMT_FIGURES)
    h100 = get_gpu("h100-sxm5-80gb")
    out: list[tuple[tuple[float, ...], dict[str, tuple[float, float]], float]] = []
    try:
        for figures in SIMT_GRID:
            for name, value in zip(SIMT_FIGURES, figures, strict=True):
                setattr(gemm, name, value)
            errs: dict[str, tuple[float, float]] = {}
            for op, subset in subsets.items():
                op_errs = []
                for dev in ne.TRAIN_DEVICES:
                    if dev == "Tesla P4":
                        continue
                    spec = get_gpu(ne.DEVICES[dev])
                    rate = spec.fp32_tflops * 1e12 * sustained_clock(spec).fraction
                    bw = ne.rates_for(dev).memory_bytes_s
                    h = harness[(dev, op)]

                    def kernel(r: ne.Row, eff: float, spec: object = spec, rate: float = rate, bw: float = bw) -> float:
                        m, n, k, batch = _gemm_dims(r)
                        tc = gemm_seconds(m, n, k, rate_flops=rate * eff, sms=spec.sm_count,  # type: ignore[attr-defined]
                                          simt=True, batch=batch, lanes=fp32_lanes(spec))  # type: ignore[arg-type]
                        return max(tc, ne.op_cost(r).bytes / bw)

                    mine = [r for r in subset if r.device == dev]
                    big = [r for r in mine if min(_gemm_dims(r)[:3]) >= 512 and r.latency_s - h.lead_s > 3 * h.lead_s]
                    eff = statistics.median(kernel(r, 1.0) / (r.latency_s - h.lead_s) for r in big) if big else 1.0
                    op_errs += [max(h.floor_s, h.lead_s + kernel(r, eff)) / r.latency_s - 1 for r in mine]
                errs[op] = (statistics.median(abs(e) for e in op_errs), statistics.median(op_errs))
            t = {n: gemm_seconds(n, n, n, rate_flops=1e12, sms=h100.sm_count or 0, simt=True, lanes=fp32_lanes(h100))
                 for n in (1024, 4096)}
            out.append((figures, errs, (t[4096] / 64) / t[1024]))
    finally:
        for name, value in zip(SIMT_FIGURES, saved, strict=True):
            setattr(gemm, name, value)
    return out


KERNEL_NAME = re.compile(r"sgemm_(\d+)x(\d+)(_sliced1x4)?")


def kernel_rates(data: Path) -> dict[tuple[str, str], tuple[float, int, float, int]]:
    """Per train card and sgemm kernel: per-SM rate over the FP32 peak with >= 4 CTAs an SM, and with one CTA alone.

    From the train CSVs' ``Kernel Name`` and grid columns (each with its row count); a row's tile work is its CTAs x
    the kernel's tile x its K slice (K over ``gridDim.z`` for nn.Linear, where z splits K; z is the batch for bmm);
    rows whose kernel time is under 4x the harness's lead, or whose K slice is under 256, are left out.
    """
    rows = ne.load_rows(data, ("train",))
    harness = ne.fit_harness(rows)
    sat: dict[tuple[str, str], list[float]] = defaultdict(list)
    alone: dict[tuple[str, str], list[float]] = defaultdict(list)
    for dev in ne.TRAIN_DEVICES:
        spec = get_gpu(ne.DEVICES[dev])
        sms = spec.sm_count or 1
        peak_sm = spec.fp32_tflops * 1e12 / sms
        for op in ("linear", "bmm"):
            path = data / f"train/collect/{op}/p2.1.0/{dev}.csv"
            if not path.is_file():
                continue
            lead = harness[(dev, op)].lead_s
            with path.open(newline="") as fh:
                for rec in csv.DictReader(fh):
                    name = KERNEL_NAME.search(rec["Kernel Name"])
                    if not name:
                        continue
                    tm, tn = int(name[1]), int(name[2])
                    n = int(float(rec["N"]))  # the reduced dimension of both ops
                    ctas = int(rec["Grid x"]) * int(rec["Grid y"]) * int(rec["Grid z"])
                    depth = math.ceil(n / (int(rec["Grid z"]) if op == "linear" else 1))
                    kernel = float(rec["Latency"]) * 1e-3 - lead
                    if kernel < 4 * lead or depth < 256:
                        continue
                    rate = ctas * tm * tn * 2.0 * depth / kernel / sms / peak_sm
                    key = (dev, f"{tm}x{tn}{name[3] or ''}")
                    if ctas >= 4 * sms:
                        sat[key].append(rate)
                    elif sms // 2 < ctas <= sms:
                        alone[key].append(rate)
    return {key: (statistics.median(v), len(v), statistics.median(alone[key]) if alone.get(key) else 0.0,
                  len(alone.get(key, ()))) for key, v in sorted(sat.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="NeuSight's dataset folder (default: from the clone at $NEUSIGHT_REPO)")
    ap.add_argument("--simt", action="store_true", help="also search the SIMT tile model's figures")
    ap.add_argument("--kernels", action="store_true",
                    help="also print each sgemm kernel's per-SM rate, saturated and one CTA alone")
    ap.add_argument("--alignment", action="store_true",
                    help="also compare large fp32 GEMMs off the 16-byte grid (odd N or K) with those on it")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data if args.data is not None else ne.extract_from_mirror(Path(tmp))
        rows = ne.load_rows(data, ("train",))
        kernels = kernel_rates(ne.dataset_dir(data)) if args.kernels and rows else {}
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
    if kernels:
        print("sgemm kernels (train rows): per-SM rate over the FP32 peak, >= 4 CTAs an SM (rows) | one CTA alone "
              "(rows)")
        for (dev, name), (rate, n, one, n_one) in kernels.items():
            print(f"  {dev:24s} {name:16s} {rate:6.3f} ({n:5d})  {one:6.3f} ({n_one:4d})")
    if args.simt:
        print("SIMT tile model (train subsets): warps, LDS exposed, K overhead, split-K depth -> linear |error| "
              "signed, bmm |error| signed, H100 1024^3 / 4096^3 rate (probe 0.736)")
        for figures, errs, h100 in simt_search(rows):
            print("  " + " ".join(f"{f:g}" for f in figures) + "  "
                  + "  ".join(f"{op} {med:6.1%} {signed:+6.1%}" for op, (med, signed) in errs.items())
                  + f"  H100 {h100:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
