"""A ``Workload`` from what the user names (preset, config, module, or a built one) and its ``WorkloadOptions``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.errors import EstimateError
from advisor.workload.base import Workload
from advisor.workload.options import WorkloadOptions


def is_named_model(model: Any) -> bool:
    """A preset name, config path or config dict (not an ``nn.Module``)."""
    return isinstance(model, (str, Path, Mapping))


def build_workload(model: Any, options: WorkloadOptions | None = None, *, example_inputs: Any = None) -> Workload:
    """A ``Workload`` from a preset name, config path/dict, ``nn.Module`` or an already built workload.

    ``options``: the workload (default ``WorkloadOptions()``); a traced module takes its batch from
    ``example_inputs``, so its ``batch_size`` is not passed to the tracer.
    """
    if isinstance(model, Workload):
        return model
    try:
        from advisor.workload import load_workload
    except ImportError as exc:
        raise EstimateError("the workload builder (advisor.workload.load_workload) is not available") from exc
    kw = (options or WorkloadOptions()).builder_kwargs(batch=is_named_model(model))
    if example_inputs is not None:
        kw["example_inputs"] = example_inputs
    if isinstance(model, Path):
        model = str(model)
    result: Workload = load_workload(model, **kw)
    return result
