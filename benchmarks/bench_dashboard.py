"""What the dashboard costs: server start -> healthy, -> first rendered page, and each page's render.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py [--repeat N]``.  Needs Chromium at
/usr/bin/chromium and Playwright for Python (no browser download).  Also times each page's
script run in-process with AppTest (no browser), which is what a rerun costs the server.
The aim (issue 6) is <= 5 s from server start to the first rendered page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_browser import (  # noqa: E402  (shares the server/browser plumbing with the e2e test)
    PAGES,
    _skip_reason,
    free_port,
    launch_browser,
    start_server,
    stop_server,
    wait_healthy,
    wait_rendered,
)


def apptest_times() -> dict[str, float]:
    """Seconds for one script run of each page, in-process (first run includes imports)."""
    from streamlit.testing.v1 import AppTest  # noqa: TID251  (the harness, not the library, uses streamlit)

    out = {}
    for path, title, _, _ in PAGES:
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
        at.session_state["start_page"] = path or "machine"
        t = time.perf_counter()
        at.run()
        out[title] = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
    return out


def browser_run() -> dict[str, float]:
    """One cold server start, then every page in Chromium: seconds for each stage."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    stages: dict[str, float] = {}
    with sync_playwright() as p:
        # The browser starts first, so its own start-up is not counted as the server's.
        t = time.monotonic()
        browser = launch_browser(p)
        stages["browser launch (not counted)"] = time.monotonic() - t
        t0 = time.monotonic()
        proc = start_server(port)
        try:
            wait_healthy(port, proc)
            stages["server start -> healthy"] = time.monotonic() - t0
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for i, (path, title, done, _) in enumerate(PAGES):
                t = time.monotonic()
                page.goto(f"http://localhost:{port}/{path}")
                wait_rendered(page, title, done)
                stages[f"page {title}"] = time.monotonic() - t
                if i == 0:
                    stages["server start -> first rendered page"] = time.monotonic() - t0
                    page.wait_for_function(
                        r"() => /No GPU visible|GPU \d+:|not installed/.test(document.body.innerText)",
                        timeout=120_000)
                    stages["server start -> devices shown"] = time.monotonic() - t0
        finally:
            stop_server(proc)
            browser.close()
    return stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold server starts to time (default 3)")
    args = parser.parse_args()
    print("In-process script run per page (AppTest, first includes imports):")
    for name, s in apptest_times().items():
        print(f"  {name:<18} {s * 1000:8.0f} ms")
    reason = _skip_reason()
    if reason:
        print(f"browser timings skipped: {reason}")
        return 0
    runs = [browser_run() for _ in range(args.repeat)]
    print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} CPUs")
    print(f"Real server + headless Chromium, {args.repeat} cold start(s), median [min-max]:")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key:<38} {statistics.median(values):6.2f} s  [{min(values):.2f}-{max(values):.2f}]")
    first = statistics.median(r["server start -> first rendered page"] for r in runs)
    print(f"aim: <= 5 s from server start to first rendered page: {'met' if first <= 5 else 'NOT met'} ({first:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
