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

#: Largest card count the search for "the smallest setup that would fit" goes to past ``max_gpus`` (advisor.advice).
BEYOND_MAX_GPUS = 1024

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

#: What orders rows that tie on the objective (``then``; e.g. every card capped by the same data loader):
#: ``gpu-speed``: the GPUs' own rate (what a faster loader would give), or another objective.
TIE_BREAKS: tuple[str, ...] = ("gpu-speed", "time", "cost-cloud", "cost-buy", "energy")
#: The tie-break when the user names none: time ties go to the faster GPU, every other objective's to time.
DEFAULT_THEN: Mapping[str, str] = {"time": "gpu-speed", "cost-cloud": "time", "cost-buy": "time",
                                   "energy": "time"}
#: Rows whose objective is within this fraction of each other tie (one loader cap gives exactly equal times).
TIE_TOLERANCE = 1e-6
#: What each objective ranks by, in words (the tie message and the assumptions).
OBJECTIVE_WORDS: Mapping[str, str] = {
    "time": "time to train", "cost-cloud": "cloud cost of the job",
    "cost-buy": "purchase price per unit of the job's throughput ($ per sample/s)",
    "energy": "energy of the job", "gpu-speed": "the GPUs' own speed, i.e. the time with a loader fast enough"}

#: What the whole job's time is called, per mode: a training run trains, an inference job serves its requests.
#: The one home of the words: ``job_size`` puts them in the job (``job["time_words"]``), which every table,
#: message and the dashboard read.
JOB_TIME_WORDS: Mapping[str, str] = {"train": "time to train", "infer": "time to serve"}


def job_time_words(mode: str) -> str:
    """``time to train`` (train) or ``time to serve`` (infer): what the job's time is called in this mode."""
    return JOB_TIME_WORDS.get(mode, JOB_TIME_WORDS["train"])


def objective_words(name: str, job: Mapping[str, Any]) -> str:
    """What an objective (or tie-break) ranks by, in words, for this job (``time`` is the job's own time)."""
    if name == "time":
        return str(job.get("time_words") or OBJECTIVE_WORDS["time"])
    return OBJECTIVE_WORDS[name]


#: The default job of presets whose own dataset is not ImageNet-1k / a token budget (samples, what it is).
PRESET_JOBS: Mapping[str, tuple[int, str]] = {
    "mnist-cnn": (60_000, "MNIST training set (60,000 images; LeCun et al., yann.lecun.com/exdb/mnist)"),
}

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
    elif getattr(workload, "name", None) in PRESET_JOBS:
        n, name = PRESET_JOBS[workload.name]
        samples = n * epochs
        what = f"default: {epochs:g} epoch(s) of the {name}, none given"
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
    return {"samples": samples, "tokens_per_sample": tokens_per_sample, "description": what,
            "time_words": job_time_words(mode)}


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
    """An estimate's per-GPU memory by category (for the dashboard's stacked bars), None when it has none.

    The categories a user can act on (``categories_bytes``, as ``estimate`` prints them), else the coarse split.
    """
    parts = getattr(memory, "categories_bytes", None) or getattr(memory, "breakdown_bytes", None)
    return None if parts is None else {k: float(v) for k, v in parts.items()}


def gpu_counts(max_gpus: int) -> tuple[int, ...]:
    """Card counts considered: powers of two up to ``max_gpus``, plus ``max_gpus`` itself."""
    counts = {1 << k for k in range(max_gpus.bit_length()) if (1 << k) <= max_gpus}
    counts.add(max_gpus)
    return tuple(sorted(counts))


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


def _objective_value(s: Mapping[str, Any], name: str, job: Mapping[str, Any]) -> float:
    """A scored row's value for an objective or tie-break (lower is better; no price ranks last)."""
    inf = math.inf
    if name == "time":
        return float(s["t"])
    if name == "gpu-speed":
        return job["samples"] / s["gpu_sps"] if s["gpu_sps"] > 0 else inf
    if name == "cost-cloud":
        return s["cloud"] if s["cloud"] is not None else inf
    if name == "cost-buy":
        return s["purchase"] / s["sps"] if s["purchase"] is not None else inf
    return float(s["energy"])


def price_and_rank(candidates: list[dict[str, Any]], job: Mapping[str, Any], objective: str,
                    budget_usd: float | None, batch_size: int,
                    then: str | None = None) -> tuple[list[Candidate], list[Rejection]]:
    """Price every candidate for the job and rank by ``objective``, ties by ``then`` (``DEFAULT_THEN``)."""
    then = then or DEFAULT_THEN[objective]
    scored: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for c in candidates:
        row = _scored(c, job, objective, then, budget_usd)
        if isinstance(row, Rejection):
            rejected.append(row)
        else:
            scored.append(row)
    # rows whose objective is equal to TIE_TOLERANCE are ordered by ``then`` (groups formed in objective order)
    scored.sort(key=lambda s: s["primary"])
    group_key = 0.0
    for i, s in enumerate(scored):
        if i == 0 or not _ties(s["primary"], group_key):
            group_key = s["primary"]
        s["group"] = group_key
    scored.sort(key=lambda s: (s["group"], s["then"], s["t"], s["n"], s["spec"].id))
    return [_candidate(rank, s, job, batch_size) for rank, s in enumerate(scored, start=1)], rejected


def _scored(c: Mapping[str, Any], job: Mapping[str, Any], objective: str, then: str,
            budget_usd: float | None) -> dict[str, Any] | Rejection:
    """One candidate priced for the job (time, cloud cost, purchase, energy, its objective values), or why not."""
    spec: GpuSpec = c["spec"]
    n: int = c["count"]
    e = c["estimate"]
    sps = effective_rate(e.time)
    if not sps > 0:
        return Rejection(spec.id, spec.name, n, "not_estimable", "estimated throughput is zero")
    t = job["samples"] / sps
    hours = t / 3600
    cloud = spec.cloud_usd_per_hour * n * hours if spec.cloud_usd_per_hour else None
    purchase = spec.price_usd * n if spec.price_usd else None
    energy = spec.tdp_w * n * t * POWER_UTILIZATION / 3.6e6
    basis = "buy" if objective == "cost-buy" else "cloud"
    cost = purchase if basis == "buy" else cloud
    if cost is None and (objective in ("cost-cloud", "cost-buy") or budget_usd is not None):
        return Rejection(spec.id, spec.name, n, "no_price", _no_price(spec, basis))
    if budget_usd is not None and cost is not None and cost > budget_usd:
        from advisor.units import format_usd

        what = "to buy the cards" if basis == "buy" else "for this job in the cloud"
        return Rejection(spec.id, spec.name, n, "over_budget",
                         f"over budget: {format_usd(cost)} {what} > {format_usd(budget_usd)}")
    usable = getattr(e.memory, "usable_bytes", None)
    row = {"spec": spec, "n": n, "e": e, "parallelism": c["parallelism"], "precision": c.get("precision"),
           "t": t, "cloud": cloud,
           "purchase": purchase, "energy": energy, "usable": usable, "sps": sps,
           "gpu_sps": float(e.time.samples_per_s)}
    row["primary"] = _objective_value(row, objective, job)
    row["then"] = _objective_value(row, then, job)
    return row


def _no_price(spec: GpuSpec, basis: str) -> str:
    """Why a card has no price to rank by: not rentable / no cloud price (cloud), not sold / no price (buy)."""
    if basis == "cloud":
        return (f"not rentable: no public on-demand offer for {spec.name} (catalog, checked "
                f"{spec.cloud_price_date})" if spec.cloud_rentable is False else
                f"no cloud price: the catalog has no on-demand price for {spec.name} yet")
    return (f"not sold: {spec.name} is not sold new or used in volume (catalog, checked "
            f"{getattr(spec, 'price_date', None)})" if getattr(spec, "price_kind", None) == "not sold" else
            f"no price: the catalog has no purchase price for {spec.name}")


def _candidate(rank: int, s: Mapping[str, Any], job: Mapping[str, Any], batch_size: int) -> Candidate:
    """A scored row as the ranked ``Candidate`` at ``rank``."""
    spec, n, e = s["spec"], s["n"], s["e"]
    total = float(e.memory.total_bytes)
    return Candidate(
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
        buy_usd_per_sample_per_s=s["purchase"] / s["sps"] if s["purchase"] is not None else None,
        cloud_price_date=spec.cloud_price_date, cloud_price_class=getattr(spec, "cloud_price_class", None),
        price_date=getattr(spec, "price_date", None),
        price_kind=getattr(spec, "price_kind", None),
        loader_samples_per_s=getattr(e.time, "loader_samples_per_s", None), precision=s["precision"],
        step_s_low=getattr(e, "step_s_low", None), step_s_high=getattr(e, "step_s_high", None),
        evidence=getattr(e, "evidence", None), profile=getattr(e, "profile", None),
    )


def _ties(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= TIE_TOLERANCE * max(abs(a), abs(b))


def _limiter_words(limiter: str | None, rate: float | None) -> str:
    if limiter == "input":
        return ("the input pipeline (data loader" + (f" at {rate:,.0f} samples/s" if rate else "")
                + ", or the host->device copies)")
    return {"host": "host dispatch", None: "an unnamed limit"}.get(limiter, str(limiter))


def tie_summary(rows: Sequence[Candidate], objective: str, then: str | None,
                job: Mapping[str, Any]) -> dict[str, Any] | None:
    """What decides the ranking when its top rows tie on the objective, ``None`` when the top row wins outright.

    Returns ``{"rows", "of", "limiter", "limited_rows", "value", "then", "change_rate", "fastest", "message"}``:
    ``rows`` tie at the top (of ``of`` ranked rows) on ``objective``; ``limiter`` is their shared limit (``None``
    when they differ) and ``limited_rows`` how many ranked rows it limits; ``change_rate`` (input-bound ties) the
    loader rate above which the fastest tied card stops being input-bound, i.e. where the answer changes.
    """
    if len(rows) < 2:
        return None
    then = then or DEFAULT_THEN[objective]
    row_job = dict(job)

    def value(r: Candidate) -> float:
        s = {"t": r.time_to_train_s, "gpu_sps": r.samples_per_s, "cloud": r.cost_cloud_usd,
             "purchase": r.cost_buy_usd, "sps": r.effective_samples_per_s, "energy": r.energy_kwh}
        return _objective_value(s, objective, row_job)

    top = value(rows[0])
    tied = [r for r in rows if _ties(value(r), top)]
    if len(tied) < 2:
        return None
    limiters = {r.limiter for r in tied}
    limiter = limiters.pop() if len(limiters) == 1 else None
    limited = sum(r.limiter == limiter for r in rows) if limiter else 0
    change_rate = fastest = None
    rate = tied[0].effective_samples_per_s
    if limiter == "input":
        best = max(tied, key=lambda r: r.samples_per_s)
        change_rate, fastest = best.samples_per_s, best.gpu_name
    from advisor.units import format_seconds

    how = f"all {len(tied)}" if len(tied) == len(rows) else f"the top {len(tied)} of {len(rows)}"
    at = (f"at {format_seconds(rows[0].time_to_train_s)} {objective_words('time', job).removeprefix('time ')}"
          if objective == "time" else f"on {objective_words(objective, job)}")
    if limiter is not None:
        what = _limiter_words(limiter, rate if limiter == "input" else None)
        if limited == len(tied) == len(rows):
            head = f"{what} limits every ranked card: all {len(rows)} tie {at}"
        elif limited == len(tied):
            head = f"{what} limits the top {len(tied)} of {len(rows)} ranked rows, which tie {at}"
        else:
            head = f"{what} limits {limited} of {len(rows)} ranked rows; {how} tie {at}"
    else:
        head = f"{how} ranked rows tie {at}"
    parts = [head, f"tied rows ranked by {objective_words(then, job)} (--then {then})"]
    if change_rate is not None:
        parts.append(f"a loader faster than {change_rate:,.0f} samples/s would change the answer: above it "
                     f"{fastest}, the fastest tied card, stops being input-bound (--loader-samples-per-s "
                     "gives your measured rate)")
    return {"rows": len(tied), "of": len(rows), "limiter": limiter, "limited_rows": limited,
            "value": top, "then": then, "change_rate": change_rate, "fastest": fastest,
            "message": "; ".join(parts)}


def _sized(option: Any) -> str:
    """A fit option in words, with what it needs: ``change (flags): 21.3 GiB per GPU, step 3.87 s``."""
    from advisor.units import format_seconds

    return (f"{option.change} ({option.how}: {gib(option.memory_per_gpu_bytes)} per GPU, step "
            f"{format_seconds(option.step_s)}"
            + (f", {option.num_gpus} cards" if option.num_gpus > 1 else "") + ")")


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
        where = (f"on {cards[0].name}" if len(cards) == 1 else f"on none of the {len(cards)} cards in the selection")
        upto = max(r.num_gpus for r in rejected)
        parts = [f"batch {batch_size} fits {where} at up to {upto} GPU{'s' if upto > 1 else ''}"
                 if len(cards) > 1 else f"batch {batch_size} does not fit {where} at up to {upto} "
                 f"GPU{'s' if upto > 1 else ''}"]
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
            best = fitting[0]
            head = ("nothing fits within --max-gpus; the smallest setup that would" if best.beyond_max_gpus else
                    "the smallest setup that fits")
            parts.append(f"{head}: {_sized(best)}")
            if len(fitting) > 1:
                parts.append("it would also fit with: " + "; ".join(_sized(o) for o in fitting[1:4]))
        else:
            parts.append("no setup found that fits, up to "
                         f"{BEYOND_MAX_GPUS} cards with checkpointing, ZeRO-3 and QLoRA or on a bigger card")
        return "; ".join(parts)
    if "over_budget" in codes:
        cheapest = min((r for r in rejected if r.code == "over_budget"), key=lambda r: r.reason)
        return f"nothing fits the budget; e.g. {cheapest.gpu_name} x{cheapest.num_gpus}: {cheapest.reason}"
    return "no card qualified: " + "; ".join(sorted({r.reason for r in rejected})[:3])


def _date_range(dates: Sequence[str | None]) -> str | None:
    known = sorted({d for d in dates if d})
    if not known:
        return None
    return known[0] if len(known) == 1 else f"{known[0]} to {known[-1]}"


def summary_lines(rows: Sequence[Candidate], objective: str, tie: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The lines that lead an answer: what decides a tie, the cheapest cards' time (cost-buy), the prices' dates."""
    from advisor.units import format_seconds, format_usd

    lines = []
    if tie is not None:
        lines.append(str(tie["message"]))
    if objective == "cost-buy" and rows:
        cheapest = sorted((r for r in rows if r.cost_buy_usd is not None),
                          key=lambda r: (r.cost_buy_usd, r.time_to_train_s))[:3]
        if cheapest:
            lines.append("cheapest to buy: " + "; ".join(
                f"{'' if r.num_gpus == 1 else f'{r.num_gpus}x '}{r.gpu_name} {format_usd(r.cost_buy_usd or 0)}, "
                f"the job takes {format_seconds(r.time_to_train_s)}" for r in cheapest))
    cloud = _date_range([r.cloud_price_date for r in rows if r.cloud_usd_per_hour])
    buy = _date_range([r.price_date for r in rows if r.price_usd])
    # one basis (docs/prices.md): GPU clouds' on-demand rates; a card priced by another class is named
    other = {r.gpu_name: r.cloud_price_class for r in rows if r.cloud_usd_per_hour and r.cloud_price_class
             not in (None, "gpu cloud")}
    if cloud:
        cloud = f"cloud on-demand $/GPU-hour at GPU clouds as of {cloud}" + "".join(
            f"; {c} rates for {', '.join(n for n, k in other.items() if k == c)}" for c in sorted(set(other.values())))
    if cloud or buy:
        lines.append("prices: " + ", ".join(p for p in (cloud, f"purchase as of {buy}" if buy else None) if p)
                     + " (per card: --json rows' cloud_price_date, cloud_price_class, price_date, price_kind)")
    return tuple(lines)
