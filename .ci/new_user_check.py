"""A new user's first steps with the installed wheel, in a real browser.

Usage: python new_user_check.py VENV_PYTHON

Starts `jupyter lab` from the virtualenv the wheel was installed into (its kernels import the
installed llm_notebook, not this checkout), runs `%load_ext llm_notebook` and a `%%llm` cell
against the loopback OpenAI-compatible server, opens the LLM sidebar and finds the call in its
history. Run by a Python that has `playwright`; saves test-artifacts/check_wheel-new_user.png.
"""

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
import helpers

# The loopback server is test scaffolding, not the product: it runs from this checkout.
sys.path.insert(0, str(REPO))
from llm_notebook.testing.loopback import LoopbackServer

PROMPT = "hello from a new user"


def main(venv_python: str) -> int:
    venv = Path(venv_python).absolute().parents[1]  # not resolve(): it is a symlink
    with LoopbackServer() as loop, tempfile.TemporaryDirectory() as tmp:
        lab = helpers.LabServer(Path(tmp), python=venv_python, checkout=False).start()
        try:
            helpers.write_notebook(lab.root_dir, "first.ipynb", [
                "%load_ext llm_notebook\n"
                "import llm_notebook\n"
                f"llm_notebook.session().add_endpoint('loop', {loop.url!r})",
                f"%%llm -m loop/loopback-model\n{PROMPT}",
                "print(llm_notebook.__file__)",
            ])
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=helpers.CHROMIUM_PATH,
                                            args=helpers.CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.set_default_timeout(helpers.UI_TIMEOUT_MS)
                page.goto(lab.lab_url("new-user"), timeout=helpers.KERNEL_TIMEOUT_MS)
                helpers.wait_for_lab(page)
                panel = helpers.open_notebook(page, "first.ipynb")
                helpers.run_all(page, panel)
                answer = helpers.cell_output_text(panel, 1)
                module = helpers.cell_output_text(panel, 2).strip()
                print("cell output:", answer.splitlines()[0] if answer else "(none)")
                print("kernel imports:", module)
                assert f"Echo: {PROMPT}" in answer, answer
                assert module.startswith(str(venv)), f"kernel did not use the venv: {module}"

                page.locator('.jp-SideBar.jp-mod-left [data-id="llm-notebook-sidebar"]').click()
                item = page.locator("#llm-notebook-sidebar .jp-LLMSidebar-item", has_text=PROMPT)
                item.wait_for(timeout=30_000)
                print("sidebar history:", item.locator(".jp-LLMSidebar-meta").inner_text())
                usage = page.locator("#llm-notebook-sidebar .jp-LLMSidebar-usageNotebook")
                expect(usage).to_contain_text("This notebook: 1 call ·", timeout=30_000)
                print("sidebar usage:", usage.inner_text())
                artifacts = REPO / "test-artifacts"
                artifacts.mkdir(exist_ok=True)
                page.screenshot(path=str(artifacts / "check_wheel-new_user.png"))
                browser.close()
        finally:
            lab.stop()
    print("new-user check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
