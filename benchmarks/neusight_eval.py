"""The estimator's per-op cost model against NeuSight's kernel-level measurements, per card x op class.

NeuSight (Lee et al., "NeuSight: Forecasting GPU Performance for Deep Learning Training and Inference",
ASPLOS 2025; github.com/sitar-lab/NeuSight, MIT license) timed single PyTorch 2.1 ops (fp32, TF32 off) over many
shapes with CUDA events, the mean of the 5 fastest of 25 runs (``neusight/Dataset/collect.py``):
``linear`` (``nn.Linear(N, K)`` on a (B, M, N) input), ``bmm`` ((B, M, N) x (B, N, K)), elementwise ops on a
(B, H) tensor (add/mul/div/pow of two tensors, the ``u`` variants with a scalar, relu, gelu, tanh), layer norm
and softmax over H.  Files read (``scripts/asplos/data/dataset/``):

* train (P4, P100, T4, V100, A100-PCIe-40GB): ``train/collect/{linear,bmm}/p2.1.0/<device>.csv``,
  ``train/collect/<elementwise op>.csv`` (small shapes), ``train/{elem,ln,softmax}.csv`` (large shapes),
  ``train/collect/{ln,softmax}.csv``;
* test (the held-out split; adds A100-80GB-PCIe, H100 80GB HBM3, L4): ``test/{linear,bmm,elem,ln,softmax}.csv``.

Only train files feed any fitted figure (``benchmarks/neusight_fit.py``); test files only measure generalization.
Each row is priced by the estimator's own per-op path (``advisor.estimator.time``: GEMM tiles/waves for linear and
bmm, bytes / achieved bandwidth for the rest) on the catalog card with its default (uncalibrated) efficiencies and
sustained clock.  An isolated op timed by CUDA events also waits for its own host dispatch (``Harness``, fitted per
card on train rows); that is applied here only, never in the estimator (in a real step kernels queue behind each
other and that wait is host time).

    .venv/bin/python benchmarks/neusight_eval.py [--data DIR] [--split train|test|both] [--markdown] [--json]
        [--baseline BEFORE.json] [--write-sample tests/data/neusight]

``--data`` is NeuSight's ``scripts/asplos/data/dataset`` folder (or the repository root holding it); without it
the needed files are read with ``git show`` from the clone (bare or not) named by ``$NEUSIGHT_REPO`` into a
temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from advisor.catalog import get_gpu  # noqa: E402
from advisor.estimator.ops import prepare_ops  # noqa: E402
from advisor.estimator.power import sustained_clock  # noqa: E402
from advisor.estimator.profiles import efficiency_for  # noqa: E402
from advisor.estimator.time import card_rates, ops_time_detail  # noqa: E402
from advisor.workload.base import OpCost  # noqa: E402

#: A git clone of github.com/sitar-lab/NeuSight (bare or not), when ``--data`` is not given.
MIRROR = Path(os.environ["NEUSIGHT_REPO"]) if os.environ.get("NEUSIGHT_REPO") else None
DATASET = "scripts/asplos/data/dataset"

#: NeuSight's device names (``torch.cuda.get_device_name``) -> catalog ids.
DEVICES: dict[str, str] = {
    "Tesla P4": "p4",
    "Tesla P100-PCIE-16GB": "p100-pcie-16gb",
    "Tesla T4": "t4",
    "Tesla V100-PCIE-32GB": "v100-pcie-32gb",
    "NVIDIA A100-PCIE-40GB": "a100-pcie-40gb",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "NVIDIA H100 80GB HBM3": "h100-sxm5-80gb",
    "NVIDIA L4": "l4",
}
TRAIN_DEVICES = ("Tesla P4", "Tesla P100-PCIE-16GB", "Tesla T4", "Tesla V100-PCIE-32GB", "NVIDIA A100-PCIE-40GB")
ELEMENTWISE = ("add", "mul", "div", "pow", "addu", "mulu", "divu", "powu", "relu", "gelu", "tanh")
BINARY = ("add", "mul", "div", "pow")
#: Op class each NeuSight op is reported under.
OP_CLASS = {"linear": "linear", "bmm": "bmm", "ln": "layernorm", "softmax": "softmax",
            **{op: "elementwise" for op in ELEMENTWISE}}
CLASSES = ("linear", "bmm", "elementwise", "layernorm", "softmax")
#: FLOPs per element of each vector op (add/mul 1; div, pow, tanh, gelu a few; layer norm ~8: mean, variance,
#: normalise, scale, shift; softmax ~5: max, exp, sum, divide); they never bind at fp32 on these cards.
FLOPS_PER_ELEM = {"add": 1, "mul": 1, "div": 1, "pow": 4, "relu": 1, "gelu": 8, "tanh": 4, "ln": 8, "softmax": 5}
ELEM_BYTES = 4  # every NeuSight tensor is fp32

TRAIN_FILES = ("train/collect/linear/p2.1.0/{dev}.csv", "train/collect/bmm/p2.1.0/{dev}.csv")
TRAIN_VEC_FILES = ("train/elem.csv", "train/ln.csv", "train/softmax.csv", "train/collect/ln.csv",
                   "train/collect/softmax.csv", *(f"train/collect/{op}.csv" for op in ELEMENTWISE))
TEST_FILES = ("test/linear.csv", "test/bmm.csv", "test/elem.csv", "test/ln.csv", "test/softmax.csv")


@dataclass(frozen=True, slots=True)
class Row:
    """One measured op."""

    split: str  # train / test
    device: str  # NeuSight's device name
    op: str  # linear, bmm, add, ..., ln, softmax
    dims: tuple[int, ...]  # (B, M, N, K) for linear/bmm, (B, H) otherwise
    latency_s: float

    @property
    def op_class(self) -> str:
        return OP_CLASS[self.op]


def needed_files() -> list[str]:
    """Dataset-relative paths this evaluation reads."""
    out = [f.format(dev=d) for f in TRAIN_FILES for d in TRAIN_DEVICES]
    return [*out, *TRAIN_VEC_FILES, *TEST_FILES]


def neusight_repo() -> Path:
    """The NeuSight clone named by ``$NEUSIGHT_REPO``; exits with an error and a hint when there is none."""
    if MIRROR is None or not MIRROR.exists():
        where = "NEUSIGHT_REPO is not set" if MIRROR is None else f"no NeuSight clone at {MIRROR}"
        raise SystemExit(f"error: {where}\nhint: pass --data DIR (NeuSight's {DATASET} folder) or set NEUSIGHT_REPO "
                         "to a clone of github.com/sitar-lab/NeuSight")
    return MIRROR


def extract_from_mirror(dest: Path, repo: Path | None = None) -> Path:
    """Copy the needed CSVs from the NeuSight clone's HEAD (default ``$NEUSIGHT_REPO``) into ``dest``.

    Returns the dataset folder.
    """
    repo = repo or neusight_repo()
    base = dest / "dataset"
    for rel in needed_files():
        blob = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{DATASET}/{rel}"], capture_output=True)
        if blob.returncode:
            continue  # reported as missing by load_rows
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob.stdout)
    return base


def dataset_dir(path: Path) -> Path:
    """The folder holding ``train/`` and ``test/`` (accepts the repository root or the dataset folder)."""
    for cand in (path, path / DATASET, path / "dataset"):
        if (cand / "train").is_dir() or (cand / "test").is_dir():
            return cand
    raise SystemExit(f"error: no NeuSight train/ or test/ folder under {path}\n"
                     f"hint: pass NeuSight's {DATASET} folder (or the repository root) with --data")


def _read(path: Path, split: str, ops: Iterable[str] | None = None) -> Iterator[Row]:
    want = set(ops) if ops is not None else None
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            op, dev = rec["OPName"], rec["Device"]
            if op not in OP_CLASS or dev not in DEVICES or (want is not None and op not in want):
                continue
            try:
                lat = float(rec["Latency"]) * 1e-3  # NeuSight records milliseconds
                dims = (tuple(int(float(rec[k])) for k in ("B", "M", "N", "K")) if op in ("linear", "bmm")
                        else (int(float(rec["B"])), int(float(rec["H"]))))
            except (KeyError, ValueError):
                continue
            if lat > 0 and all(d > 0 for d in dims):
                yield Row(split, dev, op, dims, lat)


def load_rows(data: Path, splits: Iterable[str] = ("train", "test")) -> list[Row]:
    """Every usable row of the requested splits (duplicates of one shape on one card are kept once)."""
    base = dataset_dir(data)
    rows: dict[tuple[str, str, str, tuple[int, ...]], Row] = {}
    missing = []
    for split in splits:
        if split == "train":
            files = [f.format(dev=d) for f in TRAIN_FILES for d in TRAIN_DEVICES] + list(TRAIN_VEC_FILES)
        else:
            files = list(TEST_FILES)
        for rel in files:
            path = base / rel
            if not path.is_file():
                missing.append(rel)
                continue
            for r in _read(path, split):
                rows.setdefault((r.split, r.device, r.op, r.dims), r)
    if missing:
        print(f"note: {len(missing)} NeuSight file(s) absent, skipped: {', '.join(missing[:4])}"
              f"{' ...' if len(missing) > 4 else ''}", file=sys.stderr)
    return list(rows.values())


def op_cost(row: Row) -> OpCost:
    """The ``OpCost`` the estimator would build for this op (fp32: CUDA-core GEMMs, TF32 off in torch 2.1)."""
    if row.op in ("linear", "bmm"):
        b, m, n, k = row.dims
        if row.op == "linear":  # (B*M, N) x (N, K)^T + bias: one GEMM
            gm, gn, gk, batch = b * m, k, n, 1
            nbytes = ELEM_BYTES * (b * m * n + n * k + b * m * k + k)
        else:  # B GEMMs (M, N) x (N, K)
            gm, gn, gk, batch = m, k, n, b
            nbytes = ELEM_BYTES * b * (m * n + n * k + m * k)
        # a batched GEMM carries its batch as a 4th dimension: one kernel whose tiles share the waves
        # (advisor.estimator.gemm); the tracer does not emit these for torch.bmm yet (workload.aten_ops prices
        # batched matmuls by min_dim), so this is the estimator's GEMM model, not yet its traced-model path
        shape = (gm, gn, gk) if batch == 1 else (gm, gn, gk, batch)
        return OpCost(row.op, "matmul", "forward", 2.0 * batch * gm * gn * gk, float(nbytes),
                      tensor_core=False, min_dim=min(gm, gn, gk), gemms=(shape,))
    b, h = row.dims
    n = b * h
    tensors = 3 if row.op in BINARY else 2  # read x (and y), write out
    nbytes = ELEM_BYTES * (n * tensors + (2 * h if row.op == "ln" else 0))
    kind = "norm" if row.op == "ln" else "elementwise"
    return OpCost(row.op, kind, "forward", float(FLOPS_PER_ELEM.get(row.op.rstrip("u"), 1) * n), float(nbytes))


_RATES: dict[str, Any] = {}


def rates_for(device: str) -> Any:
    """The estimator's fp32 ``CardRates`` for a NeuSight device (default efficiencies, sustained clock)."""
    if device not in _RATES:
        spec = get_gpu(DEVICES[device])
        eff = efficiency_for(spec).replace(clock=sustained_clock(spec).fraction)
        peak = spec.fp32_tflops * 1e12
        _RATES[device] = card_rates(spec, "fp32", eff, peak, peak)
    return _RATES[device]


def kernel_seconds(row: Row) -> float:
    """The estimator's GPU time for the op: its roofline/GEMM time plus one kernel launch gap."""
    ops = prepare_ops([op_cost(row)], align_elems=4)
    return sum(ops_time_detail(ops, rates_for(row.device)).phases)


@dataclass(frozen=True, slots=True)
class Harness:
    """How NeuSight's timing of one isolated op relates to the kernel's own time, per card (fitted on train rows).

    CUDA events bracket the op: the start event runs at once on the idle GPU, the kernel only once the host has
    dispatched it, so ``measured = max(floor_s, lead_s + kernel)``: ``lead_s`` the host dispatch ahead of the
    kernel (it contains the GPU launch gap, so the estimator's ``launch_s`` is taken out of the kernel time),
    ``floor_s`` what the smallest ops measure.  Eval-only: never part of the estimator (in a step, kernels queue
    behind each other and this is host time).
    """

    floor_s: float
    lead_s: float


def _small(row: Row) -> bool:
    """An op too small to time beyond the harness.

    < 2 MFLOP (GEMMs) or <= 256 KiB moved (the rest: ~1 us at the P4's 192 GB/s).
    """
    cost = op_cost(row)
    return cost.flops < 2**21 if row.op in ("linear", "bmm") else cost.bytes <= 256 * 1024


def relative_least_squares(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of y = a + b x by least squares weighted by 1/y^2 (relative errors), closed form."""
    w = [1.0 / y**2 for _, y in points]
    sw = sum(w)
    sx = sum(wi * x for wi, (x, _) in zip(w, points, strict=True))
    sy = sum(wi * y for wi, (_, y) in zip(w, points, strict=True))
    sxx = sum(wi * x * x for wi, (x, _) in zip(w, points, strict=True))
    sxy = sum(wi * x * y for wi, (x, y) in zip(w, points, strict=True))
    b = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
    return (sy - b * sx) / sw, b


def fit_harness(rows: Iterable[Row]) -> dict[tuple[str, str], Harness]:
    """Per train card and op class.

    ``floor_s`` = median of its small ops (``_small``); ``lead_s`` = intercept of measured = a + bytes / bw over the
    card's elementwise ops moving >= 16 MiB (relative least squares), plus the class's floor above the elementwise floor
    (``nn.Linear`` dispatches more host work than ``torch.add``). A class without small ops takes the elementwise
    figures; cards without train rows the median of the train cards' figures per class.
    """
    by_dev: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.split == "train":
            by_dev[r.device].append(r)
    out: dict[tuple[str, str], Harness] = {}
    for dev, rs in by_dev.items():
        elem = [r for r in rs if r.op_class == "elementwise"]
        small = [r.latency_s for r in elem if _small(r)]
        big = [(op_cost(r).bytes, r.latency_s) for r in elem if op_cost(r).bytes >= 16 * 2**20]
        if not small or len(big) < 3:
            continue
        intercept, _slope = relative_least_squares(big)
        floor, lead = statistics.median(small), max(0.0, intercept)
        for cls in CLASSES:
            own = [r.latency_s for r in rs if r.op_class == cls and _small(r)]
            f = statistics.median(own) if own else floor
            out[(dev, cls)] = Harness(f, lead + f - floor)
    for cls in CLASSES:
        known = [h for (d, c), h in out.items() if c == cls]
        if known:
            mid = Harness(statistics.median(h.floor_s for h in known), statistics.median(h.lead_s for h in known))
            for dev in DEVICES:
                out.setdefault((dev, cls), mid)
    return out


def predict(row: Row, harness: Mapping[tuple[str, str], Harness]) -> float:
    """Predicted measured latency: the estimator's kernel time seen through NeuSight's harness."""
    h = harness.get((row.device, row.op_class), Harness(0.0, 0.0))
    kernel = kernel_seconds(row) - rates_for(row.device).launch_s
    return max(h.floor_s, h.lead_s + kernel)


def _p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def summarize(rows: Iterable[Row], harness: Mapping[tuple[str, str], Harness]
              ) -> dict[tuple[str, str, str], dict[str, float]]:
    """(split, device, op class) -> n, median |error|, p90 |error|, signed median (error = predicted/measured - 1)."""
    errs: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        e = predict(r, harness) / r.latency_s - 1.0
        errs[(r.split, r.device, r.op_class)].append(e)
        errs[(r.split, "all cards", r.op_class)].append(e)
    out = {}
    for key, es in errs.items():
        a = [abs(e) for e in es]
        out[key] = {"n": len(es), "median_abs": statistics.median(a), "p90_abs": _p90(a),
                    "signed_median": statistics.median(es)}
    return out


def _order(key: tuple[str, str, str]) -> tuple[int, int, int]:
    devs = [*DEVICES, "all cards"]
    return (0 if key[0] == "train" else 1, devs.index(key[1]), CLASSES.index(key[2]))


def render(summary: dict[tuple[str, str, str], dict[str, float]], markdown: bool = False) -> str:
    """A table, one line per split x card x op class."""
    keys = sorted(summary, key=_order)
    lines = []
    if markdown:
        lines += ["| split | card (catalog id) | op class | n | median abs | p90 abs | signed median |",
                  "|---|---|---|---|---|---|---|"]
    for key in keys:
        s = summary[key]
        card = f"{key[1]} ({DEVICES[key[1]]})" if key[1] in DEVICES else key[1]
        if markdown:
            lines.append(f"| {key[0]} | {card} | {key[2]} | {s['n']} | {s['median_abs']:.1%} | {s['p90_abs']:.1%} "
                         f"| {s['signed_median']:+.1%} |")
        else:
            lines.append(f"{key[0]:5s} {card:42s} {key[2]:12s} n={s['n']:5d}  med {s['median_abs']:6.1%}  "
                         f"p90 {s['p90_abs']:7.1%}  signed {s['signed_median']:+7.1%}")
    return "\n".join(lines)


SAMPLE_PER_GROUP = 10
SAMPLE_COLUMNS = ("device", "op", "B", "M", "N", "K", "H", "latency_ms")


def sample(rows: Iterable[Row], per_group: int = SAMPLE_PER_GROUP) -> list[Row]:
    """A small, deterministic subset of the test split.

    ``per_group`` rows per card x op class, evenly spread over the group's rows sorted by latency (small and large
    shapes alike).
    """
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r.split == "test":
            groups[(r.device, r.op_class)].append(r)
    out = []
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda r: (r.latency_s, r.op, r.dims))
        step = max(1, len(g) // per_group)
        out += g[step // 2::step][:per_group]
    return out


def write_sample(rows: list[Row], harness: Mapping[tuple[str, str], Harness], folder: Path) -> None:
    """``rows.csv`` (a ``sample`` of the test split) and ``harness.json`` (the train-fitted harness)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "rows.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(SAMPLE_COLUMNS)
        for r in sample(rows):
            b, m, n, k = r.dims if len(r.dims) == 4 else (r.dims[0], "", "", "")
            h = "" if len(r.dims) == 4 else r.dims[1]
            w.writerow((r.device, r.op, b, m, n, k, h, f"{r.latency_s * 1e3:.6g}"))
    doc = {f"{d}|{c}": {"floor_s": round(h.floor_s, 9), "lead_s": round(h.lead_s, 9)}
           for (d, c), h in sorted(harness.items())}
    (folder / "harness.json").write_text(json.dumps(doc, indent=1) + "\n")


def read_sample(folder: Path) -> tuple[list[Row], dict[tuple[str, str], Harness]]:
    """What ``write_sample`` wrote."""
    rows = []
    with (folder / "rows.csv").open(newline="") as fh:
        for rec in csv.DictReader(fh):
            keys = ("B", "M", "N", "K") if rec["op"] in ("linear", "bmm") else ("B", "H")
            rows.append(Row("test", rec["device"], rec["op"], tuple(int(rec[k]) for k in keys),
                            float(rec["latency_ms"]) * 1e-3))
    raw = json.loads((folder / "harness.json").read_text())
    harness = {tuple(k.split("|", 1)): Harness(v["floor_s"], v["lead_s"]) for k, v in raw.items()}
    return rows, harness  # type: ignore[return-value]


def render_compare(summary: dict[tuple[str, str, str], dict[str, float]], baseline: dict[str, Any]) -> str:
    """Markdown.

    Per split x card x op class, median / p90 / signed median before (``baseline``: an earlier ``--json`` output) and
    now.
    """
    old = {(r["split"], r["device"], r["op_class"]): r for r in baseline.get("rows", [])}
    lines = ["| split | card (catalog id) | op class | n | median abs: before -> after | p90 abs: before -> after "
             "| signed median: before -> after |", "|---|---|---|---|---|---|---|"]
    for key in sorted(summary, key=_order):
        s, b = summary[key], old.get(key)
        card = f"{key[1]} ({DEVICES[key[1]]})" if key[1] in DEVICES else f"**{key[1]}**"

        def pair(name: str, fmt: str, s: dict[str, float] = s, b: dict[str, float] | None = b) -> str:
            return (format(b[name], fmt) + " -> " if b else "") + format(s[name], fmt)

        lines.append(f"| {key[0]} | {card} | {key[2]} | {s['n']} | {pair('median_abs', '.1%')} | "
                     f"{pair('p90_abs', '.1%')} | {pair('signed_median', '+.1%')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    help="NeuSight's dataset folder (default: extracted from the clone at $NEUSIGHT_REPO)")
    ap.add_argument("--split", choices=("train", "test", "both"), default="both")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--baseline", type=Path, metavar="JSON",
                    help="an earlier --json output: print a Markdown before -> after table")
    ap.add_argument("--write-sample", type=Path, metavar="DIR",
                    help="also write a small test-split sample and the harness (tests/data/neusight)")
    args = ap.parse_args(argv)
    splits = ("train", "test") if args.split == "both" else (args.split,)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            try:
                data = extract_from_mirror(Path(tmp))
            except OSError as exc:  # no git on PATH, unreadable mirror
                print(f"error: cannot read the NeuSight clone at {MIRROR}: {exc}\nhint: pass --data DIR "
                      f"(NeuSight's {DATASET} folder)", file=sys.stderr)
                return 2
        else:
            data = args.data
            if not data.exists():
                print(f"error: {data} does not exist\nhint: pass NeuSight's {DATASET} folder", file=sys.stderr)
                return 2
        all_rows = load_rows(data, ("train", "test"))  # the floor is always taken from train rows
    harness = fit_harness(all_rows)
    rows = [r for r in all_rows if r.split in splits]
    if not rows:
        print("error: no NeuSight rows found\nhint: check --data", file=sys.stderr)
        return 2
    summary = summarize(rows, harness)
    if args.write_sample is not None:
        write_sample(all_rows, harness, args.write_sample)
    if args.baseline is not None:
        try:
            baseline = json.loads(args.baseline.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: cannot read the baseline {args.baseline}: {exc}\nhint: pass a file written by --json",
                  file=sys.stderr)
            return 2
        print(render_compare(summary, baseline))
    elif args.json:
        print(json.dumps({"harness": {f"{d} / {c}": [h.floor_s, h.lead_s] for (d, c), h in harness.items()},
                          "rows": [{"split": k[0], "device": k[1], "op_class": k[2], **v}
                                   for k, v in sorted(summary.items(), key=lambda kv: _order(kv[0]))]}, indent=1))
    else:
        print(f"{len(rows)} rows; harness floor / lead per card, us (fitted on train rows; linear, bmm, "
              f"elementwise, layernorm, softmax):")
        for d in DEVICES:
            hs = [harness[(d, c)] for c in CLASSES if (d, c) in harness]
            print(f"  {DEVICES[d]:16s} " + "  ".join(f"{h.floor_s * 1e6:4.0f}/{h.lead_s * 1e6:3.0f}" for h in hs))
        print(render(summary, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
