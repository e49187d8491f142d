"""Batch at scale in a real JupyterLab (headless Chromium): the Batch widget (upload a CSV, run
it from the keyboard, download the results and read their rows, light and dark themes), and a
background job whose progress widget counts up while another cell runs and whose end JupyterLab
announces with its counts and cost."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from . import helpers

pytestmark = pytest.mark.browser

PRICES = "{'loop/*': {'input': 1.0, 'output': 2.0}}"


def _start_cell(page, panel, index: int) -> None:
    helpers.select_cell(page, panel, index)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-cell'); }")


def _done(widget) -> int:
    match = re.search(r"([\d,]+)/[\d,]+ rows", widget.inner_text())
    return int(match.group(1).replace(",", "")) if match else -1


def test_batch_widget_uploads_runs_and_downloads(jupyter_lab, lab_page, loopback, request_monitor,
                                                 shot, tmp_path):
    page = lab_page
    helpers.write_notebook(jupyter_lab.root_dir, "batch-widget.ipynb", [
        "import llm_notebook\ns = llm_notebook.session()\n"
        f"s.add_endpoint('loop', {loopback.url!r})\ns.config.prices = {PRICES}\n"
        "w = llm_notebook.Batch(model='loop/m')\nw",
    ])
    upload = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["great <b>film</b>", "=HYPERLINK(\"x\")", "fine"],
                  "stars": [5, 1, 3]}).to_csv(upload, index=False)

    panel = helpers.open_notebook(page, "batch-widget.ipynb")
    helpers.run_cell(page, panel, 0)
    widget = helpers.cell(panel, 0).locator(".llm-batch")
    widget.wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)

    widget.locator("input.llm-batch-file").set_input_files(str(upload))
    helpers.wait_text(widget.locator(".llm-batch-hint"), "reviews.csv: 3 rows · columns: review, stars")
    assert widget.locator("select.llm-batch-source").input_value() == "reviews.csv"

    # The rest from the keyboard: the prompt, the mode (arrow keys in the radio group), Run.
    prompt = widget.locator("textarea.llm-batch-prompt")
    prompt.focus()
    page.keyboard.type("Sentiment of: {review}")
    page.keyboard.press("Tab")                      # leaving the field saves it
    widget.locator("input[type=radio][value=now]").focus()
    page.keyboard.press("ArrowDown")                # → Background job, not the next cell
    assert widget.locator("input[type=radio][value=background]").is_checked()
    widget.locator("button.llm-batch-estimate").focus()
    page.keyboard.press("Enter")
    helpers.wait_text(widget.locator(".llm-batch-estimate-text"), "3 rows, 3 to send")
    widget.locator("button.llm-batch-run").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("(el) => el.dataset.status === 'done'", arg=widget.element_handle(),
                           timeout=helpers.EXECUTE_TIMEOUT_MS)
    assert "3/3 rows" in widget.locator(".llm-batch-line").inner_text()
    shot("done")

    with page.expect_download() as info:
        widget.locator("button.llm-batch-download-csv").click()
    csv = info.value
    assert re.fullmatch(r"reviews-csv-[0-9a-f]{12}\.csv", csv.suggested_filename)
    rows = pd.read_csv(csv.path())
    assert list(rows.columns) == ["review", "stars", "answer", "status", "error"]
    assert list(rows["stars"]) == [5, 1, 3] and list(rows["status"]) == ["ok"] * 3
    assert rows["answer"][0] == "Echo: Sentiment of: great <b>film</b>"
    assert rows["review"][1].startswith("'=HYPERLINK")  # kept from running as a formula

    with page.expect_download() as info:
        widget.locator("button.llm-batch-download-parquet").click()
    table = pd.read_parquet(io.BytesIO(open(info.value.path(), "rb").read()))
    assert len(table) == 3 and table["answer"].str.startswith("Echo: Sentiment of:").all()

    # Themed: the widget's colours follow the lab's theme.
    light = widget.evaluate("(el) => getComputedStyle(el).color")
    helpers.set_theme(page, "dark")
    dark = widget.evaluate("(el) => getComputedStyle(el).color")
    assert light != dark
    shot("dark")
    helpers.set_theme(page, "light")
    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()


def test_background_job_stays_live_while_a_cell_runs_and_is_announced(jupyter_lab, lab_page,
                                                                     loopback, request_monitor,
                                                                     shot):
    page = lab_page
    loopback.configure(latency=0.25)     # 60 rows at concurrency 2: ~7.5 s
    helpers.write_notebook(jupyter_lab.root_dir, "batch-background.ipynb", [
        "import pandas as pd, llm_notebook\ns = llm_notebook.session()\n"
        f"s.add_endpoint('loop', {loopback.url!r})\ns.config.prices = {PRICES}\n"
        "df = pd.DataFrame({'t': [f'item {i}' for i in range(60)]})",
        "job = df.llm.map('Say {t}', model='loop/m', concurrency=2, background=True)\njob.id",
        "import time\ntime.sleep(4)\n'slept'",
    ])
    panel = helpers.open_notebook(page, "batch-background.ipynb")
    helpers.run_cell(page, panel, 0)
    output = helpers.run_cell(page, panel, 1)      # returns at once, with the job's id
    job_id = re.search(r"'([0-9a-f]{12})'", output.inner_text()).group(1)
    widget = helpers.cell(panel, 1).locator(".llmnb-batch")
    widget.wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)

    _start_cell(page, panel, 2)                    # another cell runs...
    page.wait_for_function("(el) => (el.textContent || '').trim() === '[*]:'",
                           arg=helpers.cell(panel, 2).locator(".jp-InputArea-prompt").first
                           .element_handle(), timeout=helpers.UI_TIMEOUT_MS)
    first = _done(widget)
    page.wait_for_function(                        # ...while the job's widget counts up
        "([el, n]) => { const m = el.textContent.match(/([\\d,]+)\\/60 rows/);"
        " return m && parseInt(m[1].replace(/,/g, '')) > n; }",
        arg=[widget.element_handle(), first], timeout=helpers.EXECUTE_TIMEOUT_MS)
    prompt = (helpers.cell(panel, 2).locator(".jp-InputArea-prompt").first.text_content() or "")
    assert prompt.strip() == "[*]:"                # still running when the count moved
    shot("live")

    toast = page.locator(".jp-toast-message", has_text=f"Batch job {job_id} done")
    toast.wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)
    text = toast.inner_text()
    assert "60 ok" in text and re.search(r"\$0\.\d{4}", text) and "batch-background.ipynb" in text
    assert widget.get_attribute("data-status") == "done" and "60/60 rows" in widget.inner_text()
    shot("announced")
    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
