"""The answer of ``recommend``: ranked candidates, rejections with their reasons, and its table and JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from advisor.units import GiB

#: Rejection codes (stable; the dashboard and tests rely on them).
REJECTION_CODES: tuple[str, ...] = ("does_not_fit", "precision_unsupported", "over_budget", "no_price",
                                    "not_estimable", "no_speedup")
FRAME_COLUMNS: tuple[str, ...] = (
    "rank", "gpu_id", "gpu_name", "vendor", "segment", "num_gpus", "parallelism", "per_gpu_batch",
    "memory_per_gpu_gib", "usable_per_gpu_gib", "headroom_gib", "headroom_fraction", "step_s",
    "samples_per_s", "effective_samples_per_s", "tokens_per_s", "time_to_train_s", "cloud_usd_per_hour",
    "cost_cloud_usd", "price_usd", "cost_buy_usd", "break_even_hours", "energy_kwh", "samples_per_usd",
    "samples_per_s_per_w", "bound", "calibrated", "input_bound", "limiter", "buy_usd_per_sample_per_s",
    "cloud_price_date", "cloud_price_class", "price_date", "price_kind", "loader_samples_per_s", "precision",
    "step_s_low", "step_s_high", "evidence",
)

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
        time_by_class_s: the step's seconds per op class (``estimate(...).time.by_class_s``) and class_advice what
            would make each faster on this card (``time.class_advice``).
        buy_usd_per_sample_per_s: ``cost_buy_usd`` per sample/s the job runs at (what ``cost-buy`` ranks by).
        cloud_price_date / price_date / price_kind: when the catalog's cloud and purchase prices were seen, and
            the purchase price's kind (``list``, ``street``, ``used``, ``not sold``); cloud_price_class whose
            on-demand rate the cloud price is (``gpu cloud``, ``marketplace``, ``hyperscaler``; docs/prices.md).
        loader_samples_per_s: the data loader's rate the job was capped by (given or assumed), when any.
        precision: the precision this row was costed at when the card lacks the asked one (amp-bf16 on a card
            without bf16 is costed at amp-fp16); ``None``: as asked.
        step_s_low / step_s_high / evidence / profile: the estimate's range and the evidence it rests on
            (``advisor.estimator.uncertainty``).
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
    time_by_class_s: Mapping[str, float] | None = None
    class_advice: Mapping[str, str] | None = None
    buy_usd_per_sample_per_s: float | None = None
    cloud_price_date: str | None = None
    cloud_price_class: str | None = None
    price_date: str | None = None
    price_kind: str | None = None
    loader_samples_per_s: float | None = None
    precision: str | None = None
    step_s_low: float | None = None
    step_s_high: float | None = None
    evidence: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        from advisor.estimator._checks import check_row

        check_row(self)  # every figure finite and >= 0, or a loud EstimateBug

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
        then: what orders rows that tie on the objective (``advisor.ranking.TIE_BREAKS``).
        tie: when the top rows tie, what they tie on and what decides (``advisor.ranking.tie_summary``).
        summary: the lines that lead the answer: the tie and what would change it, the cheapest cards' time
            (``cost-buy``), the prices' dates.
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
    then: str | None = None
    tie: Mapping[str, Any] | None = None
    summary: tuple[str, ...] = ()

    @property
    def best(self) -> Candidate | None:
        """The top-ranked candidate, ``None`` when nothing qualifies."""
        return self.rows[0] if self.rows else None

    @property
    def uncertainty(self) -> str | None:
        """Which of the next candidates' step ranges overlap the best's ("within the uncertainty"), or ``None``."""
        best = self.best
        if best is None or best.step_s_low is None or best.step_s_high is None:
            return None
        close = [r for r in self.rows[1:5] if r.step_s_low is not None and r.step_s_high is not None
                 and r.step_s_low <= best.step_s_high and best.step_s_low <= r.step_s_high]
        if not close:
            return None
        names = ", ".join(f"{r.num_gpus} x {r.gpu_name} ({r.evidence})" for r in close)
        return (f"within the uncertainty: pick on price: the step-time ranges of {names} overlap the best's "
                f"({best.num_gpus} x {best.gpu_name}, {best.evidence}: {best.step_s_low:.3g}-{best.step_s_high:.3g} s)")

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
            "uncertainty": self.uncertainty,
            "fit_options": self.fit_options.to_dict() if self.fit_options is not None else None,
            "assumptions": list(self.assumptions),
            "then": self.then,
            "tie": dict(self.tie) if self.tie is not None else None,
            "summary": list(self.summary),
        }

    def to_frame(self) -> Any:
        """The ranked rows as a pandas DataFrame (columns ``FRAME_COLUMNS``; sizes in GiB)."""
        import pandas as pd

        records = []
        for r in self.rows:
            records.append({
                "rank": r.rank, "gpu_id": r.gpu_id, "gpu_name": r.gpu_name, "vendor": r.vendor,
                "segment": r.segment, "num_gpus": r.num_gpus, "parallelism": r.parallelism,
                "per_gpu_batch": r.per_gpu_batch, "memory_per_gpu_gib": r.memory_per_gpu_bytes / GiB,
                "usable_per_gpu_gib": None if r.usable_per_gpu_bytes is None else r.usable_per_gpu_bytes / GiB,
                "headroom_gib": None if r.headroom_bytes is None else r.headroom_bytes / GiB,
                "headroom_fraction": r.headroom_fraction, "step_s": r.step_s, "samples_per_s": r.samples_per_s,
                "effective_samples_per_s": r.effective_samples_per_s, "tokens_per_s": r.tokens_per_s,
                "time_to_train_s": r.time_to_train_s, "cloud_usd_per_hour": r.cloud_usd_per_hour,
                "cost_cloud_usd": r.cost_cloud_usd, "price_usd": r.price_usd, "cost_buy_usd": r.cost_buy_usd,
                "break_even_hours": r.break_even_hours, "energy_kwh": r.energy_kwh,
                "samples_per_usd": r.samples_per_usd, "samples_per_s_per_w": r.samples_per_s_per_w,
                "bound": r.bound, "calibrated": r.calibrated, "input_bound": r.input_bound, "limiter": r.limiter,
                "buy_usd_per_sample_per_s": r.buy_usd_per_sample_per_s, "cloud_price_date": r.cloud_price_date,
                "cloud_price_class": r.cloud_price_class, "price_date": r.price_date, "price_kind": r.price_kind,
                "loader_samples_per_s": r.loader_samples_per_s, "precision": r.precision,
                "step_s_low": r.step_s_low, "step_s_high": r.step_s_high, "evidence": r.evidence,
            })
        return pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))

    def rejected_frame(self) -> Any:
        """The rejected card x counts as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame.from_records([r.to_dict() for r in self.rejected],
                                         columns=[f.name for f in dataclasses.fields(Rejection)])
