"""The browser half of .ci/browser_check.py: jupyterlab/browser-test.js, in Python Playwright.

Usage: python browser_check_page.py URL   (URL: what jupyterlab.browser_check passes, a local
file that redirects to the lab with its token). Exits non-zero on any JupyterLab start-up error,
uncaught page error, or if llm-notebook's plugin and sidebar are missing. Saves a screenshot to
test-artifacts/check_wheel-browser_check.png.
"""

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
import helpers

PLUGIN = "llm-notebook:plugin"


def main(url: str) -> int:
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=helpers.CHROMIUM_PATH,
                                    args=helpers.CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        print("Navigating to page:", url)
        page.goto(url)
        page.locator("#jupyter-config-data").wait_for(state="attached", timeout=100_000)
        page.wait_for_selector("#main", timeout=100_000)
        status = page.wait_for_selector("#browserTest", state="attached", timeout=100_000)
        page.wait_for_selector(".completed", state="attached", timeout=100_000)
        for error in json.loads(status.text_content() or "[]"):
            problems.append(f"JupyterLab reported: {error.get('message', error)}")

        # The plugin's activation adds the sidebar's tab (window.jupyterapp is not exposed here).
        tab = page.locator('.jp-SideBar.jp-mod-left [data-id="llm-notebook-sidebar"]')
        if tab.count() != 1:
            problems.append(f"the LLM sidebar tab is missing: {PLUGIN} did not activate")
        else:
            tab.click()
            # The sidebar reaching the server extension shows the log it reads.
            logpath = page.locator("#llm-notebook-sidebar .jp-LLMSidebar-logpath")
            try:
                page.wait_for_function(
                    "() => (document.querySelector('#llm-notebook-sidebar .jp-LLMSidebar-logpath')"
                    " || {}).textContent?.startsWith('Log: ')", timeout=30_000)
                print("sidebar:", logpath.text_content())
            except Exception as exc:
                problems.append(f"the sidebar did not reach the server extension: {exc}")
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "check_wheel-browser_check.png"))
        browser.close()
    for problem in problems:
        print(problem, file=sys.stderr)
    print("Browser test complete" if not problems else "Browser test FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
