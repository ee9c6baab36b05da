"""The job a ranking is for and how candidates are priced and ranked.

Samples to process, cost, energy, the speed-up a larger count must bring, and the partial answer when nothing
fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from advisor.catalog import GpuSpec
from advisor.errors import EstimateError
from advisor.recommendation import Candidate, Rejection
from advisor.units import GiB

#: Average board power while training or serving, as a fraction of TDP.  Sustained
#: tensor-core work draws close to TDP; 0.8 is a middle figure for a mix of compute-bound
#: and memory-bound kernels.
POWER_UTILIZATION = 0.8
#: Default job when the user gives no dataset / token count.
IMAGENET_TRAIN_SAMPLES = 1_281_167  # ILSVRC-2012 training images
DEFAULT_TRAIN_TOKENS = 1_000_000_000
DEFAULT_INFER_SAMPLES = 100_000

#: A larger count of the same card must beat the best smaller count by this much to be listed.
MIN_SPEEDUP = 1.05

def job_size(workload: Any, mode: str, dataset_samples: int | None, epochs: float,
         total_tokens: float | None) -> dict[str, Any]:
    """How many samples the job processes, and where that number came from."""
    tokens_per_sample = getattr(workload, "tokens_per_sample", None) or getattr(workload, "seq_len", None)
    if dataset_samples is not None:
        samples = dataset_samples * epochs
        what = f"{dataset_samples:,} samples x {epochs:g} epoch(s) (given)"
    elif total_tokens is not None:
        if not tokens_per_sample:
            raise EstimateError("total_tokens needs a language model with a sequence length",
                                hint="give dataset_samples (and epochs) for this model instead")
        samples = total_tokens / tokens_per_sample
        what = f"{total_tokens:,.0f} tokens / {tokens_per_sample} tokens per sample (given)"
    elif mode == "infer":
        samples = DEFAULT_INFER_SAMPLES * epochs
        what = f"default: {DEFAULT_INFER_SAMPLES:,} inference requests (none given)"
    elif tokens_per_sample:
        samples = DEFAULT_TRAIN_TOKENS * epochs / tokens_per_sample
        what = (f"default: {DEFAULT_TRAIN_TOKENS:,} tokens x {epochs:g} epoch(s) at {tokens_per_sample} "
                "tokens per sample (none given)")
    else:
        samples = IMAGENET_TRAIN_SAMPLES * epochs
        what = f"default: {epochs:g} epoch(s) of ImageNet-1k ({IMAGENET_TRAIN_SAMPLES:,} images; none given)"
    return {"samples": samples, "tokens_per_sample": tokens_per_sample, "description": what}


def gib(n: float) -> str:
    return f"{n / GiB:,.1f} GiB"


def effective_rate(time: Any) -> float:
    """Samples/s the job really runs at.

    ``time.effective_samples_per_s`` (GPUs capped by the loader and the copies), or the GPUs' rate for an
    estimate without it.
    """
    eff = getattr(time, "effective_samples_per_s", None)
    return float(eff if eff is not None else time.samples_per_s)


def breakdown(memory: Any) -> dict[str, float] | None:
    """An estimate's per-GPU memory by category (for the dashboard's stacked bars), None when it has none."""
    parts = getattr(memory, "breakdown_bytes", None)
    return None if parts is None else {k: float(v) for k, v in parts.items()}


def drop_no_speedup(candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Drop counts that are not faster than a smaller count of the same card (more cards, same time).

    E.g. inference at global batch 1: replicas have nothing to share, so 8 cards are no faster than one.
    """
    kept: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    best_by_card: dict[str, tuple[float, int]] = {}
    for c in sorted(candidates, key=lambda c: (c["spec"].id, c["count"])):
        sps = effective_rate(c["estimate"].time)
        prev = best_by_card.get(c["spec"].id)
        if prev is not None and sps < prev[0] * MIN_SPEEDUP:
            rejected.append(Rejection(
                c["spec"].id, c["spec"].name, c["count"], "no_speedup",
                f"no speedup: {c['count']} cards ({c['parallelism']}) are not >= {MIN_SPEEDUP - 1:.0%} faster than "
                f"{prev[1]} ({sps:,.3g} vs {prev[0]:,.3g} samples/s)"))
            continue
        kept.append(c)
        if prev is None or sps > prev[0]:
            best_by_card[c["spec"].id] = (sps, c["count"])
    return kept, rejected


def price_and_rank(candidates: list[dict[str, Any]], job: Mapping[str, Any], objective: str,
                    budget_usd: float | None, batch_size: int) -> tuple[list[Candidate], list[Rejection]]:
    scored: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for c in candidates:
        spec: GpuSpec = c["spec"]
        n: int = c["count"]
        e = c["estimate"]
        sps = effective_rate(e.time)
        if not sps > 0:
            rejected.append(Rejection(spec.id, spec.name, n, "not_estimable", "estimated throughput is zero"))
            continue
        t = job["samples"] / sps
        hours = t / 3600
        cloud = spec.cloud_usd_per_hour * n * hours if spec.cloud_usd_per_hour else None
        purchase = spec.price_usd * n if spec.price_usd else None
        energy = spec.tdp_w * n * t * POWER_UTILIZATION / 3.6e6
        basis = "buy" if objective == "cost-buy" else "cloud"
        cost = purchase if basis == "buy" else cloud
        if cost is None and (objective in ("cost-cloud", "cost-buy") or budget_usd is not None):
            rejected.append(Rejection(
                spec.id, spec.name, n, "no_price",
                (f"not rentable: no public on-demand offer for {spec.name} (catalog, checked "
                 f"{spec.cloud_price_date})" if spec.cloud_rentable is False else
                 f"no cloud price: the catalog has no on-demand price for {spec.name} yet") if basis == "cloud" else
                f"no price: the catalog has no purchase price for {spec.name}"))
            continue
        if budget_usd is not None and cost is not None and cost > budget_usd:
            from advisor.units import format_usd

            what = "to buy the cards" if basis == "buy" else "for this job in the cloud"
            rejected.append(Rejection(spec.id, spec.name, n, "over_budget",
                                      f"over budget: {format_usd(cost)} {what} > {format_usd(budget_usd)}"))
            continue
        usable = getattr(e.memory, "usable_bytes", None)
        inf = math.inf
        scored.append({
            "spec": spec, "n": n, "e": e, "parallelism": c["parallelism"], "t": t, "cloud": cloud,
            "purchase": purchase, "energy": energy, "usable": usable, "sps": sps,
            "sort": {"time": (t, cloud if cloud is not None else inf),
                     "cost-cloud": (cloud if cloud is not None else inf, t),
                     "cost-buy": (purchase if purchase is not None else inf, t),
                     "energy": (energy, t)}[objective],
        })
    scored.sort(key=lambda s: (s["sort"], s["n"], s["spec"].id))
    rows = []
    for rank, s in enumerate(scored, start=1):
        spec, n, e = s["spec"], s["n"], s["e"]
        total = float(e.memory.total_bytes)
        rows.append(Candidate(
            rank=rank, gpu_id=spec.id, gpu_name=spec.name, vendor=spec.vendor, segment=spec.segment, num_gpus=n,
            parallelism=s["parallelism"],
            per_gpu_batch=math.ceil(batch_size / n) if s["parallelism"] in ("ddp", "zero1", "zero2", "zero3", "fsdp")
            else batch_size,
            memory_per_gpu_bytes=total, usable_per_gpu_bytes=s["usable"],
            headroom_bytes=None if s["usable"] is None else s["usable"] - total,
            step_s=float(e.time.step_s), samples_per_s=float(e.time.samples_per_s), effective_samples_per_s=s["sps"],
            tokens_per_s=getattr(e.time, "tokens_per_s", None), time_to_train_s=s["t"],
            cloud_usd_per_hour=spec.cloud_usd_per_hour, cost_cloud_usd=s["cloud"], price_usd=spec.price_usd,
            cost_buy_usd=s["purchase"],
            break_even_hours=spec.price_usd / spec.cloud_usd_per_hour if spec.price_usd and spec.cloud_usd_per_hour
            else None, energy_kwh=s["energy"],
            samples_per_usd=job["samples"] / s["cloud"] if s["cloud"] else None,
            samples_per_s_per_w=float(e.time.samples_per_s) / (spec.tdp_w * n),
            bound=getattr(e.time, "bound", None), calibrated=bool(getattr(e, "calibrated", False)),
            input_bound=bool(getattr(e.time, "input_bound", False)), limiter=getattr(e.time, "limiter", None),
            memory_breakdown_bytes=breakdown(e.memory),
            time_by_class_s=dict(getattr(e.time, "by_class_s", None) or {}) or None,
            class_advice=dict(getattr(e.time, "class_advice", None) or {}) or None,
        ))
    return rows, rejected


def partial_answer(rejected: Sequence[Rejection], best_misfit: dict[str, Any] | None, precision: str,
                    batch_size: int, cards: Sequence[GpuSpec], advice: Any = None) -> str:
    """Why nothing qualified, and the closest thing to an answer."""
    codes = {r.code for r in rejected}
    if codes == {"precision_unsupported"}:
        return (f"no card in the selection supports {precision}; try a precision these cards have "
                f"(e.g. {', '.join(sorted({p for c in cards for p in c.supported_precisions})[:6])})")
    if best_misfit is not None and not (codes & {"over_budget", "no_price"}):
        spec, n, e = best_misfit["spec"], best_misfit["count"], best_misfit["estimate"]
        mem = e.memory
        has = getattr(mem, "usable_bytes", None) or spec.memory_bytes
        parts = [f"batch {batch_size} fits on no card at up to {max(r.num_gpus for r in rejected)} GPUs"]
        max_batch = getattr(mem, "max_batch_size", None)
        if max_batch:
            parts.append(f"largest global batch that fits on {n} x {spec.name}: {max_batch}")
        if advice is not None and advice.why:
            parts.append(f"on {n} x {spec.name} it {advice.why}")
        elif not max_batch:
            parts.append(f"not even batch 1 per GPU fits on {n} x {spec.name} (needs {gib(mem.total_bytes)}, "
                         f"has {gib(has)})")
        fitting = advice.fitting if advice is not None else ()
        if fitting:
            parts.append("it would fit with: " + "; ".join(
                f"{o.change} ({o.how}: {gib(o.memory_per_gpu_bytes)} per GPU)" for o in fitting[:4]))
        else:
            parts.append("no single change tried fits (see fit_options); raise --max-gpus, or combine gradient "
                         "checkpointing, LoRA/QLoRA and a lower precision")
        return "; ".join(parts)
    if "over_budget" in codes:
        cheapest = min((r for r in rejected if r.code == "over_budget"), key=lambda r: r.reason)
        return f"nothing fits the budget; e.g. {cheapest.gpu_name} x{cheapest.num_gpus}: {cheapest.reason}"
    return "no card qualified: " + "; ".join(sorted({r.reason for r in rejected})[:3])
