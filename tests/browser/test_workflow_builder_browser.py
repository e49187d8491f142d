"""The workflow builder in a real JupyterLab (headless Chromium), against the loopback server:
add steps, reorder them with the keyboard and by dragging, edit a prompt (placeholders
highlighted), preview on two rows side by side (hostile model output shown as text), run with
per-step progress, save a version; the kernel and the log agree."""

from __future__ import annotations

import uuid

import pytest

from . import helpers

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__pwned=1">'


def _notebook(root, url: str, name: str) -> str:
    setup = ("import pandas as pd, llm_notebook\n"
             f"llm_notebook.session().add_endpoint('loop', {url!r})\n"
             "df = pd.DataFrame({'ticket': ['charged twice', 'app crash', 'late parcel'],\n"
             "                   'verdict': ['[[reply:{\"answer\": \"yes\"}]]',\n"
             "                               '[[reply:{\"answer\": \"no\"}]]',\n"
             "                               '[[reply:{\"answer\": \"yes\"}]]']})\n"
             "@llm_notebook.workflows.register\n"
             "def tidy(df):\n"
             "    return df.assign(ticket=df['ticket'].str.strip())\n"
             f"wf = llm_notebook.Workflow({name!r}).python(tidy)\n"
             "b = llm_notebook.WorkflowBuilder(wf, data=df, rows=2)\n"
             "b")
    check = "print(b.name, b.version, len(b.result), list(b.result.columns))"
    helpers.write_notebook(root, "workflows.ipynb", [setup, check])
    return "workflows.ipynb"


def _titles(widget) -> list[str]:
    return widget.locator(".llm-wf-step").evaluate_all("ss => ss.map(s => s.dataset.step)")


def test_build_reorder_preview_run_and_save(jupyter_lab, lab_page, loopback, request_monitor, shot):
    page = lab_page
    name = f"wf-{uuid.uuid4().hex[:8]}"
    panel = helpers.open_notebook(page, _notebook(jupyter_lab.root_dir, loopback.url, name))
    helpers.run_cell(page, panel, 0)
    widget = helpers.cell_output(panel, 0).locator(".llm-wf")
    widget.locator(".llm-wf-status", has_text="3 rows, 2 columns").wait_for()
    assert _titles(widget) == ["tidy"]

    # Add an LLM step: a new step is named freely and its prompt is edited in CodeMirror.
    widget.locator("button", has_text="+ LLM step").click()
    widget.locator('input[aria-label="Step name"]').fill("summary")
    widget.locator('input[aria-label="Step model"]').fill("loop/m")
    content = widget.locator(".llm-wf-prompt .cm-content")
    content.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(f"Summarize {{ticket}} [[reply:{HOSTILE} for {{ticket}}]]")
    assert widget.locator(".llm-te-ph").all_inner_texts() == ["{ticket}", "{ticket}"]

    # A filter, added last, then moved first with the keyboard, and back last by dragging.
    widget.locator("button", has_text="+ Filter").click()
    widget.locator('input[aria-label="Step name"]').fill("urgent")
    widget.locator('input[aria-label="Step model"]').fill("loop/m")
    content.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("Urgent? {ticket} {verdict}")
    assert _titles(widget) == ["tidy", "summary", "urgent"]
    # A filter has no output column or schema; a prompt step no function.
    for label in ("Output column", "Registered function"):
        assert not widget.locator(f'input[aria-label="{label}"]').is_visible()
    step = widget.locator('.llm-wf-step[data-step="urgent"]')
    step.focus()
    page.keyboard.press("Alt+ArrowUp")
    page.keyboard.press("Alt+ArrowUp")
    assert _titles(widget) == ["urgent", "tidy", "summary"]
    assert widget.locator(".llm-wf-status").inner_text() == "Moved urgent to position 1."
    widget.locator('.llm-wf-step[data-step="urgent"]').drag_to(
        widget.locator('.llm-wf-step[data-step="summary"]'))
    assert _titles(widget) == ["tidy", "summary", "urgent"]

    # Preview on two rows: each step's columns side by side; the model's HTML is shown as text.
    widget.locator("button", has_text="Preview").click()
    table = widget.locator(".llm-wf-table")
    table.wait_for()
    assert table.locator("th.llm-wf-group").all_inner_texts() == ["input", "summary", "urgent"]
    first = table.locator("tbody tr").nth(0).locator("td")     # ticket, verdict, summary, kept
    assert HOSTILE in first.nth(2).inner_text()          # as text, never as an element
    assert table.locator("img, script").count() == 0
    assert table.locator("tbody tr.llm-wf-dropped").count() == 1     # app crash: judged "no"
    widget.locator(".llm-wf-status", has_text="Preview: 2 rows in, 1 out.").wait_for()
    shot("previewed")

    # Run on every row: each step says what it did; the two previewed rows came from the cache.
    sent = loopback.stats()["requests"]
    widget.locator("button", has_text="Run").click()
    widget.locator(".llm-wf-status", has_text="Run finished: 3 rows in, 2 out").wait_for(
        timeout=helpers.EXECUTE_TIMEOUT_MS)
    lines = widget.locator(".llm-wf-progress").all_inner_texts()
    assert lines[1] == "3 → 3 rows · 1 sent · 2 cached" and lines[2].startswith("3 → 2 rows")
    assert loopback.stats()["requests"] == sent + 2

    # Save a version with Ctrl+S from inside the widget.
    widget.locator('input[aria-label="Version message"]').fill("first")
    content.click()
    page.keyboard.press("Control+s")
    widget.locator(".llm-wf-status", has_text=f"Saved {name} v1.").wait_for()
    helpers.set_theme(page, "dark")
    page.wait_for_selector("#jupyterlab-splash", state="detached")
    shot("dark-theme")
    helpers.set_theme(page, "light")

    out = helpers.run_cell(page, panel, 1)
    assert out.inner_text().strip() == (f"{name} 1 2 ['ticket', 'verdict', 'summary']")
    from llm_notebook.log import Log
    from llm_notebook.workflows.library import WorkflowLibrary

    saved = WorkflowLibrary(Log(str(jupyter_lab.log_path))).get(name)
    assert saved.names() == ["tidy", "summary", "urgent"] and saved.message == "first"
    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
