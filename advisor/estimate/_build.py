"""A ``Workload`` from what the user names (preset, config, module, or a built one), with its options checked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.errors import EstimateError
from advisor.workload.base import MODES, OPTIMIZERS, PRECISIONS, Workload


def check_options(batch_size: Any, precision: Any, optimizer: Any, mode: Any, grad_accum: Any,
                   epochs: Any, num_gpus: Any) -> None:
    for name, value in (("batch_size", batch_size), ("grad_accum", grad_accum), ("num_gpus", num_gpus)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EstimateError(f"{name} must be a whole number >= 1, got {value!r}")
    if precision not in PRECISIONS:
        raise EstimateError(f"unknown precision {precision!r}", hint=f"accepted: {', '.join(PRECISIONS)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise EstimateError(f"unknown optimizer {optimizer!r}", hint=f"accepted: {', '.join(OPTIMIZERS)}")
    if mode not in MODES:
        raise EstimateError(f"unknown mode {mode!r}", hint=f"accepted: {', '.join(MODES)}")
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not epochs > 0:
        raise EstimateError(f"epochs must be > 0, got {epochs!r}")


def is_named_model(model: Any) -> bool:
    """A preset name, config path or config dict (not an ``nn.Module``)."""
    return isinstance(model, (str, Path, Mapping))


def build_workload(model: Any, *, batch_size: int = 1, seq_len: int | None = None, image_size: int | None = None,
                   precision: str = "amp-bf16", optimizer: str | None = "adamw", mode: str = "train",
                   gradient_checkpointing: bool = False, lora_rank: int | None = None,
                   quantize_base: str | None = None, grad_accum: int = 1, example_inputs: Any = None,
                   gen_len: int | None = None) -> Workload:
    """A ``Workload`` from a preset name, config path/dict, ``nn.Module`` or an already built workload."""
    if isinstance(model, Workload):
        return model
    try:
        from advisor.workload import load_workload  # type: ignore[attr-defined]
    except ImportError as exc:
        raise EstimateError("the workload builder (advisor.workload.load_workload) is not available") from exc
    kw: dict[str, Any] = {"precision": precision, "optimizer": optimizer, "mode": mode}
    if is_named_model(model):
        kw["batch_size"] = batch_size  # a traced module takes its batch from example_inputs
    optional = {"seq_len": seq_len, "image_size": image_size, "lora_rank": lora_rank,
                "quantize_base": quantize_base, "example_inputs": example_inputs, "gen_len": gen_len}
    kw.update({k: v for k, v in optional.items() if v is not None})
    if gradient_checkpointing:
        kw["gradient_checkpointing"] = True
    if grad_accum != 1:
        kw["grad_accum"] = grad_accum
    if isinstance(model, Path):
        model = str(model)
    result: Workload = load_workload(model, **kw)
    return result
