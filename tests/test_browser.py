"""End to end: `streamlit run dashboard.py` in a subprocess, every page in a real headless Chromium.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright for Python; no browser is
downloaded.  Skipped, with the reason, when either is absent.  Saves one screenshot per page
to a temporary folder (or to $GPU_ADVISOR_SCREENSHOTS, e.g. docs/screenshots) and records the
time from server start to the first rendered page.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Screenshots go to a temporary folder unless GPU_ADVISOR_SCREENSHOTS names one, so an ordinary test run
# never rewrites tracked files. To regenerate the docs' images:
#   GPU_ADVISOR_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/test_browser.py
SHOTS_ENV = "GPU_ADVISOR_SCREENSHOTS"
CHROMIUM = os.environ.get("GPU_ADVISOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
#: (url path, title, regex that proves the page finished drawing, screenshot name)
PAGES = [
    ("", "My machine", r"Run probe", "machine.png"),  # the default page lives at the root
    ("specs", "Specs explorer", r"Throughput per dollar", "specs.png"),
    ("recommend", "Recommender", r"Rejected cards|not installed|could not|No card fits", "recommender.png"),
    ("history", "History", r"Compare two runs|No probe runs stored|not installed|could not", "history.png"),
    ("fleet", "Fleet", r"No fleet results|straggler|not installed|could not", "fleet.png"),
]
FIRST_PAGE_BUDGET_S = 15.0  # the aim is <= 5 s (benchmarks/bench_dashboard.py); this catches regressions

pytestmark = pytest.mark.browser


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``streamlit run dashboard.py`` on ``port``, headless, bound to localhost."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard.py"), "--server.port", str(port),
           "--server.headless", "true", "--server.address", "localhost", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server process (its own session, started above) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout_s:.0f} s")


def launch_browser(p):
    return p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                             args=CHROMIUM_ARGS, headless=True)


def wait_rendered(page, title: str, done: str, timeout_ms: float = 60_000) -> None:
    """Wait until the page's title and its last section (``done``, a regex) are drawn."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
    page.wait_for_function("re => new RegExp(re).test(document.body.innerText)", arg=done, timeout=timeout_ms)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, float]]:
    """A running dashboard: (port, seconds from server start to healthy)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    port = free_port()
    home = tmp_path_factory.mktemp("advisor-home-browser")
    t0 = time.monotonic()
    proc = start_server(port, env={"GPU_ADVISOR_HOME": str(home)})
    try:
        wait_healthy(port, proc)
        yield port, time.monotonic() - t0
    finally:
        stop_server(proc)


def test_every_page_renders_in_chromium_and_is_screenshotted(server: tuple[int, float], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    port, healthy_s = server
    shots = Path(os.environ[SHOTS_ENV]) if os.environ.get(SHOTS_ENV) else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            # Tall viewport: Streamlit scrolls inside its own container, so full_page alone shows one screen.
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            first = devices_shown = None
            for path, title, done, shot in PAGES:
                t_page = time.monotonic()
                page.goto(f"http://localhost:{port}/{path}")
                wait_rendered(page, title, done)
                if first is None:  # server start -> healthy, then the first page's own render time
                    first = healthy_s + time.monotonic() - t_page
                if path == "":  # the inventory opens in the background (torch fallback import): wait for it
                    page.wait_for_function(
                        r"() => /No GPU visible|GPU \d+:|not installed/.test(document.body.innerText)",
                        timeout=60_000)
                    devices_shown = healthy_s + time.monotonic() - t_page
                    # A real quick probe (on the CPU here): progress, then results, saved to the store.
                    page.get_by_role("button", name="Run probe").click()
                    page.wait_for_function("() => document.body.innerText.includes('Achieved vs spec')",
                                           timeout=180_000)
                # Widgets and charts load their code lazily and show skeletons meanwhile: wait them out,
                # then give Vega a moment to finish drawing before the screenshot.
                page.wait_for_function(
                    "() => !document.querySelector('[data-testid^=\"stSkeleton\"], [data-testid=\"stAppSkeleton\"]')",
                    timeout=60_000)
                page.wait_for_timeout(1500)
                body = page.inner_text("body")
                assert "Traceback" not in body, (path, body[:2000])
                assert page.locator('[data-testid="stException"]').count() == 0, path
                if path == "specs":
                    assert "Compare side by side" in body and page.locator(".vega-embed").count() >= 2
                if path == "":
                    assert "Run probe" in body and "saved to the history store as run #1" in body
                if path == "history":
                    assert "Compare two runs" in body  # the run the machine page just saved
                if path == "recommend":
                    assert "llama-3-8b" in body or "not installed" in body
                page.screenshot(path=str(shots / shot), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert first is not None and devices_shown is not None
    assert first < FIRST_PAGE_BUDGET_S, f"first page took {first:.1f} s"
    print(f"server start -> first rendered page: {first:.2f} s; -> devices shown: {devices_shown:.2f} s")


def test_server_binds_to_localhost_only(server: tuple[int, float]) -> None:
    port, _ = server
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) == 0
