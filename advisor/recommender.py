"""Rank cards and card counts for a workload by time, cost or energy.

``recommend(model, ...)`` builds the workload once, then asks the estimator
(``advisor.estimator.estimate_workload``) about every card of the catalog (user cards
included) at card counts 1, 2, 4, ... up to ``max_gpus`` (powers of two, plus
``max_gpus`` itself).  Each (card, count) either becomes a ranked ``Candidate`` or a
``Rejection`` that says why (does not fit, precision unsupported, over budget, no price).

The answer's records (re-exported here) are in ``advisor.recommendation``; the job, the pricing and
the ranking in ``advisor.ranking``.  Pure: no torch, no printing.  pandas is imported only
by ``Recommendation.to_frame``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from advisor.catalog import SEGMENTS, VENDORS, GpuSpec, find_gpu, load_specs
from advisor.errors import AdvisorError, EstimateError
from advisor.ranking import (
    DEFAULT_THEN,
    OBJECTIVE_WORDS,
    POWER_UTILIZATION,
    TIE_BREAKS,
    breakdown,
    drop_no_speedup,
    effective_rate,
    gib,
    gpu_counts,
    job_size,
    partial_answer,
    price_and_rank,
    summary_lines,
    tie_summary,
)
from advisor.recommendation import FRAME_COLUMNS, REJECTION_CODES, Candidate, Recommendation, Rejection
from advisor.workload.base import Workload
from advisor.workload.options import WorkloadOptions, check_count

__all__ = ["FRAME_COLUMNS", "OBJECTIVES", "OBJECTIVE_ALIASES", "REJECTION_CODES", "Candidate", "Objective",
           "Recommendation", "Rejection", "effective_rate", "gpu_counts", "recommend"]

Objective = Literal["time", "cost-cloud", "cost-buy", "energy"]
#: ``time``: time to train (effective rate); ``cost-cloud``: dollars for this job at on-demand cloud rates;
#: ``cost-buy``: purchase price of the cards; ``energy``: kWh for this job.
OBJECTIVES: tuple[str, ...] = ("time", "cost-cloud", "cost-buy", "energy")
#: Old objective names still accepted (mapped, with a note in the assumptions).
OBJECTIVE_ALIASES: Mapping[str, str] = {"cost": "cost-cloud"}
#: Largest card count considered unless the caller says otherwise: the API's, the CLI's and the dashboard's default.
DEFAULT_MAX_GPUS = 8
#: A card without the asked precision's tensor rate is costed at this one instead, with a note (autocast to fp16
#: needs loss scaling but holds the same memory): amp-bf16 on Volta, Turing, Pascal and GCN cards.
PRECISION_FALLBACKS: Mapping[str, str] = {"amp-bf16": "amp-fp16"}

def _estimator() -> Callable[..., Any]:
    """The estimator's per-card entry point (imported lazily; tests may replace this)."""
    from advisor.estimator import estimate_workload

    return estimate_workload


_REUSE_SIZE = 8
#: Presets and config files/dicts built in this process, per (what names the model, build options): the same
#: request gets the same workload object, so ``_reused`` finds its estimates.
_BUILT: OrderedDict[tuple[Any, ...], Workload] = OrderedDict()


def _build_workload(model: Any, **kwargs: Any) -> Workload:
    from advisor.workload import load_workload

    key = _build_key(model, kwargs)
    if key is None:
        return load_workload(model, **kwargs)
    hit = _BUILT.get(key)
    if hit is None:
        hit = _BUILT[key] = load_workload(model, **kwargs)
        while len(_BUILT) > _REUSE_SIZE:
            _BUILT.popitem(last=False)
    return hit


def _build_key(model: Any, kwargs: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What a build depends on, or ``None`` (a module, a Hub id, unhashable options).

    A preset: its name (a fixed definition); a config file: its path and its state on disk; a config dict: its JSON.
    """
    import json

    try:
        options = tuple(sorted(kwargs.items()))
        if isinstance(model, Mapping):
            key: tuple[Any, ...] = ("config", json.dumps(model, sort_keys=True), options)
        elif isinstance(model, (str, Path)) and Path(model).is_file():
            st = Path(model).stat()
            key = ("file", str(Path(model).resolve()), st.st_mtime_ns, st.st_size, options)
        elif isinstance(model, str):
            from advisor.workload.presets import resolve_preset

            key = ("preset", resolve_preset(model), options)
        else:
            return None
        hash(key)
    except (AdvisorError, TypeError, ValueError, OSError):
        return None
    return key


#: The last workloads recommend was given, each with its memoized copy (``_memoize_rebuild``) and the estimates
#: made of it: a repeated request for the same workload object (the trace cache hands the same one back within a
#: process; the dashboard re-ranks by another objective, budget or filter) reuses the estimator's preparation
#: (``advisor.estimator.prepare_workload``, per workload object) and re-prices no (card, count) pair it priced.
_REUSE: OrderedDict[int, tuple[Workload, Workload, dict[tuple[Any, ...], Any]]] = OrderedDict()


def _reused(workload: Workload) -> tuple[Workload, dict[tuple[Any, ...], Any]]:
    """(the memoized workload, its estimates so far) for a workload object, kept for the last few."""
    hit = _REUSE.get(id(workload))
    if hit is not None and hit[0] is workload:
        _REUSE.move_to_end(id(workload))
        return hit[1], hit[2]
    entry: tuple[Workload, Workload, dict[tuple[Any, ...], Any]] = (workload, _memoize_rebuild(workload), {})
    _REUSE[id(workload)] = entry
    while len(_REUSE) > _REUSE_SIZE:
        _REUSE.popitem(last=False)
    return entry[1], entry[2]


def _memoize_rebuild(workload: Workload) -> Workload:
    """Make ``with_batch_size`` cached, so each distinct per-GPU micro-batch is built once."""
    rebuild = workload.options.get("rebuild")
    if rebuild is None:
        return workload

    @functools.cache
    def rebuild_cached(batch_size: int) -> Workload:
        built: Workload = rebuild(batch_size)
        return dataclasses.replace(built, options={**built.options, "rebuild": rebuild_cached})

    return dataclasses.replace(workload, options={**workload.options, "rebuild": rebuild_cached})


def _check_inputs(max_gpus: int, objective: str, budget_usd: float | None, vendor: str | None,
                  segment: str | None, epochs: float, dataset_samples: int | None,
                  total_tokens: float | None) -> None:
    check_count("max_gpus", max_gpus)
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
    if dataset_samples is not None:
        check_count("dataset_samples", dataset_samples)
    if total_tokens is not None and not (isinstance(total_tokens, (int, float)) and total_tokens > 0):
        raise EstimateError(f"total_tokens must be > 0, got {total_tokens!r}")


def _kept_for(estimates: dict[tuple[Any, ...], Any], calibration: Any) -> dict[tuple[Any, ...], Any] | None:
    """``estimates`` to keep this request's in, or ``None`` when its calibration is not one to key them by.

    Only none or the store's (``StoredProbes``: replaced when the store is re-read, every few seconds); a new one
    drops what was priced under the old, so a long-lived process (the dashboard) keeps one calibration's worth.
    """
    from advisor.estimator import StoredProbes

    if calibration is not None and not isinstance(calibration, StoredProbes):
        return None
    if estimates.get(("calibration",), (None, None))[1] is not calibration:
        estimates.clear()
        estimates[("calibration",)] = (None, calibration)
    return estimates


def _priced(priced: dict[tuple[Any, ...], Any] | None, estimate_workload: Callable[..., Any], workload: Any,
            spec: GpuSpec, n: int, strategy: str | None, calibration: Any, extra: Mapping[str, Any]) -> Any:
    """``estimate_workload(...)`` for one (card, count, strategy), from ``priced`` when it was made before.

    ``priced`` is ``None`` (nothing kept) unless every input is immutable or held by identity: the card (the
    catalog's own record), no calibration or the store's (``StoredProbes``, re-read after a few seconds), plain
    runtime options.
    """
    if priced is None:
        return estimate_workload(workload, spec, num_gpus=n, parallelism=strategy, calibration=calibration, **extra)
    key = (id(spec), n, strategy, id(calibration), id(estimate_workload), tuple(sorted(extra.items())))
    hit = priced.get(key)
    if hit is not None and hit[0] is spec and hit[1] is calibration and hit[2] is estimate_workload:
        if isinstance(hit[3], AdvisorError):
            raise hit[3]
        return hit[3]
    try:
        result = estimate_workload(workload, spec, num_gpus=n, parallelism=strategy, calibration=calibration, **extra)
    except AdvisorError as exc:
        priced[key] = (spec, calibration, estimate_workload, exc)
        raise
    priced[key] = (spec, calibration, estimate_workload, result)
    return result


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
              gen_len: int | None = None, max_gpus: int = DEFAULT_MAX_GPUS, objective: str = "time",
              budget_usd: float | None = None, vendor: str | None = None, segment: str | None = None,
              gpus: Sequence[str | GpuSpec] | None = None, dataset_samples: int | None = None,
              epochs: float = 1, total_tokens: float | None = None, specs_dir: str | Path | None = None,
              calibration: Any = "auto", example_inputs: Any = None,
              loader_samples_per_s: float | None = None, runtime: str = "eager",
              channels_last: bool = False, then: str | None = None) -> Recommendation:
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
    if then is not None and then not in TIE_BREAKS:
        raise EstimateError(f"unknown tie-break {then!r}", hint=f"accepted: {', '.join(TIE_BREAKS)}")
    then = then or DEFAULT_THEN[objective]
    from advisor.calibration import resolve_calibration
    from advisor.estimator import matmul_rate
    from advisor.estimator.time import check_runtime

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
    workload, estimates = _reused(_build_workload(model, **build_kwargs))
    priced = _kept_for(estimates, calibration)
    job = job_size(workload, mode, dataset_samples, epochs, total_tokens)
    counts = gpu_counts(max_gpus)
    estimate_workload = _estimator()
    extra: dict[str, Any] = {"runtime": runtime, "channels_last": channels_last}
    if loader_samples_per_s is not None:
        extra["loader_samples_per_s"] = loader_samples_per_s

    candidates: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    estimator_assumptions: list[str] = []
    best_misfit: dict[str, Any] | None = None
    fallback = PRECISION_FALLBACKS.get(precision)
    fallback_workload: Any = None
    fallback_priced: dict[tuple[Any, ...], Any] | None = None
    fell_back: list[str] = []
    for spec in cards:
        card_workload, card_precision, card_priced = workload, None, priced
        if matmul_rate(spec, precision) is None:
            if fallback is not None and matmul_rate(spec, fallback) is not None:
                if fallback_workload is None:  # built once, for every card that needs it
                    fallback_workload, fallback_estimates = _reused(_build_workload(
                        model, **{**build_kwargs, "precision": fallback}))
                    fallback_priced = _kept_for(fallback_estimates, calibration)
                card_workload, card_precision, card_priced = fallback_workload, fallback, fallback_priced
                fell_back.append(spec.name)
            else:
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
                    e = _priced(card_priced, estimate_workload, card_workload, spec, n, strategy, calibration,
                                extra)
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
                    f"does not fit: needs {gib(mem.total_bytes)} per GPU, has {gib(has)}"
                    + (f" ({used})" if used else ""), mem.total_bytes, has,
                    breakdown(mem)))
                if best_misfit is None or spec.memory_bytes * n > best_misfit["memory"]:
                    best_misfit = {"spec": spec, "count": n, "estimate": est, "memory": spec.memory_bytes * n,
                                   "parallelism": used}
                continue
            candidates.append({"spec": spec, "count": n, "estimate": est, "parallelism": used,
                               "precision": card_precision})

    candidates, slow = drop_no_speedup(candidates)
    rejected.extend(slow)
    rows, over = price_and_rank(candidates, job, objective, budget_usd, batch_size, then)
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
    partial = None if rows else partial_answer(rejected, best_misfit, precision, batch_size, cards, advice)
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
        "cost-buy: purchase price per card x count (dated list/street/used price in the catalog), ranked per "
        "sample/s the job runs at; break-even: hours of "
        "renting the same cards that cost as much as buying them (power, hosting and resale not counted)",
        f"energy: TDP x count x time x {POWER_UTILIZATION:.0%} average power draw (stated utilization)",
        f"ranked by {objective} ({OBJECTIVE_WORDS[objective]}); ties by {then} ({OBJECTIVE_WORDS[then]})"
        + (f"; budget ${budget_usd:,.0f}" if budget_usd else ""),
        *([alias_note] if alias_note else []),
        *(f"estimator: {a}" for a in estimator_assumptions),
        *(f"workload: {a}" for a in getattr(workload, "assumptions", ()) if a not in estimator_assumptions),
    ]
    tie = tie_summary(rows, objective, then, job)
    notes = ([f"{precision} is not supported by {len(fell_back)} card(s) ({', '.join(fell_back[:4])}"
              + (", ..." if len(fell_back) > 4 else "") + f"): costed at {fallback} instead (same memory; fp16 "
              "autocast needs loss scaling)"] if fell_back else [])
    if notes:
        assumptions.append(notes[0])
    return Recommendation(model=getattr(workload, "name", str(model)), objective=objective, counts=counts,
                          rows=tuple(rows), rejected=tuple(rejected), assumptions=tuple(assumptions), job=job,
                          workload=wl, partial=partial, fit_options=advice, then=then, tie=tie,
                          summary=(*summary_lines(rows, objective, tie), *notes))
