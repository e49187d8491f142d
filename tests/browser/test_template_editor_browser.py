"""The template editor in a real JupyterLab (headless Chromium), against the loopback server:
type a template and see its variables as a form, fill them, run on two models side by side,
save with Ctrl+S (the notebook is not saved), edit, save version 2 and see the diff."""

from __future__ import annotations

import uuid

import pytest

from . import helpers

pytestmark = pytest.mark.browser

HOSTILE = '**tides** <img src=x onerror="window.__pwned=1"> ![b](http://192.0.2.1/beacon.png)'


def _notebook(root, url: str) -> str:
    setup = ("import llm_notebook\n"
             f"llm_notebook.session().add_endpoint('loop', {url!r})\n"
             "editor = llm_notebook.TemplateEditor(models=['loop/a', 'loop/b'])\n"
             "editor")
    helpers.write_notebook(root, "templates.ipynb", [setup, "print(editor.name, editor.version)"])
    return "templates.ipynb"


def _notebook_dirty(page, path: str) -> bool:
    return page.evaluate(
        """(path) => {
            for (const w of window.jupyterapp.shell.widgets('main')) {
                if (w.context && w.context.path === path) return w.context.model.dirty;
            }
            return null;
        }""", path)


def test_type_run_on_two_models_save_and_diff(jupyter_lab, lab_page, loopback, request_monitor, shot):
    page = lab_page
    name = f"browser-{uuid.uuid4().hex[:8]}"
    path = _notebook(jupyter_lab.root_dir, loopback.url)
    panel = helpers.open_notebook(page, path)
    helpers.run_cell(page, panel, 0)
    widget = helpers.cell_output(panel, 0).locator(".llm-te")
    content = widget.locator(".llm-te-prompt .cm-content")
    content.wait_for()
    widget.locator(".llm-te-status", has_text="New template").wait_for()
    assert content.get_attribute("aria-label") == "Prompt template"
    assert widget.locator(".llm-te-chip").evaluate_all("cs => cs.map(c => c.dataset.model)") == [
        "loop/a", "loop/b"]

    # Type a template: its placeholders are highlighted and become a form as they are typed.
    widget.locator("input.llm-te-name").fill(name)
    content.click()
    page.keyboard.type("Write about {topic} for {reader}. Use {{braces}} literally.")
    rows = widget.locator(".llm-te-var")
    page.wait_for_function(
        "(vars) => Array.from(vars.querySelectorAll('.llm-te-var')).map(r => r.dataset.variable).join() === 'topic,reader'",
        arg=widget.locator(".llm-te-vars").element_handle())
    assert widget.locator(".llm-te-ph").all_inner_texts() == ["{topic}", "{reader}"]
    assert rows.count() == 2

    # A syntax error is shown with its line and column and marked where it is, then fixed.
    page.keyboard.type(" {oops")
    error = widget.locator(".llm-te-error-line")
    error.wait_for()
    assert error.inner_text().startswith("prompt line 1, column 61: unmatched '{'")
    assert widget.locator(".llm-te-err-at").inner_text() == "{"
    for _ in range(len(" {oops")):
        page.keyboard.press("Backspace")
    error.wait_for(state="hidden")

    # Fill the form: the preview shows the prompt as it will be sent, sanitized.
    widget.locator('.llm-te-var[data-variable="topic"] textarea').fill(HOSTILE)
    widget.locator('.llm-te-var[data-variable="reader"] textarea').fill("children")
    preview = widget.locator(".llm-te-preview-body")
    preview.locator("strong", has_text="tides").wait_for()
    assert "for children. Use {braces} literally." in preview.inner_text()
    assert preview.locator("img, script").count() == 0

    # Ctrl+Enter runs on both models; the answers stream side by side.
    loopback.configure(tokens_per_second=15)
    content.click()
    page.keyboard.press("Control+Enter")
    columns = widget.locator(".llm-te-result")
    columns.nth(1).wait_for()
    assert columns.evaluate_all("cs => cs.map(c => c.dataset.model)") == ["loop/a", "loop/b"]
    page.wait_for_function(
        """(results) => {
            const cols = results.querySelectorAll('.llm-te-result');
            return cols.length === 2 && Array.from(cols).every(c =>
                c.querySelector('.llm-te-result-footer').textContent.includes('out'));
        }""", arg=widget.locator(".llm-te-results").element_handle(),
        timeout=helpers.EXECUTE_TIMEOUT_MS)
    for i in range(2):
        body = columns.nth(i).locator(".llm-te-result-body")
        assert "Echo: Write about tides" in body.inner_text()
        assert "for children. Use {braces} literally." in body.inner_text()
        assert body.locator("img, script").count() == 0
    shot("ran-two-models")

    # Ctrl+S saves version 1; JupyterLab does not save the notebook.
    assert _notebook_dirty(page, path) is True
    widget.locator("input.llm-te-message").fill("first draft")
    content.click()
    page.keyboard.press("Control+s")
    widget.locator(".llm-te-status", has_text=f"Saved {name} v1").wait_for()
    assert _notebook_dirty(page, path) is True
    assert widget.locator(".llm-te-badge").inner_text() == "v1"

    # Edit, save version 2 with a message: the versions list and the diff appear.
    content.click()
    page.keyboard.press("Control+End")
    page.keyboard.type(" Keep it short.")
    widget.locator("input.llm-te-message").fill("shorter")
    widget.locator("button.llm-te-save").click()
    widget.locator(".llm-te-status", has_text=f"Saved {name} v2").wait_for()
    assert widget.locator(".llm-te-version strong").all_inner_texts() == ["v2", "v1"]
    assert "shorter" in widget.locator('.llm-te-version[data-version="2"]').inner_text()
    added = widget.locator(".llm-te-diff-add")
    added.first.wait_for()
    assert widget.locator(".llm-te-diff-title").inner_text() == "Changes from v1 to v2"
    assert any("Keep it short." in t for t in added.all_inner_texts())
    assert any("Write about {topic}" in t and "Keep" not in t
               for t in widget.locator(".llm-te-diff-del").all_inner_texts())
    shot("saved-version-2-diff")
    helpers.set_theme(page, "dark")  # theme variables only: readable in the dark theme too
    page.wait_for_selector("#jupyterlab-splash", state="detached")
    shot("dark-theme")
    helpers.set_theme(page, "light")

    # The kernel agrees: the widget's traits, and the library in the log.
    out = helpers.run_cell(page, panel, 1)
    assert out.inner_text().strip() == f"{name} 2"
    from llm_notebook.log import Log
    from llm_notebook.templates import TemplateLibrary

    library = TemplateLibrary(Log(str(jupyter_lab.log_path)))
    assert [t.message for t in library.versions(name)] == ["shorter", "first draft"]
    assert library.get(name).prompt.endswith("Keep it short.")
    calls = Log(str(jupyter_lab.log_path)).read(
        "SELECT model, status FROM calls WHERE prompt LIKE 'Write about%' ORDER BY model")
    assert [tuple(r) for r in calls] == [("loop/a", "ok"), ("loop/b", "ok")]

    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
