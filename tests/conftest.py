"""Shared fixtures and the ``--run-gpu`` switch."""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _isolated_user_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's own history store and spec overrides."""
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path_factory.mktemp("advisor-home")))
    monkeypatch.delenv("GPU_ADVISOR_SPECS", raising=False)
