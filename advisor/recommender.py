"""Rank cards and card counts for a workload by time, cost or energy.

``recommend(model, ...)`` builds the workload once, then asks the estimator
(``advisor.estimator.estimate_workload``) about every card of the catalog (user cards
included) at card counts 1, 2, 4, ... up to ``max_gpus`` (powers of two, plus
``max_gpus`` itself).  Each (card, count) either becomes a ranked ``Candidate`` or a
``Rejection`` that says why (does not fit, precision unsupported, over budget, no price).

Its keywords are one record, ``RecommendRequest``; ``recommend_request(request)`` answers it, step by step:
the inputs resolved (checks, objective, calibration, the cards), the workload built once, every card x count
estimated, the candidates priced and ranked, and fit advice when nothing fits.  The answer's records
(re-exported here) are in ``advisor.recommendation``; the job, the pricing and the ranking in
``advisor.ranking``; what a repeated request reuses in ``advisor.reuse``.  Pure: no torch, no printing.
pandas is imported only by ``Recommendation.to_frame``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.catalog import GpuSpec, find_gpu, load_specs
from advisor.errors import AdvisorError, EstimateError
from advisor.ranking import (
    DEFAULT_THEN,
    POWER_UTILIZATION,
    TIE_BREAKS,
    breakdown,
    drop_no_speedup,
    effective_rate,
    gib,
    gpu_counts,
    job_size,
    objective_words,
    partial_answer,
    price_and_rank,
    summary_lines,
    tie_summary,
)
from advisor.recommendation import FRAME_COLUMNS, REJECTION_CODES, Candidate, Recommendation, Rejection
from advisor.request import (
    DEFAULT_MAX_GPUS,
    OBJECTIVE_ALIASES,
    OBJECTIVES,
    PRECISION_FALLBACKS,
    Objective,
    RecommendRequest,
)
from advisor.reuse import _BUILT as _BUILT
from advisor.reuse import _REUSE as _REUSE
from advisor.reuse import build_workload as _build_workload
from advisor.reuse import kept_for, priced, reused
from advisor.workload.base import Workload
from advisor.workload.options import WorkloadOptions

__all__ = ["DEFAULT_MAX_GPUS", "FRAME_COLUMNS", "OBJECTIVES", "OBJECTIVE_ALIASES", "PRECISION_FALLBACKS",
           "REJECTION_CODES", "Candidate", "Objective", "RecommendRequest", "Recommendation", "Rejection",
           "effective_rate", "gpu_counts", "recommend", "recommend_request"]


def _estimator() -> Callable[..., Any]:
    """The estimator's per-card entry point (imported lazily; tests may replace this)."""
    from advisor.estimator import estimate_workload

    return estimate_workload


_DEFAULT = RecommendRequest(model=None)


def recommend(model: Any, *, batch_size: int = _DEFAULT.batch_size, seq_len: int | None = _DEFAULT.seq_len,
              image_size: int | None = _DEFAULT.image_size, precision: str = _DEFAULT.precision,
              optimizer: str = _DEFAULT.optimizer, mode: str = _DEFAULT.mode,
              gradient_checkpointing: bool = _DEFAULT.gradient_checkpointing,
              lora_rank: int | None = _DEFAULT.lora_rank, quantize_base: str | None = _DEFAULT.quantize_base,
              grad_accum: int = _DEFAULT.grad_accum, parallelism: str | None = _DEFAULT.parallelism,
              gen_len: int | None = _DEFAULT.gen_len, max_gpus: int = _DEFAULT.max_gpus,
              objective: str = _DEFAULT.objective, budget_usd: float | None = _DEFAULT.budget_usd,
              vendor: str | None = _DEFAULT.vendor, segment: str | None = _DEFAULT.segment,
              gpus: Sequence[str | GpuSpec] | None = _DEFAULT.gpus,
              dataset_samples: int | None = _DEFAULT.dataset_samples, epochs: float = _DEFAULT.epochs,
              total_tokens: float | None = _DEFAULT.total_tokens, specs_dir: str | Path | None = _DEFAULT.specs_dir,
              calibration: Any = _DEFAULT.calibration, example_inputs: Any = _DEFAULT.example_inputs,
              loader_samples_per_s: float | None = _DEFAULT.loader_samples_per_s, runtime: str = _DEFAULT.runtime,
              channels_last: bool = _DEFAULT.channels_last, then: str | None = _DEFAULT.then,
              door: str = _DEFAULT.door) -> Recommendation:
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
        then: what orders rows that tie on the objective (e.g. every card capped by one data loader):
            ``gpu-speed`` (the GPUs' own rate) or another objective; ``None``: ``advisor.ranking.DEFAULT_THEN``.
        door: how a named transformer is priced (``closed`` or ``trace``), as in ``estimate``.

    Raises:
        UnknownModelError: unknown preset (the message lists the closest names).
        UnknownGpuError: a name in ``gpus`` matches no card.
        EstimateError: bad option (max_gpus < 1, negative budget, unknown objective/vendor/segment).
    """
    return recommend_request(RecommendRequest(
        model=model, batch_size=batch_size, seq_len=seq_len, image_size=image_size, precision=precision,
        optimizer=optimizer, mode=mode, gradient_checkpointing=gradient_checkpointing, lora_rank=lora_rank,
        quantize_base=quantize_base, grad_accum=grad_accum, parallelism=parallelism, gen_len=gen_len,
        max_gpus=max_gpus, objective=objective, budget_usd=budget_usd, vendor=vendor, segment=segment, gpus=gpus,
        dataset_samples=dataset_samples, epochs=epochs, total_tokens=total_tokens, specs_dir=specs_dir,
        calibration=calibration, example_inputs=example_inputs, loader_samples_per_s=loader_samples_per_s,
        runtime=runtime, channels_last=channels_last, then=then, door=door))


def recommend_request(request: RecommendRequest) -> Recommendation:
    """``recommend()`` for one request record (the CLI builds one from its flags)."""
    inputs = _resolve(request)
    options = request.workload_options()
    build_kwargs = {k: v for k, v in options.builder_kwargs(batch=True).items() if v is not None}
    if request.example_inputs is not None:
        build_kwargs["example_inputs"] = request.example_inputs
    # every card estimates the same workload, built once (the batch is passed even to a traced module)
    workloads = _Workloads(request.model, build_kwargs, inputs.calibration)
    workload = workloads.asked[0]
    job = job_size(workload, request.mode, request.dataset_samples, request.epochs, request.total_tokens)
    counts = gpu_counts(request.max_gpus)
    search = _Search()
    estimate_workload = _estimator()
    for spec in inputs.cards:
        _estimate_card(request, inputs.calibration, workloads, spec, counts, estimate_workload, search)
    candidates, slow = drop_no_speedup(search.candidates)
    search.rejected.extend(slow)
    rows, over = price_and_rank(candidates, job, inputs.objective, request.budget_usd, request.batch_size,
                                inputs.then)
    search.rejected.extend(over)
    assumptions = search.assumptions
    if rows:  # the assumptions of the estimate behind the best row
        best_est = next(c["estimate"] for c in candidates
                        if c["spec"].id == rows[0].gpu_id and c["count"] == rows[0].num_gpus)
        assumptions = list(getattr(best_est, "assumptions", ())) or assumptions
    advice = None if rows else _fit_advice(request, options, inputs.calibration, search.best_misfit)
    partial = None if rows else partial_answer(search.rejected, search.best_misfit, request.precision,
                                               request.batch_size, inputs.cards, advice)
    tie = tie_summary(rows, inputs.objective, inputs.then, job)
    notes = _fallback_notes(request.precision, search.fell_back)
    return Recommendation(
        model=getattr(workload, "name", str(request.model)), objective=inputs.objective, counts=counts,
        rows=tuple(rows), rejected=tuple(search.rejected),
        assumptions=(*_assumption_lines(request, inputs, job, counts, workload, assumptions), *notes[:1]),
        job=job, workload=_workload_summary(request, workload), partial=partial, fit_options=advice,
        then=inputs.then, tie=tie, summary=(*summary_lines(rows, inputs.objective, tie), *notes))


@dataclass(frozen=True, slots=True)
class _Inputs:
    """A request's inputs resolved: the objective (aliases mapped), the tie-break, calibration and the cards."""

    objective: str
    then: str
    alias_note: str | None
    calibration: Any
    cards: list[GpuSpec]


def _resolve(request: RecommendRequest) -> _Inputs:
    """Check the request, map an old objective name, read the calibration once and pick the cards."""
    request.check()
    objective, alias_note = request.objective, None
    if objective in OBJECTIVE_ALIASES:
        alias_note = (f"objective {objective!r} is deprecated: it now means {OBJECTIVE_ALIASES[objective]!r} "
                      "(cost of this job at on-demand cloud rates); rank by 'cost-buy' for the cards' price")
        objective = OBJECTIVE_ALIASES[objective]
    if request.then is not None and request.then not in TIE_BREAKS:
        raise EstimateError(f"unknown tie-break {request.then!r}", hint=f"accepted: {', '.join(TIE_BREAKS)}")
    then = request.then or DEFAULT_THEN[objective]
    from advisor.calibration import resolve_calibration
    from advisor.estimator.time import check_runtime

    check_runtime(request.runtime)
    calibration = resolve_calibration(request.calibration)  # "auto": the store is read here, once, not per card
    return _Inputs(objective, then, alias_note, calibration, _cards(request))


def _cards(request: RecommendRequest) -> list[GpuSpec]:
    """The catalog's cards (the user's included) that pass the request's filters."""
    specs = load_specs(extra_dirs=[request.specs_dir]) if request.specs_dir is not None else load_specs()
    gpus, vendor, segment = request.gpus, request.vendor, request.segment
    if gpus is not None:
        wanted = {(g.id if isinstance(g, GpuSpec) else find_gpu(g, specs).id) for g in gpus}
        specs = tuple(s for s in specs if s.id in wanted)
    cards = [s for s in specs if (vendor is None or s.vendor == vendor) and (segment is None or s.segment == segment)]
    if not cards:
        raise EstimateError("no card in the catalog passes the filters "
                            f"(vendor={vendor!r}, segment={segment!r}, gpus={list(gpus) if gpus else None})",
                            hint="loosen --vendor/--segment, or see `python -m advisor specs list`")
    return cards


class _Workloads:
    """The workload as asked, and at the fallback precision (built on first need, once for every card)."""

    def __init__(self, model: Any, build_kwargs: Mapping[str, Any], calibration: Any) -> None:
        self.model, self.build_kwargs, self.calibration = model, build_kwargs, calibration
        self.asked = self._built(dict(build_kwargs))
        self._fallback: tuple[Workload, dict[tuple[Any, ...], Any] | None] | None = None

    def _built(self, kwargs: dict[str, Any]) -> tuple[Workload, dict[tuple[Any, ...], Any] | None]:
        workload, estimates = reused(_build_workload(self.model, **kwargs))
        return workload, kept_for(estimates, self.calibration)

    def at(self, precision: str) -> tuple[Workload, dict[tuple[Any, ...], Any] | None]:
        """The workload at the fallback ``precision`` and where its estimates are kept."""
        if self._fallback is None:
            self._fallback = self._built({**self.build_kwargs, "precision": precision})
        return self._fallback


@dataclass(slots=True)
class _Search:
    """What estimating every card x count found (filled card by card, in the catalog's order)."""

    candidates: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: the first estimate's assumptions (the best row's replace them when one is ranked)
    assumptions: list[str] = field(default_factory=list)
    #: the misfit with the most memory (card memory x count): what fit advice starts from
    best_misfit: dict[str, Any] | None = None
    #: cards costed at the fallback precision
    fell_back: list[str] = field(default_factory=list)


def _auto_parallelism(mode: str, count: int, single_fits: bool | None) -> tuple[str | None, ...]:
    """Strategies tried, in order, for ``count`` GPUs (the first that fits is kept)."""
    if count == 1:
        return (None,)
    if mode == "infer":
        # Replicas serve independent requests when one card holds the model; else split it.
        return ("tp",) if single_fits is False else ("ddp", "tp")
    return ("ddp", "zero3")


def _estimate_card(request: RecommendRequest, calibration: Any, workloads: _Workloads, spec: GpuSpec,
                   counts: tuple[int, ...], estimate_workload: Callable[..., Any], search: _Search) -> None:
    """Estimate one card at every count: each (card, count) a candidate or a rejection in ``search``."""
    from advisor.estimator import matmul_rate

    precision = request.precision
    (workload, kept), card_precision = workloads.asked, None
    if matmul_rate(spec, precision) is None:
        fallback = PRECISION_FALLBACKS.get(precision)
        if fallback is None or matmul_rate(spec, fallback) is None:
            supported = ", ".join(spec.supported_precisions) or "none listed"
            search.rejected.extend(Rejection(spec.id, spec.name, n, "precision_unsupported",
                                             f"{spec.name} has no {precision} rate (supports: {supported})")
                                   for n in counts)
            return
        (workload, kept), card_precision = workloads.at(fallback), fallback
        search.fell_back.append(spec.name)
    extra = request.runtime_options()
    single_fits: bool | None = None
    for n in counts:
        if n == 1:
            strategies: tuple[str | None, ...] = (None,)
        elif request.parallelism is not None:
            strategies = (request.parallelism,)
        else:
            strategies = _auto_parallelism(request.mode, n, single_fits)
        est, used, error = None, None, None
        for strategy in strategies:
            try:
                e = priced(kept, estimate_workload, workload, spec, n, strategy, calibration, extra)
            except AdvisorError as exc:
                error = exc
                continue
            est, used = e, strategy
            if e.memory.fits:
                break
        if est is None:
            msg = error.message if isinstance(error, AdvisorError) else "no estimate"
            search.rejected.append(Rejection(spec.id, spec.name, n, "not_estimable", msg))
            continue
        if not search.assumptions:
            search.assumptions = list(getattr(est, "assumptions", ()))
        if n == 1:
            single_fits = bool(est.memory.fits)
        _sort_one(search, spec, n, est, used, card_precision)


def _sort_one(search: _Search, spec: GpuSpec, n: int, est: Any, used: str | None,
              card_precision: str | None) -> None:
    """One estimated (card, count): a candidate when it fits, else a rejection (and the best misfit so far)."""
    mem = est.memory
    if mem.fits:
        search.candidates.append({"spec": spec, "count": n, "estimate": est, "parallelism": used,
                                  "precision": card_precision})
        return
    usable = getattr(mem, "usable_bytes", None)
    has = usable if usable is not None else spec.memory_bytes
    search.rejected.append(Rejection(
        spec.id, spec.name, n, "does_not_fit",
        f"does not fit: needs {gib(mem.total_bytes)} per GPU, has {gib(has)}" + (f" ({used})" if used else ""),
        mem.total_bytes, has, breakdown(mem)))
    best = search.best_misfit
    if best is None or spec.memory_bytes * n > best["memory"]:
        search.best_misfit = {"spec": spec, "count": n, "estimate": est, "memory": spec.memory_bytes * n,
                              "parallelism": used}


def _fit_advice(request: RecommendRequest, options: WorkloadOptions, calibration: Any,
                best_misfit: dict[str, Any] | None) -> Any:
    """What would make the workload fit on the misfit with the most memory (``None`` when none was estimated)."""
    if best_misfit is None:
        return None
    from advisor.advice import fit_options

    est_kwargs = {k: v for k, v in options.keywords().items() if v is not None}
    if request.example_inputs is not None:
        est_kwargs["example_inputs"] = request.example_inputs
    est_kwargs.update(request.runtime_options(), calibration=calibration, parallelism=best_misfit["parallelism"])
    try:
        return fit_options(request.model, best_misfit["spec"], num_gpus=best_misfit["count"],
                           max_gpus=request.max_gpus, specs_dir=request.specs_dir, **est_kwargs)
    except AdvisorError:  # the partial answer still says what does not fit
        return None


def _workload_summary(request: RecommendRequest, workload: Workload) -> dict[str, Any]:
    """The answer's ``workload``: the model's size and the asked step."""
    return {"params": getattr(workload, "params", None),
            "trainable_params": getattr(workload, "trainable_params", None),
            "family": getattr(workload, "family", None), "batch_size": request.batch_size,
            "seq_len": request.seq_len, "image_size": request.image_size, "precision": request.precision,
            "optimizer": request.optimizer if request.mode == "train" else None, "mode": request.mode}


def _assumption_lines(request: RecommendRequest, inputs: _Inputs, job: Mapping[str, Any], counts: tuple[int, ...],
                      workload: Workload, estimator_assumptions: Sequence[str]) -> list[str]:
    """The ranking's own assumptions, then the estimator's (of the best row) and the workload's."""
    objective, then, budget_usd = inputs.objective, inputs.then, request.budget_usd
    parallelism = request.parallelism or (
        "auto: ddp, falling back to zero3 when ddp does not fit" if request.mode == "train" else
        "auto: replicas (ddp) when one card holds the model, else tensor parallel (tp)")
    return [
        f"card counts considered: {', '.join(map(str, counts))} (powers of two up to max_gpus={request.max_gpus}, "
        "plus max_gpus)",
        f"parallelism: {parallelism}",
        f"batch_size {request.batch_size} is the global micro-batch across data-parallel replicas",
        f"job: {job['description']}; {job['time_words']} = job samples / effective samples per second (the GPUs' "
        "rate, host dispatch included, capped by the data loader and host->device copies)",
        "cost-cloud: on-demand $/h per card (dated in the catalog) x count x hours of this job; 'not rentable' where "
        "the catalog found no public on-demand offer, 'no price' where none has been found yet",
        "cost-buy: purchase price per card x count (dated list/street/used price in the catalog), ranked per "
        "sample/s the job runs at; break-even: hours of "
        "renting the same cards that cost as much as buying them (power, hosting and resale not counted)",
        f"energy: TDP x count x time x {POWER_UTILIZATION:.0%} average power draw (stated utilization)",
        f"ranked by {objective} ({objective_words(objective, job)}); ties by {then} ({objective_words(then, job)})"
        + (f"; budget ${budget_usd:,.0f}" if budget_usd else ""),
        *([inputs.alias_note] if inputs.alias_note else []),
        *(f"estimator: {a}" for a in estimator_assumptions),
        *(f"workload: {a}" for a in getattr(workload, "assumptions", ()) if a not in estimator_assumptions),
    ]


def _fallback_notes(precision: str, fell_back: Sequence[str]) -> list[str]:
    """The note for cards costed at the fallback precision (empty when none was)."""
    if not fell_back:
        return []
    fallback = PRECISION_FALLBACKS[precision]
    return [f"{precision} is not supported by {len(fell_back)} card(s) ({', '.join(fell_back[:4])}"
            + (", ..." if len(fell_back) > 4 else "") + f"): costed at {fallback} instead (same memory; fp16 "
            "autocast needs loss scaling)"]

