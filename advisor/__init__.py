"""gpu-advisor: which GPUs are here, how fast they really are, and which to buy or rent.

The public API is re-exported here and loaded on first use, so ``import advisor`` stays
cheap (no torch, no pandas) until a function that needs them is called.

``advisor.probe``, ``advisor.estimate`` and ``advisor.recommend`` are functions; the code behind them
lives in modules of other names (``advisor.probing``, ``advisor.api`` over ``advisor.estimator``,
``advisor.recommender``), so importing those never shadows a function of the public API.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_specs": "advisor.catalog",
    "get_gpu": "advisor.catalog",
    "GpuSpec": "advisor.catalog",
    "probe": "advisor.probing",
    "estimate": "advisor.api",
    "estimate_memory": "advisor.api",
    "estimate_time": "advisor.api",
    "recommend": "advisor.recommender",
    "AdvisorError": "advisor.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'advisor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
