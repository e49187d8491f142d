"""Fixtures of the browser tests: a real `jupyter lab`, Debian's Chromium via Playwright.

- `jupyter_lab` (package: all of tests/browser/): a LabServer (see helpers.py) — .url, .token, .root_dir, .log_path,
  .api(method, path), .lab_url(workspace).
- `browser` (package): Playwright's Chromium at /usr/bin/chromium (`playwright install` cannot
  download browsers here).
- `lab_page`: a new page logged in to the lab in a fresh workspace, with
  `request_monitor` and `console_monitor` already attached; kernels it started are shut down
  after the test, and a screenshot is saved to test-artifacts/ when the test fails.
- `loopback_url`: the loopback OpenAI-compatible server's URL, reachable from kernels.
- `shot(suffix)`: saves a screenshot of the lab page named after the test.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from . import helpers

_BROWSER_DIR = Path(__file__).resolve().parent
_workspace_numbers = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    # Every test under tests/browser/ is a browser test, marked or not, so `-m "not browser"`
    # reliably leaves them all out.
    for item in items:
        if _BROWSER_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


# Package scope, not session: Playwright's sync API leaves its event loop marked as running in
# the main thread while it is open, which breaks any later test that runs an event loop itself
# (pytest-jupyter's server tests, IPython shells). Everything closes when tests/browser/ ends.
@pytest.fixture(scope="package")
def jupyter_lab(tmp_path_factory):
    server = helpers.LabServer(tmp_path_factory.mktemp("jupyter-lab"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def _playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(_playwright):
    chromium = _playwright.chromium.launch(
        executable_path=helpers.CHROMIUM_PATH,
        args=helpers.CHROMIUM_ARGS,
        headless=True,
        timeout=60_000,
    )
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def browser_context(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(helpers.UI_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def request_monitor(browser_context):
    return helpers.RequestMonitor(browser_context)


@pytest.fixture
def lab_page(request, jupyter_lab, browser_context, request_monitor):
    page = browser_context.new_page()
    monitor = helpers.ConsoleMonitor(page)
    page.console_monitor = monitor  # reachable from helpers that only get the page
    workspace = f"test-{next(_workspace_numbers)}"
    page.goto(jupyter_lab.lab_url(workspace), wait_until="domcontentloaded",
              timeout=helpers.KERNEL_TIMEOUT_MS)
    helpers.wait_for_lab(page)
    try:
        yield page
    finally:
        failed = getattr(request.node, "_report_call", None)
        if failed is not None and failed.failed:
            try:
                helpers.screenshot(page, request.node.nodeid, "failure")
            except Exception:
                pass
        page.close()
        jupyter_lab.shutdown_all_kernels()


@pytest.fixture
def console_monitor(lab_page):
    return lab_page.console_monitor


@pytest.fixture
def shot(request, lab_page):
    """`shot()` or `shot("after-run")`: a screenshot of the lab page, named after the test."""

    def take(suffix: str = "", *, full_page: bool = False) -> Path:
        return helpers.screenshot(lab_page, request.node.nodeid, suffix, full_page=full_page)

    return take


@pytest.fixture
def loopback_url(loopback) -> str:
    return loopback.url


@pytest.fixture
def root_dir(jupyter_lab) -> Path:
    return jupyter_lab.root_dir
