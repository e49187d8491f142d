"""A saved notebook reopened in JupyterLab without the kernel that made its widgets shows each
widget's content: the chat's messages, the grid's answers, the batch numbers, the usage totals,
the template and the chosen model. Three ways it can come back:

- trusted, no saved widget state, no kernel: ipywidgets cannot render the widget-views, and the
  lab extension shows the snapshot saved beside each (js/lab/src/snapshots.ts);
- someone else's notebook (untrusted): JupyterLab shows the snapshot (text/html) itself;
- trusted, with saved widget state, and a new kernel that does not know the widgets: each
  widget's front-end draws its `snapshot` trait read-only (js/src/shared/mount.ts) until its
  cell runs again, and then it is live.

The notebook is executed headless first (tests/browser/showcase.py); its hostile answer must run
and load nothing in any of them.
"""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbformat.sign import NotebookNotary
from playwright.sync_api import expect

from . import helpers, showcase

pytestmark = pytest.mark.browser

EXPECTED_BY_KIND = {
    "chat": [showcase.EXPECTED["chat_prompt"], showcase.EXPECTED["chat_answer"]],
    "grid": showcase.EXPECTED["grid_answers"],
    "batch": [showcase.EXPECTED["batch"]],
    "usage": ["calls"],
    "template": [showcase.EXPECTED["template"]],
    "picker": [showcase.EXPECTED["picker"]],
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory, loopback_server):
    """The showcase notebook, executed once with its widget state saved (nbclient's default)."""
    work = tmp_path_factory.mktemp("reopen")
    with pytest.MonkeyPatch.context() as monkeypatch:
        path = showcase.execute(work / "executed.ipynb", loopback_server.url,
                                store_widget_state=True, monkeypatch=monkeypatch)
    return nbformat.read(str(path), as_version=4)


def _save(jupyter_lab, nb, name: str, *, trusted: bool, widget_state: bool, kernel: bool) -> str:
    nb = copy.deepcopy(nb)
    if not widget_state:
        nb.metadata.pop("widgets", None)
    if not kernel:
        # No kernel can start for it: JupyterLab asks which one, and the test answers "No Kernel".
        nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "Gone",
                                     "language": "no-such-language"}
        nb.metadata["language_info"] = {"name": "no-such-language"}
    if trusted:
        # Signed with the lab's own key: as if the user saved it in this JupyterLab.
        NotebookNotary(data_dir=str(jupyter_lab.data_dir)).sign(nb)
    nbformat.write(nb, str(jupyter_lab.root_dir / name))
    return name


def _open_without_kernel(page, path: str):
    panel = helpers.open_notebook(page, path, wait_idle=False)
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_role("button", name="No Kernel").click()
    dialog.wait_for(state="detached")
    return panel


def _widget_outputs(panel) -> dict[str, object]:
    """The output (Locator) of each widget cell, by the kind of its snapshot."""
    outputs = {}
    cells = helpers.cells(panel)
    for index, source in enumerate(showcase.cells("http://x")):
        for kind, marker in (("chat", "Chat(model"), ("grid", "compare("), ("batch", "df.llm.map"),
                             ("usage", "UsagePanel"), ("template", "TemplateEditor"),
                             ("picker", "ModelPicker")):
            if marker in source:
                outputs[kind] = cells.nth(index).locator(".jp-OutputArea")
    assert len(outputs) == len(EXPECTED_BY_KIND)
    return outputs


def _assert_nothing_ran_or_loaded(page, outputs, request_monitor) -> None:
    """The hostile answer is text: no image or script came out of it, nothing ran or loaded."""
    assert outputs["chat"].locator("img, script").count() == 0
    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()


def _assert_each_widget_shows(outputs, within: str) -> None:
    for kind, texts in EXPECTED_BY_KIND.items():
        shown = outputs[kind].locator(within)
        expect(shown).to_be_visible()
        for text in texts:
            expect(shown.get_by_text(text).first).to_be_visible()


def test_trusted_notebook_without_a_kernel_shows_the_saved_snapshots(
        jupyter_lab, lab_page, executed, request_monitor, shot):
    page = lab_page
    path = _save(jupyter_lab, executed, "mine.ipynb", trusted=True, widget_state=False, kernel=False)
    panel = _open_without_kernel(page, path)
    outputs = _widget_outputs(panel)
    _assert_each_widget_shows(outputs, ".llmnb-snapshot-fallback")
    note = outputs["chat"].locator(".llmnb-snapshot-fallback-note")
    expect(note).to_have_text("Saved snapshot: the kernel that made this widget is not running. "
                              "Run the cell again to use it.")
    # ipywidgets' "Loading widget..." is hidden in its place.
    expect(outputs["chat"].get_by_text("Loading widget...")).to_be_hidden()
    # The answer's markdown is rendered; its hostile parts are text.
    expect(outputs["chat"].locator(".llmnb-snap-msg strong", has_text="Paris")).to_be_visible()
    shot("trusted-no-kernel")
    _assert_nothing_ran_or_loaded(page, outputs, request_monitor)


def test_someone_elses_notebook_shows_the_snapshots_jupyterlab_sanitized(
        jupyter_lab, lab_page, executed, request_monitor, shot):
    page = lab_page
    path = _save(jupyter_lab, executed, "theirs.ipynb", trusted=False, widget_state=True, kernel=False)
    panel = _open_without_kernel(page, path)
    outputs = _widget_outputs(panel)
    # Untrusted: JupyterLab does not render widget-views, it shows the text/html (sanitized).
    _assert_each_widget_shows(outputs, ".llmnb-snapshot")
    assert panel.locator(".llmnb-snapshot-fallback").count() == 0
    shot("untrusted")
    _assert_nothing_ran_or_loaded(page, outputs, request_monitor)


def test_saved_widget_state_draws_read_only_until_the_cell_runs_again(
        jupyter_lab, lab_page, executed, request_monitor, shot):
    page = lab_page
    path = _save(jupyter_lab, executed, "with-state.ipynb", trusted=True, widget_state=True, kernel=True)
    panel = helpers.open_notebook(page, path)  # a new kernel starts: it does not know the widgets
    outputs = _widget_outputs(panel)
    for kind, texts in EXPECTED_BY_KIND.items():
        if kind == "batch":  # the progress bar draws its saved numbers itself
            expect(outputs[kind].locator(".llmnb-batch")).to_contain_text(texts[0])
            continue
        saved = outputs[kind].locator(".llmnb-saved")
        expect(saved).to_be_visible()
        expect(saved.locator(".llmnb-saved-note")).to_contain_text("read-only")
        for text in texts:
            expect(saved.get_by_text(text).first).to_be_visible()
        expect(outputs[kind].locator(".llmnb-live")).to_be_hidden()
    assert panel.locator(".llmnb-snapshot-fallback:visible").count() == 0
    shot("saved-state")
    _assert_nothing_ran_or_loaded(page, outputs, request_monitor)

    # Run the setup and the chat's cell again: the chat is live (a new, empty one: this lab's
    # log is not the one the notebook was executed with).
    # (A first cell of its own, so the saved execution counts differ from the new ones.)
    helpers.run_cell(page, panel, helpers.insert_code_cell(page, panel, "1 + 1"))
    helpers.run_cell(page, panel, 0)
    chat_index = next(i for i, s in enumerate(showcase.cells("x")) if "Chat(model" in s)
    helpers.run_cell(page, panel, chat_index)
    live = outputs["chat"].locator(".llm-chat")
    expect(live.get_by_text("No messages yet")).to_be_visible()
    expect(live.locator("textarea.llm-chat-input")).to_be_visible()
    assert outputs["chat"].locator(".llmnb-saved:visible").count() == 0
    page.console_monitor.assert_not_pwned()
