"""`python -m jupyterlab.browser_check`, with Debian's Chromium driven by Python Playwright.

jupyterlab.browser_check starts JupyterLab in its browser-test mode (the page gathers every
JavaScript error into `#browserTest`; any error the server logs fails the check) and then drives a
browser through Node.js: `npm install playwright`, `npx playwright install chromium` (a
download) and `node browser-test.js`. The installed-wheel check runs with no Node.js on PATH and
no internet, so only that driver is replaced, by .ci/browser_check_page.py run with
$PLAYWRIGHT_PYTHON (an interpreter that has the `playwright` package); it does what
browser-test.js does and also checks that llm-notebook's plugin is active. Everything else is
jupyterlab's own code, run in the environment being checked.

Run it as a script (`python .ci/browser_check.py [--allow-root]`), like `python -m
jupyterlab.browser_check`: the server finds the app through this module's
`_jupyter_server_extension_points`, as it does for `__main__` there.
"""

import os

from jupyterlab import browser_check

PAGE_CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser_check_page.py")


async def run_browser(url: str) -> None:
    python = os.environ.get("PLAYWRIGHT_PYTHON")
    if not python:
        raise RuntimeError("set PLAYWRIGHT_PYTHON to a Python that has the playwright package")
    await browser_check.run_async_process([python, PAGE_CHECK, url])


# BrowserApp.initialize_handlers looks `run_browser` up in its module when the server starts.
browser_check.run_browser = run_browser


class BrowserApp(browser_check.BrowserApp):
    # jupyter_server names an extension app after its module; as a script that is __main__.
    name = __name__


def _jupyter_server_extension_points():
    return [{"module": __name__, "app": BrowserApp}]


if __name__ == "__main__":
    BrowserApp.launch_instance()
