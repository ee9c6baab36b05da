"""What ``recommend()`` is asked: the objectives, the defaults, and the request record with its checks.

``RecommendRequest`` holds ``recommend``'s keywords (with their defaults, the one home of them); the CLI builds one
from its flags and ``advisor.recommender.recommend_request`` answers it.  Pure: no torch, no printing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from advisor.catalog import SEGMENTS, VENDORS, GpuSpec
from advisor.errors import EstimateError
from advisor.workload.options import WorkloadOptions, check_count

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


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    """One ``recommend()`` question: the workload, the job, the cards and how to rank them.

    The fields are ``recommend``'s keywords, with its defaults (the one home of them); see ``recommend`` for
    what each means.  Nothing is checked when the record is made: ``recommend_request`` checks it, in
    ``recommend``'s order, so the first bad input is the one reported.
    """

    model: Any
    batch_size: int = 1
    seq_len: int | None = None
    image_size: int | None = None
    precision: str = "amp-bf16"
    optimizer: str = "adamw"
    mode: str = "train"
    gradient_checkpointing: bool = False
    lora_rank: int | None = None
    quantize_base: str | None = None
    grad_accum: int = 1
    parallelism: str | None = None
    gen_len: int | None = None
    max_gpus: int = DEFAULT_MAX_GPUS
    objective: str = "time"
    budget_usd: float | None = None
    vendor: str | None = None
    segment: str | None = None
    gpus: Sequence[str | GpuSpec] | None = None
    dataset_samples: int | None = None
    epochs: float = 1
    total_tokens: float | None = None
    specs_dir: str | Path | None = None
    calibration: Any = "auto"
    example_inputs: Any = None
    loader_samples_per_s: float | None = None
    runtime: str = "eager"
    channels_last: bool = False
    then: str | None = None
    door: str = "closed"

    def workload_options(self) -> WorkloadOptions:
        """The workload's keywords as one record (its counts checked when made)."""
        return WorkloadOptions(batch_size=self.batch_size, seq_len=self.seq_len, image_size=self.image_size,
                               precision=self.precision, optimizer=self.optimizer, mode=self.mode,
                               gradient_checkpointing=self.gradient_checkpointing, lora_rank=self.lora_rank,
                               quantize_base=self.quantize_base, grad_accum=self.grad_accum, gen_len=self.gen_len,
                               door=self.door)

    def runtime_options(self) -> dict[str, Any]:
        """The estimator's keywords beyond the workload: runtime, layout, the loader's rate when given."""
        extra: dict[str, Any] = {"runtime": self.runtime, "channels_last": self.channels_last}
        if self.loader_samples_per_s is not None:
            extra["loader_samples_per_s"] = self.loader_samples_per_s
        return extra

    def check(self) -> None:
        """Reject a bad ranking or job input (the workload's own are checked by ``WorkloadOptions``).

        Raises:
            EstimateError: max_gpus out of range, an unknown objective, vendor or segment, a budget, epochs,
                dataset size or token count that is not a positive number.
        """
        check_count("max_gpus", self.max_gpus)
        if self.objective not in OBJECTIVES and self.objective not in OBJECTIVE_ALIASES:
            raise EstimateError(f"unknown objective {self.objective!r}", hint=f"accepted: {', '.join(OBJECTIVES)}")
        budget = self.budget_usd
        if budget is not None and (not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0):
            raise EstimateError(f"budget_usd must be a positive number of dollars, got {budget!r}")
        if self.vendor is not None and self.vendor not in VENDORS:
            raise EstimateError(f"unknown vendor {self.vendor!r}", hint=f"accepted: {', '.join(VENDORS)}")
        if self.segment is not None and self.segment not in SEGMENTS:
            raise EstimateError(f"unknown segment {self.segment!r}", hint=f"accepted: {', '.join(SEGMENTS)}")
        if not (isinstance(self.epochs, (int, float)) and math.isfinite(self.epochs) and self.epochs > 0):
            raise EstimateError(f"epochs must be > 0, got {self.epochs!r}")
        if self.dataset_samples is not None:
            check_count("dataset_samples", self.dataset_samples)
        tokens = self.total_tokens
        if tokens is not None and not (isinstance(tokens, (int, float)) and tokens > 0):
            raise EstimateError(f"total_tokens must be > 0, got {tokens!r}")
