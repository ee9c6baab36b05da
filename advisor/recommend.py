"""Rank cards and card counts for a workload by time, cost or energy.

``recommend(model, ...)`` builds the workload once, then asks the estimator
(``advisor.estimate.estimate_workload``) about every card of the catalog (user cards
included) at card counts 1, 2, 4, ... up to ``max_gpus`` (powers of two, plus
``max_gpus`` itself).  Each (card, count) either becomes a ranked ``Candidate`` or a
``Rejection`` that says why (does not fit, precision unsupported, over budget, no price).

Pure: no torch, no printing.  pandas is imported only by ``Recommendation.to_frame``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from advisor.catalog import SEGMENTS, VENDORS, GpuSpec, find_gpu, load_specs
from advisor.errors import AdvisorError, EstimateError
from advisor.workload.options import WorkloadOptions

Objective = Literal["time", "cost-cloud", "cost-buy", "energy"]
#: ``time``: time to train (effective rate); ``cost-cloud``: dollars for this job at on-demand cloud rates;
#: ``cost-buy``: purchase price of the cards; ``energy``: kWh for this job.
OBJECTIVES: tuple[str, ...] = ("time", "cost-cloud", "cost-buy", "energy")
#: Old objective names still accepted (mapped, with a note in the assumptions).
OBJECTIVE_ALIASES: Mapping[str, str] = {"cost": "cost-cloud"}

#: Average board power while training or serving, as a fraction of TDP.  Sustained
#: tensor-core work draws close to TDP; 0.8 is a middle figure for a mix of compute-bound
#: and memory-bound kernels.
POWER_UTILIZATION = 0.8
#: Default job when the user gives no dataset / token count.
IMAGENET_TRAIN_SAMPLES = 1_281_167  # ILSVRC-2012 training images
DEFAULT_TRAIN_TOKENS = 1_000_000_000
DEFAULT_INFER_SAMPLES = 100_000

#: Rejection codes (stable; the dashboard and tests rely on them).
REJECTION_CODES: tuple[str, ...] = ("does_not_fit", "precision_unsupported", "over_budget", "no_price",
                                    "not_estimable", "no_speedup")
#: A larger count of the same card must beat the best smaller count by this much to be listed.
MIN_SPEEDUP = 1.05

FRAME_COLUMNS: tuple[str, ...] = (
    "rank", "gpu_id", "gpu_name", "vendor", "segment", "num_gpus", "parallelism", "per_gpu_batch",
    "memory_per_gpu_gib", "usable_per_gpu_gib", "headroom_gib", "headroom_fraction", "step_s",
    "samples_per_s", "effective_samples_per_s", "tokens_per_s", "time_to_train_s", "cloud_usd_per_hour",
    "cost_cloud_usd", "price_usd", "cost_buy_usd", "break_even_hours", "energy_kwh", "samples_per_usd",
    "samples_per_s_per_w", "bound", "calibrated", "input_bound", "limiter",
)

_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Candidate:
    """One card x count that fits, with its time, cost and energy for the whole job.

    Attributes:
        rank: 1 = best by the objective.
        memory_per_gpu_bytes / usable_per_gpu_bytes / headroom_bytes: per GPU.
        step_s / samples_per_s: the GPUs' own (host dispatch included).
        effective_samples_per_s: what the job runs at: ``samples_per_s`` capped by the data loader and
            host->device copies; ``limiter`` says which one sets the pace.
        time_to_train_s: the whole job (``job_samples`` / ``effective_samples_per_s``); the ranking uses it.
        cloud_usd_per_hour: on-demand $/h of one card (``None``: not rentable / no price in the catalog).
        cost_cloud_usd: this job at on-demand rates: $/h x count x hours (``None`` when not rentable).
        price_usd: purchase price of one card; cost_buy_usd: price x count (``None`` without a price).
        break_even_hours: hours of renting these cards that cost as much as buying them
            (``price_usd / cloud_usd_per_hour``; ``None`` unless both prices are known).
        energy_kwh: TDP x count x time x ``POWER_UTILIZATION``.
        samples_per_usd: job samples per dollar of ``cost_cloud_usd``.
        samples_per_s_per_w: GPU throughput per watt of TDP (all cards).
        input_bound: the data loader or the copies (stated or assumed rate) cannot feed the GPUs; the
            time to train already runs at their rate (see ``estimate(...).time.input_advice``).
        limiter: what sets the pace (compute, memory, launch, communication, host dispatch, input).
        memory_breakdown_bytes: per-GPU peak memory by category (weights, gradients, optimizer, ...).
    """

    rank: int
    gpu_id: str
    gpu_name: str
    vendor: str
    segment: str
    num_gpus: int
    parallelism: str | None
    per_gpu_batch: int
    memory_per_gpu_bytes: float
    usable_per_gpu_bytes: float | None
    headroom_bytes: float | None
    step_s: float
    samples_per_s: float
    effective_samples_per_s: float
    tokens_per_s: float | None
    time_to_train_s: float
    cloud_usd_per_hour: float | None
    cost_cloud_usd: float | None
    price_usd: float | None
    cost_buy_usd: float | None
    break_even_hours: float | None
    energy_kwh: float
    samples_per_usd: float | None
    samples_per_s_per_w: float
    bound: str | None
    calibrated: bool
    input_bound: bool = False
    limiter: str | None = None
    memory_breakdown_bytes: Mapping[str, float] | None = None

    @property
    def headroom_fraction(self) -> float | None:
        """Headroom as a fraction of usable memory."""
        if self.headroom_bytes is None or not self.usable_per_gpu_bytes:
            return None
        return self.headroom_bytes / self.usable_per_gpu_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out = dataclasses.asdict(self)
        out["headroom_fraction"] = self.headroom_fraction
        return out


@dataclass(frozen=True, slots=True)
class Rejection:
    """A card x count left out, and why.

    Attributes:
        code: one of ``REJECTION_CODES``.
        reason: the why, in words, with the numbers ("needs 92.1 GiB per GPU, has 74.5 GiB").
        needed_bytes / available_bytes: per GPU, for ``does_not_fit``.
        memory_breakdown_bytes: for ``does_not_fit``, the per-GPU need by category.
    """

    gpu_id: str
    gpu_name: str
    num_gpus: int
    code: str
    reason: str
    needed_bytes: float | None = None
    available_bytes: float | None = None
    memory_breakdown_bytes: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The ranked answer of ``recommend``.

    Attributes:
        rows: candidates that fit and pass the filters, best first.
        rejected: every other card x count with its reason.
        assumptions: the workload's and the ranking's, in words.
        partial: when nothing fits, the best partial answer (largest batch that fits on the
            biggest card, or the card count needed); when no card supports the workload, why.
        job: what "time to train" covers (samples, tokens, where the default came from).
        fit_options: when nothing fits, ``advisor.advice.fit_options`` for the card with the most memory
            in the selection (what does not fit, and the changes that would make it fit).
    """

    model: str
    objective: str
    counts: tuple[int, ...]
    rows: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...]
    assumptions: tuple[str, ...]
    job: Mapping[str, Any]
    workload: Mapping[str, Any]
    partial: str | None = None
    fit_options: Any = None

    @property
    def best(self) -> Candidate | None:
        """The top-ranked candidate, ``None`` when nothing qualifies."""
        return self.rows[0] if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what ``recommend --json`` prints)."""
        return {
            "model": self.model,
            "objective": self.objective,
            "counts": list(self.counts),
            "workload": dict(self.workload),
            "job": dict(self.job),
            "best": self.best.to_dict() if self.best else None,
            "rows": [r.to_dict() for r in self.rows],
            "rejected": [r.to_dict() for r in self.rejected],
            "partial": self.partial,
            "fit_options": self.fit_options.to_dict() if self.fit_options is not None else None,
            "assumptions": list(self.assumptions),
        }

    def to_frame(self) -> Any:
        """The ranked rows as a pandas DataFrame (columns ``FRAME_COLUMNS``; sizes in GiB)."""
        import pandas as pd

        records = []
        for r in self.rows:
            records.append({
                "rank": r.rank, "gpu_id": r.gpu_id, "gpu_name": r.gpu_name, "vendor": r.vendor,
                "segment": r.segment, "num_gpus": r.num_gpus, "parallelism": r.parallelism,
                "per_gpu_batch": r.per_gpu_batch, "memory_per_gpu_gib": r.memory_per_gpu_bytes / _GIB,
                "usable_per_gpu_gib": None if r.usable_per_gpu_bytes is None else r.usable_per_gpu_bytes / _GIB,
                "headroom_gib": None if r.headroom_bytes is None else r.headroom_bytes / _GIB,
                "headroom_fraction": r.headroom_fraction, "step_s": r.step_s, "samples_per_s": r.samples_per_s,
                "effective_samples_per_s": r.effective_samples_per_s, "tokens_per_s": r.tokens_per_s,
                "time_to_train_s": r.time_to_train_s, "cloud_usd_per_hour": r.cloud_usd_per_hour,
                "cost_cloud_usd": r.cost_cloud_usd, "price_usd": r.price_usd, "cost_buy_usd": r.cost_buy_usd,
                "break_even_hours": r.break_even_hours, "energy_kwh": r.energy_kwh,
                "samples_per_usd": r.samples_per_usd, "samples_per_s_per_w": r.samples_per_s_per_w,
                "bound": r.bound, "calibrated": r.calibrated, "input_bound": r.input_bound, "limiter": r.limiter,
            })
        return pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))

    def rejected_frame(self) -> Any:
        """The rejected card x counts as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame.from_records([r.to_dict() for r in self.rejected],
                                         columns=[f.name for f in dataclasses.fields(Rejection)])


def gpu_counts(max_gpus: int) -> tuple[int, ...]:
    """Card counts considered: powers of two up to ``max_gpus``, plus ``max_gpus`` itself."""
    counts = {1 << k for k in range(max_gpus.bit_length()) if (1 << k) <= max_gpus}
    counts.add(max_gpus)
    return tuple(sorted(counts))


def _estimator() -> Callable[..., Any]:
    """The estimator's per-card entry point (imported lazily; tests may replace this)."""
    from advisor.estimate import estimate_workload

    return estimate_workload  # type: ignore[no-any-return]


def _build_workload(model: Any, **kwargs: Any) -> Any:
    from advisor.workload import load_workload

    return load_workload(model, **kwargs)


def _memoize_rebuild(workload: Any) -> Any:
    """Make ``with_batch_size`` cached, so each distinct per-GPU micro-batch is built once."""
    rebuild = workload.options.get("rebuild") if isinstance(getattr(workload, "options", None), Mapping) else None
    if rebuild is None or not dataclasses.is_dataclass(workload):
        return workload

    @functools.cache
    def rebuild_cached(batch_size: int) -> Any:
        built = rebuild(batch_size)
        if isinstance(getattr(built, "options", None), Mapping) and dataclasses.is_dataclass(built):
            built = dataclasses.replace(built, options={**built.options, "rebuild": rebuild_cached})
        return built

    return dataclasses.replace(workload, options={**workload.options, "rebuild": rebuild_cached})


def _check_inputs(max_gpus: int, objective: str, budget_usd: float | None, vendor: str | None,
                  segment: str | None, epochs: float, dataset_samples: int | None,
                  total_tokens: float | None) -> None:
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 1:
        raise EstimateError(f"max_gpus must be a whole number >= 1, got {max_gpus!r}")
    if max_gpus > 1024:
        raise EstimateError(f"max_gpus must be <= 1024, got {max_gpus}")
    if objective not in OBJECTIVES and objective not in OBJECTIVE_ALIASES:
        raise EstimateError(f"unknown objective {objective!r}", hint=f"accepted: {', '.join(OBJECTIVES)}")
    if budget_usd is not None and (not isinstance(budget_usd, (int, float)) or not math.isfinite(budget_usd)
                                   or budget_usd <= 0):
        raise EstimateError(f"budget_usd must be a positive number of dollars, got {budget_usd!r}")
    if vendor is not None and vendor not in VENDORS:
        raise EstimateError(f"unknown vendor {vendor!r}", hint=f"accepted: {', '.join(VENDORS)}")
    if segment is not None and segment not in SEGMENTS:
        raise EstimateError(f"unknown segment {segment!r}", hint=f"accepted: {', '.join(SEGMENTS)}")
    if not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
        raise EstimateError(f"epochs must be > 0, got {epochs!r}")
    if dataset_samples is not None and (not isinstance(dataset_samples, int) or dataset_samples <= 0):
        raise EstimateError(f"dataset_samples must be a whole number > 0, got {dataset_samples!r}")
    if total_tokens is not None and not (isinstance(total_tokens, (int, float)) and total_tokens > 0):
        raise EstimateError(f"total_tokens must be > 0, got {total_tokens!r}")


def _job(workload: Any, mode: str, dataset_samples: int | None, epochs: float,
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


def _gib(n: float) -> str:
    return f"{n / _GIB:,.1f} GiB"


def _auto_parallelism(mode: str, count: int, single_fits: bool | None) -> tuple[str | None, ...]:
    """Strategies tried, in order, for ``count`` GPUs (the first that fits is kept)."""
    if count == 1:
        return (None,)
    if mode == "infer":
        # Replicas serve independent requests when one card holds the model; else split it.
        return ("tp",) if single_fits is False else ("ddp", "tp")
    return ("ddp", "zero3")


def recommend(model: Any, *, batch_size: int = 1, seq_len: int | None = None, image_size: int | None = None,
              precision: str = "amp-bf16", optimizer: str = "adamw", mode: str = "train",
              gradient_checkpointing: bool = False, lora_rank: int | None = None,
              quantize_base: str | None = None, grad_accum: int = 1, parallelism: str | None = None,
              gen_len: int | None = None, max_gpus: int = 8, objective: str = "time",
              budget_usd: float | None = None, vendor: str | None = None, segment: str | None = None,
              gpus: Sequence[str | GpuSpec] | None = None, dataset_samples: int | None = None,
              epochs: float = 1, total_tokens: float | None = None, specs_dir: str | Path | None = None,
              calibration: Any = "auto", example_inputs: Any = None,
              loader_samples_per_s: float | None = None, runtime: str = "eager",
              channels_last: bool = False) -> Recommendation:
    """Rank every catalog card x count for a workload.

    Args:
        model: preset name, config.json path, config dict or ``torch.nn.Module`` (with ``example_inputs``).
        batch_size: GLOBAL batch of one micro-step across data-parallel replicas (as in ``estimate``).
        seq_len, image_size, precision, optimizer, mode, gradient_checkpointing, lora_rank,
            quantize_base, grad_accum, gen_len: the workload, as in ``estimate``.
        parallelism: multi-GPU strategy; ``None`` = auto (train: ddp, falling back to zero3 when
            ddp does not fit; infer: replicas (ddp) when one card holds the model, else tp).
        max_gpus: largest count considered (counts: powers of two up to it, plus it).
        objective: ``time`` (time to train at the effective rate), ``cost-cloud`` (dollars for the job at
            on-demand rates), ``cost-buy`` (purchase price of the cards) or ``energy`` (kWh); ``cost`` is the
            old name of ``cost-cloud``.
        budget_usd: drop candidates that cost more: the job's cloud cost, or the purchase price when
            ranking by ``cost-buy``.
        vendor, segment: keep only these cards.
        gpus: keep only these cards (names or specs).
        dataset_samples, epochs, total_tokens: the job; defaults are stated in ``job``.
        specs_dir: a directory of the user's own spec files (adds to / replaces shipped cards).
        calibration: ``auto`` (the newest probe of each card in the history store, read once here), ``None``,
            a ProbeResult, a probe JSON path or an efficiencies mapping.
        runtime: ``eager`` (PyTorch eager: host dispatch can bound small steps) or ``graph`` (CUDA graphs,
            compiled / TensorRT / vLLM / llama.cpp), as in ``estimate``.

    Raises:
        UnknownModelError: unknown preset (the message lists the closest names).
        UnknownGpuError: a name in ``gpus`` matches no card.
        EstimateError: bad option (max_gpus < 1, negative budget, unknown objective/vendor/segment).
    """
    _check_inputs(max_gpus, objective, budget_usd, vendor, segment, epochs, dataset_samples, total_tokens)
    alias_note = None
    if objective in OBJECTIVE_ALIASES:
        alias_note = (f"objective {objective!r} is deprecated: it now means {OBJECTIVE_ALIASES[objective]!r} "
                      "(cost of this job at on-demand cloud rates); rank by 'cost-buy' for the cards' price")
        objective = OBJECTIVE_ALIASES[objective]
    from advisor.calibration import resolve_calibration
    from advisor.estimate import matmul_rate
    from advisor.estimate.time import check_runtime

    check_runtime(runtime)
    calibration = resolve_calibration(calibration)  # "auto": the history store is read here, once, not per card
    specs = load_specs(extra_dirs=[specs_dir]) if specs_dir is not None else load_specs()
    if gpus is not None:
        wanted = {(g.id if isinstance(g, GpuSpec) else find_gpu(g, specs).id) for g in gpus}
        specs = tuple(s for s in specs if s.id in wanted)
    cards = [s for s in specs if (vendor is None or s.vendor == vendor) and (segment is None or s.segment == segment)]
    if not cards:
        raise EstimateError("no card in the catalog passes the filters "
                            f"(vendor={vendor!r}, segment={segment!r}, gpus={list(gpus) if gpus else None})",
                            hint="loosen --vendor/--segment, or see `python -m advisor specs list`")

    options = WorkloadOptions(batch_size=batch_size, seq_len=seq_len, image_size=image_size, precision=precision,
                              optimizer=optimizer, mode=mode, gradient_checkpointing=gradient_checkpointing,
                              lora_rank=lora_rank, quantize_base=quantize_base, grad_accum=grad_accum,
                              gen_len=gen_len)
    # every card estimates the same workload, built once (the batch is passed even to a traced module)
    build_kwargs = {k: v for k, v in options.builder_kwargs(batch=True).items() if v is not None}
    if example_inputs is not None:
        build_kwargs["example_inputs"] = example_inputs
    workload = _memoize_rebuild(_build_workload(model, **build_kwargs))
    job = _job(workload, mode, dataset_samples, epochs, total_tokens)
    counts = gpu_counts(max_gpus)
    estimate_workload = _estimator()
    extra: dict[str, Any] = {"runtime": runtime, "channels_last": channels_last}
    if loader_samples_per_s is not None:
        extra["loader_samples_per_s"] = loader_samples_per_s

    candidates: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    estimator_assumptions: list[str] = []
    best_misfit: dict[str, Any] | None = None
    for spec in cards:
        if matmul_rate(spec, precision) is None:
            supported = ", ".join(spec.supported_precisions) or "none listed"
            for n in counts:
                rejected.append(Rejection(spec.id, spec.name, n, "precision_unsupported",
                                          f"{spec.name} has no {precision} rate (supports: {supported})"))
            continue
        single_fits: bool | None = None
        for n in counts:
            if n == 1:
                strategies: tuple[str | None, ...] = (None,)
            elif parallelism is not None:
                strategies = (parallelism,)
            else:
                strategies = _auto_parallelism(mode, n, single_fits)
            est, used, error = None, None, None
            for strategy in strategies:
                try:
                    e = estimate_workload(workload, spec, num_gpus=n, parallelism=strategy, calibration=calibration,
                                          **extra)
                except AdvisorError as exc:
                    error = exc
                    continue
                est, used = e, strategy
                if e.memory.fits:
                    break
            if est is None:
                msg = error.message if isinstance(error, AdvisorError) else "no estimate"
                rejected.append(Rejection(spec.id, spec.name, n, "not_estimable", msg))
                continue
            if not estimator_assumptions:
                estimator_assumptions = list(getattr(est, "assumptions", ()))
            mem = est.memory
            if n == 1:
                single_fits = bool(mem.fits)
            usable = getattr(mem, "usable_bytes", None)
            if not mem.fits:
                has = usable if usable is not None else spec.memory_bytes
                rejected.append(Rejection(
                    spec.id, spec.name, n, "does_not_fit",
                    f"does not fit: needs {_gib(mem.total_bytes)} per GPU, has {_gib(has)}"
                    + (f" ({used})" if used else ""), mem.total_bytes, has,
                    _breakdown(mem)))
                if best_misfit is None or spec.memory_bytes * n > best_misfit["memory"]:
                    best_misfit = {"spec": spec, "count": n, "estimate": est, "memory": spec.memory_bytes * n,
                                   "parallelism": used}
                continue
            candidates.append({"spec": spec, "count": n, "estimate": est, "parallelism": used})

    candidates, slow = _drop_no_speedup(candidates)
    rejected.extend(slow)
    rows, over = _price_and_rank(candidates, job, objective, budget_usd, batch_size)
    rejected.extend(over)
    if rows:  # the assumptions of the estimate behind the best row
        best_est = next(c["estimate"] for c in candidates
                        if c["spec"].id == rows[0].gpu_id and c["count"] == rows[0].num_gpus)
        estimator_assumptions = list(getattr(best_est, "assumptions", ())) or estimator_assumptions
    advice = None
    if not rows and best_misfit is not None:
        from advisor.advice import fit_options

        est_kwargs = {k: v for k, v in options.keywords().items() if v is not None}
        if example_inputs is not None:
            est_kwargs["example_inputs"] = example_inputs
        est_kwargs.update(extra, calibration=calibration, parallelism=best_misfit["parallelism"])
        try:
            advice = fit_options(model, best_misfit["spec"], num_gpus=best_misfit["count"], max_gpus=max_gpus,
                                 specs_dir=specs_dir, **est_kwargs)
        except AdvisorError:  # the partial answer below still says what does not fit
            advice = None
    partial = None if rows else _partial_answer(rejected, best_misfit, precision, batch_size, cards, advice)
    wl = {"params": getattr(workload, "params", None), "trainable_params": getattr(workload, "trainable_params", None),
          "family": getattr(workload, "family", None), "batch_size": batch_size, "seq_len": seq_len,
          "image_size": image_size, "precision": precision, "optimizer": optimizer if mode == "train" else None,
          "mode": mode}
    assumptions = [
        f"card counts considered: {', '.join(map(str, counts))} (powers of two up to max_gpus={max_gpus}, "
        "plus max_gpus)",
        "parallelism: " + (parallelism if parallelism else
                           ("auto: ddp, falling back to zero3 when ddp does not fit" if mode == "train" else
                            "auto: replicas (ddp) when one card holds the model, else tensor parallel (tp)")),
        f"batch_size {batch_size} is the global micro-batch across data-parallel replicas",
        f"job: {job['description']}; time to train = job samples / effective samples per second (the GPUs' "
        "rate, host dispatch included, capped by the data loader and host->device copies)",
        "cost-cloud: on-demand $/h per card (dated in the catalog) x count x hours of this job; 'not rentable' where "
        "the catalog found no public on-demand offer, 'no price' where none has been found yet",
        "cost-buy: purchase price per card x count (launch/street price in the catalog); break-even: hours of "
        "renting the same cards that cost as much as buying them (power, hosting and resale not counted)",
        f"energy: TDP x count x time x {POWER_UTILIZATION:.0%} average power draw (stated utilization)",
        f"ranked by {objective}" + (f"; budget ${budget_usd:,.0f}" if budget_usd else ""),
        *([alias_note] if alias_note else []),
        *(f"estimator: {a}" for a in estimator_assumptions),
        *(f"workload: {a}" for a in getattr(workload, "assumptions", ()) if a not in estimator_assumptions),
    ]
    return Recommendation(model=getattr(workload, "name", str(model)), objective=objective, counts=counts,
                          rows=tuple(rows), rejected=tuple(rejected), assumptions=tuple(assumptions), job=job,
                          workload=wl, partial=partial, fit_options=advice)


def effective_rate(time: Any) -> float:
    """Samples/s the job really runs at: ``time.effective_samples_per_s`` (GPUs capped by the loader and
    the copies), or the GPUs' rate for an estimate without it."""
    eff = getattr(time, "effective_samples_per_s", None)
    return float(eff if eff is not None else time.samples_per_s)


def _breakdown(memory: Any) -> dict[str, float] | None:
    """An estimate's per-GPU memory by category (for the dashboard's stacked bars), None when it has none."""
    parts = getattr(memory, "breakdown_bytes", None)
    return None if parts is None else {k: float(v) for k, v in parts.items()}


def _drop_no_speedup(candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Rejection]]:
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


def _price_and_rank(candidates: list[dict[str, Any]], job: Mapping[str, Any], objective: str,
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
            memory_breakdown_bytes=_breakdown(e.memory),
        ))
    return rows, rejected


def _partial_answer(rejected: Sequence[Rejection], best_misfit: dict[str, Any] | None, precision: str,
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
            parts.append(f"not even batch 1 per GPU fits on {n} x {spec.name} (needs {_gib(mem.total_bytes)}, "
                         f"has {_gib(has)})")
        fitting = advice.fitting if advice is not None else ()
        if fitting:
            parts.append("it would fit with: " + "; ".join(
                f"{o.change} ({o.how}: {_gib(o.memory_per_gpu_bytes)} per GPU)" for o in fitting[:4]))
        else:
            parts.append("no single change tried fits (see fit_options); raise --max-gpus, or combine gradient "
                         "checkpointing, LoRA/QLoRA and a lower precision")
        return "; ".join(parts)
    if "over_budget" in codes:
        cheapest = min((r for r in rejected if r.code == "over_budget"), key=lambda r: r.reason)
        return f"nothing fits the budget; e.g. {cheapest.gpu_name} x{cheapest.num_gpus}: {cheapest.reason}"
    return "no card qualified: " + "; ".join(sorted({r.reason for r in rejected})[:3])
