"""The measured error spread per evidence level: where ``advisor.estimator.uncertainty.RANGE_QUANTILES`` comes from.

For every row of the two regression sets, ``measured / predicted`` step time:

* the shared H200 / H100 validate runs (tests/data/gpu-runs), replayed with each card's own probe (evidence
  ``calibrated``) and with the spec sheet only (the Hopper profile's level, ``measured``);
* the published-measurements table's throughput rows (tests/data/published_measurements.csv, uncalibrated), at
  the evidence level of the row's card's profile (a throughput error e is a time ratio 1 + e).

and prints, per level, the rows, the 5th / 95th percentiles (nearest rank on the sorted ratios) and how many rows
the current ``RANGE_QUANTILES`` cover.  ``inherited`` has no row (no end-to-end check exists for those families):
its line says so and gives the set range, which no row measures.

    .venv/bin/python benchmarks/range_widths.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advisor.catalog import get_gpu  # noqa: E402
from advisor.estimator.profiles import profile_for  # noqa: E402
from advisor.estimator.uncertainty import RANGE_QUANTILES  # noqa: E402

RUNS = ROOT / "tests" / "data" / "gpu-runs"
CARDS = {"h200-2026-11-28": "h200-sxm-141gb", "h100-2026-11-28": "h100-sxm5-80gb"}


#: (profile, set) -> signed errors (predicted / measured - 1 of time or rate) of the uncalibrated rows.
BY_PROFILE: dict[tuple[str, str], list[float]] = {}


def replay_ratios() -> dict[str, list[float]]:
    """Measured / predicted step time of the shared runs, by evidence level."""
    from advisor import validate as v

    out: dict[str, list[float]] = {"calibrated": [], "measured": []}
    for folder, card in CARDS.items():
        for calibration in ("probe", "none"):
            level = "calibrated" if calibration == "probe" else profile_for(get_gpu(card)).evidence
            for part in ("a", "b"):
                doc = json.loads((RUNS / folder / f"validate-{part}.json").read_text())
                cal = str(RUNS / folder / "probe-full.json") if calibration == "probe" else None
                for r in v.replay(doc, calibration=cal).rows:
                    if r.measurement is not None and r.prediction.step_s and r.measurement.step_s:
                        out.setdefault(level, []).append(r.measurement.step_s / r.prediction.step_s)
                        if calibration == "none":
                            BY_PROFILE.setdefault((profile_for(get_gpu(card)).id, "shared runs (time)"), []).append(
                                r.prediction.step_s / r.measurement.step_s - 1.0)
    return out


def published_ratios() -> dict[str, list[float]]:
    """Measured / predicted step time of the published table's throughput rows, by their card's evidence level."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import published_table as table

    out: dict[str, list[float]] = {}
    for r in table.evaluate():
        if r.kind != "throughput" or r.error is None:
            continue
        profile = profile_for(get_gpu(r.gpu))
        out.setdefault(profile.evidence, []).append(1.0 + r.error)
        BY_PROFILE.setdefault((profile.id, "published (rate)"), []).append(r.error)
    return out


def quantiles(ratios: list[float]) -> tuple[float, float]:
    """(5th, 95th) percentile, nearest rank."""
    s = sorted(ratios)
    pick = lambda q: s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]  # noqa: E731
    return pick(0.05), pick(0.95)


def main() -> int:
    pools: dict[str, list[float]] = {}
    for part in (replay_ratios(), published_ratios()):
        for level, ratios in part.items():
            pools.setdefault(level, []).extend(ratios)
    print("| evidence | rows | 5th | 95th | RANGE_QUANTILES | inside |")
    print("|---|---:|---:|---:|---|---:|")
    for level, (qlo, qhi) in RANGE_QUANTILES.items():
        ratios = pools.get(level, [])
        if not ratios:
            print(f"| {level} | 0 | - | - | {qlo:.2f}-{qhi:.2f} | not measured |")
            continue
        lo, hi = quantiles(ratios)
        inside = sum(qlo <= x <= qhi for x in ratios)
        print(f"| {level} | {len(ratios)} | {lo:.2f} | {hi:.2f} | {qlo:.2f}-{qhi:.2f} | {inside}/{len(ratios)} |")
    import statistics

    from advisor.estimator.profiles import profile_by_id

    print()
    print("| profile | evidence | set | rows | median abs error | signed median |")
    print("|---|---|---|---:|---:|---:|")
    for (pid, which), errs in sorted(BY_PROFILE.items()):
        print(f"| {pid} | {profile_by_id(pid).evidence} | {which} | {len(errs)} | "
              f"{statistics.median(abs(e) for e in errs):.1%} | {statistics.median(errs):+.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
