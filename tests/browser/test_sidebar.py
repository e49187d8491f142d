"""The LLM sidebar in a real JupyterLab: history, search, thread, insert, templates, safety."""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.sync_api import expect

from . import helpers

pytestmark = pytest.mark.browser

SIDEBAR = "#llm-notebook-sidebar"
COMMANDS = [
    "llm-notebook:open-sidebar", "llm-notebook:refresh", "llm-notebook:search",
    "llm-notebook:filter-model", "llm-notebook:filter-this-notebook", "llm-notebook:clear-filters",
    "llm-notebook:open-thread", "llm-notebook:insert-prompt", "llm-notebook:insert-template",
    "llm-notebook:toggle-highlight",
]


@pytest.fixture(scope="module", autouse=True)
def _extension_built(jupyter_lab):
    # The lab extension is a build output (js/lab → llm_notebook/labextension); without it
    # there is no sidebar to test, and that is a failure, not a skip.
    assert (helpers.REPO_ROOT / "llm_notebook" / "labextension" / "package.json").exists(), (
        "build the lab extension first: npm --prefix js/lab run build")


@pytest.fixture
def log(jupyter_lab):
    from llm_notebook.log import Log

    log = Log(str(jupyter_lab.log_path))
    yield log
    log.close()


def _word() -> str:
    return "w" + uuid.uuid4().hex[:10]


def _row(**fields) -> dict:
    row = {"ts": time.time(), "model": "loop/seeded", "status": "ok", "prompt": "p",
           "response": "r", "input_tokens": 3, "output_tokens": 4, "cost": 0.0, "duration_ms": 50}
    row.update(fields)
    return row


def open_sidebar(page):
    """Open the LLM panel the way a user does: click its tab in the left side bar."""
    page.locator('.jp-SideBar.jp-mod-left [data-id="llm-notebook-sidebar"]').click()
    page.locator(SIDEBAR).wait_for(state="visible")
    return page.locator(SIDEBAR)


def history_item(sidebar, text: str):
    return sidebar.locator(".jp-LLMSidebar-item", has_text=text)


def test_sidebar_shows_a_llm_call_made_in_the_notebook(jupyter_lab, lab_page, loopback_url, shot,
                                                       request_monitor, log):
    word = _word()
    # A notebook of its own: other browser tests share this server and its log.
    name = f"sidebar-{word}.ipynb"
    helpers.write_notebook(jupyter_lab.root_dir, name, [
        "%load_ext llm_notebook\n"
        "import llm_notebook\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback_url!r})",
        f"%%llm -m loop/loopback-model\nsay {word} please",
    ])
    panel = helpers.open_notebook(lab_page, name)
    sidebar = open_sidebar(lab_page)
    assert history_item(sidebar, word).count() == 0

    helpers.run_all(lab_page, panel)
    assert f"Echo: say {word} please" in helpers.cell_output_text(panel, 1)

    # no reload, no click: the open sidebar picks the call up by itself
    item = history_item(sidebar, word)
    item.wait_for(timeout=20_000)
    assert "loop/loopback-model" in item.locator(".jp-LLMSidebar-meta").inner_text()
    assert item.locator(".jp-LLMSidebar-response").inner_text() == f"Echo: say {word} please"

    # the usage line for this notebook counts it (it reloads alongside the history)
    expect(sidebar.locator(".jp-LLMSidebar-usageNotebook")).to_contain_text(
        "This notebook: 1 call ·", timeout=20_000)

    # "This notebook" filter: the call is there; another notebook's call is not
    log.insert_calls([_row(prompt=f"{word} elsewhere", notebook="/elsewhere/other.ipynb")])
    elsewhere = history_item(sidebar, f"{word} elsewhere")
    elsewhere.wait_for(timeout=20_000)
    sidebar.locator(".jp-LLMSidebar-notebook").select_option(label="This notebook")
    elsewhere.wait_for(state="detached")
    assert item.count() == 1
    shot()
    request_monitor.assert_none_left()


def test_search_narrows_the_history(lab_page, log, shot):
    tag = _word()
    log.insert_calls([
        _row(prompt=f"{tag} apples are red", response="yes"),
        _row(prompt=f"{tag} bananas are yellow", response="indeed"),
        _row(prompt=f"{tag} cherries", response="dark red bananas?"),
    ])
    sidebar = open_sidebar(lab_page)
    search = sidebar.locator(".jp-LLMSidebar-search")

    search.fill(tag)
    items = sidebar.locator(".jp-LLMSidebar-item")
    lab_page.wait_for_function(
        "(n) => document.querySelectorAll('#llm-notebook-sidebar .jp-LLMSidebar-item').length === n",
        arg=3)

    search.fill(f"{tag} banana")  # prompt or response, prefix match
    lab_page.wait_for_function(
        "(n) => document.querySelectorAll('#llm-notebook-sidebar .jp-LLMSidebar-item').length === n",
        arg=2)
    texts = items.locator(".jp-LLMSidebar-prompt").all_inner_texts()
    assert sorted(texts) == sorted([f"{tag} bananas are yellow", f"{tag} cherries"])

    search.fill(f"{tag} nothing-like-this")
    sidebar.locator(".jp-LLMSidebar-empty", has_text="No calls match").wait_for()
    shot()


def test_model_filter(lab_page, log):
    tag = _word()
    log.insert_calls([_row(prompt=f"{tag} one", model="loop/m-one"),
                      _row(prompt=f"{tag} two", model="loop/m-two")])
    sidebar = open_sidebar(lab_page)
    sidebar.locator(".jp-LLMSidebar-search").fill(tag)
    history_item(sidebar, f"{tag} two").wait_for()

    sidebar.locator(".jp-LLMSidebar-model").select_option("loop/m-one")
    history_item(sidebar, f"{tag} two").wait_for(state="detached")
    assert history_item(sidebar, f"{tag} one").count() == 1


def test_insert_prompt_creates_a_llm_cell(jupyter_lab, lab_page, log, shot):
    tag = _word()
    prompt = f"{tag} explain {{braces}} and\nkeep lines"
    log.insert_calls([_row(prompt=prompt, response="ok")])
    helpers.write_notebook(jupyter_lab.root_dir, "insert.ipynb", ["x = 1"])
    panel = helpers.open_notebook(lab_page, "insert.ipynb", wait_idle=False)
    sidebar = open_sidebar(lab_page)
    sidebar.locator(".jp-LLMSidebar-search").fill(tag)

    history_item(sidebar, tag).locator(".jp-LLMSidebar-insertPrompt").click()

    helpers.cells(panel).nth(1).wait_for()
    assert helpers.cells(panel).count() == 2
    source = _cell_source(lab_page, "insert.ipynb", 1)
    # braces are doubled so the magic sends them literally instead of interpolating
    assert source == f"%%llm\n{tag} explain {{{{braces}}}} and\nkeep lines"
    assert _active_cell_index(lab_page, "insert.ipynb") == 1
    # the new cell is highlighted as markdown, not Python
    lab_page.wait_for_function(
        """() => {
            const w = window.jupyterapp.shell.currentWidget;
            return w.content.model.cells.get(1).mimeType === 'text/x-ipythongfm';
        }""")
    shot()


def test_thread_shows_the_whole_conversation(lab_page, log):
    tag = _word()
    first = log.insert_calls([_row(prompt=f"{tag} first question", response="first answer",
                                   conversation_id=tag, system="be brief")])[0]
    second = log.insert_calls([_row(prompt=f"{tag} follow-up", response="second answer",
                                    conversation_id=tag, parent_id=first)])[0]
    sidebar = open_sidebar(lab_page)
    sidebar.locator(".jp-LLMSidebar-search").fill(f"{tag} follow")

    history_item(sidebar, "follow-up").locator(".jp-LLMSidebar-openThread").click()

    thread = sidebar.locator(".jp-LLMSidebar-thread")
    thread.wait_for(state="visible")
    texts = thread.locator(".jp-LLMSidebar-text").all_inner_texts()
    assert texts == ["be brief", f"{tag} first question", "first answer",
                     f"{tag} follow-up", "second answer"]
    assert thread.locator(f'[data-call-id="{second}"]').count() == 2
    thread.locator(".jp-LLMSidebar-back").click()
    sidebar.locator(".jp-LLMSidebar-history").wait_for(state="visible")


def test_templates_listed_and_inserted(jupyter_lab, lab_page, log, shot):
    from llm_notebook.templates import TemplateLibrary

    name = "tpl-" + _word()
    TemplateLibrary(log).save(name, "Summarize {text} in {n} words", defaults={"n": 20})
    helpers.write_notebook(jupyter_lab.root_dir, "templates.ipynb", ["x = 1"])
    panel = helpers.open_notebook(lab_page, "templates.ipynb", wait_idle=False)
    sidebar = open_sidebar(lab_page)

    item = sidebar.locator(f'.jp-LLMSidebar-template[data-template="{name}"]')
    item.wait_for()
    assert "variables: text, n" in item.inner_text()
    item.locator(".jp-LLMSidebar-insertTemplate").click()

    helpers.cells(panel).nth(1).wait_for()
    assert _cell_source(lab_page, "templates.ipynb", 1) == f"%%llm -t {name}"
    shot()


def test_hostile_log_text_is_shown_as_text(lab_page, log, request_monitor, shot):
    tag = _word()
    hostile = (f'{tag} <img src=x onerror="window.__pwned=1;alert(1)">'
               f'<script>window.__pwned=2</script><img src="http://192.0.2.1/beacon.png">')
    first = log.insert_calls([_row(prompt=hostile, response=hostile, model=f"<b>{tag}</b>",
                                   status="error", error=hostile)])[0]
    log.insert_calls([_row(prompt=f"{tag} reply", response=hostile, parent_id=first)])
    sidebar = open_sidebar(lab_page)
    sidebar.locator(".jp-LLMSidebar-search").fill(tag)
    item = sidebar.locator(f'.jp-LLMSidebar-item[data-call-id="{first}"]')
    item.wait_for()

    assert item.locator(".jp-LLMSidebar-prompt").inner_text() == hostile
    assert item.locator(".jp-LLMSidebar-response").inner_text() == hostile  # the error text
    history_item(sidebar, f"{tag} reply").locator(".jp-LLMSidebar-openThread").click()
    sidebar.locator(".jp-LLMSidebar-thread").wait_for(state="visible")
    assert sidebar.locator(".jp-LLMSidebar-thread .jp-LLMSidebar-text", has_text="<script>").count() >= 2
    # the model filter lists the hostile model name as an option label, not markup
    assert sidebar.locator(".jp-LLMSidebar-model option", has_text=f"<b>{tag}</b>").count() == 1

    assert sidebar.locator("img, script").count() == 0
    lab_page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
    shot()


def test_palette_has_every_sidebar_action(lab_page, log, shot):
    for command in COMMANDS:
        assert helpers.has_command(lab_page, command), command
    lab_page.keyboard.press("Control+Shift+C")
    palette = lab_page.locator("#command-palette")
    palette.locator("input").fill("LLM")
    labels = palette.locator(".lm-CommandPalette-itemLabel").all_inner_texts()
    assert {"Open LLM Sidebar", "Search LLM History", "Open Thread of Selected LLM Call",
            "Copy Selected LLM Prompt into a New %%llm Cell",
            "Insert Selected Template as %%llm -t Cell"} <= set(labels), labels
    shot()
    lab_page.keyboard.press("Escape")

    # a palette command acts on the sidebar: search opens it and types the query
    tag = _word()
    log.insert_calls([_row(prompt=f"{tag} via palette")])
    helpers.run_command(lab_page, "llm-notebook:search", {"query": tag})
    history_item(lab_page.locator(SIDEBAR), "via palette").wait_for()


def test_settings_show_log_path_and_toggle_highlighting(jupyter_lab, lab_page):
    helpers.write_notebook(jupyter_lab.root_dir, "hl.ipynb", ["%%llm\nhello *world*", "x = 1"])
    helpers.open_notebook(lab_page, "hl.ipynb", wait_idle=True)
    mime = """(i) => window.jupyterapp.shell.currentWidget.content.model.cells.get(i).mimeType"""
    lab_page.wait_for_function(f"() => ({mime})(0) === 'text/x-ipythongfm'")
    assert lab_page.evaluate(mime, 1) == "text/x-ipython"

    open_sidebar(lab_page)  # its first refresh reports the log's file name to the settings
    lab_page.wait_for_function(
        """async (name) => {
            const s = await window.jupyterapp.serviceManager.settings.fetch('llm-notebook:plugin');
            return s.settings && s.settings.logPath === name;
        }""", arg=jupyter_lab.log_path.name, polling=500)

    helpers.run_command(lab_page, "llm-notebook:toggle-highlight")
    lab_page.wait_for_function(f"() => ({mime})(0) === 'text/x-ipython'")
    helpers.run_command(lab_page, "llm-notebook:toggle-highlight")
    lab_page.wait_for_function(f"() => ({mime})(0) === 'text/x-ipythongfm'")


def _cell_source(page, path: str, index: int) -> str:
    return page.evaluate(
        """([path, i]) => {
            for (const w of window.jupyterapp.shell.widgets('main')) {
                if (w.context && w.context.path === path) {
                    return w.content.model.cells.get(i).sharedModel.getSource();
                }
            }
            return null;
        }""", [path, index])


def _active_cell_index(page, path: str) -> int:
    return page.evaluate(
        """(path) => {
            for (const w of window.jupyterapp.shell.widgets('main')) {
                if (w.context && w.context.path === path) return w.content.activeCellIndex;
            }
            return -1;
        }""", path)


def test_sidebar_follows_the_dark_theme(lab_page, log, shot):
    tag = _word()
    log.insert_calls([_row(prompt=f"{tag} in the dark", response="still readable")])
    sidebar = open_sidebar(lab_page)
    sidebar.locator(".jp-LLMSidebar-search").fill(tag)
    history_item(sidebar, "in the dark").wait_for()
    # luminance (0 black .. 1 white) of the sidebar's background and of a prompt's text
    colours = """() => {
        const lum = (css) => {
            const [r, g, b] = (css.match(/[\\d.]+/g) || []).map(Number);
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        };
        const side = document.querySelector('#llm-notebook-sidebar');
        const text = side.querySelector('.jp-LLMSidebar-prompt');
        return [lum(getComputedStyle(side).backgroundColor), lum(getComputedStyle(text).color)];
    }"""
    background, text = lab_page.evaluate(colours)
    assert background > 0.5 > text
    helpers.set_theme(lab_page, "dark")
    try:
        lab_page.wait_for_function(f"() => {{ const [b, t] = ({colours})(); return b < 0.5 && t > 0.5; }}")
        shot()
    finally:
        # the theme is a user setting, shared by the rest of the session's tests
        helpers.set_theme(lab_page, "light")
