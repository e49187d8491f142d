"""The browser harness of tests/browser/ (a real `jupyter lab` on 127.0.0.1 with a token,
Playwright in Debian's Chromium, request and console monitors, screenshots), reused as is.

Its fixtures are package-scoped where they are expensive, so this package gets one lab and one
browser of its own, closed when the package ends (see tests/browser/conftest.py for why they
must not outlive it).
"""

from __future__ import annotations

import pytest

from browser.conftest import (  # noqa: F401  (fixtures and the report hook, re-exported)
    _playwright,
    browser,
    browser_context,
    console_monitor,
    jupyter_lab,
    lab_page,
    loopback_url,
    pytest_runtest_makereport,
    request_monitor,
    root_dir,
    shot,
)


def pytest_collection_modifyitems(config, items):
    # Browser tests, so `-m "not browser"` leaves them out like the ones in tests/browser/.
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)
