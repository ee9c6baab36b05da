"""gpu-advisor: which GPUs are here, how fast they really are, and which to buy or rent.

The public API is re-exported here and loaded on first use, so ``import advisor`` stays
cheap (no torch, no pandas) until a function that needs them is called.

``advisor.probe``, ``advisor.estimate`` and ``advisor.recommend`` are the *functions* of those names
even after their modules have been imported (see ``_PublicApiModule``); to reach a module itself,
use ``importlib.import_module("advisor.recommend")`` or ``from advisor.recommend import Recommendation``.
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
    "probe": "advisor.probe",
    "estimate": "advisor.api",
    "estimate_memory": "advisor.api",
    "estimate_time": "advisor.api",
    "recommend": "advisor.recommend",
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


class _PublicApiModule(type(importlib)):  # type: ignore[misc]
    """Keeps ``advisor.estimate`` / ``advisor.probe`` the functions when their subpackages get imported.

    Importing ``advisor.estimate.memory`` makes the import system bind the subpackage ``advisor.estimate``
    as an attribute here, which would shadow the exported function of the same name.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, type(importlib)) and name in _EXPORTS and value.__name__ == f"{__name__}.{name}":
            home = _sys.modules.get(_EXPORTS[name])
            func = getattr(home, name, None) if home is not None else None
            if func is None or isinstance(func, type(importlib)):
                return  # not loaded yet (or still initialising): __getattr__ resolves the function on first use
            value = func
        super().__setattr__(name, value)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _PublicApiModule
