"""Record and replay in a real JupyterLab: a notebook in a sub-folder records its answers beside
itself (JupyterLab names the notebook: the kernel's later chdir does not move them), and another
notebook of that folder replays them with the server gone, naming the cell of a call that was
not recorded."""

from __future__ import annotations

import json

import pytest

from . import helpers

pytestmark = pytest.mark.browser

ASK = "%%llm -m loop/m\nPlan a trip [[reply:Three days in **Lisbon**, by train]]"


def test_a_notebook_records_in_the_lab_and_a_colleague_replays_it(jupyter_lab, lab_page,
                                                                  loopback, request_monitor, shot):
    folder = jupyter_lab.root_dir / "shared"
    helpers.write_notebook(jupyter_lab.root_dir, "shared/author.ipynb", [
        "import os, llm_notebook\n%load_ext llm_notebook\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
        "%llm replay record\nos.chdir('/')",
        ASK,
    ])
    panel = helpers.open_notebook(lab_page, "shared/author.ipynb")
    helpers.run_all(lab_page, panel)
    helpers.wait_text(helpers.cell_output(panel, 1), "Three days in")
    recorded = (folder / "llm-recordings.jsonl").read_text().splitlines()
    [entry] = [json.loads(line) for line in recorded]
    assert entry["answer"]["text"] == "Three days in **Lisbon**, by train"
    assert loopback.stats()["requests"] == 1

    helpers.write_notebook(jupyter_lab.root_dir, "shared/colleague.ipynb", [
        "import llm_notebook\n%load_ext llm_notebook\n"
        "llm_notebook.session().add_endpoint('loop', 'http://127.0.0.1:9/v1')  # nothing there\n"
        "%llm replay replay",
        ASK,
        "%%llm -m loop/m\nSomething nobody asked",
    ])
    panel = helpers.open_notebook(lab_page, "shared/colleague.ipynb")
    helpers.run_all(lab_page, panel)
    replayed = helpers.cell_output(panel, 1)
    helpers.wait_text(replayed, "replayed")
    assert replayed.locator("strong", has_text="Lisbon").count() == 1
    assert "loop/m · " in replayed.inner_text() and "$0.0000" in replayed.inner_text()
    missing = helpers.cell_output(panel, 2)
    helpers.wait_text(missing, "not recorded")
    text = missing.inner_text()
    # The cell is named as its prompt shows it.
    shown = helpers._prompt_text(panel, 2).strip().rstrip(":")          # e.g. "[4]"
    assert f"cell In {shown} is not recorded" in text, (shown, text)
    assert "%llm replay record" in text and "Traceback" not in text
    assert loopback.stats()["requests"] == 1                  # the colleague sent nothing
    shot("replayed")
    lab_page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
