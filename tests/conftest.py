"""Shared fixtures and the ``--run-gpu`` switch."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-gpu", action="store_true", default=False,
                     help="run tests marked gpu (needs a CUDA device)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-gpu"):
        try:
            import torch

            if torch.cuda.is_available():
                return
            reason = "--run-gpu given but torch.cuda.is_available() is False"
        except ImportError:
            reason = "--run-gpu given but torch is not installed"
    else:
        reason = "needs a CUDA GPU: pass --run-gpu on a machine with one"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _temporary_trace_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Traces go to one temporary cache for the whole session, never the user's ``~/.cache/gpu-advisor``.

    One directory for the session, not one per test: a shape traced once serves every later test (the suite
    stays fast).  Set in ``os.environ`` so that subprocesses the tests start inherit it; tests that check the
    cache itself point ``GPU_ADVISOR_CACHE_DIR`` at their own directory (monkeypatch, per test).
    """
    old = os.environ.get("GPU_ADVISOR_CACHE_DIR")
    os.environ["GPU_ADVISOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("trace-cache"))
    yield
    if old is None:
        os.environ.pop("GPU_ADVISOR_CACHE_DIR", None)
    else:
        os.environ["GPU_ADVISOR_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _isolated_user_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's own history store and spec overrides."""
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path_factory.mktemp("advisor-home")))
    monkeypatch.delenv("GPU_ADVISOR_SPECS", raising=False)
