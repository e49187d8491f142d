"""`df.llm.map` in a real JupyterLab (headless Chromium): the live progress widget counts up while
the cell runs, its Stop button interrupts the run within seconds keeping the finished rows, and
running the same map again finishes only the rest."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest

from . import helpers

pytestmark = pytest.mark.browser

ROWS = 300


def _start_cell(page, panel, index: int) -> None:
    """Run cell `index` without waiting for it to finish."""
    helpers.select_cell(page, panel, index)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-cell'); }")


def _done_count(widget) -> int:
    match = re.search(r"([\d,]+)/[\d,]+ rows", widget.inner_text())
    return int(match.group(1).replace(",", "")) if match else -1


def test_progress_widget_counts_up_and_stop_keeps_finished_rows(jupyter_lab, lab_page, loopback,
                                                                request_monitor, shot):
    loopback.configure(latency=0.4)  # 300 rows at concurrency 10: ~12 s if left alone
    helpers.write_notebook(jupyter_lab.root_dir, "batch.ipynb", [
        "import pandas as pd\nimport llm_notebook\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
        f"df = pd.DataFrame({{'t': [f'row {{i}}' for i in range({ROWS})]}})",
        "out = df.llm.map('Say {t}', model='loop/m', concurrency=10)",
        "again = df.llm.map('Say {t}', model='loop/m', concurrency=10)\nagain.attrs['llm']",
    ])
    panel = helpers.open_notebook(lab_page, "batch.ipynb")
    helpers.run_cell(lab_page, panel, 0)

    _start_cell(lab_page, panel, 1)
    widget = helpers.cell(panel, 1).locator(".llmnb-batch")
    widget.wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)
    lab_page.wait_for_function(
        "(el) => /[1-9][\\d,]*\\/300 rows/.test(el.textContent) && el.dataset.status === 'running'",
        arg=widget.element_handle(), timeout=helpers.EXECUTE_TIMEOUT_MS)
    first = _done_count(widget)
    lab_page.wait_for_function(  # it keeps counting while the cell runs
        "([el, n]) => { const m = el.textContent.match(/([\\d,]+)\\/300 rows/);"
        " return m && parseInt(m[1].replace(/,/g, '')) > n; }",
        arg=[widget.element_handle(), first], timeout=helpers.EXECUTE_TIMEOUT_MS)
    assert "rows/s" in widget.inner_text()
    shot("running")

    stop = widget.locator(".llmnb-batch-stop")
    assert stop.is_visible()
    clicked = time.monotonic()
    stop.click()
    helpers._wait_executed(panel, [1], {1: "[*]:"}, helpers.EXECUTE_TIMEOUT_MS)
    assert time.monotonic() - clicked < 6  # 2 s in the kernel, the rest is UI round trips
    text = helpers.cell_output_text(panel, 1)
    assert "KeyboardInterrupt" in text and "batch interrupted" in text
    lab_page.wait_for_function("(el) => el.dataset.status === 'interrupted'",
                               arg=widget.element_handle(), timeout=helpers.UI_TIMEOUT_MS)
    assert not stop.is_visible()
    done = _done_count(widget)
    assert 0 < done < ROWS
    shot("stopped")

    with sqlite3.connect(str(jupyter_lab.log_path)) as db:
        job_id, status, recorded = db.execute(
            "SELECT id, status, done FROM jobs ORDER BY created DESC LIMIT 1").fetchone()
    assert status == "interrupted" and recorded >= done - 10

    # The same map again: same job, only the missing rows are sent.
    loopback.configure(latency=0.0)
    sent_before = loopback.stats()["requests"]
    output = helpers.run_cell(lab_page, panel, 2)
    summary = output.inner_text()
    assert f"'job_id': '{job_id}'" in summary and "'status': 'done'" in summary
    assert f"'ok': {ROWS}" in summary
    resumed = int(re.search(r"'resumed': (\d+)", summary).group(1))
    assert resumed >= done - 10
    assert loopback.stats()["requests"] - sent_before == ROWS - resumed
    final = helpers.cell(panel, 2).locator(".llmnb-batch")
    assert final.get_attribute("data-status") == "done" and "300/300 rows" in final.inner_text()
    shot("resumed")
    lab_page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
