"""The test suite keeps away from the user's own trace cache (issue 28, item 5)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.workload import tracecache

ROOT = Path(__file__).resolve().parent.parent
#: Two tests that build traced presets (one traces afresh) and write them to the trace cache.
TRACING_TESTS = ("tests/test_workload_trace.py::test_preset_trace_scales_linearly_in_batch",
                 "tests/test_workload_trace.py::test_scaled_preset_ops_match_a_direct_trace")


def test_this_session_caches_traces_in_a_temporary_directory() -> None:
    directory = tracecache.cache_dir()
    assert directory is not None
    assert not directory.resolve().is_relative_to((Path.home() / ".cache").resolve())


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _run(home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GPU_ADVISOR_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, *TRACING_TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # two pytest runs in fresh interpreters (~20 s)
def test_tracing_tests_leave_a_read_only_home_cache_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cache = home / ".cache" / "gpu-advisor"
    (cache / "traces").mkdir(parents=True)
    (cache / "traces" / "someone-elses.json").write_text("{}")
    before = _snapshot(home)
    for d in (cache / "traces", cache):
        d.chmod(stat.S_IRUSR | stat.S_IXUSR)  # read-only (root writes anyway: the snapshot is the check)
    try:
        run = _run(home)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert _snapshot(home) == before
        # the control: without the suite's conftest (its temporary cache) the same tests do write there, so the
        # check above can fail
        if os.geteuid() == 0:
            control = _run(home, "--noconftest")
            assert control.returncode == 0, control.stdout[-3000:]
            assert _snapshot(home) != before
    finally:
        for d in (cache, cache / "traces"):
            d.chmod(stat.S_IRWXU)
