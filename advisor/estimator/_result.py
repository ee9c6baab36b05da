"""The estimate of one workload on ``num_gpus`` cards of one kind, as the API and the JSON give it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advisor.estimator._checks import check_estimate
from advisor.estimator.memory import MemoryEstimate
from advisor.estimator.time import TimeEstimate
from advisor.workload.base import Workload
from advisor.workload.door import door_of


@dataclass(frozen=True, slots=True)
class Estimate:
    """Memory and time of a workload on ``num_gpus`` cards of one kind (see DESIGN.md "Estimate JSON")."""

    model: str
    gpu_id: str
    gpu_name: str
    num_gpus: int
    parallelism: str
    workload: Workload
    batch_size: int
    micro_batch_per_gpu: int
    memory: MemoryEstimate
    time: TimeEstimate
    flops_per_step: float
    calibrated: bool
    assumptions: tuple[str, ...] = ()
    calibrated_figures: tuple[str, ...] = field(default=())
    profile: str = "generic"
    profile_name: str = ""
    evidence: str = "inherited"
    inherited_figures: tuple[str, ...] = ()
    step_s_low: float = 0.0
    step_s_high: float = 0.0

    @property
    def step_range_s(self) -> tuple[float, float]:
        """(low, high) step seconds: the measured error spread of this estimate's evidence level."""
        return self.step_s_low, self.step_s_high

    def __post_init__(self) -> None:
        check_estimate(self)  # every figure finite and >= 0, or a loud EstimateBug: never a silent wrong answer

    def to_dict(self) -> dict[str, Any]:
        """Exactly DESIGN.md's Estimate JSON, plus extra keys."""
        w = self.workload
        return {
            "model": self.model,
            "gpu": {"id": self.gpu_id, "name": self.gpu_name},
            "num_gpus": self.num_gpus,
            "workload": {"params": w.params, "trainable_params": w.trainable_params if w.mode == "train" else 0,
                         "batch_size": self.batch_size, "seq_len": w.seq_len, "image_size": w.image_size,
                         "precision": w.precision,
                         "optimizer": w.optimizer if w.mode == "train" else None, "mode": w.mode,
                         "micro_batch_per_gpu": self.micro_batch_per_gpu, "grad_accum": w.grad_accum,
                         "gen_len": w.gen_len, "family": w.family, "door": door_of(w)},
            "memory": self.memory.to_dict(),
            "time": self.time.to_dict(),
            "flops_per_step": self.flops_per_step,
            "calibrated": self.calibrated,
            "assumptions": list(self.assumptions),
            "parallelism": self.parallelism,
            "calibrated_figures": list(self.calibrated_figures),
            "profile": {"id": self.profile, "name": self.profile_name, "evidence": self.evidence,
                        "inherited_figures": list(self.inherited_figures)},
        } | {"time": {**self.time.to_dict(), "step_s_low": self.step_s_low, "step_s_high": self.step_s_high,
                      "evidence": self.evidence}}

    def to_frame(self) -> Any:
        """The memory breakdown as a table (bytes and GiB per category)."""
        return self.memory.to_frame()
