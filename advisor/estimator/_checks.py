"""The last check on every answer: each figure of an ``Estimate`` (and of each ranked row) finite and >= 0.

Inputs are validated where they enter (config fields, spec files, options, calibration), so a NaN, an infinity,
a negative size or a zero step time here is a bug in the estimator, not the user's doing: it fails loudly, naming
the figures, instead of printing a confident wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from advisor.errors import AdvisorError

#: Figures that may be negative: what is left of the card's memory (negative when the workload does not fit).
SIGNED = frozenset({"margin_bytes", "headroom_bytes", "headroom_fraction"})
#: Figures that must be strictly positive: a step takes time, and a running job makes progress.
POSITIVE = frozenset({"step_s", "samples_per_s", "effective_samples_per_s", "time_to_train_s"})


class EstimateBug(AdvisorError):
    """An estimate came out non-finite, negative or zero where it cannot be: a bug, reported with the figures."""

    exit_code = 70  # EX_SOFTWARE: an internal error


def _numbers(value: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{path}[{i}]")


def bad_figures(figures: Mapping[str, Any]) -> list[str]:
    """``name = value`` of each figure in ``figures`` (nested) that is NaN, infinite, negative or an impossible zero.

    ``POSITIVE`` figures must be > 0; ``SIGNED`` figures may be negative, but not NaN or infinite.
    """
    bad = []
    for name, x in _numbers(figures, ""):
        leaf = name.rsplit(".", 1)[-1]
        finite = not isinstance(x, float) or math.isfinite(x)
        ok = finite and (leaf in SIGNED or x >= 0) and (leaf not in POSITIVE or x > 0)
        if not ok:
            bad.append(f"{name} = {x!r}")
    return bad


def _fail(what: str, bad: list[str]) -> None:
    shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
    raise EstimateBug(f"internal error (a bug in gpu-advisor, not in your input): {what} came out with {shown}",
                      "no answer is given rather than a wrong one; please report this with the command or call "
                      "that produced it")


def check_estimate(estimate: Any) -> None:
    """Fail loudly unless every figure of ``estimate`` is finite and >= 0 and its step takes time.

    Raises:
        EstimateBug: a NaN, infinite or negative figure, or a step time, rate or job time that is not > 0.
    """
    figures = {"memory": estimate.memory.to_dict(), "time": estimate.time.to_dict(),
               "flops_per_step": estimate.flops_per_step, "params": estimate.workload.params,
               "trainable_params": estimate.workload.trainable_params}
    bad = bad_figures(figures)
    if bad:
        _fail(f"the estimate of {estimate.model} on {estimate.num_gpus} x {estimate.gpu_id}", bad)


def check_row(row: Any) -> None:
    """Fail loudly unless every figure of a ranked row (``recommendation.Candidate``) is finite and >= 0.

    Raises:
        EstimateBug: as ``check_estimate``.
    """
    bad = bad_figures(row.to_dict())
    if bad:
        _fail(f"the ranked row {row.num_gpus} x {row.gpu_id}", bad)
